"""MogFace face detection: msvision against ModelScope's real pipeline and torch model on the same model directory.

The model directory holds random weights from ModelScope's own ``MogFace`` class (BatchNorm statistics and affine
parameters and the GroupNorm affine parameters randomised so the folding is exercised). Random weights give
confidences around 0.5; the final ``pred_net.pred_cls.bias`` is set to CLS_BIAS so that a handful of anchors pass
ModelScope's 0.82 threshold and the decoding / NMS / scaling path is compared on real boxes.

ModelScope's pipeline runs once per photo (module fixture) with hooks that record the network input it built and
the raw per-level head outputs, so the raw maps (a), the detections (b) and the pre-processing are all compared
against one reference run. Photos (scikit-image's bundled photos) are small crops to keep ResNet-101 cheap, plus a
strip of tiled photos wider than 1500 px, which takes ModelScope's downscaling path (cv2.resize + the scores
divided by the scale).
"""

import os
import shutil

import numpy as np
import pytest
from PIL import Image
from support.detection import assert_same_detections_up_to_ties
from support.model_dirs import make_mogface_dir, skimage_photo
from support.oracle import modelscope_pipeline

import msvision
from msvision.errors import ImageDecodeError, InvalidInputError, InvalidModelError, ModelNotFoundError
from msvision.models.mogface import priors

THRESHOLD = 0.82


def assert_same_detections(a, b, scale=1.0, what=""):
    assert_same_detections_up_to_ties(a, b, THRESHOLD, scale, what)


def _strip(tmp_dir):
    """Six real photos side by side, 1601 x 203 px: wider than 1500, so ModelScope downscales it."""
    parts = [
        ("astronaut.png", 203),
        ("camera.png", 203),
        ("chelsea.png", 305),
        ("coffee.png", 304),
        ("rocket.jpg", 290),
        ("motorcycle_left.png", 296),
    ]
    strip = Image.new("RGB", (sum(w for _, w in parts), 203))
    x = 0
    for name, w in parts:
        strip.paste(Image.open(skimage_photo(name)).convert("RGB").resize((w, 203), Image.BICUBIC), (x, 0))
        x += w
    path = os.path.join(tmp_dir, "strip_1601x203.png")
    strip.save(path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("mogface_photos")
    astro = Image.open(skimage_photo("astronaut.png")).convert("RGB")
    out = {
        # 320 x 240: the level heights 60, 30, 15 (only the stride-16 fusion crops a row)
        "astronaut": astro.crop((100, 0, 420, 240)),
        # 300 x 228: odd level sizes at strides 4, 8, 16 (height) and 4, 16 (width): most crops
        "chelsea": Image.open(skimage_photo("chelsea.png")).convert("RGB").crop((80, 40, 380, 268)),
    }
    paths = {}
    for key, img in out.items():
        paths[key] = os.path.join(d, f"{key}.png")
        img.save(paths[key])
    paths["strip"] = _strip(d)
    # 64 x 48 (the same size parity class as the 320 x 240 crop): the input-kind checks
    paths["tiny"] = os.path.join(d, "tiny.png")
    astro.crop((180, 60, 244, 108)).save(paths["tiny"])
    return paths


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_mogface_dir(tmp_path_factory.mktemp("mogface_model") / "model")


@pytest.fixture(scope="module")
def theirs(model_dir):
    return modelscope_pipeline("face-detection", model_dir)


@pytest.fixture(scope="module")
def ours(model_dir):
    return msvision.pipeline("face-detection", model=model_dir, threads=2)


@pytest.fixture(scope="module")
def reference(theirs, photos):
    """ModelScope's pipeline on each photo, with the network input and the raw head outputs it computed."""
    net = theirs.detector.net
    seen = {}
    hooks = [
        net.register_forward_pre_hook(lambda m, args: seen.__setitem__("input", args[0].numpy().copy())),
        net.pred_net.pred_cls.register_forward_hook(lambda m, a, y: seen["cls"].append(y.numpy().copy())),
        net.pred_net.pred_loc.register_forward_hook(lambda m, a, y: seen["loc"].append(y.numpy().copy())),
    ]
    results = {}
    try:
        for key in ("astronaut", "chelsea", "strip"):
            seen.update(cls=[], loc=[])
            out = theirs(photos[key])
            results[key] = {"out": out, "input": seen["input"], "cls": seen["cls"], "loc": seen["loc"]}
    finally:
        for h in hooks:
            h.remove()
    return results


@pytest.fixture(scope="module")
def our_runs(ours, photos):
    """msvision's pipeline on each photo, stage by stage."""
    runs = {}
    for key in ("astronaut", "chelsea", "strip"):
        pre = ours.preprocess(photos[key])
        fwd = ours.forward(pre)
        runs[key] = {"pre": pre, "fwd": fwd, "out": ours.postprocess(fwd)}
    return runs


# ------------------------------------------------------------------ (a) raw network outputs


@pytest.mark.parametrize("key", ["astronaut", "chelsea", "strip"])
def test_preprocessing_is_identical(key, reference, our_runs):
    """The network input msvision builds equals the tensor ModelScope feeds its network, bit for bit (including
    the cv2/IPP bilinear downscale of the strip)."""
    ref = reference[key]["input"]
    ours_x = our_runs[key]["pre"]["img"].transpose(0, 3, 1, 2)  # msvision keeps NHWC
    assert ours_x.shape == ref.shape and ours_x.dtype == ref.dtype == np.float32
    assert np.array_equal(ours_x, ref), f"max diff {np.abs(ours_x - ref).max()}"


@pytest.mark.parametrize("key", ["astronaut", "chelsea", "strip"])
def test_raw_outputs_match_torch(key, reference, our_runs):
    """All 6 levels of sigmoid(cls) and loc, before any threshold, against ModelScope's torch MogFace."""
    ref = reference[key]
    fwd = our_runs[key]["fwd"]
    assert len(ref["cls"]) == len(fwd["conf"]) == 6 and len(ref["loc"]) == len(fwd["loc"]) == 6
    for level in range(6):
        conf_ref = 1.0 / (1.0 + np.exp(-ref["cls"][level].astype(np.float64)))
        conf, loc = (
            m[level].transpose(0, 3, 1, 2) for m in (fwd["conf"], fwd["loc"])
        )  # NHWC -> torch's NCHW
        assert conf.shape == conf_ref.shape and loc.shape == ref["loc"][level].shape, level
        assert np.abs(conf - conf_ref).max() < 2e-5, (key, level, np.abs(conf - conf_ref).max())
        loc_scale = max(1.0, float(np.abs(ref["loc"][level]).max()))
        assert np.abs(loc - ref["loc"][level]).max() < 1e-4 * loc_scale, (key, level)


# ------------------------------------------------------------------ (b) detections


@pytest.mark.parametrize("key", ["astronaut", "chelsea", "strip"])
def test_detections_match_modelscope(key, reference, our_runs):
    theirs_out = reference[key]["out"]
    ours_out = our_runs[key]["out"]
    assert set(ours_out) == set(theirs_out) == {"scores", "boxes", "keypoints"}
    assert ours_out["keypoints"] is None and theirs_out["keypoints"] is None
    assert isinstance(ours_out["scores"], list) and isinstance(ours_out["boxes"], list)
    assert all(type(s) is float for s in ours_out["scores"])
    assert all(
        isinstance(b, list) and len(b) == 4 and all(type(v) is float for v in b) for b in ours_out["boxes"]
    )
    assert len(theirs_out["scores"]) >= 3, "the random model should give some boxes above the threshold"
    scale = our_runs[key]["pre"]["scale"]
    assert_same_detections(ours_out, theirs_out, scale, key)


def test_large_image_takes_the_downscale_path(reference, our_runs):
    """> 1500 px: the image is resized to 1000 px and the scores are divided by the scale too (ModelScope quirk),
    so they exceed 1."""
    pre = our_runs["strip"]["pre"]
    assert pre["scale"] == 1000.0 / 1601 and pre["img"].shape == (1, 127, 1000, 3)
    scores = np.asarray(our_runs["strip"]["out"]["scores"])
    assert scores.min() > THRESHOLD / pre["scale"] - 1e-4 and scores.max() > 1.0
    # the network saw the resized image; boxes come back in original pixels
    conf = np.concatenate([c.ravel() for c in our_runs["strip"]["fwd"]["conf"]])
    assert np.isclose(scores.max() * pre["scale"], conf.max(), atol=1e-6)


def test_input_kinds_match_modelscope(ours, theirs, photos):
    """Path, PIL image, BGR uint8 array, gray array, float BGR array (ModelScope keeps its values) and a list."""
    path = photos["tiny"]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    gray = np.asarray(Image.open(path).convert("L"))
    float_bgr = bgr.astype(np.float64) + 0.25
    want = theirs(path)
    assert len(want["scores"]) >= 1
    for x in (path, Image.open(path), bgr, gray, float_bgr):
        assert_same_detections(ours(x), theirs(x), what=type(x).__name__)
    got = ours([path, bgr])
    assert isinstance(got, list) and len(got) == 2
    for g in got:
        assert_same_detections(g, want, what="list")


# ------------------------------------------------------------------ building blocks


def test_priors_match_modelscope():
    from modelscope.models.cv.face_detection.mogface.models.utils import MogPriorBox

    for h, w in [(240, 320), (228, 300), (1, 1), (127, 1000), (37, 5)]:
        ref = MogPriorBox(scale_list=[0.68])(h, w)
        got = priors(h, w)
        assert got.dtype == ref.dtype == np.float32 and np.array_equal(got, ref), (h, w)


# heights and widths that each take all 8 parity patterns of the level sizes at strides 16, 8, 4; the first two
# have level-0 maps of >= 16 x 16, where the heads' convolutions run as Winograd
ONE_GRAPH_SIZES = [(64, 66), (66, 64), (59, 42), (54, 37), (49, 59), (47, 54), (42, 49), (37, 47)]


@pytest.mark.parametrize("size", ONE_GRAPH_SIZES)
def test_one_graph_serves_every_size(size, theirs, ours):
    """ModelScope's FPN crops the x2-upsampled coarser map to the finer level's size (dropping a row / column
    where that size is odd); msvision's single graph does that per input (resize_like), so every parity pattern of
    the level sizes matches torch, with no rebuild."""
    import torch

    net = theirs.detector.net
    graph = ours.model.graph
    x = np.random.default_rng(sum(size)).standard_normal((1, 3, *size)).astype(np.float32)
    seen = {"cls": [], "loc": []}
    hooks = [
        net.pred_net.pred_cls.register_forward_hook(lambda m, a, y: seen["cls"].append(y.numpy().copy())),
        net.pred_net.pred_loc.register_forward_hook(lambda m, a, y: seen["loc"].append(y.numpy().copy())),
    ]
    try:
        with torch.no_grad():
            net(torch.from_numpy(x))
    finally:
        for h in hooks:
            h.remove()
    maps = [m.transpose(0, 3, 1, 2) for m in ours.model.run(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))]
    if size in ONE_GRAPH_SIZES[:2]:  # the plan of this size (the one run last) has Winograd steps
        assert any("winograd convolution" in step for step in ours.model.steps())
    assert ours.model.graph is graph
    for level in range(6):
        conf_ref = 1.0 / (1.0 + np.exp(-seen["cls"][level].astype(np.float64)))
        conf, loc = maps[2 * level], maps[2 * level + 1]
        assert conf.shape == conf_ref.shape and loc.shape == seen["loc"][level].shape, (size, level)
        assert np.abs(conf - conf_ref).max() < 2e-5, (size, level)
        loc_scale = max(1.0, float(np.abs(seen["loc"][level]).max()))
        assert np.abs(loc - seen["loc"][level]).max() < 1e-4 * loc_scale, (size, level)


# ------------------------------------------------------------------ (c) bad inputs and bad model directories


def test_degenerate_images(ours, theirs):
    # a 1 x 1 image runs through ModelScope (every level is 1 x 1) and finds nothing; so does msvision
    one = np.full((1, 1, 3), 128, np.uint8)
    assert ours(one) == theirs(one) == {"scores": [], "boxes": [], "keypoints": None}
    with pytest.raises(InvalidInputError, match="empty"):
        ours(np.zeros((0, 0, 3), np.uint8))  # ModelScope: a torch RuntimeError from the first convolution
    with pytest.raises(InvalidInputError, match="too thin"):
        ours(np.zeros((1, 3000, 3), np.uint8))  # downscaled to 0 rows; ModelScope: cv2.error
    with pytest.raises(InvalidInputError):
        ours(np.zeros((8, 8, 4), np.uint8))


def test_bad_image_files(ours, tmp_path):
    bad = tmp_path / "not_an_image.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is no jpeg")
    with pytest.raises(ImageDecodeError):
        ours(str(bad))
    with pytest.raises(FileNotFoundError):
        ours(str(tmp_path / "missing.jpg"))
    with pytest.raises(TypeError):
        ours(12345)


def _copy_config(src, dst):
    dst.mkdir()
    shutil.copy(os.path.join(src, "configuration.json"), dst / "configuration.json")
    return dst


def test_bad_model_dirs(model_dir, tmp_path):
    import torch

    missing = _copy_config(model_dir, tmp_path / "missing")
    with pytest.raises(ModelNotFoundError, match="pytorch_model.pt"):
        msvision.pipeline("face-detection", model=str(missing))

    corrupt = _copy_config(model_dir, tmp_path / "corrupt")
    (corrupt / "pytorch_model.pt").write_bytes(b"PK\x03\x04 truncated garbage")
    with pytest.raises(InvalidModelError):
        msvision.pipeline("face-detection", model=str(corrupt))

    state = torch.load(os.path.join(model_dir, "pytorch_model.pt"), weights_only=True)
    lacking = _copy_config(model_dir, tmp_path / "lacking")
    torch.save({k: v for k, v in state.items() if k != "fpn.p3_lat.weight"}, lacking / "pytorch_model.pt")
    with pytest.raises(InvalidModelError, match="fpn.p3_lat.weight"):
        msvision.pipeline("face-detection", model=str(lacking))

    misshapen = _copy_config(model_dir, tmp_path / "misshapen")
    state["pred_net.pred_loc.bias"] = torch.zeros(5)
    torch.save(state, misshapen / "pytorch_model.pt")
    with pytest.raises(InvalidModelError, match="pred_net.pred_loc.bias"):
        msvision.pipeline("face-detection", model=str(misshapen))


def test_detection_comparison_is_strict():
    a = {
        "scores": [0.9, 0.85],
        "boxes": [[1.0, 2.0, 30.0, 40.0], [50.0, 60.0, 70.0, 80.0]],
        "keypoints": None,
    }
    assert_same_detections(a, a)
    moved = {**a, "boxes": [[1.0, 2.0, 30.0, 40.0], [51.0, 60.0, 70.0, 80.0]]}
    with pytest.raises(AssertionError):
        assert_same_detections(moved, a)
    with pytest.raises(AssertionError):
        assert_same_detections({**a, "scores": [0.9, 0.86]}, a)
    with pytest.raises(AssertionError):
        assert_same_detections({"scores": [0.9], "boxes": [a["boxes"][0]], "keypoints": None}, a)
    # a box right at the threshold may be on one side only
    edge = {"scores": [0.9, 0.82001], "boxes": a["boxes"], "keypoints": None}
    assert_same_detections({"scores": [0.9], "boxes": [a["boxes"][0]], "keypoints": None}, edge)
    # and so may one of two overlapping near-tied boxes (NMS kept the other one on the other side)
    tie_a = {"scores": [0.9, 0.85], "boxes": [a["boxes"][0], [54.0, 60.0, 74.0, 80.0]], "keypoints": None}
    tie_b = {"scores": [0.9, 0.85000002], "boxes": a["boxes"], "keypoints": None}
    assert_same_detections(tie_a, tie_b)
    far = {"scores": [0.9, 0.85], "boxes": [a["boxes"][0], [150.0, 60.0, 170.0, 80.0]], "keypoints": None}
    with pytest.raises(AssertionError):
        assert_same_detections(far, tie_b)
