"""portrait-matting (BSHM, ``damo/cv_unet_image-matting``) and universal-matting (``damo/cv_unet_universal-matting``):
msvision's TF-graph importer against ModelScope's real ImageMattingPipeline (TensorFlow 2.21 running the same
``tf_graph.pb``) on real photos.

The hub is unreachable, so the model directories hold stand-in graphs built and frozen with TensorFlow at test time
from the BSHM paper's description (tests/support/tf_graphs.py: coarse mask net, quality unification net,
refinement net; BatchNorm under a ``training_flag`` cond, MirrorPad, shape subgraphs sizing the resizes).

Criteria: the BGRA output's colour channels exactly equal, alpha within 1 LSB; every size works (odd sizes, 1x1,
larger than the graph's network size); msvision's pipelines run in a process where TensorFlow cannot be imported.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from support.model_dirs import photo_crop, skimage_photo
from support.tf_graphs import make_matting_dir, modelscope_tf_pipeline, run_frozen, skin_mask_graph

import msvision
from msvision.errors import InvalidModelError, ModelNotFoundError

TASKS = ["portrait-matting", "universal-matting"]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("matting")
    return {task: make_matting_dir(root / task, task=task) for task in TASKS}


@pytest.fixture(scope="module")
def photos(shared_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("matting_photos")
    faces = sorted((shared_dir / "assets/images/faces").glob("*.jpg"))
    assert len(faces) >= 10, "the shared faces folder is incomplete"
    return [
        *(str(p) for p in faces[:4]),
        skimage_photo("astronaut.png"),  # a portrait
        photo_crop(tmp, "astronaut.png", (31, 17, 308, 420), "odd.png"),  # 277x403
        photo_crop(tmp, "astronaut.png", (0, 0, 512, 512), "large.png", size=(1031, 1029)),
    ]


def assert_same_bgra(a, b, label):
    assert a.dtype == b.dtype == np.uint8, label
    assert a.shape == b.shape and a.shape[2] == 4, f"{label}: {a.shape} vs {b.shape}"
    assert np.array_equal(a[..., :3], b[..., :3]), f"{label}: colour channels differ"
    diff = np.abs(a[..., 3].astype(np.int16) - b[..., 3].astype(np.int16))
    assert diff.max() <= 1, f"{label}: alpha differs by up to {diff.max()}"
    assert (diff > 0).mean() <= 1e-3, f"{label}: {(diff > 0).mean():.2%} of the alpha values differ"
    assert a[..., 3].std() > 5, f"{label}: the alpha is flat (the stand-in should predict a real matte)"


@pytest.mark.parametrize("task", TASKS)
def test_matches_modelscope_on_real_photos(task, model_dirs, photos):
    theirs = modelscope_tf_pipeline(task, model_dirs[task])
    ours = msvision.pipeline(task, model=model_dirs[task], threads=2)
    for path in photos:
        assert_same_bgra(
            ours(path)["output_img"], theirs(path)["output_img"], f"{task} {os.path.basename(path)}"
        )


@pytest.mark.parametrize("task", TASKS)
def test_input_kinds(task, model_dirs, photos):
    """Gray and RGBA photos, PIL images and BGR arrays, as ModelScope's LoadImage reads them."""
    theirs = modelscope_tf_pipeline(task, model_dirs[task])
    ours = msvision.pipeline(task, model=model_dirs[task], threads=2)
    path = photos[0]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    gray = np.asarray(Image.open(path).convert("L"))
    rgba = Image.open(path).convert("RGBA")
    for label, x in [
        ("bgr array", np.ascontiguousarray(rgb[:, :, ::-1])),
        ("gray array", gray),
        ("PIL RGBA", rgba),
        ("PIL L", Image.fromarray(gray)),
        ("camera.png (mode L file)", skimage_photo("camera.png")),
    ]:
        assert_same_bgra(ours(x)["output_img"], theirs(x)["output_img"], f"{task} {label}")
    by_path = ours(path)["output_img"]
    assert np.array_equal(ours(Image.open(path))["output_img"], by_path)


def test_every_size_runs_like_tensorflow(model_dirs):
    """The graph straight through the importer at sizes from 1x1 up, odd ones included (plans per shape)."""
    from msvision.models.tf_image_graph import ImageGraph

    path = os.path.join(model_dirs["portrait-matting"], "tf_graph.pb")
    data = open(path, "rb").read()
    model = ImageGraph(model_dirs["portrait-matting"], "tf_graph.pb", 2, max_plans=2)
    rng = np.random.default_rng(3)
    for h, w in [(1, 1), (2, 7), (33, 17), (64, 64), (97, 601), (600, 97)]:
        img = rng.uniform(0, 255, (h, w, 3))
        (expected,) = run_frozen(data, {"input_image:0": img}, ["output_png:0"])
        got = model.run(img)
        assert got.shape == expected.shape == (h, w, 4)
        assert np.array_equal(got[..., :3], expected[..., :3])
        diff = np.abs(got[..., 3].astype(int) - expected[..., 3])
        assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3, (h, w)
    assert len(model.graph._plans) == 2  # the plan cache is bounded by max_plans
    assert not [s for s in model.steps() if "ref" in s.split(":")[1]]


def test_skin_mask_graph_loads_through_the_same_importer(tmp_path):
    """The skin-retouching model's TF skin-mask graph has the same input_image/output_png convention (its
    pipeline comes later): a stand-in of it runs through the same model class, as TensorFlow runs it."""
    from msvision.models.tf_image_graph import ImageGraph

    data = skin_mask_graph()
    (tmp_path / "skin.pb").write_bytes(data)
    model = ImageGraph(str(tmp_path), "skin.pb", 2)
    img = np.asarray(Image.open(skimage_photo("astronaut.png")).convert("RGB").resize((211, 173)))
    (expected,) = run_frozen(data, {"input_image:0": img.astype(np.float64)}, ["output_png:0"])
    got = model.run(img.astype(np.float64))
    assert np.array_equal(got[..., :3], expected[..., :3])
    diff = np.abs(got[..., 3].astype(int) - expected[..., 3])
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3 and expected[..., 3].std() > 5


_BLOCKED_TF_SCRIPT = r"""
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tf_slim", "keras", "google"):
            raise ImportError(f"{name} is blocked in this process")
        return None
sys.meta_path.insert(0, Block())
import numpy as np
import msvision
task, model, photo, out = sys.argv[1:5]
result = msvision.pipeline(task, model=model, threads=2)(photo)["output_img"]
np.save(out, result)
print(json.dumps({"tf_loaded": any(m.split(".")[0] == "tensorflow" for m in sys.modules)}))
"""


@pytest.mark.parametrize("task", TASKS)
def test_runs_without_tensorflow(task, model_dirs, photos, tmp_path):
    out = tmp_path / "out.npy"
    proc = subprocess.run(
        [sys.executable, "-c", _BLOCKED_TF_SCRIPT, task, model_dirs[task], photos[4], str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"tf_loaded": False}
    theirs = modelscope_tf_pipeline(task, model_dirs[task])(photos[4])["output_img"]
    assert_same_bgra(np.load(out), theirs, f"{task} without tensorflow")


def test_model_directory_errors(tmp_path, model_dirs):
    empty = tmp_path / "no_graph"
    empty.mkdir()
    config = json.load(open(os.path.join(model_dirs["portrait-matting"], "configuration.json")))
    (empty / "configuration.json").write_text(json.dumps(config))
    with pytest.raises(ModelNotFoundError, match="tf_graph.pb"):
        msvision.pipeline("portrait-matting", model=str(empty))
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "configuration.json").write_text(json.dumps(config))
    data = open(os.path.join(model_dirs["portrait-matting"], "tf_graph.pb"), "rb").read()
    (truncated / "tf_graph.pb").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidModelError, match="tf_graph.pb"):
        msvision.pipeline("portrait-matting", model=str(truncated))
    wrong = tmp_path / "wrong_graph"
    wrong.mkdir()
    (wrong / "configuration.json").write_text(json.dumps(config))
    from support.tf_graphs import freeze

    def no_output_png():
        import tensorflow as tf

        x = tf.compat.v1.placeholder(tf.float32, [None, None, 3], name="input_image")
        tf.identity(x * 2.0, name="something_else")
        return ["something_else"]

    (wrong / "tf_graph.pb").write_bytes(freeze(no_output_png))
    with pytest.raises(InvalidModelError, match="output_png:0"):
        msvision.pipeline("portrait-matting", model=str(wrong))
