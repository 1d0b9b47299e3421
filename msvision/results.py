"""Result dicts as JSON records: one object per image in the CLI's and the scale-out helpers' JSON Lines.

``to_record(result)`` keeps every key of a pipeline's result except images (``output_img``: written as files by
whoever holds them) and turns arrays, NumPy scalars and tuples into lists and Python numbers; float32 values
become the float64 of the same value, so a record read back compares exactly with ``to_record`` of the same result.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .outputs import OutputKeys

#: result keys that hold images (not put in records)
IMAGE_KEYS = (OutputKeys.OUTPUT_IMG, OutputKeys.OUTPUT_IMGS)


def plain(value: Any) -> Any:
    """Arrays, NumPy scalars, tuples and torch-free containers as JSON-able Python values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot put a {type(value).__name__} in a JSON record")


def to_record(result: dict, **fields: Any) -> dict:
    """``fields`` (e.g. ``path=``), then the result's non-image keys as plain values."""
    record = {k: plain(v) for k, v in fields.items()}
    for key, value in result.items():
        if key not in IMAGE_KEYS:
            record[key] = plain(value)
    return record


def check_distinct_outputs(pairs) -> None:
    """``pairs`` of (input, output path): ValueError naming two inputs that would be written to one file."""
    owners: dict = {}
    for source, dest in pairs:
        if dest in owners:
            raise ValueError(f"{owners[dest]} and {source} would both be written to {dest}")
        owners[dest] = source


def dumps(record: dict) -> str:
    """One JSON Lines line (no newline); NaN and infinities are refused rather than written as invalid JSON."""
    return json.dumps(record, allow_nan=False, ensure_ascii=False)
