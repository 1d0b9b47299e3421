"""Exceptions raised by the checkpoint readers."""

from __future__ import annotations

from ..errors import InvalidModelError

__all__ = ["CheckpointError", "UnsafeCheckpointError"]


class CheckpointError(InvalidModelError):
    """A checkpoint file is corrupt, truncated or uses a feature these readers do not support.

    The message always names the file and the problem. It is an :class:`~msvision.errors.InvalidModelError`
    (a ``ValueError``), so a caller catching malformed model files catches it too.
    """


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint's pickle references a global (or uses an opcode) that is not on the allow-list.

    Nothing referenced by the pickle is ever imported or executed; the file is refused as a whole.
    """
