"""face-detection with RetinaFace-R50 (``resnet50-face-detection-retinaface``), as ModelScope's
RetinaFaceDetectionPipeline + RetinaFaceDetection.forward:

1. The image as ``LoadImage.convert_to_ndarray`` gives it (RGB; non-uint8 arrays keep their values) -> float32.
2. :class:`~msvision.models.retinaface.RetinaFaceDetector`: the > 1500 px resize (cv2), minus (104, 117, 123) on
   the RGB channels (ModelScope subtracts its BGR means from RGB data here: reproduced), the network, priors,
   decoding, score > 0.9, NMS (IoU 0.4), everything divided by the resize factor, the scores too (as ModelScope).

Output: ``{'scores': [float], 'boxes': [[x1, y1, x2, y2]], 'keypoints': [[x1, y1, ..., x5, y5]]}`` (Python lists,
best first; boxes unclipped, as ModelScope).
"""

from __future__ import annotations

import numpy as np

from ...io import load_image_values
from ...models.retinaface import RetinaFace, RetinaFaceDetector
from ...outputs import OutputKeys
from ..base import Pipeline


class RetinaFaceDetectionPipeline(Pipeline):
    precisions = ("fp32", "bf16")

    def __init__(self, model_dir: str, config: dict, threads=None, memory_limit=None, precision="fp32"):
        super().__init__(model_dir, config, threads, memory_limit, precision)
        self.model = RetinaFace(
            model_dir, config, self.threads, memory_limit=self.memory_limit, precision=self.precision
        )
        self.detector = RetinaFaceDetector(self.model)

    def preprocess(self, input):
        return {"img": np.ascontiguousarray(load_image_values(input), dtype=np.float32)}

    def forward(self, inputs):
        dets, landmarks = self.detector.detect(inputs["img"])
        return {"dets": dets, "landmarks": landmarks}

    def postprocess(self, inputs):
        dets = inputs["dets"]
        return {
            OutputKeys.SCORES: dets[:, 4].tolist(),
            OutputKeys.BOXES: dets[:, :4].tolist(),
            OutputKeys.KEYPOINTS: inputs["landmarks"].reshape(-1, 10).tolist(),
        }
