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
