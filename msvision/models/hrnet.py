"""HRNetV2 body keypoints (ModelScope ``damo/cv_hrnetv2w32_body-2d-keypoints_image``): model directory -> C-core
graph, and the heatmap decoding of ModelScope's ``KeypointsDetection``.

The weights are ``pytorch_model.pt``, the flat state dict of ModelScope's ``PoseHighResolutionNetV2`` built with
``cfg_128x128_15`` (modelscope/models/cv/body_2d_keypoints/w48.py: widths 48, 96, 192, 384 despite the "w32" in the
id; 4 basic blocks per branch; 1, 4 and 3 modules in stages 2, 3 and 4; 128x128 input, 32x32 heatmaps, 15 joints).
ModelScope loads it with ``strict=False``, so a checkpoint missing a layer silently runs that layer with random
weights; msvision loads strictly and names the missing and unexpected weights.

Network (module names = checkpoint names): stem (two 3x3 stride-2 conv-BN-ReLU), layer1 (4 bottlenecks to 256),
transition1 (3x3 to 48; 3x3 stride 2 to 96), stages 2-4 of HighResolutionModules (per branch 4 BasicBlocks; fuse
layers: 1x1 conv-BN + nearest x2^k from coarser branches, chains of 3x3 stride-2 conv-BN(-ReLU) from finer ones,
summed then ReLU), transitions 2 and 3 (a 3x3 stride-2 conv-BN-ReLU from the coarsest branch), then the HRNetV2
head: branches 2-4 resized bilinearly (align_corners False) to the finest, concatenated (720 channels), 1x1
conv-BN-ReLU, 1x1 conv to 15 heatmaps.
"""

from __future__ import annotations

import numpy as np

from ..graph import Builder
from ..utils.constant import ModelFile
from .base import Model, torch_state_dict, weight_file

INPUT_SIZE = 128
HEATMAP_SIZE = 32
NUM_JOINTS = 15
BN_EPS = 1e-5
STEM = 64
LAYER1_BLOCKS = 4
BOTTLENECK_EXPANSION = 4
# stage -> (modules, widths); every branch has 4 BasicBlocks
STAGES = {2: (1, (48, 96)), 3: (4, (48, 96, 192)), 4: (3, (48, 96, 192, 384))}
BLOCKS_PER_BRANCH = 4


class HRNet(Model):
    """Input: (N, 128, 128, 3) normalised RGB (NHWC); output: (N, 32, 32, 15) heatmaps (NHWC)."""

    network = "hrnet"
    layout = "nhwc"
    precisions = ("fp32", "bf16")  # gate: tests/models/test_precision.py

    def read_weights(self, model_dir, config):
        path = weight_file(model_dir, ModelFile.TORCH_MODEL_FILE)
        return torch_state_dict(path, param_key=None), path

    def _conv_bn(
        self, b: Builder, x, conv: str, bn: str, out: int, k: int, stride: int = 1, relu: bool = True
    ):
        return b.conv_bn(
            x, conv, bn, out, k, stride=stride, padding=(k - 1) // 2, eps=BN_EPS, act="relu" if relu else None
        )

    def _bottleneck(self, b: Builder, x, prefix: str, planes: int):
        out = planes * BOTTLENECK_EXPANSION
        residual = x
        if b.channels(x) != out:
            residual = self._conv_bn(
                b, x, f"{prefix}.downsample.0", f"{prefix}.downsample.1", out, 1, relu=False
            )
        y = self._conv_bn(b, x, f"{prefix}.conv1", f"{prefix}.bn1", planes, 1)
        y = self._conv_bn(b, y, f"{prefix}.conv2", f"{prefix}.bn2", planes, 3)
        y = self._conv_bn(b, y, f"{prefix}.conv3", f"{prefix}.bn3", out, 1, relu=False)
        return b.act(b.g.binary(y, residual, op="add"), "relu")

    def _basic(self, b: Builder, x, prefix: str, planes: int):
        residual = x
        if b.channels(x) != planes:
            residual = self._conv_bn(
                b, x, f"{prefix}.downsample.0", f"{prefix}.downsample.1", planes, 1, relu=False
            )
        y = self._conv_bn(b, x, f"{prefix}.conv1", f"{prefix}.bn1", planes, 3)
        y = self._conv_bn(b, y, f"{prefix}.conv2", f"{prefix}.bn2", planes, 3, relu=False)
        return b.act(b.g.binary(y, residual, op="add"), "relu")

    def _module(self, b: Builder, xs: list, prefix: str, widths) -> list:
        """HighResolutionModule: the branches, then every output i as the ReLU of the sum over inputs j."""
        xs = list(xs)
        for i, width in enumerate(widths):
            for k in range(BLOCKS_PER_BRANCH):
                xs[i] = self._basic(b, xs[i], f"{prefix}.branches.{i}.{k}", width)
        outs = []
        for i in range(len(widths)):
            y = None
            for j in range(len(widths)):
                f = f"{prefix}.fuse_layers.{i}.{j}"
                if j == i:
                    t = xs[j]
                elif j > i:  # coarser: 1x1 conv-BN, nearest upsampling by 2^(j - i)
                    t = self._conv_bn(b, xs[j], f"{f}.0", f"{f}.1", widths[i], 1, relu=False)
                    t = b.g.resize(t, mode="nearest", scale=(2.0 ** (j - i),) * 2)
                else:  # finer: i - j 3x3 stride-2 conv-BN, ReLU between them
                    t = xs[j]
                    for k in range(i - j):
                        last = k == i - j - 1
                        t = self._conv_bn(
                            b,
                            t,
                            f"{f}.{k}.0",
                            f"{f}.{k}.1",
                            widths[i] if last else widths[j],
                            3,
                            2,
                            relu=not last,
                        )
                y = t if y is None else b.g.binary(y, t, op="add")
            outs.append(b.act(y, "relu"))
        return outs

    def _transition(self, b: Builder, xs: list, prefix: str, widths) -> list:
        """A new coarser branch from the last one (3x3 stride 2 conv-BN-ReLU); existing branches unchanged (their
        widths match here) or, where they differ, a 3x3 conv-BN-ReLU of the last branch, as ModelScope's forward."""
        out = []
        for i, width in enumerate(widths):
            if i < len(xs) and b.channels(xs[i]) == width:
                out.append(xs[i])
            elif i < len(xs):
                src = xs[i] if len(xs) == 1 else xs[-1]
                out.append(self._conv_bn(b, src, f"{prefix}.{i}.0", f"{prefix}.{i}.1", width, 3))
            else:
                out.append(self._conv_bn(b, xs[-1], f"{prefix}.{i}.0.0", f"{prefix}.{i}.0.1", width, 3, 2))
        return out

    def build(self, b: Builder):
        x = b.g.input(channels=3)
        x = self._conv_bn(b, x, "conv1", "bn1", STEM, 3, 2)
        x = self._conv_bn(b, x, "conv2", "bn2", STEM, 3, 2)
        for k in range(LAYER1_BLOCKS):
            x = self._bottleneck(b, x, f"layer1.{k}", STEM)
        xs = [x]
        for stage, (modules, widths) in STAGES.items():
            xs = self._transition(b, xs, f"transition{stage - 1}", widths)
            for m in range(modules):
                xs = self._module(b, xs, f"stage{stage}.{m}", widths)
        size = (HEATMAP_SIZE, HEATMAP_SIZE)
        y = b.g.concat([xs[0]] + [b.g.resize(t, mode="bilinear", size=size) for t in xs[1:]], axis=1)
        channels = b.channels(y)
        y = b.conv_bn(
            y, "final_layer.0", "final_layer.1", channels, 1, conv_bias=True, eps=BN_EPS, act="relu"
        )
        return [b.conv(y, "final_layer.3", NUM_JOINTS, 1)]


def decode_heatmaps(heatmaps: np.ndarray):
    """ModelScope's ``get_pts`` for a batch, vectorised: heatmaps (N, 32, 32, 15) NHWC -> (x, y) (N, 15) float64
    heatmap coordinates and scores (N, 15) float32. Per joint: the first maximum in row-major order, moved 0.25
    towards the larger of its two neighbours along each axis (not on the border)."""
    n = heatmaps.shape[0]
    h, w = heatmaps.shape[1:3]
    maps = np.ascontiguousarray(heatmaps.transpose(0, 3, 1, 2)).reshape(n, NUM_JOINTS, h * w)
    flat = np.argmax(maps, axis=2)  # the first maximum, as np.where(heatmap == max)[..][0]
    scores = np.take_along_axis(maps, flat[..., None], axis=2)[..., 0]
    y, x = flat // w, flat % w
    inner = (x >= 1) & (x <= w - 2) & (y >= 1) & (y <= h - 2)

    def at(dy, dx):
        idx = np.clip(y + dy, 0, h - 1) * w + np.clip(x + dx, 0, w - 1)
        return np.take_along_axis(maps, idx[..., None], axis=2)[..., 0]

    x_sign = np.sign(at(0, 1) - at(0, -1))
    y_sign = np.sign(at(1, 0) - at(-1, 0))
    px = np.where(inner, x + x_sign * 0.25, x).astype(np.float64)
    py = np.where(inner, y + y_sign * 0.25, y).astype(np.float64)
    return px, py, scores
