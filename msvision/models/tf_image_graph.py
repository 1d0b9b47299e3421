"""TensorFlow frozen graphs with the image-in, image-out convention of ModelScope's TF1 matting models: the graph
takes ``input_image:0`` (an unbatched HxWx3 RGB image, float, 0..255) and computes ``output_png:0`` (HxWx4 RGBA
uint8: the image and the predicted alpha) itself, resizing and normalising inside the graph.

Models: BSHM portrait matting (``damo/cv_unet_image-matting``), universal matting
(``damo/cv_unet_universal-matting``), both ``tf_graph.pb``; the skin-retouching model's skin-mask graph has the
same convention. The networks exist only inside the graphs, so nothing here is per-architecture: the graph is
imported generically (``msvision.importers.tf``), pruned to its output and planned per input size.
"""

from __future__ import annotations

import numpy as np

from ..importers.tf.importer import TfGraph
from .base import weight_file

INPUT = "input_image:0"
OUTPUT = "output_png:0"


class ImageGraph:
    """``run(rgb)`` -> the graph's ``output_png`` for an HxWx3 RGB float (or uint8) image."""

    def __init__(
        self, model_dir: str, file_name: str, threads: int, *, max_plans: int = 8, memory_limit: int = 0
    ) -> None:
        self.path = weight_file(model_dir, file_name)
        self.graph = TfGraph(
            self.path, [INPUT], [OUTPUT], threads=threads, max_plans=max_plans, memory_limit=memory_limit
        )

    def run(self, rgb: np.ndarray) -> np.ndarray:
        (out,) = self.graph.run(rgb)
        return out

    def steps(self) -> list[str]:
        return self.graph.steps()
