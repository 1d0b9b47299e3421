"""Result-dict keys (``from msvision.outputs import OutputKeys``), as in ``modelscope.outputs``."""

from .outputs import OutputKeys

__all__ = ["OutputKeys"]
