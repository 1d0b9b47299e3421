"""Read files written by ``torch.save`` without torch and without executing anything they name.

Two formats exist:

* the zip format (PyTorch >= 1.6): ``<prefix>/data.pkl`` holds the pickled structure; each storage is
  the entry ``<prefix>/data/<key>`` and ``<prefix>/byteorder`` says how its elements are stored;
* the legacy format: a stream of pickles (magic number, protocol version, sys_info, the structure, the
  list of storage keys) followed by every storage as an 8-byte little-endian element count and its
  raw little-endian bytes.

Both are unpickled with :mod:`.safe_pickle`; tensors come back as C-contiguous NumPy arrays.
"""

from __future__ import annotations

import mmap
import os
import struct
import zipfile
import zlib
from collections.abc import Iterable, Mapping

import numpy as np

from ..errors import CheckpointError, UnsafeCheckpointError
from .safe_pickle import (
    TORCH_GLOBALS,
    Budget,
    StorageType,
    TorchStorage,
    TorchStorageView,
    brief,
    resolve,
    restricted_load,
)

__all__ = ["load_torch", "state_dict_from", "unwrap_state_dict"]

#: Files (and total uncompressed zip contents) larger than this are refused outright.
MAX_CHECKPOINT_BYTES = 64 << 30
#: Extra bytes the resolver may allocate beyond the file size (tied weights, expanded buffers).
_BUDGET_SLACK = 256 << 20
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_DEFLATE_MAX_RATIO = 1100  # deflate cannot expand data by more than ~1032x
# Bytes the zip reader may inflate in all: torch.save stores entries uncompressed, so a real checkpoint reads
# about its own size; a re-compressed one a little more.
_INFLATE_FACTOR = 4
_INFLATE_SLACK = 64 << 20


def _budget(path: str, size: int) -> Budget:
    # Tensors may share a storage or be stride-0 expansions, so the arrays can exceed the file a bit;
    # a shape claiming far more than that is corrupt or hostile.
    return Budget(4 * size + _BUDGET_SLACK, path)


def _storage_type(obj: object, path: str) -> StorageType:
    if not isinstance(obj, StorageType):
        raise CheckpointError(f"persistent storage id in {path} has no storage type")
    return obj


def _as_str(x: object) -> object:
    return x.decode("ascii") if isinstance(x, bytes) else x


def _check_count(x: object, what: str, path: str) -> int:
    if not isinstance(x, int) or isinstance(x, bool) or x < 0:
        raise CheckpointError(f"invalid {what} {brief(x)} in {path}")
    return x


# --------------------------------------------------------------------------------------------------
# zip format
# --------------------------------------------------------------------------------------------------


_ZIP_ENCRYPTED = 0x1
_ZIP_UNSUPPORTED_FLAGS = 0x20 | 0x40  # compressed patched data, strong encryption
_ZIP_MAX_EXTRACT_VERSION = 63


def _zip_infos(zf: zipfile.ZipFile, path: str, file_size: int) -> dict[str, zipfile.ZipInfo]:
    infos: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in zf.infolist():
        name = brief(info.filename)
        if info.flag_bits & _ZIP_ENCRYPTED:
            raise CheckpointError(f"zip entry {name} in {path} is encrypted")
        if info.flag_bits & _ZIP_UNSUPPORTED_FLAGS or info.extract_version > _ZIP_MAX_EXTRACT_VERSION:
            raise CheckpointError(
                f"zip entry {name} in {path} uses an unsupported zip feature (flags {info.flag_bits:#x}, "
                f"version {info.extract_version / 10:.1f})"
            )
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise CheckpointError(f"corrupt zip entry {name} in {path}: sizes disagree")
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            if info.file_size > info.compress_size * _DEFLATE_MAX_RATIO + 1024:
                raise CheckpointError(f"zip entry {name} in {path} claims an impossible size")
        else:
            raise CheckpointError(f"zip entry {name} in {path} uses unsupported compression")
        if info.header_offset + info.compress_size > file_size:
            raise CheckpointError(f"zip entry {name} in {path} lies beyond the end of the file")
        total += info.file_size
        infos[info.filename] = info
    if total > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f"{path} claims {total} uncompressed bytes, more than the {MAX_CHECKPOINT_BYTES} allowed"
        )
    return infos


# zipfile raises these on damaged or unusual archives (NotImplementedError: a zip feature it lacks,
# RuntimeError: encryption); all of them mean a checkpoint we cannot read.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
)


_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip entry's local file header (APPNOTE 4.3.7)


class _ZipReader:
    """Reads entries of an open checkpoint archive, inflating no more than what is asked for: a storage is read
    up to the last element a tensor uses (a 1-element tensor on a huge, highly compressed storage costs 4 bytes,
    not the whole stream), and all reads together are capped by ``budget`` (a few times the file's size).

    Stored (uncompressed) entries, which is how torch.save writes them, are views of ``mapped``, the file mapped
    read-only: the resolver's copy into each tensor is then the only copy of the weights."""

    def __init__(self, zf: zipfile.ZipFile, path: str, budget: Budget, mapped: mmap.mmap | None) -> None:
        self.zf = zf
        self.path = path
        self.budget = budget
        self.mapped = memoryview(mapped) if mapped is not None else None
        self.cache: dict[str, bytes | memoryview] = {}

    def release(self) -> None:
        self.cache.clear()
        if self.mapped is not None:
            self.mapped.release()

    def _stored_data(self, info: zipfile.ZipInfo) -> memoryview:
        """The data of a stored entry as a view of the mapped file, after the checks zipfile makes: the local
        header's signature and name, the data inside the file, and (in ``read``) the CRC."""
        mapped, start = self.mapped, info.header_offset
        name = brief(info.filename)
        if start + _LOCAL_HEADER.size > len(mapped):
            raise CheckpointError(f"truncated zip entry {name} in {self.path}")
        header = _LOCAL_HEADER.unpack_from(mapped, start)
        if header[0] != b"PK\x03\x04":
            raise CheckpointError(f"corrupt zip entry {name} in {self.path}: bad local header")
        name_len, extra_len = header[10], header[11]
        start += _LOCAL_HEADER.size
        if bytes(mapped[start : start + name_len]) != info.orig_filename.encode("utf-8", "surrogateescape"):
            raise CheckpointError(f"corrupt zip entry {name} in {self.path}: local and central names differ")
        start += name_len + extra_len
        if start + info.file_size > len(mapped):
            raise CheckpointError(f"truncated zip entry {name} in {self.path}")
        return mapped[start : start + info.file_size]

    def read(
        self, info: zipfile.ZipInfo, nbytes: int | None = None, view: bool = False
    ) -> bytes | memoryview:
        """At least ``nbytes`` (all when None) of the entry's data, which must be present; with ``view`` a
        stored entry may come back as a read-only view of the mapped file."""
        want = info.file_size if nbytes is None else min(nbytes, info.file_size)
        have = self.cache.get(info.filename, b"")
        if len(have) >= want:
            return have if view else bytes(have)
        if view and self.mapped is not None and info.compress_type == zipfile.ZIP_STORED:
            data = self._stored_data(info)
            self.budget.charge(len(data), f"zip entry {brief(info.filename)}")
            if zlib.crc32(data) != info.CRC:
                raise CheckpointError(f"corrupt zip entry {brief(info.filename)} in {self.path}: bad CRC")
            self.cache[info.filename] = data
            return data
        # read ahead (at least doubling what was read) so that growing requests cost linear time overall
        amount = min(info.file_size, max(want, 2 * len(have)))
        self.budget.charge(amount - len(have), f"zip entry {brief(info.filename)}")
        try:
            with self.zf.open(info) as f:
                data = f.read(amount)
        except _ZIP_ERRORS as exc:
            raise CheckpointError(
                f"corrupt or truncated zip entry {brief(info.filename)} in {self.path}: {exc}"
            ) from exc
        if len(data) != amount:
            raise CheckpointError(f"truncated zip entry {brief(info.filename)} in {self.path}")
        self.cache[info.filename] = data
        return data


def _find_prefix(infos: Mapping[str, zipfile.ZipInfo], path: str) -> str:
    candidates = [
        name[: -len("/data.pkl")] for name in infos if name.endswith("/data.pkl") and name.count("/") == 1
    ]
    if not candidates:
        if "constants.pkl" in {n.rpartition("/")[2] for n in infos}:
            raise CheckpointError(f"{path} is a TorchScript archive, not a torch.save checkpoint")
        raise CheckpointError(f"{path} is a zip archive without data.pkl: not a torch.save checkpoint")
    if len(candidates) > 1:
        raise CheckpointError(f"{path} holds several data.pkl records: {sorted(candidates)}")
    return candidates[0]


def _load_zip(path: str, file_size: int) -> object:
    try:
        zf = zipfile.ZipFile(path)
    except (*_ZIP_ERRORS, zipfile.LargeZipFile) as exc:
        raise CheckpointError(f"{path} is not a readable zip archive (corrupt or truncated): {exc}") from exc
    try:
        mapped = mmap.mmap(zf.fp.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError, AttributeError):
        mapped = None  # not a mappable file: entries are read through zipfile
    reader = _ZipReader(zf, path, Budget(_INFLATE_FACTOR * file_size + _INFLATE_SLACK, path), mapped)
    try:
        with zf:
            return _read_zip_structure(zf, reader, path, file_size)
    finally:
        reader.release()
        if mapped is not None:
            try:
                mapped.close()
            except BufferError:
                pass  # an error left arrays on the mapping alive: it is unmapped when they are collected


def _read_zip_structure(zf: zipfile.ZipFile, reader: _ZipReader, path: str, file_size: int) -> object:
    try:
        infos = _zip_infos(zf, path, file_size)
    except CheckpointError:
        raise
    except _ZIP_ERRORS as exc:
        raise CheckpointError(f"corrupt zip directory in {path}: {exc}") from exc
    prefix = _find_prefix(infos, path)

    big_endian = False
    order_info = infos.get(f"{prefix}/byteorder")
    if order_info is not None:
        if order_info.file_size > 16:
            raise CheckpointError(f"invalid byteorder record in {path}")
        order = reader.read(order_info).strip()
        if order not in (b"little", b"big"):
            raise CheckpointError(f"invalid byteorder {brief(order)} in {path}")
        big_endian = order == b"big"

    storages: dict[tuple[str, str], TorchStorage] = {}

    def persistent_load(pid: object) -> TorchStorage:
        if not isinstance(pid, tuple) or len(pid) != 5 or _as_str(pid[0]) != "storage":
            raise CheckpointError(f"unsupported persistent id {brief(pid)} in {path}")
        _, stype, key, _location, numel = pid
        stype = _storage_type(stype, path)
        key = _as_str(key)
        numel = _check_count(numel, "storage size", path)
        if not isinstance(key, str):
            raise CheckpointError(f"invalid storage key {brief(key)} in {path}")
        cached = storages.get((key, stype.name))
        if cached is not None:
            return cached
        name = f"{prefix}/data/{key}"
        info = infos.get(name)
        if info is None:
            raise CheckpointError(f"{path} is missing the zip entry {brief(name)} for storage {brief(key)}")
        nbytes = numel * stype.itemsize
        if nbytes > info.file_size:
            raise CheckpointError(
                f"storage {brief(key)} in {path} claims {numel} elements ({nbytes} bytes) "
                f"but its zip entry holds {info.file_size} bytes"
            )

        def loader(nbytes: int, info: zipfile.ZipInfo = info) -> bytes | memoryview:
            return reader.read(info, nbytes, view=True)

        storage = TorchStorage(stype, numel, key, loader=loader, big_endian=big_endian)
        storages[(key, stype.name)] = storage
        return storage

    pkl = reader.read(infos[f"{prefix}/data.pkl"])
    obj, _ = restricted_load(pkl, path, TORCH_GLOBALS, persistent_load, encoding="utf-8")
    return resolve(obj, path, _budget(path, file_size))


# --------------------------------------------------------------------------------------------------
# legacy format
# --------------------------------------------------------------------------------------------------


def _load_legacy(path: str, data: bytes) -> object:
    pos = 0
    magic, pos = restricted_load(data, path, {}, start=pos)
    if magic != _LEGACY_MAGIC:
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (invalid legacy magic number)")
    protocol, pos = restricted_load(data, path, {}, start=pos)
    if protocol != _LEGACY_PROTOCOL:
        raise CheckpointError(f"{path}: unsupported legacy protocol version {brief(protocol)}")
    sys_info, pos = restricted_load(data, path, {}, start=pos)
    if not isinstance(sys_info, dict):
        raise CheckpointError(f"{path}: malformed legacy sys_info record")

    roots: dict[str, TorchStorage] = {}
    views: dict[str, TorchStorageView] = {}

    def persistent_load(pid: object) -> TorchStorage | TorchStorageView:
        if not isinstance(pid, tuple) or not pid:
            raise CheckpointError(f"unsupported persistent id {brief(pid)} in {path}")
        typename = _as_str(pid[0])
        if typename == "module":
            raise UnsafeCheckpointError(
                f"refused pickled nn.Module class in {path}: "
                "checkpoints may only contain tensors and plain containers"
            )
        if typename != "storage" or len(pid) != 6:
            raise CheckpointError(f"unsupported persistent id {brief(pid)} in {path}")
        _, stype, root_key, _location, numel, view_metadata = pid
        stype = _storage_type(stype, path)
        root_key = _as_str(root_key)
        if not isinstance(root_key, str):
            raise CheckpointError(f"invalid storage key {brief(root_key)} in {path}")
        numel = _check_count(numel, "storage size", path)
        if numel * stype.itemsize > len(data):
            raise CheckpointError(
                f"storage {brief(root_key)} in {path} claims {numel} elements, "
                f"more than the file's {len(data)} bytes"
            )
        root = roots.get(root_key)
        if root is None:
            root = roots[root_key] = TorchStorage(stype, numel, root_key)
        if view_metadata is None:
            return root
        if not isinstance(view_metadata, tuple) or len(view_metadata) != 3:
            raise CheckpointError(f"malformed storage view in {path}")
        view_key, offset, view_size = view_metadata
        view_key = _as_str(view_key)
        offset = _check_count(offset, "storage view offset", path)
        view_size = _check_count(view_size, "storage view size", path)
        if not isinstance(view_key, str):
            raise CheckpointError(f"invalid storage view key in {path}")
        view = views.get(view_key)
        if view is None:
            view = views[view_key] = TorchStorageView(root, offset, view_size, view_key)
        return view

    obj, pos = restricted_load(data, path, TORCH_GLOBALS, persistent_load, start=pos, encoding="utf-8")
    keys, pos = restricted_load(data, path, {}, start=pos)
    if not isinstance(keys, list) or not all(isinstance(k, (str, bytes)) for k in keys):
        raise CheckpointError(f"{path}: malformed legacy storage key list")
    buf = memoryview(data)
    for key in keys:
        key = _as_str(key)
        storage = roots.get(key)
        if storage is None:
            raise CheckpointError(f"{path}: storage key {brief(key)} in the key list was never referenced")
        if pos + 8 > len(data):
            raise CheckpointError(f"{path} is truncated: storage {brief(key)} is missing")
        numel = int.from_bytes(data[pos : pos + 8], "little", signed=True)
        pos += 8
        if numel != storage.numel:
            raise CheckpointError(
                f"{path}: storage {brief(key)} on disk holds {numel} elements "
                f"but the pickle expects {storage.numel}"
            )
        nbytes = storage.nbytes
        if pos + nbytes > len(data):
            raise CheckpointError(
                f"{path} is truncated: storage {brief(key)} needs {nbytes} bytes, {len(data) - pos} remain"
            )
        storage.set_data(buf[pos : pos + nbytes])
        pos += nbytes
    return resolve(obj, path, _budget(path, len(data)))


# --------------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------------


def load_torch(path: str | os.PathLike[str]) -> object:
    """Load a ``torch.save`` file (zip or legacy format) without torch and without running its code.

    Returns the saved structure with every tensor (and ``nn.Parameter``) replaced by a C-contiguous
    NumPy array of the tensor's logical shape: float32/float16/float64/int64/int32/int16/int8/uint8/bool
    keep their type, bfloat16 becomes float32 (exactly).  ``OrderedDict`` becomes ``dict`` (same order).

    Raises :class:`UnsafeCheckpointError` if the pickle names anything but tensors and plain
    containers, :class:`CheckpointError` if the file is corrupt, truncated or unsupported, and
    ``OSError`` if it cannot be opened.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"{path} is empty")
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path} is {size} bytes, more than the {MAX_CHECKPOINT_BYTES} allowed")
    with open(path, "rb") as f:
        head = f.read(512)
    try:
        if head.startswith(b"PK\x03\x04"):
            return _load_zip(path, size)
        if head[:1] == b"\x80":
            with open(path, "rb") as f:
                data = f.read()
            return _load_legacy(path, data)
    except CheckpointError:
        raise
    except RecursionError as exc:
        raise CheckpointError(f"{path}: structure nested too deeply") from exc
    except MemoryError as exc:
        raise CheckpointError(f"{path}: not enough memory to load the checkpoint") from exc
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, EOFError) as exc:
        raise CheckpointError(f"corrupt checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    if len(head) >= 262 and head[257:262] == b"ustar":
        raise CheckpointError(
            f"{path} uses the tar checkpoint format of PyTorch < 0.4, which is not supported"
        )
    raise CheckpointError(
        f"{path} is not a PyTorch checkpoint (neither a zip archive nor a legacy pickle stream)"
    )


# --------------------------------------------------------------------------------------------------
# state-dict selection
# --------------------------------------------------------------------------------------------------


def _strip_module_prefix(sd: Mapping[object, object]) -> dict[object, object]:
    # Same effect (including key order) as ModelScope's loop: every 'module.x' entry is re-inserted as
    # 'x' and then removed, processing the original keys in their original order.
    out = dict(sd)
    for key, value in list(sd.items()):
        if isinstance(key, str) and key.startswith("module."):
            out[key[len("module.") :]] = value
            out.pop(key)
    return out


def _check_state_dict(sd: object, what: str) -> dict[str, np.ndarray]:
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{what} is a {type(sd).__name__}, not a mapping of parameter names to arrays")
    for key, value in sd.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{what} has a non-string key {brief(key)}")
        if not isinstance(value, np.ndarray):
            raise CheckpointError(f"{what}: entry {brief(key)} is a {type(value).__name__}, not an array")
    return dict(sd)  # type: ignore[arg-type]


def state_dict_from(obj: object, param_key: str | None = "params") -> dict[str, np.ndarray]:
    """Select the state dict the way ModelScope's ``TorchModel._load_pretrained`` does.

    With ``param_key`` not None: fall back to ``'params'`` when ``param_key`` is absent but ``'params'``
    is present, then descend into ``obj[param_key]`` if present (otherwise keep ``obj``).  Finally a
    leading ``module.`` is stripped from every key.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint is a {type(obj).__name__}, not a mapping")
    if param_key is not None:
        if param_key not in obj and "params" in obj:
            param_key = "params"
        if param_key in obj:
            obj = obj[param_key]
            if not isinstance(obj, Mapping):
                raise CheckpointError(
                    f"checkpoint entry {param_key!r} is a {type(obj).__name__}, not a mapping"
                )
    return _check_state_dict(_strip_module_prefix(obj), "state dict")


def unwrap_state_dict(
    obj: object, keys: Iterable[str] = ("state_dict", "model", "params_ema", "params", "generator")
) -> dict[str, np.ndarray]:
    """Descend (repeatedly) into the first of ``keys`` whose value is a mapping, then strip ``module.``."""
    keys = tuple(keys)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint is a {type(obj).__name__}, not a mapping")
    trail = []
    for _ in range(len(keys) * 4 + 1):
        for key in keys:
            if key in obj and isinstance(obj[key], Mapping):
                trail.append(key)
                obj = obj[key]
                break
        else:
            break
    what = "state dict" + "".join(f"[{k!r}]" for k in trail)
    return _check_state_dict(_strip_module_prefix(obj), what)
