"""The embedded default image-denoising model and the README's main job (the command line on the bundled
noisy sample)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.images import compare_images
from support.model_dirs import skimage_photo
from support.oracle import modelscope_pipeline

import msvision
from msvision.hub import EMBEDDED_DEFAULT_FOR_TASK


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))


def test_default_is_embedded_and_denoises(empty_cache):
    from msvision.cli import SAMPLE

    p = msvision.pipeline("image-denoising")
    assert p.model_dir == str(EMBEDDED_DEFAULT_FOR_TASK["image-denoising"])
    clean = np.asarray(Image.open(skimage_photo("astronaut.png")).convert("RGB"))
    noisy = np.asarray(Image.open(SAMPLE).convert("RGB"))
    out = p(str(SAMPLE))["output_img"][:, :, ::-1]
    gain = _psnr(out, clean) - _psnr(noisy, clean)
    assert gain > 6.0, f"PSNR gain {gain:.2f} dB"


def test_default_matches_modelscope(empty_cache):
    from msvision.cli import SAMPLE

    model_dir = str(EMBEDDED_DEFAULT_FOR_TASK["image-denoising"])
    ours = msvision.pipeline("image-denoising")(str(SAMPLE))["output_img"]
    theirs = modelscope_pipeline("image-denoising", model_dir)(str(SAMPLE))["output_img"]
    max_diff, identical = compare_images(ours, theirs)
    assert max_diff <= 1 and identical >= 0.999


def test_command_line_main_job(tmp_path, empty_cache):
    out = tmp_path / "denoised.png"
    run = subprocess.run(
        [sys.executable, "-m", "msvision", "image-denoising", "--sample", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert Image.open(out).size == (512, 512)
    bad = subprocess.run(
        [sys.executable, "-m", "msvision", "image-denoising", str(tmp_path / "missing.png"), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0 and "missing.png" in bad.stderr


def test_command_line_from_a_source_checkout(tmp_path, empty_cache):
    """The README's main job runs in the repository root after `pip install .`: there the checkout's msvision/
    (no compiled extension) shadows the installed package, and the installed C extension is used."""
    checkout = tmp_path / "checkout"
    shutil.copytree(
        Path(msvision.__file__).parent,
        checkout / "msvision",
        ignore=shutil.ignore_patterns("_C.*", "__pycache__"),
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [sys.executable, "-m", "msvision", "image-denoising", "--sample", "-o", "denoised.png"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert str(checkout / "msvision" / "data") in run.stdout  # the checkout's package ran
    assert Image.open(checkout / "denoised.png").size == (512, 512)
