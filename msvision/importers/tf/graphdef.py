"""A TensorFlow GraphDef (frozen graph, ``.pb``) reader written from the protocol-buffer wire format.

Neither tensorflow nor google.protobuf is imported: the messages are decoded straight from the bytes, as
tensorflow/core/framework/{graph,node_def,attr_value,tensor,tensor_shape,types}.proto define them. Only what an
importer needs is kept: the nodes (name, op, inputs, device) and their attributes as Python values, constants
as numpy arrays (``Tensor::FromProto`` semantics); ``library``, ``versions`` and debug information are skipped.

Protocol-buffer semantics that matter for hostile files are followed: unknown fields are skipped, a singular
scalar field given twice keeps the last value, a singular message field given twice is merged (parsed as the
concatenation of its occurrences), a oneof member replaces the previous one, map entries with the same key keep
the last one, and repeated numeric fields are accepted packed and unpacked. Everything is bounds-checked; every
problem raises :class:`~msvision.errors.InvalidModelError` naming the source, the byte offset and the field.
Memory is bounded: tensors read from ``tensor_content`` are views of (or copies the size of) the file's own
bytes, and everything expanded from the typed value fields (a single ``float_val`` broadcast to a shape, for
instance) shares one budget of ``8 * len(data) + 64 MiB`` bytes per parse.
"""

from __future__ import annotations

import enum
import os
import struct
from array import array
from dataclasses import dataclass

import numpy as np

from msvision.errors import InvalidModelError

__all__ = [
    "DataType",
    "FuncAttr",
    "NodeDef",
    "TensorShape",
    "numpy_dtype",
    "parse_graphdef",
    "read_graphdef",
]

MAX_GRAPH_BYTES = 2**31 - 1  # protobuf's own limit on a message
MAX_DEPTH = 32  # AttrValues nested through func: protobuf's limit of 100 nested messages allows ~32
MAX_RANK = 254  # TensorShape::MaxDimensions()
EXPANSION_SLACK = 64 << 20  # bytes a parse may expand typed values into, beyond 8x the input's size


class DataType(enum.IntEnum):
    """tensorflow.DataType (types.proto). Reference types (``DT_FLOAT_REF`` = 101, ...) read as their base."""

    FLOAT = 1
    DOUBLE = 2
    INT32 = 3
    UINT8 = 4
    INT16 = 5
    INT8 = 6
    STRING = 7
    COMPLEX64 = 8
    INT64 = 9
    BOOL = 10
    QINT8 = 11
    QUINT8 = 12
    QINT32 = 13
    BFLOAT16 = 14
    QINT16 = 15
    QUINT16 = 16
    UINT16 = 17
    COMPLEX128 = 18
    HALF = 19
    RESOURCE = 20
    VARIANT = 21
    UINT32 = 22
    UINT64 = 23


@dataclass(frozen=True)
class TensorShape:
    """A (partial) shape: ``dims`` is None for an unknown rank; an unknown dimension is -1."""

    dims: tuple[int, ...] | None


@dataclass(frozen=True)
class FuncAttr:
    """An AttrValue ``func`` (NameAttrList): a function name and its attributes (Python values, as NodeDef's)."""

    name: str
    attrs: dict


@dataclass
class NodeDef:
    """One node: ``attrs`` maps each attribute name to its Python value (see :func:`parse_graphdef`)."""

    name: str
    op: str
    inputs: list[str]
    device: str
    attrs: dict[str, object]


_NUMPY = {
    DataType.FLOAT: np.dtype(np.float32),
    DataType.DOUBLE: np.dtype(np.float64),
    DataType.INT32: np.dtype(np.int32),
    DataType.UINT8: np.dtype(np.uint8),
    DataType.INT16: np.dtype(np.int16),
    DataType.INT8: np.dtype(np.int8),
    DataType.STRING: np.dtype(object),
    DataType.COMPLEX64: np.dtype(np.complex64),
    DataType.INT64: np.dtype(np.int64),
    DataType.BOOL: np.dtype(np.bool_),
    DataType.QINT8: np.dtype(np.int8),
    DataType.QUINT8: np.dtype(np.uint8),
    DataType.QINT32: np.dtype(np.int32),
    DataType.BFLOAT16: np.dtype(np.float32),  # widened exactly (the bit pattern shifted into a float32)
    DataType.QINT16: np.dtype(np.int16),
    DataType.QUINT16: np.dtype(np.uint16),
    DataType.UINT16: np.dtype(np.uint16),
    DataType.COMPLEX128: np.dtype(np.complex128),
    DataType.HALF: np.dtype(np.float16),
    DataType.UINT32: np.dtype(np.uint32),
    DataType.UINT64: np.dtype(np.uint64),
}

# How tensor_content stores one element (little-endian); STRING has its own encoding.
_CONTENT = {dt: np.dtype(d).newbyteorder("<") for dt, d in _NUMPY.items() if dt != DataType.STRING}
_CONTENT[DataType.BFLOAT16] = np.dtype("<u2")
_CONTENT[DataType.BOOL] = np.dtype(np.uint8)

# TensorProto field holding the values of each dtype when tensor_content is empty (ProtoHelper<T> in tensor.cc).
_INT_VAL = 7
_VALUE_FIELD = {
    DataType.FLOAT: 5,
    DataType.DOUBLE: 6,
    DataType.STRING: 8,
    DataType.COMPLEX64: 9,
    DataType.INT64: 10,
    DataType.BOOL: 11,
    DataType.COMPLEX128: 12,
    DataType.HALF: 13,
    DataType.BFLOAT16: 13,
    DataType.UINT32: 16,
    DataType.UINT64: 17,
}
for _dt in (
    DataType.INT32,
    DataType.UINT8,
    DataType.INT16,
    DataType.INT8,
    DataType.UINT16,
    DataType.QINT8,
    DataType.QUINT8,
    DataType.QINT16,
    DataType.QUINT16,
    DataType.QINT32,
):
    _VALUE_FIELD[_dt] = _INT_VAL


def numpy_dtype(dt: DataType) -> np.dtype:
    """The numpy dtype of a tensor of ``dt`` as this reader returns it (BFLOAT16 widens to float32, quantized
    types read as their integer storage, STRING is an object array of bytes). Raises InvalidModelError for
    RESOURCE, VARIANT and any value that is not a DataType."""
    try:
        dt = DataType(dt)
    except ValueError:
        raise InvalidModelError(f"{dt!r} is not a TensorFlow DataType msvision knows") from None
    dtype = _NUMPY.get(dt)
    if dtype is None:
        raise InvalidModelError(f"TensorFlow DataType {dt.name} has no numpy equivalent")
    return dtype


# --------------------------------------------------------------------------------------------------
# wire format
# --------------------------------------------------------------------------------------------------

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_WIRE_NAMES = {
    0: "varint",
    1: "fixed64",
    2: "length-delimited",
    3: "group start",
    4: "group end",
    5: "fixed32",
}
_MASK64 = (1 << 64) - 1
_F32 = struct.Struct("<f")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_VARINT_CHUNK = 1 << 20  # packed varints are decoded this many bytes at a time


class _Reader:
    """The bytes being parsed, the name errors give them, and what is left of the expansion budget."""

    __slots__ = ("budget", "data", "node", "source")

    def __init__(self, data: bytes, source: str):
        self.data = data
        self.source = source
        self.budget = 8 * len(data) + EXPANSION_SLACK
        self.node = None  # name of the node being parsed, once known, for error messages

    def fail(self, pos: int, what: str, problem: str):
        where = f" (in node {self.node!r})" if self.node is not None else ""
        raise InvalidModelError(f"{self.source}: byte {pos}: {what}: {problem}{where}")

    def charge(self, nbytes: int, pos: int, what: str) -> None:
        if nbytes > self.budget:
            self.fail(
                pos,
                what,
                f"expands to {nbytes} bytes, more than the {self.budget} left of what a "
                f"{len(self.data)}-byte file may expand to",
            )
        self.budget -= nbytes


def _varint(r: _Reader, pos: int, end: int, what: str) -> tuple[int, int]:
    data = r.data
    start = pos
    result = 0
    shift = 0
    while True:
        if pos >= end:
            r.fail(start, what, "truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _MASK64, pos
        shift += 7
        if shift >= 70:
            r.fail(start, what, "varint longer than 10 bytes")


def _int64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def _int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def _fields(r: _Reader, start: int, end: int, schema: dict):
    """Yields ``(field, wire, a, b, tag_pos)`` for each known field of the message in data[start:end]: for a
    varint ``a`` is its value, otherwise data[a:b] holds the value. Unknown fields are skipped; a known field
    with a wire type it cannot have is an error (a packable repeated numeric may also come length-delimited)."""
    data = r.data
    pos = start
    while pos < end:
        tag_pos = pos
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint(r, pos, end, schema["."])
        field = tag >> 3
        wire = tag & 7
        if field == 0 or tag > 0xFFFFFFFF:
            r.fail(tag_pos, schema["."], f"invalid field number {field}")
        if wire == _VARINT:
            if pos < end and data[pos] < 0x80:
                a = data[pos]
                pos += 1
            else:
                a, pos = _varint(r, pos, end, _field_name(schema, field))
            b = 0
        elif wire == _LEN:
            if pos < end and data[pos] < 0x80:
                n = data[pos]
                a = pos + 1
            else:
                n, a = _varint(r, pos, end, _field_name(schema, field))
            if n > end - a:
                r.fail(
                    tag_pos,
                    _field_name(schema, field),
                    f"length {n} runs past the end ({end - a} bytes left)",
                )
            b = pos = a + n
        elif wire == _I32 or wire == _I64:
            a = pos
            b = pos = pos + (4 if wire == _I32 else 8)
            if pos > end:
                r.fail(tag_pos, _field_name(schema, field), f"truncated {_WIRE_NAMES[wire]} value")
        elif wire == 3 or wire == 4:
            r.fail(tag_pos, _field_name(schema, field), "groups (wire types 3 and 4) are not supported")
        else:
            r.fail(tag_pos, _field_name(schema, field), f"invalid wire type {wire}")
        spec = schema.get(field)
        if spec is None:
            continue
        if wire != spec[1] and not (wire == _LEN and len(spec) > 2):
            r.fail(
                tag_pos,
                _field_name(schema, field),
                f"wire type {_WIRE_NAMES[wire]}, expected {_WIRE_NAMES[spec[1]]}",
            )
        yield field, wire, a, b, tag_pos


def _field_name(schema: dict, field: int) -> str:
    spec = schema.get(field)
    return f"{schema['.']}.{spec[0]}" if spec is not None else f"{schema['.']} field {field}"


def _schema(message: str, /, **fields) -> dict:
    """{number: (name, wire[, "packed"])} plus "." -> the message name."""
    out = {".": message}
    for field_name, spec in fields.items():
        number, *rest = spec
        out[number] = (field_name, *rest)
    return out


_GRAPH = _schema(
    "GraphDef",
    node=(1, _LEN),
    library=(2, _LEN),
    version=(3, _VARINT),
    versions=(4, _LEN),
    debug_info=(5, _LEN),
)
_NODE = _schema(
    "NodeDef",
    name=(1, _LEN),
    op=(2, _LEN),
    input=(3, _LEN),
    device=(4, _LEN),
    attr=(5, _LEN),
    experimental_debug_info=(6, _LEN),
    experimental_type=(7, _LEN),
)
_ENTRY = _schema("AttrEntry", key=(1, _LEN), value=(2, _LEN))
_ATTR = _schema(
    "AttrValue",
    list=(1, _LEN),
    s=(2, _LEN),
    i=(3, _VARINT),
    f=(4, _I32),
    b=(5, _VARINT),
    type=(6, _VARINT),
    shape=(7, _LEN),
    tensor=(8, _LEN),
    placeholder=(9, _LEN),
    func=(10, _LEN),
)
_LIST = _schema(
    "AttrValue.ListValue",
    s=(2, _LEN),
    i=(3, _VARINT, "packed"),
    f=(4, _I32, "packed"),
    b=(5, _VARINT, "packed"),
    type=(6, _VARINT, "packed"),
    shape=(7, _LEN),
    tensor=(8, _LEN),
    func=(9, _LEN),
)
_FUNC = _schema("NameAttrList", name=(1, _LEN), attr=(2, _LEN))
_SHAPE = _schema("TensorShapeProto", dim=(2, _LEN), unknown_rank=(3, _VARINT))
_DIM = _schema("TensorShapeProto.Dim", size=(1, _VARINT), name=(2, _LEN))
_TENSOR = _schema(
    "TensorProto",
    dtype=(1, _VARINT),
    tensor_shape=(2, _LEN),
    version_number=(3, _VARINT),
    tensor_content=(4, _LEN),
    float_val=(5, _I32, "packed"),
    double_val=(6, _I64, "packed"),
    int_val=(7, _VARINT, "packed"),
    string_val=(8, _LEN),
    scomplex_val=(9, _I32, "packed"),
    int64_val=(10, _VARINT, "packed"),
    bool_val=(11, _VARINT, "packed"),
    dcomplex_val=(12, _I64, "packed"),
    half_val=(13, _VARINT, "packed"),
    resource_handle_val=(14, _LEN),
    variant_val=(15, _LEN),
    uint32_val=(16, _VARINT, "packed"),
    uint64_val=(17, _VARINT, "packed"),
    float8_val=(18, _LEN),
)


class _Repeated:
    """A repeated numeric field, packed and unpacked occurrences in order: decoded on demand to raw uint64
    (varints, fixed64) or uint32 (fixed32) values."""

    __slots__ = ("chunks", "first", "run", "width")

    def __init__(self, width: int):
        self.width = width  # 0 varint, 4 fixed32, 8 fixed64
        self.chunks = []  # np arrays of values, or (start, end) packed spans not yet decoded
        self.run = []  # unpacked values not yet in a chunk
        self.first = None  # byte offset of the first occurrence

    def add(self, r: _Reader, wire: int, a: int, b: int, tag_pos: int, what: str) -> None:
        if self.first is None:
            self.first = tag_pos
        if wire == _LEN:
            if self.width and (b - a) % self.width:
                r.fail(tag_pos, what, f"packed length {b - a} is not a multiple of {self.width}")
            self._flush()
            self.chunks.append((a, b))
            return
        if wire == _VARINT:
            self.run.append(a)
        elif self.width == 4:
            self.run.append(_U32.unpack_from(r.data, a)[0])
        else:
            self.run.append(_U64.unpack_from(r.data, a)[0])
        if len(self.run) >= 65536:
            self._flush()

    def _flush(self) -> None:
        if self.run:
            self.chunks.append(np.array(self.run, dtype=np.uint32 if self.width == 4 else np.uint64))
            self.run = []

    def values(self, r: _Reader, what: str) -> np.ndarray:
        self._flush()
        parts = []
        for chunk in self.chunks:
            if isinstance(chunk, tuple):
                a, b = chunk
                if self.width == 0:
                    parts.append(_packed_varints(r, a, b, what))
                else:
                    parts.append(
                        np.frombuffer(r.data, "<u4" if self.width == 4 else "<u8", (b - a) // self.width, a)
                    )
            else:
                parts.append(chunk)
        if not parts:
            return np.empty(0, np.uint32 if self.width == 4 else np.uint64)
        out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return out.astype(out.dtype.newbyteorder("="), copy=False)


def _packed_varints(r: _Reader, start: int, end: int, what: str) -> np.ndarray:
    """The varints in data[start:end] as uint64 (their low 64 bits), decoded with numpy a chunk at a time."""
    if start < end and r.data[end - 1] >= 0x80:
        r.fail(end - 1, what, "truncated packed varint")
    if end - start <= 64:  # strides, ksize...: quicker one by one
        values = []
        pos = start
        while pos < end:
            value, pos = _varint(r, pos, end, what)
            values.append(value)
        return np.array(values, np.uint64)
    out = []
    pos = start
    while pos < end:
        raw = np.frombuffer(r.data, np.uint8, min(_VARINT_CHUNK, end - pos), pos)
        ends = np.flatnonzero(raw < 0x80)
        last = int(ends[-1]) + 1 if len(ends) else 0  # bytes up to the last complete varint
        if pos + len(raw) == end and last != len(raw):
            r.fail(pos + last, what, "truncated packed varint")
        if not last:
            r.fail(pos, what, "varint longer than 10 bytes")
        raw = raw[:last]
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        lengths = ends - starts + 1
        longest = int(np.argmax(lengths))
        if lengths[longest] > 10:
            r.fail(pos + int(starts[longest]), what, "varint longer than 10 bytes")
        within = np.arange(last, dtype=np.uint64) - np.repeat(starts, lengths).astype(np.uint64)
        bits = (raw & 0x7F).astype(np.uint64) << (within * np.uint64(7))
        out.append(np.add.reduceat(bits, starts))  # the 7-bit groups do not overlap: a sum is an OR
        pos += last
    if not out:
        return np.empty(0, np.uint64)
    return out[0] if len(out) == 1 else np.concatenate(out)


def _str(r: _Reader, a: int, b: int, what: str) -> str:
    try:
        return r.data[a:b].decode("utf-8")
    except UnicodeDecodeError as e:
        r.fail(a + e.start, what, "invalid UTF-8 in a string")


def _data_type(r: _Reader, raw: int, pos: int, what: str) -> DataType:
    value = _int32(raw)
    if 100 < value <= 200:
        value -= 100  # a reference type (DT_FLOAT_REF ...)
    try:
        return DataType(value)
    except ValueError:
        problem = "DT_INVALID (0)" if value == 0 else f"{value}, not a DataType msvision knows"
        r.fail(pos, what, f"data type {problem}")


# --------------------------------------------------------------------------------------------------
# messages
# --------------------------------------------------------------------------------------------------


def _shape(r: _Reader, spans: list, pos: int, in_tensor: bool) -> tuple[int, ...] | None:
    """A TensorShapeProto (its occurrences merged): dims, or None for an unknown rank (attrs only)."""
    dims = []
    unknown = False
    lowest = 0 if in_tensor else -1
    for start, end in spans:
        for field, _, a, b, tag_pos in _fields(r, start, end, _SHAPE):
            if field == 2:
                size = 0
                for dim_field, _, value, _, dim_pos in _fields(r, a, b, _DIM):
                    if dim_field == 1:
                        size = _int64(value)
                        if size < lowest:
                            r.fail(dim_pos, "TensorShapeProto.Dim.size", f"invalid dimension {size}")
                dims.append(size)
                if len(dims) > MAX_RANK:
                    r.fail(
                        tag_pos,
                        "TensorShapeProto.dim",
                        f"more than the {MAX_RANK} dimensions TensorFlow allows",
                    )
            else:
                unknown = a != 0
    if unknown:
        if in_tensor:
            r.fail(pos, "TensorProto.tensor_shape", "a tensor's shape must have a known rank")
        if dims:
            r.fail(pos, "TensorShapeProto", f"unknown rank but {len(dims)} dimensions given")
        return None
    return tuple(dims)


def _tensor(r: _Reader, spans: list) -> np.ndarray:
    """A TensorProto (its occurrences merged) as a read-only C-contiguous array (Tensor::FromProto)."""
    pos = spans[0][0]
    data = r.data
    dtype_raw, dtype_pos = 0, pos
    for start, end in spans:  # the dtype first: it says which value field to collect
        for field, _, a, _, tag_pos in _fields(r, start, end, _TENSOR):
            if field == 1:
                dtype_raw, dtype_pos = a, tag_pos
    dt = _data_type(r, dtype_raw, dtype_pos, "TensorProto.dtype")
    if dt not in _NUMPY:
        r.fail(dtype_pos, "TensorProto.dtype", f"{dt.name} tensors are not supported")
    dtype = _NUMPY[dt]
    value_field = _VALUE_FIELD[dt]
    value_name = _TENSOR[value_field][0]
    what = f"TensorProto.{value_name}"
    shape_spans = []
    content = None
    strings = array("q")
    values = _Repeated({5: 4, 9: 4, 6: 8, 12: 8}.get(value_field, 0))
    for start, end in spans:
        for field, wire, a, b, tag_pos in _fields(r, start, end, _TENSOR):
            if field == 2:
                shape_spans.append((a, b))
            elif field == 4:
                content = (a, b, tag_pos)
            elif field == value_field:
                if field == 8:
                    strings.append(a)
                    strings.append(b)
                else:
                    values.add(r, wire, a, b, tag_pos, what)
    dims = _shape(r, shape_spans, shape_spans[0][0] if shape_spans else pos, True) if shape_spans else ()
    count = 1
    for d in dims:
        count *= d
    if count >= 1 << 63:
        r.fail(pos, "TensorProto.tensor_shape", f"shape {list(dims)} has more than 2**63 - 1 elements")

    if content is not None and content[1] > content[0]:
        a, b, tag_pos = content
        if dt == DataType.STRING:
            flat = _string_content(r, a, b, tag_pos, count)
        else:
            wire_dtype = _CONTENT[dt]
            if count * wire_dtype.itemsize != b - a:
                r.fail(
                    tag_pos,
                    "TensorProto.tensor_content",
                    f"{b - a} bytes for shape {list(dims)} of {dt.name} ({count * wire_dtype.itemsize} expected)",
                )
            flat = np.frombuffer(data, wire_dtype, count, a)
            if dt == DataType.BOOL:
                flat = flat != 0
            elif dt == DataType.BFLOAT16:
                flat = (flat.astype(np.uint32) << 16).view(np.float32)
            elif not flat.flags.aligned or not flat.dtype.isnative:
                flat = flat.astype(dtype)
    else:
        r.charge(count * dtype.itemsize, pos, "TensorProto")
        if dt == DataType.STRING:
            flat = _string_values(r, strings, count, pos)
        else:
            flat = _typed_values(r, dt, values, what, count, pos)
    try:
        out = flat.reshape(dims)
    except ValueError as e:
        r.fail(pos, "TensorProto.tensor_shape", f"shape {list(dims)} cannot be represented: {e}")
    out.flags.writeable = False
    return out


def _typed_values(r: _Reader, dt: DataType, values: _Repeated, what: str, count: int, pos: int) -> np.ndarray:
    raw = values.values(r, what)
    if dt == DataType.FLOAT:
        v = raw.view(np.float32)
    elif dt == DataType.DOUBLE:
        v = raw.view(np.float64)
    elif dt == DataType.COMPLEX64 or dt == DataType.COMPLEX128:
        if len(raw) % 2:
            r.fail(values.first, what, f"{len(raw)} values: not (real, imaginary) pairs")
        v = raw.view(np.complex64 if dt == DataType.COMPLEX64 else np.complex128)
    elif dt == DataType.INT64:
        v = raw.view(np.int64)
    elif dt == DataType.UINT64:
        v = raw
    elif dt == DataType.BOOL:
        v = raw != 0
    elif dt == DataType.HALF:
        v = raw.astype(np.uint16).view(np.float16)
    elif dt == DataType.BFLOAT16:
        v = (raw.astype(np.uint16).astype(np.uint32) << 16).view(np.float32)
    elif dt == DataType.UINT32:
        v = raw.astype(np.uint32)
    else:  # int_val: an int32 cast to the element type, as C++ static_cast does
        v = raw.astype(np.uint32).view(np.int32).astype(_NUMPY[dt])
    n = len(v)
    if n > count:
        r.fail(values.first, what, f"{n} values for a shape of {count} elements")
    dtype = _NUMPY[dt]
    if n == count:
        return np.ascontiguousarray(v, dtype)
    if n == 0:
        return np.zeros(count, dtype)
    out = np.empty(count, dtype)
    out[:n] = v
    out[n:] = v[-1]  # fewer values than elements: the last one repeats
    return out


def _string_values(r: _Reader, spans: array, count: int, pos: int) -> np.ndarray:
    n = len(spans) // 2
    if n > count:
        r.fail(spans[0], "TensorProto.string_val", f"{n} values for a shape of {count} elements")
    r.charge(n * 40, pos, "TensorProto.string_val")  # each value is a bytes object
    data = r.data
    out = np.empty(count, object)
    for i in range(n):
        out[i] = data[spans[2 * i] : spans[2 * i + 1]]
    if n < count:
        out[n:] = out[n - 1] if n else b""
    return out


def _string_content(r: _Reader, a: int, b: int, tag_pos: int, count: int) -> np.ndarray:
    """DT_STRING in tensor_content (port::EncodeStringList): ``count`` varint32 lengths, then the bytes."""
    what = "TensorProto.tensor_content"
    if count > b - a:
        r.fail(tag_pos, what, f"{b - a} bytes cannot hold {count} strings")
    r.charge(count * 48, tag_pos, what)
    sizes = []
    pos = a
    for _ in range(count):
        size, end = _varint(r, pos, b, what)
        if size >> 32 or end - pos > 5:
            r.fail(pos, what, "string length is not a varint32")
        sizes.append(size)
        pos = end
    if sum(sizes) != b - pos:
        r.fail(tag_pos, what, f"string lengths add up to {sum(sizes)} bytes, {b - pos} present")
    out = np.empty(count, object)
    data = r.data
    for i, size in enumerate(sizes):
        out[i] = data[pos : pos + size]
        pos += size
    return out


def _func(r: _Reader, spans: list, depth: int) -> FuncAttr:
    name = ""
    attrs = {}
    for start, end in spans:
        for field, _, a, b, _ in _fields(r, start, end, _FUNC):
            if field == 1:
                name = _str(r, a, b, "NameAttrList.name")
            else:
                key, value = _attr_entry(r, a, b, depth)
                attrs[key] = value
    return FuncAttr(name, attrs)


def _attr_entry(r: _Reader, start: int, end: int, depth: int) -> tuple[str, object]:
    """One map<string, AttrValue> entry."""
    key = ""
    value_spans = []
    for field, _, a, b, _ in _fields(r, start, end, _ENTRY):
        if field == 1:
            key = _str(r, a, b, "AttrEntry.key")
        else:
            value_spans.append((a, b))
    return key, _attr_value(r, value_spans, depth) if value_spans else None


def _attr_value(r: _Reader, spans: list, depth: int) -> object:
    """An AttrValue (its occurrences merged) as the Python value of the oneof member set last."""
    if depth > MAX_DEPTH:
        r.fail(spans[0][0], "AttrValue", f"nested more than {MAX_DEPTH} deep")
    case = 0
    value = None
    sub = []
    for start, end in spans:
        for field, _, a, b, tag_pos in _fields(r, start, end, _ATTR):
            if field in (1, 7, 8, 10):  # messages: occurrences of the same member merge
                if case != field:
                    sub = []
                sub.append((a, b))
            else:
                value = (a, b, tag_pos)
            case = field
    if case == 0:
        return None
    if case == 1:
        return _list_value(r, sub, depth)
    if case == 7:
        return TensorShape(_shape(r, sub, sub[0][0], False))
    if case == 8:
        return _tensor(r, sub)
    if case == 10:
        return _func(r, sub, depth + 1)
    a, b, tag_pos = value
    if case == 2:
        return r.data[a:b]
    if case == 3:
        return _int64(a)
    if case == 4:
        return _F32.unpack_from(r.data, a)[0]
    if case == 5:
        return a != 0
    if case == 6:
        return _data_type(r, a, tag_pos, "AttrValue.type")
    return _str(r, a, b, "AttrValue.placeholder")


_LIST_WIDTH = {3: 0, 4: 4, 5: 0, 6: 0}
_LIST_NAMES = {field: f"AttrValue.ListValue.{spec[0]}" for field, spec in _LIST.items() if field != "."}


def _list_value(r: _Reader, spans: list, depth: int) -> list:
    """AttrValue.ListValue: the first non-empty list among s, i, f, b, type, shape, tensor, func; [] if none."""
    found = {}  # field -> its bytes values, its _Repeated, or its message spans
    for start, end in spans:
        for field, wire, a, b, tag_pos in _fields(r, start, end, _LIST):
            acc = found.get(field)
            if field in _LIST_WIDTH:
                if acc is None:
                    acc = found[field] = _Repeated(_LIST_WIDTH[field])
                acc.add(r, wire, a, b, tag_pos, _LIST_NAMES[field])
            elif acc is None:
                found[field] = [r.data[a:b] if field == 2 else (a, b)]
            else:
                acc.append(r.data[a:b] if field == 2 else (a, b))
    for field in sorted(found):
        acc = found[field]
        if field == 2:
            return acc
        if field in _LIST_WIDTH:
            raw = acc.values(r, _LIST_NAMES[field])
            if not len(raw):
                continue
            if field == 3:
                return raw.view(np.int64).tolist()
            if field == 4:
                return raw.view(np.float32).tolist()
            if field == 5:
                return (raw != 0).tolist()
            return [_data_type(r, v, acc.first, _LIST_NAMES[6]) for v in raw.tolist()]
        if field == 7:
            return [TensorShape(_shape(r, [span], span[0], False)) for span in acc]
        if field == 8:
            return [_tensor(r, [span]) for span in acc]
        return [_func(r, [span], depth + 1) for span in acc]
    return []


def _node(r: _Reader, start: int, end: int) -> NodeDef:
    name = op = device = ""
    inputs = []
    attrs = {}
    r.node = None
    for field, _, a, b, _ in _fields(r, start, end, _NODE):
        if field == 1:
            name = r.node = _str(r, a, b, "NodeDef.name")
        elif field == 2:
            op = _str(r, a, b, "NodeDef.op")
        elif field == 3:
            inputs.append(_str(r, a, b, "NodeDef.input"))
        elif field == 4:
            device = _str(r, a, b, "NodeDef.device")
        elif field == 5:
            key, value = _attr_entry(r, a, b, 1)
            attrs[key] = value
    r.node = None
    return NodeDef(name, op, inputs, device, attrs)


def parse_graphdef(data: bytes, source: str = "graph") -> list[NodeDef]:
    """The nodes of a serialized tensorflow.GraphDef, in file order.

    Attribute values are Python values by the AttrValue member set: ``s`` bytes, ``i`` int, ``f`` float,
    ``b`` bool, ``type`` :class:`DataType`, ``shape`` :class:`TensorShape`, ``tensor`` a read-only C-contiguous
    numpy array (dtype per :func:`numpy_dtype`), ``list`` a Python list of the kind listed, ``func``
    :class:`FuncAttr`, ``placeholder`` str; an attribute with no value is None. Raises InvalidModelError
    (naming ``source`` and the byte offset) for anything malformed.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    if len(data) > MAX_GRAPH_BYTES:
        raise InvalidModelError(
            f"{source}: {len(data)} bytes, more than the 2 GiB a protocol buffer may hold"
        )
    r = _Reader(data, source)
    nodes = []
    for field, _, a, b, _ in _fields(r, 0, len(data), _GRAPH):
        if field == 1:
            nodes.append(_node(r, a, b))
    return nodes


def read_graphdef(path: str) -> list[NodeDef]:
    """:func:`parse_graphdef` of a file (a frozen graph ``.pb``); files over 2 GiB are refused."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    if size > MAX_GRAPH_BYTES:
        raise InvalidModelError(f"{path}: {size} bytes, more than the 2 GiB a protocol buffer may hold")
    with open(path, "rb") as f:
        data = f.read(MAX_GRAPH_BYTES + 1)
    return parse_graphdef(data, path)
