"""Core ops added for detectors: GroupNorm (vs torch), NMS (vs a straightforward greedy reference written from
the algorithm's definition) and SSD center-size decoding (vs NumPy)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support.graphs import run

from msvision import _C


@pytest.mark.parametrize("layout", ["nhwc", "blocked", "any"])
@pytest.mark.parametrize("shape,groups", [((2, 32, 5, 7), 16), ((1, 48, 9, 4), 3), ((1, 512, 3, 3), 16)])
def test_group_norm(shape, groups, layout, monkeypatch):
    monkeypatch.setenv("MSVISION_LAYOUT", layout)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    c = shape[1]
    w, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    wc = (rng.standard_normal((c, c, 1, 1)) / np.sqrt(c)).astype(np.float32)
    g = _C.Graph()
    i = g.input(channels=c)
    y = g.conv2d(i, g.const(wc), kernel=(1, 1))  # so the norm reads the planner's layout
    g.output(g.group_norm(y, scale=g.const(w), shift=g.const(b), groups=groups, eps=1e-5))
    g.finalize()
    (out,) = run(g, [x])
    ty = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(wc).double())
    ref = F.group_norm(ty, groups, torch.from_numpy(w).double(), torch.from_numpy(b).double(), 1e-5)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-4, atol=1e-4)


def test_group_norm_rejects_bad_groups():
    g = _C.Graph()
    i = g.input(channels=10)
    with pytest.raises(ValueError, match="groups"):
        g.group_norm(i, scale=None, shift=None, groups=3, eps=1e-5)


def _greedy_nms(boxes, scores, thr, mode="union", offset=0.0, eps=0.0):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep, removed = [], set()
    for a_i, a in enumerate(order):
        if a in removed:
            continue
        keep.append(a)
        for b in order[a_i + 1 :]:
            if b in removed:
                continue
            x1, y1 = max(boxes[a][0], boxes[b][0]), max(boxes[a][1], boxes[b][1])
            x2, y2 = min(boxes[a][2], boxes[b][2]), min(boxes[a][3], boxes[b][3])
            iw, ih = x2 - x1 + offset, y2 - y1 + offset
            if iw <= 0 or ih <= 0:
                continue
            inter = iw * ih
            area = [(bx[2] - bx[0] + offset) * (bx[3] - bx[1] + offset) for bx in (boxes[a], boxes[b])]
            denom = (min(area) if mode == "min" else area[0] + area[1] - inter) + eps
            if inter / denom > thr:
                removed.add(b)
    return keep


@pytest.mark.parametrize(
    "mode,offset,eps", [("union", 0.0, 0.0), ("union", 1.0, 0.0), ("min", 1.0, 0.0), ("union", 0, 50.0)]
)
def test_nms_matches_greedy_definition(mode, offset, eps):
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, (300, 2))
    wh = rng.uniform(5, 40, (300, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.uniform(0, 1, 300).astype(np.float32)
    scores[10] = scores[20]  # a tie: lower index first
    keep = _C.nms(boxes, scores, 0.4, mode=mode, offset=offset, eps=eps)
    assert keep.dtype == np.int64
    ref = _greedy_nms(boxes.astype(np.float64).tolist(), scores.tolist(), 0.4, mode, offset, eps)
    assert keep.tolist() == ref
    assert _C.nms(boxes, scores, 0.4, mode=mode, offset=offset, max_keep=5, eps=eps).tolist() == ref[:5]


def test_nms_edges():
    assert _C.nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).tolist() == []
    with pytest.raises(ValueError):
        _C.nms(np.zeros((3, 5), np.float32), np.zeros(3, np.float32), 0.5)
    with pytest.raises(ValueError, match="nms mode"):
        _C.nms(np.zeros((1, 4), np.float32), np.zeros(1, np.float32), 0.5, mode="soft")


def test_nms_with_nan_scores():
    """NaN scores rank first (as torch.sort puts them), so the sort's order is total and the result defined."""
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 11]] * 50, np.float32)
    scores = np.tile(np.array([0.5, np.nan, 0.9, 0.7], np.float32), 50)
    keep = _C.nms(boxes, scores, 0.5)
    assert keep.tolist() == [1, 2]  # NaN first (lowest index), then 0.9; the rest overlap one of them


def test_decode_center_size():
    rng = np.random.default_rng(2)
    loc = rng.standard_normal((50, 4)).astype(np.float32)
    pri = np.abs(rng.standard_normal((50, 4))).astype(np.float32) + 0.1
    out = _C.decode_center_size(loc, pri, 0.1, 0.2)
    c = pri[:, :2] + loc[:, :2] * 0.1 * pri[:, 2:]
    wh = pri[:, 2:] * np.exp(loc[:, 2:] * 0.2)
    np.testing.assert_allclose(out, np.concatenate([c - wh / 2, c + wh / 2], 1), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError):
        _C.decode_center_size(loc, pri[:10], 0.1, 0.2)


@pytest.mark.parametrize("layout", ["nhwc", "blocked", "any"])
@pytest.mark.parametrize("slopes", [10, 1])
def test_conv_prelu_fused(slopes, layout, monkeypatch):
    """conv -> PReLU becomes one primitive (a PReLU post-op), per-channel or shared slope."""
    monkeypatch.setenv("MSVISION_LAYOUT", layout)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 12, 13)).astype(np.float32)
    w = rng.standard_normal((10, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(10).astype(np.float32)
    slope = rng.uniform(0.05, 0.5, slopes).astype(np.float32)
    g = _C.Graph()
    i = g.input(channels=3)
    y = g.prelu(g.conv2d(i, g.const(w), bias=g.const(b), kernel=(3, 3)), g.const(slope))
    g.output(y)
    g.finalize()
    session = _C.Session(g, threads=1)
    (out,) = session.run([x])
    ref = F.prelu(
        F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)), torch.from_numpy(slope)
    )
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-5)
    # input reorder (maybe), the fused convolution, the output reorder: no separate PReLU primitive
    assert session.primitive_count <= 3
