"""Pipelines pickle by recipe (every pipeline type gives identical results after a round trip), the per-process
cache serves repeated unpickling, spawned workers receive pipelines by pickle, forked children are refused
clearly, and the library's hygiene (logging, repr, type marker, bytes input)."""

import logging
import multiprocessing
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.cartoon_graphs import face_prior_for, make_cartoon_dir
from support.model_dirs import (
    SMALL,
    gpen_variant,
    make_damoyolo_dir,
    make_hrnet_dir,
    make_mogface_dir,
    make_nafnet_dir,
    make_retinaface_dir,
    skimage_photo,
)
from support.tf_graphs import make_matting_dir

import msvision
from msvision.pipelines import cache


def same(a, b):
    """Deep equality of result dicts: arrays by value and dtype, lists and scalars exactly."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "astronaut_160x128.png"
    Image.open(skimage_photo("astronaut.png")).convert("RGB").resize((160, 128)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory, shared_dir, photo, gpen_dir):
    """One pipeline of every type msvision has (task, pipeline.type), with small model directories."""
    root = tmp_path_factory.mktemp("pickle_models")
    assets = shared_dir / "assets/modelscope/damo"
    calibration = [np.asarray(Image.open(photo), np.float32)]
    human = make_damoyolo_dir(
        root / "human",
        names=("human",),
        task="domain-specific-object-detection",
        calibration_images=calibration,
        candidate_fraction=0.002,
    )
    made = {
        "nafnet-image-denoise": msvision.pipeline("image-denoising", threads=1),
        "nafnet-image-deblur": msvision.pipeline(
            "image-deblurring",
            model=make_nafnet_dir(root / "deblur", SMALL, task="image-deblurring"),
            threads=1,
        ),
        "manual-face-detection-ulfd": msvision.pipeline(
            "face-detection", model=str(assets / "cv_manual_face-detection_ulfd"), threads=1
        ),
        "manual-face-detection-mtcnn": msvision.pipeline(
            "face-detection", model=str(assets / "cv_manual_face-detection_mtcnn"), threads=1
        ),
        "resnet101-face-detection-cvpr22papermogface": msvision.pipeline(
            "face-detection", model=make_mogface_dir(root / "mogface"), threads=1
        ),
        "resnet50-face-detection-retinaface": msvision.pipeline(
            "face-detection", model=make_retinaface_dir(root / "retinaface"), threads=1
        ),
        # every face skipped by its quality (the pickling is the same; GPEN-512 per face would cost seconds)
        "gpen-image-portrait-enhancement": msvision.pipeline(
            "image-portrait-enhancement",
            model=gpen_variant(gpen_dir, root / "gpen", quality="fail"),
            threads=1,
        ),
        "tinynas-detection": msvision.pipeline(
            "image-object-detection",
            model=make_damoyolo_dir(root / "damoyolo", calibration_images=calibration),
            threads=1,
        ),
        "tinynas-detection (domain)": msvision.pipeline(
            "domain-specific-object-detection", model=human, threads=1
        ),
        "hrnetv2w32_body-2d-keypoints_image": msvision.pipeline(
            "body-2d-keypoints", model=make_hrnet_dir(root / "hrnet"), human_detector=human, threads=1
        ),
        "unet-image-matting": msvision.pipeline(
            "portrait-matting", model=make_matting_dir(root / "bshm", "portrait-matting"), threads=1
        ),
        "unet-universal-matting": msvision.pipeline(
            "universal-matting", model=make_matting_dir(root / "universal", "universal-matting"), threads=1
        ),
        # the astronaut's face is under 60 px at this size: the background alone (the pickling is the same)
        "unet-person-image-cartoon": msvision.pipeline(
            "image-portrait-stylization",
            model=make_cartoon_dir(root / "cartoon", face_prior_for(photo, [(55, 14, 85, 44)])),
            threads=1,
        ),
    }
    from msvision.pipelines.builder import PIPELINES

    covered = {(p.task, p.recipe["pipeline_name"]) for p in made.values()}
    assert covered == {(task, kind) for task, kinds in PIPELINES.items() for kind in kinds}
    return made


def test_every_pipeline_type_round_trips_with_identical_results(pipelines, photo):
    cache.clear()
    for name, original in pipelines.items():
        expected = original(photo)
        copy = pickle.loads(pickle.dumps(original))
        assert copy is not original and type(copy) is type(original), name
        assert copy.model_dir == original.model_dir and copy.threads == original.threads, name
        assert same(copy(photo), expected), name
        assert pickle.loads(pickle.dumps(original)) is copy, name  # the per-process cache
    assert cache.stats["misses"] == len(pipelines)
    assert cache.stats["hits"] == len(pipelines)


def test_a_pickle_holds_the_recipe_not_the_weights(pipelines):
    data = pickle.dumps(pipelines["resnet101-face-detection-cvpr22papermogface"])
    assert len(data) < 2000  # ResNet-101's weights are ~170 MB
    assert b"cvpr22papermogface" in data


def test_cache_is_bounded(pipelines, monkeypatch):
    cache.clear()
    monkeypatch.setenv(cache.CACHE_SIZE_VARIABLE, "2")
    names = ["nafnet-image-denoise", "manual-face-detection-ulfd", "manual-face-detection-mtcnn"]
    first = [pickle.loads(pickle.dumps(pipelines[n])) for n in names]
    assert len(cache._pipelines) == 2
    assert pickle.loads(pickle.dumps(pipelines[names[2]])) is first[2]
    assert pickle.loads(pickle.dumps(pipelines[names[0]])) is not first[0]  # evicted, built again
    monkeypatch.setenv(cache.CACHE_SIZE_VARIABLE, "0")
    assert pickle.loads(pickle.dumps(pipelines[names[1]])) is not pickle.loads(
        pickle.dumps(pipelines[names[1]])
    )
    monkeypatch.setenv(cache.CACHE_SIZE_VARIABLE, "lots")
    with pytest.raises(ValueError, match="MSVISION_PIPELINE_CACHE"):
        pickle.loads(pickle.dumps(pipelines[names[1]]))
    cache.clear()


def _detect_twice(pipe, path):
    from msvision.pipelines import cache

    again = pickle.loads(pickle.dumps(pipe))
    return pipe(path), again is pipe, dict(cache.stats)


def test_spawned_workers_receive_pipelines_by_pickle(pipelines, shared_dir):
    path = str(shared_dir / "assets/images/faces/office1.jpg")
    pipe = pipelines["manual-face-detection-ulfd"]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result, reused, stats = pool.apply(_detect_twice, (pipe, path))
    assert same(result, pipe(path))
    assert reused and stats == {"hits": 1, "misses": 1}


def _call(pipe, path, queue):
    try:
        pipe(path)
        queue.put("ran")
    except RuntimeError as e:
        queue.put(str(e))


@pytest.mark.parametrize("ran_in_parent", [False, True])
def test_a_forked_child_is_refused_clearly(ran_in_parent, shared_dir):
    """GNU OpenMP does not survive fork(): after the parent ran a network, a forked child's first run would wait
    forever. A pipeline created in the parent refuses to run in a forked child; so does a new pipeline in a child
    of a parent that ran a network (the C core's check)."""
    script = f"""
import multiprocessing, sys
import msvision
path = {str(shared_dir / "assets/images/faces/office1.jpg")!r}
model = {str(shared_dir / "assets/modelscope/damo/cv_manual_face-detection_ulfd")!r}
pipe = msvision.pipeline("face-detection", model=model, threads=2)
if {ran_in_parent}:
    pipe(path)

def created_in_child(queue):
    try:
        msvision.pipeline("face-detection", model=model, threads=2)(path)
        queue.put("ran")
    except RuntimeError as e:
        queue.put(str(e))

def old(queue):
    try:
        pipe(path)
        queue.put("ran")
    except RuntimeError as e:
        queue.put(str(e))

ctx = multiprocessing.get_context("fork")
for target in (old, created_in_child):
    queue = ctx.Queue()
    child = ctx.Process(target=target, args=(queue,))
    child.start()
    print(target.__name__, "|", queue.get(timeout=60))
    child.join(60)
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(" | ", 1) for line in r.stdout.splitlines())
    assert "called in process" in lines["old"] and "fork" in lines["old"]
    if ran_in_parent:
        assert "forked after its parent ran a network" in lines["created_in_child"]
        assert "spawn" in lines["created_in_child"]
    else:
        assert lines["created_in_child"] == "ran"  # nothing started OpenMP's threads before the fork


def test_repr_names_task_model_dir_and_threads(pipelines):
    pipe = pipelines["manual-face-detection-ulfd"]
    text = repr(pipe)
    assert text.startswith("UlfdFaceDetectionPipeline(")
    assert "task='face-detection'" in text and repr(pipe.model_dir) in text and "threads=1" in text


def test_encoded_bytes_are_an_input(pipelines, shared_dir):
    path = shared_dir / "assets/images/faces/office2.jpg"
    pipe = pipelines["manual-face-detection-ulfd"]
    assert same(pipe(path.read_bytes()), pipe(str(path)))


def test_import_prints_nothing_and_logs_to_a_null_handler():
    r = subprocess.run(
        [sys.executable, "-c", "import logging, msvision; print(logging.getLogger('msvision').handlers)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.strip() == "[<NullHandler (NOTSET)>]"
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("msvision").handlers)


def test_typed_package():
    assert (Path(msvision.__file__).parent / "py.typed").is_file()
    hints = msvision.pipeline.__annotations__
    assert "task" in hints and "return" in hints
