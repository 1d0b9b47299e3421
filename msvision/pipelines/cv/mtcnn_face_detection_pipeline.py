"""face-detection with MTCNN, as ModelScope's MtcnnFaceDetectionPipeline (``manual-face-detection-mtcnn``):

image (LoadImage semantics) -> RGB uint8 -> MTCNN cascade (see :mod:`msvision.models.mtcnn`) ->
``{'scores': [float, ...], 'boxes': [[x1, y1, x2, y2], ...], 'keypoints': [[x0, y0, ..., x4, y4], ...]}``:
plain Python lists, boxes in original-image pixels (float, not rounded), one list of 10 floats (five (x, y)
landmarks: eyes, nose, mouth corners) per face, faces in the reference's order.

Differences from ModelScope, deliberate:
- numpy inputs (BGR HxWx3 or gray HxW) work; ModelScope's pipeline crashes on them (it hands torch a
  negative-stride view of the flipped array);
- an image without any face candidate returns empty lists; ModelScope raises (``np.vstack`` of nothing, or
  indexing the ``[]`` its detector returns). It already returns empty lists when only the last stage rejects all;
- images whose shorter side is at most 20 px (no pyramid level at all; ModelScope raises ValueError from
  ``np.vstack``) raise :class:`~msvision.errors.InvalidInputError` with an explanation.
"""

from ...io import load_image_array
from ...models.mtcnn import MtcnnDetector
from ...outputs import OutputKeys
from ..base import Pipeline


class MtcnnFaceDetectionPipeline(Pipeline):
    def __init__(self, model_dir: str, config: dict, threads=None, memory_limit=None, precision="fp32"):
        super().__init__(model_dir, config, threads, memory_limit, precision)
        self.detector = MtcnnDetector(model_dir, self.threads, memory_limit=self.memory_limit)

    def preprocess(self, input):
        return {"img": load_image_array(input)}

    def forward(self, inputs):
        boxes, landmarks = self.detector.detect(inputs["img"])
        return {
            OutputKeys.SCORES: boxes[:, 4].tolist(),
            OutputKeys.BOXES: boxes[:, :4].tolist(),
            OutputKeys.KEYPOINTS: landmarks.tolist(),
        }

    def postprocess(self, inputs):
        return inputs
