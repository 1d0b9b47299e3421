"""Comparing images: msvision's output against ModelScope's."""

import numpy as np


def compare_images(ours: np.ndarray, theirs: np.ndarray):
    """(max abs diff, fraction of identical values)."""
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    assert ours.dtype == theirs.dtype == np.uint8
    diff = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
    return int(diff.max()), float((diff == 0).mean())
