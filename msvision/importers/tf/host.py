"""TensorFlow ops evaluated in NumPy on values known before a graph runs: constants at load time, and the shape
subgraphs (``Shape`` -> ``StridedSlice`` -> arithmetic -> ``Pack``...) once the input size is known.

``evaluate(node, values)`` returns the node's outputs as arrays, with TensorFlow's dtypes and semantics (float32
arithmetic in float32, integer division as TF's ``FloorDiv``/``Div``, truncating casts); ``HOST_OPS`` lists what
it can evaluate. Activations never pass through here: this is the trivial array plumbing of a graph's sizes.
"""

from __future__ import annotations

import numpy as np

from ...errors import InvalidModelError
from .graphdef import numpy_dtype

MAX_HOST_ELEMENTS = 1 << 26  # a computed constant larger than this (256 MiB of float32) is refused
MAX_OUTPUTS = 1 << 12  # outputs of one Split/SplitV/Unpack


class Unsupported(Exception):
    """The op cannot be evaluated on the host (the importer then lowers it onto the graph, or reports it)."""


def attr(node, name, default=None):
    value = node.attrs.get(name, default)
    return default if value is None else value


def _dtype(node, name="T"):
    t = attr(node, name)
    return numpy_dtype(t) if t is not None else None


def _check_size(node, shape):
    n = 1
    for d in shape:
        if d < 0:
            raise InvalidModelError(f"{node.op} {node.name!r}: negative dimension in {tuple(shape)}")
        n *= int(d)
    if n > MAX_HOST_ELEMENTS:
        raise InvalidModelError(f"{node.op} {node.name!r}: a constant of shape {tuple(shape)} is too large")


def normalize_axis(node, axis, rank):
    axis = int(axis)
    if not -rank <= axis < max(rank, 1):
        raise InvalidModelError(f"{node.op} {node.name!r}: axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def _clamp_index(v, size, lo, hi, default, masked):
    """A StridedSlice bound: the mask's default, else counted from the end when negative, clamped to [lo, hi]."""
    if masked:
        return default
    v = int(v)
    v = v + size if v < 0 else v
    return max(lo, min(hi, v))


class StridedSliceSpec:
    """A StridedSlice's begin/end/strides and masks resolved against an input shape, as TensorFlow does:
    ``dims`` lists, per input axis, (start, stop, step, shrink); ``new_axes`` the output positions of new axes."""

    def __init__(self, node, shape, begin, end, strides):
        begin, end, strides = (np.asarray(v, np.int64).reshape(-1) for v in (begin, end, strides))
        if not len(begin) == len(end) == len(strides):
            raise InvalidModelError(f"StridedSlice {node.name!r}: begin, end and strides differ in length")
        masks = {
            k: int(attr(node, k, 0)) for k in ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask")
        }
        shrink = int(attr(node, "shrink_axis_mask", 0))
        if bin(masks["ellipsis_mask"]).count("1") > 1:
            raise InvalidModelError(f"StridedSlice {node.name!r}: more than one ellipsis")
        rank = len(shape)
        # expand the sparse spec to one entry per input axis
        n_real = sum(
            1
            for i in range(len(begin))
            if not (masks["new_axis_mask"] >> i) & 1 and not (masks["ellipsis_mask"] >> i) & 1
        )
        entries = []  # (kind, index into spec) kind: 'axis', 'new'
        for i in range(len(begin)):
            if (masks["ellipsis_mask"] >> i) & 1:
                entries.extend([("full", None)] * (rank - n_real))
            elif (masks["new_axis_mask"] >> i) & 1:
                entries.append(("new", i))
            else:
                entries.append(("axis", i))
        if not masks["ellipsis_mask"]:
            entries.extend([("full", None)] * (rank - n_real))
        self.dims, self.out_layout = [], []  # out_layout: per output axis, the input axis or None (new axis)
        axis = 0
        for kind, i in entries:
            if kind == "new":
                self.out_layout.append(None)
                continue
            if axis >= rank:
                raise InvalidModelError(f"StridedSlice {node.name!r}: the slice has more axes than the input")
            size = int(shape[axis])
            if kind == "full":
                self.dims.append((0, size, 1, False))
                self.out_layout.append(axis)
                axis += 1
                continue
            step = int(strides[i])
            if step == 0:
                raise InvalidModelError(f"StridedSlice {node.name!r}: stride 0")
            if (shrink >> i) & 1:
                b = int(begin[i])
                b = b + size if b < 0 else b
                if not 0 <= b < size:
                    raise InvalidModelError(
                        f"StridedSlice {node.name!r}: index {int(begin[i])} out of range {size}"
                    )
                self.dims.append((b, b + 1, 1, True))
                axis += 1
                continue
            lo, hi = (0, size) if step > 0 else (-1, size - 1)

            b = _clamp_index(begin[i], size, lo, hi, lo if step > 0 else hi, (masks["begin_mask"] >> i) & 1)
            e = _clamp_index(end[i], size, lo, hi, hi if step > 0 else lo, (masks["end_mask"] >> i) & 1)
            self.dims.append((b, e, step, False))
            self.out_layout.append(axis)
            axis += 1
        if axis != rank:
            raise InvalidModelError(f"StridedSlice {node.name!r}: the slice covers {axis} of {rank} axes")

    def apply(self, x):
        # a bound clamped to -1 means "before the first element" (NumPy would read -1 as the last one)
        idx = tuple(
            b if shrink else slice(0, 0) if b < 0 else slice(b, e if e >= 0 else None, s)
            for b, e, s, shrink in self.dims
        )
        y = x[idx]
        for pos, a in enumerate(self.out_layout):
            if a is None:
                y = np.expand_dims(y, pos)
        return y


def _div(node, a, b):
    if a.dtype.kind in "iu":
        if np.any(b == 0):
            raise InvalidModelError(f"{node.op} {node.name!r}: integer division by zero")
        q = np.abs(a) // np.abs(b)  # C's truncating division, as TF's Div/RealDiv on integers
        return (np.sign(a) * np.sign(b) * q).astype(a.dtype)
    with np.errstate(all="ignore"):
        return (a / b).astype(a.dtype)


def _floordiv(node, a, b):
    if a.dtype.kind in "iu" and np.any(b == 0):
        raise InvalidModelError(f"{node.op} {node.name!r}: integer division by zero")
    with np.errstate(all="ignore"):
        if a.dtype.kind == "f":  # TF: floor(x / y), not Python's modulo-consistent floor division
            return np.floor(a / b).astype(a.dtype)
        return np.floor_divide(a, b).astype(a.dtype)


def _floormod(node, a, b):
    if a.dtype.kind in "iu" and np.any(b == 0):
        raise InvalidModelError(f"{node.op} {node.name!r}: integer division by zero")
    with np.errstate(all="ignore"):
        return np.mod(a, b).astype(a.dtype)


def _arith(fn):
    def run(node, a, b):
        with np.errstate(all="ignore"):
            return np.asarray(fn(a, b)).astype(np.result_type(a.dtype, b.dtype), copy=False)

    return run


BINARY = {
    "Add": _arith(np.add),
    "AddV2": _arith(np.add),
    "BiasAdd": _arith(np.add),
    "Sub": _arith(np.subtract),
    "Mul": _arith(np.multiply),
    "RealDiv": _div,
    "Div": _div,
    "FloorDiv": _floordiv,
    "FloorMod": _floormod,
    "Maximum": _arith(np.maximum),
    "Minimum": _arith(np.minimum),
    "Pow": _arith(np.power),
    "SquaredDifference": _arith(lambda a, b: (a - b) * (a - b)),
    "Greater": lambda n, a, b: np.greater(a, b),
    "GreaterEqual": lambda n, a, b: np.greater_equal(a, b),
    "Less": lambda n, a, b: np.less(a, b),
    "LessEqual": lambda n, a, b: np.less_equal(a, b),
    "Equal": lambda n, a, b: np.equal(a, b),
    "NotEqual": lambda n, a, b: np.not_equal(a, b),
    "LogicalAnd": lambda n, a, b: np.logical_and(a, b),
    "LogicalOr": lambda n, a, b: np.logical_or(a, b),
}


def _softmax(x):
    """Over the last axis, as TF's CPU kernel: exp(x - max) times the reciprocal of its sum."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e * (x.dtype.type(1) / e.sum(axis=-1, keepdims=True))


def _float_unary(fn):
    def run(node, x):
        with np.errstate(all="ignore"):
            return np.asarray(fn(x)).astype(x.dtype, copy=False)

    return run


UNARY = {
    "Identity": lambda n, x: x,
    "StopGradient": lambda n, x: x,
    "Snapshot": lambda n, x: x,
    "Neg": lambda n, x: np.negative(x),
    "Abs": lambda n, x: np.abs(x),
    "Square": lambda n, x: x * x,
    "Sqrt": _float_unary(np.sqrt),
    "Rsqrt": _float_unary(lambda x: 1 / np.sqrt(x)),
    "Reciprocal": _float_unary(lambda x: 1 / x),
    "Exp": _float_unary(np.exp),
    "Floor": _float_unary(np.floor),
    "Ceil": _float_unary(np.ceil),
    "Round": _float_unary(np.round),  # half to even, as TF's Round
    "Relu": lambda n, x: np.maximum(x, x.dtype.type(0)),
    "Relu6": lambda n, x: np.minimum(np.maximum(x, x.dtype.type(0)), x.dtype.type(6)),
    "Sigmoid": _float_unary(lambda x: 1 / (1 + np.exp(-x))),
    "Tanh": _float_unary(np.tanh),
    "LogicalNot": lambda n, x: np.logical_not(x),
    "Softmax": _float_unary(_softmax),
    "ZerosLike": lambda n, x: np.zeros_like(x),
    "OnesLike": lambda n, x: np.ones_like(x),
}


def _cast(node, x):
    dst = numpy_dtype(attr(node, "DstT"))
    if x.dtype.kind == "f" and dst.kind in "iu":
        with np.errstate(all="ignore"):
            x = np.trunc(x)
            info = np.iinfo(dst)
            x = np.clip(np.nan_to_num(x), info.min, info.max)  # C's cast is undefined out of range
    return x.astype(dst)


def _reduce(fn):
    def run(node, x, axes):
        axes = tuple(normalize_axis(node, a, x.ndim) for a in np.asarray(axes).reshape(-1))
        keep = bool(attr(node, "keep_dims", False))
        with np.errstate(all="ignore"):
            return np.asarray(fn(x, axis=axes, keepdims=keep)).astype(x.dtype, copy=False)

    return run


def reshape_target(node, in_shape, shape) -> tuple:
    """Reshape's output shape for an input of ``in_shape`` (one -1 inferred), computed without the data."""
    shape = [int(d) for d in np.asarray(shape).reshape(-1)]
    size = int(np.prod(in_shape, dtype=np.int64))
    if shape.count(-1) > 1 or any(d < -1 for d in shape) or len(shape) > 8:
        raise InvalidModelError(f"Reshape {node.name!r}: bad shape {shape}")
    known = int(np.prod([d for d in shape if d != -1], dtype=np.int64)) if shape else 1
    if -1 in shape:
        if known == 0 or size % known:
            raise InvalidModelError(f"Reshape {node.name!r}: cannot reshape {tuple(in_shape)} to {shape}")
        shape[shape.index(-1)] = size // known
    if int(np.prod(shape, dtype=np.int64)) != size:
        raise InvalidModelError(f"Reshape {node.name!r}: cannot reshape {tuple(in_shape)} to {shape}")
    return tuple(shape)


def squeeze_target(node, in_shape) -> tuple:
    """Squeeze's output shape (``squeeze_dims``, or every size-1 axis), computed without the data."""
    dims = attr(node, "squeeze_dims", []) or []
    if not dims:
        return tuple(d for d in in_shape if d != 1)
    axes = {normalize_axis(node, a, len(in_shape)) for a in dims}
    for a in axes:
        if in_shape[a] != 1:
            raise InvalidModelError(f"Squeeze {node.name!r}: axis {a} of {tuple(in_shape)} is not 1")
    return tuple(d for i, d in enumerate(in_shape) if i not in axes)


def _reshape(node, x, shape):
    return x.reshape(reshape_target(node, x.shape, shape))


def _squeeze(node, x):
    return x.reshape(squeeze_target(node, x.shape))


def _expand_dims(node, x, axis):
    a = int(np.asarray(axis).reshape(-1)[0])
    a = normalize_axis(node, a, x.ndim + 1)
    return np.expand_dims(x, a)


def _concat(node, *inputs):
    *values, axis = inputs
    if not values:
        raise InvalidModelError(f"ConcatV2 {node.name!r}: no inputs")
    a = normalize_axis(node, int(np.asarray(axis).reshape(-1)[0]), values[0].ndim)
    try:
        return np.concatenate(values, axis=a)
    except ValueError as e:
        raise InvalidModelError(f"ConcatV2 {node.name!r}: {e}") from None


def _concat_v1(node, axis, *values):
    return _concat(node, *values, axis)


def _pack(node, *values):
    a = normalize_axis(node, int(attr(node, "axis", 0)), values[0].ndim + 1)
    try:
        return np.stack(values, axis=a)
    except ValueError as e:
        raise InvalidModelError(f"Pack {node.name!r}: {e}") from None


def _fill(node, dims, value):
    dims = [int(d) for d in np.asarray(dims).reshape(-1)]
    _check_size(node, dims)
    return np.full(dims, value, dtype=np.asarray(value).dtype)


def _tile(node, x, multiples):
    m = [int(v) for v in np.asarray(multiples).reshape(-1)]
    if len(m) != x.ndim:
        raise InvalidModelError(f"Tile {node.name!r}: {len(m)} multiples for rank {x.ndim}")
    _check_size(node, [d * k for d, k in zip(x.shape, m)])
    return np.tile(x, m)


def _range(node, start, limit, delta):
    start, limit, delta = (np.asarray(v).reshape(()) for v in (start, limit, delta))
    if delta == 0:
        raise InvalidModelError(f"Range {node.name!r}: delta 0")
    n = max(0, int(np.ceil((limit - start) / delta)))
    _check_size(node, [n])
    return (start + delta * np.arange(n)).astype(np.result_type(start, limit, delta))


def _transpose(node, x, perm):
    perm = [int(p) for p in np.asarray(perm).reshape(-1)]
    if sorted(perm) != list(range(x.ndim)):
        raise InvalidModelError(f"Transpose {node.name!r}: {perm} is not a permutation of {x.ndim} axes")
    return np.transpose(x, perm)


def paddings_of(node, paddings, rank):
    p = np.asarray(paddings, np.int64)
    if p.shape != (rank, 2) or np.any(p < 0):
        raise InvalidModelError(f"{node.op} {node.name!r}: paddings {p.tolist()} do not fit rank {rank}")
    return [(int(a), int(b)) for a, b in p]


def _pad(node, x, paddings, value=None):
    p = paddings_of(node, paddings, x.ndim)
    if node.op == "MirrorPad":
        mode = attr(node, "mode", b"REFLECT")
        mode = {b"REFLECT": "reflect", b"SYMMETRIC": "symmetric"}.get(mode)
        if mode is None:
            raise InvalidModelError(f"MirrorPad {node.name!r}: unknown mode")
        slack = 1 if mode == "reflect" else 0
        if any(max(a, b) > d - slack for d, (a, b) in zip(x.shape, p)):
            raise InvalidModelError(f"MirrorPad {node.name!r}: paddings {p} exceed what {x.shape} mirrors")
        return np.pad(x, p, mode=mode)
    return np.pad(x, p, constant_values=0 if value is None else np.asarray(value).reshape(()))


def _slice(node, x, begin, size):
    begin = [int(b) for b in np.asarray(begin).reshape(-1)]
    size = [int(s) for s in np.asarray(size).reshape(-1)]
    if len(begin) != x.ndim or len(size) != x.ndim:
        raise InvalidModelError(f"Slice {node.name!r}: begin/size do not fit rank {x.ndim}")
    idx = []
    for b, s, d in zip(begin, size, x.shape):
        e = d if s == -1 else b + s
        if not 0 <= b <= e <= d:
            raise InvalidModelError(f"Slice {node.name!r}: [{b}, {e}) out of range {d}")
        idx.append(slice(b, e))
    return x[tuple(idx)]


def _select(node, cond, a, b):
    cond = np.asarray(cond)
    if node.op == "Select" and cond.ndim == 1 and np.ndim(a) > 1:
        # TF1's Select with a vector condition picks whole rows (SelectV2 broadcasts as NumPy does)
        cond = cond.reshape((-1,) + (1,) * (np.ndim(a) - 1))
    return np.where(cond, a, b)


def _shape(node, x):
    return np.asarray(x.shape, dtype=_dtype(node, "out_type") or np.int32)


def _strided_slice(node, x, begin, end, strides):
    return StridedSliceSpec(node, x.shape, begin, end, strides).apply(x)


def _split(node, axis, x):
    n = int(attr(node, "num_split", 1))
    a = normalize_axis(node, int(np.asarray(axis).reshape(-1)[0]), x.ndim)
    if not 0 < n <= MAX_OUTPUTS or x.shape[a] % n:
        raise InvalidModelError(f"Split {node.name!r}: {x.shape[a]} does not split into {n}")
    return np.split(x, n, axis=a)


def split_sizes(node, sizes, total):
    sizes = [int(s) for s in np.asarray(sizes).reshape(-1)]
    if len(sizes) > MAX_OUTPUTS:
        raise InvalidModelError(f"SplitV {node.name!r}: {len(sizes)} outputs")
    if sizes.count(-1) > 1 or any(s < -1 for s in sizes):
        raise InvalidModelError(f"SplitV {node.name!r}: bad sizes {sizes}")
    if -1 in sizes:
        sizes[sizes.index(-1)] = total - sum(s for s in sizes if s != -1)
    if sum(sizes) != total or any(s < 0 for s in sizes):
        raise InvalidModelError(f"SplitV {node.name!r}: sizes {sizes} do not add up to {total}")
    return sizes


def _split_v(node, x, sizes, axis):
    a = normalize_axis(node, int(np.asarray(axis).reshape(-1)[0]), x.ndim)
    sizes = split_sizes(node, sizes, x.shape[a])
    return np.split(x, np.cumsum(sizes)[:-1], axis=a)


def _unpack(node, x):
    a = normalize_axis(node, int(attr(node, "axis", 0)), x.ndim)
    if x.shape[a] > MAX_OUTPUTS:
        raise InvalidModelError(f"Unpack {node.name!r}: {x.shape[a]} outputs")
    return [np.take(x, i, axis=a) for i in range(x.shape[a])]


def conv2d(x, weight, bias, stride, padding, dilation, groups):
    """A convolution of a constant NHWC float32 input (a shape-dependent constant, such as the pixel counts a box
    filter computes over ``tf.ones``), with the core's weight layout (out, in / groups, kh, kw) and padding (top,
    left, bottom, right): float32 products summed tap by tap."""
    n, h, w, c = x.shape
    out_c, cin_g, kh, kw = weight.shape
    (sh, sw), (dh, dw) = stride, dilation
    top, left, bottom, right = padding
    oh = (h + top + bottom - (kh - 1) * dh - 1) // sh + 1
    ow = (w + left + right - (kw - 1) * dw - 1) // sw + 1
    if oh < 1 or ow < 1 or cin_g * groups != c:
        raise InvalidModelError(f"a constant convolution of {weight.shape} does not fit its input {x.shape}")
    if n * oh * ow * out_c > MAX_HOST_ELEMENTS:
        raise InvalidModelError(f"a constant convolution of shape {(n, oh, ow, out_c)} is too large")
    xp = np.pad(x.astype(np.float32), ((0, 0), (top, bottom), (left, right), (0, 0)))
    out = np.zeros((n, oh, ow, groups, out_c // groups), np.float32)
    wg = weight.astype(np.float32).reshape(groups, out_c // groups, cin_g, kh, kw)
    for i in range(kh):
        for j in range(kw):
            tap = xp[:, i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw : j * dw + (ow - 1) * sw + 1 : sw]
            out += np.einsum("nhwgc,goc->nhwgo", tap.reshape(n, oh, ow, groups, cin_g), wg[..., i, j])
    return out.reshape(n, oh, ow, out_c) + bias.astype(np.float32)


MULTI = {"Split": _split, "SplitV": _split_v, "Unpack": _unpack}

OTHER = {
    "Cast": _cast,
    "Mean": _reduce(np.mean),
    "Sum": _reduce(np.sum),
    "Max": _reduce(np.max),
    "Min": _reduce(np.min),
    "Prod": _reduce(np.prod),
    "All": _reduce(np.all),
    "Any": _reduce(np.any),
    "Reshape": _reshape,
    "Squeeze": _squeeze,
    "ExpandDims": _expand_dims,
    "ConcatV2": _concat,
    "Concat": _concat_v1,
    "Pack": _pack,
    "Fill": _fill,
    "Tile": _tile,
    "Range": _range,
    "Transpose": _transpose,
    "Pad": _pad,
    "PadV2": _pad,
    "MirrorPad": _pad,
    "Slice": _slice,
    "StridedSlice": _strided_slice,
    "Select": _select,
    "SelectV2": _select,
    "Shape": _shape,
    "Size": lambda n, x: np.asarray(x.size, dtype=_dtype(n, "out_type") or np.int32),
    "Rank": lambda n, x: np.asarray(x.ndim, dtype=np.int32),
}

HOST_OPS = frozenset(BINARY) | frozenset(UNARY) | frozenset(OTHER) | frozenset(MULTI) | {"Const"}


def _contiguous(a):
    a = np.asarray(a)
    return a if a.flags.c_contiguous else a.copy()  # (np.ascontiguousarray would make a scalar 1-D)


PLUMBING_OPS = frozenset({"Identity", "StopGradient", "Snapshot", "Const", "Shape", "Size", "Rank"})


def _precheck(node, values):
    """Refuses, before NumPy computes it, an output too large (concatenations, pads, strings)."""
    op = node.op
    if op not in PLUMBING_OPS and any(v.dtype.kind not in "fiub" for v in values):
        raise InvalidModelError(f"{op} {node.name!r}: computing on {values[0].dtype} values is not supported")
    if op in ("ConcatV2", "Concat", "Pack"):
        parts = values[:-1] if op == "ConcatV2" else values[1:] if op == "Concat" else values
        _check_size(node, [sum(int(v.size) for v in parts)])
    elif op in ("Pad", "PadV2", "MirrorPad") and len(values) > 1:
        p = paddings_of(node, values[1], values[0].ndim)
        _check_size(node, [d + a + b for d, (a, b) in zip(values[0].shape, p)])


def evaluate(node, values: list[np.ndarray]) -> list[np.ndarray]:
    """The outputs of ``node`` given its input values (all known); raises Unsupported for ops outside the table."""
    op = node.op
    try:
        _precheck(node, values)
        if op == "Const":
            value = attr(node, "value")
            if not isinstance(value, np.ndarray):
                raise InvalidModelError(f"Const {node.name!r} has no tensor value")
            return [value]
        if op in BINARY:
            if len(values) != 2:
                raise InvalidModelError(f"{op} {node.name!r}: expected 2 inputs, got {len(values)}")
            a, b = values
            if a.dtype != b.dtype and not (a.dtype.kind == b.dtype.kind == "b"):
                raise InvalidModelError(f"{op} {node.name!r}: inputs of types {a.dtype} and {b.dtype}")
            _check_size(node, np.broadcast_shapes(a.shape, b.shape))  # before NumPy allocates it
            out = BINARY[op](node, a, b)
        elif op in UNARY:
            out = UNARY[op](node, values[0])
        elif op in MULTI:
            return [_contiguous(v) for v in MULTI[op](node, *values)]
        elif op in OTHER:
            out = OTHER[op](node, *values)
        else:
            raise Unsupported(op)
    except (TypeError, IndexError, ZeroDivisionError, OverflowError) as e:  # wrong input count or kinds
        raise InvalidModelError(f"{op} {node.name!r}: cannot evaluate on its inputs ({e})") from None
    except ValueError as e:
        if isinstance(e, InvalidModelError):
            raise
        raise InvalidModelError(f"{op} {node.name!r}: {e}") from None
    out = np.asarray(out)
    _check_size(node, out.shape)
    return [_contiguous(out)]


__all__ = [
    "HOST_OPS",
    "StridedSliceSpec",
    "Unsupported",
    "attr",
    "conv2d",
    "evaluate",
    "paddings_of",
    "split_sizes",
]
