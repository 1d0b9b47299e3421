"""Image decoding and writing (independent of the C extension)."""

from .image import (
    DEFAULT_MAX_IMAGE_PIXELS,
    load_image,
    load_image_array,
    load_image_values,
    max_image_pixels,
    write_image,
)

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "load_image",
    "load_image_array",
    "load_image_values",
    "max_image_pixels",
    "write_image",
]
