"""face-detection with ULFD (``manual-face-detection-ulfd``), as ModelScope's UlfdFaceDetectionPipeline:

image (LoadImage semantics) -> BGR float32 -> ``cv2.resize(img, (640, 480))`` (bilinear) -> ``(x - 127) / 128``
-> network -> softmax, prior decoding, probability > 0.85, hard NMS (IoU 0.3, top 750) -> boxes scaled by the
original width and height.
Output: ``{'scores': [float, ...], 'boxes': [[x1, y1, x2, y2], ...], 'keypoints': None}``, best score first,
boxes in original pixels and not clipped to the image (as ModelScope); ``[]`` and ``[]`` when there is no face.

The resize reproduces what ModelScope's OpenCV does on float32 images (its Intel IPP bilinear path, the default in
the x86 opencv-python wheels; measured on opencv-python 5.0.0): per axis, source coordinate
``(d + 0.5) * (1 / (dst / src)) - 0.5`` in float64, clamped at the borders (weight 0 there), fraction rounded to
float32 ``f``; each pass is the lerp ``a + f * (b - a)`` with one rounding (fused multiply-add), first along x,
then along y. It is bit-identical to OpenCV on the test photos; for images upscaled many times from a few pixels a
few border pixels differ in the last bit. (OpenCV's portable code path, without IPP, rounds its weights
differently and differs from both by up to ~0.01 on 0..255 values.)
"""

import numpy as np

from ...io import load_image_array
from ...models.ulfd import IMAGE_MEAN, IMAGE_STD, INPUT_HEIGHT, INPUT_WIDTH, UlfdDetector
from ...outputs import OutputKeys
from ..base import Pipeline


def _axis(src: int, dst: int):
    """Source indices (i0, i1) and float32 lerp fractions (as float64) of OpenCV's INTER_LINEAR along one axis."""
    scale = 1.0 / (dst / src)
    pos = (np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5
    i0 = np.floor(pos)
    frac = pos - i0
    i0 = i0.astype(np.int64)
    border = (i0 < 0) | (i0 >= src - 1)
    frac[border] = 0.0
    i0 = np.clip(i0, 0, src - 1)
    i1 = np.minimum(i0 + 1, src - 1)
    return i0, i1, frac.astype(np.float32).astype(np.float64)


_CHUNK = 32  # rows per step: keeps the float64 temporaries in cache (2x faster than whole-image passes)


def _lerp_into(a: np.ndarray, b: np.ndarray, f: np.ndarray, out: np.ndarray, tmp: np.ndarray) -> None:
    """out = float32 ``fma(b - a, f, a)`` (b - a rounded to float32 first, as OpenCV): the float64 product of two
    float32 values is exact, so the only rounding left is the final one to float32. tmp: float64 scratch."""
    np.subtract(b, a, out=out)
    tmp[...] = out
    tmp *= f
    tmp += a
    out[...] = tmp


def resize_bilinear(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(img.astype(float32), (width, height))`` for an HxWxC uint8 image -> float32 (height, width, C).

    Only the source rows the output needs are read, so the cost does not grow with the input height; rows are
    flat (W * C) vectors processed a few at a time."""
    h, w, c = img.shape
    x0, x1, fx = _axis(w, width)
    y0, y1, fy = _axis(h, height)
    ch = np.arange(c)
    cols0, cols1 = (x0[:, None] * c + ch).ravel(), (x1[:, None] * c + ch).ravel()
    fx = np.repeat(fx, c)
    rows, inv = np.unique(np.concatenate([y0, y1]), return_inverse=True)
    src = img.reshape(h, w * c)
    n = width * c
    horiz = np.empty((len(rows), n), np.float32)
    a, b = np.empty((_CHUNK, n), np.float32), np.empty((_CHUNK, n), np.float32)
    tmp = np.empty((_CHUNK, n), np.float64)
    for s in range(0, len(rows), _CHUNK):  # along x, on the source rows needed
        r = src[rows[s : s + _CHUNK]]
        k = len(r)
        a[:k] = np.take(r, cols0, axis=1)
        b[:k] = np.take(r, cols1, axis=1)
        _lerp_into(a[:k], b[:k], fx, horiz[s : s + k], tmp[:k])
    out = np.empty((height, n), np.float32)
    i0, i1 = inv[:height], inv[height:]
    for s in range(0, height, _CHUNK):  # then along y
        k = min(_CHUNK, height - s)
        _lerp_into(horiz[i0[s : s + k]], horiz[i1[s : s + k]], fy[s : s + k, None], out[s : s + k], tmp[:k])
    return out.reshape(height, width, c)


class UlfdFaceDetectionPipeline(Pipeline):
    def __init__(self, model_dir: str, config: dict, threads=None):
        super().__init__(model_dir, config, threads)
        self.detector = UlfdDetector(model_dir, config)

    def preprocess(self, input):
        rgb = load_image_array(input)
        height, width = rgb.shape[:2]
        # channel order does not matter to the resize; ModelScope flips to BGR first, we flip the small result
        img = resize_bilinear(rgb, INPUT_WIDTH, INPUT_HEIGHT)
        x = np.ascontiguousarray(img.transpose(2, 0, 1)[None, ::-1])  # NCHW, BGR
        x -= np.float32(IMAGE_MEAN)
        x /= np.float32(IMAGE_STD)
        return {"img": x, "width": width, "height": height}

    def forward(self, inputs):
        boxes, scores = self.detector.detect(inputs["img"], inputs["width"], inputs["height"], self.threads)
        return {"boxes": boxes, "scores": scores}

    def postprocess(self, inputs):
        return {
            OutputKeys.SCORES: inputs["scores"].tolist(),
            OutputKeys.BOXES: inputs["boxes"].tolist(),
            OutputKeys.KEYPOINTS: None,
        }
