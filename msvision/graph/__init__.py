"""Building networks on the C core: the graph binding, a checkpoint's weights by name, and shared layers."""

from ._shim import Graph
from .blocks import Builder, fold_batch_norm
from .weights import Weights

__all__ = ["Builder", "Graph", "Weights", "fold_batch_norm"]
