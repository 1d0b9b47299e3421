"""msvision: ModelScope computer-vision pipelines on a oneDNN C core.

Swap ``from modelscope.pipelines import pipeline`` for ``from msvision import pipeline``; point it at the same
model directory (or hub id already in the ModelScope cache) and get ModelScope's outputs without PyTorch.
"""

from ._native import _C
from .outputs import OutputKeys
from .pipelines import pipeline
from .runtime import build_info, default_threads
from .utils.constant import Tasks

__version__ = "0.1.0"
__all__ = ["OutputKeys", "Tasks", "build_info", "default_threads", "pipeline", "_C"]
