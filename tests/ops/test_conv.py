"""Op tests against PyTorch: conv2d, Winograd convolutions, deconv2d, linear.

Tolerances and helpers: tests/support/ops.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support.ops import (
    CONV_RTOL,
    close,
    conv_atol,
    rand,
    run_behind_conv,
    run_graph,
    t32,
    t64,
    torch_conv,
    torch_deconv,
    weight,
)

torch.set_num_threads(1)


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
    (3, 96, 8, 8, 96, (1, 1, 1, 1), 1, True),  # a batch of 8x8 maps (HRNet's 8x8 branch for 3 persons)
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


ISA_CAPS = ["generic", "avx2", "avx512"]  # MSVISION_KERNEL_ISA: above this CPU's widest, its widest runs


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "swish", "clip", "elu"])
def test_kernel_instruction_sets_agree(act, monkeypatch, capfd):
    """The Winograd tile transforms and the few-outputs convolution blocks are compiled once per instruction set;
    MSVISION_KERNEL_ISA caps which instance runs, so each one this CPU has is tested here: the Winograd instances
    give bitwise the same result (the same arithmetic per lane), the few-outputs ones the torch result (their
    sums run in another order). Odd sizes: partial tiles, blocks and a channel tail."""
    monkeypatch.setenv("MSVISION_VERBOSE", "1")
    x, r = rand(1, 32, 67, 71, scale=3.0), rand(1, 48, 67, 71, seed=4)  # >= 4096 pixels: few-outputs kernel
    wt, b = weight(48, 32, 3, 3, fan_in=9 * 32), rand(48, seed=2)
    heads = {o: (weight(o, 48, 3, 3, fan_in=9 * 48, seed=10 + o), rand(o, seed=20 + o)) for o in (1, 2, 3, 4)}
    params = {"leaky_relu": {"alpha": 0.1}, "swish": {"alpha": 1.0}, "clip": {"alpha": 0.0, "beta": 6.0}}

    def build(g, i, j):
        y = g.conv2d(i, g.const(wt), bias=g.const(b), kernel=(3, 3), padding=(1, 1, 1, 1))
        y = g.eltwise(g.binary(y, j, op="add"), act=act, **params.get(act, {}))
        outs = [y]
        for hw, hb in heads.values():
            outs.append(g.conv2d(y, g.const(hw), bias=g.const(hb), kernel=(3, 3), padding=(1, 1, 1, 1)))
        return outs

    results = {}
    for isa in ISA_CAPS:
        monkeypatch.setenv("MSVISION_KERNEL_ISA", isa)
        capfd.readouterr()
        results[isa] = run_graph(build, [x, r], threads=2)
        plans = _plans(capfd)
        assert sum("winograd convolution" in line for line in plans) == 1, plans
        assert sum("few outputs" in line for line in plans) == len(heads), plans
    for isa in ISA_CAPS[1:]:
        np.testing.assert_array_equal(results[isa][0], results["generic"][0], err_msg=f"winograd {act} {isa}")
    y = t64(results["generic"][0])
    for isa in ISA_CAPS:
        for k, (hw, hb) in enumerate(heads.values(), start=1):
            ref = F.conv2d(y, t64(hw), t64(hb), padding=1)
            close(results[isa][k], ref, CONV_RTOL, conv_atol(9 * 48), f"few outputs O={hw.shape[0]} {isa}")


@pytest.mark.parametrize(
    "post",
    ["add", "add relu", "leaky", "add leaky", "silu", "add silu", "swish 1.7", "relu6", "add elu", "elu 0.5"],
)
@pytest.mark.parametrize("case", [(1, 32, 27, 33, 48), (2, 16, 40, 17, 32)], ids=str)
def test_winograd_epilogue_residual_and_leaky_relu(case, post, layout, monkeypatch, capfd):
    """Fused post-ops the output transform runs: a same-shape add (a residual, from another branch in any
    layout) and then ReLU, leaky ReLU (slope 0.1), swish (its vectorised exp: the products reach +-30 here), clip
    (TF's Relu6) or ELU."""
    n, c, h, w_, o = case
    monkeypatch.setenv("MSVISION_VERBOSE", "1")
    x, r = rand(n, c, h, w_, scale=10.0), rand(n, o, h, w_, seed=4)
    wt, b, w1 = weight(o, c, 3, 3, fan_in=9 * c), rand(o, seed=2), weight(o, o, 1, 1, fan_in=o, seed=5)

    def build(g, i, j):
        y = g.conv2d(i, g.const(wt), bias=g.const(b), kernel=(3, 3), padding=(1, 1, 1, 1))
        if "add" in post:
            y = g.binary(y, g.conv2d(j, g.const(w1), kernel=(1, 1)), op="add")  # a residual from a conv
        if "relu" in post:
            y = g.eltwise(y, act="relu")
        elif "leaky" in post:
            y = g.eltwise(y, act="leaky_relu", alpha=0.1)
        elif "silu" in post or "swish" in post:
            y = g.eltwise(y, act="swish", alpha=1.7 if "swish" in post else 1.0)
        elif "relu6" in post:
            y = g.eltwise(y, act="clip", alpha=0.0, beta=6.0)
        elif "elu" in post:
            y = g.eltwise(y, act="elu", alpha=0.5 if "0.5" in post else 1.0)
        return y

    capfd.readouterr()
    (out,) = run_graph(build, [x, r])
    plans = _plans(capfd)
    assert sum("winograd convolution" in line for line in plans) == 1, plans
    assert not any(k in line for line in plans for k in ("eltwise", "binary")), plans  # all in the epilogue
    ref = torch_conv(x, wt, b, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    if "add" in post:
        ref = ref + F.conv2d(t64(r), t64(w1))
    if "relu" in post:
        ref = ref.clamp_min(0)
    elif "leaky" in post:
        ref = F.leaky_relu(ref, 0.1)
    elif "silu" in post or "swish" in post:
        alpha = 1.7 if "swish" in post else 1.0
        ref = ref * torch.sigmoid(alpha * ref)
    elif "relu6" in post:
        ref = ref.clamp(0, 6)
    elif "elu" in post:
        ref = F.elu(ref, 0.5 if "0.5" in post else 1.0)
    close(out, ref, CONV_RTOL, WINO_ATOL_PER_SQRT_FAN_IN * math.sqrt(9 * c) * 20, f"winograd {post} {layout}")


@pytest.mark.parametrize(
    "case",
    [
        (1, 32, 67, 70, 1, 3, 1, (1, 1, 1, 1), 1),  # a matting head: 32 -> 1
        (2, 64, 70, 61, 2, 3, 1, (0, 1, 2, 0), 1),  # asymmetric padding
        (1, 24, 140, 131, 4, 3, 2, (1, 1, 1, 1), 1),  # strided
        (1, 17, 70, 64, 3, 5, 1, (4, 4, 4, 4), 2),  # dilated, channels not a multiple of 16
        (1, 8, 64, 65, 1, 1, 1, (0, 0, 0, 0), 1),  # 1x1
        (1, 40, 64, 72, 3, 2, 1, (1, 1, 0, 0), 1),  # a tap row of 80 channels: whole rows of 5 vectors
        (1, 32, 66, 68, 3, 7, 1, (3, 3, 3, 3), 1),  # DCT-Net's last conv: 7x7 32 -> 3, width a multiple of 4
        (
            1,
            20,
            64,
            67,
            2,
            3,
            1,
            (1, 1, 1, 1),
            1,
        ),  # a tap row of 60 channels: taps one by one, a 4-vector rest
    ],
    ids=str,
)
def test_conv_with_few_outputs(case, layout, monkeypatch, capfd):
    """Up to 4 output channels over >= 8 input channels on large maps: the C kernel (oneDNN 3.2 runs these at a
    few GFLOP/s), under every planner layout and with a fused sigmoid."""
    n, c, h, w_, o, k, s, p, d = case
    monkeypatch.setenv("MSVISION_VERBOSE", "1")
    x = rand(n, c, h, w_)
    wt, b = weight(o, c, k, k, fan_in=c * k * k), rand(o, seed=2)

    def build(g, i):
        y = g.conv2d(
            i, g.const(wt), bias=g.const(b), kernel=(k, k), stride=(s, s), padding=p, dilation=(d, d)
        )
        return [y, g.eltwise(y, act="sigmoid")]

    capfd.readouterr()
    out, activated = run_graph(build, [x])
    plans = _plans(capfd)
    assert any("few outputs" in line for line in plans), plans
    ref = torch_conv(x, wt, b, (s, s), p, (d, d), 1)
    close(out, ref, CONV_RTOL, conv_atol(c * k * k), f"few-outputs conv {case} {layout}")
    close(
        activated, torch.sigmoid(ref), CONV_RTOL, conv_atol(c * k * k), f"few-outputs conv + sigmoid {layout}"
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


# A channel concat read only by Winograd convolutions is never written: each convolution transforms the concat's
# inputs into their ranges of channels (a dense block: cat(x, x1), cat(x, x1, x2), ...). Anything else reading the
# concat (another op, a graph output, a residual, a source whose channels are not in runs of 16) gets it computed.
CONCAT_CONSUMERS = {
    "two winograd convs": (False, False, False),
    "winograd conv and a pool": (True, False, False),
    "winograd conv and a graph output": (False, True, False),
    "winograd conv with the concat as its residual": (False, False, True),
}


# (batch, height, width): 96 tiles (row-major chunks); 19 x 23 = 437 tiles, tile-major chunks of 146 rows, the
# last one partial
CONCAT_SIZES = [(2, 23, 29), (1, 75, 90)]


@pytest.mark.parametrize("size", CONCAT_SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("consumers", list(CONCAT_CONSUMERS))
def test_winograd_reads_a_concat_in_place(consumers, size, layout, monkeypatch, capfd):
    pool, as_output, as_residual = CONCAT_CONSUMERS[consumers]
    in_place = not (pool or as_output or as_residual)
    monkeypatch.setenv("MSVISION_VERBOSE", "1")
    x = rand(size[0], 16, size[1], size[2])
    w1, w2 = weight(32, 16, 1, 1, fan_in=16), weight(16, 16, 3, 3, fan_in=144, seed=3)
    wa, wb = weight(48, 64, 3, 3, fan_in=576, seed=4), weight(64, 64, 3, 3, fan_in=576, seed=5)
    ba = rand(48, seed=6)

    def build(g, i):
        y1 = g.conv2d(i, g.const(w1), kernel=(1, 1))  # 32 channels
        y2 = g.conv2d(i, g.const(w2), kernel=(3, 3), padding=(1, 1, 1, 1))  # 16 channels, Winograd
        cat = g.concat([y2, y1, i], axis=1)  # 64 channels from three producers
        a = g.eltwise(
            g.conv2d(cat, g.const(wa), bias=g.const(ba), kernel=(3, 3), padding=(1, 1, 1, 1)), act="relu"
        )
        b = g.conv2d(cat, g.const(wb), kernel=(3, 3), padding=(1, 1, 1, 1))
        if as_residual:
            b = g.binary(b, cat, op="add")
        outs = [a, b]
        if pool:
            outs.append(g.pool2d(cat, kind="max", kernel=(2, 2), stride=(2, 2)))
        if as_output:
            outs.append(cat)
        return outs

    capfd.readouterr()
    outs = run_graph(build, [x])
    plans = _plans(capfd)
    assert sum("winograd convolution" in line for line in plans) == 3, plans
    assert sum("of the concat read in place" in line for line in plans) == (2 if in_place else 0), plans
    assert sum("concat" in line.split("plan step")[1].split(":")[1] for line in plans) == (
        0 if in_place else 1
    )

    tx = t64(x)
    cat = torch.cat([F.conv2d(tx, t64(w2), padding=1), F.conv2d(tx, t64(w1)), tx], dim=1)
    refs = [F.relu(F.conv2d(cat, t64(wa), t64(ba), padding=1)), F.conv2d(cat, t64(wb), padding=1)]
    if as_residual:
        refs[1] = refs[1] + cat
    if pool:
        refs.append(F.max_pool2d(cat, 2))
    if as_output:
        refs.append(cat)
    tol = WINO_ATOL_PER_SQRT_FAN_IN * math.sqrt(576) * 4
    for out, ref in zip(outs, refs):
        close(out, ref, CONV_RTOL, tol, f"concat read in place ({consumers}, {layout})")


def test_concat_with_sources_off_the_vector_width_is_computed(monkeypatch, capfd):
    """8 + 24 channels: the concat (32) takes Winograd, but its inputs' channels are not in runs of 16."""
    monkeypatch.setenv("MSVISION_VERBOSE", "1")
    x = rand(1, 8, 20, 20)
    w1, w2 = weight(24, 8, 1, 1, fan_in=8), weight(32, 32, 3, 3, fan_in=288, seed=2)

    def build(g, i):
        return g.conv2d(
            g.concat([i, g.conv2d(i, g.const(w1), kernel=(1, 1))], axis=1),
            g.const(w2),
            kernel=(3, 3),
            padding=(1, 1, 1, 1),
        )

    capfd.readouterr()
    (out,) = run_graph(build, [x])
    plans = _plans(capfd)
    assert sum(": concat:" in line for line in plans) == 1, plans
    assert not any("read in place" in line for line in plans), plans
    tx = t64(x)
    ref = F.conv2d(torch.cat([tx, F.conv2d(tx, t64(w1))], dim=1), t64(w2), padding=1)
    close(out, ref, CONV_RTOL, WINO_ATOL_PER_SQRT_FAN_IN * math.sqrt(288) * 2, "8 + 24 channels")


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
        "8x8 map with large weights",
        "thin map",
        "batch of tiny images",
        "broadcast binary post-op",
        "sum after relu",
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
    elif why == "8x8 map with large weights":
        c, o, h, w_ = 384, 384, 8, 8  # one image: 21 MB of transformed weights for 64 pixels
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
        if why == "broadcast binary post-op":
            return g.binary(y, g.const(slope.reshape(1, o, 1, 1)), op="add")
        if why == "sum after relu":  # the epilogue adds before the activation only
            return g.binary(g.eltwise(y, act="relu"), j, op="add")
        if why == "sigmoid post-op":
            return g.eltwise(y, act="sigmoid")
        return g.prelu(y, g.const(slope)) if why == "prelu post-op" else y

    capfd.readouterr()
    (out,) = run_graph(build, [x, r])
    plans = _plans(capfd)
    assert not any("winograd" in line for line in plans), plans
    ref = F.conv2d(t64(x), t64(wt), stride=stride, padding=dil, dilation=dil)
    if why == "broadcast binary post-op":
        ref = ref + t64(slope.reshape(1, o, 1, 1))
    elif why == "sum after relu":
        ref = ref.clamp_min(0) + t64(r)
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
