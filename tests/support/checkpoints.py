"""Hand-made checkpoint files: storages and tensors by reference, zip and legacy torch.save containers, pickled .npy."""

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class StorageRef:
    """Persistent-id target for hand-made checkpoints."""

    def __init__(self, stype, key, numel, view=None):
        self.stype, self.key, self.numel, self.view = stype, key, numel, view


class TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


def pickle_with_storages(obj, legacy: bool) -> bytes:
    class _Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, StorageRef):
                pid = ("storage", o.stype, o.key, "cpu", o.numel)
                return (*pid, o.view) if legacy else pid
            return None

    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_zip(path: Path, pkl: bytes, records: dict[str, bytes] | None = None, byteorder=b"little") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        if byteorder is not None:
            z.writestr("archive/byteorder", byteorder)
        for key, raw in (records or {}).items():
            z.writestr(f"archive/data/{key}", raw)
        z.writestr("archive/version", "3\n")
    return path


def write_legacy(path: Path, pkl: bytes, storages=(), keys=None) -> Path:
    sys_info = {
        "protocol_version": 1001,
        "little_endian": True,
        "type_sizes": {"short": 2, "int": 4, "long": 8},
    }
    with open(path, "wb") as f:
        for item in (LEGACY_MAGIC, 1001, sys_info):
            pickle.dump(item, f, protocol=2)
        f.write(pkl)
        pickle.dump([k for k, _, _ in storages] if keys is None else keys, f, protocol=2)
        for _, numel, raw in storages:
            f.write(struct.pack("<q", numel))
            f.write(raw)
    return path


def write_pickled_npy(path: Path, payload: bytes, shape=()) -> Path:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": shape})
    path.write_bytes(buf.getvalue() + payload)
    return path
