"""Op tests against PyTorch: binary.

Tolerances and helpers: tests/support/ops.py."""

from __future__ import annotations

import numpy as np
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


# A constant first operand: b (an activation with a static shape) broadcasts against the constant a; the output
# has a's shape. (a's shape, b's shape)
CONST_A = [
    ("full", (1, 17, 7, 5), (1, 17, 7, 5)),
    ("1c11", (1, 17, 7, 5), (1, 17, 1, 1)),
    ("11hw", (1, 17, 7, 5), (1, 1, 7, 5)),
    ("1111", (1, 17, 7, 5), (1, 1, 1, 1)),
    ("n_c11", (2, 17, 7, 5), (2, 17, 1, 1)),
    ("n_1c11", (2, 17, 7, 5), (1, 17, 1, 1)),
    ("wide", (1, 512, 4, 4), (1, 512, 1, 1)),
]


@pytest.mark.parametrize("shapes", CONST_A, ids=[s[0] for s in CONST_A])
@pytest.mark.parametrize("op", list(BINOPS))
def test_binary_constant_first(op, shapes, layout):
    a = rand(*shapes[1])
    b = operand(shapes[2])
    g = _C.Graph()
    i = g.input(shape=b.shape)
    g.output(g.binary(g.const(a), i, op=op))
    g.finalize()
    (out,) = run(g, [b], threads=1)
    close(out, BINOPS[op](t32(a), t32(b)), 1e-6, 1e-6, f"constant {op} {shapes[0]} {layout}")


@pytest.mark.parametrize("op", list(BINOPS))
def test_binary_constant_first_after_linear(op, layout):
    """b computed in the planner's layout (a linear's (N, O, 1, 1) result), a post-op fused after the binary."""
    x = rand(1, 8, 1, 1)
    w = weight(32, 8, fan_in=8)
    a = operand((1, 32, 4, 3), seed=7)
    g = _C.Graph()
    i = g.input(shape=x.shape)
    s = g.linear(i, g.const(w))
    g.output(g.eltwise(g.binary(g.const(a), s, op=op), act="leaky_relu", alpha=0.2))
    g.finalize()
    (out,) = run(g, [x], threads=1)
    s_ref = (t32(x).reshape(1, 8) @ t32(w).T).reshape(1, 32, 1, 1)
    close(out, F.leaky_relu(BINOPS[op](t32(a), s_ref), 0.2), 1e-5, 1e-5, f"constant {op} linear {layout}")


@pytest.mark.parametrize(
    "b_shape,match",
    [
        ((1, 3, 2, 2), "dimension 2: 2 vs 4"),  # b larger than the constant in no dimension, but not 1 either
        ((2, 3, 1, 1), "dimension 0: 2 vs 1"),  # b would broadcast a: the output has a's shape
        ((None, 3, 1, 1), "dimension 0 is dynamic"),  # b's shape must be known
        ((1, 3, None, None), "dimension 2 is dynamic"),
    ],
    ids=["mismatch", "b_larger", "dynamic_n", "dynamic_hw"],
)
def test_binary_constant_first_errors(b_shape, match):
    g = _C.Graph()
    i = g.input(shape=b_shape)
    with pytest.raises(_C.GraphError, match=match):
        g.binary(g.const(np.ones((1, 3, 4, 4), np.float32)), i, op="sub")


def test_binary_two_constants_and_rank():
    g = _C.Graph()
    c = g.const(np.ones((1, 3, 4, 4), np.float32))
    with pytest.raises(_C.GraphError, match="needs an activation"):
        g.binary(c, g.const(np.ones((1, 3, 1, 1), np.float32)), op="add")
    g = _C.Graph()
    i = g.input(shape=(1, 3))
    with pytest.raises(ValueError, match="dimensions"):
        g.binary(g.const(np.ones((1, 3, 4, 4), np.float32)), i, op="add")
