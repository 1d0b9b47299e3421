"""Building networks on the C core: the graph binding (``Graph``: one method per op kind, parameters by keyword;
``Session``: plans and runs a graph), a checkpoint's weights by name, and the layers networks share."""

from .._native import _C
from .blocks import Builder, fold_batch_norm, torchvision_resnet
from .weights import Weights

Graph = _C.Graph
Session = _C.Session

__all__ = ["Builder", "Graph", "Session", "Weights", "fold_batch_norm", "torchvision_resnet"]
