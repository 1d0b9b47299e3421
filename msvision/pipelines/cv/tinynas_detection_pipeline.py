"""image-object-detection and domain-specific-object-detection with DAMO-YOLO (``tinynas-detection``), as
ModelScope's TinynasDetectionPipeline + ObjectDetectionTinynasPreprocessor + SingleStageDetector:

1. The image as ``LoadImage.convert_to_ndarray`` gives it (RGB; array inputs are BGR and keep their own values)
   -> float32, no resize, no normalisation; zero-padded at the bottom and right to a multiple of the
   preprocessor's ``size_divisible`` (configuration.json, default 32).
2. The network; per anchor and class score > ``nms_conf_thre``; distribution decoding; torchvision's
   ``batched_nms`` with ``nms_iou_thre``; the first 500 (all in :mod:`msvision.models.damoyolo`, NMS and decoding
   in C).

Output: ``{'scores': float32 (N,), 'labels': [class name, ...], 'boxes': float32 (N, 4) x1 y1 x2 y2}`` in padded-
image pixels, not clipped (as ModelScope); with no detection ``boxes`` has shape (0, 5), as ModelScope returns it.
"""

from __future__ import annotations

import numpy as np

from ...errors import InvalidModelError
from ...io import load_image_values
from ...models.damoyolo import DamoYolo
from ...outputs import OutputKeys
from ..base import Pipeline

DEFAULT_SIZE_DIVISIBLE = 32


def _size_divisible(config: dict, model_dir: str) -> int:
    section = config.get("preprocessor") or {}
    value = section.get("size_divisible", DEFAULT_SIZE_DIVISIBLE) if isinstance(section, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4096:
        raise InvalidModelError(f"{model_dir}: preprocessor.size_divisible must be an integer, got {value!r}")
    return value


class TinynasDetectionPipeline(Pipeline):
    def __init__(self, model_dir: str, config: dict, threads=None, memory_limit=None, precision="fp32"):
        super().__init__(model_dir, config, threads, memory_limit, precision)
        self.size_divisible = _size_divisible(config, model_dir)
        self.model = DamoYolo(
            model_dir, config, self.threads, memory_limit=self.memory_limit, precision=self.precision
        )

    def preprocess(self, input):
        image = load_image_values(input)  # RGB; a non-uint8 array keeps its values
        h, w = image.shape[:2]
        if self.size_divisible > 0:
            d = self.size_divisible
            h, w = -(-h // d) * d, -(-w // d) * d
        padded = np.zeros((1, h, w, 3), np.float32)
        padded[0, : image.shape[0], : image.shape[1]] = (
            image  # the float32 conversion happens in this one copy
        )
        return {"img": padded}

    def forward(self, inputs):
        boxes, scores, labels = self.model.detect(inputs["img"])
        return {"boxes": boxes, "scores": scores, "labels": labels}

    def postprocess(self, inputs):
        names = self.model.label_names
        return {
            OutputKeys.SCORES: inputs["scores"],
            OutputKeys.LABELS: [names[i] for i in inputs["labels"]],
            OutputKeys.BOXES: inputs["boxes"],
        }
