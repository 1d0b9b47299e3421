"""msvision.io.face_align against ModelScope's align_faces (GPEN's alignment): the templates and the similarity
matrices bit for bit on random, near-template, mirrored and collinear landmarks; degenerate landmarks refused."""

import numpy as np
import pytest

from msvision.io.face_align import face_transforms, reference_points, warp


@pytest.fixture(scope="module")
def align_faces():
    from modelscope.models.cv.image_portrait_enhancement import align_faces

    return align_faces


@pytest.mark.parametrize("crop", [112, 512, 1024])
def test_reference_points(align_faces, crop):
    want = np.float32(align_faces.get_reference_facial_points((crop, crop), 0.25, (0, 0), True))
    assert np.array_equal(reference_points(crop), want)


def _landmark_sets(rng, n):
    template = reference_points(512)
    for t in range(n):
        if t % 3 == 0:  # a face near the template, scaled and moved
            pts = template * rng.uniform(0.1, 1.5) + rng.uniform(-50, 300, 2) + rng.normal(0, 3, (5, 2))
        else:
            pts = rng.uniform(0, 400, (5, 2))
        if t % 7 == 0:
            pts[:, 0] *= -1  # mirrored: the reflection branch
        if t % 11 == 0:
            pts = pts[0] + np.outer(np.arange(5), rng.uniform(-3, 3, 2))  # collinear: rank 1
        yield np.float32(pts)


@pytest.mark.parametrize("crop", [112, 512])
def test_transforms_are_bit_identical(align_faces, crop):
    rng = np.random.default_rng(crop)
    ref = align_faces.get_reference_facial_points((crop, crop), 0.25, (0, 0), True)
    for pts in _landmark_sets(rng, 600):
        want, want_inv = align_faces.get_params(
            ref, pts.T.copy(), "smilarity"
        )  # (2, 5) as the pipeline passes
        got, got_inv = face_transforms(pts, crop)
        assert np.array_equal(got, want) and np.array_equal(got_inv, want_inv), pts


def test_warp_is_opencvs(align_faces):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)
    pts = np.float32(reference_points(512) * 0.2 + [20, 10])
    forward, _ = face_transforms(pts, 512)
    want, _, _ = align_faces.warp_and_crop_face(img, pts.T.copy(), crop_size=(512, 512))
    assert np.array_equal(warp(img, forward, 512, 512), want)


def test_coincident_landmarks_give_no_transform():
    assert face_transforms(np.full((5, 2), 7.0, np.float32), 512) is None
