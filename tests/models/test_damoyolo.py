"""DAMO-YOLO (``tinynas-detection``: ``image-object-detection`` S / T / M and the ``domain-specific-object-detection``
models built on S): msvision against ModelScope's real ``pipeline(..., trust_remote_code=True)`` on model directories
generated from ModelScope's own backbone / neck / head builders, on real photos.

Criteria: the same detections (labels, boxes within 1 px, scores within 1e-3, the same order up to near-tied
scores; random weights in a 60-layer network make both engines' float32 scores differ from float64 by ~3e-4);
the raw head outputs (class scores and decoded boxes of every anchor) within float tolerance of the torch
module; both of torchvision's batched-NMS paths and the empty result exercised; the model files read without
running anything in them.
"""

import os
import pickle
import shutil

import numpy as np
import pytest
from PIL import Image
from support.detection import assert_same_object_detections
from support.model_dirs import make_damoyolo_dir, photo_crop, set_damoyolo_thresholds, skimage_photo
from support.oracle import modelscope_pipeline

import msvision
from msvision._native import _C
from msvision.errors import CheckpointError, InvalidInputError, InvalidModelError, ModelNotFoundError
from msvision.hub.py_config import read_python_config
from msvision.models import damoyolo

COCO_LIKE = ("person", "bicycle", "car", "cat", "dog")
# domain models: DAMO-YOLO-S with their own classes, thresholds, tasks and checkpoint wrapping
DOMAIN = {
    "smokefire": dict(names=("fire", "smoke"), conf=0.45, iou=0.6, wrap="model", prefix="module."),
    "helmet": dict(names=("helmet", "head"), conf=0.6, iou=0.7, wrap="state_dict", prefix=""),
}


def _sklearn_photo(name):
    import sklearn.datasets

    return os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", name)


@pytest.fixture(scope="module")
def calibration():
    names = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png")
    return [
        np.asarray(Image.open(skimage_photo(n)).convert("RGB").resize((320, 256)), np.float32) for n in names
    ]


@pytest.fixture(scope="module")
def photos(tmp_path_factory, shared_dir):
    tmp = str(tmp_path_factory.mktemp("damoyolo_photos"))
    return [
        skimage_photo("astronaut.png"),  # a person
        skimage_photo("motorcycle_left.png"),  # a vehicle
        skimage_photo("chelsea.png"),  # an animal
        _sklearn_photo("china.jpg"),
        str(shared_dir / "assets/images/faces/office1.jpg"),  # people
        photo_crop(tmp, "coffee.png", (3, 5, 400, 338), "coffee_397x333.png"),  # odd sizes: padding
        photo_crop(tmp, "rocket.jpg", (0, 0, 33, 417), "rocket_33x417.png"),
    ]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, calibration):
    root = tmp_path_factory.mktemp("damoyolo_models")
    dirs = {
        v: make_damoyolo_dir(
            root / v,
            variant=v,
            names=COCO_LIKE,
            conf=0.5,
            calibration_images=calibration,
            candidate_fraction=0.001 if v == "M" else 0.0015,
        )
        for v in ("S", "T", "M")
    }
    for name, kw in DOMAIN.items():
        dirs[name] = make_damoyolo_dir(
            root / name,
            variant="S",
            task="domain-specific-object-detection",
            seed=7,
            calibration_images=calibration,
            candidate_fraction=0.001,
            **kw,
        )
    return dirs


def _task(model_dir):
    import json

    with open(os.path.join(model_dir, "configuration.json")) as f:
        return json.load(f)["task"]


def _pair(model_dir):
    task = _task(model_dir)
    return (
        msvision.pipeline(task, model=model_dir, threads=2),
        modelscope_pipeline(task, model_dir, trust_remote_code=True),
    )


@pytest.mark.parametrize("name", ["S", "T", "M", "smokefire", "helmet"])
def test_matches_modelscope_on_real_photos(model_dirs, photos, name):
    ours, theirs = _pair(model_dirs[name])
    total = 0
    for path in photos:
        a, b = ours(path), theirs(path)
        assert_same_object_detections(
            a,
            b,
            f"{name} {os.path.basename(path)}",
            cap=damoyolo.MAX_DETECTIONS,
            iou=ours.model.spec["head"]["iou_threshold"],
        )
        total += len(b["scores"])
    assert total >= 20, f"{name}: too few detections to compare ({total})"
    if name in DOMAIN:
        assert set(a["labels"]) <= set(DOMAIN[name]["names"])


def _candidates(pipe, path):
    scores, _ = pipe.model.head_outputs(pipe.preprocess(path)["img"])
    return int((scores > np.float32(pipe.model.spec["head"]["conf_threshold"])).sum())


def test_both_nms_paths_and_the_empty_result(model_dirs, tmp_path):
    """One model, three thresholds: few candidates (torchvision's coordinate-offset NMS), more than 1000
    (its per-class NMS), none (ModelScope's (0, 5) boxes)."""
    path = skimage_photo("astronaut.png")
    seen = []
    for conf, name in ((0.5, "few"), (0.2, "many"), (0.99999, "none")):
        d = str(tmp_path / name)
        shutil.copytree(model_dirs["S"], d)
        set_damoyolo_thresholds(d, conf, iou=0.65)
        ours, theirs = _pair(d)
        a, b = ours(path), theirs(path)
        assert_same_object_detections(a, b, f"conf {conf}")
        seen.append((_candidates(ours, path), len(b["scores"])))
    (few, n_few), (many, n_many), (none, n_none) = seen
    assert 0 < few <= 1000 and n_few > 0
    assert many > 1000 and n_many > 0
    assert none == 0 and n_none == 0
    assert a["boxes"].shape == (0, 5) and a["scores"].shape == (0,) and a["labels"] == []


@pytest.mark.parametrize("name", ["S", "M"])
def test_raw_head_outputs_match_torch(model_dirs, photos, name):
    """Class scores and decoded boxes of every anchor, before thresholding, against ModelScope's torch module
    (backbone -> neck -> head with nms off) on ModelScope's own preprocessed input."""
    import torch

    ours, theirs = _pair(model_dirs[name])
    path = photos[5]  # 397x333: padded to 416x352
    x = ours.preprocess(path)["img"]
    ref_x = theirs.preprocess(path)["img"]
    np.testing.assert_array_equal(x.transpose(0, 3, 1, 2), np.asarray(ref_x))
    theirs(path)  # ModelScope's pipeline switches the model to eval mode on its first call
    net = theirs.model
    with torch.no_grad():
        cls, boxes = net.head(net.neck(net.backbone(torch.as_tensor(np.asarray(ref_x)))))
    scores, reg = ours.model.head_outputs(x)
    our_boxes = _C.decode_distribution(reg, ours.model.priors(x.shape[1], x.shape[2]), ours.model.project)
    np.testing.assert_allclose(scores, cls[0].numpy(), atol=1e-3)
    np.testing.assert_allclose(our_boxes, boxes[0].numpy(), atol=0.05, rtol=1e-4)


def test_input_kinds(model_dirs):
    ours, theirs = _pair(model_dirs["S"])
    path = skimage_photo("astronaut.png")
    rgb = np.asarray(Image.open(path).convert("RGB"))
    by_path = ours(path)
    assert len(by_path["scores"]) > 0
    for other in (ours(Image.open(path)), ours(np.ascontiguousarray(rgb[:, :, ::-1])), ours([path])[0]):
        np.testing.assert_array_equal(other["boxes"], by_path["boxes"])
        assert other["labels"] == by_path["labels"]
    gray = np.asarray(Image.open(path).convert("L"))
    assert_same_object_detections(ours(gray), theirs(gray), "gray array")
    float_bgr = rgb[:, :, ::-1].astype(np.float32) * 0.8  # arrays keep their own values
    assert_same_object_detections(ours(float_bgr), theirs(float_bgr), "float BGR array")
    tiny = np.zeros((1, 1, 3), np.uint8)
    assert_same_object_detections(ours(tiny), theirs(tiny), "1x1 image")


def test_focus_permutation_matches_modelscope_focus():
    """Our pixel_unshuffle + permuted stem weights equal ModelScope's Focus slicing (TL, BL, TR, BR)."""
    import torch

    x = torch.randn(1, 3, 6, 8)
    tl, tr, bl, br = x[..., ::2, ::2], x[..., ::2, 1::2], x[..., 1::2, ::2], x[..., 1::2, 1::2]
    focus = torch.cat((tl, bl, tr, br), dim=1)
    unshuffled = torch.nn.functional.pixel_unshuffle(x, 2)
    perm = damoyolo.focus_permutation(3)
    np.testing.assert_array_equal(unshuffled.numpy(), focus[:, perm].numpy())


def test_decode_distribution_matches_modelscope():
    import torch
    from modelscope.models.cv.tinynas_detection.damo.base_models.heads.zero_head import (
        Integral,
        distance2bbox,
    )

    rng = np.random.default_rng(0)
    n, bins = 257, 17
    reg = (rng.standard_normal((n, 4 * bins)) * 3).astype(np.float32)
    priors = np.stack(
        [rng.integers(0, 80, n) * 8.0, rng.integers(0, 60, n) * 8.0, rng.choice([8.0, 16.0, 32.0], n)], 1
    ).astype(np.float32)
    project = np.linspace(0, 16, 17, dtype=np.float32)
    prob = torch.softmax(torch.from_numpy(reg).reshape(1, n, 4, bins), dim=3)
    dist = Integral(16)(prob) * torch.from_numpy(priors[None, :, 2:3])
    ref = distance2bbox(torch.from_numpy(priors[None, :, :2]), dist)[0].numpy()
    np.testing.assert_allclose(_C.decode_distribution(reg, priors, project), ref, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="decode_distribution"):
        _C.decode_distribution(reg[:, :-1], priors, project)


def _random_boxes(rng, n, classes, ties):
    centers = rng.uniform(0, 300, (6, 2))[rng.integers(0, 6, n)] + rng.normal(0, 8, (n, 2))
    wh = rng.uniform(5, 60, (n, 2))
    boxes = np.concatenate([centers - wh / 2, centers + wh / 2], 1).astype(np.float32)
    scores = rng.uniform(0.3, 1, n).astype(np.float32)
    if ties:
        scores = np.round(scores, 1)  # many exactly equal scores
        scores[rng.integers(0, n, n // 50)] = np.nan  # torch sorts NaN first
    return boxes, scores, rng.integers(0, classes, n).astype(np.int64)


@pytest.mark.parametrize("n", [1, 2, 40, 999, 1000, 1001, 2500])
@pytest.mark.parametrize("ties", [False, True])
def test_batched_nms_matches_torchvision(n, ties):
    """_C.batched_nms against torchvision's batched_nms (the tests' stand-in, which follows torchvision's
    documented algorithm: the per-class path above 1000 boxes, the coordinate-offset path below)."""
    import torch
    from torchvision.ops import batched_nms

    rng = np.random.default_rng(n + ties)
    for iou in (0.3, 0.7):
        boxes, scores, labels = _random_boxes(rng, n, 4, ties)
        ref = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), iou)
        got = _C.batched_nms(boxes, scores, labels, iou)
        # exactly, ties included: above 1000 boxes torch's unstable sort orders equal scores, reproduced in C
        np.testing.assert_array_equal(got, ref.numpy())
    assert (
        _C.batched_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), 0.5).size
        == 0
    )


def test_batched_nms_threshold_is_compared_in_double():
    """IoU exactly 0.7 in float32 (0.699999988) is not > 0.7 as a double, but is > float32(0.7)."""
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 7]], np.float32)  # IoU 0.7f
    scores = np.array([0.9, 0.8], np.float32)
    labels = np.zeros(2, np.int64)
    assert _C.batched_nms(boxes, scores, labels, 0.7).tolist() == [0, 1]
    assert _C.batched_nms(boxes, scores, labels, 0.69).tolist() == [0]


# ---- model files: read, never run ----


@pytest.mark.parametrize(
    "line, what",
    [
        ("import os", "an import"),
        ("from os import system", "an import"),
        ("x = __import__('os').system('touch {marker}')", "a call"),
        ("x = open('{marker}', 'w')", "a call"),
        ("x = TinyNAS.keys", "attribute access"),
        ("x = lambda: 0", "a lambda"),
        ("x = f'{{TinyNAS}}'", "an f-string"),
        ("x = [i for i in (1, 2)]", "a comprehension"),
        ("x = TinyNAS['name']", "subscripting"),
        ("x = 1 + 2", "an operator"),
        ("def f():\n    pass", "a function definition"),
        ("x = undefined_name", "not assigned earlier"),
        ("print('hi')", "an expression statement"),
        ("if True:\n    x = 1", "the statement If"),
    ],
)
def test_config_code_is_refused(tmp_path, line, what):
    marker = tmp_path / "ran"
    text = f"TinyNAS = {{'name': 'TinyNAS_res'}}\n{line.format(marker=marker)}\nmodel = {{'backbone': TinyNAS}}\n"
    (tmp_path / "damoyolo.py").write_text(text)
    with pytest.raises(InvalidModelError, match=f"line 2: .*{what}"):
        read_python_config(tmp_path / "damoyolo.py")
    assert not marker.exists()


def test_config_names_share_values(tmp_path):
    """Names refer to the earlier value (as in the imported module), so a chain of lists of lists costs nothing
    (a copy per reference would grow 10x per line)."""
    lines = ["a0 = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]"]
    lines += [f"a{i} = [{', '.join([f'a{i - 1}'] * 10)}]" for i in range(1, 40)]
    (tmp_path / "chain.py").write_text("\n".join(lines) + "\n")
    cfg = read_python_config(tmp_path / "chain.py")
    assert cfg["a39"][0] is cfg["a38"]
    deep = "a0 = (0,)\n" + "".join(f"a{i} = (a{i - 1},)\n" for i in range(1, 5000)) + "s = {a4999}\n"
    (tmp_path / "deep.py").write_text(deep)
    try:  # hashing may or may not recurse deeply enough to fail; either way no RecursionError escapes
        read_python_config(tmp_path / "deep.py")
    except InvalidModelError as e:
        assert "nested too deeply" in str(e)


def test_config_literals_and_earlier_names(tmp_path):
    (tmp_path / "c.py").write_text(
        '"""doc"""\n# comment\na = {"k": (1, -2.5, None, True), "s": {1, 2}}\nb = c = [a, "x", b"y"]\n__x__ = 1\n'
    )
    cfg = read_python_config(tmp_path / "c.py")
    assert cfg == {"a": {"k": (1, -2.5, None, True), "s": {1, 2}}, "b": [cfg["a"], "x", b"y"], "c": cfg["b"]}
    (tmp_path / "bad.py").write_text("a = (\n")
    with pytest.raises(InvalidModelError, match="not valid Python"):
        read_python_config(tmp_path / "bad.py")


def test_bad_model_files(model_dirs, tmp_path):
    def copy(name):
        d = tmp_path / name
        shutil.copytree(model_dirs["S"], d)
        return d

    d = copy("evil_label_map")

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    (d / "label_map.pkl").write_bytes(pickle.dumps({1: [{"name": Evil()}]}))
    with pytest.raises(CheckpointError, match="label_map.pkl"):
        msvision.pipeline("image-object-detection", model=str(d))
    assert not (tmp_path / "ran").exists()

    d = copy("short_label_map")
    (d / "label_map.pkl").write_bytes(pickle.dumps({1: [{"name": "person"}]}))
    with pytest.raises(InvalidModelError, match=r"label_map\[2\]"):
        msvision.pipeline("image-object-detection", model=str(d))

    d = copy("no_structure")
    os.remove(d / "tinynas_L25_k1kx.txt")
    with pytest.raises(InvalidModelError, match="tinynas_L25_k1kx.txt"):
        msvision.pipeline("image-object-detection", model=str(d))

    d = copy("structure_code")
    (d / "tinynas_L25_k1kx.txt").write_text("[__import__('os').system('true')]")
    with pytest.raises(InvalidModelError, match="not a Python literal"):
        msvision.pipeline("image-object-detection", model=str(d))

    d = copy("flat_checkpoint")
    import torch

    state = torch.load(d / "damoyolo_model.pt")["model"]
    torch.save(state, d / "damoyolo_model.pt")
    with pytest.raises(CheckpointError, match="'model' or 'state_dict'"):
        msvision.pipeline("image-object-detection", model=str(d))

    d = copy("missing_weight")
    state = torch.load(d / "damoyolo_model.pt")
    del state["model"]["neck.merge_6.conv3.conv.weight"]
    torch.save(state, d / "damoyolo_model.pt")
    with pytest.raises(InvalidModelError, match="neck.merge_6.conv3.conv.weight"):
        msvision.pipeline("image-object-detection", model=str(d))

    d = copy("no_config")
    os.remove(d / "damoyolo.py")
    with pytest.raises(ModelNotFoundError, match="damoyolo.py"):
        msvision.pipeline("image-object-detection", model=str(d))


def test_bad_inputs_and_tasks(model_dirs):
    ours = msvision.pipeline("image-object-detection", model=model_dirs["S"])
    with pytest.raises(InvalidInputError, match="empty"):
        ours(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(InvalidInputError, match="channels"):
        ours(np.zeros((10, 10, 4), np.uint8))
    with pytest.raises(ModelNotFoundError, match="no default model"):
        msvision.pipeline("domain-specific-object-detection")
