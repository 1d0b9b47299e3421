"""Helpers of the op tests (tests/ops/): random data, torch references, tolerances, layouts.

The op tests:

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

import numpy as np
import torch
import torch.nn.functional as F

from msvision import _C

from .graphs import run

# ---------------------------------------------------------------------------------------------- helpers


# the planner's layouts, and "kernels": NHWC with the C kernels that stand in for oneDNN reference kernels used
# wherever they can run (MSVISION_FALLBACK_KERNELS), so they are tested on machines where oneDNN needs none
LAYOUTS = ["nhwc", "blocked", "any", "kernels"]


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


# ---- shared by several op test files

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


def conv3(g, i, w, b=None):
    return g.conv2d(i, g.const(w), bias=-1 if b is None else g.const(b), kernel=(3, 3), padding=(1, 1, 1, 1))


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


POOL_KINDS = {"max": None, "avg_include_pad": True, "avg_exclude_pad": False}
