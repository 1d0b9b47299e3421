"""Tests for msvision.checkpoint: torch.save / .npy readers that never execute code.

torch is a test dependency only: it creates the fixtures and serves as the oracle (``torch.load`` with
``weights_only=True``).  The package under test must never import it.
"""

from __future__ import annotations

import ast
import os
import pickle
import struct
import subprocess
import sys
import time
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from support.checkpoints import (
    StorageRef,
    TensorRef,
    pickle_with_storages,
    write_legacy,
    write_pickled_npy,
    write_zip,
)
from support.paths import shared_path

from msvision.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    load_npy,
    load_torch,
    state_dict_from,
    unwrap_state_dict,
)

torch.set_num_threads(1)

SHARED = shared_path()
ULFD = SHARED / "assets/modelscope/damo/cv_manual_face-detection_ulfd/pytorch_model.pt"
MTCNN = SHARED / "assets/modelscope/damo/cv_manual_face-detection_mtcnn/weights"
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(),
    reason=f"shared assets folder {SHARED} is absent (set MSVISION_SHARED to point at it)",
)

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
FORMATS = pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _save(obj, path: Path, legacy: bool) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def _torch_to_numpy(x):
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype == torch.bfloat16:
            x = x.float()
        return np.ascontiguousarray(x.numpy()) if x.ndim else x.numpy().copy()
    if isinstance(x, dict):
        return {k: _torch_to_numpy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_torch_to_numpy(v) for v in x]
    if isinstance(x, tuple):
        return tuple(_torch_to_numpy(v) for v in x)
    return x


def _assert_same(ours, ref, where: str = "root") -> None:
    if isinstance(ref, np.ndarray):
        assert isinstance(ours, np.ndarray), f"{where}: {type(ours)}"
        assert ours.dtype == ref.dtype, f"{where}: {ours.dtype} != {ref.dtype}"
        assert ours.shape == ref.shape, f"{where}: {ours.shape} != {ref.shape}"
        assert ours.flags.c_contiguous, where
        if ref.dtype == object:
            for i, (a, b) in enumerate(zip(ours.reshape(-1), ref.reshape(-1))):
                _assert_same(a, b, f"{where}[{i}]")
        else:  # bit-exact (NaN payloads, -0.0)
            assert ours.tobytes() == np.ascontiguousarray(ref).tobytes(), where
    elif isinstance(ref, dict):
        assert type(ours) is dict, f"{where}: {type(ours)}"
        assert list(ours) == list(ref), where
        for k in ref:
            _assert_same(ours[k], ref[k], f"{where}[{k!r}]")
    elif isinstance(ref, (list, tuple)):
        assert type(ours) is type(ref) and len(ours) == len(ref), where
        for i, (a, b) in enumerate(zip(ours, ref)):
            _assert_same(a, b, f"{where}[{i}]")
    else:
        assert type(ours) is type(ref) and ours == ref, f"{where}: {ours!r} != {ref!r}"


def _check_against_torch(path: Path):
    ours = load_torch(path)
    ref = _torch_to_numpy(torch.load(path, weights_only=True, map_location="cpu"))
    _assert_same(ours, ref)
    return ours


def _write_raw_checkpoint(path: Path, pkl: bytes, legacy: bool) -> Path:
    return write_legacy(path, pkl) if legacy else write_zip(path, pkl)


def _global_call(module: str, name: str, protocol: int = 2) -> bytes:
    """A pickle that fetches module.name and calls it with no arguments."""
    if protocol >= 4:
        m, n = module.encode(), name.encode()
        return b"\x80\x04\x8c" + bytes([len(m)]) + m + b"\x8c" + bytes([len(n)]) + n + b"\x93)R."
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R."


def _sample_objects() -> dict:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=g)
    special = torch.tensor([float("nan"), float("inf"), -0.0, 1e-40, -3.5])
    return {
        "f32": base,
        "f32_special": special,
        "f16": (torch.randn(5, generator=g) * 100).half(),
        "bf16": torch.cat([torch.randn(7, generator=g), special]).bfloat16(),
        "f64": torch.randn(2, 3, dtype=torch.float64, generator=g),
        "i64": torch.arange(-5, 5, dtype=torch.int64) * (2**40),
        "i32": torch.arange(-3, 3, dtype=torch.int32),
        "i16": torch.arange(-3, 3, dtype=torch.int16),
        "i8": torch.arange(-128, 128, 51, dtype=torch.int8),
        "u8": torch.arange(0, 256, 17, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True, True]),
        "scalar": torch.tensor(3.25),
        "int_scalar": torch.tensor(7),
        "empty": torch.zeros(0, 3),
        "transposed": base.t(),
        "stepped": base[:, ::2],
        "offset_view": base[1:3, 2:5],
        "flat_view": base.view(-1)[5:11],
        "expanded": torch.arange(3.0).expand(4, 3),
        "bf16_transposed": torch.randn(3, 5, generator=g).bfloat16().t(),
        "param": torch.nn.Parameter(torch.randn(2, 2, generator=g)),
        "frozen_param": torch.nn.Parameter(torch.randn(3, generator=g), requires_grad=False),
        "plain": {"int": 3, "neg": -(2**70), "float": 0.5, "str": "héllo", "none": None, "true": True},
        "bytes": b"\x00\xffabc",
        "list": [1, [2, (3.0, "x")], base[0]],
        "tuple": (None, False, torch.tensor([1, 2])),
        "int_keys": {0: "a", 1: "b"},
        "od": OrderedDict([("z", 1), ("a", torch.ones(2))]),
    }


# --------------------------------------------------------------------------------------------------
# round trips against torch.load(weights_only=True)
# --------------------------------------------------------------------------------------------------


@FORMATS
def test_round_trip_dtypes_views_and_containers(tmp_path, legacy):
    obj = _sample_objects()
    ours = _check_against_torch(_save(obj, tmp_path / "x.pt", legacy))
    assert ours["bf16"].dtype == np.float32 and ours["f16"].dtype == np.float16
    assert ours["bool"].dtype == np.bool_ and ours["u8"].dtype == np.uint8
    assert ours["scalar"].shape == () and ours["param"].shape == (2, 2)
    assert type(ours["od"]) is dict and list(ours["od"]) == ["z", "a"]


@FORMATS
def test_tensors_sharing_a_storage(tmp_path, legacy):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    obj = {"a": base, "b": base[1:, ::2], "c": base.view(-1)[7:9], "d": base.t(), "same": base}
    ours = _check_against_torch(_save(obj, tmp_path / "x.pt", legacy))
    assert not np.shares_memory(ours["a"], ours["b"])  # independent C-contiguous copies
    ours["b"][0, 0] = -1
    assert ours["a"][1, 0] == 6


@FORMATS
def test_module_state_dict_with_batchnorm(tmp_path, legacy):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    net.train()
    net(torch.randn(2, 3, 5, 5))  # makes running stats and num_batches_tracked non-trivial
    sd = net.state_dict()
    ours = _check_against_torch(_save(sd, tmp_path / "sd.pt", legacy))
    assert list(ours) == list(sd)
    assert ours["1.num_batches_tracked"].dtype == np.int64 and ours["1.num_batches_tracked"].shape == ()
    assert ours["1.num_batches_tracked"] == 1
    prefixed = {"module." + k: v for k, v in sd.items()}
    nested = {"params_ema": prefixed, "params": sd, "meta": {"epoch": 3}}
    ours = _check_against_torch(_save(nested, tmp_path / "nested.pt", legacy))
    assert list(state_dict_from(ours, "params_ema")) == list(sd)


def test_legacy_storage_views(tmp_path):
    # The legacy format can describe storage views (view_metadata); torch.save no longer writes them.
    root = StorageRef(torch.FloatStorage, "root", 6)
    view = StorageRef(torch.FloatStorage, "root", 6, view=("v1", 2, 3))
    obj = {"whole": TensorRef(root, 0, (2, 3), (3, 1)), "view": TensorRef(view, 1, (2,), (1,))}
    raw = np.arange(6, dtype="<f4").tobytes()
    path = write_legacy(tmp_path / "views.pt", pickle_with_storages(obj, legacy=True), [("root", 6, raw)])
    ours = _check_against_torch(path)
    assert ours["view"].tolist() == [3.0, 4.0]


def test_empty_bytes_value(tmp_path):
    # protocol 2 writes b'' as __builtin__.bytes(); torch's weights_only loader refuses that, we allow it.
    path = _save({"b": b"", "c": b"ab"}, tmp_path / "b.pt", legacy=False)
    assert load_torch(path) == {"b": b"", "c": b"ab"}


def test_big_endian_zip(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1.5, -2.0], dtype=np.float32)
    h = np.array([1, 2], dtype=np.uint16)  # bfloat16 bit patterns
    st = StorageRef(torch.FloatStorage, "0", 6)
    st2 = StorageRef(torch.FloatStorage, "1", 2)
    st3 = StorageRef(torch.BFloat16Storage, "2", 2)
    obj = {
        "a": TensorRef(st, 0, (2, 3), (3, 1)),
        "b": TensorRef(st2, 0, (2,), (1,)),
        "h": TensorRef(st3, 0, (2,), (1,)),
    }
    records = {"0": a.astype(">f4").tobytes(), "1": b.astype(">f4").tobytes(), "2": h.astype(">u2").tobytes()}
    ours = load_torch(
        write_zip(tmp_path / "be.pt", pickle_with_storages(obj, legacy=False), records, byteorder=b"big")
    )
    _assert_same(ours["a"], a)
    _assert_same(ours["b"], b)
    _assert_same(ours["h"], (h.astype(np.uint32) << 16).view(np.float32))


def test_zip_prefix_is_taken_from_the_archive(tmp_path):
    path = _save({"w": torch.ones(2)}, tmp_path / "some_name.pth", legacy=False)
    with zipfile.ZipFile(path) as z:
        assert any(n.startswith("some_name/") for n in z.namelist())
    _check_against_torch(path)


# --------------------------------------------------------------------------------------------------
# state-dict selection, checked against ModelScope's own TorchModel._load_pretrained
# --------------------------------------------------------------------------------------------------


class _CapturingNet:
    def load_state_dict(self, sd, strict=True):
        self.sd = sd


def _modelscope_selection(path: Path, param_key):
    from modelscope.models.base.base_torch_model import TorchModel

    net = _CapturingNet()
    TorchModel._load_pretrained(object(), net, str(path), strict=False, param_key=param_key)
    return net.sd


def _sd(*names, seed=0):
    g = torch.Generator().manual_seed(seed)
    return OrderedDict((n, torch.randn(2, generator=g)) for n in names)


@pytest.mark.parametrize(
    ("case", "param_key"),
    [
        ("params", "params"),
        ("params", "params_ema"),  # absent -> falls back to 'params'
        ("ema_and_params", "params_ema"),
        ("ema_and_params", "params"),
        ("ema_and_params", "nothing"),
        ("bare", "params"),
        ("bare", None),
        ("prefix_order", "params"),
        ("custom_key", "generator"),
    ],
)
def test_state_dict_from_matches_modelscope(tmp_path, case, param_key):
    objs = {
        "params": {"params": _sd("module.a", "module.b.c")},
        "ema_and_params": {"params_ema": _sd("x", "y", seed=1), "params": _sd("x", "y", seed=2)},
        "bare": _sd("conv.weight", "module.conv.bias"),
        # 'a' exists and 'module.a' overwrites it in place; other stripped keys move to the end
        "prefix_order": {"params": _sd("module.z", "a", "module.a", "b", "module.module.c", "module.c")},
        "custom_key": {"generator": _sd("g.w"), "discriminator": _sd("d.w")},
    }
    path = _save(objs[case], tmp_path / "ckpt.pt", legacy=False)
    ref = _torch_to_numpy(dict(_modelscope_selection(path, param_key)))
    ours = state_dict_from(load_torch(path), param_key)
    _assert_same(ours, ref)


def test_state_dict_from_rejects_non_state_dicts():
    arr = np.zeros(2, np.float32)
    with pytest.raises(CheckpointError, match="'state_dict'"):
        state_dict_from({"state_dict": {"w": arr}})  # ModelScope would hand the whole dict to the net
    with pytest.raises(CheckpointError, match="'params'"):
        state_dict_from({"params": {"w": arr}}, param_key=None)
    with pytest.raises(CheckpointError, match="'epoch'"):
        state_dict_from({"w": arr, "epoch": 3})
    with pytest.raises(CheckpointError, match="not a mapping"):
        state_dict_from([arr])
    with pytest.raises(CheckpointError, match="not a mapping"):
        state_dict_from({"params": [arr]})


def test_unwrap_state_dict():
    a, b = np.zeros(2, np.float32), np.ones(3, np.float32)
    assert list(unwrap_state_dict({"state_dict": {"model": {"module.x": a, "y": b}}})) == ["y", "x"]
    out = unwrap_state_dict({"model": {"w": a}, "state_dict": {"v": b}})  # precedence follows `keys`
    assert list(out) == ["v"]
    assert list(unwrap_state_dict({"params_ema": {"e": a}, "params": {"p": b}})) == ["e"]
    assert list(unwrap_state_dict({"model": "resnet", "params": {"p": b}})) == ["p"]  # only mappings
    assert list(unwrap_state_dict({"w": a})) == ["w"]
    assert list(unwrap_state_dict({"net": {"w": a}}, keys=("net",))) == ["w"]
    with pytest.raises(CheckpointError, match=r"\['state_dict'\].*'optimizer'"):
        unwrap_state_dict({"state_dict": {"w": a, "optimizer": {"lr": 1}}})
    with pytest.raises(CheckpointError, match="non-string key"):
        unwrap_state_dict({0: a})


# --------------------------------------------------------------------------------------------------
# .npy
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, (1, 0), (2, 0), (3, 0)])
def test_npy_numeric(tmp_path, version):
    arrays = {
        "f32": np.arange(12, dtype=np.float32).reshape(3, 4),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
        "big_endian": np.arange(5, dtype=">i4"),
        "scalar": np.array(2.5, dtype=np.float16),
        "bool": np.array([True, False]),
        "empty": np.zeros((0, 3), dtype=np.int64),
        "u8": np.arange(7, dtype=np.uint8),
        "c64": np.array([1 + 2j], dtype=np.complex64),
    }
    for name, arr in arrays.items():
        path = tmp_path / f"{name}.npy"
        with open(path, "wb") as f:
            np.lib.format.write_array(f, arr, version=version)
        ours = load_npy(path)
        ref = np.load(path)
        assert (
            ours.dtype == ref.dtype.newbyteorder("=") and ours.shape == ref.shape and ours.flags.c_contiguous
        )
        np.testing.assert_array_equal(ours, ref)


def test_npy_pickled_objects(tmp_path):
    payload = {
        "w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(3, 2)),
        "empty": np.zeros((0,), dtype=np.int8),
        "scalar": np.float64(1.25),
        "nested": [np.int64(3), (np.array([True]), "s", None, b"raw")],
        "be": np.arange(3, dtype=">f8"),
    }
    path = tmp_path / "d.npy"
    np.save(path, payload, allow_pickle=True)
    ours = load_npy(path)
    ref = np.load(path, allow_pickle=True).item()
    assert list(ours) == list(ref)
    np.testing.assert_array_equal(ours["w"], ref["w"])
    np.testing.assert_array_equal(ours["fortran"], ref["fortran"])
    assert ours["empty"].shape == (0,) and ours["empty"].dtype == np.int8
    assert ours["scalar"] == 1.25 and type(ours["scalar"]) is np.float64
    assert ours["nested"][0] == 3 and ours["nested"][1][1:] == ("s", None, b"raw")
    np.testing.assert_array_equal(ours["be"], ref["be"])

    # protocol 2 (as numpy 1.x / Python 2 era files) with _codecs.encode and __builtin__.bytes
    p2 = write_pickled_npy(tmp_path / "p2.npy", pickle.dumps(np.asanyarray(payload), protocol=2))
    ours2 = load_npy(p2)
    assert list(ours2) == list(ref) and ours2["empty"].shape == (0,)
    np.testing.assert_array_equal(ours2["w"], ref["w"])

    objarr = np.empty(2, dtype=object)
    objarr[0], objarr[1] = {"a": np.ones(2)}, [1, 2]
    np.save(tmp_path / "o.npy", objarr, allow_pickle=True)
    ours3 = load_npy(tmp_path / "o.npy")
    assert ours3.shape == (2,) and ours3.dtype == object and ours3[1] == [1, 2]
    np.testing.assert_array_equal(ours3[0]["a"], np.ones(2))


@needs_shared
@pytest.mark.parametrize("name", ["pnet", "rnet", "onet"])
def test_real_mtcnn_npy(name):
    path = MTCNN / f"{name}.npy"
    ours = load_npy(path)
    ref = np.load(path, allow_pickle=True).item()
    _assert_same(ours, ref)
    assert all(v.dtype == np.float32 for v in ours.values())


@needs_shared
def test_real_ulfd_legacy_checkpoint():
    with open(ULFD, "rb") as f:
        assert f.read(2) == b"\x80\x02"  # really the legacy format
    ours = _check_against_torch(ULFD)
    sd = state_dict_from(ours)
    assert len(sd) == len(ours) and "base_net.0.0.weight" in sd


# --------------------------------------------------------------------------------------------------
# hostile files
# --------------------------------------------------------------------------------------------------


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


SYSTEM = f"{os.system.__module__}.system"  # 'posix.system' on Linux


@FORMATS
def test_reduce_os_system_in_torch_file_is_refused(tmp_path, legacy):
    marker = tmp_path / "pwned"
    path = _save({"w": torch.ones(2), "x": _Evil(marker)}, tmp_path / "evil.pt", legacy)
    with pytest.raises(UnsafeCheckpointError, match=f"refused global '{SYSTEM}' in .*evil.pt"):
        load_torch(path)
    assert not marker.exists()


def test_reduce_os_system_in_npy_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    np.save(tmp_path / "evil.npy", {"w": np.ones(2), "x": _Evil(marker)}, allow_pickle=True)  # STACK_GLOBAL
    with pytest.raises(UnsafeCheckpointError, match=f"refused global '{SYSTEM}'"):
        load_npy(tmp_path / "evil.npy")
    p2 = write_pickled_npy(tmp_path / "evil2.npy", pickle.dumps(_Evil(marker), protocol=2))  # GLOBAL
    with pytest.raises(UnsafeCheckpointError, match=f"refused global '{SYSTEM}'"):
        load_npy(p2)
    assert not marker.exists()


DANGEROUS = [
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("__builtin__", "getattr"),
    ("builtins", "getattr"),
    ("__builtin__", "__import__"),
    ("subprocess", "Popen"),
    ("os", "system"),
    ("posix", "system"),
    ("numpy", "load"),
    ("numpy.testing._private.utils", "runstring"),
    ("torch", "load"),
    ("torch.serialization", "load"),
    ("torch._utils", "_rebuild_from_type_v2"),
    ("collections", "OrderedDict.fromkeys"),
    ("builtins", "bytearray"),
    ("copyreg", "_reconstructor"),
]


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize(("module", "name"), DANGEROUS)
def test_dangerous_globals_are_refused_everywhere(tmp_path, module, name, protocol):
    pkl = _global_call(module, name, protocol)
    expected = f"refused global '{module}.{name}'"
    for legacy in (False, True):
        with pytest.raises(UnsafeCheckpointError, match=expected):
            load_torch(_write_raw_checkpoint(tmp_path / f"g{legacy}.pt", pkl, legacy))
    with pytest.raises(UnsafeCheckpointError, match=expected):
        load_npy(write_pickled_npy(tmp_path / "g.npy", pkl))


def test_numpy_globals_are_not_allowed_in_torch_files_and_vice_versa(tmp_path):
    with pytest.raises(UnsafeCheckpointError, match=r"numpy\.core\.multiarray\._reconstruct"):
        load_torch(write_zip(tmp_path / "n.pt", _global_call("numpy.core.multiarray", "_reconstruct")))
    with pytest.raises(UnsafeCheckpointError, match=r"torch\._utils\._rebuild_tensor_v2"):
        load_npy(write_pickled_npy(tmp_path / "t.npy", _global_call("torch._utils", "_rebuild_tensor_v2")))


def test_refused_opcodes(tmp_path):
    cases = {
        b"(S'touch x'\nios\nsystem\n.": "refused global 'os.system' \\(opcode INST\\)",
        b"\x80\x02c_codecs\nencode\n)\x81.": "refused pickle opcode NEWOBJ",
        b"\x80\x02(c_codecs\nencode\no.": "refused pickle opcode OBJ",
        b"\x80\x02\x82\x01.": "refused pickle opcode EXT1",
        b"(Pfoo\n.": "refused pickle opcode PERSID",
    }
    for pkl, msg in cases.items():
        with pytest.raises(UnsafeCheckpointError, match=msg):
            load_torch(write_zip(tmp_path / "op.pt", pkl))
        with pytest.raises(UnsafeCheckpointError, match=msg):
            load_npy(write_pickled_npy(tmp_path / "op.npy", pkl))
    with pytest.raises(UnsafeCheckpointError, match="persistent id"):
        load_npy(write_pickled_npy(tmp_path / "pid.npy", b"\x80\x02X\x01\x00\x00\x00xQ."))


def test_allowed_callables_refuse_abuse(tmp_path):
    cases = [
        # _codecs.encode may only turn latin-1 text into bytes
        b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R.",
        # builtins.bytes(10**12) would allocate a terabyte
        b"\x80\x02c__builtin__\nbytes\n\x8a\x05\x00\x10\xa5\xd4\xe8\x85R.",
        # a storage type token is not callable
        b"\x80\x02ctorch\nFloatStorage\n)R.",
        # tensor rebuilt from a non-storage
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(K\x00K\x00))tR.",
        # BUILD on an OrderedDict with a state that is not an attribute dict
        b"\x80\x02ccollections\nOrderedDict\n)R}X\x01\x00\x00\x00aK\x01sb]b.",
        # BUILD on bytes
        b"\x80\x02c__builtin__\nbytes\n)R}b.",
    ]
    messages = [
        "latin-1",
        "without arguments",
        "not callable",
        "not a storage",
        "unexpected OrderedDict state",
    ]
    messages += ["corrupt pickle"]
    # BUILD on an allowed global, trying to set attributes on it (slot state) for later loads
    set_defaults = b"N}X\x0c\x00\x00\x00__defaults__)s\x86b."
    for global_ in (b"c_codecs\nencode\n", b"ccollections\nOrderedDict\n", b"ctorch\nFloatStorage\n"):
        cases.append(b"\x80\x02" + global_ + set_defaults)
        messages.append("unexpected BUILD")
    assert len(cases) == len(messages)
    for i, (pkl, msg) in enumerate(zip(cases, messages)):
        with pytest.raises(CheckpointError, match=msg) as info:
            load_torch(write_zip(tmp_path / f"abuse{i}.pt", pkl))
        assert f"abuse{i}.pt" in str(info.value)

    class _TensorWithState(TensorRef):
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, self.args, {"storage": "replaced"})

    st = StorageRef(torch.FloatStorage, "0", 1)
    pkl = pickle_with_storages({"w": _TensorWithState(st, 0, (1,), (1,))}, legacy=False)
    with pytest.raises(CheckpointError, match="unexpected BUILD on LazyTensor"):
        load_torch(write_zip(tmp_path / "state.pt", pkl, {"0": b"\0" * 4}))


# --------------------------------------------------------------------------------------------------
# corrupt, truncated and oversized files
# --------------------------------------------------------------------------------------------------


@FORMATS
def test_truncated_checkpoints(tmp_path, legacy):
    sd = {"a": torch.randn(64, 32), "b": torch.arange(100), "c": {"d": torch.ones(3, dtype=torch.bool)}}
    data = _save(sd, tmp_path / "full.pt", legacy).read_bytes()
    cut_path = tmp_path / "cut.pt"
    for frac in (0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99):
        cut = int(len(data) * frac)
        for n in (cut, len(data) - 1, 1):
            cut_path.write_bytes(data[:n])
            with pytest.raises(CheckpointError, match=r"cut\.pt"):
                load_torch(cut_path)


def test_truncated_npy(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(1000, dtype=np.float32))
    np.save(tmp_path / "d.npy", {"w": np.arange(1000, dtype=np.float32)}, allow_pickle=True)
    for name in ("a.npy", "d.npy"):
        data = (tmp_path / name).read_bytes()
        for n in (0, 3, 8, 11, 60, len(data) // 2, len(data) - 1):
            (tmp_path / "cut.npy").write_bytes(data[:n])
            with pytest.raises(CheckpointError, match=r"cut\.npy"):
                load_npy(tmp_path / "cut.npy")


def test_garbage_and_empty_files(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "junk.bin"
    prefixes = [b"", b"\x80\x02", b"\x80", b"PK\x03\x04", b"\x93NUMPY\x01\x00"]
    for prefix in prefixes:
        for size in (0, 1, 9, 100, 5000):
            path.write_bytes(prefix + rng.bytes(size))
            with pytest.raises(CheckpointError, match=r"junk\.bin"):
                load_torch(path)
            with pytest.raises(CheckpointError, match=r"junk\.bin"):
                load_npy(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_torch(path)


def test_zip_storage_claiming_huge_size(tmp_path):
    st = StorageRef(torch.FloatStorage, "0", 10**12)
    pkl = pickle_with_storages({"w": TensorRef(st, 0, (10**12,), (1,))}, legacy=False)
    path = write_zip(tmp_path / "huge.pt", pkl, {"0": b"\0" * 16})
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="claims 1000000000000 elements"):
        load_torch(path)
    assert time.perf_counter() - t0 < 2


@FORMATS
def test_shapes_strides_and_offsets_out_of_bounds(tmp_path, legacy):
    raw = np.arange(4, dtype="<f4").tobytes()

    def write(size, stride, offset=0, name="t.pt"):
        st = StorageRef(torch.FloatStorage, "0", 4)
        pkl = pickle_with_storages({"w": TensorRef(st, offset, size, stride)}, legacy)
        if legacy:
            return write_legacy(tmp_path / name, pkl, [("0", 4, raw)])
        return write_zip(tmp_path / name, pkl, {"0": raw})

    assert load_torch(write((2, 2), (0, 1), 2))["w"].tolist() == [[2.0, 3.0], [2.0, 3.0]]  # a valid expand
    bad = [
        ((5,), (1,), 0, "reads element 4"),
        ((3,), (1,), 2, "reads element 4"),
        ((2,), (2**62,), 0, "reads element"),
        ((2,), (-1,), 1, "invalid strides"),
        ((2,), (1,), -1, "invalid storage offset"),
        ((2, 2), (1,), 0, "does not match"),
        ((-1,), (1,), 0, "malformed tensor shape"),
        ((10**6, 10**6), (0, 0), 0, "would need 4000000000000 bytes"),
        ((2**40, 2**40, 2**40), (0, 0, 0), 0, "would need"),
    ]
    t0 = time.perf_counter()
    for size, stride, offset, msg in bad:
        with pytest.raises(CheckpointError, match=msg):
            load_torch(write(size, stride, offset))
    assert time.perf_counter() - t0 < 5


def test_legacy_file_claiming_huge_element_counts(tmp_path):
    raw = np.arange(4, dtype="<f4").tobytes()
    ok_pkl = pickle_with_storages(
        {"w": TensorRef(StorageRef(torch.FloatStorage, "0", 4), 0, (4,), (1,))}, legacy=True
    )
    huge_pkl = pickle_with_storages(
        {"w": TensorRef(StorageRef(torch.FloatStorage, "0", 2**60), 0, (4,), (1,))}, legacy=True
    )
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="claims 1152921504606846976 elements"):
        load_torch(write_legacy(tmp_path / "a.pt", huge_pkl, [("0", 2**60, raw)]))
    with pytest.raises(CheckpointError, match="on disk holds 1152921504606846976 elements"):
        load_torch(write_legacy(tmp_path / "b.pt", ok_pkl, [("0", 2**60, raw)]))
    with pytest.raises(CheckpointError, match="on disk holds -1 elements"):
        load_torch(write_legacy(tmp_path / "c.pt", ok_pkl, [("0", -1, raw)]))
    with pytest.raises(CheckpointError, match="truncated"):
        load_torch(write_legacy(tmp_path / "d.pt", ok_pkl, [("0", 4, raw[:7])]))
    with pytest.raises(CheckpointError, match="never referenced"):
        load_torch(write_legacy(tmp_path / "e.pt", ok_pkl, [("0", 4, raw)], keys=["9"]))
    with pytest.raises(CheckpointError, match="no data"):
        load_torch(write_legacy(tmp_path / "f.pt", ok_pkl, [], keys=[]))
    assert time.perf_counter() - t0 < 2


def test_zip_structure_errors(tmp_path):
    st = StorageRef(torch.FloatStorage, "7", 2)
    pkl = pickle_with_storages({"w": TensorRef(st, 0, (2,), (1,))}, legacy=False)
    with pytest.raises(CheckpointError, match="missing the zip entry 'archive/data/7'"):
        load_torch(write_zip(tmp_path / "m.pt", pkl, {}))
    with zipfile.ZipFile(tmp_path / "n.pt", "w") as z:
        z.writestr("archive/other.pkl", b"x")
    with pytest.raises(CheckpointError, match=r"without data\.pkl"):
        load_torch(tmp_path / "n.pt")
    with pytest.raises(CheckpointError, match="byteorder"):
        load_torch(write_zip(tmp_path / "o.pt", pkl, {"7": b"\0" * 8}, byteorder=b"middle"))
    # a deflated entry whose header claims far more than deflate can produce
    with zipfile.ZipFile(tmp_path / "p.pt", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/data/7", b"\0" * 8)
    data = bytearray((tmp_path / "p.pt").read_bytes())
    cd = data.rfind(b"PK\x01\x02")  # last central-directory record: patch its uncompressed size
    data[cd + 24 : cd + 28] = struct.pack("<I", 2**31)
    (tmp_path / "p.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="impossible size"):
        load_torch(tmp_path / "p.pt")
    # a corrupted storage byte is caught by the zip CRC
    good = write_zip(tmp_path / "q.pt", pkl, {"7": np.array([1.0, 2.0], "<f4").tobytes()})
    data = bytearray(good.read_bytes())
    pos = data.find(np.array([1.0, 2.0], "<f4").tobytes())
    data[pos] ^= 0xFF
    good.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_torch(good)


def test_zip_stored_entries_read_through_the_mapped_file(tmp_path):
    """Stored entries (torch.save's) are read as views of the mapped file: the tensors are still private,
    writable copies, the mapping is gone after loading, and the checks zipfile makes still hold."""
    values = np.arange(6, dtype="<f4")
    st = StorageRef(torch.FloatStorage, "7", 6)
    pkl = pickle_with_storages(
        {"a": TensorRef(st, 0, (2, 3), (3, 1)), "b": TensorRef(st, 0, (6,), (1,))}, legacy=False
    )
    path = write_zip(tmp_path / "w.pt", pkl, {"7": values.tobytes()})
    sd = load_torch(path)
    assert np.array_equal(sd["a"], values.reshape(2, 3)) and np.array_equal(sd["b"], values)
    for arr in sd.values():
        assert arr.flags.writeable and arr.flags.owndata and arr.flags.c_contiguous
    sd["a"][0, 0] = 42.0  # tensors sharing a storage do not alias
    assert sd["b"][0] == 0.0
    with open("/proc/self/maps") as f:
        assert str(path) not in f.read()  # the mapping is gone
    os.truncate(path, 0)
    assert np.array_equal(sd["b"], values)

    good = write_zip(tmp_path / "g.pt", pkl, {"7": values.tobytes()}).read_bytes()
    entry = good.rfind(b"PK\x03\x04", 0, good.find(values.tobytes()))  # the storage's local header
    cases = {
        "bad local header": lambda d: d.__setitem__(slice(entry, entry + 4), b"PK\x05\x06"),
        "names differ": lambda d: d.__setitem__(slice(entry + 30, entry + 31), b"X"),
    }
    for what, patch in cases.items():
        data = bytearray(good)
        patch(data)
        (tmp_path / "bad.pt").write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match=what):
            load_torch(tmp_path / "bad.pt")
    # an extra-field length pushing the data past the end of the file
    data = bytearray(good)
    data[entry + 28 : entry + 30] = struct.pack("<H", 0xFFFF)
    (tmp_path / "bad.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated|corrupt"):
        load_torch(tmp_path / "bad.pt")


def test_deep_nesting_and_cycles(tmp_path):
    depth = 50_000
    deep = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."
    with pytest.raises(CheckpointError, match="nested"):
        load_torch(write_zip(tmp_path / "deep.pt", deep))
    holder = np.empty((), dtype=object)
    holder[()] = "MARKER"
    template = pickle.dumps(holder, protocol=2)
    marker = b"X\x06\x00\x00\x00MARKER"
    assert template.count(marker) == 1
    deep_tuple = template.replace(
        marker, b"N" + b"\x85" * depth
    )  # ((((None,),),),...) inside an object array
    with pytest.raises(CheckpointError, match="nested"):
        load_npy(write_pickled_npy(tmp_path / "deep.npy", deep_tuple))
    cycle = b"\x80\x02]q\x00h\x00a."  # a list containing itself
    with pytest.raises(CheckpointError, match="cycle"):
        load_torch(write_zip(tmp_path / "cycle.pt", cycle))
    big_memo = b"\x80\x02Nr\xff\xff\xff\x7f."  # LONG_BINPUT 2**31-1: would make the unpickler allocate 16 GiB
    with pytest.raises(CheckpointError, match="memo index"):
        load_torch(write_zip(tmp_path / "memo.pt", big_memo))
    huge_bytes = b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"abc."  # BINBYTES8 claiming 1 TiB
    with pytest.raises(CheckpointError):
        load_torch(write_zip(tmp_path / "bytes8.pt", huge_bytes))


def test_npy_header_errors(tmp_path):
    path = tmp_path / "h.npy"

    def header(text: str, version=b"\x01\x00") -> bytes:
        body = text.encode("latin-1")
        return b"\x93NUMPY" + version + struct.pack("<H", len(body)) + body

    cases = {
        header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", b"\x04\x00"
        ): "unsupported .npy format",
        header("__import__('os').system('x')"): "unreadable .npy header",
        header("[1, 2]"): "malformed .npy header",
        header("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}"): "unsupported .npy dtype",
        header("{'descr': '<U3', 'fortran_order': False, 'shape': (1,)}"): "unsupported .npy dtype",
        header("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}"): "invalid .npy shape",
        header("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}"): "fortran_order",
        header("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,)}"): "truncated",
        b"\x93NUMPY\x01\x00\xff\xff": "header, more than",
        b"NUMPY": "bad magic",
    }
    for data, msg in cases.items():
        path.write_bytes(data)
        with pytest.raises(CheckpointError, match=msg):
            load_npy(path)
    # a pickled payload that is not an ndarray, or whose shape disagrees with the header
    with pytest.raises(CheckpointError, match="not an object array"):
        load_npy(write_pickled_npy(tmp_path / "p.npy", pickle.dumps({"a": 1}, protocol=2)))
    with pytest.raises(CheckpointError, match="header says"):
        load_npy(
            write_pickled_npy(tmp_path / "q.npy", pickle.dumps(np.empty(2, object), protocol=2), shape=(3,))
        )


# --------------------------------------------------------------------------------------------------
# hygiene
# --------------------------------------------------------------------------------------------------


def test_package_never_imports_torch_or_unsafe_loaders(tmp_path):
    pkg = Path(sys.modules["msvision.checkpoint"].__file__).parent
    for src in pkg.glob("*.py"):
        tree = ast.parse(src.read_text(), str(src))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "torch" for a in node.names), src
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] != "torch", src
            elif isinstance(node, ast.Attribute) and node.attr in ("load", "loads"):
                assert not (
                    isinstance(node.value, ast.Name) and node.value.id in ("pickle", "np", "numpy")
                ), f"{src}:{node.lineno}"
            elif isinstance(node, ast.keyword):
                assert node.arg != "allow_pickle", f"{src}:{node.lineno}"

    path = _save({"w": torch.ones(2)}, tmp_path / "w.pt", legacy=False)
    code = (
        "import sys, msvision.checkpoint as c\n"
        f"assert c.load_torch({str(path)!r})['w'].tolist() == [1.0, 1.0]\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path, timeout=60)
