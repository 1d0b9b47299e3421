"""body-2d-keypoints with HRNetV2 (``hrnetv2w32_body-2d-keypoints_image``), as ModelScope's Body2DKeypointsPipeline
and KeypointsDetection, with a pluggable human detector.

1. Person boxes from the human detector (see below) on the input; the image as ``LoadImage`` gives it.
2. Per box, in float32 as ModelScope computes it: (x, y, w, h) from (x1, y1, x2, y2), back to corners
   (x1 + w), enlarged by 5% of w / h per side, clipped to the image, cropped at the integer-truncated corners;
   ``cv2.resize`` (uint8, INTER_LINEAR) to int(s * w) x int(s * h) with s = min(128 / h, 128 / w), pasted
   centred into a zero 128x128 canvas; / 255 in float32, then (x - ImageNet mean) / std in float64, stored as
   float32.
3. HRNet on all persons of the image in one batched call.
4. Per joint the first heatmap maximum (row-major), +-0.25 towards the larger neighbour, mapped back with
   ModelScope's truncations: ((int(x * 4) - offset) / s) + the box's corner.

Output: ``{'boxes': [[x1, y1, x2, y2], ...] (the enlarged, clipped boxes), 'keypoints': [[[x, y] x 15], ...],
'scores': [[np.float32 x 15], ...]}``; three empty lists when there is no person.

The human detector: ModelScope hard-codes ``damo/cv_resnet18_human-detection``, an mmdet Faster R-CNN that needs
mmcv-full; msvision takes ``human_detector=``: a model directory or hub id of a detector msvision runs, or a
callable returning a dict with ``boxes`` (N x 4, x1 y1 x2 y2) and ``scores`` (N). The default is the DAMO-YOLO
human detector ``damo/cv_tinynas_human-detection_damoyolo`` when it is in the ModelScope cache. Keypoints then
equal ModelScope's for the same boxes; the boxes come from another detector (README).

Where ModelScope fails, msvision does not: its pipeline calls ``.clone()`` on a NumPy image (an AttributeError
on every call in ModelScope 1.40), and a box whose crop has no pixel, or resizes to no row or column, makes
OpenCV raise; msvision skips such a box.
"""

from __future__ import annotations

import numpy as np

from ...errors import InvalidInputError, ModelNotFoundError
from ...io import load_image_array
from ...io.geometry import resize
from ...models.hrnet import HEATMAP_SIZE, INPUT_SIZE, HRNet, decode_heatmaps
from ...outputs import OutputKeys
from ..base import Pipeline

BOX_ENLARGE_RATIO = 0.05
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
HEATMAP_STRIDE = INPUT_SIZE // HEATMAP_SIZE  # 4
DEFAULT_HUMAN_DETECTOR = "damo/cv_tinynas_human-detection_damoyolo"
MMDET_HUMAN_DETECTOR = "damo/cv_resnet18_human-detection"


def _default_detector(threads, memory_limit):
    from ...hub import resolve_model_dir
    from ..builder import pipeline

    try:
        model_dir = resolve_model_dir(DEFAULT_HUMAN_DETECTOR, None)
    except ModelNotFoundError:
        mmdet = None
        try:
            mmdet = resolve_model_dir(MMDET_HUMAN_DETECTOR, None)
        except ModelNotFoundError:
            pass
        what = (
            f"only ModelScope's own detector {MMDET_HUMAN_DETECTOR!r} is cached ({mmdet}), an mmdet Faster R-CNN "
            "with deformable convolutions that msvision does not run"
            if mmdet
            else f"the default human detector {DEFAULT_HUMAN_DETECTOR!r} is not in the ModelScope cache"
        )
        raise ModelNotFoundError(
            f"body-2d-keypoints needs a human detector: {what}. Download {DEFAULT_HUMAN_DETECTOR!r} with "
            "modelscope's snapshot_download, or pass human_detector= (a detector model dir or id, or a callable "
            "returning {'boxes': (N, 4) x1 y1 x2 y2, 'scores': (N,)})"
        ) from None
    return pipeline(model=model_dir, threads=threads, memory_limit=memory_limit)


def _as_detector(human_detector, threads, memory_limit):
    if human_detector is None:
        return _default_detector(threads, memory_limit)
    if callable(human_detector):
        return human_detector
    from ..builder import pipeline

    return pipeline(model=human_detector, threads=threads, memory_limit=memory_limit)


def person_boxes(detection) -> np.ndarray:
    """(N, 4) float32 boxes from a detector's dict (``boxes`` of any array-like, torch tensors included)."""
    if not isinstance(detection, dict) or "boxes" not in detection:
        raise InvalidInputError(
            f"the human detector returned {type(detection).__name__}, not a dict with 'boxes' and 'scores'"
        )
    boxes = detection["boxes"]
    if hasattr(boxes, "cpu") and hasattr(boxes, "numpy"):  # a torch tensor
        boxes = boxes.detach().cpu().numpy()
    boxes = np.array(boxes, dtype=np.float32)
    if boxes.size == 0:
        return np.zeros((0, 4), np.float32)
    if boxes.ndim != 2 or boxes.shape[1] < 4:
        raise InvalidInputError(f"the human detector's boxes have shape {boxes.shape}, not (N, 4)")
    return np.ascontiguousarray(boxes[:, :4])


def enlarged_box(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """ModelScope's box arithmetic, in float32: (x1, y1, w, h) -> corners (x1 + w), 5% margins, clipped."""
    x1, y1, x2, y2 = box
    corners = np.array([[x1, y1], [x2 - x1, y2 - y1]], np.float32)  # ModelScope's [x, y, w, h]
    corners[1] += corners[0]
    w, h = corners[1] - corners[0]
    corners[0, :] -= (w * np.float32(BOX_ENLARGE_RATIO), h * np.float32(BOX_ENLARGE_RATIO))
    corners[1, :] += (w * np.float32(BOX_ENLARGE_RATIO), h * np.float32(BOX_ENLARGE_RATIO))
    corners[:, 0] = np.minimum(np.maximum(corners[:, 0], np.float32(0)), np.float32(width))
    corners[:, 1] = np.minimum(np.maximum(corners[:, 1], np.float32(0)), np.float32(height))
    return corners


def network_input(crop: np.ndarray):
    """The 128x128 canvas of one RGB crop and its mapping (scale s, offset o), or None if it has no pixel."""
    h, w = crop.shape[:2]
    if h == 0 or w == 0:
        return None
    s = min(float(INPUT_SIZE) / h, float(INPUT_SIZE) / w)
    w_new, h_new = int(s * w), int(s * h)
    if w_new < 1 or h_new < 1:
        return None
    canvas = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    c = INPUT_SIZE // 2
    top, left = c - h_new // 2, c - w_new // 2
    canvas[top : top + h_new, left : left + w_new] = resize(np.ascontiguousarray(crop), w_new, h_new)
    x = (np.float32(canvas) / 255.0 - MEAN) / STD  # float32, then float64 with the list constants
    return x.astype(np.float32), s, np.array([left, top])


class Body2DKeypointsPipeline(Pipeline):
    precisions = ("fp32", "bf16")
    options = ("human_detector",)

    def __init__(
        self,
        model_dir: str,
        config: dict,
        threads=None,
        memory_limit=None,
        precision="fp32",
        human_detector=None,
    ):
        super().__init__(model_dir, config, threads, memory_limit, precision)
        self.model = HRNet(
            model_dir, config, self.threads, memory_limit=self.memory_limit, precision=self.precision
        )
        self.human_detector = _as_detector(human_detector, self.threads, self.memory_limit)

    def preprocess(self, input):
        rgb = load_image_array(input)
        boxes = person_boxes(self.human_detector(input))
        height, width = rgb.shape[:2]
        batch, metas = [], []
        for box in boxes:
            corners = enlarged_box(box, width, height)
            if not np.isfinite(corners).all():
                continue  # ModelScope's int() of a NaN corner raises
            crop = rgb[int(corners[0, 1]) : int(corners[1, 1]), int(corners[0, 0]) : int(corners[1, 0])]
            prepared = network_input(crop)
            if prepared is None:
                continue
            x, s, offset = prepared
            batch.append(x)
            metas.append((corners, s, offset))
        return {"batch": np.stack(batch) if batch else None, "metas": metas}

    def forward(self, inputs):
        if inputs["batch"] is None:
            return {"heatmaps": None, "metas": []}
        (heatmaps,) = self.model.run(inputs["batch"])
        return {"heatmaps": heatmaps, "metas": inputs["metas"]}

    def postprocess(self, inputs):
        if inputs["heatmaps"] is None:
            return {OutputKeys.BOXES: [], OutputKeys.KEYPOINTS: [], OutputKeys.SCORES: []}
        px, py, scores = decode_heatmaps(inputs["heatmaps"])
        boxes, keypoints, out_scores = [], [], []
        for i, (corners, s, offset) in enumerate(inputs["metas"]):
            # ModelScope: (int(p * 4) - o) / s per coordinate, then + the box corner (float32 -> float64)
            x = (np.trunc(px[i] * HEATMAP_STRIDE) - offset[0]) / s + corners[0, 0]
            y = (np.trunc(py[i] * HEATMAP_STRIDE) - offset[1]) / s + corners[0, 1]
            keypoints.append(np.stack([x, y], axis=1).tolist())
            out_scores.append(list(scores[i]))
            boxes.append([float(v) for v in corners.reshape(-1)])
        return {OutputKeys.BOXES: boxes, OutputKeys.KEYPOINTS: keypoints, OutputKeys.SCORES: out_scores}
