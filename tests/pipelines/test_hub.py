"""Model resolution (msvision.hub), configuration parsing, device validation and ModelScope-named constants."""

import json
from pathlib import Path

import pytest

from msvision import errors
from msvision.errors import InvalidModelError, ModelNotFoundError, UnsupportedTaskError
from msvision.hub import (
    DEFAULT_MODEL_FOR_TASK,
    hub_cache_candidates,
    model_cache_root,
    read_configuration,
    resolve_model_dir,
    validate_device,
)
from msvision.hub import resolve as R
from msvision.outputs import OutputKeys
from msvision.outputs.outputs import OutputKeys as OutputKeys2
from msvision.utils.constant import Frameworks, ModelFile, Tasks

TASK = "image-denoising"
MID = "damo/cv_nafnet_image-denoise_sidd"


def _make_model(d: Path, task=TASK) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "configuration.json").write_text(json.dumps({"task": task, "framework": "pytorch"}))
    return d


@pytest.fixture
def env(tmp_path, monkeypatch):
    """HOME and MODELSCOPE_CACHE inside tmp_path; cwd in an empty dir. Returns (cache, home)."""
    home = tmp_path / "home"
    cache = tmp_path / "cache"
    work = tmp_path / "work"
    for d in (home, cache, work):
        d.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(cache))
    monkeypatch.chdir(work)
    # Never fall back to a model shipped inside the package during these tests unless a test says so.
    monkeypatch.setitem(R.EMBEDDED_DEFAULT_FOR_TASK, TASK, tmp_path / "no_embedded_model")
    return cache, home


# ---------------------------------------------------------------- cache root


def test_model_cache_root(env, monkeypatch):
    cache, home = env
    assert model_cache_root() == cache
    monkeypatch.delenv("MODELSCOPE_CACHE")
    assert model_cache_root() == home / ".cache" / "modelscope" / "hub"


# ---------------------------------------------------------------- hub ids in the cache


@pytest.mark.parametrize(
    "layout",
    [
        "models/{owner}/{name}",  # ModelScope 1.24-1.37
        "{owner}/{name}",  # before 1.24
        "hub/models/{owner}/{name}",  # probed by ModelScope 1.40 as a legacy location
        "models/{owner}--{name}/snapshots/master",  # modelscope-hub (ModelScope >= 1.38)
    ],
)
def test_hub_id_layouts_with_env(env, layout):
    cache, _ = env
    d = _make_model(cache / layout.format(owner="damo", name="cv_nafnet_image-denoise_sidd"))
    assert resolve_model_dir(MID, TASK) == str(d)


@pytest.mark.parametrize(
    "layout",
    [
        ".cache/modelscope/hub/models/{owner}/{name}",
        ".cache/modelscope/hub/{owner}/{name}",
        ".cache/modelscope/models/{owner}/{name}",
        ".cache/modelscope/models/{owner}--{name}/snapshots/master",
    ],
)
def test_hub_id_layouts_default_cache(env, monkeypatch, layout):
    _, home = env
    monkeypatch.delenv("MODELSCOPE_CACHE")
    d = _make_model(home / layout.format(owner="damo", name="cv_nafnet_image-denoise_sidd"))
    assert resolve_model_dir(MID, TASK) == str(d)


@pytest.mark.parametrize(
    "stored",
    [
        "models/ow___ner/cv_x___v1___2",  # old SDKs masked '.' in the whole id
        "models/ow.ner/cv_x___v1___2",  # modelscope-hub masks the name only
        "ow___ner/cv_x___v1___2",
        "models/ow.ner--cv_x.v1.2/snapshots/master",  # not masked in the new layout
    ],
)
def test_dotted_names_use_triple_underscore(env, stored):
    cache, _ = env
    d = _make_model(cache / stored)
    assert resolve_model_dir("ow.ner/cv_x.v1.2", TASK) == str(d)


def test_layout_precedence_and_incomplete_dirs(env):
    cache, _ = env
    (cache / "models/damo/cv_nafnet_image-denoise_sidd").mkdir(parents=True)  # no configuration.json: skipped
    legacy = _make_model(cache / "damo/cv_nafnet_image-denoise_sidd")
    assert resolve_model_dir(MID, TASK) == str(legacy)
    current = _make_model(cache / "models/damo/cv_nafnet_image-denoise_sidd")
    assert resolve_model_dir(MID, TASK) == str(current)


def test_snapshot_revisions(env):
    cache, _ = env
    snaps = cache / "models/damo--cv_nafnet_image-denoise_sidd/snapshots"
    v1 = _make_model(snaps / "v1.0.1")
    assert resolve_model_dir(MID, TASK) == str(v1)  # the only snapshot
    v2 = _make_model(snaps / "v1.0.2")
    with pytest.raises(ModelNotFoundError, match="several revisions: v1.0.1, v1.0.2"):  # ambiguous
        resolve_model_dir(MID, TASK)
    assert resolve_model_dir(MID, TASK, revision="v1.0.2") == str(v2)
    master = _make_model(snaps / "master")
    assert resolve_model_dir(MID, TASK) == str(master)


def test_hub_id_not_cached(env):
    cache, _ = env
    (cache / "models/damo/cv_nafnet_image-denoise_sidd").mkdir(parents=True)
    with pytest.raises(ModelNotFoundError) as ei:
        resolve_model_dir(MID, TASK)
    msg = str(ei.value)
    assert MID in msg
    assert "not reachable" in msg and "snapshot_download" in msg and "local" in msg
    for p in hub_cache_candidates(MID):
        assert str(p) in msg
    assert "incomplete" in msg  # the directory without configuration.json is pointed out
    assert isinstance(ei.value, FileNotFoundError)


# ---------------------------------------------------------------- local directories


def test_local_dir(env, tmp_path):
    d = _make_model(tmp_path / "my model")
    assert resolve_model_dir(str(d), TASK) == str(d)
    assert resolve_model_dir(d, TASK) == str(d)  # os.PathLike


def test_local_dir_relative_wins_over_hub_id(env):
    cache, _ = env
    _make_model(cache / "models/damo/cv_nafnet_image-denoise_sidd")
    _make_model(
        Path("damo/cv_nafnet_image-denoise_sidd")
    )  # relative to cwd, like os.path.exists in ModelScope
    assert resolve_model_dir(MID, TASK) == str(Path.cwd() / MID)


def test_local_dir_home_expansion(env):
    _, home = env
    d = _make_model(home / "models" / "nafnet")
    assert resolve_model_dir("~/models/nafnet", TASK) == str(d)


def test_local_dir_without_configuration(env, tmp_path):
    d = tmp_path / "empty_model"
    d.mkdir()
    with pytest.raises(ModelNotFoundError) as ei:
        resolve_model_dir(str(d), TASK)
    assert str(d) in str(ei.value) and "configuration.json" in str(ei.value)


def test_local_file_and_missing_paths(env, tmp_path):
    f = tmp_path / "weights.pt"
    f.write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="not a directory"):
        resolve_model_dir(str(f), TASK)
    with pytest.raises(ModelNotFoundError, match="neither an existing local directory"):
        resolve_model_dir(str(tmp_path / "no" / "such" / "dir"), TASK)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model_dir(tmp_path / "missing", TASK)


def test_bad_revision(env):
    with pytest.raises(ValueError, match="revision"):
        resolve_model_dir(MID, TASK, revision="../../etc")
    with pytest.raises(TypeError, match="revision"):
        resolve_model_dir(MID, TASK, revision=1)


# ---------------------------------------------------------------- model=None


def test_default_model_cached(env):
    cache, _ = env
    d = _make_model(cache / "models" / MID)
    assert resolve_model_dir(None, TASK) == str(d)


def test_default_model_falls_back_to_embedded(env, tmp_path, monkeypatch):
    embedded = _make_model(tmp_path / "embedded_nafnet")
    monkeypatch.setitem(R.EMBEDDED_DEFAULT_FOR_TASK, TASK, embedded)
    assert resolve_model_dir(None, TASK) == str(embedded)
    cache, _ = env
    d = _make_model(cache / "models" / MID)  # a cached default wins over the embedded one
    assert resolve_model_dir(None, TASK) == str(d)


def test_default_model_missing(env):
    with pytest.raises(ModelNotFoundError) as ei:
        resolve_model_dir(None, TASK)
    assert MID in str(ei.value) and "no_embedded_model" in str(ei.value)
    with pytest.raises(ModelNotFoundError, match="cv_resnet101_face-detection_cvpr22papermogface"):
        resolve_model_dir(None, "face-detection")


def test_embedded_default_path():
    import msvision.hub.resolve as mod

    p = mod._PACKAGE_DIR / "default_models" / "nafnet_denoise"
    assert p.parts[-3:] == ("msvision", "default_models", "nafnet_denoise")


# ---------------------------------------------------------------- argument errors


def test_unknown_task(env):
    with pytest.raises(UnsupportedTaskError) as ei:
        resolve_model_dir(MID, "image-teleportation")
    assert isinstance(ei.value, ValueError)
    for t in ("image-denoising", "image-deblurring", "face-detection"):
        assert t in str(ei.value)
    with pytest.raises(UnsupportedTaskError, match="Did you mean 'image-denoising'"):
        resolve_model_dir(MID, "image_denoising")
    with pytest.raises(TypeError):  # a default model needs a task
        resolve_model_dir(None, None)
    with pytest.raises(
        ModelNotFoundError
    ):  # with a model, the task is optional (pipeline() reads it from config)
        resolve_model_dir(MID, None)


@pytest.mark.parametrize("model", [object(), 123, ["damo/x"], b"damo/x"])
def test_model_wrong_type(env, model):
    with pytest.raises(TypeError, match="model must be"):
        resolve_model_dir(model, TASK)


@pytest.mark.parametrize("model", ["", "   "])
def test_model_empty(env, model):
    with pytest.raises(ValueError, match="empty"):
        resolve_model_dir(model, TASK)


@pytest.mark.parametrize("model", ["damo", "damo/a/b", "/abs/missing", "./damo/x", "../x/y", "damo/ x"])
def test_not_a_hub_id(env, model):
    with pytest.raises(
        ModelNotFoundError, match="neither an existing local directory nor a ModelScope hub id"
    ):
        resolve_model_dir(model, TASK)


# ---------------------------------------------------------------- configuration.json


def test_read_configuration(tmp_path):
    d = _make_model(tmp_path / "m")
    cfg = read_configuration(d)
    assert cfg == {"task": TASK, "framework": "pytorch"}
    assert read_configuration(str(d)) == cfg


@pytest.mark.parametrize(
    "content,match",
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"framework": "pytorch"}', "'task'"),
        (b'{"task": 3}', "'task'"),
        (b'{"task": "x", "a": "\xff\xfe"}', "UTF-8"),
        (b"", "not valid JSON"),
    ],
)
def test_read_configuration_invalid(tmp_path, content, match):
    (tmp_path / "configuration.json").write_bytes(content)
    with pytest.raises(InvalidModelError, match=match) as ei:
        read_configuration(tmp_path)
    assert str(tmp_path / "configuration.json") in str(ei.value)
    assert isinstance(ei.value, ValueError)


def test_read_configuration_missing(tmp_path):
    with pytest.raises(ModelNotFoundError, match="configuration.json"):
        read_configuration(tmp_path)


def test_read_configuration_bom(tmp_path):
    (tmp_path / "configuration.json").write_bytes(b'\xef\xbb\xbf{"task": "face-detection"}')
    assert read_configuration(tmp_path)["task"] == "face-detection"


# ---------------------------------------------------------------- device


@pytest.mark.parametrize(
    "device", [None, "", "cpu", "gpu", "cuda", "gpu:0", "cuda:1", "GPU:3", "CPU", "xpu", "xpu:0", "cpu:0"]
)
def test_valid_devices(device):
    assert validate_device(device) == "cpu"


@pytest.mark.parametrize(
    "device",
    ["tpu", "mps", "gpu:", "gpu:a", "cuda:0:1", " cpu", "cpu ", "cuda:-1", "gpu0", "gpu:1.5", "auto"],
)
def test_invalid_devices(device):
    with pytest.raises(ValueError) as ei:
        validate_device(device)
    assert repr(device) in str(ei.value)


@pytest.mark.parametrize("device", [0, 1.0, object()])
def test_device_wrong_type(device):
    with pytest.raises(TypeError):
        validate_device(device)


# ---------------------------------------------------------------- constants vs ModelScope


def _public(cls):
    return {k: v for k, v in vars(cls).items() if not k.startswith("_")}


@pytest.fixture(scope="module")
def ms():
    pytest.importorskip("modelscope")
    from modelscope import metainfo
    from modelscope.outputs import outputs
    from modelscope.utils import constant

    return constant, outputs, metainfo


def test_constants_match_modelscope(ms):
    constant, outputs, metainfo = ms
    for ours, theirs in [
        (Tasks, constant.Tasks),
        (ModelFile, constant.ModelFile),
        (Frameworks, constant.Frameworks),
        (OutputKeys, outputs.OutputKeys),
    ]:
        for name, value in _public(ours).items():
            assert getattr(theirs, name) == value, (ours.__name__, name)
    assert OutputKeys is OutputKeys2
    required = [
        "image_denoising",
        "image_deblurring",
        "face_detection",
        "image_object_detection",
        "domain_specific_object_detection",
        "body_2d_keypoints",
        "portrait_matting",
        "image_portrait_stylization",
        "image_portrait_enhancement",
        "skin_retouching",
        "image_body_reshaping",
        "human_detection",
    ]
    assert all(hasattr(Tasks, t) for t in required)
    for k in [
        "OUTPUT_IMG",
        "SCORES",
        "LABELS",
        "BOXES",
        "KEYPOINTS",
        "MASKS",
        "IMG_EMBEDDING",
        "TEXT_EMBEDDING",
    ]:
        assert hasattr(OutputKeys, k)
    # the one documented deviation (README): ModelScope's default detector is a YOLOX model msvision does not run
    deviations = {"image-object-detection": "damo/cv_tinynas_object-detection_damoyolo"}
    for task, model_id in DEFAULT_MODEL_FOR_TASK.items():
        if task in deviations:
            assert model_id == deviations[task]
            assert metainfo.DEFAULT_MODEL_FOR_PIPELINE[task][1] != model_id
        else:
            assert metainfo.DEFAULT_MODEL_FOR_PIPELINE[task][1] == model_id


def test_error_hierarchy():
    assert issubclass(errors.ModelNotFoundError, FileNotFoundError)
    assert issubclass(errors.UnsupportedTaskError, ValueError)
    assert issubclass(errors.InvalidModelError, ValueError)
    assert issubclass(errors.InvalidInputError, ValueError)
    assert issubclass(errors.ImageDecodeError, errors.InvalidInputError)
