"""Five-point face alignment as ModelScope's pipelines compute it.

GPEN (``align_faces.warp_and_crop_face``, similarity mode): see ``face_transforms``. DCT-Net cartoon
(``cartoon/mtcnn_pytorch/src/align_trans.warp_and_crop_face`` with MATLAB cp2tform's reflective similarity): see
``cartoon_transforms``.

GPEN:

The reference points are the 96x112 ArcFace template made square (+8 px in x), padded by 25% on each side
(168x168) and scaled to the crop; the transform is Umeyama's least-squares similarity from the detected landmarks
to the template, estimated with the same float32 inputs (hence the same LAPACK routine and rounding); the inverse
warp is the similarity from the template back to the landmarks with the scale fixed to 1 / the forward scale. The
warps are ``cv2.warpAffine`` itself with the flags ModelScope passes (3, INTER_AREA, which warpAffine runs as
INTER_LINEAR), so they are bit-identical to ModelScope's.
"""

from __future__ import annotations

import cv2
import numpy as np

ARCFACE_POINTS = np.array(  # the 96 x 112 template of align_faces.REFERENCE_FACIAL_POINTS
    [
        [30.29459953, 51.69630051],
        [65.53179932, 51.50139999],
        [48.02519989, 71.73660278],
        [33.54930115, 92.3655014],
        [62.72990036, 92.20410156],
    ]
)
TEMPLATE_SIZE = np.array([96, 112])
INNER_PADDING = 0.25
WARP_FLAGS = 3  # what ModelScope passes: INTER_AREA, which warpAffine treats as INTER_LINEAR


def reference_points(crop: int) -> np.ndarray:
    """The template for a square ``crop`` (``get_reference_facial_points((crop, crop), 0.25, (0, 0), True)``),
    float32 as the similarity estimate reads it. For 112, the square template's own size, ModelScope skips the
    padding: the 112 crop of the quality model is tighter than the 512 crop of the enhancer."""
    side = TEMPLATE_SIZE.max()
    points = ARCFACE_POINTS + (side - TEMPLATE_SIZE) / 2  # square: centred in x
    if crop == side:  # ModelScope returns the square template as it is for its own size: no padding
        return np.float32(points)
    size = np.array([side, side])
    grow = size * INNER_PADDING * 2
    points = points + grow / 2
    size = size + np.round(grow).astype(np.int32)
    scale = np.int64(crop).astype(np.float32) / size[0]  # float32 / int64: a float64 ratio, as ModelScope's
    return np.float32(points * scale)


def _similarity(src: np.ndarray, dst: np.ndarray, scale: float | None = None):
    """Umeyama's similarity src -> dst (2-D points, float32 as given): the 2x3 float64 matrix and its scale;
    ``scale`` given: that scale instead of the least-squares one. None when the points coincide (ModelScope
    fails there unpacking its NaN matrix)."""
    n, dim = src.shape
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / n
    signs = np.ones(dim)
    if np.linalg.det(cov) < 0:
        signs[-1] = -1
    u, s, vt = np.linalg.svd(cov)
    rank = np.linalg.matrix_rank(cov)
    if rank == 0:
        return None
    if rank == dim - 1 and np.linalg.det(u) * np.linalg.det(vt) <= 0:
        rotation = u @ np.diag(np.array([1.0] * (dim - 1) + [-1.0])) @ vt
    elif rank == dim - 1:
        rotation = u @ vt
    else:
        rotation = u @ np.diag(signs) @ vt
    rotation = np.asarray(rotation, np.float64)
    if scale is None:
        scale = 1.0 / src_c.var(axis=0).sum() * (s @ signs)
    matrix = np.empty((2, 3), np.float64)
    matrix[:, 2] = dst_mean - scale * (rotation @ src_mean.T)
    matrix[:, :2] = rotation * scale
    return matrix, scale


def face_transforms(points: np.ndarray, crop: int):
    """(forward, inverse) 2x3 similarity matrices between the 5 landmarks (5, 2) and the ``crop`` template; None
    for degenerate landmarks (all on one point) or a zero scale."""
    src = np.float32(points)
    ref = reference_points(crop)
    found = _similarity(src, ref)
    if found is None or not np.isfinite(found[1]) or found[1] == 0:
        return None
    forward, scale = found
    inverse, _ = _similarity(ref, src, scale=1.0 / scale)
    return forward, inverse


def warp(img: np.ndarray, matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.warpAffine(img, matrix, (width, height), flags=3)`` (bilinear, zero border), as ModelScope calls it."""
    return cv2.warpAffine(img, matrix, (width, height), flags=WARP_FLAGS)


# ---- DCT-Net cartoon: cp2tform's reflective similarity -------------------------------------------------------

# the 96 x 112 template of cartoon/mtcnn_pytorch/src/align_trans.py, which adds one pixel in x and y
CARTOON_POINTS = ARCFACE_POINTS + 1.0
CARTOON_TEMPLATE = 112  # the template's height: the ratio scales about its centre, the crop scales it


def cartoon_reference(crop: int, ratio: float) -> np.ndarray:
    """The float32 target points of a ``crop``-square head: the square template (+8 px in x) scaled by ``ratio``
    about (56, 56), then by crop / 112, in float32 as ModelScope computes it."""
    side = TEMPLATE_SIZE.max()
    points = np.float32(CARTOON_POINTS + (side - TEMPLATE_SIZE) / 2)
    points = (points - CARTOON_TEMPLATE / 2) * ratio + CARTOON_TEMPLATE / 2
    points *= crop / float(CARTOON_TEMPLATE)
    return points


def _nonreflective(uv: np.ndarray, xy: np.ndarray):
    """cp2tform's least-squares similarity without reflection, solved from xy to uv as MATLAB (and ModelScope)
    solve it: (T, Tinv) in row-vector form ([x y 1] @ T), T's last column reset to (0, 0, 1)."""
    m = xy.shape[0]
    x, y = xy[:, :1], xy[:, 1:2]
    ones, zeros = np.ones((m, 1)), np.zeros((m, 1))
    lhs = np.vstack((np.hstack((x, y, ones, zeros)), np.hstack((y, -x, zeros, ones))))
    rhs = np.vstack((uv[:, :1], uv[:, 1:2]))
    if np.linalg.matrix_rank(lhs) < 4:
        return None  # ModelScope raises 'cp2tform:twoUniquePointsReq'
    sc, ss, tx, ty = np.squeeze(np.linalg.lstsq(lhs, rhs)[0])
    t_inv = np.array([[sc, -ss, 0], [ss, sc, 0], [tx, ty, 1]])
    if sc * sc + ss * ss == 0:
        return None  # the landmarks coincide: no similarity (ModelScope fails inverting it)
    t = np.linalg.inv(t_inv)
    t[:, 2] = np.array([0, 0, 1])
    return t, t_inv


def _apply(t: np.ndarray, uv: np.ndarray) -> np.ndarray:
    return np.dot(np.hstack((uv, np.ones((uv.shape[0], 1)))), t)[:, :-1]


def cartoon_transforms(points, crop: int = 288, ratio: float = 0.75):
    """(forward, inverse) cv2 2x3 matrices between 5 landmarks and the cartoon head template, as ModelScope's
    ``get_similarity_transform_for_cv2`` (reflective): the plain and the mirrored least-squares fits, the one
    closer to the target kept. ModelScope mirrors its target points in place before measuring both fits, so
    both are measured against the mirrored points: reproduced (it decides which fit is used). None for
    landmarks on fewer than two distinct points."""
    uv = np.float32(points)
    xy = cartoon_reference(crop, ratio)
    plain = _nonreflective(uv, xy)
    mirrored_xy = xy.copy()
    mirrored_xy[:, 0] = -1 * mirrored_xy[:, 0]
    mirrored = _nonreflective(uv, mirrored_xy)
    if plain is None or mirrored is None:
        return None
    reflect_y = np.array([[-1, 0, 0], [0, 1, 0], [0, 0, 1]])
    t2 = np.dot(mirrored[0], reflect_y)
    norm1 = np.linalg.norm(_apply(plain[0], uv) - mirrored_xy)
    norm2 = np.linalg.norm(_apply(t2, uv) - mirrored_xy)
    t, t_inv = plain if norm1 <= norm2 else (t2, np.linalg.inv(t2))
    return t[:, :2].T, t_inv[:, :2].T
