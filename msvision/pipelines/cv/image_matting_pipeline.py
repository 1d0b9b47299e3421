"""portrait-matting (BSHM) and universal-matting, as ModelScope's ImageMattingPipeline:

the image as ``LoadImage.convert_to_ndarray`` gives it (RGB; a non-uint8 array keeps its values) -> float ->
the frozen graph's ``input_image:0`` -> ``output_png:0`` (RGBA uint8, computed entirely by the graph) ->
``cv2.cvtColor(RGBA2BGRA)`` -> ``{'output_img': HxWx4 uint8 BGRA}``.
"""

import cv2
import numpy as np

from ...io import load_image_values
from ...models.tf_image_graph import ImageGraph
from ...outputs import OutputKeys
from ..base import Pipeline

GRAPH_FILE = "tf_graph.pb"  # ModelScope's ModelFile.TF_GRAPH_FILE


class ImageMattingPipeline(Pipeline):
    def __init__(self, model_dir: str, config: dict, threads=None, memory_limit=None, precision="fp32"):
        super().__init__(model_dir, config, threads, memory_limit, precision)
        self.model = ImageGraph(model_dir, GRAPH_FILE, self.threads, memory_limit=self.memory_limit)

    def preprocess(self, input):
        return {"img": load_image_values(input).astype(np.float64)}

    def forward(self, inputs):
        rgba = self.model.run(inputs["img"])
        return {OutputKeys.OUTPUT_IMG: cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA)}

    def postprocess(self, inputs):
        return inputs
