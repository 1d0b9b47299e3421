"""MTCNN face detection (ModelScope's ``manual-face-detection-mtcnn``): model directory -> three C-core graphs,
and the detector around them (image pyramid, three cascaded stages, NMS, box calibration, five landmarks).

The reference is ModelScope's ``MtcnnFaceDetector`` (models/cv/face_detection/mtcnn, from mtcnn-pytorch). Its
arithmetic is reproduced step by step, including these quirks:

- pyramid: min face 20 px, scales ``0.6 * 0.707**k`` while the scaled shorter side exceeds 12 px; each level is
  ``PIL.Image.resize((ceil(w*s), ceil(h*s)), BILINEAR)`` (PIL itself does that resize here);
- normalisation ``(x - 127.5) * 0.0078125`` in float32;
- P-Net boxes ``round((2*ij + 1) / s)`` / ``round((2*ij + 1 + 12) / s)`` (the ``+ 1`` of the original code);
- NMS: greedy, areas with ``+ 1``, IoU ``union`` (per scale 0.5, then 0.7, 0.7) and ``min`` (last stage 0.7), boxes
  visited in the order of ``np.argsort(score)`` from the end (so ties resolve exactly as the reference's);
- ``correct_bboxes`` writes through views: cutting out the candidate patches also clips the boxes to the image
  in place, and the clipped boxes are what the next step calibrates (and what landmarks are relative to);
- patches: the unclipped square box cut out with zero padding outside the image, resized to 24x24 / 48x48 with
  PIL's BILINEAR resample (PIL's own ``crop`` + ``resize``, so bit for bit the reference's patches);
- rounding with ``np.round`` (half to even); scores are the float32 softmax, stored in float64 boxes; landmarks
  are computed in float64 and stored back into the float32 landmark array.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from .._native import _C
from ..errors import InvalidInputError
from ..graph import Builder
from .base import Model, npy_weights, weight_file

MIN_FACE_SIZE = 20.0
MIN_DETECTION_SIZE = 12
FACTOR = 0.707  # sqrt(0.5)
THRESHOLDS = (0.7, 0.8, 0.9)
NMS_THRESHOLDS = (0.7, 0.7, 0.7)
FIRST_STAGE_NMS = 0.5
BATCH = 256  # R-Net / O-Net patches per graph run (bounds the activation memory)
MIN_BATCH = 16
PNET_PLANS = 32  # input shapes the P-Net keeps planned: more than the pyramid levels of any image

# ---- box arithmetic (float64 NumPy, in the reference's operation order) --------------------------------------


def _nms(boxes: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """The reference's greedy NMS (areas with + 1), boxes visited from the end of ``np.argsort(score)``.

    The visiting order is computed here exactly as the reference computes it (same NumPy call on the same float64
    scores, so tied scores resolve alike) and handed to the C NMS as ranks."""
    n = len(boxes)
    if n == 0:
        return np.zeros(0, np.int64)
    rank = np.empty(n, np.float32)
    rank[np.argsort(boxes[:, 4])] = np.arange(n, dtype=np.float32)
    return _C.nms(np.ascontiguousarray(boxes[:, :4], np.float32), rank, threshold, mode=mode, offset=1.0)


def _calibrate(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """x1 += tx1 * w, y1 += ty1 * h, x2 += tx2 * w, y2 += ty2 * h with w = x2 - x1 + 1 (in place, returned)."""
    w = (boxes[:, 2] - boxes[:, 0] + 1.0)[:, None]
    h = (boxes[:, 3] - boxes[:, 1] + 1.0)[:, None]
    boxes[:, 0:4] = boxes[:, 0:4] + np.hstack([w, h, w, h]) * offsets
    return boxes


def _square(boxes: np.ndarray) -> np.ndarray:
    """The smallest enclosing squares around the box centres; the score column becomes 0 (as the reference)."""
    out = np.zeros_like(boxes)
    h = boxes[:, 3] - boxes[:, 1] + 1.0
    w = boxes[:, 2] - boxes[:, 0] + 1.0
    side = np.maximum(h, w)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side - 1.0
    out[:, 3] = out[:, 1] + side - 1.0
    return out


def _cut_patches(boxes: np.ndarray, image: Image.Image, size: int) -> np.ndarray:
    """The reference's get_image_boxes: (n, 3, size, size) float32 normalised patches of the (integer) boxes,
    each cut out with zeros outside the image and resized with PIL's BILINEAR filter. Like the reference's
    correct_bboxes, which writes through views of ``boxes``, the boxes are then clipped to the image in place.

    The cut and resize run per box in PIL (``crop`` pads with zeros exactly like the reference's zero-filled
    patch, and the resize is the reference's own call): PIL's resample is separable fixed-point arithmetic with
    a kernel width depending on each patch size; a bit-exact vectorised NumPy re-implementation was 5-30x slower
    than these per-box C calls, so only this step loops over boxes."""
    width, height = image.size
    x1, y1 = boxes[:, 0].astype(np.int32), boxes[:, 1].astype(np.int32)
    w = (boxes[:, 2] - boxes[:, 0] + 1.0).astype(np.int32)
    h = (boxes[:, 3] - boxes[:, 1] + 1.0).astype(np.int32)
    data = b"".join(
        image.crop((x, y, x + bw, y + bh)).resize((size, size), Image.BILINEAR).tobytes()
        for x, y, bw, bh in zip(x1.tolist(), y1.tolist(), w.tolist(), h.tolist())
    )
    patches = np.frombuffer(data, np.uint8).reshape(len(boxes), size, size, 3)
    boxes[:, 2] = np.where(boxes[:, 2] > width - 1.0, width - 1.0, boxes[:, 2])
    boxes[:, 3] = np.where(boxes[:, 3] > height - 1.0, height - 1.0, boxes[:, 3])
    boxes[:, 0] = np.where(boxes[:, 0] < 0.0, 0.0, boxes[:, 0])
    boxes[:, 1] = np.where(boxes[:, 1] < 0.0, 0.0, boxes[:, 1])
    return _normalise(patches)


#: A box whose side exceeds this many times the image's longer side is no face of any network worth the name;
#: cutting it out would cost (side^2 x 3) bytes.
MAX_BOX_SIDE_PER_IMAGE_SIDE = 2.0


def _drop_unusable(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Drops boxes with no pixel, non-finite corners, or a side above MAX_BOX_SIDE_PER_IMAGE_SIDE times the
    image's longer side. Real weights never produce them; on the first two the reference would crash, on the
    last it would allocate the whole box (gigabytes, from weights made to do so)."""
    limit = MAX_BOX_SIDE_PER_IMAGE_SIDE * max(width, height)
    ok = np.all(np.isfinite(boxes[:, :4]), axis=1)
    with np.errstate(invalid="ignore"):
        w = boxes[:, 2] - boxes[:, 0] + 1.0
        h = boxes[:, 3] - boxes[:, 1] + 1.0
        ok &= (w >= 1.0) & (h >= 1.0) & (w <= limit) & (h <= limit)
        # corners near the image, so their int32 casts stay exact
        ok &= np.all(np.abs(boxes[:, :4]) <= limit + max(width, height), axis=1)
    return boxes if ok.all() else boxes[ok]


def _normalise(img_nhwc: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32 NHWC, (x - 127.5) * 0.0078125 in float32 (the reference's _preprocess)."""
    return (img_nhwc.astype(np.float32) - np.float32(127.5)) * np.float32(0.0078125)


def pyramid_scales(width: int, height: int) -> list:
    """Scales of the image pyramid (min face 20 px, factor 0.707, while the shorter side stays above 12 px)."""
    m = MIN_DETECTION_SIZE / MIN_FACE_SIZE
    min_length = min(height, width) * m
    scales = []
    count = 0
    while min_length > MIN_DETECTION_SIZE:
        scales.append(m * FACTOR**count)
        min_length *= FACTOR
        count += 1
    return scales


# ---- the three networks ----------------------------------------------------------------------------------------
#
# Weights: the state dicts of ModelScope's PNet / RNet / ONet (weights/{pnet,rnet,onet}.npy): features.convK
# (weight, bias), features.preluK.weight and the heads conv4_x (P-Net), conv5_x (R-Net), conv6_x (O-Net). Input:
# (N, 3, H, W) images already normalised. Outputs in the torch modules' return order. The reference's Flatten
# transposes (N, C, H, W) to (N, C, W, H) before flattening (the weights come from a Caffe model); our dense
# layer flattens in (C, H, W) order, so the first dense weight's columns are permuted at load time.


class _MtcnnNet(Model):
    name = ""
    layout = "nhwc"

    def read_weights(self, model_dir, config):
        path = weight_file(model_dir, "weights", f"{self.name}.npy")
        return npy_weights(path), path

    @staticmethod
    def conv_prelu(b: Builder, x, i: int, out: int, k: int):
        """features.conv<i> (k x k, stride 1, no padding) followed by features.prelu<i>."""
        x = b.conv(x, f"features.conv{i}", out, k)
        return b.g.prelu(x, b.const(f"features.prelu{i}.weight", (out,)))

    @staticmethod
    def max_pool(b: Builder, x, k: int, stride: int):
        return b.g.pool2d(x, kind="max", kernel=k, stride=stride, ceil_mode=True)

    @staticmethod
    def dense(b: Builder, x, prefix: str, out: int, flatten_from=None):
        """A dense layer on (N, in, 1, 1) or, with ``flatten_from=(c, h, w)``, on a flattened (c, h, w) map."""
        if flatten_from is None:
            w = b.w.take(f"{prefix}.weight", (out, b.channels(x)))
        else:
            c, h, w_ = flatten_from
            w = b.w.take(f"{prefix}.weight", (out, c * h * w_))
            w = np.ascontiguousarray(w.reshape(out, c, w_, h).transpose(0, 1, 3, 2).reshape(out, c * h * w_))
        return b.g.linear(x, b.g.const(w), bias=b.const(f"{prefix}.bias", (out,)))


class PNet(_MtcnnNet):
    """Fully convolutional, any H, W >= 12: outputs conv4_2 (N, 4, h, w) box offsets and softmax(conv4_1)
    (N, 2, h, w) face probabilities."""

    network = name = "pnet"

    def build(self, b: Builder):
        x = b.g.input(channels=3)
        x = self.conv_prelu(b, x, 1, 10, 3)
        x = self.max_pool(b, x, 2, 2)
        x = self.conv_prelu(b, x, 2, 16, 3)
        x = self.conv_prelu(b, x, 3, 32, 3)
        probs = b.g.softmax(b.conv(x, "conv4_1", 2, 1))
        return [b.conv(x, "conv4_2", 4, 1), probs]


class RNet(_MtcnnNet):
    """24x24 patches -> conv5_2 (N, 4, 1, 1) offsets and softmax(conv5_1) (N, 2, 1, 1)."""

    network = name = "rnet"

    def build(self, b: Builder):
        x = b.g.input(channels=3)  # 24 x 24
        x = self.max_pool(b, self.conv_prelu(b, x, 1, 28, 3), 3, 2)  # 22 -> 11
        x = self.max_pool(b, self.conv_prelu(b, x, 2, 48, 3), 3, 2)  # 9 -> 4
        x = self.conv_prelu(b, x, 3, 64, 2)  # 3
        x = self.dense(b, x, "features.conv4", 128, flatten_from=(64, 3, 3))
        x = b.g.prelu(x, b.const("features.prelu4.weight", (128,)))
        probs = b.g.softmax(self.dense(b, x, "conv5_1", 2))
        return [self.dense(b, x, "conv5_2", 4), probs]


class ONet(_MtcnnNet):
    """48x48 patches -> conv6_3 (N, 10, 1, 1) landmarks, conv6_2 (N, 4, 1, 1) offsets, softmax(conv6_1)."""

    network = name = "onet"

    def build(self, b: Builder):
        x = b.g.input(channels=3)  # 48 x 48
        x = self.max_pool(b, self.conv_prelu(b, x, 1, 32, 3), 3, 2)  # 46 -> 23
        x = self.max_pool(b, self.conv_prelu(b, x, 2, 64, 3), 3, 2)  # 21 -> 10
        x = self.max_pool(b, self.conv_prelu(b, x, 3, 64, 3), 2, 2)  # 8 -> 4
        x = self.conv_prelu(b, x, 4, 128, 2)  # 3
        x = self.dense(b, x, "features.conv5", 256, flatten_from=(128, 3, 3))
        x = b.g.prelu(x, b.const("features.prelu5.weight", (256,)))  # (dropout: identity)
        probs = b.g.softmax(self.dense(b, x, "conv6_1", 2))
        return [self.dense(b, x, "conv6_3", 10), self.dense(b, x, "conv6_2", 4), probs]


class MtcnnDetector:
    """The three MTCNN networks of a ModelScope model directory (``weights/{pnet,rnet,onet}.npy``) and the
    cascade around them. ``detect(rgb)`` -> (boxes (n, 5) float64 x1 y1 x2 y2 score, landmarks (n, 10) float32
    as x0 y0 x1 y1 ... x4 y4), in the reference's order.

    Planning: a network is planned once per input shape. The P-Net sees one shape per pyramid level (11 levels
    for a 1280x720 image, 20 for 8K), so it keeps PNET_PLANS plans: repeated images of one size never re-plan.
    R-Net / O-Net patches run in batches of 256, 128, 64, 32 or 16 (the largest that fits what is left; fewer
    than 16 left are zero-padded to 16), so these two networks use at most 5 shapes and compute at most 15
    padding patches."""

    def __init__(self, model_dir: str, threads: int, memory_limit: int = 0):
        self.pnet = PNet(model_dir, None, threads, max_plans=PNET_PLANS, memory_limit=memory_limit)
        self.rnet = RNet(model_dir, None, threads, memory_limit=memory_limit)
        self.onet = ONet(model_dir, None, threads, memory_limit=memory_limit)

    def _run_batched(self, net: Model, patches: np.ndarray) -> list:
        n = len(patches)
        outs = []
        start = 0
        while start < n:
            take = min(n - start, BATCH)
            size = max(MIN_BATCH, 1 << (take.bit_length() - 1))  # the largest power of two <= take (>= 16)
            take = min(take, size)
            x = patches[start : start + take]
            if take < size:  # fewer than MIN_BATCH left: zero-pad, so that few shapes are ever planned
                x = np.concatenate([x, np.zeros((size - take,) + x.shape[1:], np.float32)])
            outs.append([o[:take] for o in net.run(x)])
            start += take
        return [np.concatenate([o[j] for o in outs]).reshape(n, -1) for j in range(len(outs[0]))]

    def _first_stage(self, image: Image.Image, scale: float):
        """P-Net at one scale -> (k, 9) float64 boxes x1 y1 x2 y2 score tx1 ty1 tx2 ty2 after NMS 0.5, or None."""
        width, height = image.size
        sw, sh = math.ceil(width * scale), math.ceil(height * scale)
        resized = np.asarray(image.resize((sw, sh), Image.BILINEAR))[None]
        offsets, probs = self.pnet.run(_normalise(resized))
        probs = probs[0, :, :, 1]
        iy, ix = np.nonzero(probs > THRESHOLDS[0])
        if iy.size == 0:
            return None
        stride, cell = 2, 12
        boxes = np.vstack(
            [
                np.round((stride * ix + 1.0) / scale),
                np.round((stride * iy + 1.0) / scale),
                np.round((stride * ix + 1.0 + cell) / scale),
                np.round((stride * iy + 1.0 + cell) / scale),
                probs[iy, ix],
                offsets[0, iy, ix].T,
            ]
        ).T
        return boxes[_nms(boxes[:, 0:5], FIRST_STAGE_NMS)]

    def detect(self, rgb: np.ndarray):
        height, width = rgb.shape[:2]
        scales = pyramid_scales(width, height)
        if not scales:
            raise InvalidInputError(
                f"image of {width}x{height} pixels is too small for MTCNN: its shorter side must exceed "
                f"{int(MIN_FACE_SIZE)} pixels (the minimum face size)"
            )
        image = Image.fromarray(rgb)
        empty = np.zeros((0, 5)), np.zeros((0, 10), np.float32)

        # stage 1: P-Net over the pyramid
        found = [b for b in (self._first_stage(image, s) for s in scales) if b is not None]
        if not found:
            return empty
        boxes = np.vstack(found)
        boxes = boxes[_nms(boxes[:, 0:5], NMS_THRESHOLDS[0])]
        boxes = _square(_calibrate(boxes[:, 0:5], boxes[:, 5:]))
        boxes[:, 0:4] = np.round(boxes[:, 0:4])

        # stage 2: R-Net on 24x24 patches
        boxes = _drop_unusable(boxes, width, height)
        if len(boxes) == 0:
            return empty
        patches = _cut_patches(boxes, image, 24)
        offsets, probs = self._run_batched(self.rnet, patches)
        keep = np.nonzero(probs[:, 1] > THRESHOLDS[1])[0]
        boxes = boxes[keep]
        boxes[:, 4] = probs[keep, 1]
        offsets = offsets[keep]
        keep = _nms(boxes, NMS_THRESHOLDS[1])
        boxes = _square(_calibrate(boxes[keep], offsets[keep]))
        boxes[:, 0:4] = np.round(boxes[:, 0:4])

        # stage 3: O-Net on 48x48 patches
        boxes = _drop_unusable(boxes, width, height)
        if len(boxes) == 0:
            return empty
        patches = _cut_patches(boxes, image, 48)
        landmarks, offsets, probs = self._run_batched(self.onet, patches)
        keep = np.nonzero(probs[:, 1] > THRESHOLDS[2])[0]
        boxes = boxes[keep]
        boxes[:, 4] = probs[keep, 1]
        offsets = offsets[keep]
        landmarks = landmarks[keep]
        w = boxes[:, 2] - boxes[:, 0] + 1.0
        h = boxes[:, 3] - boxes[:, 1] + 1.0
        landmarks[:, 0:5] = boxes[:, 0:1] + w[:, None] * landmarks[:, 0:5]
        landmarks[:, 5:10] = boxes[:, 1:2] + h[:, None] * landmarks[:, 5:10]
        boxes = _calibrate(boxes, offsets)
        keep = _nms(boxes, NMS_THRESHOLDS[2], mode="min")
        boxes, landmarks = boxes[keep], landmarks[keep]
        landmarks = landmarks.reshape(-1, 2, 5).transpose(0, 2, 1).reshape(-1, 10)
        return boxes, landmarks
