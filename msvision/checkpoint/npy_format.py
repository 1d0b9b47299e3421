"""Read ``.npy`` files, including pickled object arrays, without ``np.load(allow_pickle=True)``."""

from __future__ import annotations

import ast
import math
import os

import numpy as np

from ..errors import CheckpointError
from .safe_pickle import (
    NUMPY_GLOBALS,
    Budget,
    NdarrayBuilder,
    brief,
    numpy_dtype_from_descr,
    resolve,
    restricted_load,
)
from .torch_format import MAX_CHECKPOINT_BYTES

__all__ = ["load_npy"]

_MAGIC = b"\x93NUMPY"
_MAX_HEADER = 10000  # numpy's own limit for headers it will literal_eval


def _parse_header(data: bytes, path: str) -> tuple[dict, int]:
    if not data.startswith(_MAGIC) or len(data) < 10:
        raise CheckpointError(f"{path} is not a .npy file (bad magic)")
    major = data[6]
    if major == 1:
        hlen, start = int.from_bytes(data[8:10], "little"), 10
    elif major in (2, 3):
        if len(data) < 12:
            raise CheckpointError(f"{path} is truncated inside the .npy header")
        hlen, start = int.from_bytes(data[8:12], "little"), 12
    else:
        raise CheckpointError(f"{path} uses unsupported .npy format version {major}.{data[7]}")
    if hlen > _MAX_HEADER:
        raise CheckpointError(f"{path} has a {hlen}-byte .npy header, more than the {_MAX_HEADER} allowed")
    if start + hlen > len(data):
        raise CheckpointError(f"{path} is truncated inside the .npy header")
    try:
        text = data[start : start + hlen].decode("utf-8" if major == 3 else "latin-1")
        header = ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} has an unreadable .npy header: {exc}") from exc
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise CheckpointError(f"{path} has a malformed .npy header {brief(header)}")
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise CheckpointError(f"{path} has an invalid .npy shape {brief(shape)}")
    if not isinstance(header["fortran_order"], bool):
        raise CheckpointError(f"{path} has an invalid .npy fortran_order")
    return header, start + hlen


def load_npy(path: str | os.PathLike[str]) -> object:
    """Load a ``.npy`` file safely.

    Numeric arrays come back as C-contiguous native-endian arrays.  Object arrays (``np.save`` of a dict
    or list) are unpickled with the restricted unpickler; a 0-d one returns its single item
    (``arr.item()``), others an object array.  Raises :class:`UnsafeCheckpointError` for pickles that
    reference anything but arrays and plain containers, :class:`CheckpointError` for corrupt files.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path} is {size} bytes, more than the {MAX_CHECKPOINT_BYTES} allowed")
    with open(path, "rb") as f:
        data = f.read()
    header, offset = _parse_header(data, path)
    shape = header["shape"]
    dtype = numpy_dtype_from_descr(header["descr"], path)
    count = math.prod(shape)

    if dtype.kind != "O":
        nbytes = count * dtype.itemsize
        if offset + nbytes > len(data):
            raise CheckpointError(
                f"{path} is truncated: shape {shape} of {dtype} needs {nbytes} bytes, "
                f"{len(data) - offset} present"
            )
        try:
            arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            arr = arr.reshape(shape, order="F" if header["fortran_order"] else "C")
        except (ValueError, MemoryError) as exc:
            raise CheckpointError(f"{path}: cannot read array of shape {shape}: {exc}") from exc
        return arr.astype(dtype.newbyteorder("="), order="C")

    try:
        obj, _ = restricted_load(data, path, NUMPY_GLOBALS, start=offset, encoding="latin1")
    except RecursionError as exc:
        raise CheckpointError(f"{path}: structure nested too deeply") from exc
    if not isinstance(obj, NdarrayBuilder) or obj.array is None or obj.array.dtype.kind != "O":
        raise CheckpointError(f"{path}: the pickled payload is not an object array")
    if obj.array.shape != shape:
        raise CheckpointError(f"{path}: pickled array has shape {obj.array.shape}, header says {shape}")
    arr = resolve(obj, path, Budget(4 * len(data) + (256 << 20), path))
    assert isinstance(arr, np.ndarray)
    return arr.item() if arr.ndim == 0 else arr
