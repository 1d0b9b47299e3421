"""ULFD "slim" face detector (ModelScope ``damo/cv_manual_face-detection_ulfd``): model directory -> C-core graph,
plus the detector's fixed pre-processing size, priors, decoding and hard NMS.

Everything here follows modelscope/models/cv/face_detection/ulfd_slim/ (``define_img_size(640)``):
- input: the BGR image resized to 640x480 (OpenCV bilinear, see the pipeline), ``(x - 127) / 128``;
- network: Mb_Tiny backbone + SSD heads on 4 levels (``UlfdDetector.build``), softmax over 2 classes;
- priors: feature maps 80x60, 40x30, 20x15, 10x8 (strides 8, 16, 32, 64), min boxes
  [10, 16, 24], [32, 48], [64, 96], [128, 192, 256] px, centre-size form normalised to the 640x480 input,
  clamped to [0, 1];
- decoding: centre variance 0.1, size variance 0.2, then corner form;
- class 1 probability > 0.85, the 1500 best candidates, greedy hard NMS with IoU
  ``inter / (area0 + area1 - inter + 1e-5)`` (normalised coordinates, no +1), a box is dropped when its IoU with
  a kept box is > 0.3, at most 750 kept; boxes scaled by the original width/height (never clipped).

The weights file ``pytorch_model.pt`` is a plain (legacy-format) torch state dict, which ModelScope hands
straight to ``load_state_dict`` (no ``params`` selection); a leading ``module.`` is tolerated here.
"""

import numpy as np

from .._native import _C
from ..checkpoint import CheckpointError
from ..graph import Builder
from ..utils.constant import ModelFile
from .base import Model, torch_state_dict, weight_file

INPUT_WIDTH, INPUT_HEIGHT = 640, 480
IMAGE_MEAN = 127.0
IMAGE_STD = 128.0
CENTER_VARIANCE = 0.1
SIZE_VARIANCE = 0.2
PROB_THRESHOLD = 0.85
IOU_THRESHOLD = 0.3
IOU_EPS = 1e-5
CANDIDATE_SIZE = 1500
TOP_K = 750
NUM_CLASSES = 2
# fd_config.define_img_size(640): feature map sizes per level ([widths], [heights]) and anchor sizes in pixels
FEATURE_MAPS = ([80, 40, 20, 10], [60, 30, 15, 8])
MIN_BOXES = ([10, 16, 24], [32, 48], [64, 96], [128, 192, 256])


def make_priors() -> np.ndarray:
    """(17640, 4) float32 priors (cx, cy, w, h) in the order the heads' outputs are flattened in: level, row,
    column, anchor. Computed in float64 and rounded once, as ModelScope builds them from Python floats."""
    out = []
    fw, fh = FEATURE_MAPS
    for level, sizes in enumerate(MIN_BOXES):
        # ModelScope: shrinkage = image_size / feature_map, scale = image_size / shrinkage
        scale_w = INPUT_WIDTH / (INPUT_WIDTH / fw[level])
        scale_h = INPUT_HEIGHT / (INPUT_HEIGHT / fh[level])
        j, i, k = np.meshgrid(
            np.arange(fh[level]), np.arange(fw[level]), np.arange(len(sizes)), indexing="ij"
        )
        sizes = np.asarray(sizes, dtype=np.float64)[k]
        level_priors = np.stack(
            [(i + 0.5) / scale_w, (j + 0.5) / scale_h, sizes / INPUT_WIDTH, sizes / INPUT_HEIGHT], axis=-1
        )
        out.append(level_priors.reshape(-1, 4))
    return np.clip(np.concatenate(out).astype(np.float32), 0.0, 1.0)


def hard_nms(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ModelScope's ``hard_nms`` (ulfd_slim/vision/box_utils.py); returns kept indices in order.

    Candidates: the CANDIDATE_SIZE best scores (ties: lower index first; torch's unstable sort leaves the order
    of exactly equal scores implementation-defined), then greedy NMS in C with ModelScope's IoU, including its
    +1e-5 in the denominator (significant here: the boxes are in 0..1 units).
    """
    order = np.argsort(-scores, kind="stable")[:CANDIDATE_SIZE]
    kept = _C.nms(
        np.ascontiguousarray(boxes[order], np.float32),
        np.ascontiguousarray(scores[order], np.float32),
        IOU_THRESHOLD,
        eps=IOU_EPS,
        max_keep=TOP_K,
    )
    return order[kept]


BASE_CHANNEL = 16
BN_EPS = 1e-5
# Mb_Tiny: layer i's output channels (x BASE_CHANNEL) and stride; layer 0 is conv_bn, the others conv_dw
WIDTHS = (1, 2, 2, 2, 4, 4, 4, 4, 8, 8, 8, 16, 16)
STRIDES = (2, 1, 2, 1, 2, 1, 1, 1, 2, 1, 1, 2, 1)
# detection levels: the backbone layer each reads (None: the extras output), its channels, anchors per cell
LEVEL_SOURCES = (7, 10, 12, None)
LEVEL_WIDTHS = (4, 8, 16, 16)
ANCHORS = tuple(len(m) for m in MIN_BOXES)


def _separable(b: Builder, x, prefix: str, out: int, stride: int = 1):
    """SeperableConv2d(in, out, 3, stride, padding 1): ``<prefix>.0`` depthwise 3x3 with bias, ReLU, ``<prefix>.2``
    1x1 with bias (no activation after it)."""
    c = b.channels(x)
    x = b.conv(x, f"{prefix}.0", c, 3, stride=stride, padding=1, groups=c, act="relu")
    return b.conv(x, f"{prefix}.2", out, 1)


class UlfdDetector(Model):
    """The ULFD network. Input: (1, 480, 640, 3) normalised BGR (NHWC; any size works); outputs, raw head maps in
    NHWC: cls0, loc0, cls1, loc1, cls2, loc2, cls3, loc3, where cls_i has channel ``a * 2 + c`` for class c of
    anchor a and loc_i channel ``a * 4 + k``. ``detect(x, width, height)`` decodes them."""

    network = "ulfd"
    layout = "nhwc"

    def __init__(self, model_dir: str, config: dict, threads: int, **options) -> None:
        super().__init__(model_dir, config, threads, **options)
        self.priors = make_priors()

    def read_weights(self, model_dir, config):
        path = weight_file(model_dir, ModelFile.TORCH_MODEL_FILE)
        try:  # SSD.load passes the file straight to load_state_dict: a plain state dict
            return torch_state_dict(path, param_key=None), path
        except CheckpointError as e:  # the same type (UnsafeCheckpointError stays one), with a hint
            raise type(e)(f"{e} (ULFD expects a plain state dict of the network's weights)") from e

    def build(self, b: Builder):
        bc = BASE_CHANNEL
        x = b.g.input(channels=3)
        x = b.conv_bn(
            x,
            "base_net.0.0",
            "base_net.0.1",
            bc * WIDTHS[0],
            3,
            stride=STRIDES[0],
            padding=1,
            eps=BN_EPS,
            act="relu",
        )
        features = {}
        for i in range(1, len(WIDTHS)):  # conv_dw: depthwise 3x3 + BN + ReLU, 1x1 + BN + ReLU
            c = bc * WIDTHS[i - 1]
            x = b.conv_bn(
                x,
                f"base_net.{i}.0",
                f"base_net.{i}.1",
                c,
                3,
                stride=STRIDES[i],
                padding=1,
                groups=c,
                eps=BN_EPS,
                act="relu",
            )
            x = b.conv_bn(x, f"base_net.{i}.3", f"base_net.{i}.4", bc * WIDTHS[i], 1, eps=BN_EPS, act="relu")
            features[i] = x
        x = b.conv(x, "extras.0.0", bc * 4, 1, act="relu")
        features[None] = b.act(_separable(b, x, "extras.0.2", bc * 16, stride=2), "relu")
        outputs = []
        for level, source in enumerate(LEVEL_SOURCES):
            for kind, per_anchor in (("classification_headers", NUM_CLASSES), ("regression_headers", 4)):
                prefix, out = f"{kind}.{level}", ANCHORS[level] * per_anchor
                if source is None:
                    outputs.append(b.conv(features[source], prefix, out, 3, padding=1))
                else:
                    outputs.append(_separable(b, features[source], prefix, out))
        return outputs

    @staticmethod
    def flatten_heads(outputs):
        """NHWC head outputs -> (confidences (n, 2), locations (n, 4)), rows ordered level, row, column, anchor (as
        ModelScope's permute(0, 2, 3, 1).view(1, -1, k) + cat: NHWC is that permutation)."""
        conf = np.concatenate([o[0].reshape(-1, NUM_CLASSES) for o in outputs[0::2]])
        loc = np.concatenate([o[0].reshape(-1, 4) for o in outputs[1::2]])
        return conf, loc

    def detect(self, x: np.ndarray, width: int, height: int):
        """-> (boxes (k, 4) float32 x1 y1 x2 y2 in original pixels, scores (k,) float32), best first."""
        conf, loc = self.flatten_heads(self.run(x))
        # softmax over the two classes, keeping only the face probability
        m = np.maximum(conf[:, 0], conf[:, 1])
        e0, e1 = np.exp(conf[:, 0] - m), np.exp(conf[:, 1] - m)
        probs = e1 / (e0 + e1)
        mask = probs > np.float32(PROB_THRESHOLD)
        if not mask.any():
            return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
        probs = probs[mask]
        boxes = _C.decode_center_size(
            np.ascontiguousarray(loc[mask]), self.priors[mask], CENTER_VARIANCE, SIZE_VARIANCE
        )
        keep = hard_nms(boxes, probs)
        boxes = boxes[keep] * np.array([width, height, width, height], dtype=np.float32)
        return boxes, probs[keep]
