"""Exception types raised by msvision.

Each class derives from the builtin exception a caller would naturally catch, so code written against
ModelScope (which mostly raises builtins) keeps working: ``except FileNotFoundError`` still catches a model
that is not in the cache, ``except ValueError`` still catches a bad task or a bad input.
"""

__all__ = [
    "ImageDecodeError",
    "InvalidInputError",
    "InvalidModelError",
    "ModelNotFoundError",
    "UnsupportedTaskError",
]


class ModelNotFoundError(FileNotFoundError):
    """A model directory (or a file it must contain) could not be found locally.

    msvision never downloads models: a hub id must already be in the ModelScope cache.
    """


class UnsupportedTaskError(ValueError):
    """The task name is unknown or not (yet) implemented by msvision."""


class InvalidModelError(ValueError):
    """A model directory exists but its files are malformed (bad configuration.json, bad weights...)."""


class InvalidInputError(ValueError):
    """An input (image, array...) has an acceptable type but unusable content."""


class ImageDecodeError(InvalidInputError):
    """An image file or downloaded payload could not be decoded."""
