"""image-portrait-stylization with DCT-Net (``unet-person-image-cartoon``), as ModelScope's ImageCartoonPipeline,
for every style (compound-models, 3d, handdrawn, sketch, artstyle, sd-design, sd-illustration: one layout):

1. The image (RGB, LoadImage semantics) as uint8; its short side brought to at most 720 (cv2 INTER_AREA; a
   smaller image goes through the same call at its own size).
2. The background: BGR, padded with 255 to sides of the next multiple of 16 (when either side is not one
   already, both grow: a side that is a multiple still gets 16 more, as ModelScope pads), the background
   generator, the padding cropped.
3. The face analyser (:class:`~msvision.models.peppa_face.FaceAnalyser`) on the RGB image: 68 landmarks per face.
   No face: ModelScope returns the background at once, uint8 and at the resized size (the final resize back is
   skipped): reproduced.
4. Per face, largest first: five points (each eye's pupil found in its landmark hexagon: gray, equalizeHist, Otsu,
   the median dark pixel; the mean of the eye's first five landmarks where the eye box is empty or leaves the
   image), the reflective cp2tform similarity to the 288 x 288 head template at ratio 0.75
   (:func:`~msvision.io.face_align.cartoon_transforms`), the head warped (cv2 bilinear, white border), the head
   generator on it in BGR, the result and ``alpha.jpg`` (resized to 288 with INTER_AREA, gray, / 255) warped back
   (black border) and blended: ``mask * head + (1 - mask) * result``, in float32.
5. The float32 result resized back to the input's size (INTER_AREA).

Output: ``{'output_img': float32 HxWx3 BGR}`` (uint8 at the resized size when no face is found).

Like MTCNN's, this pipeline is a cascade: ``forward`` runs the background, the face analyser and a head per face
(each step needs the previous one's result), and ``postprocess`` has nothing left to do.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from ...errors import InvalidInputError, InvalidModelError
from ...io import load_image_values
from ...io.face_align import cartoon_transforms
from ...models.base import weight_file
from ...models.dctnet import BACKGROUND_FILE, HEAD_FILE, CartoonGenerator
from ...models.peppa_face import FaceAnalyser
from ...outputs import OutputKeys
from ..base import Pipeline

logger = logging.getLogger(__name__)

MAX_SHORT_SIDE = 720
PAD_MULTIPLE = 16
HEAD_SIZE = 288  # ImageCartoonPipeline.box_width
HEAD_RATIO = 0.75
MASK_FILE = "alpha.jpg"
LEFT_EYE, RIGHT_EYE = slice(36, 41), slice(42, 47)  # ModelScope's slices: five of each eye's six points
NOSE, MOUTH_LEFT, MOUTH_RIGHT = 30, 48, 54


def resize_short_side(img: np.ndarray, size: int = MAX_SHORT_SIDE) -> np.ndarray:
    """ModelScope's ``resize_size``: a short side above ``size`` becomes ``size`` (the other side truncated)."""
    h, w = img.shape[:2]
    if min(h, w) > size:
        h, w = (int(size * h / w), size) if h > w else (size, int(size * w / h))
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


def pad_to_16(img: np.ndarray) -> np.ndarray:
    """ModelScope's ``padTo16x``: unchanged when both sides are multiples of 16, else both grow to the next
    multiple (a side already a multiple by a full 16), filled with 255."""
    h, w = img.shape[:2]
    if h % PAD_MULTIPLE == 0 and w % PAD_MULTIPLE == 0:
        return img
    padded = np.full(
        ((h // PAD_MULTIPLE + 1) * PAD_MULTIPLE, (w // PAD_MULTIPLE + 1) * PAD_MULTIPLE, 3), 255, np.uint8
    )
    padded[:h, :w] = img
    return padded


def find_pupil(eye: np.ndarray, bgr: np.ndarray):
    """The pupil of an eye outlined by ``eye`` (k x 2 landmarks), as ModelScope's ``find_pupil``: the median x and
    median y of the dark (Otsu) pixels inside the outline on the equalized gray eye box; the box centre when none
    is dark; None when the box is empty or leaves the image."""
    h, w = bgr.shape[:2]
    x_max, x_min = int(eye[:, 0].max()), int(eye[:, 0].min())
    y_max, y_min = int(eye[:, 1].max()), int(eye[:, 1].min())
    if y_min >= y_max or x_min >= x_max or y_min < 0 or x_min < 0 or y_max > h or x_max > w:
        return None
    gray = cv2.equalizeHist(cv2.cvtColor(bgr[y_min:y_max, x_min:x_max], cv2.COLOR_BGR2GRAY))
    outline = (eye - np.array([x_min, y_min]).reshape(1, 2)).astype(np.int32)
    inside = cv2.fillConvexPoly(np.zeros_like(gray), outline, 1)
    _, dark = cv2.threshold(gray, 100, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    ys, xs = np.nonzero((1 - dark / 255.0) * inside > 0.5)
    if xs.size:
        return int(np.sort(xs)[xs.size // 2]) + x_min, int(np.sort(ys)[ys.size // 2]) + y_min
    return dark.shape[1] / 2 + x_min, dark.shape[0] / 2 + y_min


def five_points(landmarks: np.ndarray, bgr: np.ndarray) -> list:
    """ModelScope's ``get_f5p``: the two pupils (both eyes' landmark means when either pupil is not found), the
    nose tip and the mouth corners."""
    left, right = find_pupil(landmarks[LEFT_EYE], bgr), find_pupil(landmarks[RIGHT_EYE], bgr)
    if left is None or right is None:
        left, right = landmarks[LEFT_EYE].mean(axis=0), landmarks[RIGHT_EYE].mean(axis=0)
    return [list(left), list(right), *(list(landmarks[i]) for i in (NOSE, MOUTH_LEFT, MOUTH_RIGHT))]


class ImageCartoonPipeline(Pipeline):
    def __init__(self, model_dir: str, config: dict, threads=None, memory_limit=None, precision="fp32"):
        super().__init__(model_dir, config, threads, memory_limit, precision)
        options = dict(memory_limit=self.memory_limit)
        self.faces = FaceAnalyser(model_dir, self.threads, **options)
        self.head = CartoonGenerator(model_dir, HEAD_FILE, self.threads, **options)
        self.background = CartoonGenerator(model_dir, BACKGROUND_FILE, self.threads, **options)
        self.mask = self._read_mask(weight_file(model_dir, MASK_FILE))

    @staticmethod
    def _read_mask(path: str) -> np.ndarray:
        mask = cv2.imread(path)  # as ModelScope reads it (OpenCV's JPEG decoder, EXIF orientation applied)
        if mask is None:
            raise InvalidModelError(f"{path}: not a readable image")
        mask = cv2.resize(mask, (HEAD_SIZE, HEAD_SIZE), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(mask, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0

    def preprocess(self, input):
        img = load_image_values(input)
        # ModelScope converts to float here and back to uint8 in forward: a uint8 image comes back unchanged, so
        # only other dtypes make the trip (their values truncate and wrap as there)
        return {"img": img if img.dtype == np.uint8 else img.astype(float)}

    def forward(self, inputs):
        img = inputs["img"].astype(np.uint8, copy=False)
        ori_h, ori_w = img.shape[:2]
        if min(ori_h, ori_w) < 1:
            raise InvalidInputError(f"image of {ori_w}x{ori_h} pixels has no pixels")
        img = resize_short_side(img)
        bgr = img[:, :, ::-1]
        h, w = img.shape[:2]
        result = self.background.run(pad_to_16(bgr))[:h, :w, :]
        landmarks = self.faces.landmarks(img)
        if landmarks.shape[0] == 0:
            logger.info("no face detected: the background alone, at the resized size (as ModelScope)")
            return {OutputKeys.OUTPUT_IMG: result}
        for points in landmarks:
            transforms = cartoon_transforms(five_points(points, bgr), HEAD_SIZE, HEAD_RATIO)
            if transforms is None:  # ModelScope fails inverting a singular matrix: the face is skipped here
                logger.info("a face's landmarks collapse to one point: no alignment, the face is skipped")
                continue
            forward, inverse = transforms
            head = cv2.warpAffine(img, forward, (HEAD_SIZE, HEAD_SIZE), borderValue=(255, 255, 255))
            head = self.head.run(head[:, :, ::-1])
            head_back = cv2.warpAffine(head, inverse, (w, h), borderValue=(0, 0, 0))
            mask_back = cv2.warpAffine(self.mask, inverse, (w, h), borderValue=(0, 0, 0))[:, :, None]
            result = mask_back * head_back + (1 - mask_back) * result
        result = cv2.resize(result, (ori_w, ori_h), interpolation=cv2.INTER_AREA)
        return {OutputKeys.OUTPUT_IMG: result}

    def postprocess(self, inputs):
        return inputs


__all__ = ["ImageCartoonPipeline", "find_pupil", "five_points", "pad_to_16", "resize_short_side"]
