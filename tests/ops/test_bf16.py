"""Sessions with precision="bf16" against torch.

A bf16 convolution multiplies bf16-rounded inputs by bf16-rounded weights and accumulates in fp32: the reference is
torch's float64 convolution of the same rounded operands (so only accumulation order differs), with each
intermediate the core stores as bf16 (a result every consumer of which is a bf16 convolution) rounded the same
way. Every other op, Winograd convolutions and graph outputs stay fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support.cpu import needs_cpu_feature
from support.ops import rand, weight

from msvision import _C, runtime

torch.set_num_threads(1)

needs_bf16 = needs_cpu_feature(runtime.cpu_has_bf16(), "oneDNN's bf16 convolutions (AVX512_BF16 or AMX)")


def bf16(a) -> np.ndarray:
    """float32 values rounded to bf16 (nearest, ties to even), as float64."""
    t = torch.as_tensor(np.ascontiguousarray(a, np.float32))
    return t.to(torch.bfloat16).to(torch.float64).numpy()


def conv64(x, w, b=None, stride=1, padding=0, groups=1, dilation=1):
    y = F.conv2d(
        torch.from_numpy(np.asarray(x, np.float64)),
        torch.from_numpy(np.asarray(w, np.float64)),
        None if b is None else torch.from_numpy(np.asarray(b, np.float64)),
        stride=stride,
        padding=padding,
        groups=groups,
        dilation=dilation,
    )
    return y.numpy()


def session(g, prec="bf16"):
    return _C.Session(g, threads=2, precision=prec)


def assert_close(actual, expected, what, rtol=2e-5):
    scale = np.abs(expected).max()
    err = np.abs(actual - expected).max()
    assert err <= rtol * scale + 1e-6, f"{what}: max |diff| {err:.3g} (output scale {scale:.3g})"


@needs_bf16
@pytest.mark.parametrize(
    "c,o,k,stride,padding,groups",
    [
        (32, 48, 1, 1, 0, 1),  # pointwise
        (16, 32, 3, 2, 1, 1),  # strided 3x3 (never Winograd)
        (32, 32, 3, 1, 1, 32),  # depthwise
        (32, 64, 3, 1, 1, 4),  # grouped
        (3, 16, 3, 1, 1, 1),  # 3 input channels (a network's first layer)
        (24, 40, 5, 1, 2, 1),  # channels not a multiple of 16
    ],
)
def test_conv_matches_torch_on_bf16_operands(c, o, k, stride, padding, groups):
    x = rand(2, c, 19, 23)
    w = weight(o, c // groups, k, k, fan_in=c // groups * k * k)
    b = rand(o, seed=3)
    g = _C.Graph()
    i = g.input(channels=c)
    y = g.conv2d(i, g.const(w), bias=g.const(b), stride=stride, padding=padding, groups=groups)
    g.output(y)
    g.finalize()
    s = session(g)
    (out,) = s.run([x])
    assert out.dtype == np.float32
    assert_close(out, conv64(bf16(x), bf16(w), b, stride, padding, groups), "conv")
    assert any("bf16" in step for step in s.steps()), s.steps()
    (fp32,) = session(g, "fp32").run([x])
    assert not np.array_equal(out, fp32)  # bf16 arithmetic really ran: it differs from fp32 ...
    assert_close(out, fp32, "bf16 vs fp32", rtol=3e-2)  # ... by bf16's precision


@needs_bf16
def test_chain_keeps_bf16_between_convolutions_and_fp32_elsewhere():
    """conv1 -> relu (fused) -> conv2 (+ conv1's result as a residual, fused) -> sigmoid (not fused: conv2's
    result is also an output) -> conv3. conv1's result feeds only bf16 convolutions (as input and operand), so
    it is stored as bf16; conv2's result is a graph output and a sigmoid's input, so it stays fp32."""
    x = rand(1, 32, 21, 17)
    w1, w2, w3 = (weight(32, 32, 1, 1, fan_in=32, seed=s) for s in (1, 2, 3))
    b1, b2 = rand(32, seed=4), rand(32, seed=5)
    g = _C.Graph()
    i = g.input(channels=32)
    y1 = g.eltwise(g.conv2d(i, g.const(w1), bias=g.const(b1)), act="relu")
    y2 = g.binary(g.conv2d(y1, g.const(w2), bias=g.const(b2)), y1, op="add")
    y3 = g.conv2d(g.eltwise(y2, act="sigmoid"), g.const(w3))
    g.output(y2)
    g.output(y3)
    g.finalize()
    s = session(g)
    out2, out3 = s.run([x])
    r1 = bf16(np.maximum(conv64(bf16(x), bf16(w1), b1), 0))  # stored as bf16
    r2 = conv64(r1, bf16(w2), b2) + r1
    r3 = conv64(bf16(1 / (1 + np.exp(-r2.astype(np.float32)))), bf16(w3))
    assert_close(out2, r2, "conv2 + residual")
    assert_close(out3, r3, "conv3 of the sigmoid", rtol=5e-3)  # r2 itself carries fp32 rounding into bf16
    convs = [st for st in s.steps() if st.startswith("conv2d")]
    assert len(convs) == 3 and all("bf16 ->" in st for st in convs), convs  # every convolution reads bf16
    assert [st.endswith("bf16]") for st in convs] == [True, False, False], convs  # only conv1 writes it


@needs_bf16
def test_winograd_convolutions_stay_fp32():
    """A 3x3 stride-1 convolution of 64 channels over a 40x40 map is a Winograd convolution (fp32 in either
    precision): the bf16 session's result is the fp32 session's, bit for bit."""
    x = rand(1, 64, 40, 40)
    w = weight(64, 64, 3, 3, fan_in=576)
    g = _C.Graph()
    i = g.input(channels=64)
    g.output(g.conv2d(i, g.const(w), padding=1))
    g.finalize()
    s = session(g)
    (a,) = s.run([x])
    (b,) = session(g, "fp32").run([x])
    assert any("winograd" in st for st in s.steps()), s.steps()
    np.testing.assert_array_equal(a, b)


@needs_bf16
def test_sessions_of_both_precisions_share_one_weight_store():
    x = rand(1, 16, 9, 9)
    w = weight(32, 16, 1, 1, fan_in=16)
    g = _C.Graph()
    i = g.input(channels=16)
    g.output(g.conv2d(i, g.const(w)))
    g.finalize()
    first = session(g, "fp32")
    second = _C.Session(g, threads=2, precision="bf16", share_weights_with=first)
    (a,) = first.run([x])
    (b,) = second.run([x])
    assert_close(a, conv64(x, w), "fp32", rtol=1e-5)
    assert_close(b, conv64(bf16(x), bf16(w)), "bf16")


def test_unknown_precision_is_refused():
    g = _C.Graph()
    g.output(g.eltwise(g.input(channels=3), act="relu"))
    g.finalize()
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        _C.Session(g, precision="fp16")


def layer_norm64(x, scale, shift, eps):
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale[None, :, None, None] + shift[None, :, None, None]


@needs_bf16
def test_c_kernels_and_binary_ops_write_bf16_for_bf16_convolutions():
    """layer_norm -> conv, simple_gate -> conv and (x * per-channel scale) -> conv: each result only a bf16
    convolution reads is written as bf16 by its own kernel (no reorder), exactly as the convolution would round it:
    the reference rounds the fp32 result. The gate reads its input convolution's bf16 result. A layer_norm that
    something else also reads stays fp32 (reordered once for its two convolutions)."""
    x = rand(1, 32, 13, 11)
    scale, shift = rand(32, seed=2) * 0.5 + 1, rand(32, seed=3) * 0.1
    w1 = weight(64, 32, 1, 1, fan_in=32, seed=4)
    w2 = weight(16, 32, 3, 3, fan_in=288, seed=5)
    w3 = weight(16, 32, 1, 1, fan_in=32, seed=6)
    channel = rand(1, 32, 1, 1, seed=7)
    g = _C.Graph()
    i = g.input(channels=32)
    ln = g.layer_norm(i, scale=g.const(scale), shift=g.const(shift), eps=1e-6)
    gate = g.simple_gate(g.conv2d(ln, g.const(w1)))  # conv1's result feeds only the gate, which reads bf16
    y2 = g.conv2d(gate, g.const(w2), padding=1, stride=2)
    y3 = g.conv2d(g.binary(i, g.const(channel), op="mul"), g.const(w3))
    ln_shared = g.layer_norm(i, scale=g.const(scale), shift=g.const(shift), eps=1e-6)
    y4 = g.binary(g.conv2d(ln_shared, g.const(w3)), g.conv2d(ln_shared, g.const(w3)), op="add")
    for t in (y2, y3, y4, ln_shared):
        g.output(t)
    g.finalize()
    s = _C.Session(g, threads=2, precision="bf16", layout="nhwc")  # NHWC in: the C kernels' bf16 layout
    outs = s.run([np.ascontiguousarray(x.transpose(0, 2, 3, 1))])
    out2, out3, out4, out_ln = (o.transpose(0, 3, 1, 2) for o in outs)
    r_ln = layer_norm64(x, scale, shift, 1e-6)
    r1 = bf16(conv64(bf16(r_ln), bf16(w1)))  # stored as bf16 for the gate
    r_gate = r1[:, :32] * r1[:, 32:]
    assert_close(
        out2, conv64(bf16(r_gate), bf16(w2), stride=2, padding=1), "layer_norm -> conv -> gate -> conv"
    )
    assert_close(out3, conv64(bf16(x * channel), bf16(w3)), "x * channel -> conv")  # the multiply writes bf16
    c = conv64(bf16(r_ln), bf16(w3))
    assert_close(
        out4, c + bf16(c), "shared layer_norm -> two convs"
    )  # the fused add's operand is stored bf16
    assert_close(out_ln, r_ln, "shared layer_norm (an output)", rtol=1e-5)
    steps = s.steps()
    assert [st for st in steps if st.startswith("layer_norm")] == [
        "layer_norm: C kernel (bf16 result)",
        "layer_norm: C kernel",
    ], steps
    assert "simple_gate: C kernel (bf16)" in steps, steps
    assert "binary: C kernel (channel multiply, bf16 result)" in steps, steps
    # the one reorder to bf16: the shared layer_norm's result, once for both its convolutions
    assert [st for st in steps if st.startswith("reorder")] == ["reorder jit:uni [nhwc -> nhwc bf16]"], steps
