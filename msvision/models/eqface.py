"""EQFace face-quality assessment (FQA), the face filter of ModelScope's GPEN portrait-enhancement pipeline.

ModelScope's ``eqface.fqa.FQA`` builds ``ResNet(num_layers=100, feature_dim=512)`` (weights
``face_quality/eqface_backbone.pth``) and ``FaceQuality(512 * 7 * 7)`` (``face_quality/eqface_quality.pth``), both
flat state dicts whose ``module.`` prefixes are stripped. **Loading differs from ModelScope's**: its
``FQA.load_state_dict`` keeps only the checkpoint keys that exist in the module with the same size and silently
leaves every other parameter at its random initialisation; msvision loads both strictly, so a missing or mis-shaped
weight (or one that belongs to no layer) is an :class:`~msvision.errors.InvalidModelError` naming it. The two state
dicts are merged under the names ``backbone.<key>`` and ``quality.<key>``.

Graph (:class:`EQFace`): input (1, 112, 112, 3) float32 NHWC, already normalised ((x - 127.5) / 128, in the channel
order the backbone sees: ``get_face_quality`` flips BGR to RGB first); outputs [feature (1, 1, 1, 512), quality
(1, 1, 1, 1)]: ``get_face_quality`` returns ``(quality[0, 0, 0, 0], feature[0, 0, 0])``.

Backbone (IR-ResNet-100): input_layer conv3x3 + BN + PReLU; 4 stages (3, 13, 30, 3 BottleNeck_IR blocks, each
stage's first block strided 2 with a 1x1 conv + BN shortcut):
    res = BN(conv3x3/s(PReLU(BN(conv3x3(BN(x)))))), out = shortcut(x) + res
The BatchNorm in front of conv1 is a per-channel multiply-add (folding it into the zero-padded convolution would be
wrong on the border); the others fold into their convolutions, the PReLU and the residual add are post-ops.
output_layer: BN2d(512) -> Dropout (identity in eval) -> Flatten (torch's C, H, W order, which is the core's linear
order too); fc = that flattened tensor. feature = BN1d(Linear(fc)); quality = softmax(Linear(ReLU(BN1d(
Linear(fc)))))[:, 0]. BN2d folds into both linears reading fc, each BN1d into the linear before it, and the two-way
softmax's first entry is sigmoid(l0 - l1): one linear with weights W0 - W1 and a sigmoid post-op.
"""

from __future__ import annotations

import numpy as np

from ..graph import Builder
from .base import Model, torch_state_dict, weight_file

BACKBONE_FILE = ("face_quality", "eqface_backbone.pth")
QUALITY_FILE = ("face_quality", "eqface_quality.pth")
LAYERS = (3, 13, 30, 3)  # get_layers(100)
CHANNELS = (64, 64, 128, 256, 512)
FEATURE_DIM = 512
QUALITY_HIDDEN = 512
SIZE = 112
FINAL = 7  # 112 / 2**4
BN_EPS = 1e-5


def _bn(b: Builder, prefix: str, c: int):
    """BatchNorm ``prefix`` as (scale, shift) in float64: y = x * scale + shift."""
    gamma, beta, mean, var = (
        b.w.take(f"{prefix}.{p}", (c,)) for p in ("weight", "bias", "running_mean", "running_var")
    )
    b.w.skip(f"{prefix}.num_batches_tracked", ())
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + BN_EPS)
    return scale, beta - mean * scale


def _affine(b: Builder, x, prefix: str, c: int):
    """x * scale + shift per channel (an inference BatchNorm2d not next to a convolution)."""
    scale, shift = _bn(b, prefix, c)
    g = b.g
    y = g.binary(x, g.const(scale.astype(np.float32).reshape(1, c, 1, 1)), op="mul")
    return g.binary(y, g.const(shift.astype(np.float32).reshape(1, c, 1, 1)), op="add")


def _prelu(b: Builder, x, name: str, c: int):
    return b.g.prelu(x, b.const(name, (c,)))


def _block(b: Builder, x, prefix: str, cin: int, cout: int, stride: int, dim_match: bool):
    p = f"{prefix}.res_layer"
    y = _affine(b, x, f"{p}.0", cin)
    y = _prelu(b, b.conv_bn(y, f"{p}.1", f"{p}.2", cout, 3, padding=1, eps=BN_EPS), f"{p}.3.weight", cout)
    y = b.conv_bn(y, f"{p}.4", f"{p}.5", cout, 3, stride=stride, padding=1, eps=BN_EPS)
    if dim_match:
        shortcut = x
    else:
        s = f"{prefix}.shortcut_layer"
        shortcut = b.conv_bn(x, f"{s}.0", f"{s}.1", cout, 1, stride=stride, eps=BN_EPS)
    return b.g.binary(y, shortcut, op="add")


def _fold_input_affine(weight, bias, scale, shift, c):
    """Linear (O, c * FINAL * FINAL) over torch's flattened (C, H, W) of (x * scale[c] + shift[c]): the same linear
    on x with weight * scale and bias + weight @ shift (float64, then float32)."""
    w = weight.astype(np.float64).reshape(-1, c, FINAL * FINAL)
    b = (0 if bias is None else bias.astype(np.float64)) + (w * shift[None, :, None]).sum(axis=(1, 2))
    w = (w * scale[None, :, None]).reshape(weight.shape[0], -1)
    return w, b


def _fold_output_affine(weight, bias, scale, shift):
    """A linear followed by a BatchNorm1d (y * scale + shift) as one linear, in float32."""
    w = weight * scale[:, None]
    b = bias * scale + shift
    return np.ascontiguousarray(w, np.float32), np.ascontiguousarray(b, np.float32)


class EQFace(Model):
    """``run(x)``: (1, 112, 112, 3) normalised float32 -> [feature (1, 1, 1, 512), quality score (1, 1, 1, 1)]."""

    network = "eqface"
    layout = "nhwc"

    def read_weights(self, model_dir, config):
        backbone = weight_file(model_dir, *BACKBONE_FILE)
        quality = weight_file(model_dir, *QUALITY_FILE)
        arrays = {f"backbone.{k}": v for k, v in torch_state_dict(backbone, param_key=None).items()}
        arrays.update({f"quality.{k}": v for k, v in torch_state_dict(quality, param_key=None).items()})
        return arrays, f"{backbone} + {quality}"

    def build(self, b: Builder):
        g = b.g
        x = g.input(channels=3)
        x = b.conv_bn(
            x, "backbone.input_layer.0", "backbone.input_layer.1", CHANNELS[0], 3, padding=1, eps=BN_EPS
        )
        x = _prelu(b, x, "backbone.input_layer.2.weight", CHANNELS[0])
        for stage, blocks in enumerate(LAYERS):
            cin, cout = CHANNELS[stage], CHANNELS[stage + 1]
            for i in range(blocks):
                x = _block(
                    b,
                    x,
                    f"backbone.layer{stage + 1}.{i}",
                    cin if i == 0 else cout,
                    cout,
                    2 if i == 0 else 1,
                    i > 0,
                )
        c = CHANNELS[-1]
        flat = c * FINAL * FINAL
        scale, shift = _bn(
            b, "backbone.output_layer.0", c
        )  # fc = BN2d(x).flatten(1), folded into the linears

        w, bias = _fold_input_affine(
            b.w.take("backbone.feature_layer.0.weight", (FEATURE_DIM, flat)),
            b.w.take("backbone.feature_layer.0.bias", (FEATURE_DIM,)),
            scale,
            shift,
            c,
        )
        w, bias = _fold_output_affine(w, bias, *_bn(b, "backbone.feature_layer.1", FEATURE_DIM))
        feature = g.linear(x, g.const(w), bias=g.const(bias))

        w, bias = _fold_input_affine(
            b.w.take("quality.qualtiy.0.weight", (QUALITY_HIDDEN, flat)), None, scale, shift, c
        )
        w, bias = _fold_output_affine(w, bias, *_bn(b, "quality.qualtiy.1", QUALITY_HIDDEN))
        hidden = g.eltwise(g.linear(x, g.const(w), bias=g.const(bias)), act="relu")
        logits = b.w.take("quality.qualtiy.3.weight", (2, QUALITY_HIDDEN))
        w = (logits[0:1].astype(np.float64) - logits[1:2]).astype(np.float32)
        quality = g.eltwise(g.linear(hidden, g.const(w)), act="sigmoid")
        return [feature, quality]
