"""RRDBNet x2 (Real-ESRNet), the super-resolution stage of ModelScope's GPEN portrait-enhancement pipeline.

ModelScope's ``ImagePortraitEnhancementPipeline`` builds ``RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=32,
num_block=23, num_grow_ch=32, scale=2)`` (BasicSR's architecture, ``models/cv/super_resolution/rrdbnet_arch.py``)
and loads ``super_resolution/realesrnet_x2.pth`` with ``torch.load(path)['params_ema']`` and
``load_state_dict(strict=True)``. msvision selects the weights the same way: the checkpoint must hold a
``params_ema`` mapping (no fallback to ``params`` or to the top level, and no ``module.`` stripping, which
ModelScope does not do either: such checkpoints fail to load there too), and every weight is taken strictly.

Graph (:class:`RRDBNet`): input (1, H, W, 3) float32 RGB in [0, 1] (NHWC caller buffers), H and W even (the
pipeline reflect-pads to even sizes); output (1, 2H, 2W, 3), not clamped (the pipeline clamps to [0, 1]).

    feat = conv_first(pixel_unshuffle(x, 2))
    feat = feat + conv_body(RRDB x 23 (feat))
    feat = lrelu(conv_up1(nearest x2 (feat))); feat = lrelu(conv_up2(nearest x2 (feat)))
    out = conv_last(lrelu(conv_hr(feat)))

ResidualDenseBlock: x1..x4 = lrelu(conv_k(cat(x, x1, ...))), out = 0.2 * conv5(cat(x, x1, ..., x4)) + x; RRDB:
0.2 * rdb3(rdb2(rdb1(x))) + x. The 0.2 of each dense block is folded into conv5's weights and bias (one float
rounding apart from torch's product), and every activation and residual add is a post-op of the convolution
before it. rdb3's conv5 folds the RRDB's 0.2 too (0.04 in all) and adds 0.2 x + the RRDB input, one element-wise
step computed beforehand, so that it, like every other 3x3 convolution here, runs as a Winograd convolution
(whose epilogue takes one residual add).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..checkpoint import load_torch
from ..errors import InvalidModelError
from ..graph import Builder
from .base import Model, weight_file

WEIGHT_FILE = ("super_resolution", "realesrnet_x2.pth")
PARAM_KEY = "params_ema"
IN_CH = 3
OUT_CH = 3
NUM_FEAT = 32
NUM_BLOCK = 23
NUM_GROW = 32
SCALE = 2
LRELU = ("leaky_relu", 0.2)
RESIDUAL_SCALE = 0.2


def read_params_ema(path: str) -> dict[str, np.ndarray]:
    """``torch.load(path)['params_ema']`` as ModelScope's pipeline indexes it, read without torch."""
    try:
        checkpoint = load_torch(path)
    except OSError as e:
        raise InvalidModelError(f"cannot read {path}: {e}") from e
    if not isinstance(checkpoint, Mapping) or PARAM_KEY not in checkpoint:
        raise InvalidModelError(
            f"{path}: the checkpoint has no '{PARAM_KEY}' entry (ModelScope loads that one)"
        )
    sd = checkpoint[PARAM_KEY]
    if not isinstance(sd, Mapping):
        raise InvalidModelError(
            f"{path}: checkpoint entry '{PARAM_KEY}' is a {type(sd).__name__}, not a mapping"
        )
    for key, value in sd.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise InvalidModelError(f"{path}: '{PARAM_KEY}' entry {key!r} is not a named array")
    return dict(sd)


def _dense_block(b: Builder, x, prefix: str, rrdb_input=None):
    """ResidualDenseBlock ``prefix``: 0.2 conv5(...) + x. With ``rrdb_input``, the RRDB's
    ``0.2 (0.2 conv5(...) + x) + rrdb_input`` instead, computed as ``0.04 conv5(...) + (0.2 x + rrdb_input)``:
    conv5 then ends in a single residual add, which the Winograd convolution fuses."""
    g = b.g
    feats = [x]
    for k in range(1, 5):
        inp = feats[0] if k == 1 else g.concat(feats, axis=1)
        feats.append(b.conv(inp, f"{prefix}.conv{k}", NUM_GROW, 3, padding=1, act=LRELU))
    cin = NUM_FEAT + 4 * NUM_GROW
    scale = np.float32(RESIDUAL_SCALE)
    if rrdb_input is not None:
        scale = np.float32(RESIDUAL_SCALE * RESIDUAL_SCALE)
        x = g.binary(g.eltwise(x, act="linear", alpha=RESIDUAL_SCALE, beta=0.0), rrdb_input, op="add")
    w = b.w.take(f"{prefix}.conv5.weight", (NUM_FEAT, cin, 3, 3)) * scale
    bias = b.w.take(f"{prefix}.conv5.bias", (NUM_FEAT,)) * scale
    y = g.conv2d(g.concat(feats, axis=1), g.const(w), bias=g.const(bias), padding=1)
    return g.binary(y, x, op="add")


class RRDBNet(Model):
    """``run(x)``: (1, H, W, 3) float32 RGB in [0, 1], H and W even -> [(1, 2H, 2W, 3)] (not clamped)."""

    network = "rrdbnet"
    layout = "nhwc"

    def read_weights(self, model_dir, config):
        path = weight_file(model_dir, *WEIGHT_FILE)
        return read_params_ema(path), path

    def build(self, b: Builder):
        g = b.g
        x = g.input(channels=IN_CH)
        feat = g.pixel_unshuffle(x, factor=SCALE)
        feat = b.conv(feat, "conv_first", NUM_FEAT, 3, padding=1)
        y = feat
        for i in range(NUM_BLOCK):
            inp = y
            y = _dense_block(b, y, f"body.{i}.rdb1")
            y = _dense_block(b, y, f"body.{i}.rdb2")
            y = _dense_block(b, y, f"body.{i}.rdb3", rrdb_input=inp)
        feat = g.binary(b.conv(y, "conv_body", NUM_FEAT, 3, padding=1), feat, op="add")
        for name in ("conv_up1", "conv_up2"):
            feat = g.resize(feat, mode="nearest", scale=2.0)
            feat = b.conv(feat, name, NUM_FEAT, 3, padding=1, act=LRELU)
        feat = b.conv(feat, "conv_hr", NUM_FEAT, 3, padding=1, act=LRELU)
        return [b.conv(feat, "conv_last", OUT_CH, 3, padding=1)]
