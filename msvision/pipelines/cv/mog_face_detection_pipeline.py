"""face-detection with MogFace, as ModelScope's MogFaceDetectionPipeline + MogFaceDetector.forward:

1. The image as ModelScope's ``LoadImage.convert_to_ndarray`` gives it (RGB; array inputs are BGR, kept at their
   own values, not cast to uint8) -> float32 BGR.
2. If max(h, w) > 1500: resized by ss = 1000 / max(h, w) exactly as ``cv2.resize(img, (0, 0), fx=ss, fy=ss)``
   does with the opencv-python wheels (bilinear through Intel IPP; see :func:`resize_like_cv2`); ss = 1 otherwise.
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
from ...errors import InvalidInputError
from ...io import load_image_array
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


def _lerp_coords(n_in: int, n_out: int, inv: float):
    """Source index pairs and float32 weights of IPP's linear resize along one axis (as cv2 calls it)."""
    f = (np.arange(n_out) + 0.5) * inv - 0.5
    s0 = np.floor(f).astype(np.int64)
    w = (f - s0).astype(np.float32)
    low = s0 < 0
    s0[low], w[low] = 0, 0
    high = s0 >= n_in - 1  # the last source sample: IPP interpolates from the one before with weight 1
    s0[high], w[high] = n_in - 2, 1
    return s0, s0 + 1, w


def _lerp(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """a + w * (b - a) with one rounding of the multiply-add (IPP's fused multiply-add), in float32."""
    d = (b - a).astype(np.float64)
    return (a.astype(np.float64) + w.astype(np.float64) * d).astype(np.float32)


def _opencv_coords(n_in: int, n_out: int, scale: float):
    """OpenCV's own (non-IPP) linear resize coefficients along one axis: float32 coordinates, clamped at the
    borders (``clamp``: the horizontal pass; the vertical pass only clips the row indices)."""
    f = ((np.arange(n_out) + 0.5) * scale - 0.5).astype(np.float32)
    s0 = np.floor(f).astype(np.int64)
    f = (f - s0).astype(np.float32)
    return np.clip(s0, 0, n_in - 1), np.clip(s0 + 1, 0, n_in - 1), (np.float32(1) - f), f


def _resize_opencv(img: np.ndarray, oh: int, ow: int, inv: float) -> np.ndarray:
    """OpenCV's generic INTER_LINEAR for float32 (cv2 takes it where IPP declines: a source 1 pixel thin)."""
    h, w = img.shape[:2]
    f = ((np.arange(ow) + 0.5) * inv - 0.5).astype(np.float32)
    x0 = np.floor(f).astype(np.int64)
    fx = (f - x0).astype(np.float32)
    edge = (x0 < 0) | (x0 >= w - 1)  # columns taken from one source column, unweighted
    fx[edge] = 0
    x0 = np.clip(x0, 0, w - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    rows = img[:, x0] * (np.float32(1) - fx)[None, :, None] + img[:, x1] * fx[None, :, None]
    rows[:, edge] = img[:, x0[edge]]
    y0, y1, b0, b1 = _opencv_coords(h, oh, inv)
    return rows[y0] * b0[:, None, None] + rows[y1] * b1[:, None, None]


def resize_like_cv2(img: np.ndarray, scale: float) -> np.ndarray:
    """``cv2.resize(img, (0, 0), fx=scale, fy=scale)`` (INTER_LINEAR) for a float32 HxWxC image, downscaling.

    The output size is ``round(n * scale)`` (half to even, cvRound). opencv-python's x86 wheels run the resize
    through Intel IPP: source coordinates (dst + 0.5) * (1 / scale) - 0.5 in double, a float32 weight per axis,
    ``a + w * (b - a)`` with a fused multiply-add, the last source sample reached from the one before with weight
    1; rows first, then columns (columns first when the output is 1 pixel thin). Sources 1 pixel thin go through
    OpenCV's own code instead (float32 coordinates, ``a * (1 - w) + b * w``). Measured against cv2 5.0 on random
    images of 73 random shapes: bit-identical on most; otherwise a few values (where a source coordinate is
    integral and IPP rounds it its own way, or outputs 1-3 pixels thin) differ by 1-2 float32 ulps.
    """
    h, w = img.shape[:2]
    oh, ow = int(np.rint(h * scale)), int(np.rint(w * scale))
    if oh < 1 or ow < 1:
        raise InvalidInputError(
            f"image of {w}x{h} pixels is too thin: scaled by {scale:.4f} (its longer side to 1000 pixels) it "
            f"would have no rows or columns"
        )
    inv = 1.0 / scale
    if h == 1 or w == 1:
        return _resize_opencv(img, oh, ow, inv)
    x0, x1, wx = _lerp_coords(w, ow, inv)
    y0, y1, wy = _lerp_coords(h, oh, inv)
    if oh == 1 or ow == 1:
        cols = _lerp(img[y0], img[y1], wy[:, None, None])
        return _lerp(cols[:, x0], cols[:, x1], wx[None, :, None])
    rows = _lerp(img[:, x0], img[:, x1], wx[None, :, None])
    return _lerp(rows[y0], rows[y1], wy[:, None, None])


def _as_float_bgr(input) -> np.ndarray:
    """HxWx3 float32 BGR: ModelScope's ``LoadImage.convert_to_ndarray(input).astype(float32)[:, :, ::-1]``."""
    rgb = load_image_array(input)  # decoding, validation and errors as every msvision pipeline
    if isinstance(input, np.ndarray) and input.dtype != np.uint8:
        # ModelScope keeps an array's own values (no uint8 cast) for MogFace
        src = input if input.ndim == 3 else input[:, :, None]
        if src.shape[2] == 1:
            src = np.repeat(src, 3, axis=2)
        return np.ascontiguousarray(src, dtype=np.float32)
    return np.ascontiguousarray(rgb[:, :, ::-1], dtype=np.float32)


def decode(loc: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """ModelScope's ``mogdecode`` (float32, the same operation order): centre + loc * size, size * exp(loc), then
    corners with the -1 pixel convention."""
    c = anchors[:, :2] + loc[:, :2] * anchors[:, 2:]
    wh = anchors[:, 2:] * np.exp(loc[:, 2:])
    x0y0 = c - (wh - np.float32(1)) / np.float32(2)
    x1y1 = wh + (x0y0 - np.float32(1))
    return np.concatenate([x0y0, x1y1], axis=1)


class MogFaceDetectionPipeline(Pipeline):
    def __init__(self, model_dir: str, config: dict, threads=None):
        super().__init__(model_dir, config, threads)
        self.model = MogFace(model_dir, config)
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
            img = resize_like_cv2(img, ss)
        x = ((img.astype(np.float64) - MEAN_BGR).astype(np.float32).astype(np.float64) / STD_BGR).astype(
            np.float32
        )
        x /= np.float32(255)
        x = np.ascontiguousarray(x[:, :, ::-1].transpose(2, 0, 1)[None])
        return {"img": x, "scale": ss}

    def forward(self, inputs):
        outs = self.model.run(inputs["img"], self.threads)
        return {
            "conf": outs[0::2],
            "loc": outs[1::2],
            "size": inputs["img"].shape[2:],
            "scale": inputs["scale"],
        }

    def postprocess(self, inputs):
        scores = np.concatenate([c.reshape(-1) for c in inputs["conf"]])
        sel = np.nonzero(scores > CONFIDENCE_THRESHOLD)[0]
        scores = scores[sel]
        loc = np.concatenate([m[0].reshape(4, -1).T for m in inputs["loc"]])[sel]
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
