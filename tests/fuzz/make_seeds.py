"""Writes the seed corpus in tests/fuzz/seeds/<target>/ (committed; re-run only to change it). Needs torch."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SEEDS = Path(__file__).resolve().parent / "seeds"


def _state_dicts() -> dict[str, object]:
    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    sd = conv.state_dict()
    base = torch.arange(6, dtype=torch.float32)
    return {
        "plain": sd,
        "params": {"params": sd},
        "module_prefix": OrderedDict((f"module.{k}", v) for k, v in sd.items()),
        "dtypes": {
            "f16": torch.ones(3, dtype=torch.float16),
            "bf16": torch.ones(2, dtype=torch.bfloat16),
            "i8": torch.arange(4, dtype=torch.int8),
            "b": torch.tensor([True, False]),
        },
        "shared_views": {"a": base, "b": base[2:5], "t": base.view(2, 3).t()},
        "nested": {"model": sd, "epoch": 3, "names": ["x", "y"], "opt": {"state": {0: {"step": 1}}}},
    }


def _write(target: str, name: str, data: bytes) -> None:
    out = SEEDS / target
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_bytes(data)


def main() -> None:
    for name, obj in _state_dicts().items():
        for legacy in (False, True):
            buf = io.BytesIO()
            torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
            data = buf.getvalue()
            _write("torch_legacy" if legacy else "torch_zip", f"{name}.pt", data)
            if not legacy:
                with zipfile.ZipFile(io.BytesIO(data)) as z:
                    pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
                    _write("pickle", f"{name}.pkl", z.read(pkl))
    _write("pickle", "plain_containers.pkl", pickle.dumps({"a": [1, 2.5, None, True], "b": (b"x", "y")}, 2))

    buf = io.BytesIO()
    np.save(buf, np.arange(12, dtype="<f4").reshape(3, 4))
    _write("npy", "numeric.npy", buf.getvalue())
    for protocol in (2, 4):
        buf = io.BytesIO()
        weights = {
            "conv1.weight": np.ones((2, 1, 3, 3), np.float32),
            "prelu1.weight": np.zeros(2, np.float64),
        }
        np.save(buf, np.array(weights, dtype=object), allow_pickle=True)
        data = buf.getvalue()
        if protocol == 2:
            _write("npy", "pickled_dict.npy", data)
        else:  # the same payload pickled at protocol 4 (numpy 2's default)
            header_end = data.index(b"\n") + 1
            _write(
                "npy",
                "pickled_dict_p4.npy",
                data[:header_end] + pickle.dumps(np.array(weights, dtype=object), 4),
            )

    nafnet = {
        "framework": "pytorch",
        "task": "image-denoising",
        "pipeline": {"type": "nafnet-image-denoise"},
        "model": {
            "type": "nafnet",
            "network_g": {
                "img_channel": 3,
                "width": 16,
                "enc_blk_nums": [1, 1],
                "middle_blk_num": 1,
                "dec_blk_nums": [1, 1],
            },
        },
    }
    _write("configuration", "nafnet.json", json.dumps(nafnet, indent=2).encode())
    _write(
        "configuration",
        "mogface.json",
        json.dumps(
            {
                "framework": "pytorch",
                "task": "face-detection",
                "pipeline": {"type": "resnet101-face-detection-cvpr22papermogface"},
            }
        ).encode(),
    )

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    for name, img, fmt, kwargs in [
        ("rgb.png", rgb, "PNG", {}),
        ("gray.png", rgb.convert("L"), "PNG", {}),
        ("palette.png", rgb.convert("P"), "PNG", {}),
        ("rgba.png", rgb.convert("RGBA"), "PNG", {}),
        ("rgb.bmp", rgb, "BMP", {}),
        ("rgb.gif", rgb, "GIF", {}),
        ("rgb.tiff", rgb, "TIFF", {}),
        ("rgb.webp", rgb, "WEBP", {"quality": 50}),
        ("rgb.jpg", rgb, "JPEG", {"quality": 50}),
    ]:
        buf = io.BytesIO()
        img.save(buf, fmt, **kwargs)
        _write("image", name, buf.getvalue())
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", quality=50, exif=exif.tobytes())
    _write("image", "exif_rotated.jpg", buf.getvalue())


if __name__ == "__main__":
    main()
