"""ULFD "slim" face detector (ModelScope ``damo/cv_manual_face-detection_ulfd``): model directory -> C-core graph,
plus the detector's fixed pre-processing size, priors, decoding and hard NMS.

Everything here follows modelscope/models/cv/face_detection/ulfd_slim/ (``define_img_size(640)``):
- input: the BGR image resized to 640x480 (OpenCV bilinear, see the pipeline), ``(x - 127) / 128``;
- network: Mb_Tiny backbone + SSD heads on 4 levels (csrc/models/ulfd.c), softmax over 2 classes;
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

import os

import numpy as np

from .._native import _C
from ..checkpoint import CheckpointError, load_torch, state_dict_from
from ..errors import InvalidModelError, ModelNotFoundError
from ..utils.constant import ModelFile

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


class UlfdDetector:
    """A loaded ULFD network. ``detect(x, width, height)``: x is the (1, 3, 480, 640) normalised BGR input."""

    def __init__(self, model_dir: str, config: dict):
        weights_path = os.path.join(model_dir, ModelFile.TORCH_MODEL_FILE)
        if not os.path.isfile(weights_path):
            raise ModelNotFoundError(f"{model_dir}: missing weight file {ModelFile.TORCH_MODEL_FILE}")
        try:
            checkpoint = load_torch(weights_path)
        except CheckpointError as e:
            raise InvalidModelError(str(e)) from e
        try:
            state = state_dict_from(checkpoint, param_key=None)
        except CheckpointError as e:
            raise InvalidModelError(
                f"{weights_path}: {e} (ULFD expects a plain state dict of the network's weights)"
            ) from e
        try:
            self.graph = _C.build_model("ulfd", {}, state)
        except _C.WeightError as e:
            raise InvalidModelError(f"{weights_path}: {e}") from None
        self.priors = make_priors()

    def raw_outputs(self, x: np.ndarray, threads: int):
        """The eight head outputs in NCHW: cls0, loc0, cls1, loc1, cls2, loc2, cls3, loc3."""
        return self.graph.run([x], threads=threads)

    @staticmethod
    def flatten_heads(outputs):
        """Head outputs -> (confidences (n, 2), locations (n, 4)), rows ordered level, row, column, anchor (as
        ModelScope's permute(0, 2, 3, 1).view(1, -1, k) + cat)."""
        conf = np.concatenate([o[0].transpose(1, 2, 0).reshape(-1, NUM_CLASSES) for o in outputs[0::2]])
        loc = np.concatenate([o[0].transpose(1, 2, 0).reshape(-1, 4) for o in outputs[1::2]])
        return conf, loc

    def detect(self, x: np.ndarray, width: int, height: int, threads: int):
        """-> (boxes (k, 4) float32 x1 y1 x2 y2 in original pixels, scores (k,) float32), best first."""
        conf, loc = self.flatten_heads(self.raw_outputs(x, threads))
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
