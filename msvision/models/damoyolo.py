"""DAMO-YOLO (ModelScope ``damo/cv_tinynas_object-detection_damoyolo`` S, ``-t``, ``-m`` and the domain models built
on S: smoke/fire, safety helmet, face mask, cigarette, phone, human, head): model directory -> C-core graph, plus
the head's decoding and ModelScope's post-processing.

Files, all read without executing anything (ModelScope imports ``damoyolo.py``, hence its ``trust_remote_code``):
- ``damoyolo.py``: the config, evaluated as literals (:func:`msvision.hub.py_config.read_python_config`);
  ``model.backbone`` / ``neck`` / ``head`` dicts, ``model.name`` (the checkpoint), ``model.class_map``;
- the TinyNAS structure txt named by ``backbone.structure_file`` (a list of block dicts, whitespace removed and
  ``ast.literal_eval``-ed as ModelScope does);
- ``label_map.pkl``: ``{class_id + 1: [{'name': ...}, ...]}`` through the allow-list unpickler;
- the checkpoint: ``{'model': state_dict}`` or ``{'state_dict': ...}``, ``module.`` prefixes removed, loaded
  strictly (every weight used, none missing).

Network, as modelscope/models/cv/tinynas_detection/damo/base_models builds it (module names = checkpoint names):
- backbone ``TinyNAS_res`` (S, T): ``block_list.i`` are a Focus stem (pixel-unshuffle in TL, BL, TR, BR order,
  lowered to the core's pixel_unshuffle plus a permutation of the stem conv's input channels at load) or a plain
  conv stem, then ``SuperResStem``s of ``ResConvBlock``s (1x1 or kxk conv + act, RepConv = kxk + 1x1 branches
  folded into one kxk conv at load, residual add unless stride 2, act), the last stage's first block followed
  by an SPP bottleneck (max pools 5, 9, 13);
- backbone ``TinyNAS_csp`` (M): ``csp_stage.i`` CSPWrapper stages (3x3 stride-2 downsampler, optional SPP, the
  stem's blocks on half the channels beside a 1x1 shortcut, concat, 1x1 fuse);
- ``GiraffeNeckV2``: ConvBNAct and CSPStage(BasicBlock_3x3_Reverse) nodes with nearest x2 upsampling;
- ``ZeroHead`` (``stacked_convs`` 1x1 then 3x3 ConvBNActs per level, usually none): per stride a 3x3 cls conv
  (num_classes + 1 outputs, the last one dropped at load) + sigmoid, and a 3x3 reg conv with 4 x (reg_max + 1)
  outputs whose learnable ``scales.i`` factor is folded into its weights.

ModelScope's quirks, reproduced: every BatchNorm uses eps 1e-3 whatever the checkpoint was trained with
(``init_bn``); the SPP bottleneck's convs use SiLU whatever ``act`` says; CSPWrapper's own convs use ReLU.

Decoding (in C): per box side a softmax over the bins, the expectation over ``integral.project``, times the
stride; priors at (x * stride, y * stride) without +0.5; ``distance2bbox`` (no clipping). Post-processing:
score > ``nms_conf_thre`` per class, torchvision's ``batched_nms`` with ``nms_iou_thre`` (in C, both of its paths
to the bit), the first 500.
"""

from __future__ import annotations

import os

import numpy as np

from .._native import _C
from ..checkpoint import CheckpointError, load_pickle, load_torch
from ..errors import InvalidModelError, ModelNotFoundError
from ..graph import Builder
from ..graph.blocks import fold_batch_norm
from ..hub.py_config import read_literal_file, read_python_config
from .base import Model, weight_file

CONFIG_FILE = "damoyolo.py"
BN_EPS = 1e-3  # SingleStageDetector.init_bn sets every BatchNorm's eps to 1e-3
MAX_DETECTIONS = 500
SPP_ACT = "silu"  # SPPBottleneck's default activation, never overridden by the backbones
CSP_WRAPPER_ACT = "relu"  # CSPWrapper's default act, never overridden by TinyNAS_csp
DEFAULT_STRIDES = (8, 16, 32)
# ModelScope's get_activation names -> the core's eltwise (name, alpha)
ACTIVATIONS = {
    "silu": ("swish", 1.0),
    "swish": ("swish", 1.0),
    "relu": ("relu", 0.0),
    "lrelu": ("leaky_relu", 0.1),
    "identity": None,
}


def _activation(name, where: str):
    if name is None:
        return None  # get_activation(None): nn.Identity
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise InvalidModelError(f"{where}: activation {name!r} is not one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _section(cfg: dict, key: str, where: str) -> dict:
    value = cfg.get(key)
    if not isinstance(value, dict):
        raise InvalidModelError(f"{where}: '{key}' must be a dict, got {type(value).__name__}")
    return value


def _int_list(value, n: int, where: str) -> list[int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != n
        or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 8192 for v in value)
    ):
        raise InvalidModelError(f"{where}: expected {n} positive integers, got {value!r}")
    return list(value)


def _index_list(value, where: str) -> list[int]:
    """Three increasing block indices (the stride-8, 16 and 32 features)."""
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 64 for v in value)
        or sorted(set(value)) != list(value)
    ):
        raise InvalidModelError(f"{where}: expected three increasing block indices, got {value!r}")
    return list(value)


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidModelError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _structure(path: str) -> list[dict]:
    blocks = read_literal_file(path, "TinyNAS structure file")
    if not isinstance(blocks, list) or not blocks or not all(isinstance(b, dict) for b in blocks):
        raise InvalidModelError(f"{path}: a TinyNAS structure is a non-empty list of block dicts")
    for i, b in enumerate(blocks):
        kind = b.get("class")
        need = {"class", "in", "out", "k", "s"} | (
            {"L", "btn"} if kind in ("SuperResConvK1KX", "SuperResConvKXKX") else set()
        )
        if kind not in ("ConvKXBNRELU", "SuperResConvK1KX", "SuperResConvKXKX"):
            raise InvalidModelError(f"{path}: block {i} has unknown class {kind!r}")
        for key in need - {"class"}:
            v = b.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= 8192:
                raise InvalidModelError(f"{path}: block {i} needs a positive integer '{key}', got {v!r}")
        if b["k"] % 2 == 0 or b["s"] not in (1, 2):
            raise InvalidModelError(f"{path}: block {i}: kernel must be odd and stride 1 or 2")
    return blocks


def read_config(model_dir: str) -> dict:
    """damoyolo.py and the structure file as plain dicts, validated: what ``DamoYolo.build`` needs."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise ModelNotFoundError(f"{model_dir}: missing {CONFIG_FILE}")
    cfg = read_python_config(path)
    model = _section(cfg, "model", path)
    backbone = _section(model, "backbone", f"{path}: model")
    neck = _section(model, "neck", f"{path}: model")
    head = _section(model, "head", f"{path}: model")
    for key in ("name", "class_map"):
        v = model.get(key)
        if not isinstance(v, str) or not v or os.path.isabs(v) or ".." in v.replace("\\", "/").split("/"):
            raise InvalidModelError(
                f"{path}: model.{key} must name a file inside the model directory, got {v!r}"
            )
    if backbone.get("name") not in ("TinyNAS_res", "TinyNAS_csp"):
        raise InvalidModelError(
            f"{path}: backbone {backbone.get('name')!r} is not supported (TinyNAS_res, TinyNAS_csp)"
        )
    structure_file = backbone.get("structure_file")
    if not isinstance(structure_file, str) or os.path.isabs(structure_file) or ".." in structure_file:
        raise InvalidModelError(f"{path}: backbone.structure_file must name a file in the model directory")
    if neck.get("name") != "GiraffeNeckV2":
        raise InvalidModelError(f"{path}: neck {neck.get('name')!r} is not supported (GiraffeNeckV2)")
    if neck.get("block_name", "BasicBlock") != "BasicBlock_3x3_Reverse":
        raise InvalidModelError(f"{path}: neck block {neck.get('block_name')!r} is not supported")
    if neck.get("spp", False):
        raise InvalidModelError(f"{path}: GiraffeNeckV2 with spp=True does not build in ModelScope either")
    if head.get("name") != "ZeroHead":
        raise InvalidModelError(f"{path}: head {head.get('name')!r} is not supported (ZeroHead)")
    num_classes = head.get("num_classes")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 0 < num_classes <= 100000:
        raise InvalidModelError(f"{path}: head.num_classes must be a positive integer, got {num_classes!r}")
    strides = _int_list(head.get("strides", list(DEFAULT_STRIDES)), 3, f"{path}: head.strides")
    stacked = head.get("stacked_convs", 4)
    if isinstance(stacked, bool) or not isinstance(stacked, int) or not 0 <= stacked <= 64:
        raise InvalidModelError(f"{path}: head.stacked_convs must be a small integer, got {stacked!r}")
    in_channels = _int_list(head.get("in_channels"), 3, f"{path}: head.in_channels")
    feat = head.get("feat_channels", 256)
    feat = in_channels if stacked == 0 else (feat if isinstance(feat, (list, tuple)) else [feat] * 3)
    reg_max = head.get("reg_max", 12)
    if isinstance(reg_max, bool) or not isinstance(reg_max, int) or not 0 < reg_max <= 1024:
        raise InvalidModelError(f"{path}: head.reg_max must be a positive integer, got {reg_max!r}")
    depth = _number(neck.get("depth", 1.0), f"{path}: neck.depth")
    hidden_ratio = _number(neck.get("hidden_ratio", 1.0), f"{path}: neck.hidden_ratio")
    if not 0 <= depth <= 16 or not 0 < hidden_ratio <= 16:
        raise InvalidModelError(f"{path}: neck depth / hidden_ratio out of range")
    return {
        "path": path,
        "weights": model["name"],
        "class_map": model["class_map"],
        "backbone": {
            "kind": backbone["name"],
            "structure": _structure(os.path.join(model_dir, structure_file)),
            "out_indices": _index_list(
                backbone.get("out_indices", (2, 4, 5)), f"{path}: backbone.out_indices"
            ),
            "with_spp": bool(backbone.get("with_spp", False)),
            "use_focus": bool(backbone.get("use_focus", False)),
            "act": _activation(backbone.get("act", "silu"), f"{path}: backbone.act"),
            # ConvKXBNRELU falls back to torch.relu when act is None (get_activation(None) is the identity)
            "stem_act": ACTIVATIONS["relu"]
            if backbone.get("act", "silu") is None
            else _activation(backbone.get("act", "silu"), f"{path}: backbone.act"),
            "reparam": bool(backbone.get("reparam", False)),
        },
        "neck": {
            "depth": depth,
            "hidden_ratio": hidden_ratio,
            "in_channels": _int_list(neck.get("in_channels"), 3, f"{path}: neck.in_channels"),
            "out_channels": _int_list(neck.get("out_channels"), 3, f"{path}: neck.out_channels"),
            "act": _activation(neck.get("act", "silu"), f"{path}: neck.act"),
        },
        "head": {
            "num_classes": num_classes,
            "in_channels": in_channels,
            "feat_channels": _int_list(list(feat), 3, f"{path}: head.feat_channels"),
            "stacked_convs": stacked,
            "reg_max": reg_max,
            "strides": strides,
            "act": _activation(head.get("act", "relu"), f"{path}: head.act"),
            "conf_threshold": _number(head.get("nms_conf_thre", 0.05), f"{path}: head.nms_conf_thre"),
            "iou_threshold": _number(head.get("nms_iou_thre", 0.7), f"{path}: head.nms_iou_thre"),
        },
    }


def read_label_names(path: str, num_classes: int) -> list[str]:
    """``label_map[i + 1][0]['name']`` for each class i, as ModelScope's post-processing looks them up."""
    if not os.path.isfile(path):
        raise ModelNotFoundError(f"missing label map {path}")
    try:
        label_map = load_pickle(path)
    except OSError as e:
        raise InvalidModelError(f"cannot read {path}: {e}") from e
    names = []
    for i in range(num_classes):
        try:
            name = label_map[i + 1][0]["name"]
        except (KeyError, IndexError, TypeError):
            raise InvalidModelError(f"{path}: no label_map[{i + 1}][0]['name'] for class {i}") from None
        if not isinstance(name, str):
            raise InvalidModelError(f"{path}: the name of class {i} is {type(name).__name__}, not str")
        names.append(name)
    return names


def focus_permutation(channels: int) -> np.ndarray:
    """Input-channel order of the Focus stem conv for the core's pixel_unshuffle: unshuffle channel
    ``c * 4 + dy * 2 + dx`` holds x[c, 2i + dy, 2j + dx], which Focus puts at ``k * C + c`` with k the position of
    (dy, dx) in its concat order TL (0, 0), BL (1, 0), TR (0, 1), BR (1, 1), i.e. k = dx * 2 + dy."""
    perm = np.empty(channels * 4, np.int64)
    for c in range(channels):
        for dy in range(2):
            for dx in range(2):
                perm[c * 4 + dy * 2 + dx] = (dx * 2 + dy) * channels + c
    return perm


class DamoYolo(Model):
    """The DAMO-YOLO network of a model directory. Input: (1, H, W, 3) RGB 0..255 float32 (NHWC), H and W multiples
    of 32; outputs, NHWC: per stride the class scores (sigmoid, num_classes channels) and the box distributions
    (4 x (reg_max + 1) channels, side-major, zero-padded to a multiple of 16). ``detect(x)`` decodes and filters
    them."""

    network = "damoyolo"
    layout = "nhwc"

    def __init__(self, model_dir: str, config: dict, threads: int, **options) -> None:
        self.spec = read_config(model_dir)
        head = self.spec["head"]
        self.num_classes = head["num_classes"]
        self.label_names = read_label_names(os.path.join(model_dir, self.spec["class_map"]), self.num_classes)
        self.project = None  # integral.project, taken while building
        super().__init__(model_dir, config, threads, **options)
        self._priors: dict[tuple[int, int], np.ndarray] = {}

    def read_weights(self, model_dir, config):
        path = weight_file(model_dir, self.spec["weights"])
        try:
            checkpoint = load_torch(path)
        except OSError as e:
            raise InvalidModelError(f"cannot read {path}: {e}") from e
        # SingleStageDetector.load_pretrain_model: ckpt['model'], else ckpt['state_dict'] (ModelScope fails with
        # an UnboundLocalError on anything else), every 'module.' in a name removed
        state = None
        if isinstance(checkpoint, dict):
            state = checkpoint.get("model", checkpoint.get("state_dict"))
        if not isinstance(state, dict):
            raise CheckpointError(
                f"{path}: expected a checkpoint dict whose 'model' or 'state_dict' holds the weights"
            )
        arrays = {}
        for name, value in state.items():
            if not isinstance(name, str) or not isinstance(value, np.ndarray):
                raise CheckpointError(f"{path}: entry {name!r} of the state dict is not a named array")
            arrays[name.replace("module.", "")] = value
        return arrays, path

    # ---- layers (names as the checkpoint's) ----

    def _folded(self, b: Builder, conv: str, bn: str, out: int, cin: int, k: int):
        """``conv`` (out, cin, k, k) with BatchNorm ``bn`` folded in (eps 1e-3)."""
        w = b.w.take(f"{conv}.weight", (out, cin, k, k))
        gamma, beta, mean, var = (
            b.w.take(f"{bn}.{p}", (out,)) for p in ("weight", "bias", "running_mean", "running_var")
        )
        b.w.skip(f"{bn}.num_batches_tracked", ())
        return fold_batch_norm(w, None, gamma, beta, mean, var, BN_EPS)

    @staticmethod
    def _padded_conv(b: Builder, x, w, bias, stride: int, act, out_channels: int | None = None):
        """Convolution with folded weights; zero input channels are appended when x has more channels than w
        (a producer padded at load), zero output channels up to ``out_channels``."""
        extra_in = b.channels(x) - w.shape[1]
        extra_out = (out_channels or w.shape[0]) - w.shape[0]
        if extra_in or extra_out:
            w = np.pad(w, ((0, extra_out), (0, extra_in), (0, 0), (0, 0)))
            bias = np.pad(bias, (0, extra_out))
        k = w.shape[2]
        y = b.g.conv2d(x, b.g.const(w), bias=b.g.const(bias), stride=stride, padding=(k - 1) // 2)
        return b.act(y, act)

    def _conv_bn(
        self, b: Builder, x, conv: str, bn: str, out: int, k: int, stride: int, act, cin=None, pad_to=None
    ):
        """Conv + BatchNorm folded; ``cin``: the weights' input channels when x carries zero padding channels,
        ``pad_to``: output channels padded with zeros (act(0) = 0 for every activation here)."""
        w, bias = self._folded(b, conv, bn, out, cin or b.channels(x), k)
        return self._padded_conv(b, x, w, bias, stride, act, pad_to)

    def _conv_bn_act(self, b: Builder, x, prefix: str, out: int, k: int, stride: int = 1, act=None):
        """ConvBNAct: ``<prefix>.conv`` + ``<prefix>.bn``, same padding."""
        return self._conv_bn(b, x, f"{prefix}.conv", f"{prefix}.bn", out, k, stride, act)

    def _conv_kx_bn(
        self, b: Builder, x, prefix: str, out: int, k: int, stride: int, act=None, cin=None, pad_to=None
    ):
        """ConvKXBN: ``<prefix>.conv1`` + ``<prefix>.bn1``."""
        return self._conv_bn(b, x, f"{prefix}.conv1", f"{prefix}.bn1", out, k, stride, act, cin, pad_to)

    def _rep_conv(self, b: Builder, x, prefix: str, out: int, stride: int, act=None, cin=None):
        """RepConv (3x3, training form): ``rbr_dense`` 3x3 + BN and ``rbr_1x1`` 1x1 + BN, summed, then act; folded
        into one 3x3 convolution (the 1x1 kernel added to the 3x3 centre)."""
        cin = cin or b.channels(x)
        w3, b3 = self._folded(b, f"{prefix}.rbr_dense.conv", f"{prefix}.rbr_dense.bn", out, cin, 3)
        w1, b1 = self._folded(b, f"{prefix}.rbr_1x1.conv", f"{prefix}.rbr_1x1.bn", out, cin, 1)
        w3 = w3.copy()
        w3[:, :, 1:2, 1:2] += w1
        return self._padded_conv(b, x, w3, b3 + b1, stride, act)

    def _res_block(self, b: Builder, x, prefix: str, out: int, btn: int, k: int, stride: int, kxkx: bool):
        """ResConvBlock: conv1 (1x1, or kxk for kxkx) + act, conv2 (RepConv or ConvKXBN), + residual unless
        stride 2, act. A bottleneck width that is not a multiple of 16 (S's 88 and 120, T's 24 and 152) is padded
        with zero channels at load when that lets conv2 run as a Winograd convolution (3x3, stride 1)."""
        act, cin = self.spec["backbone"]["act"], b.channels(x)
        reslink = x
        if cin != out and stride != 2:
            reslink = self._conv_kx_bn(b, x, f"{prefix}.residual_proj", out, 1, 1)
        padded = btn
        if k == 3 and stride == 1 and out % 16 == 0 and btn % 16:
            padded = -(-btn // 16) * 16
        y = self._conv_kx_bn(b, x, f"{prefix}.conv1", btn, k if kxkx else 1, 1, act=act, pad_to=padded)
        if self.spec["backbone"]["reparam"]:
            if k != 3:
                raise InvalidModelError(
                    f"{self.weights_path}: RepConv needs 3x3 kernels, the structure has {k}"
                )
            y = self._rep_conv(b, y, f"{prefix}.conv2", out, stride, cin=btn)
        else:
            y = self._conv_kx_bn(b, y, f"{prefix}.conv2", out, k, stride, cin=btn)
        if stride != 2:
            y = b.g.binary(y, reslink, op="add")
        return b.act(y, act)

    def _spp_bottleneck(self, b: Builder, x, prefix: str, out: int):
        """SPPBottleneck: 1x1 to half, max pools 5/9/13 (stride 1, same padding) concatenated with it, 1x1."""
        hidden = b.channels(x) // 2
        act = ACTIVATIONS[SPP_ACT]
        y = self._conv_bn_act(b, x, f"{prefix}.conv1", hidden, 1, act=act)
        pools = [b.g.pool2d(y, kind="max", kernel=k, stride=1, padding=k // 2) for k in (5, 9, 13)]
        return self._conv_bn_act(b, b.g.concat([y, *pools], axis=1), f"{prefix}.conv2", out, 1, act=act)

    def _stem(self, b: Builder, x, prefix: str, info: dict, focus: bool):
        act = self.spec["backbone"]["act"]
        if focus:  # Focus: space-to-depth, then ConvBNAct(4 C, out, k, stride 1)
            cin, out, k = b.channels(x), info["out"], info["k"]
            w, bias = self._folded(b, f"{prefix}.conv.conv", f"{prefix}.conv.bn", out, 4 * cin, k)
            y = b.g.pixel_unshuffle(x, factor=2)
            return self._padded_conv(b, y, np.ascontiguousarray(w[:, focus_permutation(cin)]), bias, 1, act)
        stem_act = self.spec["backbone"]["stem_act"]
        return self._conv_kx_bn(b, x, f"{prefix}.conv", info["out"], info["k"], info["s"], act=stem_act)

    def _backbone_res(self, b: Builder, x) -> list:
        spec = self.spec["backbone"]
        blocks, features = spec["structure"], []
        for idx, info in enumerate(blocks):
            prefix = f"backbone.block_list.{idx}"
            if info["class"] == "ConvKXBNRELU":
                x = self._stem(b, x, prefix, info, spec["use_focus"])
            else:
                kxkx = info["class"] == "SuperResConvKXKX"
                module = 0
                for j in range(info["L"]):
                    stride = info["s"] if j == 0 else 1
                    x = self._res_block(
                        b,
                        x,
                        f"{prefix}.block_list.{module}",
                        info["out"],
                        info["btn"],
                        info["k"],
                        stride,
                        kxkx,
                    )
                    module += 1
                    if j == 0 and spec["with_spp"] and idx == len(blocks) - 1:
                        x = self._spp_bottleneck(b, x, f"{prefix}.block_list.{module}", info["out"])
                        module += 1
            if idx in spec["out_indices"]:
                features.append(x)
        return features

    def _csp_stem_blocks(self, info: dict) -> list[tuple]:
        """CSPStem's ResConvBlocks as (in, out, btn, k, kxkx): L - 1 blocks after a stride-2 stage, else L, on
        half the stage's channels."""
        n = info["L"] - 1 if info["s"] == 2 else info["L"]
        half_out, kxkx = info["out"] // 2, info["class"] == "SuperResConvKXKX"
        return [
            (
                info["in"] // 2 if info["s"] == 1 and j == 0 else half_out,
                half_out,
                info["btn"],
                info["k"],
                kxkx,
            )
            for j in range(n)
        ]

    def _backbone_csp(self, b: Builder, x) -> list:
        spec = self.spec["backbone"]
        blocks = spec["structure"]
        if (
            len(blocks) != 6
            or blocks[0]["class"] != "ConvKXBNRELU"
            or any(blk["class"] == "ConvKXBNRELU" for blk in blocks[1:])
        ):
            raise InvalidModelError(f"{self.spec['path']}: TinyNAS_csp needs a stem and five SuperRes stages")
        features = []
        wrapper_act = ACTIVATIONS[CSP_WRAPPER_ACT]
        groups = [(blocks[1],), (blocks[2],), (blocks[3], blocks[4]), (blocks[5],)]
        x = self._stem(b, x, "backbone.csp_stage.0", blocks[0], spec["use_focus"])
        if 0 in spec["out_indices"]:
            features.append(x)
        for stage, group in enumerate(groups, start=1):
            prefix = f"backbone.csp_stage.{stage}"
            in_c, out_c = group[0]["in"], group[-1]["out"]
            hidden = group[0]["out"] // 2
            stem_blocks = [blk for info in group for blk in self._csp_stem_blocks(info)]
            x = self._conv_kx_bn(b, x, f"{prefix}.downsampler.conv", hidden * 2, 3, 2, act=wrapper_act)
            if b.channels(x) != hidden * 2 or in_c <= 0:
                raise InvalidModelError(f"{self.spec['path']}: inconsistent TinyNAS_csp structure")
            if stage == 4 and spec["with_spp"]:
                x = self._spp_bottleneck(b, x, f"{prefix}.spp", hidden * 2)
            if stem_blocks:
                shortcut = self._conv_kx_bn(
                    b, x, f"{prefix}.conv_shortcut.conv", out_c // 2, 1, 1, act=wrapper_act
                )
                x = self._conv_kx_bn(b, x, f"{prefix}.conv_start.conv", hidden, 1, 1, act=wrapper_act)
                for j, (_, out, btn, k, kxkx) in enumerate(stem_blocks):
                    x = self._res_block(b, x, f"{prefix}.convstem.{j}", out, btn, k, 1, kxkx)
                x = b.g.concat([x, shortcut], axis=1)
                x = self._conv_kx_bn(b, x, f"{prefix}.conv_fuse.conv", out_c, 1, 1, act=wrapper_act)
            if stage in spec["out_indices"]:
                features.append(x)
        return features

    def _csp_stage(self, b: Builder, x, prefix: str, out: int):
        """CSPStage(BasicBlock_3x3_Reverse): two 1x1 branches, n reversed basic blocks (RepConv to
        int(ch * hidden_ratio) + act, 3x3 ConvBNAct back + act, residual) on the second, all concatenated, 1x1."""
        neck = self.spec["neck"]
        act, n = neck["act"], round(3 * neck["depth"])
        first = out // 2
        mid = out - first
        y1 = self._conv_bn_act(b, x, f"{prefix}.conv1", first, 1, act=act)
        y2 = self._conv_bn_act(b, x, f"{prefix}.conv2", mid, 1, act=act)
        outs = [y1]
        hidden = int(mid * neck["hidden_ratio"])
        for i in range(n):
            t = self._rep_conv(b, y2, f"{prefix}.convs.{i}.conv2", hidden, 1, act=act)
            t = self._conv_bn_act(b, t, f"{prefix}.convs.{i}.conv1", mid, 3, act=act)
            y2 = b.g.binary(y2, t, op="add")
            outs.append(y2)
        return self._conv_bn_act(b, b.g.concat(outs, axis=1), f"{prefix}.conv3", out, 1, act=act)

    def _neck(self, b: Builder, features) -> list:
        neck = self.spec["neck"]
        act, cin, cout = neck["act"], neck["in_channels"], neck["out_channels"]
        if len(features) != 3:
            raise InvalidModelError(
                f"{self.spec['path']}: backbone.out_indices select {len(features)} of the backbone's stages, not 3"
            )
        x2, x1, x0 = features
        for x, c in zip(features, cin):
            if b.channels(x) != c:
                raise InvalidModelError(
                    f"{self.spec['path']}: neck.in_channels {cin} do not match the backbone's outputs"
                )

        def up(t):
            return b.g.resize(t, mode="nearest", scale=(2.0, 2.0))

        x3 = self._csp_stage(
            b,
            b.g.concat([x0, self._conv_bn_act(b, x1, "neck.bu_conv13", cin[1], 3, 2, act)], axis=1),
            "neck.merge_3",
            cin[2],
        )
        x24 = self._conv_bn_act(b, x2, "neck.bu_conv24", cin[0], 3, 2, act)
        x4 = self._csp_stage(b, b.g.concat([x1, x24, up(x3)], axis=1), "neck.merge_4", cin[1])
        x5 = self._csp_stage(b, b.g.concat([x2, up(x4)], axis=1), "neck.merge_5", cout[0])
        x57 = self._conv_bn_act(b, x5, "neck.bu_conv57", cout[0], 3, 2, act)
        x7 = self._csp_stage(b, b.g.concat([x4, x57], axis=1), "neck.merge_7", cout[1])
        x46 = self._conv_bn_act(b, x4, "neck.bu_conv46", cin[1], 3, 2, act)
        x76 = self._conv_bn_act(b, x7, "neck.bu_conv76", cout[1], 3, 2, act)
        x6 = self._csp_stage(b, b.g.concat([x3, x46, x76], axis=1), "neck.merge_6", cout[2])
        return [x5, x7, x6]

    def _head(self, b: Builder, features) -> list:
        head = self.spec["head"]
        nc, bins = head["num_classes"], head["reg_max"] + 1
        self.project = b.w.take("head.integral.project", (bins,))
        outputs = []
        for i, x in enumerate(features):
            if b.channels(x) != head["in_channels"][i]:
                raise InvalidModelError(
                    f"{self.spec['path']}: head.in_channels do not match the neck's outputs"
                )
            cls_feat = reg_feat = x
            for j in range(head["stacked_convs"]):
                k = 3 if j > 0 else 1
                feat = head["feat_channels"][i]
                cls_feat = self._conv_bn_act(b, cls_feat, f"head.cls_convs.{i}.{j}", feat, k, act=head["act"])
                reg_feat = self._conv_bn_act(b, reg_feat, f"head.reg_convs.{i}.{j}", feat, k, act=head["act"])
            cin = b.channels(cls_feat)
            w = b.w.take(f"head.gfl_cls.{i}.weight", (nc + 1, cin, 3, 3))[:nc]  # the extra class is dropped
            bias = b.w.take(f"head.gfl_cls.{i}.bias", (nc + 1,))[:nc]
            cls = b.g.conv2d(
                cls_feat, b.g.const(np.ascontiguousarray(w)), bias=b.g.const(bias.copy()), padding=1
            )
            outputs.append(b.act(cls, "sigmoid"))
            scale = b.w.take(f"head.scales.{i}.scale", ())
            w = b.w.take(f"head.gfl_reg.{i}.weight", (4 * bins, b.channels(reg_feat), 3, 3)) * scale
            bias = b.w.take(f"head.gfl_reg.{i}.bias", (4 * bins,)) * scale
            # output channels padded to a multiple of 16 (zero weights): the conv then runs as Winograd;
            # head_outputs drops the padding
            outputs.append(self._padded_conv(b, reg_feat, w, bias, 1, None, -(-4 * bins // 16) * 16))
        return outputs

    def build(self, b: Builder):
        x = b.g.input(channels=3)
        backbone = (
            self._backbone_res if self.spec["backbone"]["kind"] == "TinyNAS_res" else self._backbone_csp
        )
        return self._head(b, self._neck(b, backbone(b, x)))

    # ---- decoding ----

    def priors(self, height: int, width: int) -> np.ndarray:
        """(n, 3) float32 (x, y, stride) per anchor, levels in stride order, row-major: ZeroHead's center priors
        (x * stride, y * stride, no half-cell offset) for a padded input of height x width."""
        key = (height, width)
        if key not in self._priors:
            out = []
            for stride in self.spec["head"]["strides"]:
                h, w = -(-height // stride), -(-width // stride)
                ys, xs = np.meshgrid(
                    np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij"
                )
                s = np.float32(stride)
                out.append(np.stack([xs.ravel() * s, ys.ravel() * s, np.full(h * w, s, np.float32)], axis=1))
            if len(self._priors) >= 16:
                self._priors.pop(next(iter(self._priors), None), None)  # concurrent callers may race here
            self._priors[key] = np.ascontiguousarray(np.concatenate(out))
        return self._priors[key]

    def head_outputs(self, x: np.ndarray):
        """-> (scores (n, num_classes), reg logits (n, 4 x bins)) over all levels, ModelScope's anchor order."""
        outputs = self.run(x)
        nc, bins = self.num_classes, self.spec["head"]["reg_max"] + 1
        scores = np.concatenate([o[0].reshape(-1, nc) for o in outputs[0::2]])
        reg = np.concatenate([o[0, :, :, : 4 * bins].reshape(-1, 4 * bins) for o in outputs[1::2]])
        return scores, reg

    def detect(self, x: np.ndarray):
        """-> (boxes (k, 4) float32, scores (k,) float32, class indices (k,) int64), as ModelScope's
        ``postprocess_gfocal``; boxes of shape (0, 5) when nothing passes (ModelScope's ``new_zeros((0, 5))``)."""
        scores, reg = self.head_outputs(x)
        head = self.spec["head"]
        anchors, labels = np.nonzero(scores > np.float32(head["conf_threshold"]))
        if len(anchors) == 0:
            return np.zeros((0, 5), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64)
        boxes = _C.decode_distribution(
            reg[anchors], self.priors(x.shape[1], x.shape[2])[anchors], self.project
        )
        candidate_scores = np.ascontiguousarray(scores[anchors, labels])
        keep = _C.batched_nms(boxes, candidate_scores, labels, head["iou_threshold"])[:MAX_DETECTIONS]
        return boxes[keep], candidate_scores[keep], labels[keep]
