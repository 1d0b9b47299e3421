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


def randomize_batch_norm(m, gamma=(0.5, 1.5), var=(0.5, 1.5)):
    """A BatchNorm module's affine parameters and running statistics drawn at random (under no_grad), so that
    folding it into the convolution before it is really exercised."""
    m.weight.uniform_(*gamma)
    m.bias.uniform_(-0.2, 0.2)
    m.running_mean.uniform_(-0.2, 0.2)
    m.running_var.uniform_(*var)


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
                randomize_batch_norm(m)
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
                randomize_batch_norm(m, gamma=(0.5, 1.2), var=(0.5, 2.0))
    config = {
        "framework": "pytorch",
        "task": "body-2d-keypoints",
        "pipeline": {"type": "hrnetv2w32_body-2d-keypoints_image"},
        "model": {"type": "body-2d-keypoints"},
    }
    (path / "configuration.json").write_text(json.dumps(config, indent=2))
    torch.save(net.state_dict(), path / "pytorch_model.pt")
    return str(path)


# ---- RetinaFace-R50 (face-detection, and GPEN's face detector) ----
ANCHORS_PER_CELL = 2
RETINAFACE_SETTINGS = {
    "name": "Resnet50",
    "min_sizes": [[16, 32], [64, 128], [256, 512]],
    "steps": [8, 16, 32],
    "variance": [0.1, 0.2],
    "clip": False,
    "loc_weight": 2.0,
    "gpu_train": True,
    "batch_size": 24,
    "ngpu": 4,
    "epoch": 100,
    "decay1": 70,
    "decay2": 90,
    "image_size": 840,
    "pretrain": False,
    "return_layers": {"layer2": 1, "layer3": 2, "layer4": 3},
    "in_channel": 256,
    "out_channel": 256,
}


def retinaface_net(seed=0, calibrate_on=None, passing=(12, 4, 1)):
    """ModelScope's RetinaFace (ResNet-50) with random weights: BatchNorm statistics and affine parameters
    randomised (the folding is exercised), the box and landmark heads scaled down (sane boxes). Random class heads
    score about 0.5 everywhere: with ``calibrate_on`` (an HxWx3 float32 array, mean already subtracted, as the
    network sees it), each level's face logits are spread (std 2) and shifted so that ``passing[level]`` anchors (or
    up to 3 more: the threshold goes in the widest gap between consecutive ranks) pass the pipelines' 0.9 threshold
    on that image; with 0, the best anchor is a logit below it."""
    import numpy as np
    import torch
    from modelscope.models.cv.face_detection.retinaface.models.retinaface import RetinaFace

    torch.manual_seed(seed)
    net = RetinaFace(cfg=RETINAFACE_SETTINGS).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                randomize_batch_norm(m)
        for head in (*net.BboxHead, *net.LandmarkHead):
            head.conv1x1.weight.mul_(0.2)
        # landmarks laid out like a face around each anchor's centre (in units of the anchor size, / variance 0.1):
        # eyes, nose, mouth corners; so the similarity warps of GPEN's pipeline see a face-sized region
        face = torch.tensor([[-2.0, -1.5], [2.0, -1.5], [0.0, 0.5], [-1.5, 2.5], [1.5, 2.5]]).flatten()
        for head in net.LandmarkHead:
            head.conv1x1.weight.mul_(0.25)
            head.conv1x1.bias.copy_(face.repeat(ANCHORS_PER_CELL))
        if calibrate_on is not None:
            x = torch.from_numpy(np.ascontiguousarray(calibrate_on.transpose(2, 0, 1)[None], np.float32))
            feats = net.body(x)
            fpn = net.fpn(feats)
            for level, (ssh, head) in enumerate(zip((net.ssh1, net.ssh2, net.ssh3), net.ClassHead)):
                feature = ssh(fpn[level])

                def face_logit(head=head, feature=feature):  # softmax(l)[1] = sigmoid(l1 - l0)
                    logits = head.conv1x1(feature)[0]
                    return (logits[1::2] - logits[0::2]).flatten().sort(descending=True).values

                head.conv1x1.bias.zero_()
                head.conv1x1.weight.mul_(2.0 / float(face_logit().std()))  # spread: few anchors near the cut
                diff = face_logit().numpy()
                want = min(passing[level], len(diff) - 1)
                if want == 0:  # none passes: the best anchor a logit below the threshold
                    cut = float(diff[0]) + 1.0
                else:  # the threshold in the widest gap among the next few ranks, at least ``want`` passing
                    k = max(range(want, min(want + 4, len(diff))), key=lambda k: diff[k - 1] - diff[k])
                    cut = float(diff[k - 1] + diff[k]) / 2
                head.conv1x1.bias[1::2] += float(np.log(9.0)) - cut
    return net


def make_retinaface_dir(path, seed=0, calibrate_on=None, passing=(12, 4, 1), wrap=None):
    """A face-detection RetinaFace model directory as the hub lays it out: configuration.json with the network
    settings under ``models`` (no ``model`` section: ModelScope's pipeline builds the detector itself) and
    pytorch_model.pt (optionally ``{wrap: state}`` with ``module.`` prefixes, as ModelScope's loader accepts)."""
    import torch

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    net = retinaface_net(seed, calibrate_on, passing)
    config = {
        "framework": "pytorch",
        "task": "face-detection",
        "pipeline": {"type": "resnet50-face-detection-retinaface"},
        "models": RETINAFACE_SETTINGS,
    }
    (path / "configuration.json").write_text(json.dumps(config, indent=2))
    state = net.state_dict()
    if wrap:
        state = {wrap: {"module." + k: v for k, v in state.items()}}
    torch.save(state, path / "pytorch_model.pt")
    return str(path)


# ---- GPEN portrait enhancement ----
def gpen_detection_image(rgb):
    """The image GPEN's pipeline finds faces on, as the detector's network sees it: the photo resized to the
    super-resolved size (2n, +1 on an odd side) with cv2, in BGR, minus RetinaFace's mean."""
    import cv2
    import numpy as np

    h, w = rgb.shape[:2]
    img = cv2.cvtColor(cv2.resize(rgb, (2 * w + w % 2, 2 * h + h % 2)), cv2.COLOR_RGB2BGR)
    return img.astype(np.float32) - np.array([104, 117, 123], np.float32)


def make_gpen_dir(path, calibrate_on, size=512, seed=0, quality="pass", identity="pass", passing=(1, 0, 0)):
    """A GPEN portrait-enhancement model directory as the hub lays it out, random weights from ModelScope's own
    classes: pytorch_model.pt (FullGenerator), face_detection/RetinaFace-R50.pth (class heads calibrated on
    ``calibrate_on``, an RGB uint8 photo, so ``passing`` anchors per level pass 0.9 there),
    super_resolution/realesrnet_x2.pth (RRDBNet, ``{'params_ema': ...}``), face_quality/eqface_backbone.pth and
    eqface_quality.pth, and arcface/model_ir_se50.pth (only ModelScope's Model class loads it: strictly).

    ``quality``: 'pass' sets the quality head's logits so every face scores ~1 (far above 0.1), 'fail' ~0 (all
    skipped). ``identity``: 'pass' adds a large constant to the backbone's feature (BatchNorm1d bias) so every
    face's features point the same way (cosine distance ~0, far below 0.15), 'fail' leaves the random features
    (a random GPEN output is another face: distance far above it)."""
    import numpy as np
    import torch
    from modelscope.models.cv.image_portrait_enhancement.gpen import FullGenerator
    from modelscope.models.cv.image_portrait_enhancement.losses.model_irse import Backbone
    from modelscope.models.cv.super_resolution.rrdbnet_arch import RRDBNet

    path = Path(path)
    for sub in ("face_detection", "super_resolution", "face_quality", "arcface"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    generator = FullGenerator(size, 512, 8, 2, narrow=1).eval()
    with torch.no_grad():
        for name, p in generator.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.1)
    torch.save(generator.state_dict(), path / "pytorch_model.pt")
    detector = retinaface_net(seed, gpen_detection_image(np.asarray(calibrate_on)), passing)
    torch.save(detector.state_dict(), path / "face_detection/RetinaFace-R50.pth")
    sr = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=32, num_block=23, num_grow_ch=32, scale=2)
    torch.save({"params_ema": sr.state_dict()}, path / "super_resolution/realesrnet_x2.pth")
    write_eqface(path, quality, identity, seed)
    arcface = Backbone(input_size=112, num_layers=50, drop_ratio=0.6, mode="ir_se")
    torch.save(arcface.state_dict(), path / "arcface/model_ir_se50.pth")
    config = {
        "framework": "pytorch",
        "task": "image-portrait-enhancement",
        "pipeline": {"type": "gpen-image-portrait-enhancement"},
        "model": {"type": "gpen"},
    }
    (path / "configuration.json").write_text(json.dumps(config, indent=2))
    return str(path)


def write_eqface(path, quality="pass", identity="pass", seed=0):
    """GPEN's face_quality/eqface_backbone.pth and eqface_quality.pth: ModelScope's EQFace ResNet-100 and quality
    head with random weights steered as ``make_gpen_dir`` describes."""
    import torch
    from modelscope.models.cv.image_portrait_enhancement.eqface.model_resnet import FaceQuality, ResNet

    path = Path(path)
    (path / "face_quality").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed + 1)
    backbone, head = ResNet(num_layers=100, feature_dim=512).eval(), FaceQuality(512 * 7 * 7).eval()
    with torch.no_grad():
        for m in (*backbone.modules(), *head.modules()):
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        feature_bn = backbone.feature_layer[-1]  # the feature's BatchNorm1d
        if identity == "pass":
            feature_bn.bias.fill_(50.0)
        else:  # features standardised over a batch of noise and smooth images: what is common to all is removed
            noise = torch.rand(4, 3, 112, 112) * 2 - 1
            smooth = torch.nn.functional.interpolate(
                torch.rand(4, 3, 7, 7) * 2 - 1, size=(112, 112), mode="bilinear"
            )
            raw = backbone.feature_layer[0](
                backbone.output_layer(
                    backbone.layer4(
                        backbone.layer3(
                            backbone.layer2(backbone.layer1(backbone.input_layer(torch.cat([noise, smooth]))))
                        )
                    )
                )
            )
            feature_bn.running_mean.copy_(raw.mean(0))
            feature_bn.running_var.copy_(raw.var(0) + 1e-3)
            feature_bn.weight.fill_(1.0)
            feature_bn.bias.zero_()
        hidden, last = head.qualtiy[1], head.qualtiy[3]  # (sic: ModelScope's name)
        hidden.bias.fill_(1.0)  # ReLU(BN(.)) > 0, so the last layer's logits follow its weights' sign
        last.weight.zero_()
        last.weight[0 if quality == "pass" else 1].fill_(0.05)  # softmax(.)[0] is the quality
    torch.save(backbone.state_dict(), path / "face_quality/eqface_backbone.pth")
    torch.save(head.state_dict(), path / "face_quality/eqface_quality.pth")


def gpen_variant(base, dest, quality="pass", identity="pass"):
    """A copy of GPEN model directory ``base`` (hard links: no extra disk) with other EQFace weights."""
    import shutil

    dest = Path(dest)
    shutil.copytree(base, dest, copy_function=os.link)
    for name in ("eqface_backbone.pth", "eqface_quality.pth"):
        (dest / "face_quality" / name).unlink()
    write_eqface(dest, quality, identity)
    return str(dest)
