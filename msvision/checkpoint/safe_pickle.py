"""A restricted unpickler for checkpoints: it never imports or executes anything named by the file.

Every global a pickle may reference is looked up in an explicit allow-list and mapped to a small
re-implementation in this module (torch itself is never imported, numpy is only used to build arrays
from validated bytes).  Anything else raises :class:`UnsafeCheckpointError` naming the global.

Pickles are executed by a small machine of our own (:func:`restricted_load`) over the opcodes that
:mod:`pickletools` decodes, never by :mod:`pickle`: it refuses opcodes that can create arbitrary objects
(``INST``, ``OBJ``, ``NEWOBJ``, extension codes, out-of-band buffers), looks every ``GLOBAL`` up in the
allow-list, never allocates more than the bytes present back (every length field is checked against
them), and never hashes a value it has not checked: dict keys and set elements must be names or small
integers. Its work is linear in the size of the pickle.

Objects built while unpickling are placeholders (:class:`LazyTensor`, :class:`NdarrayBuilder`, ...);
:func:`resolve` then turns the tree into plain Python containers and C-contiguous NumPy arrays, checking
bounds, nesting depth, cycles and a byte budget on the way.
"""

from __future__ import annotations

import io
import math
import pickletools
import re
import reprlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import CheckpointError, UnsafeCheckpointError

__all__ = [
    "NUMPY_GLOBALS",
    "TORCH_GLOBALS",
    "Budget",
    "LazyTensor",
    "StorageType",
    "TorchStorage",
    "TorchStorageView",
    "numpy_dtype_from_descr",
    "resolve",
    "brief",
    "restricted_load",
]

#: Containers nested deeper than this are refused (real checkpoints nest a handful of levels).
MAX_DEPTH = 100
#: Tensors with more dimensions than this are refused.
MAX_NDIM = 64

_REFUSED_SUFFIX = "checkpoints may only contain tensors and plain containers"

# Python 2 module names that pickle's fix_imports would translate (the C unpickler only does this in
# the default find_class, which we replace).
_MODULE_ALIASES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _refused(name: str, path: str, how: str = "") -> UnsafeCheckpointError:
    return UnsafeCheckpointError(f"refused global {brief(name)}{how} in {path}: {_REFUSED_SUFFIX}")


# --------------------------------------------------------------------------------------------------
# Placeholders
# --------------------------------------------------------------------------------------------------


class _Placeholder:
    """Base for objects the unpickler may create.  A stray ``BUILD`` on them is refused."""

    __slots__ = ()

    def __setstate__(self, state: object) -> None:
        raise CheckpointError(f"unexpected BUILD on {type(self).__name__}")


class _SafeCallable(_Placeholder):
    """What ``find_class`` hands out for an allowed callable.

    Wrapping (instead of returning the function or class itself) means a pickle cannot ``BUILD`` on a
    global to set attributes (``__defaults__``, class attributes...) that would outlive this load.
    """

    __slots__ = ("_fn", "name")

    def __init__(self, name: str, fn: Callable[..., object]) -> None:
        self.name = name
        self._fn = fn

    def __call__(self, *args: object) -> object:
        return self._fn(*args)

    def __repr__(self) -> str:
        return f"<allowed {self.name}>"


class _TypeToken(_Placeholder):
    """Stands for a type the pickle names (e.g. ``numpy.ndarray``); not callable, never instantiated."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


class StorageType(_TypeToken):
    """Stands for ``torch.<X>Storage``: the element type of a serialized storage."""

    __slots__ = ("itemsize", "kind", "raw_dtype")

    def __init__(self, name: str, raw_dtype: str, kind: str) -> None:
        super().__init__(name)
        self.raw_dtype = raw_dtype  # little-endian NumPy dtype of the bytes on disk
        self.itemsize = np.dtype(raw_dtype).itemsize
        self.kind = kind  # 'plain', 'bool' or 'bfloat16'


# name -> (dtype of the stored bytes, conversion)
_STORAGE_TYPES = {
    "FloatStorage": ("<f4", "plain"),
    "HalfStorage": ("<f2", "plain"),
    "BFloat16Storage": ("<u2", "bfloat16"),
    "DoubleStorage": ("<f8", "plain"),
    "LongStorage": ("<i8", "plain"),
    "IntStorage": ("<i4", "plain"),
    "ShortStorage": ("<i2", "plain"),
    "CharStorage": ("i1", "plain"),
    "ByteStorage": ("u1", "plain"),
    "BoolStorage": ("u1", "bool"),
}


class TorchStorage(_Placeholder):
    """A serialized torch storage: element type, element count and (eventually) its bytes.

    ``loader(nbytes)`` returns at least the first ``nbytes`` bytes on demand (zip format: only what tensors
    use is inflated); the legacy reader calls :meth:`set_data` once it reaches the storage's bytes after the
    main pickle.
    """

    __slots__ = ("_array", "_data", "_loader", "big_endian", "key", "numel", "stype")

    def __init__(
        self,
        stype: StorageType,
        numel: int,
        key: str,
        loader: Callable[[int], Any] | None = None,
        big_endian: bool = False,
    ) -> None:
        self.stype = stype
        self.numel = numel
        self.key = key
        self._loader = loader
        self._data: Any = None
        self._array: np.ndarray | None = None
        self.big_endian = big_endian

    @property
    def nbytes(self) -> int:
        return self.numel * self.stype.itemsize

    def set_data(self, data: Any) -> None:
        self._data = data

    def array(self, path: str, count: int | None = None) -> np.ndarray:
        """At least the first ``count`` elements (all when None) as a read-only 1-D array of the on-disk dtype
        (no conversion); ``count`` must not exceed :attr:`numel`."""
        count = self.numel if count is None else count
        if self._array is None or self._array.shape[0] < count:
            itemsize = self.stype.itemsize
            data = self._data
            if data is None and self._loader is not None:
                data = self._loader(count * itemsize)
            if data is None:
                raise CheckpointError(f"storage {brief(self.key)} in {path} has no data")
            if len(data) < count * itemsize:
                raise CheckpointError(
                    f"storage {brief(self.key)} in {path} claims {self.nbytes} bytes "
                    f"but only {len(data)} are present"
                )
            dtype = np.dtype(self.stype.raw_dtype)
            if self.big_endian:
                dtype = dtype.newbyteorder(">")
            self._array = np.frombuffer(data, dtype=dtype, count=min(self.numel, len(data) // itemsize))
        return self._array


class TorchStorageView(_Placeholder):
    """A legacy-format view into another storage (``view_metadata`` in the persistent id)."""

    __slots__ = ("base", "key", "numel", "offset")

    def __init__(self, base: TorchStorage, offset: int, numel: int, key: str) -> None:
        self.base = base
        self.offset = offset
        self.numel = numel
        self.key = key

    @property
    def stype(self) -> StorageType:
        return self.base.stype

    def array(self, path: str, count: int | None = None) -> np.ndarray:
        count = self.numel if count is None else count
        if self.offset + self.numel > self.base.numel:
            raise CheckpointError(
                f"storage view {brief(self.key)} in {path} reaches element {self.offset + self.numel} "
                f"of a storage holding {self.base.numel}"
            )
        return self.base.array(path, self.offset + count)[self.offset : self.offset + self.numel]


class LazyTensor(_Placeholder):
    """What ``torch._utils._rebuild_tensor*`` builds: a strided view of a storage, read later."""

    __slots__ = ("offset", "size", "storage", "stride")

    def __init__(self, storage: TorchStorage | TorchStorageView, offset: int, size: tuple, stride: tuple):
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride


class _PickledOrderedDict(dict):
    """Stands for ``collections.OrderedDict``; a plain dict (insertion-ordered) that accepts the
    attribute state ``state_dict()`` attaches (``_metadata``) and drops it."""

    __slots__ = ()

    def __setstate__(self, state: object) -> None:
        if state is not None and not isinstance(state, dict):
            raise CheckpointError("unexpected OrderedDict state")


class DtypeBuilder(_Placeholder):
    """Stands for ``numpy.dtype(spec, align, copy)`` followed by ``BUILD`` with its byte order."""

    __slots__ = ("byteorder", "spec")

    _SPEC = re.compile(r"^(b1|[iu][1248]|f[248]|c(8|16)|O[48])$")

    def __init__(self, spec: object, align: object = False, copy: object = False) -> None:
        if not isinstance(spec, str) or not self._SPEC.match(spec):
            raise CheckpointError(f"unsupported numpy dtype {brief(spec)}")
        self.spec = spec
        self.byteorder = "="

    def __setstate__(self, state: object) -> None:
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise CheckpointError(f"unsupported numpy dtype state {brief(state)}")
        if state[2] is not None or state[3] is not None or state[4] is not None:
            raise CheckpointError("structured numpy dtypes are not supported")
        if len(state) == 9 and state[8] is not None:
            raise CheckpointError("numpy dtype metadata is not supported")
        if state[1] not in ("<", ">", "|", "="):
            raise CheckpointError(f"bad numpy dtype byte order {brief(state[1])}")
        self.byteorder = state[1]

    def resolve(self) -> np.dtype:
        dtype = np.dtype(self.spec)
        if self.byteorder in "<>" and dtype.itemsize > 1 and dtype.kind != "O":
            dtype = dtype.newbyteorder(self.byteorder)
        return dtype


class NdarrayBuilder(_Placeholder):
    """Stands for ``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`` + ``BUILD``."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        if self.array is not None:
            raise CheckpointError("ndarray state set twice")
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise CheckpointError("malformed ndarray state")
        if len(state) == 5:
            if state[0] != 1:
                raise CheckpointError(f"unsupported ndarray state version {brief(state[0])}")
            state = state[1:]
        shape, dtype_b, fortran, raw = state
        shape = _check_shape(shape, "ndarray")
        if not isinstance(dtype_b, DtypeBuilder):
            raise CheckpointError("ndarray state without a dtype")
        if not isinstance(fortran, bool):
            raise CheckpointError("malformed ndarray fortran flag")
        dtype = dtype_b.resolve()
        count = math.prod(shape)
        order = "F" if fortran else "C"
        if dtype.kind == "O":
            if not isinstance(raw, list) or len(raw) != count:
                raise CheckpointError("object ndarray state does not hold one object per element")
            flat = np.empty(count, dtype=object)
            for i, item in enumerate(raw):
                flat[i] = item
            self.array = flat.reshape(shape, order=order)
            return
        if isinstance(raw, str):  # Python 2 pickles loaded with encoding='latin1'
            raw = raw.encode("latin-1")
        if not isinstance(raw, (bytes, bytearray)):
            raise CheckpointError("ndarray state without raw data")
        if len(raw) != count * dtype.itemsize:
            raise CheckpointError(
                f"ndarray of shape {shape} and dtype {dtype} needs {count * dtype.itemsize} bytes, "
                f"got {len(raw)}"
            )
        arr = np.frombuffer(bytes(raw), dtype=dtype, count=count).reshape(shape, order=order)
        self.array = arr.astype(dtype.newbyteorder("="), order="C")


class _NumpyScalar(_Placeholder):
    __slots__ = ("value",)

    def __init__(self, value: np.generic) -> None:
        self.value = value


# --------------------------------------------------------------------------------------------------
# Safe re-implementations of the allowed globals
# --------------------------------------------------------------------------------------------------


def _check_shape(shape: object, what: str) -> tuple[int, ...]:
    if not isinstance(shape, (tuple, list)) or len(shape) > MAX_NDIM:
        raise CheckpointError(f"malformed {what} shape {brief(shape)}")
    if not all(_is_int(d) and d >= 0 for d in shape):
        raise CheckpointError(f"malformed {what} shape {brief(tuple(shape))}")
    return tuple(shape)


def _rebuild_tensor(storage: object, storage_offset: object, size: object, stride: object) -> LazyTensor:
    if not isinstance(storage, (TorchStorage, TorchStorageView)):
        raise CheckpointError("tensor rebuilt from something that is not a storage")
    size = _check_shape(size, "tensor")
    if not isinstance(stride, (tuple, list)) or len(stride) != len(size):
        raise CheckpointError(f"tensor stride {brief(stride)} does not match its size {size}")
    if not all(_is_int(s) and s >= 0 for s in stride):
        raise CheckpointError(f"tensor has invalid strides {brief(tuple(stride))}")
    if not _is_int(storage_offset) or storage_offset < 0:
        raise CheckpointError(f"tensor has invalid storage offset {brief(storage_offset)}")
    return LazyTensor(storage, storage_offset, size, tuple(stride))


def _rebuild_tensor_v2(
    storage: object,
    storage_offset: object,
    size: object,
    stride: object,
    requires_grad: object = False,
    backward_hooks: object = None,
    metadata: object = None,
) -> LazyTensor:
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(
    data: object, requires_grad: object = False, backward_hooks: object = None
) -> LazyTensor:
    if not isinstance(data, LazyTensor):
        raise CheckpointError("parameter rebuilt from something that is not a tensor")
    return data


def _rebuild_parameter_with_state(
    data: object, requires_grad: object, backward_hooks: object, state: object
) -> LazyTensor:
    return _rebuild_parameter(data)


def _ordered_dict(*args: object) -> _PickledOrderedDict:
    # OrderedDict.__reduce__ pickles an empty call and then SETITEMS (whose keys the machine checks)
    if args:
        raise CheckpointError("collections.OrderedDict is only allowed without arguments")
    return _PickledOrderedDict()


def _codecs_encode(obj: object, encoding: object = "utf-8", errors: object = "strict") -> bytes:
    # Protocol-2 pickles spell bytes b'...' as _codecs.encode('...', 'latin1').
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise CheckpointError("_codecs.encode is only allowed to rebuild bytes from latin-1 text")
    return obj.encode("latin-1")


def _empty_bytes(*args: object) -> bytes:
    # Protocol-2 pickles spell b'' as __builtin__.bytes().
    if args:
        raise CheckpointError("builtins.bytes is only allowed without arguments (empty bytes)")
    return b""


_NDARRAY = _TypeToken("numpy.ndarray")


def _np_reconstruct(subtype: object, shape: object, dtype: object) -> NdarrayBuilder:
    if subtype is not _NDARRAY:
        raise CheckpointError("numpy _reconstruct of something other than numpy.ndarray")
    return NdarrayBuilder()


def _np_scalar(dtype: object, data: object = None) -> _NumpyScalar:
    if not isinstance(dtype, DtypeBuilder):
        raise CheckpointError("numpy scalar without a dtype")
    dt = dtype.resolve()
    if dt.kind == "O":
        raise CheckpointError("numpy object scalars are not supported")
    if isinstance(data, str):
        data = data.encode("latin-1")
    if not isinstance(data, bytes) or len(data) != dt.itemsize:
        raise CheckpointError("malformed numpy scalar")
    value = np.frombuffer(data, dtype=dt, count=1).astype(dt.newbyteorder("="))[0]
    return _NumpyScalar(value)


def _callables(table: dict[str, Callable[..., object]]) -> dict[str, object]:
    return {name: _SafeCallable(name, fn) for name, fn in table.items()}


def _torch_globals() -> dict[str, object]:
    table = _callables(
        {
            # state_dict() containers and the (empty) backward-hook dicts of tensors
            "collections.OrderedDict": _ordered_dict,
            # Tensor.__reduce_ex__ (v2 since PyTorch 0.4; v1 in older files)
            "torch._utils._rebuild_tensor": _rebuild_tensor,
            "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
            # Parameter.__reduce_ex__ (with_state when the Parameter has Python attributes)
            "torch._utils._rebuild_parameter": _rebuild_parameter,
            "torch._utils._rebuild_parameter_with_state": _rebuild_parameter_with_state,
            # protocol 2 spelling of bytes values: b'..' and b''
            "_codecs.encode": _codecs_encode,
            "builtins.bytes": _empty_bytes,
        }
    )
    for name, (raw, kind) in _STORAGE_TYPES.items():
        token = StorageType(f"torch.{name}", raw, kind)
        table[f"torch.{name}"] = token
        table[f"torch.cuda.{name}"] = token  # very old CUDA checkpoints name the CUDA storage class
    return table


def _numpy_globals() -> dict[str, object]:
    table: dict[str, object] = {"numpy.ndarray": _NDARRAY}  # only as _reconstruct's subtype argument
    table.update(
        _callables(
            {
                "numpy.dtype": DtypeBuilder,
                # protocol 2 spelling of bytes (the raw data of every array): b'..' and b''
                "_codecs.encode": _codecs_encode,
                "builtins.bytes": _empty_bytes,
            }
        )
    )
    # ndarray.__reduce__ (numpy 1.x and 2.x module names) and numpy scalars
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table.update(_callables({f"{mod}._reconstruct": _np_reconstruct, f"{mod}.scalar": _np_scalar}))
    return table


#: Allow-list for ``torch.save`` files: global name -> safe re-implementation.
TORCH_GLOBALS: Mapping[str, object] = _torch_globals()
#: Allow-list for pickled ``.npy`` payloads.
NUMPY_GLOBALS: Mapping[str, object] = _numpy_globals()


_NPY_DESCR = re.compile(r"^[<>|=]?(b1|\?|[iu][1248]|f[248]|c(8|16)|O[48]?)$")


def numpy_dtype_from_descr(descr: object, path: str) -> np.dtype:
    """The dtype of a ``.npy`` header's simple ``descr`` (numeric, bool or object only)."""
    if not isinstance(descr, str) or not _NPY_DESCR.match(descr):
        raise CheckpointError(f"unsupported .npy dtype {brief(descr)} in {path}")
    return np.dtype(descr)


# --------------------------------------------------------------------------------------------------
# The pickle machine
# --------------------------------------------------------------------------------------------------


def brief(x: object) -> str:
    """A bounded repr of a value read from a file: a pickle can build structures whose full repr is
    exponentially large (shared sub-tuples) or ints whose decimal form Python refuses to print."""
    try:
        return _BRIEF.repr(x)
    except ValueError:  # an int beyond sys.get_int_max_str_digits()
        return f"<int of {x.bit_length()} bits>" if isinstance(x, int) else f"<{type(x).__name__}>"


class _BriefRepr(reprlib.Repr):
    """reprlib's bounded containers for every container a pickle builds, subclasses (``_PickledOrderedDict``)
    included: reprlib hands a type it has no rule for to the full built-in repr, which walks shared sub-lists
    once per path. Scalars print as usual; other objects as their own (bounded) repr or type name."""

    def repr_instance(self, x: object, level: int) -> str:
        for kind, rule in ((dict, self.repr_dict), (list, self.repr_list), (tuple, self.repr_tuple)):
            if isinstance(x, kind):
                return rule(x, level)
        if x is None or isinstance(x, (bool, float, complex, _SafeCallable, _TypeToken)):
            return super().repr_instance(x, level)
        if isinstance(x, (bytes, bytearray)):
            return super().repr_instance(bytes(x[: self.maxstring]), level) + (
                "..." if len(x) > self.maxstring else ""
            )
        return f"<{type(x).__name__}>"


def _brief_repr() -> reprlib.Repr:
    r = _BriefRepr()
    r.maxlevel, r.maxtuple, r.maxlist, r.maxdict, r.maxset, r.maxfrozenset = 3, 6, 6, 4, 6, 6
    r.maxstring, r.maxother, r.maxlong = 60, 60, 40
    return r


_BRIEF = _brief_repr()

#: Dict keys (and set elements) a checkpoint may use: names, and small integers (optimizer states). Anything
#: else is refused before it is hashed: a tuple's hash walks all of it (a pickle can share sub-tuples to make
#: that 2**depth steps), and ints or floats can be chosen to collide (Python hashes them modulo 2**61 - 1),
#: which makes building a dict quadratic.
_MAX_INT_KEY = 1 << 31


def _check_key(k: object, path: str) -> object:
    if k is None or isinstance(k, (str, bytes, bool)):
        return k
    if _is_int(k) and -_MAX_INT_KEY < k < _MAX_INT_KEY:
        return k
    what = f"integer {brief(k)}" if _is_int(k) else f"{type(k).__name__} {brief(k)}"
    raise CheckpointError(f"unsupported dict key or set element ({what}) in {path}: keys must be names")


def _lookup(table: Mapping[str, object], module: str, name: str) -> object | None:
    return table.get(f"{_MODULE_ALIASES.get(module, module)}.{name}")


_HIGHEST_PROTOCOL = 5


class _Machine:
    """Executes the opcodes of one pickle (decoded by :func:`pickletools.genops`, which checks every length
    field against the bytes present) on plain containers and the allow-list's placeholders. Each opcode does
    O(1) work per stack item it consumes, and every item was pushed by an opcode of the file, so a pickle of n
    bytes costs O(n) time and memory whatever it builds; no value read from the file is ever hashed unless it
    is a valid key."""

    def __init__(self, path, allowed, persistent, encoding):
        self.path = path
        self.allowed = allowed
        self.persistent = persistent
        self.encoding = encoding
        self.stack: list = []
        self.metastack: list = []
        self.memo: dict[int, object] = {}
        self.size = 0  # bytes of the pickle (set by run)

    def error(self, what: str) -> CheckpointError:
        return CheckpointError(f"corrupt pickle in {self.path}: {what}")

    # self.stack holds what was pushed since the last MARK; MARK saves it on the metastack (as pickle.py does)
    def pop(self) -> object:
        if not self.stack:
            raise self.error("stack underflow")
        return self.stack.pop()

    def top(self) -> object:
        if not self.stack:
            raise self.error("stack underflow")
        return self.stack[-1]

    def pop_mark(self) -> list:
        if not self.metastack:
            raise self.error("no MARK to pop to")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def global_(self, module: object, name: object) -> object:
        if not isinstance(module, str) or not isinstance(name, str):
            raise self.error("STACK_GLOBAL with a non-string name")
        obj = _lookup(self.allowed, module, name)
        if obj is None:
            raise _refused(f"{module}.{name}", self.path)
        return obj

    def text(self, arg: str) -> object:
        """(SHORT_)BINSTRING / STRING: Python 2 byte strings, decoded like pickle's ``encoding``."""
        raw = arg.encode("latin-1")  # pickletools hands them out latin-1 decoded
        return raw if self.encoding == "bytes" else raw.decode(self.encoding)

    def run(self, stream: io.BytesIO, size: int) -> int:
        self.size = size  # (not len(stream.getbuffer()): that copies the whole file)
        for op, arg, pos in pickletools.genops(stream):
            name = op.name
            if name in _PUSH_ARG:
                self.stack.append(arg)
            elif name in _PUSH_CONST:
                self.stack.append(_PUSH_CONST[name]())
            elif name in ("STRING", "BINSTRING", "SHORT_BINSTRING"):
                self.stack.append(self.text(arg))
            elif name == "BYTEARRAY8":
                self.stack.append(bytearray(arg))
            elif name == "MARK":
                self.metastack.append(self.stack)
                self.stack = []
            elif name == "POP":
                if self.stack:
                    self.stack.pop()
                else:
                    self.pop_mark()
            elif name == "POP_MARK":
                self.pop_mark()
            elif name == "DUP":
                self.stack.append(self.top())
            elif name == "MEMOIZE":
                self.memo[len(self.memo)] = self.top()
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                if not _is_int(arg) or not 0 <= arg <= self.size:  # real pickles number them 0, 1, 2, ...
                    raise self.error(f"memo index {brief(arg)} out of range")
                self.memo[arg] = self.top()
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in self.memo:
                    raise self.error(f"memo index {brief(arg)} used before it is set (at offset {pos})")
                self.stack.append(self.memo[arg])
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                items = [self.pop() for _ in range(n)][::-1]
                self.stack.append(tuple(items))
            elif name in ("TUPLE", "LIST"):
                items = self.pop_mark()  # before self.stack is read: pop_mark replaces it
                self.stack.append(tuple(items) if name == "TUPLE" else items)
            elif name in ("APPEND", "APPENDS"):
                items = [self.pop()] if name == "APPEND" else self.pop_mark()
                target = self.top()
                if type(target) is not list:
                    raise self.error(f"{name} on a {type(target).__name__}")
                target.extend(items)
            elif name == "DICT":
                items = self.pop_mark()
                self.stack.append(self.set_items({}, items))
            elif name in ("SETITEM", "SETITEMS"):
                if name == "SETITEM":
                    value = self.pop()
                    items = [self.pop(), value]
                else:
                    items = self.pop_mark()
                target = self.top()
                if not isinstance(target, dict):
                    raise self.error(f"{name} on a {type(target).__name__}")
                self.set_items(target, items)
            elif name in ("ADDITEMS", "FROZENSET"):
                items = self.pop_mark()
                keys = [_check_key(x, self.path) for x in items]
                if name == "FROZENSET":
                    self.stack.append(frozenset(keys))
                else:
                    target = self.top()
                    if type(target) is not set:
                        raise self.error(f"ADDITEMS on a {type(target).__name__}")
                    target.update(keys)
            elif name == "GLOBAL":
                module, _, gname = str(arg).partition(" ")
                self.stack.append(self.global_(module, gname))
            elif name == "STACK_GLOBAL":
                gname = self.pop()
                self.stack.append(self.global_(self.pop(), gname))
            elif name == "REDUCE":
                args = self.pop()
                fn = self.pop()
                if not isinstance(fn, _SafeCallable):
                    raise self.error(f"REDUCE of {brief(fn)}, which is not callable")
                if type(args) is not tuple:
                    raise self.error(f"REDUCE with {type(args).__name__} arguments")
                self.stack.append(fn(*args))
            elif name == "BUILD":
                state = self.pop()
                target = self.top()
                if not isinstance(target, (_Placeholder, _PickledOrderedDict)):
                    raise self.error(f"BUILD on a {type(target).__name__}")
                target.__setstate__(state)
            elif name == "BINPERSID":
                pid = self.pop()
                if self.persistent is None:
                    raise UnsafeCheckpointError(
                        f"refused persistent id {brief(pid)} in {self.path}: this file may not reference "
                        "external data"
                    )
                self.stack.append(self.persistent(pid))
            elif name == "PROTO":
                if not 0 <= arg <= _HIGHEST_PROTOCOL:
                    raise self.error(f"unsupported pickle protocol {arg}")
            elif name == "FRAME":
                pass  # a framing hint: genops reads across frames
            elif name == "STOP":
                if self.metastack or len(self.stack) != 1:
                    raise self.error("the stack does not hold exactly one value at STOP")
                return stream.tell()
            elif name == "INST":
                raise _refused(str(arg).replace(" ", "."), self.path, " (opcode INST)")
            else:  # OBJ, NEWOBJ(_EX), EXT1/2/4, PERSID (text), NEXT_BUFFER, READONLY_BUFFER, anything newer
                raise UnsafeCheckpointError(f"refused pickle opcode {name} in {self.path}: {_REFUSED_SUFFIX}")
        raise CheckpointError(f"truncated pickle in {self.path}: no STOP opcode")

    def set_items(self, target: dict, items: list) -> dict:
        if len(items) % 2:
            raise self.error("odd number of items for a dict")
        for i in range(0, len(items), 2):
            target[_check_key(items[i], self.path)] = items[i + 1]
        return target


# Opcodes that push their decoded argument, and those that push a constant.
_PUSH_ARG = frozenset(
    {
        "INT",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG",
        "LONG1",
        "LONG4",
        "FLOAT",
        "BINFLOAT",
        "UNICODE",
        "BINUNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE8",
        "BINBYTES",
        "SHORT_BINBYTES",
        "BINBYTES8",
    }
)
_PUSH_CONST = {
    "NONE": lambda: None,
    "NEWTRUE": lambda: True,
    "NEWFALSE": lambda: False,
    "EMPTY_TUPLE": tuple,
    "EMPTY_LIST": list,
    "EMPTY_DICT": dict,
    "EMPTY_SET": set,
}


def restricted_load(
    data: bytes,
    path: str,
    allowed: Mapping[str, object],
    persistent: Callable[[object], object] | None = None,
    *,
    start: int = 0,
    encoding: str = "ASCII",
) -> tuple[object, int]:
    """Unpickle the pickle at ``data[start:]`` with the given allow-list.

    Returns the (unresolved) object and the offset just past the pickle. Raises
    :class:`UnsafeCheckpointError` for a global or opcode outside the allow-list and
    :class:`CheckpointError` for anything malformed.
    """
    stream = io.BytesIO(data)
    stream.seek(start)
    machine = _Machine(path, allowed, persistent, encoding)
    try:
        end = machine.run(stream, len(data))
    except CheckpointError as exc:
        if path in str(exc):
            raise
        # raised by one of the safe re-implementations, which do not know the file name
        raise type(exc)(f"{path}: {exc}") from exc
    except RecursionError as exc:
        raise CheckpointError(f"pickle in {path} is nested too deeply") from exc
    except MemoryError as exc:
        raise CheckpointError(f"pickle in {path} needs more memory than it can plausibly hold") from exc
    except (ValueError, TypeError, OverflowError, UnicodeDecodeError, KeyError, IndexError) as exc:
        # genops on truncated or malformed opcodes, a safe re-implementation given the wrong arguments
        raise CheckpointError(f"corrupt or truncated pickle in {path}: {type(exc).__name__}: {exc}") from exc
    return machine.stack[0], end


# --------------------------------------------------------------------------------------------------
# Resolution to plain containers and arrays
# --------------------------------------------------------------------------------------------------


class Budget:
    """Caps the bytes the resolver may allocate for arrays (guards against stride-0 / huge shapes)."""

    def __init__(self, limit: int, path: str) -> None:
        self.remaining = limit
        self.limit = limit
        self.path = path

    def charge(self, nbytes: int, what: str) -> None:
        if nbytes > self.remaining:
            raise CheckpointError(
                f"{what} in {self.path} would need {nbytes} bytes, more than the file can plausibly "
                f"hold (limit {self.limit} bytes for this file)"
            )
        self.remaining -= nbytes


def _convert_storage_elements(arr: np.ndarray, stype: StorageType) -> np.ndarray:
    """Copy stored elements into a new C-contiguous array of their logical NumPy dtype."""
    if stype.kind == "bfloat16":
        bits = arr.astype(np.uint32, order="C")
        bits <<= np.uint32(16)
        return bits.view(np.float32)
    if stype.kind == "bool":
        return arr.astype(np.bool_, order="C")
    return arr.astype(arr.dtype.newbyteorder("="), order="C")


def _materialize_tensor(t: LazyTensor, path: str, budget: Budget) -> np.ndarray:
    stype = t.storage.stype
    out_itemsize = 4 if stype.kind == "bfloat16" else stype.itemsize
    count = math.prod(t.size)
    what = f"tensor of shape {brief(t.size)}"
    budget.charge(count * out_itemsize, what)
    if count == 0:
        dtype = np.dtype(stype.raw_dtype)
        return _convert_storage_elements(np.empty(t.size, dtype=dtype), stype)
    last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
    if last >= t.storage.numel:
        raise CheckpointError(
            f"{what} (offset {t.offset}, stride {t.stride}) in {path} reads element {last} "
            f"of a storage holding {t.storage.numel}"
        )
    storage = t.storage.array(path, last + 1)
    itemsize = storage.dtype.itemsize
    # np.ndarray re-checks that the strided extent lies inside the buffer.
    view = np.ndarray(
        t.size,
        dtype=storage.dtype,
        buffer=storage,
        offset=t.offset * itemsize,
        strides=tuple(s * itemsize for s in t.stride),
    )
    return _convert_storage_elements(view, stype)


class _Resolver:
    def __init__(self, path: str, budget: Budget) -> None:
        self.path = path
        self.budget = budget
        self.memo: dict[int, object] = {}
        self.active: set[int] = set()

    def __call__(self, obj: object, depth: int = 0) -> object:
        if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
            return obj
        if depth > MAX_DEPTH:
            raise CheckpointError(f"{self.path}: containers nested more than {MAX_DEPTH} levels deep")
        oid = id(obj)
        if oid in self.memo:
            return self.memo[oid]
        if oid in self.active:
            raise CheckpointError(f"{self.path}: the pickled structure contains itself (cycle)")
        self.active.add(oid)
        try:
            out = self.convert(obj, depth)
        finally:
            self.active.discard(oid)
        self.memo[oid] = out
        return out

    def convert(self, obj: object, depth: int) -> object:
        if isinstance(obj, LazyTensor):
            return _materialize_tensor(obj, self.path, self.budget)
        if isinstance(obj, (TorchStorage, TorchStorageView)):
            arr = obj.array(self.path)
            out_itemsize = 4 if obj.stype.kind == "bfloat16" else obj.stype.itemsize
            self.budget.charge(arr.shape[0] * out_itemsize, f"storage {brief(obj.key)}")
            return _convert_storage_elements(arr, obj.stype)
        if isinstance(obj, dict):
            return {
                k: self(v, depth + 1) for k, v in obj.items()
            }  # keys were checked when the dict was built
        if isinstance(obj, list):
            return [self(v, depth + 1) for v in obj]
        if isinstance(obj, tuple):
            return tuple(self(v, depth + 1) for v in obj)
        if isinstance(obj, (set, frozenset)):
            return obj  # elements are checked scalars
        if isinstance(obj, bytearray):
            return bytes(obj)
        if isinstance(obj, NdarrayBuilder):
            arr = obj.array
            if arr is None:
                raise CheckpointError(f"{self.path}: ndarray without state")
            if arr.dtype.kind != "O":
                return arr
            out = np.empty(arr.shape, dtype=object)
            out_flat = out.reshape(-1)  # a view: `out` is C-contiguous
            for i, item in enumerate(arr.reshape(-1)):
                out_flat[i] = self(item, depth + 1)
            return out
        if isinstance(obj, DtypeBuilder):
            return obj.resolve()
        if isinstance(obj, _NumpyScalar):
            return obj.value
        raise CheckpointError(f"unsupported object {brief(obj)} of type {type(obj).__name__} in {self.path}")


def resolve(obj: object, path: str, budget: Budget) -> object:
    """Turn an unpickled placeholder tree into plain containers, Python scalars and NumPy arrays."""
    try:
        return _Resolver(path, budget)(obj)
    except RecursionError as exc:
        raise CheckpointError(f"{path}: structure nested too deeply") from exc
    except MemoryError as exc:
        raise CheckpointError(f"{path}: not enough memory to materialize the checkpoint") from exc
