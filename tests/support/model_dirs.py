"""Builders of ModelScope model directories with random weights from ModelScope's own model classes, and the
real photos the conformance tests run on (scikit-image's bundled photos: public domain / CC0)."""

import json
import os
from pathlib import Path

from PIL import Image

SIDD = {
    "img_channel": 3,
    "width": 32,
    "enc_blk_nums": [2, 2, 4, 8],
    "middle_blk_num": 12,
    "dec_blk_nums": [2, 2, 2, 2],
}
# logit offset of MogFace's random cls head, so that some anchors score above the pipeline's 0.82 threshold
MOGFACE_CLS_BIAS = 1.3
SMALL = {
    "img_channel": 3,
    "width": 16,
    "enc_blk_nums": [1, 1, 2],
    "middle_blk_num": 1,
    "dec_blk_nums": [1, 1, 1],
}


def make_nafnet_dir(path, net_cfg, seed=0, task="image-denoising", legacy=False, wrap="params", prefix=""):
    """A NAFNet model directory as ModelScope lays it out. Beta/gamma (zero at init) and the LayerNorm affine
    parameters are randomised so every block contributes."""
    import torch
    from modelscope.models.cv.image_denoise.nafnet.NAFNet_arch import NAFNet

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = NAFNet(**net_cfg)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith(("beta", "gamma")):
                p.copy_(torch.randn_like(p) * 0.3)
            elif "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
    ptype = "nafnet-image-denoise" if task == "image-denoising" else "nafnet-image-deblur"
    config = {
        "framework": "pytorch",
        "task": task,
        "pipeline": {"type": ptype},
        "model": {"type": "nafnet", "network_g": net_cfg},
    }
    (path / "configuration.json").write_text(json.dumps(config, indent=2))
    state = {prefix + k: v for k, v in net.state_dict().items()}
    obj = {wrap: state} if wrap else state
    torch.save(obj, path / "pytorch_model.pt", _use_new_zipfile_serialization=not legacy)
    return str(path)


def make_mogface_dir(path, seed=0, cls_bias=MOGFACE_CLS_BIAS):
    """A MogFace model directory as ModelScope lays it out: configuration.json (no ``model`` section: ModelScope's
    pipeline would then try ``MogFaceDetector(model_dir=...)``, which fails) and the flat state dict."""
    import torch
    from modelscope.models.cv.face_detection.mogface.models.mogface import MogFace

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = MogFace().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
            elif isinstance(m, torch.nn.GroupNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        net.pred_net.pred_cls.bias.fill_(cls_bias)
    config = {
        "framework": "pytorch",
        "task": "face-detection",
        "pipeline": {"type": "resnet101-face-detection-cvpr22papermogface"},
    }
    (path / "configuration.json").write_text(json.dumps(config, indent=2))
    torch.save(net.state_dict(), path / "pytorch_model.pt")
    return str(path)


def skimage_photo(name) -> str:
    import skimage

    return os.path.join(os.path.dirname(skimage.__file__), "data", name)


def photo_crop(tmp_dir, name, box, out_name, size=None) -> str:
    """A crop (and optional resize) of a bundled photo saved as PNG: odd and large sizes from real photos."""
    img = Image.open(skimage_photo(name)).convert("RGB").crop(box)
    if size:
        img = img.resize(size, Image.BICUBIC)
    out = os.path.join(tmp_dir, out_name)
    img.save(out)
    return out


# ---- DAMO-YOLO (tinynas-detection) ----
# TinyNAS structures of the released S, T and M models (the hub's tinynas_L25_k1kx.txt, tinynas_L20_k1kx.txt and
# tinynas_L35_kxkx.txt: stem, then stages as class / in / out / kernel / stride / layers / bottleneck)
_K1, _KX = "SuperResConvK1KX", "SuperResConvKXKX"
DAMOYOLO_STRUCTURES = {
    "S": [("ConvKXBNRELU", 3, 32, 3, 1, 0, 0), (_K1, 32, 128, 3, 2, 1, 24), (_K1, 128, 128, 3, 2, 5, 88),
          (_K1, 128, 256, 3, 2, 3, 128), (_K1, 256, 256, 3, 1, 2, 120), (_K1, 256, 512, 3, 2, 1, 144)],
    "T": [("ConvKXBNRELU", 3, 24, 3, 1, 0, 0), (_K1, 24, 64, 3, 2, 2, 24), (_K1, 64, 96, 3, 2, 2, 64),
          (_K1, 96, 192, 3, 2, 2, 96), (_K1, 192, 192, 3, 1, 2, 152), (_K1, 192, 384, 3, 2, 1, 192)],
    "M": [("ConvKXBNRELU", 3, 32, 3, 1, 0, 0), (_KX, 32, 128, 3, 2, 2, 64), (_KX, 128, 128, 3, 2, 4, 64),
          (_KX, 128, 256, 3, 2, 4, 256), (_KX, 256, 256, 3, 1, 4, 256), (_KX, 256, 512, 3, 2, 3, 256)],
}  # fmt: skip
# backbone name, out_indices, act; neck depth, hidden_ratio, in_channels, out_channels, act
DAMOYOLO_VARIANTS = {
    "S": ("TinyNAS_res", (2, 4, 5), "relu", 1.0, 0.75, [128, 256, 512], [128, 256, 512], "relu"),
    "T": ("TinyNAS_res", (2, 4, 5), "relu", 1.0, 1.0, [96, 192, 384], [64, 128, 256], "relu"),
    "M": ("TinyNAS_csp", (2, 3, 4), "silu", 1.5, 1.0, [128, 256, 512], [128, 256, 512], "silu"),
}


def _structure_text(variant) -> str:
    """The structure as the hub's txt files lay it out: a pretty-printed list spanning lines, with the
    quantisation keys (nbitsA / nbitsW) ModelScope deletes."""
    lines = []
    for cls, cin, cout, k, s, layers, btn in DAMOYOLO_STRUCTURES[variant]:
        if cls == "ConvKXBNRELU":
            lines.append(
                f"{{'class': '{cls}', 'in': {cin}, 'k': {k}, 'nbitsA': 8, 'nbitsW': 8, 'out': {cout}, 's': {s}}}"
            )
        else:
            lines.append(
                f"{{ 'L': {layers},\n    'btn': {btn},\n    'class': '{cls}',\n    'in': {cin},\n"
                f"    'inner_class': 'ResConvK1KX',\n    'k': {k},\n    'nbitsA': [8, 8],\n    'nbitsW': [8, 8],\n"
                f"    'out': {cout},\n    's': {s}}}"
            )
    return "[ " + ",\n  ".join(lines) + "]\n"


def damoyolo_config_text(variant, num_classes, conf, iou, weights="damoyolo_model.pt") -> str:
    """damoyolo.py as the hub's files are written: literal dicts, the later ones naming the earlier."""
    backbone, out_indices, bact, depth, ratio, cin, cout, nact = DAMOYOLO_VARIANTS[variant]
    structure = {"S": "tinynas_L25_k1kx.txt", "T": "tinynas_L20_k1kx.txt", "M": "tinynas_L35_kxkx.txt"}[
        variant
    ]
    return f'''#!/usr/bin/env python3
#-*- coding:utf-8 -*-
# Copyright (C) Alibaba Group Holding Limited. All rights reserved.

TinyNAS = {{
    "name": "{backbone}",
    "structure_file": "{structure}",
    "out_indices": {out_indices},
    "with_spp": True,
    "use_focus": True,
    "act": "{bact}",
    "reparam": True
}}

GiraffeNeckV2 = {{
    "name": "GiraffeNeckV2",
    "depth": {depth},
    "hidden_ratio": {ratio},
    "in_channels": {cin},
    "out_channels": {cout},
    "act": "{nact}",
    "spp": False,
    "block_name": 'BasicBlock_3x3_Reverse',
}}

ZeroHead = {{
    "name": "ZeroHead",
    "num_classes": {num_classes},
    "in_channels": {cout},
    "stacked_convs": 0,
    "feat_channels": {cout},
    "reg_max": 16,
    "act": "silu",
    "nms_conf_thre": {conf},
    "nms_iou_thre": {iou},
}}

model = {{
    "backbone": TinyNAS,
    "neck": GiraffeNeckV2,
    "head": ZeroHead,
    "name": "{weights}",
    "class_map": "label_map.pkl",
}}

dataset = {{
    "size_divisibility": 32,
    "input_pixel_mean": [0.0, 0.0, 0.0],
    "input_pixel_std": [1.0, 1.0, 1.0],
    "input_to_bgr255": False,
}}
'''


def make_damoyolo_dir(
    path,
    variant="S",
    names=("person", "car", "dog"),
    conf=0.5,
    iou=0.7,
    task="image-object-detection",
    seed=0,
    wrap="model",
    prefix="",
    calibration_images=(),
    candidate_fraction=0.0015,
):
    """A DAMO-YOLO model directory as the hub lays it out (configuration.json, damoyolo.py, the structure txt,
    label_map.pkl, the checkpoint), with random weights from ModelScope's own backbone / neck / head builders.

    Random weights saturate, so: BatchNorm gammas/betas are randomised, then every BatchNorm's statistics are set
    from a pass over ``calibration_images`` (RGB float arrays); the cls biases are set so that about
    ``candidate_fraction`` of the anchors of those images score above ``conf`` per class, and the learnable reg
    scales are randomised."""
    import pickle

    import numpy as np
    import torch
    from easydict import EasyDict
    from modelscope.models.cv.tinynas_detection.damo.base_models.backbones import build_backbone
    from modelscope.models.cv.tinynas_detection.damo.base_models.heads import build_head
    from modelscope.models.cv.tinynas_detection.damo.base_models.necks import build_neck

    from msvision.hub.py_config import read_python_config

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "damoyolo.py").write_text(damoyolo_config_text(variant, len(names), conf, iou))
    cfg = read_python_config(path / "damoyolo.py")
    structure_file = cfg["model"]["backbone"]["structure_file"]
    (path / structure_file).write_text(_structure_text(variant))
    model_cfg = EasyDict(cfg["model"])
    model_cfg.backbone.structure_file = str(path / structure_file)

    torch.manual_seed(seed)
    net = torch.nn.Module()
    net.backbone = build_backbone(model_cfg.backbone)
    net.neck = build_neck(model_cfg.neck)
    net.head = build_head(model_cfg.head)
    net.head.nms = False
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            m.eps = 1e-3  # as ModelScope's init_bn
            m.weight.uniform_(0.6, 1.4)
            m.bias.uniform_(-0.3, 0.3)
            m.momentum = None  # cumulative: the statistics of the calibration pass
            m.reset_running_stats()
        for s in net.head.scales:
            s.scale.uniform_(0.5, 1.5)
        batch = torch.stack(
            [torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))) for img in calibration_images]
        )
        net.train()
        feats = net.neck(net.backbone(batch))
        net.eval()
        feats = net.neck(net.backbone(batch))
        logit = float(np.log(conf / (1 - conf)))
        for level, conv in enumerate(net.head.gfl_cls):
            raw = conv(feats[level]) - conv.bias.view(1, -1, 1, 1)
            flat = raw.transpose(0, 1).reshape(raw.shape[1], -1)
            q = torch.quantile(flat, 1 - candidate_fraction, dim=1)
            conv.bias.copy_(logit - q)
    state = {prefix + k: v for k, v in net.state_dict().items()}
    torch.save({wrap: state}, path / "damoyolo_model.pt")
    label_map = {i + 1: [{"supercategory": "none", "id": i + 1, "name": n}] for i, n in enumerate(names)}
    with open(path / "label_map.pkl", "wb") as f:
        pickle.dump(label_map, f)
    config = {
        "framework": "pytorch",
        "task": task,
        "pipeline": {"type": "tinynas-detection"},
        "model": {"type": "tinynas-damoyolo"},
        "preprocessor": {"type": "object-detection-tinynas-preprocessor"},
    }
    (path / "configuration.json").write_text(json.dumps(config, indent=2))
    return str(path)


def set_damoyolo_thresholds(model_dir, conf, iou=0.7):
    """Rewrite damoyolo.py's nms_conf_thre / nms_iou_thre (the rest of the directory unchanged)."""
    import re

    p = Path(model_dir) / "damoyolo.py"
    text = re.sub(r'"nms_conf_thre": [^,]+,', f'"nms_conf_thre": {conf},', p.read_text())
    p.write_text(re.sub(r'"nms_iou_thre": [^,]+,', f'"nms_iou_thre": {iou},', text))


# ---- HRNet body keypoints ----


def make_hrnet_dir(path, seed=0):
    """The body-2d-keypoints model directory as the hub lays it out: configuration.json and the flat state dict
    of ModelScope's PoseHighResolutionNetV2 (cfg_128x128_15) with random weights; BatchNorm parameters and
    statistics randomised so every layer shapes the heatmaps."""
    import torch
    from modelscope.models.cv.body_2d_keypoints.hrnet_v2 import PoseHighResolutionNetV2

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = PoseHighResolutionNetV2().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.2)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    config = {
        "framework": "pytorch",
        "task": "body-2d-keypoints",
        "pipeline": {"type": "hrnetv2w32_body-2d-keypoints_image"},
        "model": {"type": "body-2d-keypoints"},
    }
    (path / "configuration.json").write_text(json.dumps(config, indent=2))
    torch.save(net.state_dict(), path / "pytorch_model.pt")
    return str(path)
