"""Op tests against PyTorch: errors: builder and run-time errors, named.

Tolerances and helpers: tests/support/ops.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support.graphs import run
from support.ops import (
    POOL_KINDS,
    exact,
    rand,
    t32,
    weight,
)

from msvision import _C

torch.set_num_threads(1)


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


def test_a_finalized_graph_does_not_move_under_its_sessions():
    """Exactly 256 nodes (the node array's first capacity), finalized and planned: adding a node afterwards is
    refused before the array grows, so the session's plan (which points into it) keeps running correctly."""
    g = _C.Graph()
    x = i = g.input(channels=3)
    for _ in range(256):
        x = g.eltwise(x, act="linear", alpha=1.0, beta=0.5)
    g.output(x)
    g.finalize()
    s = _C.Session(g, threads=1)
    a = rand(1, 3, 4, 4)
    first = s.run([a])[0]
    np.testing.assert_allclose(first, a + 128.0, rtol=1e-6)
    with pytest.raises(ValueError, match="already finalized"):
        g.eltwise(i, act="relu")
    with pytest.raises(ValueError, match="already finalized"):
        g.const(np.ones(3, np.float32))
    np.testing.assert_array_equal(s.run([a])[0], first)


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
