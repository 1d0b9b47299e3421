"""Conformance: msvision's image-denoising / image-deblurring pipelines against ModelScope's real pipelines on the
same model directories (random weights from ModelScope's own NAFNet class) and the same real photos.

Criterion: output_img max abs diff <= 1 and >= 99.9% identical values (float rounding differs between
engines; the pipeline truncates to uint8, so a value within 1e-6 of an integer can flip by one).
"""

import numpy as np
import pytest
from support.images import compare_images
from support.model_dirs import SIDD, SMALL, make_nafnet_dir, photo_crop, skimage_photo
from support.oracle import modelscope_pipeline

import msvision


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    return {
        "odd": skimage_photo("chelsea.png"),  # 451 x 300
        "gray": skimage_photo("camera.png"),  # mode L -> RGB
        "odd_crop": photo_crop(d, "motorcycle_left.png", (13, 7, 13 + 517, 7 + 333), "moto_517x333.png"),
        "tiled": photo_crop(d, "retina.jpg", (100, 60, 100 + 1040, 60 + 1024), "retina_1040x1024.png"),
        "tiled_wide": photo_crop(
            d, "hubble_deep_field.jpg", (0, 0, 1000, 872), "hubble_1100x520.png", (1100, 520)
        ),
    }


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {
        "sidd": make_nafnet_dir(d / "sidd", SIDD, seed=1),
        "small_legacy": make_nafnet_dir(d / "small", SMALL, seed=2, legacy=True, prefix="module."),
        "deblur": make_nafnet_dir(d / "deblur", SMALL, seed=3, task="image-deblurring", wrap=None),
    }


def _modelscope(task, model_dir):
    return modelscope_pipeline(task, model_dir)


CASES = [
    ("sidd", "image-denoising", ["odd", "gray", "tiled"]),
    ("small_legacy", "image-denoising", ["odd", "gray", "odd_crop", "tiled", "tiled_wide"]),
    ("deblur", "image-deblurring", ["odd_crop", "tiled_wide"]),
]


@pytest.mark.parametrize("model,task,images", CASES, ids=[c[0] for c in CASES])
def test_matches_modelscope(model, task, images, model_dirs, photos):
    ours = msvision.pipeline(task, model=model_dirs[model], threads=2)
    theirs = _modelscope(task, model_dirs[model])
    for key in images:
        a = ours(photos[key])["output_img"]
        b = theirs(photos[key])["output_img"]
        max_diff, identical = compare_images(a, b)
        assert max_diff <= 1 and identical >= 0.999, (
            f"{model}/{key}: max diff {max_diff}, identical {identical:.5f}"
        )


def test_input_kinds_agree(model_dirs, photos):
    """Path, PIL image, BGR array, gray array and lists give what ModelScope gives for the same pixels."""
    from PIL import Image

    ours = msvision.pipeline("image-denoising", model=model_dirs["small_legacy"])
    theirs = _modelscope("image-denoising", model_dirs["small_legacy"])
    path = photos["odd"]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    gray = np.asarray(Image.open(photos["gray"]).convert("L"))
    for x in (path, Image.open(path), np.ascontiguousarray(rgb[:, :, ::-1]), gray):
        a = ours(x)["output_img"]
        b = theirs(x if not (isinstance(x, np.ndarray) and x.ndim == 2) else np.stack([x] * 3, -1))[
            "output_img"
        ]
        max_diff, identical = compare_images(a, b)
        assert max_diff <= 1 and identical >= 0.999
    batch = ours([path, rgb[:, :, ::-1]])
    assert isinstance(batch, list) and len(batch) == 2
    assert np.array_equal(batch[0]["output_img"], ours(path)["output_img"])
    assert set(batch[1]) == {"output_img"} and batch[1]["output_img"].shape == rgb.shape
