"""Builders of ModelScope model directories with random weights from ModelScope's own model classes, and the
real photos the conformance tests run on (scikit-image's bundled photos: public domain / CC0)."""

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

SIDD = {
    "img_channel": 3,
    "width": 32,
    "enc_blk_nums": [2, 2, 4, 8],
    "middle_blk_num": 12,
    "dec_blk_nums": [2, 2, 2, 2],
}
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


def compare_images(ours: np.ndarray, theirs: np.ndarray):
    """(max abs diff, fraction of identical values)."""
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    assert ours.dtype == theirs.dtype == np.uint8
    diff = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
    return int(diff.max()), float((diff == 0).mean())
