"""``draw(image, result)``: an annotated copy of a pipeline's input, for every task's result dict.

=================================================  ==============================================================
result (task)                                      drawn
=================================================  ==============================================================
``scores``, ``boxes``, ``keypoints`` (N x 10 or    each face's box, its score in the top-left corner, the five
None): face-detection (ULFD, MTCNN, MogFace,      landmarks (eyes, nose, mouth corners) when given
RetinaFace)
``scores``, ``labels``, ``boxes``:                 each box in a colour of its label, ``label score`` in the
image-object-detection, domain-specific-object-    top-left corner
detection, human-detection (DAMO-YOLO)
``boxes``, ``keypoints`` (N x K x 2), ``scores``   each person's box, the joints scoring at least
(N x K): body-2d-keypoints (HRNet)                 :data:`KEYPOINT_THRESHOLD`, and the skeleton between them
                                                   (15 joints: ModelScope's HRNet order; 17: COCO)
``output_img`` HxWx3 BGR: image-denoising,         the output image itself (GPEN's is twice the input's size)
image-deblurring, image-portrait-enhancement
``output_img`` HxWx3 BGR float32 (uint8 when no    the output image as ``cv2.imwrite`` would store it (rounded,
face was found): image-portrait-stylization        saturated to uint8), at its own size (ModelScope's no-face
(DCT-Net)                                          result is at the resized size)
``output_img`` HxWx4 BGRA: portrait-matting,       the colour composited by the alpha over a grey checkerboard
universal-matting                                  (:data:`CHECKER_SIZE` px squares of :data:`CHECKER_LIGHT` /
                                                   :data:`CHECKER_DARK`)
=================================================  ==============================================================

Everything drawn for a box stays inside that box: each detection is drawn on a copy of the pixels of its box region
(the pixels from ``floor(x1), floor(y1)`` to ``ceil(x2), ceil(y2)`` inclusive, clipped to the image), which is
then copied back, so landmarks or joints outside their box show only where they overlap it. Boxes with a
non-finite coordinate, or lying entirely outside the image, are skipped; the rest are clipped to the image.
Detections are drawn from the last to the first, so where boxes overlap the first one (the highest scoring, in
the pipelines' order) is on top. Colours are deterministic (a hash of the label, or of the task's kind); line
widths grow with the image (``max(1, round(min(h, w) / 300))``).
"""

from __future__ import annotations

import math
import os
import zlib
from typing import Any, Callable, Union

import cv2
import numpy as np
from PIL import Image

from .io import load_image_array
from .io.image import to_uint8
from .outputs import OutputKeys

__all__ = [
    "CHECKER_DARK",
    "CHECKER_LIGHT",
    "CHECKER_SIZE",
    "KEYPOINT_THRESHOLD",
    "SUPPORTED_TASKS",
    "checkerboard",
    "draw",
]

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]

#: joints (and the skeleton lines between them) scoring below this are not drawn (ModelScope's draw_joints)
KEYPOINT_THRESHOLD = 0.2
#: the matting background: squares of this many pixels, alternately light and dark grey, light at the top left
CHECKER_SIZE = 16
CHECKER_LIGHT = 153
CHECKER_DARK = 102

FACES, OBJECTS, BODY, RESTORATION, MATTING = "faces", "objects", "body", "restoration", "matting"
STYLIZATION = "stylization"

#: task name -> the kind of result it returns
SUPPORTED_TASKS = {
    "face-detection": FACES,
    "image-object-detection": OBJECTS,
    "domain-specific-object-detection": OBJECTS,
    "human-detection": OBJECTS,
    "body-2d-keypoints": BODY,
    "image-denoising": RESTORATION,
    "image-deblurring": RESTORATION,
    "image-portrait-enhancement": RESTORATION,
    "image-portrait-stylization": STYLIZATION,
    "portrait-matting": MATTING,
    "universal-matting": MATTING,
}

_KIND_KEYS = {
    FACES: (OutputKeys.SCORES, OutputKeys.BOXES),  # keypoints optional
    OBJECTS: (OutputKeys.SCORES, OutputKeys.LABELS, OutputKeys.BOXES),
    BODY: (OutputKeys.BOXES, OutputKeys.KEYPOINTS, OutputKeys.SCORES),
    RESTORATION: (OutputKeys.OUTPUT_IMG,),
    STYLIZATION: (OutputKeys.OUTPUT_IMG,),
    MATTING: (OutputKeys.OUTPUT_IMG,),
}

# ModelScope's 15-joint HRNet order: 0 head top, 1 neck, 2-4 left shoulder/elbow/wrist, 5-7 right
# shoulder/elbow/wrist, 8-10 left hip/knee/ankle, 11-13 right hip/knee/ankle, 14 pelvis
_SKELETON_15 = (
    (0, 1), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 14),
    (14, 8), (8, 9), (9, 10), (14, 11), (11, 12), (12, 13),
)  # fmt: skip
_LEFT_15 = frozenset((2, 3, 4, 8, 9, 10))
_RIGHT_15 = frozenset((5, 6, 7, 11, 12, 13))
# COCO's 17 joints: 0 nose, 1/2 eyes, 3/4 ears, 5/6 shoulders, 7/8 elbows, 9/10 wrists, 11/12 hips, 13/14 knees,
# 15/16 ankles (odd: left, even: right)
_SKELETON_17 = (
    (0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10),
    (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16),
)  # fmt: skip
_LEFT_17 = frozenset((1, 3, 5, 7, 9, 11, 13, 15))
_RIGHT_17 = frozenset((2, 4, 6, 8, 10, 12, 14, 16))
_SKELETONS = {15: (_SKELETON_15, _LEFT_15, _RIGHT_15), 17: (_SKELETON_17, _LEFT_17, _RIGHT_17)}

# BGR colours
_LEFT_COLOUR = (0, 200, 0)
_RIGHT_COLOUR = (255, 128, 0)
_CENTRE_COLOUR = (0, 220, 255)
_JOINT_COLOUR = (0, 0, 255)
# the five face landmarks: left eye, right eye, nose, left and right mouth corner
_LANDMARK_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 0, 255), (0, 255, 255))

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_MIN_FONT_SCALE = 0.3


def draw(image: ImageInput, result: dict, task: str | None = None) -> Image.Image | np.ndarray:
    """An annotated copy of ``image`` showing a pipeline's ``result`` for it.

    ``image``: the pipeline's input: a ``PIL.Image.Image``, a NumPy array (BGR HxWx3 or gray HxW, as the
    pipelines take it), a path (str or os.PathLike) or encoded image bytes (decoded by
    :func:`msvision.io.load_image_array`, EXIF orientation applied). It is never modified.

    ``result``: the dict the pipeline returned for it (see the module's table for the tasks and what is drawn).
    ``task``: the task name (``'face-detection'``, ...; see :data:`SUPPORTED_TASKS`); when ``None`` the kind of
    result is told from its keys and shapes. A given task is checked against the result.

    Returns a PIL image in mode ``RGB`` for a PIL input, else a new BGR ``uint8`` HxWx3 array; for denoising and
    deblurring that is the output image, for matting the composite over a checkerboard, else the input with boxes,
    labels and keypoints drawn (an unchanged copy when nothing was detected).

    Raises ``TypeError`` for a result that is not a dict or holds values of the wrong type, ``ValueError`` for an
    unknown task, a result that is not that task's (or, with no task, of no known kind), inconsistent lengths or
    shapes, or an output image of another size than ``image``; errors of decoding ``image`` as the pipelines
    raise them.
    """
    if not isinstance(result, dict):
        raise TypeError(f"result must be the dict a pipeline returned, got {type(result).__name__}")
    if task is None:
        kind = _infer_kind(result)
    else:
        if not isinstance(task, str):
            raise TypeError(f"task must be a task name (str) or None, got {type(task).__name__}")
        kind = SUPPORTED_TASKS.get(task)
        if kind is None:
            raise ValueError(
                f"draw does not know task {task!r}; it draws {', '.join(sorted(SUPPORTED_TASKS))}"
            )
        missing = [k for k in _KIND_KEYS[kind] if k not in result]
        if missing:
            raise ValueError(
                f"result is not a {task} result: it lacks {', '.join(map(repr, missing))} "
                f"(it has {', '.join(map(repr, sorted(map(str, result))))})"
            )

    as_pil = isinstance(image, Image.Image)
    rgb = load_image_array(image)  # always a new array
    canvas = np.ascontiguousarray(rgb[:, :, ::-1])  # BGR: OpenCV's channel order
    height, width = canvas.shape[:2]

    if kind == STYLIZATION:
        canvas = _stylized_image(result)
    elif kind in (RESTORATION, MATTING):
        out = _output_image(result, kind, task, height, width)
        canvas = out.copy() if kind == RESTORATION else _composite(out)
    elif kind == FACES:
        _draw_faces(canvas, result)
    elif kind == OBJECTS:
        _draw_objects(canvas, result)
    else:
        _draw_bodies(canvas, result)

    if as_pil:
        return Image.fromarray(np.ascontiguousarray(canvas[:, :, ::-1]), "RGB")
    return canvas


# ---- telling and checking results ----


def _infer_kind(result: dict) -> str:
    keys = set(result)
    if OutputKeys.OUTPUT_IMG in keys:
        out = result[OutputKeys.OUTPUT_IMG]
        if not isinstance(out, np.ndarray):
            raise TypeError(f"result['output_img'] must be a numpy array, got {type(out).__name__}")
        if out.ndim == 3 and out.shape[2] == 4:
            return MATTING
        if out.ndim == 3 and out.shape[2] == 3:
            return RESTORATION if out.dtype == np.uint8 else STYLIZATION
        raise ValueError(
            f"result['output_img'] has shape {out.shape}; expected HxWx3 (denoising, deblurring) "
            f"or HxWx4 (matting)"
        )
    if OutputKeys.BOXES in keys and OutputKeys.SCORES in keys:
        if OutputKeys.LABELS in keys:
            return OBJECTS
        keypoints = result.get(OutputKeys.KEYPOINTS)
        if keypoints is None:
            return FACES
        kp = _numbers(keypoints, OutputKeys.KEYPOINTS)
        scores = _numbers(result[OutputKeys.SCORES], OutputKeys.SCORES)
        if kp.ndim == 3 or scores.ndim == 2:
            return BODY
        if kp.size == 0 or kp.ndim == 2:
            return FACES  # an empty body result draws the same nothing
        raise ValueError(
            f"result['keypoints'] has shape {kp.shape}; expected N x 10 (face landmarks) or N x K x 2 "
            f"(body joints)"
        )
    raise ValueError(
        "cannot tell which task's result this is: expected 'output_img', or 'boxes' and 'scores' "
        f"(with 'labels' or 'keypoints'); it has {', '.join(map(repr, sorted(map(str, keys)))) or 'no keys'}"
    )


def _numbers(value: Any, name: str) -> np.ndarray:
    if value is None:
        raise TypeError(f"result[{name!r}] is None")
    if isinstance(value, (str, bytes)):
        raise TypeError(f"result[{name!r}] must hold numbers, got a {type(value).__name__}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"result[{name!r}] must be a list or array of numbers of one shape: {e}") from None
    return arr


def _boxes(result: dict) -> np.ndarray:
    boxes = _numbers(result[OutputKeys.BOXES], OutputKeys.BOXES)
    if boxes.size == 0:
        return np.zeros((0, 4))  # e.g. DAMO-YOLO's (0, 5) when nothing is detected
    if boxes.ndim == 3 and boxes.shape[1:] == (2, 2):  # [[x1, y1], [x2, y2]] per box
        boxes = boxes.reshape(-1, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"result['boxes'] must be N x 4 (x1, y1, x2, y2), got shape {boxes.shape}")
    return boxes


def _check_len(arr, n: int, name: str) -> None:
    if len(arr) != n:
        raise ValueError(f"result[{name!r}] has {len(arr)} entries for {n} boxes")


def _box_scores(result: dict, n: int) -> np.ndarray:
    scores = _numbers(result[OutputKeys.SCORES], OutputKeys.SCORES).reshape(-1) if n else np.zeros(0)
    _check_len(scores, n, OutputKeys.SCORES)
    return scores


def _output_image(result: dict, kind: str, task: str | None, height: int, width: int) -> np.ndarray:
    out = result[OutputKeys.OUTPUT_IMG]
    what = task or ("matting" if kind == MATTING else "denoising/deblurring")
    channels = 4 if kind == MATTING else 3
    if not isinstance(out, np.ndarray):
        raise TypeError(f"result['output_img'] must be a numpy array, got {type(out).__name__}")
    if out.dtype != np.uint8:
        raise TypeError(f"result['output_img'] must be uint8, got {out.dtype}")
    if out.ndim != 3 or out.shape[2] != channels:
        raise ValueError(
            f"a {what} result's output_img must be HxWx{channels} {'BGRA' if channels == 4 else 'BGR'}, "
            f"got shape {out.shape}"
        )
    if out.shape[:2] != (height, width):
        raise ValueError(
            f"result['output_img'] is {out.shape[1]}x{out.shape[0]} pixels but the image is {width}x{height}: "
            f"the result is not this image's"
        )
    return out


def _stylized_image(result: dict) -> np.ndarray:
    out = result[OutputKeys.OUTPUT_IMG]
    if not isinstance(out, np.ndarray):
        raise TypeError(f"result['output_img'] must be a numpy array, got {type(out).__name__}")
    if out.ndim != 3 or out.shape[2] != 3 or out.dtype.kind not in "uf":
        raise ValueError(f"a stylization result's output_img must be HxWx3 BGR, got {out.dtype} {out.shape}")
    if out.dtype == np.uint8:
        return out.copy()
    return to_uint8(out)  # as cv2.imwrite stores it


# ---- matting ----


def checkerboard(height: int, width: int) -> np.ndarray:
    """The matting background: HxW uint8, :data:`CHECKER_SIZE` px squares, :data:`CHECKER_LIGHT` at the top left,
    then alternately :data:`CHECKER_DARK`."""
    rows = (np.arange(height) // CHECKER_SIZE) % 2
    cols = (np.arange(width) // CHECKER_SIZE) % 2
    dark = (rows[:, None] ^ cols[None, :]).astype(bool)
    return np.where(dark, np.uint8(CHECKER_DARK), np.uint8(CHECKER_LIGHT))


def _composite(bgra: np.ndarray) -> np.ndarray:
    """colour * a + checkerboard * (1 - a), rounded; exact at alpha 0 and 255."""
    colour = bgra[:, :, :3].astype(np.uint32)
    alpha = bgra[:, :, 3:].astype(np.uint32)
    board = checkerboard(*bgra.shape[:2])[:, :, None].astype(np.uint32)
    mixed = (colour * alpha + board * (255 - alpha) + 127) // 255
    return mixed.astype(np.uint8)


# ---- detections ----


def _thickness(height: int, width: int) -> int:
    return max(1, round(min(height, width) / 300))


def _colour(name: str) -> tuple[int, int, int]:
    """A bright BGR colour from a stable hash of ``name`` (the same in every process)."""
    digest = zlib.crc32(name.encode("utf-8"))
    hue = digest % 180  # OpenCV's hue range
    saturation = 170 + (digest >> 8) % 86
    value = 200 + (digest >> 16) % 56
    hsv = np.array([[[hue, saturation, value]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _region(box: np.ndarray, height: int, width: int) -> tuple[int, int, int, int] | None:
    """The box's pixels (x0, y0, x1, y1 inclusive), rounded outward and clipped; None if none or not finite."""
    if not np.isfinite(box).all():
        return None
    x1, x2 = sorted((float(box[0]), float(box[2])))
    y1, y2 = sorted((float(box[1]), float(box[3])))
    c0, c1 = max(0, math.floor(x1)), min(width - 1, math.ceil(x2))
    r0, r1 = max(0, math.floor(y1)), min(height - 1, math.ceil(y2))
    if c0 > c1 or r0 > r1:
        return None
    return c0, r0, c1, r1


Painter = Callable[[np.ndarray, float, float], None]


def _annotate(
    canvas: np.ndarray,
    region: tuple[int, int, int, int],
    colour: tuple[int, int, int],
    thickness: int,
    text: str | None,
    paint: Painter | None = None,
) -> None:
    """Draw one detection (rectangle, label, then ``paint``'s marks over them) on a copy of its region, then copy
    that back."""
    c0, r0, c1, r1 = region
    crop = canvas[r0 : r1 + 1, c0 : c1 + 1].copy()
    h, w = crop.shape[:2]
    inset = thickness // 2  # the whole line width inside the box
    cv2.rectangle(crop, (inset, inset), (w - 1 - inset, h - 1 - inset), colour, thickness, cv2.LINE_8)
    if text:
        _label(crop, text, colour, thickness)
    if paint is not None:
        paint(crop, c0, r0)
    canvas[r0 : r1 + 1, c0 : c1 + 1] = crop


def _label(crop: np.ndarray, text: str, colour: tuple[int, int, int], thickness: int) -> None:
    """``text`` on a filled background of ``colour`` in the crop's top-left corner, shrunk (down to a legible
    minimum) to fit the crop's width and a third of its height; what still does not fit is cut off."""
    h, w = crop.shape[:2]
    pad = 1 + thickness // 2
    font_thickness = max(1, thickness // 2)
    scale = 0.3 + 0.15 * thickness
    (tw, th), baseline = cv2.getTextSize(text, _FONT, scale, font_thickness)
    fit = min((w - 2 * pad) / max(tw, 1), (h / 3 - 2 * pad) / max(th + baseline, 1))
    if fit < 1 and scale > _MIN_FONT_SCALE:
        scale = max(_MIN_FONT_SCALE, scale * fit)
        (tw, th), baseline = cv2.getTextSize(text, _FONT, scale, font_thickness)
    cv2.rectangle(crop, (0, 0), (tw + 2 * pad - 1, th + baseline + 2 * pad - 1), colour, cv2.FILLED)
    luminance = 0.114 * colour[0] + 0.587 * colour[1] + 0.299 * colour[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(crop, text, (pad, pad + th), _FONT, scale, ink, font_thickness, cv2.LINE_AA)


def _visible(x: float, y: float, w: int, h: int, margin: float) -> bool:
    return -margin <= x <= w - 1 + margin and -margin <= y <= h - 1 + margin


def _point(x: float, y: float) -> tuple[int, int]:
    return int(round(x)), int(round(y))


def _circle(crop: np.ndarray, x: float, y: float, radius: int, colour: tuple[int, int, int]) -> None:
    h, w = crop.shape[:2]
    if math.isfinite(x) and math.isfinite(y) and _visible(x, y, w, h, radius + 1):
        cv2.circle(crop, _point(x, y), radius, colour, cv2.FILLED, cv2.LINE_AA)


def _clip_segment(
    p: tuple[float, float], q: tuple[float, float], w: int, h: int, margin: float
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Liang-Barsky: the part of p-q inside the crop grown by ``margin`` (so far-away ends never overflow)."""
    lo_x, hi_x, lo_y, hi_y = -margin, w - 1 + margin, -margin, h - 1 + margin
    dx, dy = q[0] - p[0], q[1] - p[1]
    t0, t1 = 0.0, 1.0
    for step, dist in ((-dx, p[0] - lo_x), (dx, hi_x - p[0]), (-dy, p[1] - lo_y), (dy, hi_y - p[1])):
        if step == 0:
            if dist < 0:
                return None
            continue
        t = dist / step
        if step < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return None
    return (p[0] + t0 * dx, p[1] + t0 * dy), (p[0] + t1 * dx, p[1] + t1 * dy)


def _line(crop: np.ndarray, p, q, colour: tuple[int, int, int], thickness: int) -> None:
    if not all(map(math.isfinite, (*p, *q))):
        return
    h, w = crop.shape[:2]
    clipped = _clip_segment(p, q, w, h, thickness + 2)
    if clipped is not None:
        cv2.line(crop, _point(*clipped[0]), _point(*clipped[1]), colour, thickness, cv2.LINE_AA)


def _draw_faces(canvas: np.ndarray, result: dict) -> None:
    boxes = _boxes(result)
    n = len(boxes)
    scores = _box_scores(result, n)
    landmarks = result.get(OutputKeys.KEYPOINTS)
    if landmarks is not None and n:
        landmarks = _numbers(landmarks, OutputKeys.KEYPOINTS)
        if landmarks.ndim == 3 and landmarks.shape[2] == 2:
            landmarks = landmarks.reshape(len(landmarks), -1)
        if landmarks.ndim != 2 or landmarks.shape[1] % 2:
            raise ValueError(
                f"result['keypoints'] must be N x 10 (five x, y landmarks per face), got shape {landmarks.shape}"
            )
        _check_len(landmarks, n, OutputKeys.KEYPOINTS)
        landmarks = landmarks.reshape(n, -1, 2)
    else:
        landmarks = None
    height, width = canvas.shape[:2]
    thickness = _thickness(height, width)
    colour = _colour("face")
    radius = thickness + 1
    for i in reversed(range(n)):
        region = _region(boxes[i], height, width)
        if region is None:
            continue
        paint = None
        if landmarks is not None:
            points = landmarks[i]

            def paint(crop, ox, oy, points=points):
                for j, (x, y) in enumerate(points):
                    _circle(crop, x - ox, y - oy, radius, _LANDMARK_COLOURS[j % len(_LANDMARK_COLOURS)])

        _annotate(canvas, region, colour, thickness, f"{scores[i]:.2f}", paint)


def _draw_objects(canvas: np.ndarray, result: dict) -> None:
    boxes = _boxes(result)
    n = len(boxes)
    scores = _box_scores(result, n)
    labels = result[OutputKeys.LABELS]
    if labels is None or isinstance(labels, (str, bytes)):
        raise TypeError(f"result['labels'] must be a list of class names, got {type(labels).__name__}")
    labels = [str(label) for label in labels]
    _check_len(labels, n, OutputKeys.LABELS)
    height, width = canvas.shape[:2]
    thickness = _thickness(height, width)
    for i in reversed(range(n)):
        region = _region(boxes[i], height, width)
        if region is not None:
            _annotate(canvas, region, _colour(labels[i]), thickness, f"{labels[i]} {scores[i]:.2f}")


def _draw_bodies(canvas: np.ndarray, result: dict) -> None:
    boxes = _boxes(result)
    n = len(boxes)
    if n:
        keypoints = _numbers(result[OutputKeys.KEYPOINTS], OutputKeys.KEYPOINTS)
        scores = _numbers(result[OutputKeys.SCORES], OutputKeys.SCORES)
        if keypoints.ndim != 3 or keypoints.shape[2] != 2:
            raise ValueError(
                f"result['keypoints'] must be N x K x 2 (x, y per joint), got shape {keypoints.shape}"
            )
        _check_len(keypoints, n, OutputKeys.KEYPOINTS)
        if scores.shape != keypoints.shape[:2]:
            raise ValueError(
                f"result['scores'] must hold one score per joint ({n} x {keypoints.shape[1]}), "
                f"got shape {scores.shape}"
            )
    else:
        for key in (OutputKeys.KEYPOINTS, OutputKeys.SCORES):
            if len(_numbers(result[key], key)):
                raise ValueError(f"result[{key!r}] has entries but result['boxes'] is empty")
        return
    height, width = canvas.shape[:2]
    thickness = _thickness(height, width)
    colour = _colour("person")
    radius = thickness + 2
    edges, left, right = _SKELETONS.get(keypoints.shape[1], ((), frozenset(), frozenset()))
    for i in reversed(range(n)):
        region = _region(boxes[i], height, width)
        if region is None:
            continue
        points, joint_scores = keypoints[i], scores[i]

        def paint(crop, ox, oy, points=points, joint_scores=joint_scores):
            shown = joint_scores >= KEYPOINT_THRESHOLD
            for a, b in edges:
                if shown[a] and shown[b]:
                    side = _LEFT_COLOUR if a in left and b in left else None
                    side = side or (_RIGHT_COLOUR if a in right and b in right else _CENTRE_COLOUR)
                    p = (points[a, 0] - ox, points[a, 1] - oy)
                    q = (points[b, 0] - ox, points[b, 1] - oy)
                    _line(crop, p, q, side, thickness)
            for j in np.nonzero(shown)[0]:
                _circle(crop, points[j, 0] - ox, points[j, 1] - oy, radius, _JOINT_COLOUR)

        _annotate(canvas, region, colour, thickness, None, paint)
