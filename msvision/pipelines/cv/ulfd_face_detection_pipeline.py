"""face-detection with ULFD (``manual-face-detection-ulfd``), as ModelScope's UlfdFaceDetectionPipeline:

image (LoadImage semantics) -> BGR float32 -> ``cv2.resize(img, (640, 480))`` (bilinear) -> ``(x - 127) / 128``
-> network -> softmax, prior decoding, probability > 0.85, hard NMS (IoU 0.3, top 750) -> boxes scaled by the
original width and height.
Output: ``{'scores': [float, ...], 'boxes': [[x1, y1, x2, y2], ...], 'keypoints': None}``, best score first,
boxes in original pixels and not clipped to the image (as ModelScope); ``[]`` and ``[]`` when there is no face.

The resize is ``cv2.resize`` itself (:mod:`msvision.io.geometry`), so it is bit-identical to ModelScope's.
"""

import numpy as np

from ...io import load_image_array
from ...io.geometry import resize
from ...models.ulfd import IMAGE_MEAN, IMAGE_STD, INPUT_HEIGHT, INPUT_WIDTH, UlfdDetector
from ...outputs import OutputKeys
from ..base import Pipeline


class UlfdFaceDetectionPipeline(Pipeline):
    def __init__(self, model_dir: str, config: dict, threads=None, memory_limit=None, precision="fp32"):
        super().__init__(model_dir, config, threads, memory_limit, precision)
        self.detector = UlfdDetector(model_dir, config, self.threads, memory_limit=self.memory_limit)

    def preprocess(self, input):
        rgb = load_image_array(input)
        height, width = rgb.shape[:2]
        # channel order does not matter to the resize; ModelScope flips to BGR first, we flip the small result
        img = resize(rgb.astype(np.float32), INPUT_WIDTH, INPUT_HEIGHT)
        x = np.ascontiguousarray(img[None, :, :, ::-1])  # NHWC, BGR
        x -= np.float32(IMAGE_MEAN)
        x /= np.float32(IMAGE_STD)
        return {"img": x, "width": width, "height": height}

    def forward(self, inputs):
        boxes, scores = self.detector.detect(inputs["img"], inputs["width"], inputs["height"])
        return {"boxes": boxes, "scores": scores}

    def postprocess(self, inputs):
        return {
            OutputKeys.SCORES: inputs["scores"].tolist(),
            OutputKeys.BOXES: inputs["boxes"].tolist(),
            OutputKeys.KEYPOINTS: None,
        }
