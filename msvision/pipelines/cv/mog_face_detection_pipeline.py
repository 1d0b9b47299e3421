"""face-detection with MogFace, as ModelScope's MogFaceDetectionPipeline + MogFaceDetector.forward:

1. The image as ModelScope's ``LoadImage.convert_to_ndarray`` gives it (RGB; array inputs are BGR, kept at their
   own values, not cast to uint8) -> float32 BGR.
2. If max(h, w) > 1500: resized by ss = 1000 / max(h, w) exactly as ``cv2.resize(img, (0, 0), fx=ss, fy=ss)``
   does (OpenCV itself: :mod:`msvision.io.geometry`); ss = 1 otherwise.
3. (x - [103.53, 116.28, 123.675]) / [57.375, 57.120003, 58.395] per B, G, R channel (computed in float64, stored
   as float32, as numpy's in-place ops on the float32 image do), / 255, back to RGB, NCHW.
4. The network (12 per-level maps), priors (strides 4..128, sizes 16..512 x 0.68), ``mogdecode``, score > 0.82,
   the 5000 best, NMS (IoU > 0.4 with +1 areas) keeping 750, and finally [boxes, scores] / ss: the scores are
   divided by the downscale factor too (a ModelScope quirk, reproduced).

Output: ``{'scores': [float], 'boxes': [[x1, y1, x2, y2]], 'keypoints': None}`` (Python lists, as ModelScope).
"""

from __future__ import annotations

import numpy as np

from ..._native import _C
from ...io import load_image_values
from ...io.geometry import resize_by
from ...models.mogface import MogFace, priors
from ...outputs import OutputKeys
from ..base import Pipeline

MAX_SIDE = 1500
TARGET_SIDE = 1000.0
MEAN_BGR = np.array([103.53, 116.28, 123.675])
STD_BGR = np.array([57.375, 57.120003, 58.395])
CONFIDENCE_THRESHOLD = 0.82
NMS_THRESHOLD = 0.4
TOP_K = 5000
KEEP_TOP_K = 750


def _as_float_bgr(input) -> np.ndarray:
    """HxWx3 float32 BGR: ModelScope's ``LoadImage.convert_to_ndarray(input).astype(float32)[:, :, ::-1]``
    (array inputs keep their own values, not cast to uint8)."""
    return np.ascontiguousarray(load_image_values(input)[:, :, ::-1], dtype=np.float32)


def decode(loc: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """ModelScope's ``mogdecode`` (float32, the same operation order): centre + loc * size, size * exp(loc), then
    corners with the -1 pixel convention."""
    c = anchors[:, :2] + loc[:, :2] * anchors[:, 2:]
    wh = anchors[:, 2:] * np.exp(loc[:, 2:])
    x0y0 = c - (wh - np.float32(1)) / np.float32(2)
    x1y1 = wh + (x0y0 - np.float32(1))
    return np.concatenate([x0y0, x1y1], axis=1)


class MogFaceDetectionPipeline(Pipeline):
    def __init__(self, model_dir: str, config: dict, threads=None, memory_limit=None, precision="fp32"):
        super().__init__(model_dir, config, threads, memory_limit, precision)
        self.model = MogFace(
            model_dir, config, self.threads, memory_limit=self.memory_limit, precision=self.precision
        )
        self._priors = ((0, 0), None)  # (size, priors) of the last size seen, replaced as one object

    def _priors_for(self, height: int, width: int) -> np.ndarray:
        size, cached = self._priors
        if size != (height, width):
            cached = priors(height, width)
            self._priors = ((height, width), cached)
        return cached

    def preprocess(self, input):
        img = _as_float_bgr(input)
        h, w = img.shape[:2]
        ss = 1.0
        if max(h, w) > MAX_SIDE:
            ss = TARGET_SIDE / max(h, w)
            img = resize_by(img, ss)
        x = ((img.astype(np.float64) - MEAN_BGR).astype(np.float32).astype(np.float64) / STD_BGR).astype(
            np.float32
        )
        x /= np.float32(255)
        x = np.ascontiguousarray(x[None, :, :, ::-1])  # NHWC, RGB
        return {"img": x, "scale": ss}

    def forward(self, inputs):
        outs = self.model.run(inputs["img"])
        return {
            "conf": outs[0::2],
            "loc": outs[1::2],
            "size": inputs["img"].shape[1:3],
            "scale": inputs["scale"],
        }

    def postprocess(self, inputs):
        scores = np.concatenate([c.reshape(-1) for c in inputs["conf"]])
        sel = np.nonzero(scores > CONFIDENCE_THRESHOLD)[0]
        scores = scores[sel]
        loc = np.concatenate([m[0].reshape(-1, 4) for m in inputs["loc"]])[sel]
        boxes = decode(loc, self._priors_for(*inputs["size"])[sel])
        order = scores.argsort()[::-1][:TOP_K]  # the same numpy sort as ModelScope: ties fall the same way
        boxes, scores = boxes[order], scores[order]
        # py_cpu_nms sorts again; visiting the boxes in that order makes _C.nms's tie rule (lower index first)
        # follow it too
        order = scores.argsort()[::-1]
        kept = _C.nms(
            boxes[order], scores[order], NMS_THRESHOLD, mode="union", offset=1.0, max_keep=KEEP_TOP_K
        )
        keep = order[kept]
        dets = np.concatenate([boxes[keep], scores[keep, None]], axis=1).astype(np.float32)
        dets = dets / np.float32(inputs["scale"])
        return {
            OutputKeys.SCORES: dets[:, 4].tolist(),
            OutputKeys.BOXES: dets[:, :4].tolist(),
            OutputKeys.KEYPOINTS: None,
        }
