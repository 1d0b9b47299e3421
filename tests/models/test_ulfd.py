"""ULFD face detection (``damo/cv_manual_face-detection_ulfd``, pipeline.type ``manual-face-detection-ulfd``):
msvision against ModelScope's real pipeline on the real released weights and real photos.

Criteria: the same faces (count, order by score) with boxes within 1 px and scores within 1e-3; the network's raw
head outputs within float tolerance of ModelScope's torch module; the pre-processing (cv2 bilinear resize of the
float image) bit-identical to OpenCV's; priors and hard NMS identical to ModelScope's functions.
"""

import os
import shutil

import numpy as np
import pytest
from PIL import Image
from support.detection import assert_same_detections
from support.model_dirs import skimage_photo
from support.oracle import modelscope_pipeline

import msvision
from msvision.errors import InvalidInputError, InvalidModelError, ModelNotFoundError
from msvision.models import ulfd

MODEL = "assets/modelscope/damo/cv_manual_face-detection_ulfd"


@pytest.fixture(scope="module")
def model_dir(shared_dir):
    path = shared_dir / MODEL
    assert (path / "pytorch_model.pt").is_file(), f"{path} lacks the released ULFD weights"
    return str(path)


@pytest.fixture(scope="module")
def photos(shared_dir):
    faces = sorted((shared_dir / "assets/images/faces").glob("*.jpg"))
    assert len(faces) >= 10, "the shared faces folder is incomplete"
    return [str(p) for p in faces] + [skimage_photo("astronaut.png")]


@pytest.fixture(scope="module")
def ours(model_dir):
    return msvision.pipeline("face-detection", model=model_dir, threads=2)


@pytest.fixture(scope="module")
def theirs(model_dir):
    return modelscope_pipeline("face-detection", model_dir)


def test_matches_modelscope_on_real_photos(ours, theirs, photos):
    total = 0
    for path in photos:
        a, b = ours(path), theirs(path)
        assert_same_detections(a, b, os.path.basename(path))
        total += len(b["scores"])
    assert total >= 100  # the photos really have faces (257 with the released weights)


def test_input_kinds(ours, theirs, photos):
    path = photos[0]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    gray = np.asarray(Image.open(path).convert("L"))
    by_path = ours(path)
    assert by_path["scores"], "the first photo should have faces"
    assert ours(Image.open(path)) == by_path
    assert ours(bgr) == by_path
    assert ours([path, bgr]) == [by_path, by_path]
    assert_same_detections(by_path, theirs(bgr), "bgr array")
    assert_same_detections(ours(gray), theirs(gray), "gray array")
    assert_same_detections(
        ours(skimage_photo("camera.png")), theirs(skimage_photo("camera.png")), "mode L file"
    )


def test_no_face_and_tiny_images(ours, theirs):
    for img in (
        np.full((120, 90, 3), 128, np.uint8),
        np.zeros((1, 1, 3), np.uint8),
        np.zeros((3, 1), np.uint8),
    ):
        a = ours(img)
        assert a == theirs(img) == {"scores": [], "boxes": [], "keypoints": None}


def test_raw_network_outputs_match_torch(ours, model_dir, photos):
    """Our pre-processed input is bit-identical to ModelScope's transform; our eight head outputs equal the torch
    module's confidences and locations (before softmax and decoding) within float tolerance."""
    import torch
    from modelscope.models.cv.face_detection.ulfd_slim.vision.ssd.data_preprocessing import (
        PredictionTransform,
    )
    from modelscope.models.cv.face_detection.ulfd_slim.vision.ssd.mb_tiny_fd import create_mb_tiny_fd
    from modelscope.preprocessors import LoadImage

    path = photos[-1]  # astronaut.png
    x = ours.preprocess(path)["img"]
    bgr = LoadImage.convert_to_ndarray(path).astype(np.float32)[:, :, ::-1]
    ref_x = PredictionTransform((640, 480), np.array([127, 127, 127]), 128.0)(bgr).unsqueeze(0)
    np.testing.assert_array_equal(x.transpose(0, 3, 1, 2), ref_x.numpy())  # msvision keeps NHWC

    net = create_mb_tiny_fd(2, is_test=False, device="cpu")
    net.load(os.path.join(model_dir, "pytorch_model.pt"))
    net.eval()
    with torch.no_grad():
        conf, loc = net(ref_x)
    outputs = ours.detector.run(x)
    assert [o.shape for o in outputs] == [
        (1, 60, 80, 6),
        (1, 60, 80, 12),
        (1, 30, 40, 4),
        (1, 30, 40, 8),
        (1, 15, 20, 4),
        (1, 15, 20, 8),
        (1, 8, 10, 6),
        (1, 8, 10, 12),
    ]  # fmt: skip  (NHWC)
    our_conf, our_loc = ulfd.UlfdDetector.flatten_heads(outputs)
    np.testing.assert_allclose(our_conf, conf[0].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(our_loc, loc[0].numpy(), rtol=1e-4, atol=1e-4)


def test_priors_and_nms_match_modelscope():
    import torch
    from modelscope.models.cv.face_detection.ulfd_slim.vision import box_utils
    from modelscope.models.cv.face_detection.ulfd_slim.vision.ssd import fd_config

    np.testing.assert_array_equal(ulfd.make_priors(), fd_config.priors.numpy())
    rng = np.random.default_rng(0)
    for _ in range(
        60
    ):  # clusters of overlapping boxes in 0..1 units, where the +1e-5 in ModelScope's IoU matters
        n = int(rng.integers(1, 300))
        centers = rng.uniform(0, 1, (5, 2))[rng.integers(0, 5, n)] + rng.normal(0, 0.01, (n, 2))
        wh = rng.uniform(0.005, 0.05, (n, 2))
        boxes = np.concatenate([centers - wh / 2, centers + wh / 2], 1).astype(np.float32)
        scores = rng.uniform(0.85, 1, n).astype(np.float32)
        keep = ulfd.hard_nms(boxes, scores)
        ref = box_utils.hard_nms(
            torch.from_numpy(np.concatenate([boxes, scores[:, None]], 1)), 0.3, 750, 1500
        )
        np.testing.assert_array_equal(np.concatenate([boxes[keep], scores[keep, None]], 1), ref.numpy())


def test_bad_inputs(ours, monkeypatch):
    with pytest.raises(InvalidInputError, match="empty"):
        ours(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(InvalidInputError, match="channels"):
        ours(np.zeros((10, 10, 4), np.uint8))
    monkeypatch.setenv("MSVISION_MAX_IMAGE_PIXELS", "10000")
    with pytest.raises(InvalidInputError, match="MSVISION_MAX_IMAGE_PIXELS"):
        ours(np.zeros((101, 100, 3), np.uint8))
    ours(np.zeros((100, 100, 3), np.uint8))  # at the limit: fine


def _copy_model(model_dir, dest):
    shutil.copytree(model_dir, dest)
    for p in dest.iterdir():
        os.chmod(p, 0o644)
    return dest


def test_bad_model_dirs(model_dir, tmp_path):
    import torch

    missing = _copy_model(model_dir, tmp_path / "missing")
    (missing / "pytorch_model.pt").unlink()
    with pytest.raises(ModelNotFoundError, match="pytorch_model.pt"):
        msvision.pipeline("face-detection", model=str(missing))

    corrupt = _copy_model(model_dir, tmp_path / "corrupt")
    (corrupt / "pytorch_model.pt").write_bytes(b"\x80\x02this is not a checkpoint")
    with pytest.raises(InvalidModelError, match="corrupt"):
        msvision.pipeline("face-detection", model=str(corrupt))

    truncated = _copy_model(model_dir, tmp_path / "truncated")
    data = (truncated / "pytorch_model.pt").read_bytes()
    (truncated / "pytorch_model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidModelError, match="truncated"):
        msvision.pipeline("face-detection", model=str(truncated))

    state = torch.load(os.path.join(model_dir, "pytorch_model.pt"), map_location="cpu", weights_only=True)
    lacking = {k: v for k, v in state.items() if k != "regression_headers.3.bias"}
    extra = {**state, "fc.weight": torch.zeros(2, 1024)}  # Mb_Tiny's classifier, not part of the detector
    misshapen = {**state, "base_net.5.3.weight": torch.zeros(64, 32, 1, 1)}
    nested = {"state_dict": state}  # ModelScope's SSD.load would refuse it too (strict load_state_dict)
    for name, sd, pattern in [
        ("lacking", lacking, "missing weight 'regression_headers.3.bias'"),
        ("extra", extra, "do not belong to this ulfd network: 'fc.weight'"),
        (
            "misshapen",
            misshapen,
            r"'base_net.5.3.weight' has shape \(64, 32, 1, 1\), expected \(64, 64, 1, 1\)",
        ),
        ("nested", nested, "plain state dict"),
    ]:
        d = _copy_model(model_dir, tmp_path / name)
        torch.save(sd, d / "pytorch_model.pt")
        with pytest.raises(InvalidModelError, match=pattern):
            msvision.pipeline("face-detection", model=str(d))
