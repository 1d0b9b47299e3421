"""HRNet body keypoints (``body-2d-keypoints``, pipeline.type ``hrnetv2w32_body-2d-keypoints_image``): msvision
against ModelScope's real pipeline on a model directory with random weights from ModelScope's own
PoseHighResolutionNetV2, on real photos, with the same person boxes for both.

ModelScope's pipeline hard-codes an mmdet human detector (``damo/cv_resnet18_human-detection``, which needs
mmcv-full): the oracle's detector is replaced by a stand-in returning fixed boxes, which msvision gets through
``human_detector=``. ModelScope's pipeline also calls ``.clone()`` on its NumPy image (an AttributeError on every
call in ModelScope 1.40); the oracle's image is handed over as a torch tensor, which is what that code expects.

Criteria: the same enlarged, clipped boxes; keypoints within 1e-3 px; scores within 1e-4; raw heatmaps within float
tolerance of the torch module; all persons in one network call.
"""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from support.model_dirs import make_damoyolo_dir, make_hrnet_dir, skimage_photo
from support.oracle import modelscope_keypoints_pipeline

import msvision
from msvision.errors import InvalidInputError, InvalidModelError, ModelNotFoundError
from msvision.models import hrnet
from msvision.pipelines.cv import body_2d_keypoints_pipeline as ours_module

# per photo: person boxes (x1, y1, x2, y2) as a detector would give them, chosen on the photos' people
PHOTO_BOXES = {
    "astronaut.png": [[150, 20, 330, 500]],  # one person
    "office1.jpg": [[30.5, 40.25, 180.75, 399], [300, 20, 450, 390], [600.2, 60.7, 760.9, 398.1]],  # several
    "border": [[-40, -30, 120, 260], [400, 300, 530, 530]],  # boxes past the image edges
    "tiny": [[200.5, 300.25, 205.75, 310.5]],  # a 5x10 px person
    "none": [],
}


class FixedBoxes:
    """A human detector returning fixed boxes, as torch tensors (like ModelScope's mmdet detector)."""

    def __init__(self, boxes):
        self.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)

    def __call__(self, image):
        import torch

        return {
            "scores": torch.full((len(self.boxes),), 0.9),
            "boxes": torch.from_numpy(self.boxes.copy()),
            "labels": ["person"] * len(self.boxes),
        }


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_hrnet_dir(tmp_path_factory.mktemp("hrnet") / "model")


@pytest.fixture(scope="module")
def photos(shared_dir):
    office = str(shared_dir / "assets/images/faces/office1.jpg")
    astronaut = skimage_photo("astronaut.png")
    return {
        "astronaut.png": astronaut,
        "office1.jpg": office,
        "border": astronaut,
        "tiny": astronaut,
        "none": skimage_photo("coffee.png"),
    }


def assert_same_keypoints(a, b, what):
    assert set(a) == {"boxes", "keypoints", "scores"}, what
    assert len(a["boxes"]) == len(b["boxes"]), what
    np.testing.assert_allclose(
        np.array(a["boxes"]).reshape(-1, 4), np.array(b["boxes"]).reshape(-1, 4), atol=1e-3
    )
    for ka, kb in zip(a["keypoints"], b["keypoints"]):
        assert len(ka) == hrnet.NUM_JOINTS and all(len(p) == 2 for p in ka), what
        np.testing.assert_allclose(ka, kb, atol=1e-3, err_msg=what)
    for sa, sb in zip(a["scores"], b["scores"]):
        assert len(sa) == hrnet.NUM_JOINTS and all(type(s) is np.float32 for s in sa), what
        np.testing.assert_allclose(sa, sb, atol=1e-4, err_msg=what)


@pytest.mark.parametrize("case", sorted(PHOTO_BOXES))
def test_matches_modelscope_for_the_same_boxes(model_dir, photos, case, monkeypatch):
    detector = FixedBoxes(PHOTO_BOXES[case])
    theirs = modelscope_keypoints_pipeline(model_dir, detector, patch=monkeypatch.setattr)
    ours = msvision.pipeline("body-2d-keypoints", model=model_dir, human_detector=detector, threads=2)
    calls = []
    run = ours.model.run
    ours.model.run = lambda *x: calls.append(x[0].shape) or run(*x)
    a, b = ours(photos[case]), theirs(photos[case])
    assert_same_keypoints(a, b, case)
    assert len(a["boxes"]) == len(PHOTO_BOXES[case])
    if PHOTO_BOXES[case]:
        assert calls == [(len(PHOTO_BOXES[case]), 128, 128, 3)]  # every person in one batched call
    else:
        assert a == {"boxes": [], "keypoints": [], "scores": []} == b


def test_input_kinds(model_dir, photos, monkeypatch):
    detector = FixedBoxes(PHOTO_BOXES["astronaut.png"])
    theirs = modelscope_keypoints_pipeline(model_dir, detector, patch=monkeypatch.setattr)
    ours = msvision.pipeline("body-2d-keypoints", model=model_dir, human_detector=detector)
    path = photos["astronaut.png"]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    by_path = ours(path)
    assert ours(np.ascontiguousarray(rgb[:, :, ::-1])) == by_path
    assert ours(Image.open(path)) == by_path
    gray = np.asarray(Image.open(path).convert("L"))
    assert_same_keypoints(ours(gray), theirs(gray), "gray")


def test_raw_heatmaps_match_torch(model_dir, photos):
    import torch
    from modelscope.models.cv.body_2d_keypoints.hrnet_v2 import PoseHighResolutionNetV2

    ours = msvision.pipeline(
        "body-2d-keypoints", model=model_dir, human_detector=FixedBoxes(PHOTO_BOXES["office1.jpg"])
    )
    batch = ours.preprocess(photos["office1.jpg"])["batch"]
    net = PoseHighResolutionNetV2().eval()
    net.load_state_dict(torch.load(os.path.join(model_dir, "pytorch_model.pt")))
    with torch.no_grad():
        ref = net(torch.from_numpy(batch.transpose(0, 3, 1, 2).copy())).numpy()
    (out,) = ours.model.run(batch)
    assert out.shape == (3, 32, 32, 15)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(out.transpose(0, 3, 1, 2), ref, atol=1e-4 * scale, rtol=1e-4)


def test_decode_heatmaps_matches_modelscope():
    """The vectorised decoding against ModelScope's get_pts, with ties (first maximum wins), border maxima and
    flat neighbours."""
    from modelscope.pipelines.cv.body_2d_keypoints_pipeline import KeypointsDetection

    rng = np.random.default_rng(0)
    maps = rng.standard_normal((4, 32, 32, 15)).astype(np.float32)
    maps[0, 5, 7, 0] = maps[0, 20, 3, 0] = 50  # a tie
    maps[1, 0, 9, 1] = 50  # top border
    maps[2, 31, 31, 2] = 50  # corner
    maps[3, 10, 10, 3] = 50
    maps[3, 10, 9, 3] = maps[3, 10, 11, 3] = 1  # equal neighbours: no offset
    px, py, scores = hrnet.decode_heatmaps(maps)
    for i in range(4):
        pts, ref_scores = KeypointsDetection.get_pts(None, maps[i].transpose(2, 0, 1))
        np.testing.assert_array_equal(np.stack([px[i], py[i]], 1), np.array(pts, np.float64))
        np.testing.assert_array_equal(scores[i], np.array(ref_scores, np.float32))


def _human_detector_dir(root, calibration_photo):
    img = np.asarray(Image.open(calibration_photo).convert("RGB").resize((320, 256)), np.float32)
    return make_damoyolo_dir(
        root,
        variant="S",
        names=("human",),
        conf=0.5,
        task="domain-specific-object-detection",
        calibration_images=[img],
        candidate_fraction=0.002,
    )


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory, photos):
    return _human_detector_dir(tmp_path_factory.mktemp("human") / "detector", photos["office1.jpg"])


def test_end_to_end_with_the_damoyolo_human_detector(model_dir, photos, detector_dir):
    """human_detector= a DAMO-YOLO human-detection directory: the same result as running both msvision
    pipelines by hand."""
    detector = msvision.pipeline("domain-specific-object-detection", model=detector_dir)
    combined = msvision.pipeline("body-2d-keypoints", model=model_dir, human_detector=detector_dir)
    for name in ("office1.jpg", "astronaut.png"):
        boxes = detector(photos[name])["boxes"]
        assert len(boxes) > 0, name
        by_hand = msvision.pipeline("body-2d-keypoints", model=model_dir, human_detector=FixedBoxes(boxes))
        assert combined(photos[name]) == by_hand(photos[name])


def test_default_human_detector(model_dir, photos, detector_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MODELSCOPE_CACHE", str(cache))
    with pytest.raises(ModelNotFoundError, match="human_detector=.*callable"):
        msvision.pipeline("body-2d-keypoints", model=model_dir)
    mmdet = cache / "models" / "damo" / "cv_resnet18_human-detection"
    mmdet.mkdir(parents=True)
    (mmdet / "configuration.json").write_text(json.dumps({"task": "human-detection"}))
    with pytest.raises(ModelNotFoundError, match="mmdet Faster R-CNN"):
        msvision.pipeline("body-2d-keypoints", model=model_dir)
    shutil.copytree(detector_dir, cache / "models" / "damo" / "cv_tinynas_human-detection_damoyolo")
    default = msvision.pipeline("body-2d-keypoints", model=model_dir)
    explicit = msvision.pipeline(
        "body-2d-keypoints", model=model_dir, human_detector="damo/cv_tinynas_human-detection_damoyolo"
    )
    assert default(photos["office1.jpg"]) == explicit(photos["office1.jpg"])


def test_bad_detectors_inputs_and_model_dirs(model_dir, tmp_path):
    def not_a_dict(image):
        return [1, 2]

    pipe = msvision.pipeline("body-2d-keypoints", model=model_dir, human_detector=not_a_dict)
    with pytest.raises(InvalidInputError, match="human detector returned list"):
        pipe(skimage_photo("astronaut.png"))
    pipe = msvision.pipeline(
        "body-2d-keypoints", model=model_dir, human_detector=lambda img: {"boxes": [[1, 2]]}
    )
    with pytest.raises(InvalidInputError, match=r"shape \(1, 2\)"):
        pipe(skimage_photo("astronaut.png"))
    pipe = msvision.pipeline(
        "body-2d-keypoints",
        model=model_dir,
        human_detector=FixedBoxes([[np.nan, 0, 10, 10], [600, 600, 700, 700]]),
    )
    assert pipe(skimage_photo("astronaut.png")) == {"boxes": [], "keypoints": [], "scores": []}  # no pixel
    with pytest.raises(InvalidInputError):
        pipe(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(TypeError, match="human_detector"):
        msvision.pipeline("image-denoising", human_detector=not_a_dict)
    import torch

    bad = tmp_path / "missing_layer"
    bad.mkdir()
    (bad / "configuration.json").write_text(open(os.path.join(model_dir, "configuration.json")).read())
    state = torch.load(os.path.join(model_dir, "pytorch_model.pt"))
    del state["final_layer.3.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, bad / "pytorch_model.pt")
    with pytest.raises(InvalidModelError, match="final_layer.3.weight"):
        msvision.pipeline("body-2d-keypoints", model=str(bad), human_detector=not_a_dict)


def test_box_arithmetic_matches_modelscope():
    """Enlarging and clipping in float32, as KeypointsDetection.crop_image computes it."""
    from modelscope.pipelines.cv.body_2d_keypoints_pipeline import KeypointsDetection

    rng = np.random.default_rng(3)
    kd = KeypointsDetection.__new__(KeypointsDetection)
    kd.box_enlarge_ratio = 0.05
    for _ in range(200):
        x1, y1 = rng.uniform(-50, 600, 2).astype(np.float32)
        x2, y2 = x1 + rng.uniform(0.1, 300), y1 + rng.uniform(0.1, 300)
        box = np.array([x1, y1, x2, y2], np.float32)
        ref = np.array([box[0], box[1], box[2] - box[0], box[3] - box[1]], np.float32).reshape(2, 2)
        ref[1] += ref[0]
        kd.crop_image(np.zeros((512, 640, 3), np.uint8), ref)
        np.testing.assert_array_equal(ours_module.enlarged_box(box, 640, 512), ref)
