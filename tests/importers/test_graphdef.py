"""Tests for msvision.importers.tf.graphdef: a GraphDef reader written from the protobuf wire format.

tensorflow is a test dependency only: it builds the graphs and serves as the oracle (its own protobuf parse,
``tf.make_ndarray`` and, for tensors, the C++ ``Tensor::FromProto`` through ``tf.io.parse_tensor``). The package
under test never imports it (nor google.protobuf). Hostile inputs are written by hand with the small encoder
below, so those tests run without tensorflow.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

from msvision.errors import InvalidModelError
from msvision.importers.tf.graphdef import (
    MAX_DEPTH,
    DataType,
    FuncAttr,
    NodeDef,
    TensorShape,
    numpy_dtype,
    parse_graphdef,
    read_graphdef,
)

FAST_S = 5.0  # every refusal takes milliseconds; this bound only guards against a hang


@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("tensorflow")


# --------------------------------------------------------------------------------------------------
# a protobuf encoder small enough to trust (for the inputs tensorflow would never write)
# --------------------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int32/int64 values are sign-extended to 10 bytes
    out = bytearray()
    while True:
        if n < 0x80:
            return bytes(out + bytes([n]))
        out.append(n & 0x7F | 0x80)
        n >>= 7


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _ld(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _vi(field: int, n: int) -> bytes:
    return _key(field, 0) + _varint(n)


def _f32(field: int, x: float) -> bytes:
    return _key(field, 5) + struct.pack("<f", x)


def _packed(field: int, values, fmt: str | None = None) -> bytes:
    body = (
        b"".join(_varint(v) for v in values) if fmt is None else struct.pack(f"<{len(values)}{fmt}", *values)
    )
    return _ld(field, body)


def _shape(*dims: int, unknown_rank: bool = False) -> bytes:
    return b"".join(_ld(2, _vi(1, d)) for d in dims) + (_vi(3, 1) if unknown_rank else b"")


def _tensor(dtype: int, dims=(), *fields: bytes) -> bytes:
    return _vi(1, dtype) + _ld(2, _shape(*dims)) + b"".join(fields)


def _attr(key: str, value: bytes) -> bytes:
    """A NodeDef.attr map entry; ``value`` is the AttrValue's bytes."""
    return _ld(5, _ld(1, key.encode()) + _ld(2, value))


def _node(name: str = "n", op: str = "Const", *fields: bytes, inputs=()) -> bytes:
    return (
        _ld(1, name.encode())
        + _ld(2, op.encode())
        + b"".join(_ld(3, i.encode()) for i in inputs)
        + b"".join(fields)
    )


def _graph(*nodes: bytes) -> bytes:
    return b"".join(_ld(1, n) for n in nodes)


def _const(tensor: bytes, name: str = "c") -> bytes:
    return _graph(_node(name, "Const", _attr("value", _ld(8, tensor))))


def test_the_encoder_writes_what_protobuf_reads(tf):
    """The hand encoder above agrees with protobuf (so the hostile inputs are what the tests say)."""
    data = _graph(
        _node("a", "Placeholder", _attr("shape", _ld(7, _shape(-1, 3))), _attr("i", _vi(3, -5))),
        _node("b", "Identity", _attr("f", _f32(4, 0.5)), inputs=["a"]),
    )
    gd = tf.compat.v1.GraphDef.FromString(data)
    assert [n.name for n in gd.node] == ["a", "b"] and list(gd.node[1].input) == ["a"]
    assert [d.size for d in gd.node[0].attr["shape"].shape.dim] == [-1, 3]
    assert gd.node[0].attr["i"].i == -5 and gd.node[1].attr["f"].f == 0.5


# --------------------------------------------------------------------------------------------------
# the oracle: tensorflow's parse, turned into the values parse_graphdef promises
# --------------------------------------------------------------------------------------------------


def _expected_array(tf, tensor_proto) -> np.ndarray:
    arr = tf.make_ndarray(tensor_proto)
    if arr.dtype.names:  # quantized types come back as one-field structured arrays
        arr = arr[arr.dtype.names[0]]
    if tensor_proto.dtype % 100 == DataType.BFLOAT16:
        arr = arr.astype(np.float32)
    return arr


def _expected(tf, value):
    """The Python value parse_graphdef must give for a tensorflow AttrValue."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("s", "i", "f", "b", "placeholder"):
        return getattr(value, kind)
    if kind == "type":
        return DataType(value.type % 100)
    if kind == "shape":
        return _expected_shape(value.shape)
    if kind == "tensor":
        return _expected_array(tf, value.tensor)
    if kind == "func":
        return FuncAttr(value.func.name, {k: _expected(tf, v) for k, v in value.func.attr.items()})
    lst = value.list
    for name in ("s", "i", "f", "b", "type", "shape", "tensor", "func"):
        items = list(getattr(lst, name))
        if not items:
            continue
        if name == "type":
            return [DataType(t % 100) for t in items]
        if name == "shape":
            return [_expected_shape(s) for s in items]
        if name == "tensor":
            return [_expected_array(tf, t) for t in items]
        if name == "func":
            return [FuncAttr(f.name, {k: _expected(tf, v) for k, v in f.attr.items()}) for f in items]
        return items
    return []


def _expected_shape(shape) -> TensorShape:
    return TensorShape(None if shape.unknown_rank else tuple(d.size for d in shape.dim))


def _assert_value(ours, expected, where: str) -> None:
    if isinstance(expected, np.ndarray):
        assert isinstance(ours, np.ndarray), where
        assert ours.dtype == expected.dtype and ours.shape == expected.shape, (where, ours.dtype, ours.shape)
        assert ours.flags.c_contiguous, where
        if expected.dtype.kind in "fc":
            assert np.array_equal(ours, expected, equal_nan=True), where
        else:
            assert np.array_equal(ours, expected), where
        if expected.dtype == object:
            assert all(type(v) is bytes for v in ours.flat), where
    elif isinstance(expected, list):
        assert isinstance(ours, list) and len(ours) == len(expected), (where, ours, expected)
        for i, (o, e) in enumerate(zip(ours, expected)):
            _assert_value(o, e, f"{where}[{i}]")
    elif isinstance(expected, FuncAttr):
        assert isinstance(ours, FuncAttr) and ours.name == expected.name, where
        assert set(ours.attrs) == set(expected.attrs), where
        for k, e in expected.attrs.items():
            _assert_value(ours.attrs[k], e, f"{where}.{k}")
    else:
        assert type(ours) is type(expected) and ours == expected, (where, ours, expected)


def _assert_same(tf, data: bytes) -> list[NodeDef]:
    """Our parse of ``data`` equals tensorflow's: every node, input, device, attribute and constant."""
    gd = tf.compat.v1.GraphDef.FromString(data)
    ours = parse_graphdef(data)
    assert [n.name for n in ours] == [n.name for n in gd.node]
    for mine, theirs in zip(ours, gd.node):
        assert isinstance(mine, NodeDef)
        assert (mine.op, mine.inputs, mine.device) == (theirs.op, list(theirs.input), theirs.device), (
            mine.name
        )
        assert set(mine.attrs) == set(theirs.attr), mine.name
        for key, value in theirs.attr.items():
            _assert_value(mine.attrs[key], _expected(tf, value), f"{mine.name}.{key}")
    return ours


# --------------------------------------------------------------------------------------------------
# graphs tensorflow writes
# --------------------------------------------------------------------------------------------------


def _frozen_convnet(tf) -> bytes:
    """A small conv net with batch norm, frozen (variables folded into Consts), as tf.function traces it."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    rng = np.random.default_rng(0)
    w1 = tf.Variable(rng.standard_normal((3, 3, 3, 8)).astype(np.float32))
    w2 = tf.Variable(rng.standard_normal((3, 3, 8, 8)).astype(np.float32))
    mean, var = (
        tf.Variable(rng.random(8).astype(np.float32)),
        tf.Variable(rng.random(8).astype(np.float32) + 1),
    )
    gamma, beta = tf.Variable(rng.random(8).astype(np.float32)), tf.Variable(rng.random(8).astype(np.float32))
    dense = tf.Variable(rng.standard_normal((8, 5)).astype(np.float32))
    bias = tf.Variable(rng.standard_normal(5).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 16, 16, 3], tf.float32, name="image")])
    def net(x):
        y = tf.nn.conv2d(x, w1, strides=[1, 2, 2, 1], padding="SAME")
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(y, gamma, beta, mean, var, epsilon=1e-3, is_training=False)
        y = tf.nn.relu6(y)
        y = tf.nn.depthwise_conv2d(y, tf.reshape(w2[:, :, :, :1], [3, 3, 8, 1]), [1, 1, 1, 1], "VALID")
        y = tf.nn.batch_normalization(y, mean, var, beta, gamma, 1e-5)
        y = tf.nn.max_pool2d(y, ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1], padding="SAME")
        y = tf.nn.avg_pool2d(y, 2, 1, "VALID")
        y = tf.reduce_mean(y, axis=[1, 2])
        y = tf.nn.bias_add(tf.matmul(y, dense), bias)
        return tf.nn.softmax(tf.cast(y, tf.float16))

    frozen = convert_variables_to_constants_v2(net.get_concrete_function())
    return frozen.graph.as_graph_def(add_shapes=True).SerializeToString()


def _constants_graph(tf) -> bytes:
    """Placeholders with partial and unknown shapes and a Const of every dtype, in tensor_content and in the
    typed fields (single values broadcast, empty tensors, extreme integers), plus list/type/func attrs."""
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.placeholder(tf.float32, [None, None, 3], name="partial")
        tf.compat.v1.placeholder(tf.int64, None, name="unknown_rank")
        tf.compat.v1.placeholder(tf.bool, [], name="scalar")
        rng = np.random.default_rng(1)
        for dtype in (np.float32, np.float64, np.float16):
            tf.constant(
                (rng.standard_normal((2, 3)) * 50).astype(dtype), name=f"content_{np.dtype(dtype).name}"
            )
        for dtype in (np.int8, np.uint8, np.int16, np.uint16, np.int32):
            info = np.iinfo(dtype)
            values = rng.integers(info.min, info.max, (3, 2), endpoint=True).astype(dtype)
            tf.constant(values, name=f"content_{np.dtype(dtype).name}")
        tf.constant(np.array([-(2**63), 2**63 - 1, -1], np.int64), name="int64_extremes")
        tf.constant(np.array([2**32 - 1, 7], np.uint32), name="uint32")
        tf.constant(np.array([2**64 - 1, 7], np.uint64), name="uint64")
        tf.constant(np.array([1 + 2j, -3.5j], np.complex64), name="complex64")
        tf.constant(np.array([[1 - 1j]], np.complex128), name="complex128")
        tf.constant([True, False, True], name="bools")
        tf.constant(np.array([1.5, -2.25, 3e38], np.float32), dtype=tf.bfloat16, name="bfloat16")
        tf.constant([b"", b"a\x00b", "é".encode()], name="strings")
        tf.constant(1.5, shape=[2, 3], name="float_broadcast")
        tf.constant(-7, shape=[4], dtype=tf.int32, name="int_broadcast")
        tf.constant(True, shape=[2, 2], name="bool_broadcast")
        tf.constant(0.5, shape=[3], dtype=tf.float16, name="half_broadcast")
        tf.constant(b"xy", shape=[3], name="string_broadcast")
        tf.constant(np.zeros((0, 3), np.float32), name="empty")
        tf.constant(np.float64(2.5), name="scalar_double")
        for dtype in (tf.qint8, tf.quint8, tf.qint32):
            tf.constant(np.array([1, 2, 3]), dtype=dtype, name=f"quantized_{dtype.name}")
        with tf.device("/device:CPU:0"):
            x = tf.compat.v1.placeholder(tf.float32, [2, 3], name="x")
            tf.cast(x, tf.int32, name="cast")
        a, b = tf.identity_n([x, tf.constant(1)], name="identity_n")  # list(type)
        tf.strided_slice(x, [0, 1], [2, 3], [1, 1], begin_mask=1, shrink_axis_mask=2, name="slice")
        tf.concat([x, x], axis=1, name="concat")
        tf.reshape(x, [-1], name="reshape")
        tf.pad(x, [[1, 1], [0, 2]], name="pad")

        @tf.function
        def double(t):
            return t * 2.0

        double(x)  # a PartitionedCall node with a func attr (NameAttrList)
    return g.as_graph_def(add_shapes=True).SerializeToString()


def _hand_attrs_graph(tf) -> bytes:
    """A NodeDef carrying one attr of every AttrValue kind, set through tensorflow's own protobuf classes."""
    from tensorflow.core.framework import attr_value_pb2, graph_pb2, tensor_shape_pb2

    gd = graph_pb2.GraphDef()
    node = gd.node.add(
        name="everything", op="Custom", input=["a:1", "^b"], device="/job:w/task:0/device:CPU:0"
    )
    attr = node.attr
    attr["s"].s = b"\x00\xffbytes"
    attr["i"].i = -(2**63)
    attr["f"].f = -0.1
    attr["b"].b = True
    attr["b_false"].b = False
    attr["type"].type = tf.half.as_datatype_enum
    attr["ref_type"].type = tf.float32.as_datatype_enum + 100  # DT_FLOAT_REF
    dim = tensor_shape_pb2.TensorShapeProto.Dim
    attr["shape"].shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(dim=[dim(size=-1), dim(size=7, name="w")]))
    attr["shape_unknown"].shape.unknown_rank = True
    attr["shape_scalar"].shape.SetInParent()
    attr["tensor"].tensor.CopyFrom(tf.make_tensor_proto(np.arange(6, dtype=np.int64).reshape(2, 3)))
    attr["placeholder"].placeholder = "T"
    attr["unset"].CopyFrom(attr_value_pb2.AttrValue())
    attr["list_empty"].list.SetInParent()
    attr["list_s"].list.s.extend([b"loc:@a", b""])
    attr["list_i"].list.i.extend([1, -1, 2**40])
    attr["list_f"].list.f.extend([0.25, -3.0])
    attr["list_b"].list.b.extend([True, False])
    attr["list_type"].list.type.extend([tf.int32.as_datatype_enum, tf.string.as_datatype_enum])
    attr["list_shape"].list.shape.add(dim=[dim(size=2)])
    attr["list_shape"].list.shape.add(unknown_rank=True)
    attr["list_tensor"].list.tensor.extend([tf.make_tensor_proto(1.0), tf.make_tensor_proto([b"s"])])
    func = attr["func"].func
    func.name = "my_function"
    func.attr["T"].type = tf.float32.as_datatype_enum
    func.attr["inner"].func.name = "inner_function"
    func.attr["inner"].func.attr["n"].i = 3
    lf = attr["list_func"].list.func.add(name="f1")
    lf.attr["x"].s = b"y"
    # the typed value fields as Tensor::FromProto reads them: fewer values than elements repeat the last one
    few = attr["few_floats"].tensor
    few.CopyFrom(tf.make_tensor_proto(np.zeros(5, np.float32)))
    few.ClearField("tensor_content")
    few.float_val.extend([1.0, 2.0])
    none = attr["no_values"].tensor
    none.CopyFrom(tf.make_tensor_proto(np.zeros((2, 2), np.int32)))
    none.ClearField("tensor_content")
    for name, array, field, values in [
        ("half_val", np.zeros(3, np.float16), "half_val", np.array([1.5, -2], np.float16).view(np.uint16)),
        ("bf16_val", np.zeros(3, np.float32), "half_val", [0x3FC0, 0xC000]),
        ("int8_val", np.zeros(3, np.int8), "int_val", [-128, 127]),
        ("uint16_val", np.zeros(3, np.uint16), "int_val", [65535, 1]),
        ("double_val", np.zeros(3, np.float64), "double_val", [1e300, -0.0]),
        ("int64_val", np.zeros(3, np.int64), "int64_val", [-(2**63), 5]),
        ("uint64_val", np.zeros(3, np.uint64), "uint64_val", [2**64 - 1]),
        ("uint32_val", np.zeros(3, np.uint32), "uint32_val", [2**32 - 1, 0]),
        ("complex64_val", np.zeros(3, np.complex64), "scomplex_val", [1.0, 2.0, 3.0, 4.0]),
        ("bool_val", np.zeros(3, np.bool_), "bool_val", [True, False]),
    ]:
        t = attr[name].tensor
        t.CopyFrom(tf.make_tensor_proto(array, dtype=tf.bfloat16 if name == "bf16_val" else None))
        t.ClearField("tensor_content")
        t.ClearField(field)
        getattr(t, field).extend([int(v) if field in ("half_val", "int_val") else v for v in values])
    return gd.SerializeToString()


def test_frozen_convnet_matches_tensorflow(tf):
    """A frozen conv net (Conv2D, FusedBatchNorm, depthwise conv, pools, MatMul, Cast, shapes from add_shapes):
    every node and attribute of our parse equals tensorflow's."""
    nodes = _assert_same(tf, _frozen_convnet(tf))
    ops = {n.op for n in nodes}
    assert {"Conv2D", "FusedBatchNormV3", "DepthwiseConv2dNative", "MaxPool", "AvgPool", "MatMul"} <= ops
    conv = next(n for n in nodes if n.op == "Conv2D")
    assert conv.attrs["strides"] == [1, 2, 2, 1] and conv.attrs["padding"] == b"SAME"
    assert conv.attrs["T"] is DataType.FLOAT
    weights = [n.attrs["value"] for n in nodes if n.op == "Const" and n.attrs["value"].shape == (3, 3, 3, 8)]
    assert len(weights) == 1 and weights[0].dtype == np.float32


def test_constants_and_attrs_match_tensorflow(tf):
    """Consts of every dtype (tensor_content and typed fields, broadcasts, empty, extremes), partial and
    unknown-rank shapes, devices, list(type), func attrs: all equal tensorflow's parse."""
    nodes = {n.name: n for n in _assert_same(tf, _constants_graph(tf))}
    assert nodes["partial"].attrs["shape"] == TensorShape((-1, -1, 3))
    assert nodes["unknown_rank"].attrs["shape"] == TensorShape(None)
    assert nodes["scalar"].attrs["shape"] == TensorShape(())
    assert np.array_equal(nodes["float_broadcast"].attrs["value"], np.full((2, 3), 1.5, np.float32))
    assert nodes["bfloat16"].attrs["value"].dtype == np.float32
    assert nodes["bfloat16"].attrs["value"].tolist()[:2] == [1.5, -2.25]
    assert nodes["cast"].device == "/device:CPU:0" and nodes["cast"].attrs["DstT"] is DataType.INT32
    call = next(n for n in nodes.values() if n.op == "StatefulPartitionedCall" or n.op == "PartitionedCall")
    assert isinstance(call.attrs["f"], FuncAttr) and "double" in call.attrs["f"].name


def test_every_attr_kind_matches_tensorflow(tf):
    """One attr of each AttrValue kind and list kind, ref types, an unset attr, and tensors from the typed value
    fields with fewer values than elements (the last repeats) or none (zeros)."""
    (node,) = _assert_same(tf, _hand_attrs_graph(tf))
    a = node.attrs
    assert node.inputs == ["a:1", "^b"] and node.device == "/job:w/task:0/device:CPU:0"
    assert a["unset"] is None and a["list_empty"] == [] and a["ref_type"] is DataType.FLOAT
    assert a["shape"] == TensorShape((-1, 7)) and a["shape_unknown"] == TensorShape(None)
    assert a["func"] == FuncAttr(
        "my_function", {"T": DataType.FLOAT, "inner": FuncAttr("inner_function", {"n": 3})}
    )
    assert a["few_floats"].tolist() == [1, 2, 2, 2, 2] and a["no_values"].tolist() == [[0, 0], [0, 0]]
    assert a["bf16_val"].tolist() == [1.5, -2, -2] and a["int8_val"].tolist() == [-128, 127, 127]
    assert a["complex64_val"].tolist() == [1 + 2j, 3 + 4j, 3 + 4j]


def test_tensors_match_the_cpp_tensor_from_proto(tf):
    """Every tensor of the three graphs, parsed again by tensorflow's C++ Tensor::FromProto (tf.io.parse_tensor),
    equals ours: the broadcast and zero-fill rules are the runtime's, not only tensorflow's Python's."""
    from tensorflow.core.framework import graph_pb2

    checked = 0
    for data in (_constants_graph(tf), _hand_attrs_graph(tf), _frozen_convnet(tf)):
        gd = graph_pb2.GraphDef.FromString(data)
        ours = {n.name: n for n in parse_graphdef(data)}
        for node in gd.node:
            for key, value in node.attr.items():
                if value.WhichOneof("value") != "tensor" or value.tensor.dtype in (11, 12, 13, 15, 16):
                    continue  # parse_tensor has no kernel for the quantized types
                dtype = tf.dtypes.as_dtype(value.tensor.dtype)
                cpp = np.asarray(tf.io.parse_tensor(value.tensor.SerializeToString(), dtype).numpy())
                if dtype == tf.bfloat16:
                    cpp = cpp.astype(np.float32)
                _assert_value(ours[node.name].attrs[key], cpp, f"{node.name}.{key}")
                checked += 1
    assert checked > 30


def test_string_tensor_content_matches_the_cpp_decoder(tf):
    """DT_STRING in tensor_content (varint32 lengths, then the bytes: port::EncodeStringList), which only the
    C++ runtime reads."""
    strings = [b"", b"abc", b"\x00" * 200]
    content = b"".join(_varint(len(s)) for s in strings) + b"".join(strings)
    tensor = _tensor(7, (3,), _ld(4, content))
    cpp = tf.io.parse_tensor(tensor, tf.string).numpy()
    (node,) = parse_graphdef(_const(tensor))
    assert node.attrs["value"].tolist() == cpp.tolist() == strings
    with pytest.raises(InvalidModelError, match="string lengths add up"):
        parse_graphdef(_const(_tensor(7, (3,), _ld(4, content + b"x"))))


def test_wire_format_variants_match_tensorflow(tf):
    """What protobuf accepts beyond what tensorflow writes, read as protobuf reads it: unpacked and packed
    repeated numerics mixed, unknown fields of every wire type, repeated singular fields (the last wins),
    message fields given twice (merged), a oneof member replaced, map keys given twice (the last wins), ref
    types, int32 negatives sign-extended to 10 bytes."""
    unknown = _vi(99, 5) + _key(98, 1) + b"8bytes!!" + _ld(97, b"skip") + _key(96, 5) + b"four"
    list_i = _ld(1, _vi(3, 1) + _packed(3, [2, 3]) + _vi(3, -4) + unknown)
    list_f = _ld(1, _f32(4, 1.5) + _packed(4, [2.5, 3.5], "f") + _f32(4, -1))
    tensor_unpacked = _tensor(1, (4,), _f32(5, 1.0), _packed(5, [2.0], "f"), _f32(5, 3.0), unknown)
    merged_shape = _vi(1, 3) + _ld(2, _shape(2)) + _ld(2, _shape(3)) + _packed(7, [1, -2, 3, -(2**31)])
    first = _ld(
        1,
        _node(
            "first",
            "Old",
            unknown,
            _ld(2, b"Op"),  # a second op: the last wins
            _attr("list_i", list_i),
            _attr("list_f", list_f),
            _attr("t", _ld(8, tensor_unpacked)),
            _attr("merged", _ld(8, merged_shape)),
            _attr("replaced", _ld(7, _shape(1)) + _vi(3, 9)),  # shape, then i: i wins
            _attr("remerged", _vi(3, 9) + _ld(7, _shape(1)) + _ld(7, _shape(2))),  # i, then a merged shape
            _attr("dup", _vi(3, 1)),
            _attr("dup", _vi(5, 1)),  # the same key again: replaces
            _attr("ref", _vi(6, 119)),  # DT_HALF_REF
            _attr("neg", _vi(3, -1)),
            inputs=["x", "y"],
        ),
    )
    data = first + unknown + _graph(_node("second", "NoOp"))  # unknown GraphDef fields between the nodes
    nodes = _assert_same(tf, data)
    a = nodes[0].attrs
    assert nodes[0].op == "Op" and a["list_i"] == [1, 2, 3, -4] and a["list_f"] == [1.5, 2.5, 3.5, -1]
    assert a["t"].tolist() == [1, 2, 3, 3] and a["merged"].tolist() == [
        [1, -2, 3],
        [-(2**31), -(2**31), -(2**31)],
    ]
    assert a["replaced"] == 9 and a["remerged"] == TensorShape((1, 2)) and a["dup"] is True
    assert a["ref"] is DataType.HALF and a["neg"] == -1


# --------------------------------------------------------------------------------------------------
# hostile and broken files
# --------------------------------------------------------------------------------------------------


def _refused(data: bytes, match: str, at: int | None = None, source: str = "hostile.pb") -> str:
    """parse_graphdef refuses ``data`` quickly with InvalidModelError naming the source, a byte offset (``at``
    when given) and ``match``; returns the message."""
    start = time.perf_counter()
    with pytest.raises(InvalidModelError) as info:
        parse_graphdef(data, source)
    assert time.perf_counter() - start < FAST_S
    message = str(info.value)
    found = re.match(rf"{re.escape(source)}: byte (\d+): ", message)
    assert found, message
    if at is not None:
        assert int(found.group(1)) == at, message
    assert re.search(match, message), message
    return message


def test_every_truncation_is_refused_or_a_node_prefix(tf):
    """Every prefix of a real graph either parses to the graph's first k nodes (a cut exactly between nodes)
    or raises InvalidModelError with a byte offset; nothing else ever escapes."""
    data = _constants_graph(tf)
    full = parse_graphdef(data)
    boundaries = {}  # byte offset of each top-level field's tag -> nodes before it
    pos = nodes_before = 0
    while pos < len(data):
        boundaries[pos] = nodes_before
        assert data[pos] in (0x0A, 0x12, 0x22)  # GraphDef.node, library, versions: length-delimited
        nodes_before += data[pos] == 0x0A
        size, shift, pos = 0, 0, pos + 1
        while data[pos] & 0x80:
            size, shift, pos = size | (data[pos] & 0x7F) << shift, shift + 7, pos + 1
        pos += 1 + (size | data[pos] << shift)
    assert pos == len(data) and nodes_before == len(full)
    parsed = 0
    for cut in range(len(data)):
        try:
            nodes = parse_graphdef(data[:cut], "cut.pb")
        except InvalidModelError as e:
            assert cut not in boundaries, cut
            assert re.match(r"cut\.pb: byte \d+: ", str(e)), str(e)
            continue
        assert cut in boundaries, cut
        assert [n.name for n in nodes] == [n.name for n in full[: boundaries[cut]]]
        parsed += 1
    assert parsed == len(boundaries)


def test_truncation_inside_nested_messages_names_the_field():
    """A length that runs past the end of its enclosing message is reported at the field's tag, naming it."""
    node = _node("n", "Const", _attr("value", _ld(8, _tensor(1, (2,), _packed(5, [1.0, 2.0], "f")))))
    data = _graph(node)
    _refused(data[:-1], r"GraphDef\.node: length \d+ runs past the end", at=0)
    inner = _ld(1, b"n") + _ld(2, b"Const") + _key(5, 2) + _varint(10**6) + b"x"
    _refused(
        _graph(inner), r"NodeDef\.attr: length 1000000 runs past the end \(1 bytes left\) \(in node 'n'\)"
    )
    _refused(_key(1, 2) + _varint(2**63), "length .* runs past the end", at=0)


def test_wrong_wire_types_are_refused():
    """A known field with a wire type it cannot have, groups and the invalid wire types 6 and 7."""
    _refused(_key(1, 5) + b"abcd", r"GraphDef\.node: wire type fixed32, expected length-delimited", at=0)
    _refused(_graph(_vi(1, 5)), r"NodeDef\.name: wire type varint", at=2)
    _refused(
        _graph(_node("n", "C", _attr("f", _vi(4, 1)))), r"AttrValue\.f: wire type varint, expected fixed32"
    )
    _refused(_const(_ld(1, b"x")), r"TensorProto\.dtype: wire type length-delimited, expected varint")
    _refused(_const(_tensor(2, (1,), _f32(6, 1.0))), r"TensorProto\.double_val: wire type fixed32")
    for wire in (3, 4):
        _refused(_key(7, wire) + b"\x00", "groups", at=0)
    for wire in (6, 7):
        _refused(_graph(_node()) + _key(7, wire), f"invalid wire type {wire}", at=len(_graph(_node())))
    _refused(_key(0, 0) + b"\x00", "invalid field number 0", at=0)


def test_overlong_varints_are_refused():
    """Varints of 11 bytes (as tags, values, lengths and packed elements) and truncated ones."""
    eleven = b"\xff" * 10 + b"\x01"
    _refused(eleven, "varint longer than 10 bytes", at=0)
    _refused(_vi(99, 0)[:-1] + eleven, "varint longer than 10 bytes", at=2)
    _refused(_key(1, 2) + eleven, "varint longer than 10 bytes", at=1)
    ten = b"\xff" * 9 + b"\x01"  # the longest legal varint (2**64 - 1): fine
    assert parse_graphdef(_key(99, 0) + ten) == []
    packed = _ld(1, _ld(3, b"\x01" + eleven))  # ListValue.i with an 11-byte element
    _refused(_graph(_node("n", "C", _attr("l", packed))), r"AttrValue\.ListValue\.i: varint longer than 10")
    _refused(_graph(_node("n", "C", _attr("l", _ld(1, _ld(3, b"\x01\x80"))))), "truncated packed varint")
    _refused(_key(99, 0) + b"\x80\x80", "truncated varint", at=2)


def test_bad_dimensions_are_refused():
    """Negative tensor dims, dims below -1 in attr shapes, an unknown rank with dims or in a tensor, more than
    254 dims, and element counts past int64."""
    _refused(_const(_tensor(1, (-1,))), r"TensorShapeProto\.Dim\.size: invalid dimension -1")
    _refused(_const(_tensor(1, (2, -(2**40)))), "invalid dimension")
    shape_attr = _graph(_node("p", "Placeholder", _attr("shape", _ld(7, _shape(-1, -2)))))
    _refused(shape_attr, r"invalid dimension -2 \(in node 'p'\)")
    both = _graph(_node("p", "Placeholder", _attr("shape", _ld(7, _shape(3, unknown_rank=True)))))
    _refused(both, "unknown rank but 1 dimensions")
    _refused(_const(_vi(1, 1) + _ld(2, _shape(unknown_rank=True))), "must have a known rank")
    _refused(_const(_tensor(1, (1,) * 255)), "more than the 254 dimensions")
    _refused(_const(_tensor(1, (2**62, 4))), r"more than 2\*\*63 - 1 elements")


def test_content_and_value_counts_must_fit_the_shape():
    """tensor_content must be exactly elements * itemsize bytes; more typed values than elements is an error
    (fewer repeat the last); complex values come in pairs; packed fixed-width runs are whole."""
    _refused(
        _const(_tensor(1, (2, 2), _ld(4, b"\x00" * 12))),
        r"12 bytes for shape \[2, 2\] of FLOAT \(16 expected",
    )
    _refused(_const(_tensor(1, (0,), _ld(4, b"\x00" * 4))), "4 bytes for shape")
    _refused(
        _const(_tensor(1, (2,), _packed(5, [1, 2, 3], "f"))),
        r"TensorProto\.float_val: 3 values for a shape of 2",
    )
    _refused(_const(_tensor(3, (), _vi(7, 1), _vi(7, 2))), "2 values for a shape of 1")
    _refused(_const(_tensor(7, (1,), _ld(8, b"a"), _ld(8, b"b"))), r"string_val: 2 values for a shape of 1")
    _refused(_const(_tensor(8, (2,), _packed(9, [1, 2, 3], "f"))), "not \\(real, imaginary\\) pairs")
    _refused(_const(_tensor(1, (2,), _ld(5, b"\x00" * 6))), "packed length 6 is not a multiple of 4")
    _refused(_const(_tensor(7, (3,), _ld(4, b"\x01\x01"))), "2 bytes cannot hold 3 strings")


def test_bad_data_types_are_refused():
    """A tensor without a dtype (DT_INVALID), types msvision does not know, and RESOURCE/VARIANT tensors."""
    _refused(_const(_ld(2, _shape(1))), r"TensorProto\.dtype: data type DT_INVALID")
    _refused(_const(_tensor(24, (1,))), "data type 24, not a DataType")
    _refused(_graph(_node("n", "C", _attr("t", _vi(6, 77)))), r"AttrValue\.type: data type 77")
    _refused(
        _graph(_node("n", "C", _attr("l", _ld(1, _packed(6, [1, 0]))))),
        r"ListValue\.type: data type DT_INVALID",
    )
    _refused(_const(_tensor(20, (1,))), "RESOURCE tensors are not supported")
    _refused(_const(_tensor(21, ())), "VARIANT tensors are not supported")


def test_invalid_utf8_and_deep_nesting_are_refused():
    """Strings must be UTF-8 (proto3); func attrs nested past MAX_DEPTH (protobuf's limit of 100 nested messages
    allows about 32) are refused before Python's recursion limit is near."""
    _refused(_graph(_ld(1, b"ok\xff")), r"NodeDef\.name: invalid UTF-8", at=6)
    _refused(
        _graph(_node("n", "C", _ld(3, b"\xed\xa0\x80"))), r"NodeDef\.input: invalid UTF-8"
    )  # a surrogate
    value = _vi(3, 1)
    for _ in range(MAX_DEPTH - 1):
        value = _ld(10, _ld(1, b"f") + _ld(2, _ld(1, b"k") + _ld(2, value)))
    (node,) = parse_graphdef(_graph(_node("n", "C", _attr("deep", value))))
    depth = 0
    attr = node.attrs["deep"]
    while isinstance(attr, FuncAttr):
        attr, depth = attr.attrs["k"], depth + 1
    assert (attr, depth) == (1, MAX_DEPTH - 1)
    value = _ld(10, _ld(1, b"f") + _ld(2, _ld(1, b"k") + _ld(2, value)))
    _refused(_graph(_node("n", "C", _attr("deep", value))), f"nested more than {MAX_DEPTH} deep")
    very_deep = _vi(3, 1)
    for _ in range(3000):
        very_deep = _ld(1, _ld(9, _ld(2, _ld(2, very_deep))))  # ListValue.func this time
    _refused(_graph(_node("n", "C", _attr("deep", very_deep))), f"nested more than {MAX_DEPTH} deep")


def test_huge_broadcasts_are_refused_without_allocating():
    """A tensor of 10**18 elements from one float_val (or none), and many Consts each broadcasting a moderate
    size, are refused by the expansion budget (8x the file + 64 MiB) before any allocation; shapes numpy cannot
    hold are an InvalidModelError too."""
    tracemalloc.start()
    try:
        _refused(_const(_tensor(1, (10**9, 10**9), _f32(5, 1.0))), "expands to 4000000000000000000 bytes")
        _refused(_const(_tensor(7, (10**15,), _ld(8, b"x"))), "expands to")
        _refused(_const(_tensor(9, (2**40,))), "expands to")
        many = _graph(
            *(_node(f"c{i}", "Const", _attr("value", _ld(8, _tensor(1, (2**22,))))) for i in range(20))
        )
        _refused(many, r"expands to 16777216 bytes, more than the \d+ left .* \(in node 'c\d+'\)")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200 << 20
    _refused(_const(_tensor(1, (0, 2**62, 2**62))), "cannot be represented")
    (node,) = parse_graphdef(_const(_tensor(1, (1024, 1024), _f32(5, 2.0))))  # 4 MiB from 5 bytes: fine
    assert node.attrs["value"].shape == (1024, 1024) and node.attrs["value"][-1, -1] == 2


def test_tensor_arrays_are_read_only_aligned_and_native():
    """Tensors from tensor_content are read-only, C-contiguous and aligned wherever the bytes lie in the file."""
    for pad in range(4):
        data = _const(_tensor(1, (3,), _ld(4, struct.pack("<3f", 1, 2, 3))), name="c" * (pad + 1))
        (node,) = parse_graphdef(data)
        value = node.attrs["value"]
        assert value.tolist() == [1, 2, 3] and value.flags.c_contiguous and value.flags.aligned
        assert not value.flags.writeable and value.dtype.isnative


def test_read_graphdef_names_the_file_and_refuses_over_2_gib(tmp_path):
    """read_graphdef parses a file and names it in errors; a file over 2 GiB is refused before it is read."""
    path = tmp_path / "frozen.pb"
    path.write_bytes(_graph(_node("a", "Placeholder")))
    assert [n.name for n in read_graphdef(str(path))] == ["a"]
    path.write_bytes(b"\x0a\x05abc")
    with pytest.raises(
        InvalidModelError, match=rf"^{re.escape(str(path))}: byte 0: GraphDef\.node: length 5"
    ):
        read_graphdef(path)
    big = tmp_path / "big.pb"
    with open(big, "wb") as f:
        f.truncate(2**31)  # sparse
    with pytest.raises(InvalidModelError, match="more than the 2 GiB"):
        read_graphdef(big)
    assert parse_graphdef(b"") == []


def test_numpy_dtype():
    """The dtype of each DataType as the reader returns it; RESOURCE, VARIANT and non-types are refused."""
    assert numpy_dtype(DataType.FLOAT) == np.float32 and numpy_dtype(DataType.BFLOAT16) == np.float32
    assert numpy_dtype(DataType.HALF) == np.float16 and numpy_dtype(DataType.STRING).kind == "O"
    assert numpy_dtype(DataType.QUINT8) == np.uint8 and numpy_dtype(DataType.UINT64) == np.uint64
    for dt in DataType:
        if dt in (DataType.RESOURCE, DataType.VARIANT):
            with pytest.raises(InvalidModelError, match=dt.name):
                numpy_dtype(dt)
        else:
            assert isinstance(numpy_dtype(dt), np.dtype)
    with pytest.raises(InvalidModelError):
        numpy_dtype(0)


def test_many_nodes_parse_in_linear_time():
    """20,000 small nodes and one 40 MB constant parse in seconds (no quadratic step)."""
    nodes = [
        _node(f"node_{i}", "Identity", _attr("T", _vi(6, 1)), inputs=[f"node_{i - 1}"]) for i in range(20000)
    ]
    big = _node("weights", "Const", _attr("value", _ld(8, _tensor(1, (10**7,), _ld(4, bytes(4 * 10**7))))))
    data = _graph(*nodes, big)
    start = time.perf_counter()
    parsed = parse_graphdef(data)
    assert time.perf_counter() - start < 10
    assert len(parsed) == 20001 and parsed[-1].attrs["value"].shape == (10**7,)


def test_the_reader_never_imports_tensorflow_or_protobuf():
    """The runtime reader decodes the wire format itself."""
    code = (
        "import sys; from msvision.importers.tf.graphdef import parse_graphdef; parse_graphdef(b'');"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'google')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_long_packed_varints_across_decoding_chunks():
    """Packed varints longer than the numpy decoder's 1 MiB chunk (values of every length 1..10 bytes, so varints
    straddle the chunk ends) decode exactly; an 11-byte or truncated one deep inside is still refused."""
    rng = np.random.default_rng(0)
    values = [
        int(v) for v in rng.integers(-(2**63), 2**63, 200_000, dtype=np.int64) >> rng.integers(0, 64, 200_000)
    ]
    packed = b"".join(_varint(v) for v in values)
    assert len(packed) > 1 << 20
    (node,) = parse_graphdef(_const(_tensor(9, (len(values),), _ld(10, packed))))
    assert node.attrs["value"].tolist() == values
    (node,) = parse_graphdef(_graph(_node("n", "C", _attr("l", _ld(1, _ld(3, packed))))))
    assert node.attrs["l"] == values
    bad = packed[: 3 << 19] + b"\xff" * 10 + b"\x01" + packed[3 << 19 :]
    _refused(_const(_tensor(9, (len(values),), _ld(10, bad))), r"int64_val: varint longer than 10 bytes")
    _refused(_const(_tensor(9, (len(values),), _ld(10, packed + b"\x80"))), "truncated packed varint")
