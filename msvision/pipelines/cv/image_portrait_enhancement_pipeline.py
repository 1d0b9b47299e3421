"""image-portrait-enhancement with GPEN (``gpen-image-portrait-enhancement``), as ModelScope's
ImagePortraitEnhancementPipeline:

1. The image (RGB uint8, LoadImage semantics) through RealESRNet x2 (:class:`~msvision.models.rrdbnet.RRDBNet`):
   / 255, reflect-padded to even sides, the network, the padding cropped as ModelScope crops it (by the input's
   pad, not twice it: an odd side gives 2n + 1 rows, reproduced), clamped, BGR, x 255 rounded -> ``img_sr``.
2. The input resized to ``img_sr``'s size (cv2 bilinear) in BGR: the image the faces are found on and pasted onto.
3. RetinaFace-R50 (:class:`~msvision.models.retinaface.RetinaFaceDetector`, BGR - (104, 117, 123)); per face with
   score >= 0.9: the 5-point similarity to the template (:mod:`msvision.io.face_align`) and the 512 (or 1024) and
   112 crops (cv2.warpAffine);
4. EQFace quality on the 112 crop (skipped below 0.1); GPEN on the big crop; the quality model again on a 112
   resize of the enhanced face's inner region; the identity check: half the cosine distance between the two
   features (skipped above 0.15). ModelScope's two quality calls see opposite channel orders (BGR the first, RGB
   the second): reproduced.
5. The blurred-rectangle mask (a constant, computed once with cv2) and the enhanced face warped back, each face
   pasted where its mask exceeds what is already there, then ``cv2.convertScaleAbs(sr * (1 - mask) + face *
   mask)``.

The ``hires`` variant (GPEN-1024) is selected as ModelScope selects it: 'hires' in the model path.
Output: ``{'output_img': uint8 (2H, 2W, 3) BGR}``.
"""

from __future__ import annotations

import cv2
import numpy as np

from ...errors import InvalidInputError
from ...io import load_image_array
from ...io.face_align import face_transforms, warp
from ...io.geometry import resize
from ...models.eqface import EQFace
from ...models.gpen import GPEN
from ...models.retinaface import GPEN_SETTINGS, RetinaFace, RetinaFaceDetector
from ...models.rrdbnet import RRDBNet
from ...outputs import OutputKeys
from ..base import Pipeline

FACE_THRESHOLD = 0.9
QUALITY_THRESHOLD = 0.1
IDENTITY_THRESHOLD = 0.15
QUALITY_SIZE = 112
MASK_SIZE = 512


def paste_mask() -> np.ndarray:
    """The blend mask of a 512 face: a filled anti-aliased rectangle 26..486 blurred twice (101x101, sigma 4)."""
    mask = np.zeros((MASK_SIZE, MASK_SIZE, 3), np.float32)
    cv2.rectangle(mask, (26, 26), (486, 486), (1, 1, 1), -1, cv2.LINE_AA)
    mask = cv2.GaussianBlur(mask, (101, 101), 4)
    return cv2.GaussianBlur(mask, (101, 101), 4)


class ImagePortraitEnhancementPipeline(Pipeline):
    def __init__(self, model_dir: str, config: dict, threads=None, memory_limit=None, precision="fp32"):
        super().__init__(model_dir, config, threads, memory_limit, precision)
        self.size = 1024 if "hires" in str(model_dir) else 512
        options = dict(memory_limit=self.memory_limit)
        self.sr = RRDBNet(model_dir, config, self.threads, **options)
        self.enhancer = GPEN(model_dir, config, self.threads, size=self.size, **options)
        detector = RetinaFace(
            model_dir,
            config,
            self.threads,
            weights="face_detection/RetinaFace-R50.pth",
            settings=GPEN_SETTINGS,
            **options,
        )
        self.detector = RetinaFaceDetector(detector)
        self.quality = EQFace(model_dir, config, self.threads, **options)
        mask = paste_mask()
        self.mask = mask if self.size == MASK_SIZE else cv2.resize(mask, (self.size, self.size))

    def super_resolve(self, rgb: np.ndarray) -> np.ndarray:
        """RealESRNet x2 as ModelScope's ``sr_process``: uint8 RGB -> uint8 BGR of 2n (+1 on an odd side) rows."""
        h, w = rgb.shape[:2]
        pad_h, pad_w = h % 2, w % 2
        x = rgb.astype(np.float32) / np.float32(255)
        if pad_h or pad_w:
            if (pad_h and h < 2) or (pad_w and w < 2):
                raise InvalidInputError(f"image of {w}x{h} pixels is too small to reflect-pad to even sides")
            x = np.pad(x, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
        out = self.sr.run(np.ascontiguousarray(x[None]))[0][0]
        out = out[: out.shape[0] - pad_h, : out.shape[1] - pad_w, ::-1]
        return (np.clip(out, 0, 1) * np.float32(255)).round().astype(np.uint8)

    def face_quality(self, img: np.ndarray) -> tuple[float, np.ndarray]:
        """ModelScope's ``get_face_quality(img)``: EQFace on a 112x112 uint8 crop with its channels reversed,
        (x - 127.5) / 128 -> (quality, feature)."""
        x = (img[None, :, :, ::-1].astype(np.float32) - np.float32(127.5)) / np.float32(128)
        feature, quality = self.quality.run(np.ascontiguousarray(x))
        return float(quality.reshape(-1)[0]), feature.reshape(-1)

    def enhance(self, face_rgb: np.ndarray) -> np.ndarray:
        """GPEN on an RGB uint8 crop of the model's size -> BGR uint8 (truncated, as ``tensor2img``)."""
        x = (face_rgb.astype(np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
        out = self.enhancer.run(np.ascontiguousarray(x[None]))[0][0]
        out = np.clip(out[:, :, ::-1] * np.float32(0.5) + np.float32(0.5), 0, 1) * np.float32(255)
        return out.astype(np.uint8)

    def preprocess(self, input):
        rgb = load_image_array(input)
        img_sr = self.super_resolve(rgb)
        img = cv2.cvtColor(resize(rgb, img_sr.shape[1], img_sr.shape[0]), cv2.COLOR_RGB2BGR)
        return {"img": img, "img_sr": img_sr}

    def forward(self, inputs):
        img, img_sr = inputs["img"], inputs["img_sr"]
        height, width = img.shape[:2]
        dets, landmarks = self.detector.detect(img.astype(np.float32))
        full_mask = np.zeros(img.shape, np.float32)
        full_img = np.zeros(img.shape, np.uint8)
        inner = self.size // 256  # the enhanced face's inner region, as ModelScope crops it
        for det, points in zip(dets, landmarks):
            if det[4] < FACE_THRESHOLD:
                continue
            transforms = face_transforms(points, self.size)
            small = face_transforms(points, QUALITY_SIZE)
            if transforms is None or small is None:
                continue  # landmarks on one point: no similarity (ModelScope raises here)
            forward, inverse = transforms
            face = warp(img, forward, self.size, self.size)
            face_112 = warp(img, small[0], QUALITY_SIZE, QUALITY_SIZE)
            # ModelScope hands over the 112 crop flipped to RGB, which get_face_quality flips back: BGR here, and
            # the enhanced face (BGR) below is seen as RGB
            quality, feature = self.face_quality(face_112[:, :, ::-1])
            if quality < QUALITY_THRESHOLD:
                continue
            enhanced = self.enhance(np.ascontiguousarray(face[:, :, ::-1]))
            region = enhanced[35 * inner : -33 * inner, 32 * inner : -36 * inner]
            _, enhanced_feature = self.face_quality(resize(region, QUALITY_SIZE, QUALITY_SIZE))
            if cosine_distance(feature, enhanced_feature) / 2 > IDENTITY_THRESHOLD:
                continue
            face_mask = warp(self.mask, inverse, width, height)
            face_img = warp(enhanced, inverse, width, height)
            where = np.nonzero(np.clip(face_mask - full_mask, 0, 1) > 0)
            full_mask[where] = face_mask[where]
            full_img[where] = face_img[where]
        out = cv2.convertScaleAbs(img_sr * (1 - full_mask) + full_img * full_mask)
        return {OutputKeys.OUTPUT_IMG: out.astype(np.uint8)}

    def postprocess(self, inputs):
        return inputs


def cosine_distance(u: np.ndarray, v: np.ndarray) -> float:
    """1 - cos(u, v) in float64 (scipy's ``pdist(..., 'cosine')``; the pipeline uses the mean of the 2x2 distance
    matrix: half of it)."""
    u, v = u.astype(np.float64), v.astype(np.float64)
    return float(1.0 - np.dot(u, v) / (np.sqrt(np.dot(u, u)) * np.sqrt(np.dot(v, v))))
