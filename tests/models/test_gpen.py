"""GPEN portrait enhancement: msvision against ModelScope's real pipeline on the same model directory.

The directory (``gpen_dir``, built once per session, ~880 MB) holds random weights from ModelScope's own classes
for all five networks (``support.model_dirs.make_gpen_dir``): RetinaFace's class head is calibrated so two faces
pass 0.9 on the astronaut photo; the EQFace heads are steered far from their thresholds (quality ~1, identity
distance ~0), and two variants cross one threshold each (quality ~0: every face skipped; random identity
features: every enhanced face rejected). Photos are small (GPEN runs at 512 whatever the photo size): the
astronaut's head (256 x 256: two faces), an odd-sized photo (the super-resolution's odd-side crop quirk), a
blank image (no face), plus gray and RGBA inputs.

Criteria: the super-resolved image and the detection input bit for bit or within 1 LSB; the same faces;
``output_img`` within 1 LSB on >= 99.9% of values.
"""

import os
import shutil

import numpy as np
import pytest
from PIL import Image
from support.model_dirs import gpen_variant
from support.oracle import modelscope_pipeline

import msvision
from msvision.errors import InvalidInputError, ModelNotFoundError


@pytest.fixture(scope="module")
def photos(tmp_path_factory, gpen_photo, shared_dir):
    d = tmp_path_factory.mktemp("gpen_photos")
    paths = {"astronaut": gpen_photo}
    office = (
        Image.open(shared_dir / "assets/images/faces/office3.jpg").convert("RGB").crop((150, 40, 343, 191))
    )
    paths["odd"] = str(d / "office_193x151.png")  # odd sides: the super-resolved image has 2n + 1 rows
    office.save(paths["odd"])
    paths["blank"] = str(d / "blank.png")
    Image.new("RGB", (64, 48), (90, 120, 150)).save(paths["blank"])
    return paths


@pytest.fixture(scope="module")
def theirs(gpen_dir):
    pipe = modelscope_pipeline("image-portrait-enhancement", gpen_dir)
    pipe.enhanced_faces = []  # GPEN calls, recorded by a hook
    pipe.face_enhancer.register_forward_hook(lambda m, a, y: pipe.enhanced_faces.append(1))
    return pipe


@pytest.fixture(scope="module")
def ours(gpen_dir):
    return msvision.pipeline("image-portrait-enhancement", model=gpen_dir, threads=2)


def assert_within_one_lsb(got, want, what, share=0.999):
    assert got.shape == want.shape and got.dtype == want.dtype == np.uint8, (what, got.shape, want.shape)
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    close = (diff <= 1).mean()
    assert close >= share, f"{what}: {close:.5%} of values within 1 LSB, max diff {diff.max()}"


@pytest.fixture(scope="module")
def runs(theirs, ours, photos):
    """Both pipelines on each photo: ModelScope's output, the number of faces it enhanced; ours, stage by stage."""
    out = {}
    for key, path in photos.items():
        before = len(theirs.enhanced_faces)
        want = theirs(path)["output_img"]
        pre = ours.preprocess(path)
        got = ours.postprocess(ours.forward(pre))["output_img"]
        out[key] = {
            "want": want,
            "got": got,
            "faces": len(theirs.enhanced_faces) - before,
            "ours_pre": pre,
            "theirs_pre": theirs.preprocess(path),
        }
    return out


@pytest.mark.parametrize("key", ["astronaut", "odd", "blank"])
def test_super_resolution_and_detection_input(key, runs):
    """img_sr (RealESRNet x2, rounded to uint8) within 1 LSB, and the resized BGR image the faces are found on bit
    for bit (both engines call cv2); odd sides keep ModelScope's 2n + 1 rows."""
    ours_pre, theirs_pre = runs[key]["ours_pre"], runs[key]["theirs_pre"]
    assert_within_one_lsb(ours_pre["img_sr"], np.asarray(theirs_pre["img_sr"]), key, share=0.9999)
    assert np.array_equal(ours_pre["img"], np.asarray(theirs_pre["img"])), key
    if key == "odd":
        assert ours_pre["img_sr"].shape == (2 * 151 + 1, 2 * 193 + 1, 3)


def test_same_faces_found(ours, theirs, runs):
    for key in ("astronaut", "odd", "blank"):
        img = runs[key]["ours_pre"]["img"]
        want, want_points = theirs.face_detector.detect(img)
        got, got_points = ours.detector.detect(img.astype(np.float32))
        assert got.shape == want.shape, key
        np.testing.assert_allclose(got[:, :4], want[:, :4], atol=1.0, err_msg=key)
        np.testing.assert_allclose(got[:, 4], want[:, 4], atol=1e-3, err_msg=key)
        # ModelScope's enhancement detector returns the landmarks transposed: x1..x5 then y1..y5
        np.testing.assert_allclose(
            got_points.transpose(0, 2, 1).reshape(-1, 10), want_points, atol=1.0, err_msg=key
        )


@pytest.mark.parametrize("key", ["astronaut", "odd", "blank"])
def test_output_matches_modelscope(key, runs):
    assert_within_one_lsb(runs[key]["got"], runs[key]["want"], key)


def test_the_comparison_is_not_vacuous(runs):
    """Two faces enhanced and pasted on the astronaut (the output differs from the super-resolved image where
    they are), none on the blank image."""
    assert runs["astronaut"]["faces"] == 2 and runs["blank"]["faces"] == 0
    pasted = runs["astronaut"]["got"] != runs["astronaut"]["ours_pre"]["img_sr"]
    assert pasted.mean() > 0.01
    assert np.array_equal(runs["blank"]["got"], runs["blank"]["ours_pre"]["img_sr"])


@pytest.mark.parametrize("quality, identity", [("fail", "pass"), ("pass", "fail")])
def test_each_threshold_skips_the_faces(tmp_path, gpen_dir, gpen_photo, quality, identity):
    """Quality below 0.1, or half the cosine distance above 0.15: no face pasted, in both engines."""
    d = gpen_variant(gpen_dir, tmp_path / "variant", quality=quality, identity=identity)
    ours = msvision.pipeline("image-portrait-enhancement", model=d, threads=2)
    pre = ours.preprocess(gpen_photo)
    got = ours.forward(pre)["output_img"]
    assert np.array_equal(got, pre["img_sr"])
    theirs = modelscope_pipeline("image-portrait-enhancement", d)
    enhanced = []
    theirs.face_enhancer.register_forward_hook(lambda m, a, y: enhanced.append(1))
    want = theirs(gpen_photo)["output_img"]
    assert len(enhanced) == (0 if quality == "fail" else 2)
    assert_within_one_lsb(got, want, f"quality {quality}, identity {identity}")


def test_input_kinds(ours, theirs, photos):
    """A gray photo and an RGBA one: LoadImage's conversions, as ModelScope."""
    rgb = Image.open(photos["odd"])
    for img in (rgb.convert("L"), rgb.convert("RGBA")):
        assert_within_one_lsb(ours(img)["output_img"], theirs(img)["output_img"], img.mode)


def test_missing_network_file_and_bad_inputs(tmp_path, gpen_dir, ours):
    d = tmp_path / "broken"
    shutil.copytree(gpen_dir, d, copy_function=os.link)
    (d / "super_resolution" / "realesrnet_x2.pth").unlink()
    with pytest.raises(ModelNotFoundError, match="realesrnet_x2.pth"):
        msvision.pipeline("image-portrait-enhancement", model=str(d))
    with pytest.raises(TypeError):
        ours(3.5)
    with pytest.raises(InvalidInputError):
        ours(b"not an image")
    one_row = np.zeros((1, 9, 3), np.uint8)  # odd height 1: nothing to reflect
    with pytest.raises(InvalidInputError, match="too small"):
        ours(one_row)


def test_draw_and_cli_take_the_task():
    from msvision.cli import IMAGE_TASKS
    from msvision.drawing import SUPPORTED_TASKS

    assert "image-portrait-enhancement" in IMAGE_TASKS and "image-portrait-enhancement" in SUPPORTED_TASKS
