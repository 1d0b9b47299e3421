"""Input decoding (independent of the C extension)."""

from .image import DEFAULT_MAX_IMAGE_PIXELS, load_image, load_image_array, load_image_values, max_image_pixels

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "load_image",
    "load_image_array",
    "load_image_values",
    "max_image_pixels",
]
