"""Op tests against PyTorch: concat, pad, slice, pixel (un)shuffle, simple gate.

Tolerances and helpers: tests/support/ops.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support.ops import (
    CONV_RTOL,
    close,
    conv3,
    conv_atol,
    exact,
    rand,
    run_behind_conv,
    run_graph,
    t32,
    t64,
    weight,
)

from msvision import _C

torch.set_num_threads(1)


@pytest.mark.parametrize("n,h,w_", [(2, 7, 5), (1, 1, 1), (1, 13, 17)])
def test_concat(n, h, w_):
    xs = [rand(n, c, h, w_, seed=c) for c in (3, 17, 1, 16)]
    (out,) = run_graph(lambda g, *ids: g.concat(list(ids)), xs)
    exact(out, torch.cat([t32(x) for x in xs], dim=1), "concat")


def test_concat_single_and_repeated():
    x = rand(1, 5, 7, 5)
    a, b = run_graph(lambda g, i: [g.concat([i]), g.concat([i, i, i])], [x])
    exact(a, x, "concat of one")
    exact(b, np.concatenate([x, x, x], axis=1), "concat of the same tensor thrice")


@pytest.mark.parametrize("axis", [1, 2, 3])
def test_concat_of_few_channels(axis, layout):
    """3 + 1 channels (an image and its alpha): oneDNN 3.2 concatenates those only on its reference kernel; the C
    copy kernel takes them, behind a convolution (any producer layout) and straight from the inputs."""
    a, b = rand(1, 3, 7, 5), rand(1, 1, 7, 5, seed=2)
    if axis != 1:
        b = rand(1, 3, 7, 5, seed=2)
    (out,) = run_graph(lambda g, i, j: g.concat([i, j], axis=axis), [a, b])
    exact(out, np.concatenate([a, b], axis=axis), f"concat axis {axis}")
    out, ref = run_behind_conv(
        lambda g, y: g.concat([y, g.eltwise(y, act="sigmoid")], axis=axis),
        lambda t: torch.cat([t, torch.sigmoid(t)], dim=axis),
        rand(1, 3, 7, 5),
    )
    close(out, ref, 1e-6, 1e-6, f"concat of 3 channels behind conv {layout}")


@pytest.mark.parametrize("c1,c2", [(16, 32), (17, 5), (16, 16)])
def test_concat_mixed_layouts(c1, c2, layout):
    """Concat of a conv result (planner layout), a graph input (NCHW) and a second conv result."""
    x = rand(2, c1, 7, 5)
    y = rand(2, c2, 7, 5, seed=4)
    w1 = weight(c1, c1, 3, 3, fan_in=9 * c1)
    w2 = weight(c2, c2, 1, 1, fan_in=c2, seed=5)

    def build(g, i, j):
        a = conv3(g, i, w1)
        b = g.conv2d(j, g.const(w2), kernel=(1, 1))
        return [a, b, g.concat([a, j, b])]

    a, b, out = run_graph(build, [x, y])
    close(a, F.conv2d(t64(x), t64(w1), padding=1), CONV_RTOL, conv_atol(9 * c1), "conv a")
    exact(out, np.concatenate([a, y, b], axis=1), f"concat mixed {layout}")


@pytest.mark.parametrize("pads", [(1, 0, 2, 3), (0, 0, 0, 0), (3, 2, 1, 0), (5, 5, 5, 5)], ids=str)
@pytest.mark.parametrize("value", [0.0, -1.5])
@pytest.mark.parametrize("shape", [(2, 17, 7, 5), (1, 1, 1, 1)], ids=str)
def test_pad(pads, value, shape):
    top, left, bottom, right = pads
    x = rand(*shape)
    (out,) = run_graph(lambda g, i: g.pad(i, padding=(top, left, bottom, right), value=value), [x])
    exact(out, F.pad(t32(x), (left, right, top, bottom), value=value), f"pad {pads} {value}")


@pytest.mark.parametrize("mode", ["reflect", "symmetric"])
@pytest.mark.parametrize("pads", [(1, 0, 2, 3), (0, 0, 0, 0), (4, 4, 4, 4), (2, 1, 0, 4)], ids=str)
@pytest.mark.parametrize("shape", [(2, 17, 5, 7), (1, 3, 7, 5)], ids=str)
def test_mirror_pad(mode, pads, shape):
    """TF MirrorPad: reflect mirrors without the edge row (pad < size), symmetric with it (pad <= size); 4 is the
    most reflect allows on 5 rows."""
    top, left, bottom, right = pads
    x = rand(*shape)
    (out,) = run_graph(lambda g, i: g.pad(i, padding=pads, mode=mode), [x])
    exact(out, np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode=mode), f"{mode} pad {pads}")


@pytest.mark.parametrize(
    "mode,pads", [("reflect", (5, 0, 0, 0)), ("reflect", (0, 0, 0, 7)), ("symmetric", (6, 0, 0, 0))]
)
def test_mirror_pad_refuses_pads_beyond_the_input(mode, pads):
    g = _C.Graph()
    i = g.input(shape=(1, 3, 5, 7))
    with pytest.raises(_C.ShapeError, match=f"{mode} padding .* exceeds"):
        g.pad(i, padding=pads, mode=mode)


@pytest.mark.parametrize("c", [16, 17])
def test_mirror_pad_after_conv(c, layout):
    out, ref = run_behind_conv(
        lambda g, y: g.pad(y, padding=(2, 1, 0, 3), mode="reflect"),
        lambda t: F.pad(t, (1, 3, 2, 0), mode="reflect"),
        rand(1, c, 7, 5),
    )
    exact(out, ref, f"reflect pad after conv {layout}")


@pytest.mark.parametrize("c", [16, 17, 32])
def test_pad_after_conv(c, layout):
    out, ref = run_behind_conv(
        lambda g, y: g.pad(y, padding=(2, 1, 0, 3), value=0.25),
        lambda t: F.pad(t, (1, 3, 2, 0), value=0.25),
        rand(1, c, 7, 5),
    )
    exact(out, ref, f"pad after conv {layout}")


# (c0, c1, h0, h1, w0, w1); -1 ends mean "to the end"
SLICES = [
    (1, 4, 2, -1, 0, 3),
    (0, -1, 0, -1, 0, -1),
    (16, 17, 0, 1, 4, 5),
    (5, 12, 3, 6, 1, -1),
    (0, 100, 0, 100, 2, 100),  # ends past the size are clipped, like Python slicing
]


def _slice(g, x, s):
    """(c0, c1, h0, h1, w0, w1) with -1 ends meaning "to the end", as the begin/end of every axis."""
    c0, c1, h0, h1, w0, w1 = s
    end = lambda e: None if e < 0 else e  # noqa: E731
    return g.slice(x, begin=(0, c0, h0, w0), end=(None, end(c1), end(h1), end(w1)))


def _slice_ref(t, s):
    c0, c1, h0, h1, w0, w1 = s
    end = lambda e: None if e < 0 else e  # noqa: E731
    return t[:, c0 : end(c1), h0 : end(h1), w0 : end(w1)]


@pytest.mark.parametrize("s", SLICES, ids=str)
def test_slice(s):
    x = rand(2, 17, 7, 5)
    (out,) = run_graph(lambda g, i: _slice(g, i, s), [x])
    exact(out, _slice_ref(t32(x), s), f"slice {s}")


@pytest.mark.parametrize("s", [(5, 21, 1, -1, 0, 4), (16, 32, 0, 3, 0, -1), (0, 3, 0, -1, 2, 3)], ids=str)
def test_slice_after_conv(s, layout):
    out, ref = run_behind_conv(lambda g, y: _slice(g, y, s), lambda t: _slice_ref(t, s), rand(1, 32, 7, 5))
    exact(out, ref, f"slice {s} after conv {layout}")


# ------------------------------------------------------------------------------ pixel (un)shuffle / gate


@pytest.mark.parametrize(
    "shape,r", [((2, 16, 7, 5), 2), ((1, 18, 5, 3), 3), ((1, 48, 1, 1), 4), ((1, 3, 7, 5), 1)], ids=str
)
def test_pixel_shuffle(shape, r):
    x = rand(*shape)
    (out,) = run_graph(lambda g, i: g.pixel_shuffle(i, factor=r), [x])
    exact(out, F.pixel_shuffle(t32(x), r), f"pixel shuffle {shape} r={r}")


@pytest.mark.parametrize(
    "shape,r", [((1, 3, 14, 10), 2), ((2, 5, 9, 6), 3), ((1, 1, 4, 4), 4), ((1, 17, 7, 5), 1)], ids=str
)
def test_pixel_unshuffle(shape, r):
    x = rand(*shape)
    (out,) = run_graph(lambda g, i: g.pixel_unshuffle(i, factor=r), [x])
    exact(out, F.pixel_unshuffle(t32(x), r), f"pixel unshuffle {shape} r={r}")


@pytest.mark.parametrize("op", ["shuffle", "unshuffle", "roundtrip"])
@pytest.mark.parametrize("c", [16, 32, 48])
def test_pixel_shuffle_after_conv(op, c, layout):
    x = rand(1, c, 8, 6)
    if op == "shuffle":
        out, ref = run_behind_conv(
            lambda g, y: g.pixel_shuffle(y, factor=2), lambda t: F.pixel_shuffle(t, 2), x
        )
    elif op == "unshuffle":
        out, ref = run_behind_conv(
            lambda g, y: g.pixel_unshuffle(y, factor=2), lambda t: F.pixel_unshuffle(t, 2), x
        )
    else:
        out, ref = run_behind_conv(
            lambda g, y: g.pixel_shuffle(g.pixel_unshuffle(y, factor=2), factor=2), lambda t: t, x
        )
    exact(out, ref, f"pixel {op} after conv c={c} {layout}")


@pytest.mark.parametrize(
    "shape", [(2, 2, 7, 5), (1, 16, 13, 17), (1, 32, 1, 1), (2, 48, 7, 5), (1, 34, 32, 31)], ids=str
)
def test_simple_gate(shape):
    x = rand(*shape)
    c = shape[1]
    (out,) = run_graph(lambda g, i: g.simple_gate(i), [x])
    tx = t32(x)
    exact(out, tx[:, : c // 2] * tx[:, c // 2 :], f"simple gate {shape}")


@pytest.mark.parametrize("c", [16, 32, 48, 34])
def test_simple_gate_after_conv(c, layout):
    out, ref = run_behind_conv(
        lambda g, y: g.simple_gate(y), lambda t: t[:, : c // 2] * t[:, c // 2 :], rand(1, c, 7, 5)
    )
    exact(out, ref, f"simple gate after conv c={c} {layout}")
