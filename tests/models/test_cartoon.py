"""image-portrait-stylization (DCT-Net, ``damo/cv_unet_person-image-cartoon_compound-models`` and its six sibling
styles): msvision against ModelScope's real ImageCartoonPipeline (TensorFlow 2.21 running the same four graphs).

The hub is unreachable: the model directories are built at test time (tests/support/cartoon_graphs.py): the two
generators frozen from ModelScope's own network.py and loss.py by the exporter's recipe, and stand-ins of the
face analyser's detector (BatchNorm under a ``training_flag`` cond, a ``map_fn`` NMS loop) and landmark graphs
whose prior places faces on real photos, so that the scenarios find one face, two faces, faces under 60 px (the
landmark step skips them) and none.

Criteria: the same faces and landmarks (to the pixel); the output of the same dtype and shape, within 1 (one
uint8 step of a generator's output) everywhere and within 1e-3 on >= 99.9% of values; two consecutive calls alike
(the analyser's state); every input kind; every style; no TensorFlow in msvision's process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from support.cartoon_graphs import SCENARIOS, face_prior_for, make_cartoon_dir, make_scenario_dir, photo_path
from support.tf_graphs import modelscope_tf_pipeline

import msvision
from msvision.errors import InvalidModelError, ModelNotFoundError

TASK = "image-portrait-stylization"
STYLES = [
    "cv_unet_person-image-cartoon_compound-models",
    "cv_unet_person-image-cartoon-3d_compound-models",
    "cv_unet_person-image-cartoon-handdrawn_compound-models",
    "cv_unet_person-image-cartoon-sketch_compound-models",
    "cv_unet_person-image-cartoon-artstyle_compound-models",
    "cv_unet_person-image-cartoon-sd-design_compound-models",
    "cv_unet_person-image-cartoon-sd-illustration_compound-models",
]


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory, shared_dir):
    root = tmp_path_factory.mktemp("cartoon")
    return {name: make_scenario_dir(root / name, name, shared_dir=shared_dir) for name in SCENARIOS}


@pytest.fixture(scope="module")
def pipes(scenarios):
    """name -> (ours, theirs, photo)."""
    return {
        name: (msvision.pipeline(TASK, model=d, threads=2), modelscope_tf_pipeline(TASK, d), photo)
        for name, (d, photo) in scenarios.items()
    }


def assert_same_output(a, b, label):
    assert a.dtype == b.dtype and a.shape == b.shape, f"{label}: {a.dtype} {a.shape} vs {b.dtype} {b.shape}"
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    assert diff.max() <= 1.0 + 1e-3, f"{label}: differs by up to {diff.max()}"
    assert (diff > 1e-3).mean() <= 1e-3, f"{label}: {(diff > 1e-3).mean():.3%} of values differ"
    assert b.std() > 10, f"{label}: a flat output (the stand-in generator should draw something)"


def _resized_rgb(pipe, photo):
    from msvision.io import load_image_values
    from msvision.pipelines.cv.image_cartoon_pipeline import resize_short_side

    return resize_short_side(load_image_values(photo).astype(np.uint8))


def test_scenarios_are_not_vacuous(pipes):
    """Each scenario finds what it is built for in ModelScope's own face analyser, and msvision finds the same
    landmarks to the pixel."""
    for name, (ours, theirs, photo) in pipes.items():
        rgb = _resized_rgb(ours, photo)
        _, their_points, _ = theirs.facer.run(rgb)
        our_points = ours.faces.landmarks(rgb)
        assert len(their_points) == SCENARIOS[name]["found"], name
        assert our_points.shape == (len(their_points), 68, 2), name
        if len(their_points):
            assert np.array_equal(our_points, np.asarray(their_points, np.float32)), name


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_matches_modelscope(name, pipes):
    ours, theirs, photo = pipes[name]
    for call in range(2):  # the analyser keeps state between calls in ModelScope: both calls alike
        a, b = ours(photo)["output_img"], theirs(photo)["output_img"]
        assert_same_output(a, b, f"{name} call {call}")
    if SCENARIOS[name]["found"] == 0:  # ModelScope's quirk: the background alone, uint8 at the resized size
        assert b.dtype == np.uint8
    else:
        assert b.dtype == np.float32 and b.shape[:2] == Image.open(photo).size[::-1]


def test_no_face_on_a_large_photo_keeps_the_resized_size(tmp_path, shared_dir):
    """A 1024x769 photo (short side > 720) where no face is found: ModelScope returns the 958x720 background
    without resizing it back, as uint8; msvision does the same (README: differences and quirks)."""
    photo = photo_path("faces/ulfd_5.jpg", shared_dir)
    d = make_cartoon_dir(tmp_path / "empty", prior_boxes=())
    a = msvision.pipeline(TASK, model=d, threads=2)(photo)["output_img"]
    b = modelscope_tf_pipeline(TASK, d)(photo)["output_img"]
    assert b.shape == (720, 958, 3) and b.dtype == np.uint8
    assert_same_output(a, b, "no face, large photo")


def photo_crop(tmp_dir, src, box, out_name, size=None) -> str:
    img = Image.open(src).convert("RGB").crop(box)
    if size:
        img = img.resize(size, Image.BICUBIC)
    out = os.path.join(tmp_dir, out_name)
    img.save(out)
    return out


@pytest.fixture(scope="module")
def size_photos(tmp_path_factory, shared_dir):
    """Odd sizes, sizes that trigger the +16 padding (one side a multiple of 16, the other not) and none."""
    tmp = tmp_path_factory.mktemp("cartoon_sizes")
    src = photo_path("faces/ulfd_13.jpg", shared_dir)  # 450 x 344, two faces
    return {
        "odd 449x343": photo_crop(tmp, src, (0, 0, 449, 343), "odd.png"),
        "height a multiple 450x336": photo_crop(tmp, src, (0, 0, 450, 336), "h336.png"),
        "both multiples 448x336": photo_crop(tmp, src, (0, 0, 448, 336), "both.png"),
        "upscaled 901x689": photo_crop(tmp, src, (0, 0, 450, 344), "big.png", size=(901, 689)),
    }


def test_sizes(pipes, size_photos, tmp_path):
    """The two-face model on crops and resizes of its photo (the prior fits the original framing closely
    enough for the faces to stay found on crops; upscaled past 720 the faces move, so the prior is rebuilt)."""
    ours, theirs, _ = pipes["two_faces"]
    for label, path in size_photos.items():
        if label.startswith("upscaled"):
            boxes = [(2 * x1, 2 * y1, 2 * x2, 2 * y2) for x1, y1, x2, y2 in SCENARIOS["two_faces"]["faces"]]
            d = make_cartoon_dir(tmp_path / "upscaled", prior_boxes=face_prior_for(path, boxes))
            o, t = msvision.pipeline(TASK, model=d, threads=2), modelscope_tf_pipeline(TASK, d)
        else:
            o, t = ours, theirs
        b = t(path)["output_img"]
        assert b.dtype == np.float32, f"{label}: ModelScope found no face (the scenario would be vacuous)"
        assert_same_output(o(path)["output_img"], b, label)


def test_input_kinds(pipes):
    """Gray and RGBA photos, PIL images and BGR arrays, as ModelScope's LoadImage reads them."""
    ours, theirs, path = pipes["astronaut"]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    gray = np.asarray(Image.open(path).convert("L"))
    for label, x in [
        ("bgr array", np.ascontiguousarray(rgb[:, :, ::-1])),
        ("gray array", gray),
        ("PIL RGBA", Image.open(path).convert("RGBA")),
        ("PIL L", Image.fromarray(gray)),
    ]:
        assert_same_output(ours(x)["output_img"], theirs(x)["output_img"], label)


@pytest.mark.parametrize("style", STYLES)
def test_every_style_from_the_hub_cache(style, tmp_path, monkeypatch, shared_dir):
    """Each style's hub id resolves from ModelScope's cache and runs as ModelScope runs it (the styles share the
    file layout and the pipeline; each gets its own generators here)."""
    cache = tmp_path / "cache"
    photo = photo_path("skimage/astronaut.png")
    boxes = SCENARIOS["astronaut"]["faces"]
    d = make_cartoon_dir(cache / "damo" / style, face_prior_for(photo, boxes), seed=STYLES.index(style))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(cache))
    ours = msvision.pipeline(TASK, model=f"damo/{style}", threads=2)
    assert_same_output(ours(photo)["output_img"], modelscope_tf_pipeline(TASK, d)(photo)["output_img"], style)


def test_default_model_is_modelscope_default():
    from msvision.hub.resolve import DEFAULT_MODEL_FOR_TASK

    assert DEFAULT_MODEL_FOR_TASK[TASK] == "damo/" + STYLES[0]


def test_plans_hold_no_reference_kernels(pipes):
    ours, _, photo = pipes["astronaut"]
    ours(photo)
    for graph in (
        ours.background.graph,
        ours.head.graph,
        ours.faces.detector.graph,
        ours.faces.landmarker.graph,
    ):
        steps = graph.steps()
        assert steps and not [s for s in steps if "ref" in s.split(":")[1]], steps


def test_alignment_matches_modelscope():
    """The reflective cp2tform similarity (both fits, ModelScope's in-place mirroring deciding between them) to
    the bit, on landmarks of every scale, rotation and mirroring."""
    from modelscope.models.cv.cartoon.mtcnn_pytorch.src.align_trans import (
        get_reference_facial_points,
        get_similarity_transform_for_cv2,
    )

    from msvision.io.face_align import cartoon_reference, cartoon_transforms

    ref = np.float32(get_reference_facial_points(default_square=True))
    ref = (ref - 112 / 2) * 0.75 + 112 / 2
    ref *= 288 / 112.0
    assert np.array_equal(ref, cartoon_reference(288, 0.75))
    rng = np.random.default_rng(0)
    base = np.array([[100, 120], [160, 118], [130, 150], [105, 185], [155, 183]], float)
    for t in range(500):
        pts = (
            base * rng.uniform(0.3, 3) + rng.normal(0, 8 if t % 2 else 0.5, (5, 2)) + rng.uniform(-50, 500, 2)
        )
        if t % 7 == 0:
            pts = np.round(pts)
        if t % 11 == 0:
            pts[:, 0] = pts[::-1, 0]  # mirrored faces pick the reflective fit
        theirs = get_similarity_transform_for_cv2(np.float32(pts), cartoon_reference(288, 0.75))
        ours = cartoon_transforms(pts)
        assert np.array_equal(theirs[0], ours[0]) and np.array_equal(theirs[1], ours[1]), t
    assert cartoon_transforms(np.zeros((5, 2))) is None  # ModelScope raises 'twoUniquePointsReq'


def test_pupils_match_modelscope(pipes):
    """find_pupil on the real eyes of the scenarios' faces, and on boxes that are empty or leave the image."""
    from modelscope.models.cv.cartoon.utils import find_pupil as theirs_find_pupil

    from msvision.pipelines.cv.image_cartoon_pipeline import find_pupil

    checked = 0
    for name in ("one_face", "astronaut", "two_faces"):
        ours, _, photo = pipes[name]
        rgb = _resized_rgb(ours, photo)
        bgr = rgb[:, :, ::-1]
        for points in ours.faces.landmarks(rgb):
            for eye in (points[36:41], points[42:47], points[36:42] + 3, points[42:48] - 2):
                assert find_pupil(eye, bgr) == theirs_find_pupil(eye, bgr), name
                checked += 1
    assert checked >= 16
    eye = np.array([[5, 5], [9, 5], [12, 7], [9, 9], [5, 9]], np.float32)
    bgr = np.random.default_rng(1).integers(0, 256, (20, 20, 3)).astype(np.uint8)
    for shifted in (eye - 6, eye + 12, eye * 0 + 4):  # leaves the image / leaves it / empty box
        assert find_pupil(shifted, bgr) is None and theirs_find_pupil(shifted, bgr) is None


_BLOCKED_TF_SCRIPT = r"""
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tf_slim", "keras", "google", "torch", "modelscope"):
            raise ImportError(f"{name} is blocked in this process")
        return None
sys.meta_path.insert(0, Block())
import numpy as np
import msvision
model, photo, out = sys.argv[1:4]
result = msvision.pipeline("image-portrait-stylization", model=model, threads=2)(photo)["output_img"]
np.save(out, result)
print(json.dumps({"tf_loaded": any(m.split(".")[0] == "tensorflow" for m in sys.modules)}))
"""


def test_runs_without_tensorflow(pipes, scenarios, tmp_path):
    out = tmp_path / "out.npy"
    d, photo = scenarios["two_faces"]
    proc = subprocess.run(
        [sys.executable, "-c", _BLOCKED_TF_SCRIPT, d, photo, str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"tf_loaded": False}
    assert_same_output(np.load(out), pipes["two_faces"][1](photo)["output_img"], "without tensorflow")


def test_model_directory_errors(tmp_path, scenarios):
    d, _ = scenarios["astronaut"]
    files = {f: open(os.path.join(d, f), "rb").read() for f in os.listdir(d)}

    def variant(label, drop=None, replace=None):
        path = tmp_path / label
        path.mkdir()
        for f, data in files.items():
            if f == drop:
                continue
            (path / f).write_bytes(replace[1] if replace and f == replace[0] else data)
        return str(path)

    for f in ("alpha.jpg", "detector.pb", "keypoints.pb", "cartoon_h.pb", "cartoon_bg.pb"):
        with pytest.raises(ModelNotFoundError, match=f):
            msvision.pipeline(TASK, model=variant(f"no_{f}", drop=f))
    with pytest.raises(InvalidModelError, match="alpha.jpg"):
        msvision.pipeline(TASK, model=variant("bad_alpha", replace=("alpha.jpg", b"not a jpeg")))
    half = files["detector.pb"][: len(files["detector.pb"]) // 2]
    with pytest.raises(InvalidModelError, match="detector.pb"):
        msvision.pipeline(TASK, model=variant("truncated", replace=("detector.pb", half)))


def test_bad_inputs(pipes):
    ours = pipes["astronaut"][0]
    with pytest.raises(TypeError):
        ours(12345)
    from msvision.errors import InvalidInputError

    with pytest.raises(InvalidInputError):
        ours(b"not an image")


def test_cli_writes_the_cartoon_and_draw_takes_it(pipes, scenarios, tmp_path):
    """``msvision run image-portrait-stylization`` writes each result as an image, the float32 result rounded and
    saturated to 8 bits as cv2.imwrite stores it; ``draw`` returns the same pixels (and the no-face result at
    its own, resized size)."""
    import cv2

    from msvision.cli import IMAGE_TASKS
    from msvision.drawing import SUPPORTED_TASKS, draw

    assert TASK in IMAGE_TASKS and TASK in SUPPORTED_TASKS
    d, photo = scenarios["astronaut"]
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "msvision",
            "run",
            TASK,
            photo,
            "--model",
            d,
            "-o",
            str(out),
            "--threads",
            "2",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = cv2.imread(str(out / "astronaut.png"))
    result = pipes["astronaut"][0](photo)
    expected = np.clip(np.rint(result["output_img"]), 0, 255).astype(np.uint8)
    assert np.array_equal(written, expected)
    assert np.array_equal(draw(photo, result, task=TASK), expected)
    assert np.array_equal(draw(photo, result), expected)  # told from the float32 result
    ours, _, no_face_photo = pipes["small_faces"]
    plain = ours(no_face_photo)
    assert np.array_equal(draw(no_face_photo, plain, task=TASK), plain["output_img"])


def test_tiny_image_matches_modelscope(pipes):
    ours, theirs, _ = pipes["astronaut"]
    img = np.random.default_rng(3).integers(0, 256, (5, 7, 3)).astype(np.uint8)
    a, b = ours(img)["output_img"], theirs(img)["output_img"]
    assert a.dtype == b.dtype and a.shape == b.shape == (5, 7, 3)
    assert np.abs(a.astype(float) - b.astype(float)).max() <= 1


def test_degenerate_landmarks_as_modelscope(pipes, monkeypatch):
    """Landmarks all on one point (a collapsed eye box: the pupils fall back to the landmark means): the same
    nearly singular alignment and result as ModelScope's."""
    ours, theirs, photo = pipes["astronaut"]
    points = np.full((1, 68, 2), 100, np.float32)
    monkeypatch.setattr(ours.faces, "landmarks", lambda rgb: points)
    monkeypatch.setattr(theirs.facer, "run", lambda img: (np.ones((1, 4), np.float32), points, None))
    assert_same_output(ours(photo)["output_img"], theirs(photo)["output_img"], "one-point landmarks")
