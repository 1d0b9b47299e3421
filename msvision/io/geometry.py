"""Image geometry exactly as ModelScope's pipelines compute it: by calling the same OpenCV functions.

OpenCV's results depend on its build (its x86 wheels run INTER_LINEAR through Intel IPP, its portable code rounds
differently), so re-implementing them can only approximate; calling OpenCV is bit-exact by construction with the
OpenCV the reference runs. Every pipeline's resizes, warps and colour conversions go through this module.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import InvalidInputError

__all__ = ["resize", "resize_by"]


def resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(img, (width, height))`` (INTER_LINEAR), as ModelScope calls it."""
    return cv2.resize(img, (width, height))


def resize_by(img: np.ndarray, scale: float) -> np.ndarray:
    """``cv2.resize(img, (0, 0), fx=scale, fy=scale)`` (INTER_LINEAR); the result has round(n * scale) rows and
    columns. Raises :class:`~msvision.errors.InvalidInputError` where that leaves no pixel (OpenCV would fail
    with an assertion)."""
    h, w = img.shape[:2]
    if int(np.rint(h * scale)) < 1 or int(np.rint(w * scale)) < 1:
        raise InvalidInputError(
            f"image of {w}x{h} pixels is too thin: scaled by {scale:.4f} it would have no rows or columns"
        )
    return cv2.resize(img, (0, 0), fx=scale, fy=scale)
