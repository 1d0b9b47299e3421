"""MTCNN face detection (``manual-face-detection-mtcnn``) against ModelScope's real pipeline on the real model
directory (``shared/assets/modelscope/damo/cv_manual_face-detection_mtcnn``, publicly released weights) and real
photos (every photo in ``shared/assets/images/faces`` plus scikit-image's astronaut.png).

Criteria: the same number of faces, in the same order; boxes and landmarks within 1 px, scores within 1e-3
(observed: ~3e-5 px and <= 2.4e-7). The three networks alone match ModelScope's torch modules within 1e-4.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.detection import assert_same_detections
from support.model_dirs import skimage_photo
from support.oracle import modelscope_pipeline

import msvision
from msvision.checkpoint import load_npy
from msvision.errors import InvalidInputError, InvalidModelError, ModelNotFoundError
from msvision.models import mtcnn as mtcnn_model

MODEL = "assets/modelscope/damo/cv_manual_face-detection_mtcnn"
FACES = "assets/images/faces"


@pytest.fixture(scope="module")
def model_dir(shared_dir) -> str:
    path = shared_dir / MODEL
    assert (path / "configuration.json").is_file(), f"{path} is missing"
    return str(path)


@pytest.fixture(scope="module")
def ours(model_dir):
    return msvision.pipeline("face-detection", model=model_dir, threads=2)


@pytest.fixture(scope="module")
def theirs(model_dir):
    return modelscope_pipeline("face-detection", model_dir)


def _photos(shared_dir):
    photos = sorted((shared_dir / FACES).glob("*.jpg"))
    assert photos, f"no photos in {shared_dir / FACES}"
    return [str(p) for p in photos] + [skimage_photo("astronaut.png")]


def test_real_photos_match_modelscope(ours, theirs, shared_dir):
    faces = 0
    for path in _photos(shared_dir):
        a, b = ours(path), theirs(path)
        assert_same_detections(a, b, os.path.basename(path), keypoints=10)
        faces += len(a["boxes"])
    assert faces >= 100  # the photos hold many faces: the comparison is not vacuous


def test_input_kinds(ours, theirs, shared_dir):
    path = str(shared_dir / FACES / "office5.jpg")
    ref = theirs(path)
    assert len(ref["boxes"]) >= 5
    pil = Image.open(path)
    assert_same_detections(
        ours(pil), ref, "PIL", keypoints=10
    )  # no EXIF rotation in this photo: the same pixels as the path
    rgb = np.asarray(pil.convert("RGB"))
    # ModelScope's pipeline crashes on numpy inputs (negative strides handed to torch); ours follows LoadImage
    assert_same_detections(ours(np.ascontiguousarray(rgb[:, :, ::-1])), ref, "BGR array", keypoints=10)
    assert_same_detections(ours([path, pil])[1], ref, "list", keypoints=10)
    gray = np.asarray(pil.convert("L"))
    assert_same_detections(ours(gray), theirs(Image.fromarray(gray)), "gray array", keypoints=10)
    assert ours(path) == ours(path)  # deterministic


def test_no_face_gives_empty_lists(ours):
    flat = np.full((120, 160, 3), 128, np.uint8)  # ModelScope raises here (np.vstack of nothing)
    assert ours(flat) == {"scores": [], "boxes": [], "keypoints": []}


# ---- the networks alone ----------------------------------------------------------------------------------------


def _torch_nets(model_dir):
    from modelscope.models.cv.face_detection.mtcnn.models.get_nets import ONet, PNet, RNet

    w = os.path.join(model_dir, "weights")
    return {
        "pnet": PNet(os.path.join(w, "pnet.npy")).eval(),
        "rnet": RNet(os.path.join(w, "rnet.npy")).eval(),
        "onet": ONet(os.path.join(w, "onet.npy")).eval(),
    }


@pytest.mark.parametrize(
    "net,shape",
    [
        ("pnet", (1, 3, 12, 12)),
        ("pnet", (1, 3, 57, 83)),  # odd sizes: the ceil-mode pooling keeps a partial window
        ("pnet", (2, 3, 40, 31)),
        ("rnet", (1, 3, 24, 24)),
        ("rnet", (37, 3, 24, 24)),
        ("onet", (1, 3, 48, 48)),
        ("onet", (19, 3, 48, 48)),
    ],
)
def test_raw_networks_match_torch(model_dir, net, shape):
    import torch

    rng = np.random.default_rng(sum(shape))
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    network = {"pnet": mtcnn_model.PNet, "rnet": mtcnn_model.RNet, "onet": mtcnn_model.ONet}[net]
    got = network(model_dir, None, threads=2).run(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))  # NHWC
    got = [g.transpose(0, 3, 1, 2) for g in got]
    with torch.no_grad():
        want = [t.numpy() for t in _torch_nets(model_dir)[net](torch.from_numpy(x))]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.reshape(w.shape), w, atol=1e-4, rtol=1e-4)


def test_batched_patches_equal_one_run(model_dir):
    det = mtcnn_model.MtcnnDetector(model_dir, threads=2)
    x = np.random.default_rng(0).uniform(-1, 1, (300, 24, 24, 3)).astype(np.float32)  # 256 + 32 + 12 (padded)
    batched = det._run_batched(det.rnet, x)
    single = [o.reshape(300, -1) for o in det.rnet.run(x)]
    for a, b in zip(batched, single):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_pyramid_beyond_eight_levels(model_dir, shared_dir):
    # a 1280x720 photo has 11 pyramid levels, more than a session's default 8 plans: the P-Net keeps them all,
    # so a second image of that size plans nothing
    det = mtcnn_model.MtcnnDetector(model_dir, threads=2)
    assert len(mtcnn_model.pyramid_scales(1280, 720)) == 11
    rgb = np.asarray(Image.open(shared_dir / FACES / "office2.jpg").convert("RGB"))
    first = det.detect(rgb)
    assert det.pnet._sessions[0].plans == 11
    count = det.pnet.primitive_count
    second = det.detect(rgb)
    assert det.pnet.primitive_count == count
    np.testing.assert_array_equal(first[0], second[0])


# ---- the per-box steps against the reference's functions -----------------------------------------------------


def _random_boxes(rng, n, width, height):
    side = rng.integers(1, 90, n).astype(np.float64)
    x1 = rng.integers(-40, width, n).astype(np.float64)
    y1 = rng.integers(-40, height, n).astype(np.float64)
    x1, y1 = np.maximum(x1, 1 - side), np.maximum(y1, 1 - side)  # every box overlaps the image
    score = rng.integers(0, 5, n) / 4.0  # many tied scores
    return np.stack([x1, y1, x1 + side - 1 + rng.integers(0, 2, n), y1 + side - 1, score], axis=1)


def test_patches_and_in_place_clipping_match_reference():
    from modelscope.models.cv.face_detection.mtcnn.models.box_utils import get_image_boxes

    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (130, 170, 3), dtype=np.uint8))
    for size in (24, 48):
        boxes = _random_boxes(rng, 300, 170, 130)
        ref_boxes = boxes.copy()
        want = get_image_boxes(ref_boxes, image, size=size)
        got = mtcnn_model._cut_patches(boxes, image, size).transpose(0, 3, 1, 2)  # msvision keeps NHWC
        np.testing.assert_array_equal(got, want)  # bit for bit, zero padding included
        np.testing.assert_array_equal(boxes, ref_boxes)  # the reference clips its boxes in place


@pytest.mark.parametrize("mode", ["union", "min"])
def test_nms_matches_reference_with_ties(mode):
    from modelscope.models.cv.face_detection.mtcnn.models.box_utils import nms

    rng = np.random.default_rng(4)
    for n in (1, 7, 40, 500):
        boxes = _random_boxes(rng, n, 200, 150)
        want = nms(boxes.copy(), 0.5 if mode == "union" else 0.7, mode=mode)
        got = mtcnn_model._nms(boxes, 0.5 if mode == "union" else 0.7, mode=mode)
        assert got.tolist() == [int(i) for i in want]


def test_degenerate_boxes_are_dropped():
    boxes = np.array([[0, 0, 9, 9, 1], [5, 5, 3, 9, 1], [np.nan, 0, 4, 4, 1], [2, 2, 2, 2, 1]], np.float64)
    np.testing.assert_array_equal(mtcnn_model._drop_unusable(boxes, 40, 30), boxes[[0, 3]])


def test_boxes_far_larger_than_the_image_are_dropped():
    """Weights made to blow boxes up (offsets of 1e4 or 3e9) must not make the cascade cut gigabyte patches or
    overflow the int32 corners: such boxes go, boxes up to twice the image's longer side stay."""
    boxes = np.array(
        [
            [-20, -10, 59, 69, 1],  # 80 x 80 on a 40 x 30 image: twice the longer side, kept
            [-20, -10, 60, 69, 1],  # 81 wide: dropped
            [-20000, -20000, 20000, 20000, 1],
            [3e9, 3e9, 3e9 + 10, 3e9 + 10, 1],  # small, but nowhere near the image
        ],
        np.float64,
    )
    np.testing.assert_array_equal(mtcnn_model._drop_unusable(boxes, 40, 30), boxes[[0]])


# ---- bad inputs and bad model files ----------------------------------------------------------------------------


def test_bad_images(ours, monkeypatch):
    with pytest.raises(InvalidInputError, match="empty"):
        ours(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(InvalidInputError, match="too small for MTCNN"):
        ours(np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(InvalidInputError, match="too small for MTCNN"):
        ours(Image.new("RGB", (500, 20)))
    monkeypatch.setenv("MSVISION_MAX_IMAGE_PIXELS", "10000")
    with pytest.raises(InvalidInputError, match="MSVISION_MAX_IMAGE_PIXELS"):
        ours(np.zeros((200, 200, 3), np.uint8))


def _copy_model(model_dir, tmp_path) -> Path:
    dst = tmp_path / "mtcnn"
    shutil.copytree(model_dir, dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_bad_weight_files(model_dir, tmp_path):
    dst = _copy_model(model_dir, tmp_path)
    onet = dst / "weights" / "onet.npy"
    good = onet.read_bytes()

    onet.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(InvalidModelError, match="onet.npy"):
        msvision.pipeline("face-detection", model=str(dst))

    onet.write_bytes(b"not a numpy file at all")
    with pytest.raises(InvalidModelError, match="onet.npy"):
        msvision.pipeline("face-detection", model=str(dst))

    marker = tmp_path / "pwned"
    with open(onet, "wb") as f:
        np.save(f, np.array({"features.conv1.weight": _RunsCode(marker)}, dtype=object), allow_pickle=True)
    with pytest.raises(InvalidModelError, match="onet.npy"):
        msvision.pipeline("face-detection", model=str(dst))
    assert not marker.exists()

    weights = load_npy(dst / "weights" / "rnet.npy")
    weights["features.conv4.weight"] = weights["features.conv4.weight"][:, :100]  # wrong shape
    with open(onet, "wb") as f:
        np.save(f, np.array(weights, dtype=object), allow_pickle=True)
    with pytest.raises(InvalidModelError, match="onet.npy"):
        msvision.pipeline("face-detection", model=str(dst))

    weights = load_npy(model_dir + "/weights/onet.npy")
    weights["extra.weight"] = np.zeros(3, np.float32)  # a weight the network does not have
    with open(onet, "wb") as f:
        np.save(f, np.array(weights, dtype=object), allow_pickle=True)
    with pytest.raises(InvalidModelError, match="extra.weight"):
        msvision.pipeline("face-detection", model=str(dst))

    onet.unlink()
    with pytest.raises(ModelNotFoundError, match="onet.npy"):
        msvision.pipeline("face-detection", model=str(dst))

    onet.write_bytes(good)  # and the restored copy works
    config = json.loads((dst / "configuration.json").read_text())
    assert config["pipeline"]["type"] == "manual-face-detection-mtcnn"
    result = msvision.pipeline("face-detection", model=str(dst))(skimage_photo("astronaut.png"))
    assert len(result["boxes"]) == 1
