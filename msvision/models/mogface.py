"""MogFace (ModelScope ``damo/cv_resnet101_face-detection_cvpr22papermogface``): model directory -> C-core graph.

The weights are ``pytorch_model.pt``, the flat state dict of ModelScope's ``MogFace`` module (ResNet-101 backbone,
LFPN, MogPredNet) that ``MogFaceDetector`` hands to ``load_state_dict``. The configuration carries no
hyper-parameters (ModelScope's detector always builds the same network).

The graph (csrc/models/mogface.c) maps a (1, 3, H, W) normalised RGB image of any size to 12 maps: per level
(strides 4, 8, 16, 32, 64, 128) sigmoid(cls) (1 channel) and loc (4 channels).
"""

from __future__ import annotations

import os

import numpy as np

from .._native import _C
from ..checkpoint import CheckpointError, load_torch, state_dict_from
from ..errors import InvalidModelError, ModelNotFoundError
from ..utils.constant import ModelFile

LAYERS = [3, 4, 23, 3]  # ResNet-101, as ModelScope's MogFace() builds it
STRIDES = (4, 8, 16, 32, 64, 128)
ANCHOR_SIZES = (16, 32, 64, 128, 256, 512)
ANCHOR_SCALE = 0.68  # MogPriorBox(scale_list=[0.68]) in MogFaceDetector.forward


def level_sizes(n: int) -> list[int]:
    """Feature-map size at strides 1, 2, 4, ..., 128: each stride-2 layer maps n to (n + 1) // 2, exactly as
    ModelScope's MogPriorBox computes it (and as the network's padded stride-2 convolutions and pooling do)."""
    sizes = [n]
    for _ in range(7):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def priors(height: int, width: int) -> np.ndarray:
    """ModelScope's MogPriorBox(scale_list=[0.68])(height, width), vectorised: (N, 4) float32 (cx, cy, w, h), levels
    in stride order, row-major within a level. Same arithmetic: corners in float64, cast to float32, then the
    centre/size transform in float32."""
    hs, ws = level_sizes(height), level_sizes(width)
    out = []
    for li, stride in enumerate(STRIDES):
        k = li + 2  # stride 2**k
        rows, cols = hs[k], ws[k]
        side = ANCHOR_SIZES[li] * ANCHOR_SCALE
        cx = np.broadcast_to((np.arange(cols, dtype=np.float64) + 0.5) * stride, (rows, cols)).ravel()
        cy = np.broadcast_to(
            ((np.arange(rows, dtype=np.float64) + 0.5) * stride)[:, None], (rows, cols)
        ).ravel()
        half = (side - 1) / 2
        corners = np.stack([cx - half, cy - half, cx + half, cy + half], axis=1).astype(np.float32)
        centre = (corners[:, :2] + corners[:, 2:]) / np.float32(2)
        size = corners[:, 2:] - corners[:, :2] + np.float32(1)
        out.append(np.concatenate([centre, size], axis=1))
    return np.concatenate(out, axis=0)


def load_state(model_dir: str) -> dict[str, np.ndarray]:
    path = os.path.join(model_dir, ModelFile.TORCH_MODEL_FILE)
    if not os.path.isfile(path):
        raise ModelNotFoundError(f"{model_dir}: missing weight file {ModelFile.TORCH_MODEL_FILE}")
    try:
        # MogFaceDetector.load_model passes torch.load's result straight to load_state_dict: a flat state dict
        return state_dict_from(load_torch(path), param_key=None)
    except CheckpointError as e:
        raise InvalidModelError(f"{path}: {e}") from e


class MogFace:
    """A loaded MogFace network: ``run(x)`` maps (1, 3, H, W) float32 to the 12 per-level output maps."""

    def __init__(self, model_dir: str, config: dict | None = None):
        self.weights_path = os.path.join(model_dir, ModelFile.TORCH_MODEL_FILE)
        try:  # the graph copies the weights: the state dict is dropped once it is built
            self.graph = _C.build_model("mogface", {"layers": LAYERS}, load_state(model_dir))
        except _C.WeightError as e:
            raise InvalidModelError(f"{self.weights_path}: {e}") from None

    def run(self, x: np.ndarray, threads: int) -> list[np.ndarray]:
        return self.graph.run([x], threads=threads)
