"""Exception types raised by msvision.

Each class derives from the builtin exception a caller would naturally catch, so code written against
ModelScope (which mostly raises builtins) keeps working: ``except FileNotFoundError`` still catches a model
that is not in the cache, ``except ValueError`` still catches a bad task or a bad input.
"""

__all__ = [
    "BackendError",
    "CheckpointError",
    "GraphError",
    "ImageDecodeError",
    "InvalidInputError",
    "InvalidModelError",
    "MemoryLimitError",
    "ModelNotFoundError",
    "ShapeError",
    "UnsafeCheckpointError",
    "UnsupportedPrecisionError",
    "UnsupportedTaskError",
]


class ModelNotFoundError(FileNotFoundError):
    """A model directory (or a file it must contain) could not be found locally.

    msvision never downloads models: a hub id must already be in the ModelScope cache.
    """


class UnsupportedTaskError(ValueError):
    """The task name is unknown or not (yet) implemented by msvision."""


class UnsupportedPrecisionError(ValueError):
    """``precision=`` names a mode this model (or this CPU) does not run: a model takes only the precisions
    in which it meets its accuracy gate."""


class InvalidModelError(ValueError):
    """A model directory exists but its files are malformed (bad configuration.json, bad weights...)."""


class CheckpointError(InvalidModelError):
    """A weight file (torch checkpoint, .npy) is corrupt, truncated, or uses a feature the readers do not support.
    The message always names the file and the problem."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint's pickle references a global (or uses an opcode) that is not on the allow-list. Nothing it
    references is ever imported or executed; the file is refused as a whole."""


class InvalidInputError(ValueError):
    """An input (image, array...) has an acceptable type but unusable content."""


class ImageDecodeError(InvalidInputError):
    """An image file or downloaded payload could not be decoded."""


class GraphError(ValueError):
    """A network was built with an op it cannot take (bad parameters, mismatched inputs): a bug in the network's
    builder or a model whose weights do not fit it (model loading reports the latter as InvalidModelError)."""


class ShapeError(InvalidInputError):
    """An input whose shape the network cannot take (too small for a window, wrong channel count...)."""


class MemoryLimitError(InvalidInputError, MemoryError):
    """An input that would need more activation memory than the pipeline's ``memory_limit`` allows."""


class BackendError(RuntimeError):
    """oneDNN refused or failed to run something (not caused by the input)."""
