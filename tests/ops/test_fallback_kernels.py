"""Op tests against PyTorch: shapes oneDNN runs only on its reference kernels.

Tolerances and helpers: tests/support/ops.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from support.ops import (
    CONV_RTOL,
    close,
    conv_atol,
    rand,
    run_graph,
    t64,
    weight,
)

torch.set_num_threads(1)


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


@pytest.mark.parametrize("width", [13, 1500], ids=lambda w: f"w{w}")
def test_post_op_chain_on_few_channels(width, layout, monkeypatch, capfd):
    """A guided filter's chain (DCT-Net): a 3-channel box filter, then divisions by a one-channel count map,
    same-shape subtractions and products, max/min, a PReLU and activations, all post-ops of the convolution that
    the C kernel applies; a row of 1500 pixels spans several of its chunks."""
    monkeypatch.setenv("MSVISION_VERBOSE", "1")
    c, h = 3, 5
    x, other = rand(1, c, h, width), rand(1, c, h, width, seed=5)
    count = rand(1, 1, h, width, seed=6) + 2.0
    box = weight(c, 1, 3, 3, fan_in=9, seed=7)
    slope = rand(c, seed=8, scale=0.3)

    def build(g, i, j, k):
        y = g.conv2d(i, g.const(box), padding=1, groups=c)
        y = g.binary(y, k, op="div")
        y = g.binary(y, j, op="sub")
        y = g.eltwise(y, act="leaky_relu", alpha=0.2)
        y = g.binary(y, j, op="mul")
        y = g.binary(y, k, op="max")
        y = g.binary(y, j, op="min")
        y = g.prelu(y, g.const(slope))
        return g.eltwise(y, act="clip", alpha=-0.5, beta=2.0)

    capfd.readouterr()
    (out,) = run_graph(build, [x, other, count])
    plans = capfd.readouterr().err
    xt, ot, kt = t64(x), t64(other), t64(count)
    y = F.conv2d(xt, t64(box), padding=1, groups=c) / kt - ot
    y = F.leaky_relu(y, 0.2) * ot
    y = torch.minimum(torch.maximum(y, kt), ot)
    y = torch.clamp(F.prelu(y, t64(slope)), -0.5, 2.0)
    close(out, y, CONV_RTOL, conv_atol(9), f"post-op chain w={width} {layout}")
    if layout in ("nhwc", "kernels"):
        assert "post-ops" in plans, plans
