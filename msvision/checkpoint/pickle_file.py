"""Plain pickle files of a model directory (DAMO-YOLO's ``label_map.pkl``) read with the allow-list unpickler:
builtin containers, strings and numbers (NumPy scalars and arrays too); any other global is refused."""

from __future__ import annotations

import os

from ..errors import CheckpointError
from .safe_pickle import NUMPY_GLOBALS, Budget, resolve, restricted_load

MAX_PICKLE_BYTES = 64 << 20


def load_pickle(path: str | os.PathLike[str]) -> object:
    """The object a plain pickle file holds, without running anything in it."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"{path} is empty")
    if size > MAX_PICKLE_BYTES:
        raise CheckpointError(
            f"{path} is {size} bytes, larger than a plain pickle here may be ({MAX_PICKLE_BYTES})"
        )
    with open(path, "rb") as f:
        data = f.read()
    obj, end = restricted_load(data, path, NUMPY_GLOBALS, encoding="latin1")
    if end != len(data):
        raise CheckpointError(f"{path}: {len(data) - end} bytes of trailing data after the pickle")
    return resolve(obj, path, Budget(4 * len(data) + (16 << 20), path))
