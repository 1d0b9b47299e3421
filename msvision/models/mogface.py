"""MogFace (ModelScope ``damo/cv_resnet101_face-detection_cvpr22papermogface``): model directory -> C-core graph.

The weights are ``pytorch_model.pt``, the flat state dict of ModelScope's ``MogFace`` module (ResNet-101 backbone,
LFPN, MogPredNet) that ``MogFaceDetector`` hands to ``load_state_dict``. The configuration carries no
hyper-parameters (ModelScope's detector always builds the same network).

The graph (:class:`MogFace`) maps a (1, H, W, 3) normalised RGB image (NHWC) of any size to 12 maps: per level
(strides 4, 8, 16, 32, 64, 128) sigmoid(cls) (1 channel) and loc (4 channels).
"""

from __future__ import annotations

import numpy as np

from ..graph import Builder, torchvision_resnet
from ..utils.constant import ModelFile
from .base import Model, torch_state_dict, weight_file

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


BN_EPS = 1e-5
GN_EPS = 1e-5
GN_GROUPS = 16
FPN_CH = 256
HEAD_CH = 512
SSH_CONVS = (  # pred_net.conv_SSH.<name>: in, out, dilation (3x3, padding = dilation)
    ("conv1", FPN_CH, HEAD_CH // 2, 1),
    ("conv2", FPN_CH, HEAD_CH // 4, 2),
    ("conv2_1", HEAD_CH // 4, HEAD_CH // 4, 1),
    ("conv2_2", HEAD_CH // 4, HEAD_CH // 4, 2),
    ("conv2_2_1", HEAD_CH // 4, HEAD_CH // 4, 1),
)
DSFD_IN = (256, 512, 1024, 2048, 256, 256)  # fpn.dsfd_modules.i: computed by ModelScope's LFPN, never used


def _fuse(b: Builder, up, main, name: str):
    """FeatureFusion: main_conv(main) + bilinear x2 of up cropped to main's size (one resize_like op: up2(x)
    keeps one row or column more than main exactly when main's size is odd)."""
    m = b.conv(main, f"fpn.{name}.main_conv", FPN_CH, 1)
    return b.g.binary(m, b.g.resize_like(up, main, mode="bilinear", scale=2.0), op="add")


class _PredNet:
    """MogPredNet's weights, shared by the six levels (graph constants created once)."""

    def __init__(self, b: Builder):
        self.b = b
        self.ssh = [
            (
                b.const(f"pred_net.conv_SSH.{n}.weight", (o, i, 3, 3)),
                b.const(f"pred_net.conv_SSH.{n}.bias", (o,)),
                d,
            )
            for n, i, o, d in SSH_CONVS
        ]
        self.heads = []
        for head, out in (("deep_cls_head", 1), ("deep_loc_head", 4)):
            p = f"pred_net.{head}"
            conv1 = (
                b.const(f"{p}.conv1.weight", (HEAD_CH, HEAD_CH, 3, 3)),
                b.const(f"{p}.conv1.bias", (HEAD_CH,)),
            )
            for k in (2, 3, 4):  # defined by DeepHead, never called by its forward
                b.w.skip(f"{p}.conv{k}.weight", (HEAD_CH, HEAD_CH, 3, 3))
                b.w.skip(f"{p}.conv{k}.bias", (HEAD_CH,))
            norms = [
                (b.const(f"{p}.gn{k}.weight", (HEAD_CH,)), b.const(f"{p}.gn{k}.bias", (HEAD_CH,)))
                for k in (1, 2, 3, 4)
            ]
            pred = "pred_net.pred_cls" if out == 1 else "pred_net.pred_loc"
            final = (b.const(f"{pred}.weight", (out, HEAD_CH, 3, 3)), b.const(f"{pred}.bias", (out,)))
            self.heads.append((conv1, norms, final))

    def level(self, x) -> list:
        """sigmoid(cls) and loc of one level. The deep head applies the SAME conv1 four times (as ModelScope's
        DeepHead does), each followed by its own GroupNorm + ReLU."""
        g = self.b.g

        def conv(x, wb, dilation=1):
            return g.conv2d(x, wb[0], bias=wb[1], padding=dilation, dilation=dilation)

        relu = lambda x: g.eltwise(x, act="relu")  # noqa: E731
        s1, s2, s21, s22, s221 = ((w, bias) for w, bias, _ in self.ssh)
        x1 = relu(conv(x, s1))
        x2 = relu(conv(x, s2, dilation=2))
        x21 = relu(conv(x2, s21))
        x22 = relu(conv(relu(conv(x2, s22, dilation=2)), s221))
        context = g.concat([x1, x21, x22])
        outs = []
        for conv1, norms, final in self.heads:
            y = context
            for scale, shift in norms:
                y = relu(g.group_norm(conv(y, conv1), groups=GN_GROUPS, scale=scale, shift=shift, eps=GN_EPS))
            outs.append(conv(y, final))
        outs[0] = g.eltwise(outs[0], act="sigmoid")
        return outs


class MogFace(Model):
    """The MogFace network: ``run(x)`` maps (1, H, W, 3) float32 (NHWC) to the 12 per-level NHWC maps: per level
    (strides 4, 8, ..., 128) sigmoid(cls) (1 channel) then loc (4 channels).

    ResNet-101 (BatchNorm folded into the convolutions) -> c2..c5; LFPN: c6 = [1x1 2048->512 + BN + ReLU,
    3x3/2 -> 512 + BN + ReLU](c5), c7 likewise (-> 128 -> 256); 3x3 laterals of c5/c6/c7; p4 = fuse(c5_lat, c4),
    p3 = fuse(p4, c3), p2 = fuse(p3, c2) and their 3x3 laterals; MogPredNet on [p2, p3, p4, c5_lat, c6_lat,
    c7_lat]. The weights are the flat state dict ``MogFaceDetector`` hands to ``load_state_dict``."""

    network = "mogface"
    layout = "nhwc"

    def read_weights(self, model_dir, config):
        path = weight_file(model_dir, ModelFile.TORCH_MODEL_FILE)
        return torch_state_dict(path, param_key=None), path

    def build(self, b: Builder):
        x = b.g.input(channels=3)
        features = torchvision_resnet(b, x, "backbone", LAYERS, eps=BN_EPS)
        c2, c3, c4, c5 = features
        c6 = b.conv_bn(c5, "fpn.c6.0", "fpn.c6.1", 512, 1, conv_bias=True, eps=BN_EPS, act="relu")
        c6 = b.conv_bn(
            c6, "fpn.c6.3", "fpn.c6.4", 512, 3, stride=2, padding=1, conv_bias=True, eps=BN_EPS, act="relu"
        )
        c7 = b.conv_bn(c6, "fpn.c7.0", "fpn.c7.1", 128, 1, conv_bias=True, eps=BN_EPS, act="relu")
        c7 = b.conv_bn(
            c7, "fpn.c7.3", "fpn.c7.4", 256, 3, stride=2, padding=1, conv_bias=True, eps=BN_EPS, act="relu"
        )
        c5_lat, c6_lat, c7_lat = (
            b.conv(c, f"fpn.{n}", FPN_CH, 3, padding=1)
            for c, n in ((c5, "c5_lat"), (c6, "c6_lat"), (c7, "c7_lat"))
        )
        for i, cin in enumerate(DSFD_IN):
            b.w.skip(f"fpn.dsfd_modules.{i}.weight", (FPN_CH, cin, 3, 3))
            b.w.skip(f"fpn.dsfd_modules.{i}.bias", (FPN_CH,))
        p4 = _fuse(b, c5_lat, c4, "ff_c5_c4")
        p3 = _fuse(b, p4, c3, "ff_c4_c3")
        p2 = _fuse(b, p3, c2, "ff_c3_c2")
        p2, p3, p4 = (
            b.conv(p, f"fpn.{n}", FPN_CH, 3, padding=1)
            for p, n in ((p2, "p2_lat"), (p3, "p3_lat"), (p4, "p4_lat"))
        )
        pred = _PredNet(b)
        return [out for level in (p2, p3, p4, c5_lat, c6_lat, c7_lat) for out in pred.level(level)]
