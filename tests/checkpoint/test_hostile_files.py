"""Model files built to exhaust time or memory: each must be refused with msvision's InvalidModelError, naming the
file, within bounded time and memory (none of them runs code; see test_checkpoint.py for that)."""

from __future__ import annotations

import json
import pickle
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from support.checkpoints import (
    StorageRef,
    TensorRef,
    pickle_with_storages,
    write_legacy,
    write_pickled_npy,
    write_zip,
)

from msvision.checkpoint import CheckpointError, load_npy, load_torch
from msvision.errors import InvalidModelError
from msvision.hub import read_configuration

FAST_S = 5.0  # every refusal below takes milliseconds; this bound only guards against a hang


def _tuple_dag(depth: int = 40, as_key: bool = True) -> bytes:
    """A dict holding t[depth], with t[i+1] = (t[i], t[i]) built from memo references: a few bytes per level,
    2**depth nodes to hash when it is the key (``{t: 1}``), and legal (nothing hashed) as a value (``{'k': t}``)."""
    out = bytearray(b"\x80\x02}q\x00")  # PROTO 2, EMPTY_DICT, BINPUT 0
    out += b"K\x00\x85q\x010"  # (0,) -> memo 1, POP
    for i in range(1, depth + 1):
        out += b"h" + bytes([i]) + b"h" + bytes([i]) + b"\x86q" + bytes([i + 1]) + b"0"  # (t[i], t[i]), POP
    top = b"h" + bytes([depth + 1])
    out += (top + b"K\x01") if as_key else (b"\x8c\x01k" + top)
    return bytes(out + b"s.")  # SETITEM, STOP


def _tuple_dag_key(depth: int = 40) -> bytes:
    return _tuple_dag(depth, as_key=True)


def _colliding_int_keys(n: int = 80_000) -> bytes:
    """A dict of n int keys that all hash alike (Python hashes ints modulo 2**61 - 1): quadratic to build."""
    items = b"".join(pickle.dumps(k * (2**61 - 1) + 7, protocol=2)[2:-1] + b"K\x00" for k in range(1, n + 1))
    return b"\x80\x02}(" + items + b"u."  # PROTO 2, EMPTY_DICT, MARK, key value ..., SETITEMS, STOP


def test_the_bombs_are_what_they_claim():
    """The builders above make what their docstrings say (checked with the real unpickler on small sizes)."""
    (key,) = pickle.loads(_tuple_dag_key(depth=5)).keys()
    for _ in range(5):
        assert key[0] is key[1]
        key = key[0]
    assert key == (0,)
    keys = pickle.loads(_colliding_int_keys(n=50))
    assert len(keys) == 50 and len({hash(k) for k in keys}) == 1


def _refused(load, path: Path, match: str):
    start = time.perf_counter()
    with pytest.raises(InvalidModelError, match=match) as info:
        load(path)
    assert time.perf_counter() - start < FAST_S
    assert str(path) in str(info.value)
    assert isinstance(info.value, CheckpointError)


@pytest.mark.parametrize("where", ["zip", "legacy", "npy"])
@pytest.mark.parametrize("bomb", ["tuple_dag_key", "colliding_int_keys"])
def test_pickle_work_bombs_are_refused_quickly(tmp_path, where, bomb):
    pkl = _tuple_dag_key() if bomb == "tuple_dag_key" else _colliding_int_keys()
    assert len(pkl) < (400 if bomb == "tuple_dag_key" else 1_200_000)
    path = tmp_path / f"bomb.{'npy' if where == 'npy' else 'pt'}"
    if where == "zip":
        write_zip(path, pkl)
    elif where == "legacy":
        write_legacy(path, pkl)
    else:
        write_pickled_npy(path, pkl)
    load = load_npy if where == "npy" else load_torch
    _refused(load, path, r"unsupported dict key|refused|corrupt")


def test_a_shared_sub_structure_resolves_in_linear_time(tmp_path):
    """The same DAG as a dict *value* is legal pickle (no hashing): it must resolve without expanding it."""
    path = write_zip(tmp_path / "dag_value.pt", _tuple_dag(as_key=False))
    start = time.perf_counter()
    obj = load_torch(path)
    assert time.perf_counter() - start < FAST_S
    node = obj["k"]
    for _ in range(40):
        assert node[0] is node[1]  # shared, not copied
        node = node[0]
    assert node == (0,)


def test_error_messages_about_a_shared_structure_are_short_and_fast(tmp_path):
    """An OrderedDict holding the tuple DAG, then called (REDUCE with it as the function): the message that
    names it must not expand the DAG (reprlib has no rule for the unpickler's OrderedDict type and would fall
    back to the full repr: 2**40 nodes)."""
    dag = _tuple_dag(as_key=False)  # PROTO, EMPTY_DICT (memo 0), the DAG (memos 1..41), 'k', t, SETITEM, STOP
    body = dag[len(b"\x80\x02}q\x00") : -1]  # the DAG and its SETITEM onto the dict below it
    pkl = b"\x80\x02ccollections\nOrderedDict\n)Rq\x00" + body + b")R."  # OrderedDict(), fill it, call it
    path = write_zip(tmp_path / "called_dict.pt", pkl)
    start = time.perf_counter()
    with pytest.raises(InvalidModelError, match="not callable") as info:
        load_torch(path)
    assert time.perf_counter() - start < FAST_S
    assert len(str(info.value)) < 600


def _deflated_zeros_checkpoint(path: Path, n_storages: int, storage_bytes: int, offset: int = 0) -> Path:
    """A torch zip whose 1-element tensors sit on storages of ``storage_bytes`` zeros, each deflated ~1000x."""
    numel = storage_bytes // 4
    state = {
        f"w{i}": TensorRef(StorageRef(pickle_storage_type(), str(i), numel), offset, (1,), (1,))
        for i in range(n_storages)
    }
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle_with_storages(state, legacy=False))
        z.writestr("archive/byteorder", b"little")
        for i in range(n_storages):
            info = zipfile.ZipInfo(f"archive/data/{i}")
            info.compress_type = zipfile.ZIP_DEFLATED
            with z.open(info, "w", force_zip64=True) as f:  # zipfile streams the compression
                for _ in range(storage_bytes // len(chunk)):
                    f.write(chunk)
    return path


def pickle_storage_type():
    import torch

    return torch.FloatStorage


def _peak_python_bytes(fn) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_zip_bomb_inflates_only_what_the_tensors_use(tmp_path):
    """Three 256 MiB deflated storages of zeros (~0.25 MiB each on disk) under 1-element tensors: the reader
    inflates 4 bytes of each (it used to inflate all 768 MiB)."""
    path = _deflated_zeros_checkpoint(tmp_path / "bomb.pt", n_storages=3, storage_bytes=256 << 20)
    assert path.stat().st_size < 1 << 20
    start = time.perf_counter()
    state, peak = _peak_python_bytes(lambda: load_torch(path))
    assert time.perf_counter() - start < FAST_S
    assert sorted(state) == ["w0", "w1", "w2"] and all(v.tolist() == [0.0] for v in state.values())
    assert peak < 16 << 20, f"{peak / 2**20:.1f} MiB"


def test_zip_bomb_needing_the_whole_stream_is_capped(tmp_path):
    """A tensor at the end of a 256 MiB deflated storage needs all of it: more than a ~0.25 MiB file can
    plausibly hold, so the reader refuses before inflating it."""
    path = _deflated_zeros_checkpoint(tmp_path / "bomb.pt", 1, 256 << 20, offset=(256 << 20) // 4 - 1)
    (_, peak) = _peak_python_bytes(lambda: _refused(load_torch, path, r"more than the file can plausibly"))
    assert peak < 96 << 20, f"{peak / 2**20:.1f} MiB"


def _patch_zip(path: Path, flag_bits: int = 0, extract_version: int | None = None) -> None:
    """Sets flag bits / the version needed to extract in every local and central header of a zip."""
    data = bytearray(path.read_bytes())
    for sig, flag_at, version_at in ((b"PK\x03\x04", 6, 4), (b"PK\x01\x02", 8, 6)):
        pos = data.find(sig)
        while pos >= 0:
            (flags,) = struct.unpack_from("<H", data, pos + flag_at)
            struct.pack_into("<H", data, pos + flag_at, flags | flag_bits)
            if extract_version is not None:
                struct.pack_into("<H", data, pos + version_at, extract_version)
            pos = data.find(sig, pos + 4)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "flag_bits, version, match",
    [
        (0x1, None, "encrypted"),
        (0x20, None, "unsupported zip feature"),
        (0x40, None, "unsupported zip feature"),
        (0, 99, "unsupported zip feature|zip file version"),
    ],
    ids=["encrypted", "patched-data", "strong-encryption", "extract-version-9.9"],
)
def test_unsupported_zip_features_are_invalid_model_files(tmp_path, flag_bits, version, match):
    path = write_zip(tmp_path / "ckpt.pt", pickle_with_storages({"a": 1}, legacy=False))
    _patch_zip(path, flag_bits, version)
    _refused(load_torch, path, match)


def test_configuration_json_nested_too_deeply(tmp_path):
    (tmp_path / "configuration.json").write_text(
        '{"task": "image-denoising", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    with pytest.raises(InvalidModelError, match="configuration.json.*too deeply"):
        read_configuration(tmp_path)


def test_configuration_json_with_a_huge_integer(tmp_path):
    (tmp_path / "configuration.json").write_text(
        json.dumps({"task": "image-denoising"})[:-1] + ', "n": ' + "9" * 5001 + "}"
    )
    with pytest.raises(InvalidModelError, match="configuration.json.*cannot be read"):
        read_configuration(tmp_path)


def test_npy_numeric_arrays_are_not_affected(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "a.npy", arr)
    np.testing.assert_array_equal(load_npy(tmp_path / "a.npy"), arr)
