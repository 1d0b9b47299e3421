"""The pipeline API around NAFNet: model resolution, bad models, bad inputs, malicious checkpoints, threads,
memory over many calls. The model is a tiny NAFNet with random weights from ModelScope's own class."""

import json
import os
import pickle
import shutil
import threading
import zipfile

import numpy as np
import pytest
from support.model_dirs import make_nafnet_dir, skimage_photo

import msvision
from msvision import OutputKeys, Tasks, pipeline
from msvision.errors import ImageDecodeError, InvalidInputError, InvalidModelError, ModelNotFoundError

TINY = {"img_channel": 3, "width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1]}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_nafnet_dir(tmp_path_factory.mktemp("m") / "tiny", TINY, seed=5)


@pytest.fixture
def model_copy(tiny_dir, tmp_path):
    def copy(name="copy"):
        dst = tmp_path / name
        shutil.copytree(tiny_dir, dst)
        return dst

    return copy


def _state(path):
    import torch

    return torch.load(path, weights_only=True)


def test_import_paths_match_modelscope():
    from msvision.outputs import OutputKeys as O2
    from msvision.pipelines import pipeline as p2
    from msvision.utils.constant import Tasks as T2

    assert p2 is pipeline and T2 is Tasks and O2 is OutputKeys
    assert Tasks.image_denoising == "image-denoising" and OutputKeys.OUTPUT_IMG == "output_img"


def test_build_info():
    info = msvision.build_info()
    assert info["onednn_version"].startswith("3.")
    assert info["cpu_runtime"] == "OpenMP"
    assert info["isa"] != "default" and info["threads"] >= 1


def test_task_from_configuration_and_output(tiny_dir):
    p = pipeline(model=tiny_dir)  # task taken from configuration.json, as ModelScope does
    out = p(skimage_photo("chelsea.png"))
    assert set(out) == {OutputKeys.OUTPUT_IMG}
    img = out[OutputKeys.OUTPUT_IMG]
    assert img.shape == (300, 451, 3) and img.dtype == np.uint8


def test_tiny_images(tiny_dir):
    p = pipeline(Tasks.image_denoising, model=tiny_dir)
    for h, w in [(1, 1), (2, 7), (5, 3)]:
        img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
        assert p(img)["output_img"].shape == (h, w, 3)


def test_hub_id_and_default_from_cache(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path))
    target = tmp_path / "models" / "damo" / "cv_nafnet_image-denoise_sidd"
    shutil.copytree(tiny_dir, target)
    a = pipeline("image-denoising", model="damo/cv_nafnet_image-denoise_sidd").model_dir
    b = pipeline("image-denoising").model_dir  # model=None: the task default, found in the cache
    assert a == b == str(target)


def test_unknown_task_and_missing_models(tmp_path, tiny_dir):
    with pytest.raises(ValueError, match="not supported"):
        pipeline("image-frobnication", model=tiny_dir)
    with pytest.raises(ValueError):
        pipeline()
    with pytest.raises(ModelNotFoundError, match="configuration.json"):
        pipeline("image-denoising", model=str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="not in the local ModelScope cache"):
        pipeline("image-denoising", model="damo/no_such_model")
    with pytest.raises(ValueError, match="device"):
        pipeline("image-denoising", model=tiny_dir, device="tpu")
    with pytest.raises(ValueError, match="threads"):
        pipeline("image-denoising", model=tiny_dir, threads=0)
    with pytest.raises(ValueError, match="pipeline type"):
        pipeline("image-denoising", model=tiny_dir, pipeline_name="something-else")


def test_task_mismatch(model_copy):
    d = model_copy()
    with pytest.raises(InvalidModelError, match="image-denoising"):
        pipeline("image-deblurring", model=str(d))


def test_missing_weight_file(model_copy):
    d = model_copy()
    os.remove(d / "pytorch_model.pt")
    with pytest.raises(ModelNotFoundError, match="pytorch_model.pt"):
        pipeline("image-denoising", model=str(d))


def test_bad_hyper_parameters(model_copy):
    d = model_copy()
    cfg = json.loads((d / "configuration.json").read_text())
    cfg["model"]["network_g"]["width"] = "wide"
    (d / "configuration.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidModelError, match="width"):
        pipeline("image-denoising", model=str(d))
    cfg["model"]["network_g"]["width"] = 16  # weights are for width 8
    (d / "configuration.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidModelError, match="shape"):
        pipeline("image-denoising", model=str(d))


@pytest.mark.parametrize("change", ["missing", "extra", "misshapen"])
def test_weights_that_do_not_fit(model_copy, change):
    import torch

    d = model_copy()
    sd = _state(d / "pytorch_model.pt")["params"]
    if change == "missing":
        del sd["middle_blks.0.conv2.weight"]
    elif change == "extra":
        sd["head.weight"] = torch.zeros(3)
    else:
        sd["intro.weight"] = torch.zeros(8, 3, 5, 5)
    torch.save({"params": sd}, d / "pytorch_model.pt")
    expected = {"missing": "middle_blks.0.conv2.weight", "extra": "head.weight", "misshapen": "intro.weight"}[
        change
    ]
    with pytest.raises(InvalidModelError, match=expected):
        pipeline("image-denoising", model=str(d))


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_and_not_run(model_copy, tmp_path):
    d = model_copy()
    marker = tmp_path / "pwned"
    # a torch zip checkpoint whose data.pkl runs a shell command when unpickled naively
    with zipfile.ZipFile(d / "pytorch_model.pt", "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"params": _Exploit(marker)}, protocol=2))
        z.writestr("archive/version", "3\n")
    with pytest.raises(InvalidModelError, match="system"):
        pipeline("image-denoising", model=str(d))
    assert not marker.exists()


def test_truncated_checkpoint(model_copy):
    d = model_copy()
    data = (d / "pytorch_model.pt").read_bytes()
    (d / "pytorch_model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidModelError):
        pipeline("image-denoising", model=str(d))


def test_bad_inputs(tiny_dir, tmp_path, monkeypatch):
    p = pipeline("image-denoising", model=tiny_dir)
    with pytest.raises(TypeError):
        p(12345)
    with pytest.raises(FileNotFoundError):
        p(str(tmp_path / "nope.png"))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(ImageDecodeError):
        p(str(corrupt))
    with pytest.raises(InvalidInputError):
        p(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(InvalidInputError):
        p(np.zeros((4, 5, 3, 2), np.uint8))
    monkeypatch.setenv("MSVISION_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(InvalidInputError, match="pixel"):
        p(np.zeros((100, 100, 3), np.uint8))


def test_threads_and_concurrency(tiny_dir):
    img = np.random.default_rng(1).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    one = pipeline("image-denoising", model=tiny_dir, threads=1)(img)["output_img"]
    p = pipeline("image-denoising", model=tiny_dir, threads=2)
    two = p(img)["output_img"]
    assert np.abs(one.astype(int) - two).max() <= 1
    results = [None] * 4

    def work(i):
        results[i] = p(img)["output_img"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        assert np.array_equal(r, two)


def test_no_growth_over_many_calls(tiny_dir):
    """Primitives are created once per shape and memory stays flat over many calls."""
    psutil = pytest.importorskip("psutil")
    p = pipeline("image-denoising", model=tiny_dir, threads=1)
    img = np.random.default_rng(2).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    for _ in range(20):
        p(img)
    primitives = p.model.primitive_count
    rss = psutil.Process().memory_info().rss
    for _ in range(1000):
        p(img)
    grown = psutil.Process().memory_info().rss - rss
    assert p.model.primitive_count == primitives
    assert grown < 8 * 1024 * 1024, f"RSS grew by {grown / 1e6:.1f} MB over 1000 calls"
