"""precision="bf16": the accuracy gate of each model that offers it, against ModelScope's fp32 pipeline on the same
model directory and photos, and the refusal everywhere else.

Gates (README, "Precision"):
- NAFNet (image denoising): output_img within 2 LSB of ModelScope's on >= 99% of the values.
- RetinaFace (face detection): the same faces at the same threshold: every box within 1 px of ModelScope's with
  its score within 0.01; a face only one side finds scores within 0.01 of the threshold, or has a near-tied
  overlapping rival on the other side (NMS resolving a tie the other way).
- HRNet (body keypoints): for the same person boxes, heatmaps within 0.02 of fp32 (scores too), and every joint
  those heatmaps cannot move (see ``stable_joints``) within 1 px of ModelScope's.
Each gate test also checks that bf16 convolutions really ran (the plan's steps), so a silent fp32 fallback fails.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from support.cpu import needs_cpu_feature
from support.images import compare_images
from support.model_dirs import SIDD, make_hrnet_dir, make_nafnet_dir, make_retinaface_dir, skimage_photo
from support.oracle import modelscope_keypoints_pipeline, modelscope_pipeline

import msvision
from msvision import runtime
from msvision.errors import UnsupportedPrecisionError
from msvision.models.retinaface import MEAN

needs_bf16 = needs_cpu_feature(runtime.cpu_has_bf16(), "bf16 convolutions (AVX512_BF16 or AMX)")


def bf16_convolutions(p) -> int:
    return sum(1 for step in p.model.steps() if step.startswith("conv2d") and "bf16" in step)


@needs_bf16
def test_nafnet_gate(tmp_path_factory):
    model_dir = make_nafnet_dir(tmp_path_factory.mktemp("nafnet") / "sidd", SIDD, seed=1)
    ours = msvision.pipeline("image-denoising", model=model_dir, threads=2, precision="bf16")
    theirs = modelscope_pipeline("image-denoising", model_dir)
    for name in ("chelsea.png", "camera.png"):
        a = ours(skimage_photo(name))["output_img"]
        b = theirs(skimage_photo(name))["output_img"]
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
        within = float((diff <= 2).mean())
        print(
            f"nafnet {name}: max {diff.max()}, within 2 LSB {within:.5f}, identical {compare_images(a, b)[1]:.4f}"
        )
        assert within >= 0.99, f"{name}: {within:.4%} of the values within 2 LSB (max diff {diff.max()})"
    assert bf16_convolutions(ours) > 0


def assert_same_faces_bf16(a, b, threshold, what, tol=0.01):
    sa, ba = np.asarray(a["scores"], np.float64), np.asarray(a["boxes"], np.float64).reshape(-1, 4)
    sb, bb = np.asarray(b["scores"], np.float64), np.asarray(b["boxes"], np.float64).reshape(-1, 4)
    used = np.zeros(len(sa), bool)
    unmatched = []
    for i in range(len(sb)):
        d = np.abs(ba - bb[i]).max(axis=1) if len(ba) else np.zeros(0)
        cand = [j for j in np.argsort(d) if not used[j] and d[j] <= 1.0 and abs(sa[j] - sb[i]) <= tol]
        if cand:
            used[cand[0]] = True
        else:
            unmatched.append(("ModelScope", sb[i], bb[i], sa, ba))
    unmatched += [("msvision", sa[j], ba[j], sb, bb) for j in np.nonzero(~used)[0]]
    for side, s, box, s_other, b_other in unmatched:
        x1, y1 = np.maximum(box[:2], b_other[:, :2]).T
        x2, y2 = np.minimum(box[2:], b_other[:, 2:]).T
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        area = lambda q: (q[..., 2] - q[..., 0]) * (q[..., 3] - q[..., 1])  # noqa: E731
        iou = inter / (area(box) + area(b_other) - inter + 1e-9)
        rival = np.any((np.abs(s_other - s) <= tol) & (iou > 0.3))
        assert abs(s - threshold) <= tol or rival, (
            f"{what}: a face only {side} finds (score {s:.4f}, box {np.round(box, 1).tolist()}); "
            f"{len(sa)} faces vs {len(sb)}"
        )
    return len(sb) - len(unmatched)


@needs_bf16
def test_retinaface_gate(tmp_path_factory, shared_dir):
    d = tmp_path_factory.mktemp("retinaface")
    astro = Image.open(skimage_photo("astronaut.png")).convert("RGB").crop((100, 0, 420, 240))
    calibration = str(d / "astronaut.png")
    astro.save(calibration)
    rgb = np.asarray(astro, np.float32)
    model_dir = make_retinaface_dir(d / "model", calibrate_on=rgb - np.float32(MEAN))
    ours = msvision.pipeline("face-detection", model=model_dir, threads=2, precision="bf16")
    theirs = modelscope_pipeline("face-detection", model_dir)
    photos = [calibration] + [
        str(shared_dir / "assets/images/faces" / f) for f in ("office3.jpg", "ulfd_13.jpg")
    ]
    matched = 0
    for path in photos:
        a, b = ours(path), theirs(path)
        matched += assert_same_faces_bf16(a, b, 0.9, path)
        print(f"retinaface {path}: {len(a['scores'])} vs {len(b['scores'])}")
    assert matched >= 10  # the gate compared real detections
    assert bf16_convolutions(ours) > 0


def stable_joints(heatmaps: np.ndarray, margin: float) -> np.ndarray:
    """(N, 15): joints whose decoded position no change of each heatmap value by at most ``margin`` / 2 can
    move: the peak beats every other cell by more than ``margin``, and (off the border) each pair of neighbours
    that sets the quarter-cell shift differs by more than ``margin``."""
    n, h, w, j = heatmaps.shape
    maps = heatmaps.transpose(0, 3, 1, 2).reshape(n, j, h * w).astype(np.float64)
    order = np.sort(maps, axis=2)
    flat = np.argmax(maps, axis=2)
    y, x = flat // w, flat % w
    stable = order[..., -1] - order[..., -2] > margin
    inner = (x >= 1) & (x <= w - 2) & (y >= 1) & (y <= h - 2)

    def at(dy, dx):
        idx = np.clip(y + dy, 0, h - 1) * w + np.clip(x + dx, 0, w - 1)
        return np.take_along_axis(maps, idx[..., None], axis=2)[..., 0]

    shifts_stable = (np.abs(at(0, 1) - at(0, -1)) > margin) & (np.abs(at(1, 0) - at(-1, 0)) > margin)
    return stable & (shifts_stable | ~inner)


HEATMAP_GATE = 0.02  # max |bf16 - fp32| of a heatmap value (heatmaps span about [0, 1])


@needs_bf16
def test_hrnet_gate(tmp_path_factory, shared_dir, monkeypatch):
    """Random weights make flat heatmaps, whose argmax any rounding change can move between near-equal cells
    (real heatmaps have one clear peak): the heatmaps themselves are gated, and every joint whose decoding they
    cannot flip (``stable_joints``) must land within 1 px of ModelScope's."""
    from models.test_hrnet import PHOTO_BOXES, FixedBoxes

    model_dir = make_hrnet_dir(tmp_path_factory.mktemp("hrnet") / "model")
    checked = total = 0
    grid = [
        [x, y, x + 150, y + 200] for x in range(0, 700, 70) for y in (0, 100, 190)
    ]  # 30 overlapping boxes
    for name, path, boxes in (
        (
            "office1.jpg",
            str(shared_dir / "assets/images/faces/office1.jpg"),
            PHOTO_BOXES["office1.jpg"] + grid,
        ),
        ("astronaut.png", skimage_photo("astronaut.png"), PHOTO_BOXES["astronaut.png"] + grid[:15]),
    ):
        detector = FixedBoxes(boxes)
        ours = msvision.pipeline(
            "body-2d-keypoints", model=model_dir, human_detector=detector, threads=2, precision="bf16"
        )
        fp32 = msvision.pipeline("body-2d-keypoints", model=model_dir, human_detector=detector, threads=2)
        theirs = modelscope_keypoints_pipeline(model_dir, detector, patch=monkeypatch.setattr)
        batch = ours.preprocess(path)["batch"]
        (maps,) = ours.model.run(batch)
        (reference_maps,) = fp32.model.run(
            batch
        )  # ModelScope's heatmaps within 1e-5 (tests/models/test_hrnet.py)
        heat = np.abs(maps - reference_maps).max()
        assert heat <= HEATMAP_GATE, f"{name}: heatmaps {heat:.4f} apart"
        a, b = ours(path), theirs(path)
        assert len(a["keypoints"]) == len(b["keypoints"]) == len(boxes)
        stable = stable_joints(reference_maps, 2 * heat)  # no cell moved by more than heat
        apart = np.abs(np.subtract(a["keypoints"], b["keypoints"])).max(axis=2)
        scores = np.abs(np.subtract(a["scores"], b["scores"])).max()
        print(
            f"hrnet {name}: heatmaps {heat:.4f}; {stable.sum()} of {stable.size} joints stable, max apart "
            f"{apart[stable].max(initial=0):.3f} px (all: {apart.max():.3f}); scores {scores:.4f}"
        )
        assert apart[stable].max(initial=0) <= 1.0 and scores <= HEATMAP_GATE, name
        checked += int(stable.sum())
        total += stable.size
        assert bf16_convolutions(ours) > 0
    assert checked >= 20, f"only {checked} of {total} joints had a decoding the heatmaps' error cannot flip"


def test_models_without_a_bf16_gate_refuse_it(shared_dir):
    for name in ("cv_manual_face-detection_ulfd", "cv_manual_face-detection_mtcnn"):
        model_dir = str(shared_dir / "assets/modelscope/damo" / name)
        with pytest.raises(UnsupportedPrecisionError, match="no bf16 mode"):
            msvision.pipeline("face-detection", model=model_dir, precision="bf16")
        assert msvision.pipeline("face-detection", model=model_dir, precision="fp32")  # the default works


def test_bad_precisions_are_refused(tmp_path, monkeypatch):
    model_dir = make_nafnet_dir(tmp_path / "sidd", SIDD, seed=1)
    with pytest.raises(ValueError, match="precision must be one of"):
        msvision.pipeline("image-denoising", model=model_dir, precision="fp16")
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    with pytest.raises(UnsupportedPrecisionError, match="needs a CPU with AVX512_BF16 or AMX"):
        msvision.pipeline("image-denoising", model=model_dir, precision="bf16")
