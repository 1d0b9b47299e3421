"""Checkpoint readers that never execute code: ``torch.save`` files and ``.npy`` files to NumPy.

Pure Python + NumPy; torch is never imported.  Pickles are read with an allow-list unpickler
(:mod:`.safe_pickle`) whose globals map to local re-implementations, so a hostile file can only ever
raise :class:`UnsafeCheckpointError`.
"""

from __future__ import annotations

from ..errors import CheckpointError, UnsafeCheckpointError
from .npy_format import load_npy
from .pickle_file import load_pickle
from .torch_format import load_torch, state_dict_from, unwrap_state_dict

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "load_npy",
    "load_pickle",
    "load_torch",
    "state_dict_from",
    "unwrap_state_dict",
]
