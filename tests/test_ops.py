"""Op-level tests of the C core (``msvision._C.Graph``) against PyTorch.

Every op of csrc/core/msv.h is built into a one- or few-op graph, run on random inputs with odd shapes and
compared with its torch equivalent. Ops that oneDNN runs (conv, deconv, linear, binary, eltwise, ...) are also
run fused (conv -> binary -> eltwise post-op chains) and under the three activation layouts the planner can
pick (``MSVISION_LAYOUT`` = nhwc, the default / blocked / any; read when a shape is planned, so it is set with
monkeypatch before the first run). To give an op a non-NCHW input, the layout-parametrized cases put it behind
a convolution whose result is also a graph output (so it is not fused away).

Tolerances (all on float32 outputs of magnitude ~1; references are computed in float64 where the op
accumulates, so the bound is the core's own rounding):
  conv / deconv / linear      rtol 1e-5, atol 2e-6 * sqrt(fan-in)   (fan-in = in-channels/groups * kh * kw;
                              measured errors are < 1/10 of this)
  Winograd conv (3x3 stride 1) rtol 1e-5, atol 6e-6 * sqrt(fan-in) (see WINO_ATOL_PER_SQRT_FAN_IN)
  fused conv chains           as conv, + 5e-6 (post-op arithmetic); a NAFNet block: rtol 1e-5, atol 2e-5
  exact eltwise (relu, leaky_relu, clip, linear, hardswish)   rtol 1e-6, atol 1e-6
  transcendental eltwise (sigmoid, tanh, gelu, swish, elu, exp)   rtol 1e-5, atol 1e-6 (oneDNN's polynomial
                              approximations are a few ulp off libm)
  binary add/sub/mul/max/min  rtol 1e-6, atol 1e-6; div rtol 1e-6, atol 1e-6 on |b| >= 0.5
  prelu                       rtol 1e-6, atol 1e-6
  layer norm                  rtol 1e-5, atol 1e-5
  softmax                     rtol 1e-5, atol 1e-6
  max pool                    exact; avg pools / global average pool rtol 1e-6, atol 1e-6
  resize nearest              exact; bilinear rtol 1e-5, atol 1e-5 (same float index math as torch)
  concat, pad, slice, pixel (un)shuffle: exact (pure data movement)
  simple gate                 exact (one float multiply, as torch)
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support.graphs import run

from msvision import _C

torch.set_num_threads(1)

# the planner's layouts, and "kernels": NHWC with the C kernels that stand in for oneDNN reference kernels used
# wherever they can run (MSVISION_FALLBACK_KERNELS), so they are tested on machines where oneDNN needs none
LAYOUTS = ["nhwc", "blocked", "any", "kernels"]

# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _one_thread_default_layout(monkeypatch):
    """Every test starts from the default layout (unset env) and one torch thread."""
    monkeypatch.delenv("MSVISION_LAYOUT", raising=False)
    torch.set_num_threads(1)


@pytest.fixture(params=LAYOUTS)
def layout(request, monkeypatch):
    use_layout(request.param, monkeypatch)
    return request.param


def use_layout(name, monkeypatch):
    """Plans from now on with one of LAYOUTS (see above)."""
    monkeypatch.setenv("MSVISION_LAYOUT", "nhwc" if name == "kernels" else name)
    if name == "kernels":
        monkeypatch.setenv("MSVISION_FALLBACK_KERNELS", "1")
    else:
        monkeypatch.delenv("MSVISION_FALLBACK_KERNELS", raising=False)


def rand(*shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def weight(*shape, fan_in, seed=1):
    return rand(*shape, seed=seed, scale=1.0 / math.sqrt(fan_in))


def t64(a):
    return torch.from_numpy(np.asarray(a)).double()


def t32(a):
    return torch.from_numpy(np.asarray(a)).float()


def run_graph(build, inputs, threads=1):
    """Builds a graph with one input per array (channels from the arrays), runs it, returns the outputs.

    build(g, *input_ids) returns one tensor id or a list of them (the graph outputs, in order)."""
    g = _C.Graph()
    ids = [g.input(channels=x.shape[1]) for x in inputs]
    outs = build(g, *ids)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    for o in outs:
        g.output(o)
    g.finalize()
    res = run(g, list(inputs), threads=threads)
    assert len(res) == len(outs)
    for r in res:
        assert r.dtype == np.float32 and r.flags.c_contiguous and r.ndim == 4
    return res


def close(actual, expected, rtol, atol, what=""):
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected.astype(np.float32), rtol=rtol, atol=atol, err_msg=what)


def exact(actual, expected, what=""):
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_array_equal(actual, expected, err_msg=what)


CONV_RTOL = 1e-5


def conv_atol(fan_in):
    return 2e-6 * math.sqrt(fan_in)


def behind_conv(g, x, c, seed=7):
    """A 3x3 convolution c -> c whose result is also an output, so the op after it sees the planner's layout.
    Returns (conv result id, torch function computing it)."""
    w = weight(c, c, 3, 3, fan_in=9 * c, seed=seed)
    y = g.conv2d(x, g.const(w), kernel=(3, 3), padding=(1, 1, 1, 1))
    g.output(y)
    return y, lambda tx: F.conv2d(tx, t64(w), padding=1)


def run_behind_conv(op, ref, x, conv_seed=7):
    """Runs op(g, conv(x)) and compares conv(x) (loosely) and returns (core result, torch reference on the
    float32 core conv output, so only the op's own error is measured)."""
    g = _C.Graph()
    i = g.input(channels=x.shape[1])
    y, _conv_ref = behind_conv(g, i, x.shape[1], conv_seed)
    g.output(op(g, y))
    g.finalize()
    conv_out, out = run(g, [x], threads=1)
    close(conv_out, _conv_ref(t64(x)), CONV_RTOL, conv_atol(9 * x.shape[1]), "conv before the op")
    return out, ref(t32(conv_out))


def torch_conv(x, w, b, stride, padding, dilation, groups):
    top, left, bottom, right = padding
    xp = F.pad(t64(x), (left, right, top, bottom))
    return F.conv2d(
        xp, t64(w), None if b is None else t64(b), stride=stride, dilation=dilation, groups=groups
    )


def torch_deconv(x, w, b, stride, padding, dilation, groups, output_padding):
    """ConvTranspose2d with asymmetric padding: the full (unpadded) result cropped by (t, l) / (b, r)."""
    top, left, bottom, right = padding
    full = F.conv_transpose2d(
        t64(x),
        t64(w),
        None if b is None else t64(b),
        stride=stride,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
    )
    return full[:, :, top : full.shape[2] - bottom, left : full.shape[3] - right]


# ---------------------------------------------------------------------------------------------- conv2d

# (N, C, H, W, O, kernel, stride, padding (t, l, b, r), dilation, groups, bias)
CONV_CASES = [
    (1, 3, 13, 17, 16, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, True),
    (2, 17, 7, 5, 5, (2, 2), (2, 2), (0, 1, 1, 0), (1, 1), 1, False),
    (1, 16, 32, 31, 16, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 16, True),  # depthwise
    (2, 32, 13, 17, 48, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, True),  # pointwise
    (1, 48, 7, 5, 48, (5, 5), (2, 2), (2, 1, 0, 2), (1, 1), 48, True),  # depthwise 5x5 strided, asymmetric
    (1, 5, 13, 17, 3, (7, 7), (1, 1), (3, 3, 3, 3), (1, 1), 1, True),
    (2, 16, 13, 17, 32, (3, 3), (2, 1), (2, 0, 1, 2), (2, 2), 4, True),  # grouped, dilated
    (1, 1, 1, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, True),
    (1, 3, 1, 1, 17, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, False),  # 1x1 image, 3x3 window
    (1, 17, 32, 31, 17, (3, 5), (1, 2), (2, 2, 2, 2), (2, 1), 1, True),
    (2, 48, 7, 5, 32, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 2, False),  # 2 groups of 24
    (1, 32, 13, 17, 32, (7, 7), (1, 1), (3, 3, 3, 3), (1, 1), 32, True),  # depthwise 7x7
]


def _conv_id(c):
    n, ch, h, w, o, k, s, p, d, grp = c[:10]
    pad = "".join(map(str, p))
    return f"n{n}c{ch}_{h}x{w}_o{o}_k{k[0]}x{k[1]}_s{s[0]}{s[1]}_p{pad}_d{d[0]}_g{grp}"


@pytest.mark.parametrize("case", CONV_CASES, ids=_conv_id)
def test_conv2d(case, layout):
    n, c, h, w_, o, k, s, p, d, grp, has_bias = case
    x = rand(n, c, h, w_)
    fan_in = c // grp * k[0] * k[1]
    wt = weight(o, c // grp, *k, fan_in=fan_in)
    b = rand(o, seed=2) if has_bias else None

    def build(g, i):
        bid = g.const(b) if has_bias else -1
        return g.conv2d(i, g.const(wt), bias=bid, kernel=k, stride=s, padding=p, dilation=d, groups=grp)

    (out,) = run_graph(build, [x])
    close(out, torch_conv(x, wt, b, s, p, d, grp), CONV_RTOL, conv_atol(fan_in), f"conv2d {case} {layout}")


def test_conv2d_chain_of_layouts(layout):
    """Conv reading another conv's (planner-chosen) layout: 3 -> 32 (3x3) -> 32 depthwise -> 17 (1x1)."""
    x = rand(2, 3, 13, 17)
    w1, b1 = weight(32, 3, 3, 3, fan_in=27), rand(32, seed=3)
    w2, b2 = weight(32, 1, 3, 3, fan_in=9, seed=4), rand(32, seed=5)
    w3 = weight(17, 32, 1, 1, fan_in=32, seed=6)

    def build(g, i):
        y = g.conv2d(i, g.const(w1), bias=g.const(b1), kernel=(3, 3), stride=(2, 2), padding=(1, 1, 1, 1))
        y = g.conv2d(y, g.const(w2), bias=g.const(b2), kernel=(3, 3), padding=(1, 1, 1, 1), groups=32)
        return g.conv2d(y, g.const(w3), kernel=(1, 1))

    (out,) = run_graph(build, [x])
    ref = F.conv2d(t64(x), t64(w1), t64(b1), stride=2, padding=1)
    ref = F.conv2d(ref, t64(w2), t64(b2), padding=1, groups=32)
    ref = F.conv2d(ref, t64(w3))
    close(out, ref, CONV_RTOL, 3 * conv_atol(32), f"conv chain {layout}")


# ---------------------------------------------------------------------------------------------- Winograd conv
# 3x3 stride-1 convolutions (dilation 1 or 2) with channels in multiples of 16 and at least 16 output tiles run as
# Winograd F(4x4, 3x3) (csrc/core/winograd.c around a oneDNN matmul). Its transforms scale values by up to ~100
# before the products are summed, so it rounds a few times more than the direct convolution: its bound is 3x the
# direct one's, and measured max errors are below 1/6 of it (4.7e-5 at fan-in 2304).
WINO_ATOL_PER_SQRT_FAN_IN = 6e-6

# (N, C, H, W, O, padding (t, l, b, r), dilation, relu post-op); bias except in the 75 x 90 case
WINO_CASES = [
    (1, 16, 16, 16, 16, (1, 1, 1, 1), 1, False),  # 16 x 16 pixels: the smallest map that takes Winograd
    (2, 32, 27, 33, 48, (1, 1, 1, 1), 1, True),  # batch 2, partial edge tiles, fused ReLU
    (1, 16, 75, 90, 32, (1, 1, 1, 1), 1, False),  # 19 x 23 tiles: three uneven chunks of the matmul; no bias
    (1, 128, 31, 26, 128, (2, 2, 2, 2), 2, True),  # dilated 2 (MogFace's SSH context)
    (2, 16, 33, 33, 16, (2, 2, 2, 2), 2, False),  # dilated: interleaved tiles, some past the edge
    (1, 32, 40, 37, 16, (0, 2, 1, 0), 2, False),  # dilated, asymmetric padding
    (1, 48, 30, 30, 64, (0, 0, 0, 0), 1, True),  # no padding
    (1, 256, 20, 20, 256, (1, 1, 1, 1), 1, False),  # many channels (fan-in 2304)
]


def _plans(capfd):
    """The plan lines MSVISION_VERBOSE printed since the last call."""
    return [line for line in capfd.readouterr().err.splitlines() if "plan step" in line]


@pytest.mark.parametrize("case", WINO_CASES, ids=lambda c: f"n{c[0]}c{c[1]}_{c[2]}x{c[3]}_o{c[4]}_d{c[6]}")
def test_winograd_conv(case, layout, monkeypatch, capfd):
    n, c, h, w_, o, p, d, relu = case
    monkeypatch.setenv("MSVISION_VERBOSE", "1")
    x = rand(n, c, h, w_)
    fan_in = c * 9
    wt, b = weight(o, c, 3, 3, fan_in=fan_in), None if (h, w_) == (75, 90) else rand(o, seed=2)

    def build(g, i):
        y = g.conv2d(
            i, g.const(wt), bias=-1 if b is None else g.const(b), kernel=(3, 3), padding=p, dilation=(d, d)
        )
        return g.eltwise(y, act="relu") if relu else y

    capfd.readouterr()
    (out,) = run_graph(build, [x])
    plans = _plans(capfd)
    assert sum("winograd convolution" in line for line in plans) == 1, plans
    assert not any("eltwise" in line for line in plans), plans  # the ReLU runs in the output transform
    ref = torch_conv(x, wt, b, (1, 1), p, (d, d), 1)
    ref = ref.clamp_min(0) if relu else ref
    close(
        out, ref, CONV_RTOL, WINO_ATOL_PER_SQRT_FAN_IN * math.sqrt(fan_in), f"winograd conv {case} {layout}"
    )


def test_winograd_reads_a_blocked_producer(monkeypatch, capfd):
    """A Winograd conv after a direct one that wrote nChw16c reads that layout in place (no reorder)."""
    monkeypatch.setenv("MSVISION_LAYOUT", "blocked")
    monkeypatch.setenv("MSVISION_VERBOSE", "1")
    x = rand(1, 16, 29, 35)
    w1, w2 = weight(32, 16, 1, 1, fan_in=16), weight(32, 32, 3, 3, fan_in=288, seed=3)

    def build(g, i):
        y = g.conv2d(i, g.const(w1), kernel=(1, 1))
        return g.conv2d(y, g.const(w2), kernel=(3, 3), padding=(1, 1, 1, 1))

    capfd.readouterr()
    (out,) = run_graph(build, [x])
    plans = _plans(capfd)
    assert any("winograd" in line for line in plans), plans
    if any(
        "nChw16c" in line for line in plans
    ):  # AVX-512 machines (elsewhere the producer may pick another layout)
        assert sum("reorder" in line for line in plans) == 2, plans  # only the graph's input and output edges
    ref = F.conv2d(F.conv2d(t64(x), t64(w1)), t64(w2), padding=1)
    close(out, ref, CONV_RTOL, WINO_ATOL_PER_SQRT_FAN_IN * math.sqrt(288) * 2, "blocked -> winograd")


def test_winograd_propagates_nan(monkeypatch, capfd):
    """A NaN input pixel gives NaN outputs (its whole 4x4 tile), also through the fused ReLU: never zeros."""
    monkeypatch.setenv("MSVISION_VERBOSE", "1")
    x = rand(1, 16, 24, 24)
    x[0, 3, 10, 13] = np.nan
    wt = weight(16, 16, 3, 3, fan_in=144)
    capfd.readouterr()
    (out,) = run_graph(
        lambda g, i: g.eltwise(g.conv2d(i, g.const(wt), kernel=(3, 3), padding=(1, 1, 1, 1)), act="relu"), [x]
    )
    assert any("winograd" in line for line in _plans(capfd))
    nan = np.isnan(out[0]).any(axis=0)
    assert nan[9:12, 12:15].all()  # every output the pixel reaches
    assert nan.sum() <= 16 * 4  # at most the tiles those outputs lie in
    assert np.isfinite(out[0][:, :8]).all()


@pytest.mark.parametrize(
    "why",
    [
        "disabled",
        "stride 2",
        "dilation 3",
        "channels not a multiple of 16",
        "small map",
        "thin map",
        "batch of tiny images",
        "binary post-op",
        "sigmoid post-op",
        "prelu post-op",
    ],
)
def test_direct_conv_where_winograd_does_not_apply(why, monkeypatch, capfd):
    monkeypatch.setenv("MSVISION_VERBOSE", "1")
    n, c, o, h, w_, stride, dil = 1, 32, 32, 24, 24, 1, 1
    if why == "disabled":
        monkeypatch.setenv("MSVISION_WINOGRAD", "0")
    elif why == "stride 2":
        stride = 2
    elif why == "dilation 3":
        dil = 3
    elif why == "channels not a multiple of 16":
        c = 24
    elif why == "small map":
        h = w_ = 15  # 225 output pixels
    elif why == "thin map":
        h, w_, dil = 2, 200, 2  # dilated 4x4 tiles, mostly past the two rows
    elif why == "batch of tiny images":
        n, h, w_ = 32, 3, 3
    x, r = rand(n, c, h, w_), rand(n, o, h // stride, w_ // stride, seed=4)
    wt = weight(o, c, 3, 3, fan_in=9 * c)
    slope = np.linspace(0.1, 0.3, o).astype(np.float32)

    def build(g, i, j):
        y = g.conv2d(
            i, g.const(wt), kernel=(3, 3), stride=(stride, stride), padding=(dil,) * 4, dilation=(dil, dil)
        )
        if why == "binary post-op":
            return g.binary(y, j, op="add")
        if why == "sigmoid post-op":
            return g.eltwise(y, act="sigmoid")
        return g.prelu(y, g.const(slope)) if why == "prelu post-op" else y

    capfd.readouterr()
    (out,) = run_graph(build, [x, r])
    plans = _plans(capfd)
    assert not any("winograd" in line for line in plans), plans
    ref = F.conv2d(t64(x), t64(wt), stride=stride, padding=dil, dilation=dil)
    if why == "binary post-op":
        ref = ref + t64(r)
    elif why == "sigmoid post-op":
        ref = torch.sigmoid(ref)
    elif why == "prelu post-op":
        ref = F.prelu(ref, t64(slope))
    close(out, ref, CONV_RTOL, conv_atol(9 * c), why)


# ---------------------------------------------------------------------------------------------- deconv2d

# (N, C, H, W, O, kernel, stride, padding, dilation, groups, output_padding, bias)
DECONV_CASES = [
    (1, 3, 7, 5, 5, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, (1, 1), True),
    (2, 16, 13, 17, 16, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), 1, (0, 0), False),
    (1, 16, 7, 5, 32, (5, 5), (2, 1), (2, 1, 1, 2), (1, 1), 4, (1, 0), True),  # grouped, asymmetric
    (1, 17, 1, 1, 3, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1, (0, 0), True),
    (1, 32, 7, 5, 32, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 32, (1, 1), True),  # depthwise
    (1, 5, 7, 5, 3, (3, 3), (1, 1), (1, 2, 2, 1), (2, 2), 1, (0, 0), False),  # dilated
    (2, 3, 7, 5, 3, (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), 1, (1, 1), True),  # output padding beyond padding
    (1, 48, 13, 17, 16, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, (0, 0), True),
    (1, 1, 13, 17, 1, (7, 7), (2, 2), (3, 3, 3, 3), (1, 1), 1, (1, 1), True),
]


@pytest.mark.parametrize("case", DECONV_CASES, ids=lambda c: f"{_conv_id(c)}_op{c[10][0]}{c[10][1]}")
def test_deconv2d(case, layout):
    n, c, h, w_, o, k, s, p, d, grp, op, has_bias = case
    x = rand(n, c, h, w_)
    fan_in = c // grp * k[0] * k[1]
    wt = weight(c, o // grp, *k, fan_in=fan_in)  # torch ConvTranspose2d layout (I, O/G, kh, kw)
    b = rand(o, seed=2) if has_bias else None

    def build(g, i):
        bid = g.const(b) if has_bias else -1
        return g.deconv2d(
            i, g.const(wt), bias=bid, kernel=k, stride=s, padding=p, dilation=d, groups=grp, output_padding=op
        )

    (out,) = run_graph(build, [x])
    close(
        out,
        torch_deconv(x, wt, b, s, p, d, grp, op),
        CONV_RTOL,
        conv_atol(fan_in),
        f"deconv2d {case} {layout}",
    )


# ---------------------------------------------------------------------------------------------- linear


@pytest.mark.parametrize(
    "n,c,h,w_,o,has_bias", [(2, 3, 7, 5, 16, True), (1, 17, 1, 1, 5, True), (2, 1, 13, 17, 3, False)]
)
def test_linear(n, c, h, w_, o, has_bias, layout):
    x = rand(n, c, h, w_)
    fan_in = c * h * w_
    wt = weight(o, fan_in, fan_in=fan_in)
    b = rand(o, seed=2) if has_bias else None
    (out,) = run_graph(lambda g, i: g.linear(i, g.const(wt), bias=g.const(b) if has_bias else -1), [x])
    ref = F.linear(t64(x).reshape(n, -1), t64(wt), bias=None if b is None else t64(b)).reshape(n, o, 1, 1)
    close(out, ref, CONV_RTOL, conv_atol(fan_in), f"linear {layout}")


def test_linear_after_conv(layout):
    """Linear flattening a conv result that lives in the planner's layout (flatten order must be NCHW)."""
    x = rand(2, 16, 7, 5)
    wl = weight(5, 16 * 7 * 5, fan_in=16 * 35, seed=3)
    out, ref = run_behind_conv(
        lambda g, y: g.linear(y, g.const(wl)),
        lambda ty: F.linear(ty.reshape(2, -1), t32(wl)).reshape(2, 5, 1, 1),
        x,
    )
    close(out, ref, CONV_RTOL, conv_atol(16 * 35), f"linear after conv {layout}")


# ---------------------------------------------------------------------------------------------- eltwise

TRANSCENDENTAL = (1e-5, 1e-6)
EXACTISH = (1e-6, 1e-6)

# (name, alpha, beta, torch function, (rtol, atol))
ACTS = [
    ("relu", 0.0, 0.0, F.relu, EXACTISH),
    ("leaky_relu", 0.1, 0.0, lambda t: F.leaky_relu(t, 0.1), EXACTISH),
    ("sigmoid", 0.0, 0.0, torch.sigmoid, TRANSCENDENTAL),
    ("tanh", 0.0, 0.0, torch.tanh, TRANSCENDENTAL),
    ("gelu_erf", 0.0, 0.0, lambda t: F.gelu(t, approximate="none"), TRANSCENDENTAL),
    ("gelu_tanh", 0.0, 0.0, lambda t: F.gelu(t, approximate="tanh"), TRANSCENDENTAL),
    ("swish", 1.0, 0.0, F.silu, TRANSCENDENTAL),
    ("swish", 1.5, 0.0, lambda t: t * torch.sigmoid(1.5 * t), TRANSCENDENTAL),
    ("hardswish", 0.0, 0.0, F.hardswish, EXACTISH),
    ("clip", -0.5, 0.7, lambda t: torch.clamp(t, -0.5, 0.7), EXACTISH),
    ("elu", 1.0, 0.0, F.elu, TRANSCENDENTAL),
    ("elu", 0.5, 0.0, lambda t: F.elu(t, 0.5), TRANSCENDENTAL),
    ("exp", 0.0, 0.0, torch.exp, TRANSCENDENTAL),
    ("linear", 2.0, -0.5, lambda t: 2.0 * t - 0.5, EXACTISH),
]
ACT_IDS = [f"{a[0]}_{a[1]}" for a in ACTS]


@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
@pytest.mark.parametrize("shape", [(2, 17, 7, 5), (1, 1, 1, 1), (1, 48, 13, 17)], ids=str)
def test_eltwise(act, shape):
    name, alpha, beta, fn, (rtol, atol) = act
    x = rand(*shape, scale=3.0)  # covers the hardswish / clip / gelu knees
    (out,) = run_graph(lambda g, i: g.eltwise(i, act=name, alpha=alpha, beta=beta), [x])
    close(out, fn(t32(x)), rtol, atol, f"eltwise {name} {shape}")


@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
def test_eltwise_after_conv(act, layout):
    """Unfused eltwise reading a conv result in the planner's layout (32 channels: blocked is nChw16c)."""
    name, alpha, beta, fn, (rtol, atol) = act
    out, ref = run_behind_conv(
        lambda g, y: g.eltwise(y, act=name, alpha=alpha, beta=beta), fn, rand(1, 32, 7, 5)
    )
    close(out, ref, rtol, atol, f"eltwise {name} after conv {layout}")


def test_eltwise_extremes():
    """exp overflows to inf like torch (and may flush denormal results to 0); sigmoid saturates cleanly."""
    x = np.array([-100.0, -20.0, 0.0, 20.0, 88.0, 89.0, 100.0], np.float32).reshape(1, 7, 1, 1)
    out_exp, out_sig = run_graph(lambda g, i: [g.eltwise(i, act="exp"), g.eltwise(i, act="sigmoid")], [x])
    close(out_exp, torch.exp(t32(x)), 1e-5, 1e-37, "exp extremes")
    close(out_sig, torch.sigmoid(t32(x)), 1e-5, 1e-6, "sigmoid extremes")


# ---------------------------------------------------------------------------------------------- binary

BINOPS = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
    "max": torch.maximum,
    "min": torch.minimum,
}


def operand(shape, seed=5):
    """Values with |v| in [0.5, 2] (safe divisors), random sign."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)).astype(np.float32)


# (b's shape given a's (N, C, H, W), whether b is a graph input (activation) or a constant)
BROADCASTS = [
    ("full_act", lambda n, c, h, w: (n, c, h, w), True),
    ("n1hw_act", lambda n, c, h, w: (n, 1, h, w), True),
    ("1chw_act", lambda n, c, h, w: (1, c, h, w), True),
    ("nc11_act", lambda n, c, h, w: (n, c, 1, 1), True),
    ("1c11_const", lambda n, c, h, w: (1, c, 1, 1), False),
    ("1111_const", lambda n, c, h, w: (1, 1, 1, 1), False),
    ("1chw_const", lambda n, c, h, w: (1, c, h, w), False),
    ("11hw_const", lambda n, c, h, w: (1, 1, h, w), False),
]


@pytest.mark.parametrize("bc", BROADCASTS, ids=[b[0] for b in BROADCASTS])
@pytest.mark.parametrize("op", list(BINOPS))
def test_binary(op, bc):
    a = rand(2, 17, 7, 5)
    b = operand(bc[1](*a.shape))
    if bc[2]:
        (out,) = run_graph(lambda g, i, j: g.binary(i, j, op=op), [a, b])
    else:
        (out,) = run_graph(lambda g, i: g.binary(i, g.const(b), op=op), [a])
    close(out, BINOPS[op](t32(a), t32(b)), 1e-6, 1e-6, f"binary {op} {bc[0]}")


@pytest.mark.parametrize("op", list(BINOPS))
@pytest.mark.parametrize("bc", [BROADCASTS[0], BROADCASTS[3], BROADCASTS[4]], ids=lambda b: b[0])
def test_binary_after_conv(op, bc, layout):
    """Unfused binary whose first operand is a conv result in the planner's layout (second: NCHW input or
    constant)."""
    x = rand(2, 32, 7, 5)
    b = operand(bc[1](*x.shape))
    w = weight(32, 32, 3, 3, fan_in=288)
    g = _C.Graph()
    i = g.input(channels=32)
    j = g.input(channels=b.shape[1]) if bc[2] else g.const(b)
    y = g.conv2d(i, g.const(w), kernel=(3, 3), padding=(1, 1, 1, 1))
    g.output(y)
    g.output(g.binary(y, j, op=op))
    g.finalize()
    conv_out, out = run(g, [x, b] if bc[2] else [x], threads=1)
    close(out, BINOPS[op](t32(conv_out), t32(b)), 1e-6, 1e-6, f"binary {op} {bc[0]} after conv {layout}")


def test_binary_same_operand_twice():
    """x op x (not fusable into x's producer)."""
    x = rand(1, 5, 7, 5)
    w = weight(5, 5, 1, 1, fan_in=5)

    def build(g, i):
        y = g.conv2d(i, g.const(w), kernel=(1, 1))
        return g.binary(y, y, op="mul")

    (out,) = run_graph(build, [x])
    y = F.conv2d(t64(x), t64(w))
    close(out, y * y, CONV_RTOL, 1e-5, "conv(x) * conv(x)")


# ---------------------------------------------------------------------------------------------- fused chains


def _conv3(g, i, w, b=None):
    return g.conv2d(i, g.const(w), bias=-1 if b is None else g.const(b), kernel=(3, 3), padding=(1, 1, 1, 1))


FUSED = ["add_residual_clip", "relu", "mul_const_add_act", "sub_div", "sigmoid_mul_input", "five_post_ops",
         "conv_plus_conv_relu", "spatial_const", "gap_operand", "hardswish_linear", "max_min"]  # fmt: skip


@pytest.mark.parametrize("chain", FUSED)
@pytest.mark.parametrize("c", [16, 17])
def test_fused_conv_chains(chain, c, layout):
    """conv followed by binary/eltwise ops that finalize() folds into oneDNN post-ops."""
    n, h, w_ = 2, 13, 17
    x = rand(n, c, h, w_)
    wt, b = weight(c, c, 3, 3, fan_in=9 * c), rand(c, seed=2)
    w2 = weight(c, c, 3, 3, fan_in=9 * c, seed=9)
    beta = rand(1, c, 1, 1, seed=3)
    spatial = rand(1, 1, h, w_, seed=4)
    divisor = operand((1, c, 1, 1), seed=6)
    tx = t64(x)
    conv = F.conv2d(tx, t64(wt), t64(b), padding=1)

    if chain == "add_residual_clip":  # NAFNet-style: clip(conv(x) + x)

        def build(g, i):
            return g.eltwise(g.binary(_conv3(g, i, wt, b), i, op="add"), act="clip", alpha=-0.5, beta=0.5)

        ref = torch.clamp(conv + tx, -0.5, 0.5)
    elif chain == "relu":

        def build(g, i):
            return g.eltwise(_conv3(g, i, wt, b), act="relu")

        ref = F.relu(conv)
    elif chain == "mul_const_add_act":  # y * beta + x

        def build(g, i):
            return g.binary(g.binary(_conv3(g, i, wt, b), g.const(beta), op="mul"), i, op="add")

        ref = conv * t64(beta) + tx
    elif chain == "sub_div":  # (conv(x) - x) / d: the operand order of non-commutative post-ops

        def build(g, i):
            return g.binary(g.binary(_conv3(g, i, wt, b), i, op="sub"), g.const(divisor), op="div")

        ref = (conv - tx) / t64(divisor)
    elif chain == "sigmoid_mul_input":  # gating: sigmoid(conv(x)) * x

        def build(g, i):
            return g.binary(g.eltwise(_conv3(g, i, wt, b), act="sigmoid"), i, op="mul")

        ref = torch.sigmoid(conv) * tx
    elif chain == "five_post_ops":  # more than MSV_MAX_POST_OPS (4) consumers in a chain

        def build(g, i):
            y = g.eltwise(_conv3(g, i, wt, b), act="linear", alpha=0.5, beta=0.25)
            y = g.binary(y, i, op="add")
            y = g.eltwise(y, act="leaky_relu", alpha=0.2)
            y = g.binary(y, g.const(beta), op="mul")
            return g.eltwise(y, act="tanh")

        ref = torch.tanh(F.leaky_relu((conv * 0.5 + 0.25) + tx, 0.2) * t64(beta))
    elif chain == "conv_plus_conv_relu":  # operand is another conv's result (in its own layout)

        def build(g, i):
            return g.eltwise(g.binary(_conv3(g, i, wt, b), _conv3(g, i, w2), op="add"), act="relu")

        ref = F.relu(conv + F.conv2d(tx, t64(w2), padding=1))
    elif chain == "spatial_const":  # per-pixel constant broadcast over N and C

        def build(g, i):
            return g.binary(_conv3(g, i, wt, b), g.const(spatial), op="mul")

        ref = conv * t64(spatial)
    elif chain == "gap_operand":  # per-(n, c) activation operand, as in squeeze-excitation / NAFNet's SCA

        def build(g, i):
            return g.binary(_conv3(g, i, wt, b), g.global_avg_pool(i), op="mul")

        ref = conv * tx.mean((2, 3), keepdim=True)
    elif chain == "hardswish_linear":

        def build(g, i):
            return g.eltwise(
                g.eltwise(_conv3(g, i, wt, b), act="hardswish"), act="linear", alpha=-1.0, beta=0.0
            )

        ref = -F.hardswish(conv)
    else:  # max_min

        def build(g, i):
            return g.binary(g.binary(_conv3(g, i, wt, b), i, op="max"), g.const(beta), op="min")

        ref = torch.minimum(torch.maximum(conv, tx), t64(beta))

    (out,) = run_graph(build, [x])
    close(out, ref, CONV_RTOL, conv_atol(9 * c) + 5e-6, f"fused {chain} c={c} {layout}")


@pytest.mark.parametrize("op", ["add", "div", "max"])
@pytest.mark.parametrize("bc", BROADCASTS, ids=[b[0] for b in BROADCASTS])
def test_fused_conv_broadcast_operand(op, bc, layout):
    """conv -> binary post-op with every operand broadcast (graph input or constant), then relu."""
    x = rand(2, 17, 7, 5)
    wt = weight(17, 17, 3, 3, fan_in=153)
    b = operand(bc[1](*x.shape))

    def build(g, i, *j):
        return g.eltwise(g.binary(_conv3(g, i, wt), j[0] if j else g.const(b), op=op), act="relu")

    (out,) = run_graph(build, [x, b] if bc[2] else [x])
    ref = F.relu(BINOPS[op](F.conv2d(t64(x), t64(wt), padding=1), t64(b)))
    close(out, ref, CONV_RTOL, conv_atol(153), f"fused conv {op} {bc[0]} {layout}")


def test_fused_deconv_and_linear_chains(layout):
    x = rand(1, 16, 7, 5)
    wd, bd = weight(16, 8, 2, 2, fan_in=64), rand(8, seed=2)
    wl = weight(6, 16 * 35, fan_in=16 * 35, seed=3)
    shift = rand(1, 8, 1, 1, seed=4)

    def build(g, i):
        d = g.deconv2d(i, g.const(wd), bias=g.const(bd), kernel=(2, 2), stride=(2, 2))
        d = g.eltwise(g.binary(d, g.const(shift), op="add"), act="leaky_relu", alpha=0.1)
        lin = g.eltwise(g.linear(i, g.const(wl)), act="gelu_erf")
        return [d, lin]

    d, lin = run_graph(build, [x])
    ref_d = F.leaky_relu(F.conv_transpose2d(t64(x), t64(wd), t64(bd), stride=2) + t64(shift), 0.1)
    ref_l = F.gelu(F.linear(t64(x).reshape(1, -1), t64(wl))).reshape(1, 6, 1, 1)
    close(d, ref_d, CONV_RTOL, conv_atol(64) + 1e-6, f"deconv chain {layout}")
    close(lin, ref_l, CONV_RTOL, conv_atol(16 * 35) + 1e-6, f"linear chain {layout}")


def test_fused_binary_chain():
    """binary -> eltwise -> binary: the later ops are post-ops of the first binary."""
    a, b, c = rand(2, 17, 7, 5), operand((2, 17, 7, 5)), rand(1, 17, 1, 1, seed=3)

    def build(g, i, j):
        return g.binary(g.eltwise(g.binary(i, j, op="div"), act="relu"), g.const(c), op="sub")

    (out,) = run_graph(build, [a, b])
    close(out, F.relu(t32(a) / t32(b)) - t32(c), 1e-6, 1e-6, "binary chain")


def test_intermediate_used_twice_is_not_fused(layout):
    """A conv result that is both an output and a post-op candidate keeps its own value."""
    x = rand(1, 16, 13, 17)
    w = weight(16, 16, 3, 3, fan_in=144)

    def build(g, i):
        y = _conv3(g, i, w)
        return [y, g.eltwise(y, act="relu"), g.binary(y, i, op="add")]

    y, r, s = run_graph(build, [x])
    ref = F.conv2d(t64(x), t64(w), padding=1)
    atol = conv_atol(144)
    close(y, ref, CONV_RTOL, atol, "conv")
    close(r, F.relu(ref), CONV_RTOL, atol, "relu(conv)")
    close(s, ref + t64(x), CONV_RTOL, atol, "conv + x")


def test_nafnet_block(layout):
    """NAFNet's block: LN -> 1x1 -> dw3x3 -> SimpleGate -> SCA (gap, 1x1, mul) -> 1x1 -> x + y*beta, then the
    FFN half (LN -> 1x1 -> SimpleGate -> 1x1 -> y + z*gamma)."""
    c, dw = 16, 32
    x = rand(2, c, 13, 17)
    p = {
        "n1w": rand(c, seed=10) * 0.2 + 1,
        "n1b": rand(c, seed=11) * 0.1,
        "c1w": weight(dw, c, 1, 1, fan_in=c, seed=12),
        "c1b": rand(dw, seed=13) * 0.1,
        "c2w": weight(dw, 1, 3, 3, fan_in=9, seed=14),
        "c2b": rand(dw, seed=15) * 0.1,
        "scaw": weight(dw // 2, dw // 2, 1, 1, fan_in=dw // 2, seed=16),
        "scab": rand(dw // 2, seed=17) * 0.1,
        "c3w": weight(c, dw // 2, 1, 1, fan_in=dw // 2, seed=18),
        "c3b": rand(c, seed=19) * 0.1,
        "beta": rand(1, c, 1, 1, seed=20),
        "n2w": rand(c, seed=21) * 0.2 + 1,
        "n2b": rand(c, seed=22) * 0.1,
        "c4w": weight(2 * c, c, 1, 1, fan_in=c, seed=23),
        "c4b": rand(2 * c, seed=24) * 0.1,
        "c5w": weight(c, c, 1, 1, fan_in=c, seed=25),
        "c5b": rand(c, seed=26) * 0.1,
        "gamma": rand(1, c, 1, 1, seed=27),
    }

    def build(g, i):
        k = {name: g.const(v) for name, v in p.items()}
        y = g.layer_norm(i, scale=k["n1w"], shift=k["n1b"], eps=1e-6)
        y = g.conv2d(y, k["c1w"], bias=k["c1b"], kernel=(1, 1))
        y = g.conv2d(y, k["c2w"], bias=k["c2b"], kernel=(3, 3), padding=(1, 1, 1, 1), groups=dw)
        y = g.simple_gate(y)
        y = g.binary(y, g.conv2d(g.global_avg_pool(y), k["scaw"], bias=k["scab"], kernel=(1, 1)), op="mul")
        y = g.conv2d(y, k["c3w"], bias=k["c3b"], kernel=(1, 1))
        y = g.binary(i, g.binary(y, k["beta"], op="mul"), op="add")
        z = g.layer_norm(y, scale=k["n2w"], shift=k["n2b"], eps=1e-6)
        z = g.simple_gate(g.conv2d(z, k["c4w"], bias=k["c4b"], kernel=(1, 1)))
        z = g.conv2d(z, k["c5w"], bias=k["c5b"], kernel=(1, 1))
        return g.binary(y, g.binary(z, k["gamma"], op="mul"), op="add")

    (out,) = run_graph(build, [x])
    q = {name: t64(v) for name, v in p.items()}
    tx = t64(x)
    y = F.conv2d(ln2d(tx, q["n1w"], q["n1b"], 1e-6), q["c1w"], q["c1b"])
    y = F.conv2d(y, q["c2w"], q["c2b"], padding=1, groups=dw)
    y = y[:, : dw // 2] * y[:, dw // 2 :]
    y = y * F.conv2d(F.adaptive_avg_pool2d(y, 1), q["scaw"], q["scab"])
    y = tx + F.conv2d(y, q["c3w"], q["c3b"]) * q["beta"]
    z = F.conv2d(ln2d(y, q["n2w"], q["n2b"], 1e-6), q["c4w"], q["c4b"])
    z = F.conv2d(z[:, :c] * z[:, c:], q["c5w"], q["c5b"])
    close(out, y + z * q["gamma"], CONV_RTOL, 2e-5, f"NAFNet block {layout}")


# ---------------------------------------------------------------------------------------------- prelu


@pytest.mark.parametrize("c,shared", [(17, False), (17, True), (1, False), (48, False), (3, True)])
@pytest.mark.parametrize("n,h,w_", [(2, 7, 5), (1, 1, 1)])
def test_prelu(c, shared, n, h, w_):
    x = rand(n, c, h, w_)
    slope = rand(1 if shared else c, seed=3) * 0.5
    (out,) = run_graph(lambda g, i: g.prelu(i, g.const(slope)), [x])
    close(out, F.prelu(t32(x), t32(slope)), 1e-6, 1e-6, f"prelu c={c} shared={shared}")


@pytest.mark.parametrize("c", [16, 17])
def test_prelu_after_conv(c, layout):
    slope = rand(c, seed=3) * 0.5
    out, ref = run_behind_conv(
        lambda g, y: g.prelu(y, g.const(slope)), lambda t: F.prelu(t, t32(slope)), rand(1, c, 7, 5)
    )
    close(out, ref, 1e-6, 1e-6, f"prelu after conv {layout}")


def test_prelu_4d_slope():
    x = rand(1, 3, 4, 4)
    slope = np.array([0.1, 0.2, 0.3], np.float32)
    (out,) = run_graph(lambda g, i: g.prelu(i, g.const(slope.reshape(1, 3, 1, 1))), [x])
    close(out, F.prelu(t32(x), t32(slope)), 1e-6, 1e-6, "prelu with a (1, C, 1, 1) slope")


# ---------------------------------------------------------------------------------------------- layer norm


def ln2d(x, w, b, eps):
    """NAFNet's LayerNorm2d."""
    mu = x.mean(1, keepdim=True)
    var = ((x - mu) ** 2).mean(1, keepdim=True)
    y = (x - mu) / torch.sqrt(var + eps)
    if w is not None:
        y = w.reshape(1, -1, 1, 1) * y
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y


@pytest.mark.parametrize("c", [1, 3, 16, 17, 32, 48])
@pytest.mark.parametrize("affine", ["both", "scale", "shift", "none"])
def test_layer_norm(c, affine):
    x = rand(2, c, 7, 5, scale=2.0) + 0.5
    sc = rand(c, seed=2) if affine in ("both", "scale") else None
    sh = rand(c, seed=3) if affine in ("both", "shift") else None

    def build(g, i):
        return g.layer_norm(
            i, scale=-1 if sc is None else g.const(sc), shift=-1 if sh is None else g.const(sh), eps=1e-6
        )

    (out,) = run_graph(build, [x])
    ref = ln2d(t64(x), None if sc is None else t64(sc), None if sh is None else t64(sh), 1e-6)
    close(out, ref, 1e-5, 1e-5, f"layer norm c={c} {affine}")


@pytest.mark.parametrize("c", [16, 17, 32, 48])
def test_layer_norm_after_conv(c, layout):
    sc, sh = rand(c, seed=2), rand(c, seed=3)
    out, ref = run_behind_conv(
        lambda g, y: g.layer_norm(y, scale=g.const(sc), shift=g.const(sh), eps=1e-5),
        lambda t: ln2d(t.double(), t64(sc), t64(sh), 1e-5),
        rand(1, c, 13, 17),
    )
    close(out, ref, 1e-5, 1e-5, f"layer norm after conv c={c} {layout}")


def test_layer_norm_large_eps_and_constant_input():
    x = np.full((1, 5, 3, 3), 7.0, np.float32)
    x[0, :, 1, 1] = np.arange(5)
    (out,) = run_graph(lambda g, i: g.layer_norm(i, scale=None, shift=None, eps=0.5), [x])
    close(out, ln2d(t64(x), None, None, 0.5), 1e-5, 1e-5, "layer norm eps=0.5")


# ---------------------------------------------------------------------------------------------- pooling

POOL_KINDS = {"max": None, "avg_include_pad": True, "avg_exclude_pad": False}

# (N, C, H, W, kernel, stride, symmetric padding (ph, pw), ceil_mode)
POOL_CASES = [
    (2, 17, 13, 17, (3, 3), (2, 2), (1, 1), False),
    (2, 17, 13, 17, (3, 3), (2, 2), (1, 1), True),
    (1, 3, 7, 5, (2, 2), (2, 2), (0, 0), False),
    (1, 3, 7, 5, (2, 2), (2, 2), (0, 0), True),
    (1, 16, 13, 17, (3, 3), (1, 1), (1, 1), False),
    (1, 5, 13, 17, (3, 2), (2, 1), (1, 0), True),
    (1, 5, 7, 5, (5, 5), (3, 3), (2, 2), True),
    (1, 48, 32, 31, (7, 7), (2, 2), (3, 3), False),
    (1, 1, 1, 1, (1, 1), (1, 1), (0, 0), False),
    (1, 3, 6, 6, (3, 3), (2, 2), (0, 0), False),
]
# Extra ceil_mode cases whose last window hangs past the input *and* its bottom/right padding.
POOL_CASES += [
    (1, 3, 6, 6, (3, 3), (2, 2), (0, 0), True),
    (2, 17, 13, 17, (2, 2), (2, 2), (0, 0), True),
]


def _pool_overhangs(case):
    """ceil_mode cases whose last window hangs past input + padding (torch's include-pad divisor only counts
    the part of the window inside input + padding)."""
    _, _, h, w, k, s, p, ceil = case
    if not ceil:
        return False
    for size, kk, ss, pp in ((h, k[0], s[0], p[0]), (w, k[1], s[1], p[1])):
        o = -(-(size + 2 * pp - kk) // ss) + 1
        if (o - 1) * ss >= size + pp:
            o -= 1
        if (o - 1) * ss + kk > size + 2 * pp:
            return True
    return False


def _pool_ref(kind, x, k, s, p, ceil):
    tx = t32(x)
    if kind == "max":
        return F.max_pool2d(tx, k, s, p, ceil_mode=ceil)
    return F.avg_pool2d(tx, k, s, p, ceil_mode=ceil, count_include_pad=POOL_KINDS[kind])


def _pool_case_id(c):
    return "n{}c{}_{}x{}_k{}x{}_s{}{}_p{}{}_{}".format(
        *c[:4], *c[4], *c[5], *c[6], "ceil" if c[7] else "floor"
    )


def _pool_param(kind, case):
    return pytest.param(kind, case, id=f"{kind}-{_pool_case_id(case)}")


def _include_pad_unsupported(kind, case):
    """count_include_pad with ceil-mode overhang and padding: PyTorch counts the padding but not the overhang,
    which oneDNN cannot express; msvision refuses it at build time instead of answering wrongly."""
    p = case[6]
    return kind == "avg_include_pad" and _pool_overhangs(case) and (p[0] or p[1])


@pytest.mark.parametrize("kind,case", [_pool_param(k, c) for k in POOL_KINDS for c in POOL_CASES])
def test_pool2d(kind, case):
    n, c, h, w_, k, s, p, ceil = case
    x = rand(n, c, h, w_)
    pad = (p[0], p[1], p[0], p[1])
    if _include_pad_unsupported(kind, case):
        with pytest.raises(NotImplementedError, match="count_include_pad"):
            run_graph(
                lambda g, i: g.pool2d(i, kind=kind, kernel=k, ceil_mode=ceil, stride=s, padding=pad), [x]
            )
        return
    (out,) = run_graph(
        lambda g, i: g.pool2d(i, kind=kind, kernel=k, ceil_mode=ceil, stride=s, padding=pad), [x]
    )
    ref = _pool_ref(kind, x, k, s, p, ceil)
    if kind == "max":
        exact(out, ref, f"pool {kind} {case}")
    else:
        close(out, ref, 1e-6, 1e-6, f"pool {kind} {case}")


@pytest.mark.parametrize("kind", list(POOL_KINDS))
def test_pool2d_asymmetric_padding(kind):
    """Padding (t, l, b, r) = (1, 0, 0, 1), which torch's pooling cannot express: reference via F.pad."""
    x = rand(2, 5, 7, 6)
    (out,) = run_graph(
        lambda g, i: g.pool2d(
            i, kind=kind, kernel=(3, 2), ceil_mode=False, stride=(2, 2), padding=(1, 0, 0, 1)
        ),
        [x],
    )
    tx = t64(x)
    if kind == "max":
        ref = F.max_pool2d(F.pad(tx, (0, 1, 1, 0), value=-math.inf), (3, 2), (2, 2))
    elif kind == "avg_include_pad":
        ref = F.avg_pool2d(F.pad(tx, (0, 1, 1, 0)), (3, 2), (2, 2))
    else:
        ones = F.pad(torch.ones_like(tx), (0, 1, 1, 0))
        ref = F.avg_pool2d(F.pad(tx, (0, 1, 1, 0)), (3, 2), (2, 2)) / F.avg_pool2d(ones, (3, 2), (2, 2))
    close(out, ref, 1e-6, 1e-6, f"pool {kind} asymmetric")


@pytest.mark.parametrize("kind", list(POOL_KINDS))
def test_pool2d_after_conv(kind, layout):
    out, ref = run_behind_conv(
        lambda g, y: g.pool2d(
            y, kind=kind, kernel=(3, 3), ceil_mode=True, stride=(2, 2), padding=(1, 1, 1, 1)
        ),
        lambda t: _pool_ref(kind, t.numpy(), (3, 3), (2, 2), (1, 1), True),
        rand(1, 32, 13, 17),
    )
    close(out, ref, 1e-6, 1e-6, f"pool {kind} after conv {layout}")


@pytest.mark.parametrize("shape", [(2, 17, 7, 5), (1, 1, 1, 1), (1, 48, 32, 31), (2, 3, 13, 17)], ids=str)
def test_global_avg_pool(shape):
    x = rand(*shape)
    (out,) = run_graph(lambda g, i: g.global_avg_pool(i), [x])
    close(out, F.adaptive_avg_pool2d(t64(x), 1), 1e-6, 1e-6, f"global avg pool {shape}")


@pytest.mark.parametrize("c", [16, 17])
def test_global_avg_pool_after_conv(c, layout):
    out, ref = run_behind_conv(
        lambda g, y: g.global_avg_pool(y), lambda t: F.adaptive_avg_pool2d(t, 1), rand(2, c, 13, 17)
    )
    close(out, ref, 1e-6, 1e-6, f"global avg pool after conv {layout}")


# ---------------------------------------------------------------------------------------------- softmax


@pytest.mark.parametrize("shape", [(2, 17, 7, 5), (1, 1, 7, 5), (1, 3, 1, 1), (1, 48, 13, 17)], ids=str)
def test_softmax(shape):
    x = rand(*shape, scale=4.0)
    (out,) = run_graph(lambda g, i: g.softmax(i), [x])
    close(out, F.softmax(t64(x), dim=1), 1e-5, 1e-6, f"softmax {shape}")


def test_softmax_large_logits():
    x = np.array([1000.0, 999.0, -1000.0, 0.0], np.float32).reshape(1, 4, 1, 1)
    (out,) = run_graph(lambda g, i: g.softmax(i), [x])
    assert np.isfinite(out).all()
    close(out, F.softmax(t64(x), dim=1), 1e-5, 1e-6, "softmax of large logits")


@pytest.mark.parametrize("c", [16, 17])
def test_softmax_after_conv(c, layout):
    out, ref = run_behind_conv(
        lambda g, y: g.softmax(y), lambda t: F.softmax(t.double(), dim=1), rand(1, c, 7, 5)
    )
    close(out, ref, 1e-5, 1e-6, f"softmax after conv {layout}")


# ---------------------------------------------------------------------------------------------- resize

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


# ------------------------------------------------------------------------------ concat / pad / slice


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


@pytest.mark.parametrize("c1,c2", [(16, 32), (17, 5), (16, 16)])
def test_concat_mixed_layouts(c1, c2, layout):
    """Concat of a conv result (planner layout), a graph input (NCHW) and a second conv result."""
    x = rand(2, c1, 7, 5)
    y = rand(2, c2, 7, 5, seed=4)
    w1 = weight(c1, c1, 3, 3, fan_in=9 * c1)
    w2 = weight(c2, c2, 1, 1, fan_in=c2, seed=5)

    def build(g, i, j):
        a = _conv3(g, i, w1)
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


# ---------------------------------------------------------------------------------------------- graphs


def test_two_outputs_and_output_order():
    x = rand(2, 16, 7, 5)
    w = weight(8, 16, 3, 3, fan_in=144)

    def build(g, i):
        y = _conv3(g, i, w)
        return [g.global_avg_pool(y), g.eltwise(y, act="relu"), i]  # an input can also be an output

    a, b, c = run_graph(build, [x])
    ref = F.conv2d(t64(x), t64(w), padding=1)
    assert a.shape == (2, 8, 1, 1) and b.shape == (2, 8, 7, 5)
    close(a, ref.mean((2, 3), keepdim=True), CONV_RTOL, conv_atol(144), "output 0")
    close(b, F.relu(ref), CONV_RTOL, conv_atol(144), "output 1")
    exact(c, x, "output 2 (the input)")


def test_two_inputs_two_outputs():
    a, b = rand(1, 3, 7, 5), rand(1, 5, 7, 5, seed=2)
    outs = run_graph(lambda g, i, j: [g.concat([j, i]), g.softmax(i)], [a, b])
    exact(outs[0], np.concatenate([b, a], axis=1), "concat of two inputs")
    close(outs[1], F.softmax(t64(a), 1), 1e-5, 1e-6, "softmax")


def _shape_graph():
    """conv 3x3 stride 2 -> relu -> bilinear x2 -> + input-sized branch; valid for any H, W >= 1."""
    w, b = weight(8, 3, 3, 3, fan_in=27), rand(8, seed=2)
    g = _C.Graph()
    i = g.input(channels=3)
    y = g.eltwise(
        g.conv2d(i, g.const(w), bias=g.const(b), kernel=(3, 3), stride=(2, 2), padding=(1, 1, 1, 1)),
        act="relu",
    )
    g.output(y)
    g.output(g.global_avg_pool(y))
    g.finalize()

    def ref(x):
        r = F.relu(F.conv2d(t64(x), t64(w), t64(b), stride=2, padding=1))
        return r, r.mean((2, 3), keepdim=True)

    return g, ref


def test_many_shapes_plan_cache(layout):
    """10 distinct shapes (> the 8 cached plans), then the first again; re-running a cached shape creates no
    primitive; every result is right."""
    g, ref = _shape_graph()
    session = _C.Session(g, threads=1)
    shapes = [(1, 3, 7, 5), (2, 3, 7, 5), (1, 3, 13, 17), (1, 3, 1, 1), (2, 3, 32, 31), (1, 3, 5, 7),
              (1, 3, 8, 8), (2, 3, 2, 3), (1, 3, 17, 13), (1, 3, 9, 4)]  # fmt: skip
    atol = conv_atol(27)

    def check(shape, seed):
        x = rand(*shape, seed=seed)
        y, m = session.run([x])
        ry, rm = ref(x)
        close(y, ry, CONV_RTOL, atol, f"shape {shape}")
        close(m, rm, CONV_RTOL, atol, f"shape {shape} (gap)")

    assert session.primitive_count == 0
    for k, s in enumerate(shapes):
        before = session.primitive_count
        check(s, k)
        assert session.primitive_count > before, "a new shape must be planned"
    # the last 8 shapes are cached: re-running them (in any order) creates nothing
    count = session.primitive_count
    for k in (9, 2, 5, 9):
        check(shapes[k], 100 + k)
    assert session.primitive_count == count
    # the first shape was evicted (LRU): it is planned again, with the right result, then cached
    check(shapes[0], 200)
    count = session.primitive_count
    for seed in range(3):
        check(shapes[0], 300 + seed)
    assert session.primitive_count == count
    assert session.arena_bytes > 0


def test_rerun_same_shape_is_stable():
    g, ref = _shape_graph()
    session = _C.Session(g, threads=1)
    x = rand(2, 3, 13, 17)
    first = session.run([x])
    count = session.primitive_count
    for _ in range(3):
        again = session.run([x])
        for a, b in zip(first, again):
            exact(a, b, "same input, same output")
    assert session.primitive_count == count
    # a different input of the same shape reuses the plan and gives its own result
    x2 = rand(2, 3, 13, 17, seed=9)
    y, _ = session.run([x2])
    close(y, ref(x2)[0], CONV_RTOL, conv_atol(27), "second input")
    assert session.primitive_count == count


def test_non_contiguous_and_float64_inputs():
    """run() takes any array-like convertible to float32 NCHW (copies when needed)."""
    x = rand(1, 5, 7, 10)
    (ref,) = run_graph(
        lambda g, i: g.eltwise(i, act="linear", alpha=2.0, beta=1.0), [np.ascontiguousarray(x[:, :, :, ::2])]
    )
    (a,) = run_graph(lambda g, i: g.eltwise(i, act="linear", alpha=2.0, beta=1.0), [x[:, :, :, ::2]])
    (b,) = run_graph(
        lambda g, i: g.eltwise(i, act="linear", alpha=2.0, beta=1.0), [x[:, :, :, ::2].astype(np.float64)]
    )
    exact(a, ref, "strided view")
    exact(b, ref, "float64 input")


# ---------------------------------------------------------------------------------------------- errors


def _conv_graph(c=3, k=3):
    g = _C.Graph()
    i = g.input(channels=c)
    g.output(g.conv2d(i, g.const(weight(4, c, k, k, fan_in=9)), kernel=(k, k)))
    g.finalize()
    return g


def test_error_classes():
    assert issubclass(_C.ShapeError, ValueError)
    assert issubclass(_C.GraphError, ValueError)


def test_error_wrong_number_of_inputs():
    g = _conv_graph()
    x = rand(1, 3, 7, 5)
    with pytest.raises(ValueError, match=r"takes 1 input\(s\), got 0"):
        run(g, [])
    with pytest.raises(ValueError, match=r"takes 1 input\(s\), got 2"):
        run(g, [x, x])
    with pytest.raises(TypeError):
        run(g, x[0, 0, 0, 0])  # not a sequence
    (y,) = run(g, [x])  # the graph still works
    assert y.shape == (1, 4, 5, 3)


def test_error_wrong_number_of_inputs_is_shape_error():
    with pytest.raises(_C.ShapeError):
        run(_conv_graph(), [])


def test_error_wrong_channels():
    g = _conv_graph()
    with pytest.raises(_C.ShapeError, match=r"input 0 must be N x 3 x H x W"):
        run(g, [rand(1, 4, 7, 5)])


@pytest.mark.parametrize("shape", [(3, 7, 5), (7, 5), (1, 1, 3, 7, 5)], ids=str)
def test_error_not_4d(shape):
    with pytest.raises(_C.ShapeError, match=r"must be a 4-D N x C x H x W array"):
        run(_conv_graph(), [rand(*shape)])


def test_error_empty_input():
    with pytest.raises(_C.ShapeError, match="empty"):
        run(_conv_graph(), [np.zeros((0, 3, 7, 5), np.float32)])


def test_error_input_too_small():
    g = _conv_graph(k=5)
    with pytest.raises(_C.ShapeError, match=r"4x7 is smaller than a 5x5 convolution window"):
        run(g, [rand(1, 3, 4, 7)])
    (y,) = run(g, [rand(1, 3, 5, 5)])  # the failed shape left the graph usable
    assert y.shape == (1, 4, 1, 1)


@pytest.mark.parametrize(
    "build,shape,match",
    [
        (
            lambda g, i: g.pool2d(i, kind="max", kernel=(5, 5), ceil_mode=False),
            (1, 3, 4, 7),
            "smaller than the pooling window",
        ),
        (lambda g, i: g.pixel_unshuffle(i, factor=2), (1, 3, 7, 6), "divisible by 2"),
        (
            lambda g, i: g.linear(i, g.const(np.zeros((2, 3 * 4 * 4), np.float32))),
            (1, 3, 5, 4),
            "expects 48",
        ),
        (lambda g, i: g.resize(i, mode="nearest", size=(0, 0), scale=(0.5, 0.5)), (1, 3, 1, 7), "empty"),
        (
            lambda g, i: g.slice(i, begin=(0, 0, 9, 0), end=(None, None, None, None)),
            (1, 3, 7, 5),
            "empty slice",
        ),
        (
            lambda g, i: g.binary(i, g.const(np.ones((1, 3, 4, 4), np.float32)), op="add"),
            (1, 3, 7, 5),
            "broadcast",
        ),
    ],
    ids=["pool", "unshuffle", "linear", "resize", "slice", "binary"],
)
def test_error_shape_at_run(build, shape, match):
    g = _C.Graph()
    g.output(build(g, g.input(channels=3)))
    g.finalize()
    with pytest.raises(_C.ShapeError, match=match):
        run(g, [rand(*shape)])


def test_error_concat_spatial_mismatch():
    g = _C.Graph()
    a, b = g.input(channels=3), g.input(channels=2)
    g.output(g.concat([a, b]))
    g.finalize()
    with pytest.raises(_C.ShapeError, match="concat inputs differ in dimension 2"):
        run(g, [rand(1, 3, 7, 5), rand(1, 2, 6, 5)])
    with pytest.raises(_C.ShapeError, match="dimension 0"):
        run(g, [rand(1, 3, 7, 5), rand(2, 2, 7, 5)])


def _builder_error(build, exc, match):
    g = _C.Graph()
    i = g.input(channels=3)
    with pytest.raises(exc, match=match) as info:
        build(g, i)
    assert str(info.value), "errors carry a message"
    with pytest.raises(exc, match=match):  # sticky: finalize reports the first builder error
        g.finalize()
    with pytest.raises(ValueError):  # and later builder calls fail too
        g.eltwise(i, act="relu")


@pytest.mark.parametrize(
    "build,match",
    [
        (
            lambda g, i: g.conv2d(i, g.const(np.zeros((4, 5, 3, 3), np.float32)), kernel=(3, 3)),
            r"does not fit 3 input",
        ),
        (lambda g, i: g.conv2d(i, g.const(np.zeros((4, 3, 3, 3), np.float32)), kernel=(5, 5)), r"kernel 5x5"),
        (
            lambda g, i: g.conv2d(i, g.const(np.zeros((5, 1, 3, 3), np.float32)), kernel=(3, 3), groups=3),
            "groups 3",
        ),
        (
            lambda g, i: g.conv2d(
                i,
                g.const(np.zeros((4, 3, 3, 3), np.float32)),
                bias=g.const(np.zeros(5, np.float32)),
                kernel=(3, 3),
            ),
            "bias must be a constant of 4 values",
        ),
        (
            lambda g, i: g.deconv2d(i, g.const(np.zeros((4, 3, 3, 3), np.float32)), kernel=(3, 3)),
            "does not fit 3 input",
        ),
        (lambda g, i: g.prelu(i, g.const(np.zeros(2, np.float32))), "2 values for 3 channels"),
        (
            lambda g, i: g.layer_norm(i, scale=g.const(np.zeros(4, np.float32)), shift=None, eps=1e-6),
            "scale must be a constant of 3",
        ),
        (lambda g, i: g.linear(i, g.const(np.zeros(12, np.float32))), "2-D weight"),
    ],
    ids=[
        "conv_in_channels",
        "conv_kernel",
        "conv_groups",
        "conv_bias",
        "deconv",
        "prelu",
        "layer_norm",
        "linear",
    ],
)
def test_error_misshapen_weights(build, match):
    _builder_error(build, _C.GraphError, match)


@pytest.mark.parametrize(
    "build",
    [
        lambda g, i: g.conv2d(i, g.const(np.zeros((4, 3, 3, 3), np.float32)), kernel=(3, 3), stride=(0, 1)),
        lambda g, i: g.conv2d(
            i, g.const(np.zeros((4, 3, 3, 3), np.float32)), kernel=(3, 3), padding=(-1, 0, 0, 0)
        ),
        lambda g, i: g.pool2d(i, kind="max", kernel=(3, 3), ceil_mode=False, padding=(2, 2, 2, 2)),
        lambda g, i: g.deconv2d(
            i, g.const(np.zeros((3, 3, 3, 3), np.float32)), kernel=(3, 3), output_padding=(1, 0)
        ),
        lambda g, i: g.layer_norm(i, scale=None, shift=None, eps=0.0),
        lambda g, i: g.resize(i, mode="bilinear", size=(0, 0), scale=(0.0, 2.0)),
        lambda g, i: g.resize(i, mode="bilinear", size=(4, 0), scale=(0.0, 0.0)),
        lambda g, i: g.pad(i, padding=(-1, 0, 0, 0), value=0.0),
        lambda g, i: g.pixel_shuffle(i, factor=2),  # 3 channels
        lambda g, i: g.pixel_shuffle(i, factor=0),
        lambda g, i: g.simple_gate(i),  # odd channel count
        lambda g, i: g.binary(i, g.const(np.ones(3, np.float32)), op="add"),  # constant operands must be 4-D
    ],
    ids=[
        "stride0",
        "neg_pad",
        "pool_pad",
        "out_pad",
        "ln_eps",
        "resize_scale",
        "resize_size",
        "pad",
        "shuffle",
        "shuffle_r0",
        "gate",
        "binary_1d",
    ],  # fmt: skip
)
def test_error_bad_parameters(build):
    _builder_error(build, ValueError, None)


@pytest.mark.parametrize("kind", list(POOL_KINDS))
def test_error_pool_bottom_right_padding(kind):
    _builder_error(
        lambda g, i: g.pool2d(i, kind=kind, kernel=(3, 3), ceil_mode=False, padding=(0, 0, 3, 3)),
        _C.GraphError,
        "padding",
    )


def test_error_deconv_output_padding_width():
    w = np.zeros((3, 3, 3, 3), np.float32)
    _builder_error(
        lambda g, i: g.deconv2d(i, g.const(w), kernel=(3, 3), stride=(2, 2), output_padding=(0, 3)),
        ValueError,
        None,
    )


@pytest.mark.parametrize(
    "build",
    [
        lambda g, i: g.eltwise(12345, act="relu"),
        lambda g, i: g.eltwise(-2, act="relu"),
        lambda g, i: g.conv2d(999, g.const(np.zeros((4, 3, 3, 3), np.float32)), kernel=(3, 3)),
        lambda g, i: g.conv2d(i, 999, kernel=(3, 3)),
        lambda g, i: g.conv2d(i, g.const(np.zeros((4, 3, 3, 3), np.float32)), bias=999, kernel=(3, 3)),
        lambda g, i: g.conv2d(i, i, kernel=(3, 3)),  # an activation as the weight
        lambda g, i: g.deconv2d(i, 77, kernel=(3, 3)),
        lambda g, i: g.linear(i, 77),
        lambda g, i: g.binary(i, 999, op="add"),
        lambda g, i: g.binary(999, i, op="add"),
        lambda g, i: g.binary(
            g.const(np.ones((1, 3, 1, 1), np.float32)), i, op="mul"
        ),  # constant first operand
        lambda g, i: g.prelu(i, 999),
        lambda g, i: g.prelu(i, i),
        lambda g, i: g.layer_norm(i, scale=999, shift=None, eps=1e-6),
        lambda g, i: g.layer_norm(999, scale=None, shift=None, eps=1e-6),
        lambda g, i: g.pool2d(999, kind="max", kernel=(2, 2)),
        lambda g, i: g.global_avg_pool(999),
        lambda g, i: g.softmax(-5),
        lambda g, i: g.resize(999, mode="nearest", size=(4, 4), scale=(0.0, 0.0)),
        lambda g, i: g.concat([i, 999]),
        lambda g, i: g.concat([g.const(np.ones((1, 3, 1, 1), np.float32)), i]),
        lambda g, i: g.pad(999, padding=(1, 1, 1, 1)),
        lambda g, i: g.slice(999, begin=(0, 0, 0, 0), end=(None, None, None, None)),
        lambda g, i: g.pixel_shuffle(999, factor=2),
        lambda g, i: g.pixel_unshuffle(999, factor=2),
        lambda g, i: g.simple_gate(999),
    ],
    ids=[
        "eltwise",
        "eltwise_neg",
        "conv_x",
        "conv_w",
        "conv_b",
        "conv_w_act",
        "deconv_w",
        "linear_w",
        "binary_b",
        "binary_a",
        "binary_const_a",
        "prelu_slope",
        "prelu_act_slope",
        "ln_scale",
        "ln_x",
        "pool",
        "gap",
        "softmax",
        "resize",
        "concat",
        "concat_const",
        "pad",
        "slice",
        "shuffle",
        "unshuffle",
        "gate",
    ],  # fmt: skip
)
def test_error_unknown_tensor_id(build):
    _builder_error(build, _C.GraphError, r"not a tensor of this graph|needs an activation|must be a constant")


def test_error_unknown_output_and_names():
    g = _C.Graph()
    i = g.input(channels=3)
    with pytest.raises(_C.GraphError, match="invalid graph output 999"):
        g.output(999)
    with pytest.raises(_C.GraphError, match="invalid graph output 999"):  # the error sticks
        g.finalize()
    g = _C.Graph()
    i = g.input(channels=3)
    with pytest.raises(ValueError):  # a constant is not an output
        g.output(g.const(np.ones((1, 3, 1, 1), np.float32)))
    g = _C.Graph()
    i = g.input(channels=3)
    with pytest.raises(ValueError, match="unknown activation 'relu6'"):
        g.eltwise(i, act="relu6")
    with pytest.raises(ValueError, match="unknown binary op 'pow'"):
        g.binary(i, i, op="pow")
    with pytest.raises(ValueError, match="unknown pooling kind"):
        g.pool2d(i, kind="lp", kernel=(2, 2))
    with pytest.raises(ValueError, match="unknown resize mode"):
        g.resize(i, mode="bicubic", size=(4, 4), scale=(0.0, 0.0))
    g.output(g.eltwise(i, act="relu"))  # unknown names raise without poisoning the graph
    g.finalize()
    (y,) = run(g, [rand(1, 3, 2, 2)])
    exact(y, F.relu(t32(rand(1, 3, 2, 2))), "graph after rejected names")


def test_error_graph_lifecycle():
    g = _C.Graph()
    with pytest.raises(ValueError, match="at least one input and one output"):
        g.finalize()
    g = _C.Graph()
    i = g.input(channels=3)
    with pytest.raises(ValueError, match="at least one input and one output"):
        g.finalize()
    with pytest.raises(ValueError):
        g.input(channels=0)
    g = _C.Graph()
    i = g.input(channels=3)
    g.output(g.eltwise(i, act="relu"))
    with pytest.raises(ValueError, match="not finalized"):
        run(g, [rand(1, 3, 2, 2)])
    g.finalize()
    g.finalize()  # idempotent
    with pytest.raises(ValueError, match="already finalized"):
        g.eltwise(i, act="tanh")
    with pytest.raises(ValueError):
        g.const(np.zeros((2, 0), np.float32))
    with pytest.raises(ValueError):
        _C.Graph().const(np.float32(1.0))  # 0-D


def test_error_output_after_finalize_never_crashes():
    """output() after finalize() of a tensor that fusion removed: any Python error is fine, a crash is not."""
    g = _C.Graph()
    i = g.input(channels=3)
    c = g.conv2d(i, g.const(weight(4, 3, 1, 1, fan_in=3)), kernel=(1, 1))
    g.output(g.eltwise(c, act="relu"))
    g.finalize()
    try:
        g.output(c)
    except ValueError:
        return
    with pytest.raises((ValueError, RuntimeError)):
        run(g, [rand(1, 3, 2, 2)])


# ---------------------------------------------------------------------------------------------- threads


def _threads_graph():
    x = rand(2, 16, 32, 31)
    w1, b1 = weight(32, 16, 3, 3, fan_in=144), rand(32, seed=2)
    w2 = weight(32, 1, 3, 3, fan_in=9, seed=3)
    sc, sh = rand(32, seed=4), rand(32, seed=5)

    def build(g, i):
        y = g.eltwise(
            g.conv2d(i, g.const(w1), bias=g.const(b1), kernel=(3, 3), padding=(1, 1, 1, 1)), act="gelu_erf"
        )
        y = g.layer_norm(y, scale=g.const(sc), shift=g.const(sh), eps=1e-6)
        y = g.conv2d(y, g.const(w2), kernel=(3, 3), padding=(1, 1, 1, 1), groups=32)
        y = g.resize(g.simple_gate(y), mode="bilinear", size=(0, 0), scale=(2.0, 2.0))
        return [
            y,
            g.softmax(
                g.pool2d(
                    y,
                    kind="avg_exclude_pad",
                    kernel=(3, 3),
                    ceil_mode=True,
                    stride=(2, 2),
                    padding=(1, 1, 1, 1),
                )
            ),
        ]

    g = _C.Graph()
    i = g.input(channels=16)
    for o in build(g, i):
        g.output(o)
    g.finalize()
    return g, x


def test_threads_1_and_2_agree(layout):
    g, x = _threads_graph()
    one = run(g, [x], threads=1)
    two = run(g, [x], threads=2)
    default = run(g, [x], threads=0)  # threads=0: keep the current OpenMP setting
    for a, b, c in zip(one, two, default):
        close(b, a, 1e-5, 1e-5, f"threads=2 vs 1 {layout}")
        close(c, a, 1e-5, 1e-5, f"threads=0 vs 1 {layout}")


def test_concurrent_runs_from_python_threads():
    """Two Python threads run one graph (runs serialise inside; the GIL is released) and a second graph, with
    different shapes; every result equals the sequential one."""
    g, x = _threads_graph()
    x_small = rand(1, 16, 13, 17, seed=8)
    g2, x2 = _threads_graph()
    expected = {
        "a": run(g, [x], threads=1),
        "b": run(g, [x_small], threads=1),
        "c": run(g2, [x2], threads=1),
    }
    jobs = {"a": (g, x), "b": (g, x_small), "c": (g2, x2)}
    results: dict[str, list] = {k: [] for k in jobs}
    errors = []
    start = threading.Barrier(len(jobs))

    def work(key):
        graph, inp = jobs[key]
        try:
            start.wait()
            for _ in range(4):
                results[key].append(run(graph, [inp], threads=1))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for key, runs in results.items():
        assert len(runs) == 4
        for outs in runs:
            for a, b in zip(outs, expected[key]):
                exact(a, b, f"concurrent run {key}")


# ------------------------------------------------- shapes oneDNN runs only on its reference kernels (some ISAs)
#
# Every plan in the suite refuses oneDNN reference implementations (MSVISION_REFUSE_REF, tests/conftest.py), so
# each case below also checks that what runs it is a fast kernel or a C kernel; the "kernels" layout runs the C
# kernels themselves.


@pytest.mark.parametrize("c,stride,dilation", [(1, 1, 1), (2, 2, 1), (3, 1, 2), (3, 2, 2)], ids=str)
def test_depthwise_few_channels(c, stride, dilation, layout):
    x = rand(2, c, 13, 11)
    w, b = weight(c, 1, 3, 3, fan_in=9), rand(c, seed=3)

    def build(g, i):
        y = g.conv2d(
            i, g.const(w), bias=g.const(b), stride=stride, padding=dilation, dilation=dilation, groups=c
        )
        return g.eltwise(y, act="relu")

    (out,) = run_graph(build, [x])
    ref = F.relu(
        F.conv2d(t64(x), t64(w), t64(b), stride=stride, padding=dilation, dilation=dilation, groups=c)
    )
    close(out, ref, CONV_RTOL, conv_atol(9), f"depthwise c={c} {layout}")


@pytest.mark.parametrize("op", ["mul", "add"])
def test_channel_broadcast_binary(op, layout):
    """(N, C, H, W) op (N, 1, H, W): alone, and fused into the convolution producing the first operand."""
    x = rand(1, 16, 9, 14)
    w = weight(16, 16, 1, 1, fan_in=16)
    w1 = weight(1, 16, 1, 1, fan_in=16, seed=4)
    fn = {"mul": torch.mul, "add": torch.add}[op]

    def build(g, i):
        gate = g.conv2d(i, g.const(w1))
        alone = g.binary(i, gate, op=op)
        fused = g.binary(g.conv2d(i, g.const(w)), gate, op=op)
        return [alone, fused]

    alone, fused = run_graph(build, [x])
    gate = F.conv2d(t64(x), t64(w1))
    close(alone, fn(t64(x), gate), 1e-5, 2e-6, f"broadcast {op} {layout}")
    close(
        fused, fn(F.conv2d(t64(x), t64(w)), gate), CONV_RTOL, conv_atol(16), f"fused broadcast {op} {layout}"
    )


@pytest.mark.parametrize("groups,c,o", [(2, 8, 6), (3, 6, 9), (8, 8, 8)], ids=str)
def test_grouped_deconvolution(groups, c, o, layout):
    x = rand(1, c, 7, 9)
    w, b = weight(c, o // groups, 4, 4, fan_in=c // groups * 16), rand(o, seed=5)

    def build(g, i):
        y = g.deconv2d(i, g.const(w), bias=g.const(b), stride=2, padding=1, groups=groups)
        return g.eltwise(y, act="leaky_relu", alpha=0.2)

    (out,) = run_graph(build, [x])
    ref = F.leaky_relu(F.conv_transpose2d(t64(x), t64(w), t64(b), stride=2, padding=1, groups=groups), 0.2)
    close(out, ref, CONV_RTOL, conv_atol(c // groups * 16), f"grouped deconv {groups} {layout}")
