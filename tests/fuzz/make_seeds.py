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


def graphdef_seeds() -> None:
    """Small frozen graphs written by TensorFlow (when importable): a conv net with batch norm, constants of
    several dtypes in tensor_content and in the typed fields (a broadcast float_val), list/shape/type/func
    attrs. Run alone with ``python3 tests/fuzz/make_seeds.py graphdef``."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
    except ImportError:
        print("tensorflow is not installed: graphdef seeds left as they are")
        return
    rng = np.random.default_rng(0)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 3], name="image")
        w = tf.constant(rng.standard_normal((3, 3, 3, 4)).astype(np.float32), name="w")
        y = tf.nn.conv2d(x, w, [1, 2, 2, 1], "SAME")
        scale, offset = tf.constant(np.ones(4, np.float32)), tf.constant(np.zeros(4, np.float32))
        mean, var = tf.constant(1.5, shape=[4]), tf.constant(np.full(4, 2, np.float32))
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(y, scale, offset, mean, var, is_training=False)
        y = tf.nn.max_pool2d(tf.nn.relu(y), [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
        tf.reshape(y, [-1, 16], name="out")
    _write("graphdef", "convnet.pb", g.as_graph_def().SerializeToString())

    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.placeholder(tf.int64, None, name="unknown_rank")
        tf.constant(np.array([-1, 2**40], np.int64), name="int64")
        tf.constant([True, False], name="bools")
        tf.constant(np.array([0.5, -2], np.float16), name="half")
        tf.constant(np.array([1.5], np.float32), dtype=tf.bfloat16, name="bfloat16")
        tf.constant([b"a", b"bc"], name="strings")
        tf.constant(np.array([1 + 2j], np.complex64), name="complex")
        tf.constant(-3, shape=[2, 2], dtype=tf.int8, name="int8_broadcast")
        v = tf.compat.v1.placeholder(tf.float32, [2], name="v")
        tf.identity_n([v, tf.cast(v, tf.int32)], name="identity_n")

        @tf.function
        def double(t):
            return t * 2.0

        double(v)
    _write("graphdef", "constants.pb", g.as_graph_def(add_shapes=True).SerializeToString())

    from tensorflow.core.framework import graph_pb2

    gd = graph_pb2.GraphDef()
    node = gd.node.add(name="attrs", op="Custom", input=["a:1", "^b"], device="/device:CPU:0")
    node.attr["s"].s = b"bytes"
    node.attr["i"].i = -5
    node.attr["f"].f = 0.25
    node.attr["b"].b = True
    node.attr["type"].type = tf.float32.as_datatype_enum + 100  # a ref type
    node.attr["shape"].shape.unknown_rank = True
    node.attr["placeholder"].placeholder = "T"
    node.attr["list_i"].list.i.extend([1, -1])
    node.attr["list_f"].list.f.extend([0.5])
    node.attr["list_b"].list.b.extend([True])
    node.attr["list_type"].list.type.extend([tf.int32.as_datatype_enum])
    node.attr["list_shape"].list.shape.add().dim.add(size=-1)
    node.attr["list_tensor"].list.tensor.add().CopyFrom(tf.make_tensor_proto([1, 2]))
    node.attr["list_func"].list.func.add(name="f").attr["n"].i = 1
    node.attr["func"].func.name = "g"
    few = node.attr["few_values"].tensor
    few.CopyFrom(tf.make_tensor_proto(np.zeros(4, np.float32)))
    few.ClearField("tensor_content")
    few.float_val.extend([1.0, 2.0])  # the last value repeats
    _write("graphdef", "attrs.pb", gd.SerializeToString())


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
    import sys

    if sys.argv[1:] == ["graphdef"]:
        graphdef_seeds()
    else:
        main()
        graphdef_seeds()
