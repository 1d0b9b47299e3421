"""The face analyser of ModelScope's DCT-Net cartoon models (``detector.pb`` + ``keypoints.pb``, from the Peppa Pig
face engine): ModelScope's ``modelscope/models/cv/cartoon/facelib`` (FaceAna, FaceDetector, FaceLandmark).

Both networks exist only as TF1 frozen graphs, imported generically (:mod:`msvision.importers.tf`) with their
``training_flag`` placeholder fixed to False (ModelScope always feeds False), so the BatchNorm conds fold at load:

- detector: ``tower_0/images`` (1 x 512 x 512 x 3 RGB, the image scaled by 512 / long side with cv2's bilinear
  resize and pasted top-left on the pixel means) -> ``tower_0/boxes|scores|num_detections``. The graph ends in a
  ``map_fn`` NMS loop, which the importer cuts at its inputs and runs in C with the graph's own thresholds
  (:mod:`msvision.importers.tf.nms_loop`); boxes are kept above 0.8, scaled back to pixels, columns swapped to
  x1 y1 x2 y2.
- landmarks: per box wider or taller than 60 px, the image padded by the box's longer side with the pixel means
  (cv2.copyMakeBorder), a square crop 1.4 box widths wide around the box centre, resized to 160 x 160 ->
  ``tower_0/prediction`` (68 x, y pairs in crop units first) -> 68 integer-truncated pixel points. A box of no
  width has no landmarks (ModelScope's cv2.resize fails there).
- the analyser: more than 10 boxes keep the 10 largest; each face's landmark box is smoothed with the detector
  box it overlaps (IoU > 0.5: 0.3 x landmark box + 0.7 x detector box) and faces are ordered by that box's area,
  largest first. ModelScope stores that box (``track_box``) between calls but overwrites it before reading it, so
  consecutive calls are independent: the same here.

Every expression keeps ModelScope's NumPy dtypes (float32 boxes, float64 where its arithmetic promotes), so the
integer landmark coordinates are the same to the pixel.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..importers.tf.importer import TfGraph
from .base import weight_file

DETECTOR_FILE = "detector.pb"
LANDMARK_FILE = "keypoints.pb"
DETECT_SIZE = 512  # config.DETECT.input_shape
DETECT_THRESHOLD = 0.8  # config.DETECT.thres
TOP_K = 10  # config.DETECT.topk
LANDMARK_SIZE = 160  # config.KEYPOINTS.input_shape
POINTS = 68  # config.KEYPOINTS.p_num
EXTEND = 0.2  # config.KEYPOINTS.base_extend_range[0]
MIN_FACE = 60  # FaceLandmark.min_face
PIXEL_MEANS = (123.0, 116.0, 103.0)  # config.DATA.pixel_means (RGB)
IOU_THRESHOLD = 0.5  # config.TRACE.iou_thres
SMOOTH = 0.3  # config.TRACE.smooth_box
FIXED = {"training_flag": False}


def _graph(model_dir, name, outputs, threads, memory_limit):
    path = weight_file(model_dir, name)
    return TfGraph(
        path, ["tower_0/images:0"], outputs, threads=threads, memory_limit=memory_limit, fixed_inputs=FIXED
    )


class FaceDetector:
    """``detect(rgb uint8)`` -> (n, 5) float32 boxes x1 y1 x2 y2 and score, in pixels, score > 0.8."""

    def __init__(self, model_dir: str, threads: int, memory_limit: int = 0) -> None:
        outputs = ["tower_0/boxes:0", "tower_0/scores:0", "tower_0/num_detections:0"]
        self.graph = _graph(model_dir, DETECTOR_FILE, outputs, threads, memory_limit)

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        h, w, c = rgb.shape
        canvas = np.zeros((DETECT_SIZE, DETECT_SIZE, c), rgb.dtype) + np.array(PIXEL_MEANS, dtype=rgb.dtype)
        scale = DETECT_SIZE / max(h, w)
        small = cv2.resize(rgb, None, fx=scale, fy=scale)
        canvas[: small.shape[0], : small.shape[1]] = small
        boxes, scores, count = self.graph.run(canvas[None])
        n = int(count[0])
        boxes, scores = boxes[0][:n], scores[0][:n]
        keep = scores > DETECT_THRESHOLD
        boxes, scores = boxes[keep], scores[keep]
        side = DETECT_SIZE / scale
        boxes = boxes * np.array([side, side, side, side], dtype="float32")  # y1 x1 y2 x2
        return np.concatenate([boxes[:, [1, 0, 3, 2]], scores.reshape(-1, 1)], axis=1)


class FaceLandmarks:
    """``points(rgb uint8, box)`` -> 68 x 2 float32 integer pixel points, or None for a face of <= 60 px."""

    def __init__(self, model_dir: str, threads: int, memory_limit: int = 0) -> None:
        self.graph = _graph(model_dir, LANDMARK_FILE, ["tower_0/prediction:0"], threads, memory_limit)

    def points(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        box = box.copy()
        width, height = box[2] - box[0], box[3] - box[1]
        if width <= MIN_FACE and height <= MIN_FACE:
            return None
        add = int(max(width, height))
        padded = cv2.copyMakeBorder(
            rgb, add, add, add, add, borderType=cv2.BORDER_CONSTANT, value=PIXEL_MEANS
        )
        box += add
        edge = (1 + 2 * EXTEND) * width
        centre = [(box[0] + box[2]) // 2, (box[1] + box[3]) // 2]
        box[0], box[1] = centre[0] - edge // 2, centre[1] - edge // 2
        box[2], box[3] = centre[0] + edge // 2, centre[1] + edge // 2
        box = box.astype(int)
        crop = padded[box[1] : box[3], box[0] : box[2], :]
        crop_h, crop_w = crop.shape[:2]
        if crop_h == 0 or crop_w == 0:  # a box of no width (ModelScope's cv2.resize fails): no landmarks
            return None
        crop = cv2.resize(crop, (LANDMARK_SIZE, LANDMARK_SIZE)).astype(np.float32)
        (prediction,) = self.graph.run(crop[None])
        xy = prediction[0][: 2 * POINTS].reshape(-1, 2)
        xy[:, 0] = xy[:, 0] * crop_w / LANDMARK_SIZE
        xy[:, 1] = xy[:, 1] * crop_h / LANDMARK_SIZE
        # ModelScope's scalar expression per point, so NumPy's promotion rules (NEP 50 or the older value-based
        # ones) give the same truncated pixel
        points = [
            [int(px * LANDMARK_SIZE + box[0] - add), int(py * LANDMARK_SIZE + box[1] - add)] for px, py in xy
        ]
        return np.array(points, np.float32)


def _iou(a, b):
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / (area_a + area_b - inter)


def _by_area(boxes):
    return np.array([(b[3] - b[1]) * (b[2] - b[0]) for b in boxes])


class FaceAnalyser:
    """ModelScope's FaceAna: ``landmarks(rgb uint8)`` -> (n, 68, 2) float32 points, largest face first."""

    def __init__(self, model_dir: str, threads: int, memory_limit: int = 0) -> None:
        self.detector = FaceDetector(model_dir, threads, memory_limit)
        self.landmarker = FaceLandmarks(model_dir, threads, memory_limit)

    def landmarks(self, rgb: np.ndarray) -> np.ndarray:
        boxes = self.detector.detect(rgb)
        if boxes.shape[0] > TOP_K:
            picked = _by_area(boxes).argsort()[-TOP_K:][::-1]
            boxes = np.array([boxes[i] for i in picked])
        faces = [p for p in (self.landmarker.points(rgb, box) for box in boxes) if p is not None]
        if not faces:
            return np.zeros((0, POINTS, 2), np.float32)
        tracked = []
        for points in faces:
            now = np.array([points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()])
            match = next((b for b in boxes if _iou(now, b) > IOU_THRESHOLD), None)
            tracked.append(now if match is None else SMOOTH * now[:4] + (1 - SMOOTH) * match[:4])
        order = _by_area(tracked).argsort()[::-1]
        return np.array([faces[i] for i in order])

    def reset(self) -> None:
        """ModelScope's FaceAna.reset (the stored boxes are never read: nothing to forget)."""
