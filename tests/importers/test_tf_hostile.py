"""Hostile or malformed graphs, built node by node without TensorFlow: the importer refuses each with an
InvalidModelError naming the problem (at load time where it can), never another exception, a runaway allocation
or a silently wrong answer; host arithmetic follows TensorFlow where NumPy differs."""

import numpy as np
import pytest

from msvision.errors import InvalidInputError, InvalidModelError
from msvision.importers.tf.graphdef import DataType, NodeDef, TensorShape
from msvision.importers.tf.importer import TfGraph


def node(name, op, *inputs, **attrs):
    return NodeDef(name=name, op=op, inputs=list(inputs), device="", attrs=attrs)


def const(name, value, dtype=None):
    return node(name, "Const", value=np.asarray(value, dtype=dtype), dtype=DataType.FLOAT)


def placeholder(name="x", dims=(1, -1, -1, 3)):
    return node(name, "Placeholder", dtype=DataType.FLOAT, shape=TensorShape(dims))


def load(nodes, outputs=("y:0",), inputs=("x:0",)):
    return TfGraph(nodes, list(inputs), list(outputs))


def test_host_only_op_on_an_activation_is_refused_at_load():
    """Pow has a host (NumPy) implementation for constants, but none on activations: named at load time."""
    nodes = [placeholder(), const("two", 2.0, np.float32), node("y", "Pow", "x", "two", T=DataType.FLOAT)]
    with pytest.raises(InvalidModelError, match=r"unsupported TensorFlow ops: Pow .*'y'"):
        load(nodes)


def test_a_placeholder_not_fed_is_refused_at_load():
    nodes = [placeholder(), placeholder("other"), node("y", "AddV2", "x", "other", T=DataType.FLOAT)]
    with pytest.raises(InvalidModelError, match="placeholder 'other', which is not among the inputs"):
        load(nodes)


def test_shape_arithmetic_on_an_activation_is_fine():
    """Host ops downstream of Shape are not data-dependent: Pow of a shape value is computed on the host."""
    nodes = [
        placeholder(),
        node("s", "Shape", "x", T=DataType.FLOAT, out_type=DataType.INT32),
        const("two", 2, np.int32),
        node("y", "Pow", "s", "two", T=DataType.INT32),
    ]
    (y,) = load(nodes).run(np.zeros((1, 3, 5, 3), np.float32))
    assert y.tolist() == [1, 9, 25, 9]


def test_huge_constant_broadcast_is_refused_before_allocating():
    nodes = [
        placeholder(),
        const("a", np.zeros((65536, 1), np.float32)),
        const("b", np.zeros((1, 65536), np.float32)),
        node("big", "AddV2", "a", "b", T=DataType.FLOAT),
        node("y", "AddV2", "x", "big", T=DataType.FLOAT),
    ]
    with pytest.raises(InvalidModelError, match="too large"):
        load(nodes)


def test_repeated_concat_of_a_large_constant_is_refused():
    big = const("big", np.zeros(1 << 20, np.float32))
    nodes = [placeholder(), big, const("axis", 0, np.int32)]
    nodes.append(node("cat", "ConcatV2", *(["big"] * 200), "axis", N=200, T=DataType.FLOAT))
    nodes.append(node("y", "AddV2", "x", "cat", T=DataType.FLOAT))
    with pytest.raises(InvalidModelError, match="too large"):
        load(nodes)


def test_tile_of_an_activation_by_a_huge_multiple_is_refused():
    nodes = [
        placeholder(),
        const("m", [1, 10**9, 1, 1], np.int32),
        node("y", "Tile", "x", "m", T=DataType.FLOAT),
    ]
    g = load(nodes)
    with pytest.raises(InvalidModelError, match="too large"):
        g.run(np.zeros((1, 2, 2, 3), np.float32))


def test_malformed_attributes_are_model_errors():
    w = const("w", np.zeros((3, 3, 3, 4), np.float32))
    for attrs in (
        dict(strides=1, padding=b"SAME"),  # an int where a list belongs
        dict(strides=[1, 1, 1, 1], padding=[b"SAME"]),  # a list where a string belongs
        dict(strides=[1, 0, 0, 1], padding=b"SAME"),  # a zero stride
    ):
        nodes = [placeholder(), w, node("y", "Conv2D", "x", "w", T=DataType.FLOAT, **attrs)]
        with pytest.raises(InvalidModelError):
            g = load(nodes)
            g.run(np.zeros((1, 5, 5, 3), np.float32))


def test_a_depthwise_filter_for_other_channels_is_refused():
    nodes = [
        placeholder(),
        const("w", np.zeros((3, 3, 1, 6), np.float32)),
        node("y", "DepthwiseConv2dNative", "x", "w", T=DataType.FLOAT, strides=[1, 1, 1, 1], padding=b"SAME"),
    ]
    with pytest.raises(InvalidModelError, match="depthwise filter for 1 channels on a 3-channel input"):
        load(nodes).run(np.zeros((1, 5, 5, 3), np.float32))


def test_host_floor_div_and_negative_strided_slice_follow_tensorflow():
    """TF's FloorDiv on floats is floor(x / y) (NumPy's floor_divide gives 9 for 1.0 // 0.1); a StridedSlice
    whose begin clamps below the first element with a negative stride is empty (NumPy would read -1 as the
    last element)."""
    from msvision.importers.tf import host

    fd = node("fd", "FloorDiv", T=DataType.FLOAT)
    (q,) = host.evaluate(fd, [np.float32([1.0]), np.float32([0.1])])
    assert q.tolist() == [10.0]
    ss = node(
        "ss", "StridedSlice", begin_mask=0, end_mask=1, ellipsis_mask=0, new_axis_mask=0, shrink_axis_mask=0
    )
    (y,) = host.evaluate(ss, [np.arange(3), np.array([-4]), np.array([0]), np.array([-1])])
    assert y.tolist() == []


def test_too_small_an_input_is_an_input_error():
    """A stride-2 VALID 3x3 convolution cannot run on a 1x1 image: an error about the input, not the model."""
    nodes = [
        placeholder(),
        const("w", np.zeros((3, 3, 3, 4), np.float32)),
        node("y", "Conv2D", "x", "w", T=DataType.FLOAT, strides=[1, 2, 2, 1], padding=b"VALID"),
    ]
    with pytest.raises(InvalidInputError):
        load(nodes).run(np.zeros((1, 1, 1, 3), np.float32))
