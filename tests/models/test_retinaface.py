"""RetinaFace-R50 face detection: msvision against ModelScope's real pipeline and torch network on the same model
directory.

The model directory holds random weights from ModelScope's own ``RetinaFace`` class (BatchNorm statistics and affine
parameters randomised, so the folding is exercised), its class heads calibrated on the astronaut crop so that a few
dozen anchors pass the 0.9 threshold there (``support.model_dirs.retinaface_net``): decoding, NMS, landmarks and
scaling are compared on real boxes. ModelScope's pipeline runs once per photo with a hook recording the network's
input and raw outputs, so (a) the input, (b) the raw outputs and (c) the detections are compared against one run.
Photos: the calibration crop, an odd-sized crop, real photos from ``../shared/assets/images/faces``, a strip wider
than 1500 px (the downscale path, scores divided by the scale) and a blank image.
"""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from support.detection import assert_same_detections_up_to_ties, check_detection_format
from support.model_dirs import make_retinaface_dir, skimage_photo
from support.oracle import modelscope_pipeline

import msvision
from msvision.errors import InvalidInputError, InvalidModelError, ModelNotFoundError
from msvision.models.retinaface import MEAN, priors, read_settings

THRESHOLD = 0.9
KEYS = ("astronaut", "chelsea", "office3", "ulfd_13", "strip", "blank")


@pytest.fixture(scope="module")
def photos(tmp_path_factory, shared_dir):
    d = tmp_path_factory.mktemp("retinaface_photos")
    astro = Image.open(skimage_photo("astronaut.png")).convert("RGB")
    images = {
        "astronaut": astro.crop((100, 0, 420, 240)),  # 320 x 240: the calibration image
        "chelsea": Image.open(skimage_photo("chelsea.png"))
        .convert("RGB")
        .crop((80, 40, 381, 267)),  # 301 x 227
        "blank": Image.new("RGB", (96, 80), (128, 128, 128)),
    }
    paths = {k: str(d / f"{k}.png") for k in images}
    for k, img in images.items():
        img.save(paths[k])
    for name in ("office3", "ulfd_13"):
        paths[name] = str(shared_dir / "assets/images/faces" / f"{name}.jpg")
    strip = Image.new("RGB", (1601, 160))  # wider than 1500: ModelScope resizes it by 1000 / 1601
    for i, name in enumerate(("office3", "ulfd_13", "office5", "ulfd_8")):
        part = (
            Image.open(shared_dir / "assets/images/faces" / f"{name}.jpg").convert("RGB").resize((400, 160))
        )
        strip.paste(part, (i * 400, 0))
    paths["strip"] = str(d / "strip.png")
    strip.save(paths["strip"])
    return paths


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, photos):
    rgb = np.asarray(Image.open(photos["astronaut"]), np.float32)
    return make_retinaface_dir(
        tmp_path_factory.mktemp("retinaface_model") / "model", calibrate_on=rgb - np.float32(MEAN)
    )


@pytest.fixture(scope="module")
def theirs(model_dir):
    return modelscope_pipeline("face-detection", model_dir)


@pytest.fixture(scope="module")
def ours(model_dir):
    return msvision.pipeline("face-detection", model=model_dir, threads=2)


@pytest.fixture(scope="module")
def reference(theirs, photos):
    net = theirs.detector.net
    seen = {}
    hooks = [
        net.register_forward_pre_hook(lambda m, args: seen.__setitem__("input", args[0].numpy().copy())),
        net.register_forward_hook(lambda m, a, y: seen.__setitem__("raw", [t.numpy().copy() for t in y])),
    ]
    try:
        return {k: {"out": theirs(photos[k]), **dict(seen)} for k in KEYS}
    finally:
        for h in hooks:
            h.remove()


@pytest.fixture(scope="module")
def our_runs(ours, photos):
    runs = {}
    for k in KEYS:
        pre = ours.preprocess(photos[k])
        fwd = ours.forward(pre)
        runs[k] = {"pre": pre, "fwd": fwd, "out": ours.postprocess(fwd)}
    return runs


def assert_same_faces(a, b, what, scale=1.0):
    """Boxes and scores as the other detectors' tests compare them (up to ties), and each face's 5 landmarks
    within 1 px of ModelScope's for the same box."""
    check_detection_format(a, keypoints=10)
    assert_same_detections_up_to_ties(a, b, THRESHOLD, scale, what)
    boxes_a = np.asarray(a["boxes"]).reshape(-1, 4)
    for box, points in zip(b["boxes"], b["keypoints"]):
        j = int(np.abs(boxes_a - box).max(axis=1).argmin())
        if np.abs(boxes_a[j] - box).max() <= 1.0:
            assert np.abs(np.subtract(a["keypoints"][j], points)).max() <= 1.0, (what, box)


def test_priors_match_modelscope():
    from modelscope.models.cv.face_detection.retinaface.utils import PriorBox
    from support.model_dirs import RETINAFACE_SETTINGS

    settings = read_settings(RETINAFACE_SETTINGS, "test")
    for h, w in ((240, 320), (227, 301), (17, 9)):
        want = PriorBox(RETINAFACE_SETTINGS, image_size=(h, w)).forward().numpy()
        assert np.array_equal(priors(settings, h, w), want), (h, w)


@pytest.mark.parametrize("key", KEYS)
def test_network_input_is_identical(key, reference, our_runs):
    ref = reference[key]["input"]
    x = our_runs[key]["pre"]["img"]
    ss = 1000.0 / 1601 if key == "strip" else 1.0
    assert np.array_equal(x, x.astype(np.float32))
    # msvision's detector subtracts the mean and resizes inside detect(): rebuild the network input the same way
    from msvision.io.geometry import resize_by

    img = resize_by(x, ss) if ss != 1.0 else x
    ours_x = (img - np.array(MEAN, np.float32))[None].transpose(0, 3, 1, 2)
    assert ours_x.shape == ref.shape and np.array_equal(ours_x, ref), key


@pytest.mark.parametrize("key", KEYS)
def test_raw_outputs_match_torch(key, reference, ours, our_runs):
    """Scores (softmax's face class), loc and landmark maps of all anchors against ModelScope's torch network."""
    loc_ref, conf_ref, landm_ref = reference[key]["raw"]
    outs = ours.model.run(np.ascontiguousarray(reference[key]["input"].transpose(0, 2, 3, 1)))
    scores = np.concatenate([m.reshape(-1) for m in outs[0::3]])
    loc = np.concatenate([m.reshape(-1, 4) for m in outs[1::3]])
    landm = np.concatenate([m.reshape(-1, 10) for m in outs[2::3]])
    assert scores.shape == conf_ref[0, :, 1].shape
    assert np.abs(scores - conf_ref[0, :, 1]).max() < 2e-5, key
    for got, want in ((loc, loc_ref[0]), (landm, landm_ref[0])):
        assert np.abs(got - want).max() < 1e-4 * max(1.0, float(np.abs(want).max())), key


@pytest.mark.parametrize("key", KEYS)
def test_detections_match_modelscope(key, reference, our_runs):
    want, got = reference[key]["out"], our_runs[key]["out"]
    if key == "astronaut":
        assert len(want["scores"]) >= 3, "the calibrated model should find faces on its calibration image"
    if key == "blank":
        assert want["scores"] == [] and got["scores"] == []
    assert_same_faces(got, want, key, scale=1000.0 / 1601 if key == "strip" else 1.0)


def test_vacuity_guard(reference):
    """Enough detections overall for the comparison to mean something, and the downscale path scored > 1."""
    assert sum(len(reference[k]["out"]["scores"]) for k in KEYS) >= 20
    assert (
        max(reference["strip"]["out"]["scores"], default=0) > 1.0 or not reference["strip"]["out"]["scores"]
    )


def test_input_kinds_match_modelscope(ours, theirs, photos):
    """Path, PIL image, BGR uint8 array, gray array, float BGR array (its values kept) and a list."""
    path = photos["astronaut"]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    gray = np.asarray(Image.open(path).convert("L"))
    for x in (Image.open(path), bgr, gray, bgr.astype(np.float64) + 0.25):
        assert_same_faces(ours(x), theirs(x), type(x).__name__)
    got = ours([path, bgr])
    assert isinstance(got, list) and len(got) == 2


def test_wrapped_checkpoint_with_module_prefix(tmp_path, model_dir, ours, photos):
    """``{'state_dict': {'module.' + k: v}}``, which ModelScope's loader accepts, gives the same detections."""
    d = tmp_path / "wrapped"
    shutil.copytree(model_dir, d)
    state = torch.load(os.path.join(model_dir, "pytorch_model.pt"), weights_only=True)
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, d / "pytorch_model.pt")
    got = msvision.pipeline("face-detection", model=str(d), threads=2)(photos["astronaut"])
    assert got == ours(photos["astronaut"])


def _variant(tmp_path, model_dir, edit_state=None, edit_config=None):
    d = tmp_path / "variant"
    shutil.copytree(model_dir, d)
    if edit_state:
        state = torch.load(os.path.join(model_dir, "pytorch_model.pt"), weights_only=True)
        edit_state(state)
        torch.save(state, d / "pytorch_model.pt")
    if edit_config:
        config = json.loads((d / "configuration.json").read_text())
        edit_config(config)
        (d / "configuration.json").write_text(json.dumps(config))
    return str(d)


def test_missing_weight_is_refused(tmp_path, model_dir):
    """ModelScope loads with strict=False and would leave it random; msvision names it."""
    d = _variant(tmp_path, model_dir, edit_state=lambda s: s.pop("ssh2.conv5X5_1.1.running_var"))
    with pytest.raises(InvalidModelError, match="ssh2.conv5X5_1.1.running_var"):
        msvision.pipeline("face-detection", model=d)


def test_wrong_shape_and_unexpected_weights_are_refused(tmp_path, model_dir):
    d = _variant(
        tmp_path, model_dir, edit_state=lambda s: s.__setitem__("BboxHead.1.conv1x1.bias", torch.zeros(7))
    )
    with pytest.raises(InvalidModelError, match="BboxHead.1.conv1x1.bias"):
        msvision.pipeline("face-detection", model=d)
    shutil.rmtree(d)
    d = _variant(tmp_path, model_dir, edit_state=lambda s: s.__setitem__("extra.weight", torch.zeros(3)))
    with pytest.raises(InvalidModelError, match="extra.weight"):
        msvision.pipeline("face-detection", model=d)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.pop("models"), "RetinaFace's settings"),
        (lambda m: m["models"].update(name="mobilenet0.25"), "only 'Resnet50'"),
        (lambda m: m["models"].update(steps=[8, 16, 64]), "steps"),
        (lambda m: m["models"].update(min_sizes=[[16], [64], [256]]), "min_sizes"),
        (lambda m: m["models"].update(pretrain=True), "pretrain"),
        (lambda m: m["models"].update(out_channel=250), "out_channel"),
    ],
)
def test_bad_settings_are_refused(tmp_path, model_dir, edit, message):
    d = _variant(tmp_path, model_dir, edit_config=edit)
    with pytest.raises(InvalidModelError, match=message):
        msvision.pipeline("face-detection", model=d)


def test_missing_checkpoint_and_bad_inputs(tmp_path, model_dir, ours):
    d = _variant(tmp_path, model_dir)
    os.remove(os.path.join(d, "pytorch_model.pt"))
    with pytest.raises(ModelNotFoundError, match="pytorch_model.pt"):
        msvision.pipeline("face-detection", model=d)
    with pytest.raises(TypeError):
        ours(12)
    with pytest.raises(InvalidInputError):
        ours(np.zeros((4, 4, 7), np.uint8))
