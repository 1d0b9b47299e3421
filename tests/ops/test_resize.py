"""Op tests against PyTorch: resize, resize_like.

Tolerances and helpers: tests/support/ops.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support.graphs import run
from support.ops import (
    close,
    exact,
    rand,
    run_behind_conv,
    run_graph,
    t32,
)

from msvision import _C

torch.set_num_threads(1)


RESIZE_MODES = {
    "nearest": ("nearest", None),
    "bilinear": ("bilinear", False),
    "bilinear_align_corners": ("bilinear", True),
}

# (N, C, H, W, (out_h, out_w) or None, (scale_h, scale_w) or None)
RESIZE_CASES = [
    (2, 3, 13, 17, (26, 34), None),
    (1, 5, 7, 5, (13, 17), None),  # non-integer ratios up
    (1, 5, 13, 17, (7, 5), None),  # and down
    (1, 1, 1, 1, (3, 4), None),
    (1, 3, 7, 5, (1, 1), None),
    (1, 17, 7, 5, (7, 5), None),  # identity
    (2, 3, 13, 17, None, (2.0, 2.0)),
    (1, 5, 13, 17, None, (0.5, 0.5)),
    (1, 3, 7, 5, None, (1.5, 2.5)),
    (1, 3, 32, 31, None, (0.75, 1.25)),
]


def _resize_id(c):
    size = f"to{c[4][0]}x{c[4][1]}" if c[4] else f"x{c[5][0]}x{c[5][1]}"
    return f"n{c[0]}c{c[1]}_{c[2]}x{c[3]}_{size}"


def _resize_ref(mode, t, size, scale):
    m, align = RESIZE_MODES[mode]
    kw = {"size": size} if size else {"scale_factor": scale}
    return F.interpolate(t, mode=m, align_corners=align, **kw)


def _resize_build(mode, size, scale):
    if size:
        return lambda g, i: g.resize(i, mode=mode, size=(size[0], size[1]), scale=(0.0, 0.0))
    return lambda g, i: g.resize(i, mode=mode, size=(0, 0), scale=(scale[0], scale[1]))


@pytest.mark.parametrize("case", RESIZE_CASES, ids=_resize_id)
@pytest.mark.parametrize("mode", list(RESIZE_MODES))
def test_resize(mode, case):
    n, c, h, w_, size, scale = case
    x = rand(n, c, h, w_)
    (out,) = run_graph(_resize_build(mode, size, scale), [x])
    ref = _resize_ref(mode, t32(x), size, scale)
    if mode == "nearest":
        exact(out, ref, f"resize {mode} {case}")
    else:
        close(out, ref, 1e-5, 1e-5, f"resize {mode} {case}")


@pytest.mark.parametrize("mode", list(RESIZE_MODES))
def test_resize_of_a_very_tall_image(mode):
    """2**24 + 4 rows, scale 1 along them: in float the last rows' source index rounds to the row count itself.
    PyTorch copies an axis of unchanged size; the kernel must too, and never read past the input (was: the last
    row read one row beyond the buffer, and half the rows above 2**23 were interpolated)."""
    h = 2**24 + 4
    x = np.arange(h, dtype=np.float32).reshape(1, 1, h, 1)
    (out,) = run_graph(_resize_build(mode, None, (1.0, 2.0)), [x])
    exact(out, _resize_ref(mode, t32(x), None, (1.0, 2.0)), f"resize {mode} of {h} rows")


@pytest.mark.parametrize("mode", list(RESIZE_MODES))
@pytest.mark.parametrize("c", [16, 17])
def test_resize_after_conv(mode, c, layout):
    out, ref = run_behind_conv(
        _resize_build(mode, None, (2.0, 1.5)),
        lambda t: _resize_ref(mode, t, None, (2.0, 1.5)),
        rand(1, c, 7, 5),
    )
    close(out, ref, 1e-5, 1e-5, f"resize {mode} after conv {layout}")


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("like_hw", [(14, 18), (13, 17), (13, 18), (1, 1)])
def test_resize_like(mode, like_hw):
    """x scaled by 2 and cropped to the reference's size (an FPN's up2(x)[:, :, :h, :w]); the reference is read
    for its shape only."""
    x, like = rand(2, 5, 7, 9), rand(2, 3, *like_hw, seed=3)
    (out,) = run_graph(lambda g, i, j: g.resize_like(i, j, mode=mode, scale=(2.0, 2.0)), [x, like])
    ref = _resize_ref(mode, t32(x), None, (2.0, 2.0))[:, :, : like_hw[0], : like_hw[1]]
    if mode == "nearest":
        exact(out, ref, f"resize_like {mode} {like_hw}")
    else:
        close(out, ref, 1e-5, 1e-5, f"resize_like {mode} {like_hw}")


def test_resize_like_refuses_a_larger_reference():
    g = _C.Graph()
    i, j = g.input(channels=5), g.input(channels=3)
    g.output(g.resize_like(i, j, mode="bilinear", scale=(2.0, 2.0)))
    g.finalize()
    with pytest.raises(_C.ShapeError, match="resize_like: the reference .15 x 18. is larger"):
        run(g, [rand(1, 5, 7, 9), rand(1, 3, 15, 18)], threads=1)


@pytest.mark.parametrize("scale", [0.0, -1.0, float("inf"), float("nan"), 1e5])
def test_resize_refuses_bad_scale_factors(scale):
    g = _C.Graph()
    i = g.input(channels=5)
    with pytest.raises(ValueError, match="scale factors in"):
        g.resize(i, mode="bilinear", size=(0, 0), scale=(scale, 2.0))
    g = _C.Graph()
    i, j = g.input(channels=5), g.input(channels=3)
    with pytest.raises(ValueError, match="scale factors in"):
        g.resize_like(i, j, mode="bilinear", scale=(2.0, scale))


def test_resize_like_refuses_align_corners():
    g = _C.Graph()
    i, j = g.input(channels=5), g.input(channels=3)
    with pytest.raises(ValueError, match="resize_like needs .* nearest or bilinear"):
        g.resize_like(i, j, mode="bilinear_align_corners", scale=(2.0, 2.0))


# ---- TensorFlow's resize modes (by size only), against NumPy transcriptions of TF's kernels -------------------


def _tf_scale(n_in, n_out, align):
    return (
        np.float32((n_in - 1) / (n_out - 1)) if align and n_out > 1 else np.float32(n_in) / np.float32(n_out)
    )


def _tf_bilinear_weights(n_in, n_out, mode):
    """tensorflow/core/kernels/image/resize_bilinear_op.cc compute_interpolation_weights, in float32."""
    scale = _tf_scale(n_in, n_out, mode == "bilinear_align_corners")
    out = []
    for i in range(n_out):
        src = (
            (np.float32(i) + np.float32(0.5)) * scale - np.float32(0.5)
            if mode == "bilinear"
            else np.float32(i) * scale
        )
        lo = np.floor(src)
        out.append((max(int(lo), 0), min(int(np.ceil(src)), n_in - 1), np.float32(src - lo)))
    return out


def _tf_nearest_index(n_in, n_out, mode):
    """resize_nearest_neighbor_op.cc: legacy floor(i * s), align_corners round(i * s), half-pixel floor((i + .5) s)."""
    scale = _tf_scale(n_in, n_out, mode == "nearest_align_corners")
    idx = []
    for i in range(n_out):
        if mode == "nearest_align_corners":
            v = int(np.floor(np.float32(i) * scale + np.float32(0.5)))  # roundf on non-negative values
        elif mode == "nearest_half_pixel":
            v = int(np.floor((np.float32(i) + np.float32(0.5)) * scale))
        else:
            v = int(np.floor(np.float32(i) * scale))
        idx.append(max(0, min(v, n_in - 1)))
    return np.array(idx)


def _tf_resize_ref(mode, x, size):
    (oh, ow), (h, w) = size, x.shape[2:]
    if mode.startswith("nearest"):
        return x[:, :, _tf_nearest_index(h, oh, mode)][:, :, :, _tf_nearest_index(w, ow, mode)]
    y = np.zeros(x.shape[:2] + (oh, ow), np.float64)
    wy, wx = _tf_bilinear_weights(h, oh, mode), _tf_bilinear_weights(w, ow, mode)
    for i, (y0, y1, ly) in enumerate(wy):
        for j, (x0, x1, lx) in enumerate(wx):
            top = x[:, :, y0, x0] + (x[:, :, y0, x1] - x[:, :, y0, x0]) * lx
            bottom = x[:, :, y1, x0] + (x[:, :, y1, x1] - x[:, :, y1, x0]) * lx
            y[:, :, i, j] = top + (bottom - top) * ly
    return y


TF_MODES = [
    "bilinear_asymmetric",
    "nearest_align_corners",
    "nearest_half_pixel",
    "bilinear",
    "bilinear_align_corners",
]


@pytest.mark.parametrize(
    "case",
    [
        (1, 3, 7, 5, (13, 17)),
        (2, 2, 13, 17, (7, 5)),
        (1, 1, 1, 1, (3, 2)),
        (1, 4, 9, 9, (1, 1)),
        (1, 17, 5, 6, (5, 6)),
        (1, 3, 33, 31, (16, 47)),
    ],
)
@pytest.mark.parametrize("mode", TF_MODES)
def test_resize_tensorflow_modes(mode, case):
    n, c, h, w_, size = case
    x = rand(n, c, h, w_)
    (out,) = run_graph(_resize_build(mode, size, None), [x])
    ref = _tf_resize_ref(mode, x.astype(np.float64), size)
    if mode.startswith("nearest"):
        exact(out, ref.astype(np.float32), f"resize {mode} {case}")
    else:
        close(out, ref, 1e-5, 1e-5, f"resize {mode} {case}")


@pytest.mark.parametrize("mode", ["bilinear_asymmetric", "nearest_half_pixel"])
def test_resize_tensorflow_modes_after_conv(mode, layout):
    out, ref = run_behind_conv(
        _resize_build(mode, (11, 3), None),
        lambda t: torch.from_numpy(_tf_resize_ref(mode, t.double().numpy(), (11, 3))),
        rand(1, 17, 7, 5),
    )
    close(out, ref, 1e-5, 1e-5, f"resize {mode} after conv {layout}")


@pytest.mark.parametrize("mode", ["bilinear_asymmetric", "nearest_align_corners", "nearest_half_pixel"])
def test_tensorflow_modes_take_a_size_not_scales(mode):
    g = _C.Graph()
    i = g.input(channels=3)
    with pytest.raises(_C.GraphError, match=f"resize mode {mode} takes an output size"):
        g.resize(i, mode=mode, size=(0, 0), scale=(2.0, 2.0))
