"""NAFNet (image denoising / deblurring; ModelScope's ``nafnet-image-denoise`` / ``nafnet-image-deblur``).

Settings: ``configuration.json`` ``model.network_g`` (img_channel, width, enc_blk_nums, middle_blk_num,
dec_blk_nums). Weights: ``pytorch_model.pt`` (BasicSR names: intro, encoders.i.j.*, downs.i, middle_blks.j.*,
ups.i.0, decoders.i.j.*, ending), selected as ModelScope's TorchModel does (``params`` key if present,
``module.`` stripped).

Graph: input (1, H, W, C) in [0, 1] (NHWC caller buffers), padded by the caller to a multiple of
2**len(enc_blk_nums); output clamp(net(x) + x, 0, 1). NAFBlock(c):
    x = LN(inp) -> 1x1 c->2c -> dw3x3 -> SimpleGate -> x * conv1x1(avgpool(x)) -> 1x1 -> y = inp + x * beta
    x = LN(y) -> 1x1 c->2c -> SimpleGate -> 1x1 -> out = y + x * gamma
(the beta/gamma products and residual adds become post-ops of the 1x1 convolutions). The decoder's 1x1 conv +
PixelShuffle(2) is one 2x2 stride-2 deconvolution (the same dot product per output pixel).
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InvalidModelError
from ..graph import Builder
from ..utils.constant import ModelFile
from .base import Model, torch_state_dict, weight_file

SETTINGS = {"img_channel": 3, "width": 16, "middle_blk_num": 1, "enc_blk_nums": [], "dec_blk_nums": []}
MAX_BLOCKS = 1000
MAX_LEVELS = 8
MAX_WIDTH = 1 << 16
LAYER_NORM_EPS = 1e-6


def _network_settings(config: dict, config_path: str) -> dict:
    try:
        net = dict(config["model"]["network_g"])
    except (KeyError, TypeError, ValueError):
        raise InvalidModelError(f"{config_path}: NAFNet needs model.network_g hyper-parameters") from None
    settings = dict(SETTINGS)
    for key, value in net.items():
        if key not in SETTINGS:
            continue  # e.g. 'type'
        if isinstance(SETTINGS[key], list):
            ok = (
                isinstance(value, list)
                and len(value) <= MAX_LEVELS
                and all(
                    isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_BLOCKS for v in value
                )
            )
        else:
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_WIDTH
        if not ok:
            raise InvalidModelError(f"{config_path}: model.network_g.{key} has an invalid value {value!r}")
        settings[key] = value
    if len(settings["enc_blk_nums"]) != len(settings["dec_blk_nums"]):
        raise InvalidModelError(f"{config_path}: enc_blk_nums and dec_blk_nums must have the same length")
    if settings["img_channel"] < 1 or settings["width"] < 1:
        raise InvalidModelError(f"{config_path}: img_channel and width must be positive")
    if settings["width"] << len(settings["enc_blk_nums"]) > MAX_WIDTH:
        raise InvalidModelError(f"{config_path}: NAFNet width {settings['width']} is too large")
    return settings


def _naf_block(b: Builder, inp, prefix: str, c: int):
    g = b.g
    x = g.layer_norm(
        inp,
        scale=b.const(f"{prefix}.norm1.weight", (c,)),
        shift=b.const(f"{prefix}.norm1.bias", (c,)),
        eps=LAYER_NORM_EPS,
    )
    x = b.conv(x, f"{prefix}.conv1", 2 * c, 1)
    x = b.conv(x, f"{prefix}.conv2", 2 * c, 3, padding=1, groups=2 * c)
    x = g.simple_gate(x)
    x = g.binary(x, b.conv(g.global_avg_pool(x), f"{prefix}.sca.1", c, 1), op="mul")
    x = b.conv(x, f"{prefix}.conv3", c, 1)
    y = g.binary(g.binary(x, b.const(f"{prefix}.beta", (1, c, 1, 1)), op="mul"), inp, op="add")
    x = g.layer_norm(
        y,
        scale=b.const(f"{prefix}.norm2.weight", (c,)),
        shift=b.const(f"{prefix}.norm2.bias", (c,)),
        eps=LAYER_NORM_EPS,
    )
    x = b.conv(x, f"{prefix}.conv4", 2 * c, 1)
    x = b.conv(g.simple_gate(x), f"{prefix}.conv5", c, 1)
    return g.binary(g.binary(x, b.const(f"{prefix}.gamma", (1, c, 1, 1)), op="mul"), y, op="add")


def _up(b: Builder, x, level: int, c: int):
    """ups.<level>: Conv2d(c, 2c, 1, bias=False) + PixelShuffle(2) as ConvTranspose2d(c, c/2, 2, stride 2):
    deconv weight [k][co][i][j] = conv weight [co*4 + i*2 + j][k]."""
    w = b.w.take(f"ups.{level}.0.weight", (2 * c, c, 1, 1))
    w = np.ascontiguousarray(w.reshape(c // 2, 2, 2, c).transpose(3, 0, 1, 2))
    return b.g.deconv2d(x, b.g.const(w), stride=2)


class NAFNet(Model):
    """``run(x)``: (1, H, W, C) float32 in [0, 1] -> the clamped restored image (padding is the caller's)."""

    network = "nafnet"
    layout = "nhwc"
    precisions = ("fp32", "bf16")  # gate: tests/models/test_precision.py

    def __init__(self, model_dir: str, config: dict, threads: int, **options) -> None:
        self.settings = _network_settings(config, os.path.join(model_dir, ModelFile.CONFIGURATION))
        self.pad_multiple = 2 ** len(self.settings["enc_blk_nums"])
        self.channels = self.settings["img_channel"]
        super().__init__(model_dir, config, threads, **options)

    def read_weights(self, model_dir, config):
        path = weight_file(model_dir, ModelFile.TORCH_MODEL_FILE)
        return torch_state_dict(path, param_key="params"), path

    def build(self, b: Builder):
        s = self.settings
        g = b.g
        inp = g.input(channels=s["img_channel"])
        x = b.conv(inp, "intro", s["width"], 3, padding=1)
        skips, c = [], s["width"]
        for i, blocks in enumerate(s["enc_blk_nums"]):
            for j in range(blocks):
                x = _naf_block(b, x, f"encoders.{i}.{j}", c)
            skips.append(x)
            x = b.conv(x, f"downs.{i}", 2 * c, 2, stride=2)
            c *= 2
        for j in range(s["middle_blk_num"]):
            x = _naf_block(b, x, f"middle_blks.{j}", c)
        for i, blocks in enumerate(s["dec_blk_nums"]):
            x = g.binary(_up(b, x, i, c), skips.pop(), op="add")
            c //= 2
            for j in range(blocks):
                x = _naf_block(b, x, f"decoders.{i}.{j}", c)
        x = g.binary(b.conv(x, "ending", s["img_channel"], 3, padding=1), inp, op="add")
        return [g.eltwise(x, act="clip", alpha=0.0, beta=1.0)]

    def restore(self, x: np.ndarray) -> np.ndarray:
        """x: (1, H, W, C) float32. Pads bottom/right with zeros to the network's multiple, as NAFNet does."""
        h, w = x.shape[1:3]
        m = self.pad_multiple
        ph, pw = (m - h % m) % m, (m - w % m) % m
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)))
        return self.run(x)[0][:, :h, :w]
