"""msvision: ModelScope computer-vision pipelines on a oneDNN C core.

Swap ``from modelscope.pipelines import pipeline`` for ``from msvision import pipeline``; point it at the same
model directory (or hub id already in the ModelScope cache) and get ModelScope's outputs without PyTorch.
"""

import logging

from ._native import _C
from .outputs import OutputKeys
from .pipelines import pipeline
from .runtime import build_info, default_threads
from .utils.constant import Tasks

logging.getLogger(__name__).addHandler(logging.NullHandler())  # nothing printed unless the application logs


def draw(image, result, task=None):
    """An annotated copy of ``image`` for a pipeline's ``result`` (see :func:`msvision.drawing.draw`)."""
    from .drawing import draw as _draw

    return _draw(image, result, task=task)


__version__ = "0.1.0"
__all__ = ["OutputKeys", "Tasks", "build_info", "default_threads", "draw", "pipeline", "_C"]
