"""image-denoising and image-deblurring with NAFNet, as ModelScope's ImageDenoisePipeline/ImageDeblurPipeline:

RGB image -> float in [0, 1] -> tiles (rows = max(H // 512, 1), cols = max(W // 512, 1), 16 px of context,
the last tile takes the remainder, no blending) -> network (pads each tile to its multiple, clamps to [0, 1])
-> (x * 255) truncated to uint8 -> BGR ``{'output_img': HxWx3 uint8}``.
"""

import numpy as np

from ...io import load_image_array
from ...models.nafnet import NAFNet
from ...outputs import OutputKeys
from ..base import Pipeline

TILE = 512
OVERLAP = 16


def tile_plan(height: int, width: int):
    """ModelScope's crop_process tiling: yields (source window, placement window, slice of the result)."""
    rows, cols = max(height // TILE, 1), max(width // TILE, 1)
    step_h, step_w = height // rows, width // cols
    for r in range(rows):
        for c in range(cols):
            y, x = step_h * r, step_w * c
            h = step_h if r < rows - 1 else height - y
            w = step_w if c < cols - 1 else width - x
            y0, y1 = max(0, y - OVERLAP), min(y + h + OVERLAP, height)
            x0, x1 = max(0, x - OVERLAP), min(x + w + OVERLAP, width)
            hs = OVERLAP if y0 > 0 else 0
            ws = OVERLAP if x0 > 0 else 0
            # ModelScope's end index is absolute when the window reaches the border; Python slicing clips it
            he = hs + h if y1 < height else height
            we = ws + w if x1 < width else width
            yield (
                (slice(y0, y1), slice(x0, x1)),
                (slice(y, y + h), slice(x, x + w)),
                (slice(hs, he), slice(ws, we)),
            )


class ImageDenoisePipeline(Pipeline):
    """The image stays in HWC order throughout: the network takes and returns NHWC arrays."""

    precisions = ("fp32", "bf16")

    def __init__(self, model_dir: str, config: dict, threads=None, memory_limit=None, precision="fp32"):
        super().__init__(model_dir, config, threads, memory_limit, precision)
        self.model = NAFNet(
            model_dir, config, self.threads, memory_limit=self.memory_limit, precision=self.precision
        )

    def preprocess(self, input):
        rgb = load_image_array(input)
        # same arithmetic as torchvision's ToTensor: uint8 -> float32, divided by 255
        return {"img": rgb[None].astype(np.float32) / np.float32(255)}

    def forward(self, inputs):
        img = inputs["img"]
        out = np.zeros_like(img)
        for (sy, sx), (dy, dx), (ry, rx) in tile_plan(*img.shape[1:3]):
            tile = np.ascontiguousarray(img[:, sy, sx])
            out[:, dy, dx] = self.model.restore(tile)[:, ry, rx]
        return {"output_tensor": out}

    def postprocess(self, inputs):
        img = (inputs["output_tensor"][0] * np.float32(255)).astype(np.uint8)
        return {OutputKeys.OUTPUT_IMG: np.ascontiguousarray(img[:, :, ::-1])}


class ImageDeblurPipeline(ImageDenoisePipeline):
    """The same network and processing, registered for image-deblurring."""
