"""DCT-Net portrait cartoon generators (ModelScope ``damo/cv_unet_person-image-cartoon_compound-models`` and its
sibling styles: ``cartoon_bg.pb`` for the whole image, ``cartoon_h.pb`` for aligned heads).

Each file is a TF1 frozen graph exported by ModelScope's CartoonTranslationExporter: ``input_image:0`` (HxWx3 BGR,
0..255, unbatched) -> / 127.5 - 1 -> the U-Net generator of ``cartoon/network.py`` (7x7 and 3x3 convs with
LeakyReLU, four residual blocks, bilinear upsampling with skip additions) -> the guided filter of ``loss.py``
(r = 1: 3x3 box filters as depthwise convolutions, the pixel counts of ``tf.ones`` computed once per plan on the
host) -> clipped to (-0.999999, 0.999999) -> (x + 1) * 127.5 truncated to uint8 -> ``output_image:0``. The graphs
are imported generically (:mod:`msvision.importers.tf`) and planned per input size.
"""

from __future__ import annotations

import numpy as np

from ..importers.tf.importer import TfGraph
from .base import weight_file

BACKGROUND_FILE = "cartoon_bg.pb"
HEAD_FILE = "cartoon_h.pb"
INPUT = "input_image:0"
OUTPUT = "output_image:0"


class CartoonGenerator:
    """``run(bgr)`` -> the generator's uint8 HxWx3 BGR output for an HxWx3 BGR image (sides multiples of 4)."""

    def __init__(self, model_dir: str, file_name: str, threads: int, *, memory_limit: int = 0) -> None:
        self.path = weight_file(model_dir, file_name)
        self.graph = TfGraph(self.path, [INPUT], [OUTPUT], threads=threads, memory_limit=memory_limit)

    def run(self, bgr: np.ndarray) -> np.ndarray:
        (out,) = self.graph.run(bgr)
        return out

    def steps(self) -> list[str]:
        return self.graph.steps()
