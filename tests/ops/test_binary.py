"""Op tests against PyTorch: binary.

Tolerances and helpers: tests/support/ops.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from support.graphs import run
from support.ops import (
    BINOPS,
    BROADCASTS,
    CONV_RTOL,
    close,
    operand,
    rand,
    run_graph,
    t32,
    t64,
    weight,
)

from msvision import _C

torch.set_num_threads(1)


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
