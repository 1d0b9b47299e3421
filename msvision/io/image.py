"""Decoding pipeline inputs to RGB images, with the semantics of ModelScope's ``LoadImage.convert_to_img``.

============================  ===================================================================
input                         result
============================  ===================================================================
``str`` / ``os.PathLike``     PIL open -> ``ImageOps.exif_transpose`` -> ``convert('RGB')``
``str`` http(s) URL           downloaded (30 s overall, 64 MiB cap), then as a file
``PIL.Image.Image``           ``convert('RGB')`` (no EXIF transpose)
``np.ndarray`` HxWx3          **BGR** (OpenCV order) -> RGB
``np.ndarray`` HxW or HxWx1   gray -> 3 equal channels
============================  ===================================================================

Arrays of another dtype than ``uint8`` are cast with ``astype(uint8)`` like ModelScope, but only when that cast is
meaningful: integers must lie in 0..255 and floats in (-1, 256) with a maximum above 1 (ModelScope would silently
wrap larger integers modulo 256 and turn 0..1 float images black). Anything else raises
:class:`~msvision.errors.InvalidInputError`, as do 2- or 4-channel arrays (ModelScope reverses all channels of a
BGRA array and keeps the first three, i.e. returns alpha, red and green as RGB).

Images above ``MSVISION_MAX_IMAGE_PIXELS`` pixels (default 89478485 = PIL's ``MAX_IMAGE_PIXELS``, above which it
warns of a decompression bomb; ``none`` disables msvision's check) are rejected before they are decoded, from
their header. URLs are downloaded within ``DOWNLOAD_TIMEOUT_S`` (30 s) overall and ``MAX_DOWNLOAD_BYTES``
(64 MiB).
"""

from __future__ import annotations

import errno
import http.client
import io
import os
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import ImageDecodeError, InvalidInputError

__all__ = [
    "load_image_values",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "DOWNLOAD_TIMEOUT_S",
    "MAX_DOWNLOAD_BYTES",
    "load_image",
    "load_image_array",
    "max_image_pixels",
    "write_image",
]

DEFAULT_MAX_IMAGE_PIXELS = 89478485  # PIL.Image.MAX_IMAGE_PIXELS (above it PIL warns of a decompression bomb)
MAX_PIXELS_ENV = "MSVISION_MAX_IMAGE_PIXELS"
DOWNLOAD_TIMEOUT_S = 30
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024

_ACCEPTED = (
    "a str (image file path or http(s) URL), an os.PathLike, encoded image bytes, a PIL.Image.Image or a "
    "numpy.ndarray"
)


def max_image_pixels() -> int | None:
    """The pixel limit from ``$MSVISION_MAX_IMAGE_PIXELS`` (default 89478485); ``None`` means no limit."""
    raw = os.environ.get(MAX_PIXELS_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_IMAGE_PIXELS
    s = raw.strip().lower()
    if s in ("none", "off", "unlimited", "0"):
        return None
    try:
        value = int(s)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{MAX_PIXELS_ENV} must be a positive integer or 'none', got {raw!r}")
    return value


def _check_pixels(width: int, height: int, label: str) -> None:
    if width <= 0 or height <= 0:
        raise InvalidInputError(f"{label} is empty ({width}x{height} pixels)")
    limit = max_image_pixels()
    if limit is not None and width * height > limit:
        raise InvalidInputError(
            f"{label} has {width}x{height} = {width * height} pixels, more than the limit of {limit} pixels "
            f"(a guard against decompression bombs and runaway memory use). To allow it, set the environment "
            f"variable {MAX_PIXELS_ENV} to a larger number, or to 'none'."
        )


def _is_url(s: str) -> bool:
    head = s[:8].lower()
    return head.startswith(("http://", "https://"))


class _Deadline:
    """The connections of one download, cut at once when its time is up: a blocked read or handshake on them then
    returns, so the worker thread of a download ends soon after its caller has stopped waiting."""

    def __init__(self) -> None:
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shutdown(sock)

    def connection_class(self, base: type) -> type:
        deadline = self

        class _Watched(base):
            def connect(self):
                if deadline.expired:
                    raise TimeoutError("the download's time is up")
                super().connect()
                deadline.watch(self.sock)  # for https: the TLS socket (the handshake ran within the timeout)

        return _Watched


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def http_open(self, req):
        return self.do_open(self.deadline.connection_class(http.client.HTTPConnection), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def https_open(self, req):
        return self.do_open(
            self.deadline.connection_class(http.client.HTTPSConnection), req, context=self._context
        )


class _HTTPOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) only (urllib's default also follows them to ftp://)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not _is_url(newurl):
            raise urllib.error.HTTPError(
                newurl, code, f"redirect to a non-http(s) URL: {newurl}", headers, fp
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fetch(url: str, deadline: _Deadline) -> bytes:
    cap = MAX_DOWNLOAD_BYTES
    req = urllib.request.Request(url, headers={"User-Agent": "msvision"})
    opener = urllib.request.build_opener(
        _HTTPHandler(deadline), _HTTPSHandler(deadline), _HTTPOnlyRedirects()
    )
    with opener.open(req, timeout=DOWNLOAD_TIMEOUT_S) as resp:
        length = resp.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > cap:
            raise InvalidInputError(
                f"image at {url} is {int(length)} bytes, more than the download limit of {cap} bytes"
            )
        chunks = []
        total = 0
        while True:
            chunk = resp.read1(min(1 << 20, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                raise InvalidInputError(f"image at {url} is more than the download limit of {cap} bytes")
        if deadline.expired:  # the connection was cut: what arrived is incomplete
            raise TimeoutError("the connection was closed at the deadline")
        return b"".join(chunks)


def _download(url: str) -> bytes:
    """Fetch ``url`` with urllib: all of it within DOWNLOAD_TIMEOUT_S seconds (name lookup, connection, TLS
    handshake, headers, redirects and body together), at most MAX_DOWNLOAD_BYTES. The fetch runs in a daemon
    thread: the caller stops waiting at the deadline whatever the fetch is blocked in (a name lookup cannot be
    interrupted), and the connections it opened are cut then."""
    deadline = _Deadline()
    outcome: dict = {}

    def work():
        try:
            outcome["data"] = _fetch(url, deadline)
        except BaseException as e:  # handed to the caller below
            outcome["error"] = e

    worker = threading.Thread(target=work, name="msvision-download", daemon=True)
    worker.start()
    worker.join(DOWNLOAD_TIMEOUT_S)
    if worker.is_alive():
        deadline.expire()
        raise InvalidInputError(
            f"could not download image {url}: it did not arrive within {DOWNLOAD_TIMEOUT_S} s"
        )
    error = outcome.get("error")
    if error is None:
        return outcome["data"]
    if isinstance(error, InvalidInputError):
        raise error
    if isinstance(error, urllib.error.HTTPError):
        raise InvalidInputError(
            f"could not download image {url}: HTTP {error.code} {error.reason}"
        ) from error
    if isinstance(error, (urllib.error.URLError, OSError, http.client.HTTPException)):  # includes timeouts
        reason = getattr(error, "reason", error)
        raise InvalidInputError(f"could not download image {url}: {reason}") from error
    raise error


def _bomb_error(label: str, detail: str) -> InvalidInputError:
    return InvalidInputError(
        f"{label} is too large to decode safely: {detail}. PIL refuses images above 2 * "
        f"PIL.Image.MAX_IMAGE_PIXELS pixels; to allow it, raise PIL.Image.MAX_IMAGE_PIXELS and the environment "
        f"variable {MAX_PIXELS_ENV}."
    )


def _decode(fp, label: str) -> Image.Image:
    """Decode an open binary file like ModelScope's LoadImage: open, exif_transpose, convert('RGB')."""
    try:
        # (no warnings.catch_warnings() around this: it swaps process-wide state, unsafe with pipelines called
        # from several threads; PIL's DecompressionBombWarning may show, then the pixel limit below decides)
        img = Image.open(fp)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:  # the warning under -W error
        raise _bomb_error(label, str(e)) from None
    except MemoryError:
        raise
    except Exception as e:  # UnidentifiedImageError, SyntaxError, struct.error, ...
        raise ImageDecodeError(f"cannot decode {label} as an image: {e}") from e
    with img:
        _check_pixels(img.width, img.height, label)
        try:
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
            return img.convert("RGB")  # always a new image, independent of the file
        except Image.DecompressionBombError as e:
            raise _bomb_error(label, str(e)) from None
        except MemoryError:
            raise
        except Exception as e:  # truncated data, corrupt EXIF, ...
            raise ImageDecodeError(
                f"cannot decode {label} as an image ({img.format or 'unknown'} file): {e}"
            ) from e


def _load_path(path: str) -> Image.Image:
    if _is_url(path):
        data = _download(path)
        return _decode(io.BytesIO(data), f"image downloaded from {path}")
    if "://" in path:
        raise InvalidInputError(
            f"unsupported URL scheme in {path!r}: only http:// and https:// are supported"
        )
    if not path:
        raise FileNotFoundError(errno.ENOENT, "image path is an empty string", path)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "image file not found", path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "expected an image file, got a directory", path)
    with open(path, "rb") as f:  # OSErrors such as PermissionError propagate unchanged
        return _decode(f, f"image file {path!r}")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float image as ``cv2.imwrite`` stores it: rounded half to even, saturated to 0..255, uint8."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def write_image(path, image: np.ndarray) -> str:
    """Writes ``image`` (uint8 BGR or BGRA, OpenCV's order; a float image rounded and saturated to uint8 as
    ``cv2.imwrite`` stores it) encoded by ``path``'s extension (PNG without one),
    creating its folder. The file appears whole or not at all (written beside it, then renamed), so a job that
    is stopped never leaves an output that a resumed run would take as done. Returns the path."""
    import cv2

    path = Path(path)
    suffix = path.suffix or ".png"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, np.ndarray) and image.dtype.kind == "f":  # DCT-Net's float32 BGR result
        image = to_uint8(image)
    ok, encoded = cv2.imencode(suffix, image)
    if not ok:
        raise OSError(f"cannot encode a {getattr(image, 'shape', '?')} image as {suffix} for {path}")
    part = path.with_name(f".{path.name}.{os.getpid()}.part")  # one per process: workers may share a folder
    part.write_bytes(encoded.tobytes())
    os.replace(part, path)
    return str(path)


#: encoded image files in memory (JPEG, PNG, ... bytes): decoded exactly as the same file read from a path
ENCODED_TYPES = (bytes, bytearray, memoryview)


def _decode_bytes(data) -> Image.Image:
    if not len(data):
        raise InvalidInputError("image bytes are empty")
    return _decode(io.BytesIO(bytes(data)), f"image bytes ({len(data)} bytes)")


def _convert_pil(img: Image.Image) -> Image.Image:
    _check_pixels(img.width, img.height, f"PIL image (mode {img.mode})")
    try:
        return img.convert("RGB")
    except MemoryError:
        raise
    except ValueError as e:
        raise InvalidInputError(f"cannot convert PIL image of mode {img.mode!r} to RGB: {e}") from e
    except Exception as e:  # a lazily loaded image whose file turns out to be truncated or corrupt
        raise ImageDecodeError(f"cannot decode PIL image (mode {img.mode}): {e}") from e


def _check_dtype(a: np.ndarray) -> None:
    """Reject dtypes/values for which ModelScope's ``astype('uint8')`` would produce garbage or crash."""
    kind = a.dtype.kind
    if a.dtype == np.uint8:
        return
    if kind == "b":
        raise InvalidInputError(
            "boolean arrays are not images (ModelScope would cast them to 0/1, an almost black image); "
            "use arr.astype(np.uint8) * 255"
        )
    if kind in "iu":
        lo, hi = a.min(), a.max()
        if lo < 0 or hi > 255:
            raise InvalidInputError(
                f"{a.dtype} array has values in [{lo}, {hi}]; image arrays must hold 0..255 "
                f"(ModelScope would wrap them modulo 256). Scale to 0..255 first, e.g. (arr >> 8) for 16-bit"
            )
        return
    if kind == "f":
        lo, hi = a.min(), a.max()
        if np.isnan(lo) or np.isnan(hi):
            raise InvalidInputError(f"{a.dtype} image array contains NaN")
        if not (lo > -1 and hi < 256):
            raise InvalidInputError(
                f"{a.dtype} array has values in [{lo}, {hi}]; float image arrays must hold 0..255 (they are "
                f"truncated to uint8 like ModelScope does)"
            )
        if 0 < hi <= 1:
            raise InvalidInputError(
                f"{a.dtype} array has values in [{lo}, {hi}], which looks like a 0..1 normalised image; it would "
                f"be truncated to an all-black uint8 image (as ModelScope does). Pass (arr * 255) instead"
            )
        return
    raise InvalidInputError(f"unsupported image array dtype {a.dtype}; use uint8 (0..255)")


def _array_to_rgb(a: np.ndarray) -> np.ndarray:
    """BGR/gray array -> new C-contiguous HxWx3 uint8 RGB array (never a view of ``a``)."""
    shape = tuple(a.shape)
    if a.ndim == 3 and shape[2] in (1, 3):
        gray = shape[2] == 1
    elif a.ndim == 2:
        gray = True
    elif a.ndim == 3:
        hint = ""
        if shape[0] in (1, 3) and shape[2] not in (2, 4):
            hint = " It looks channel-first (CxHxW): pass arr.transpose(1, 2, 0)."
        elif shape[2] == 4:
            hint = (
                " For a BGRA array (cv2.IMREAD_UNCHANGED) drop the alpha channel first: arr[:, :, :3]."
                " (ModelScope would reverse all four channels and return alpha, red, green as RGB.)"
            )
        raise InvalidInputError(
            f"image array of shape {shape} has {shape[2]} channels; expected HxWx3 (BGR), HxW or HxWx1 (gray).{hint}"
        )
    else:
        raise InvalidInputError(
            f"image array must have 2 (HxW gray) or 3 (HxWx3 BGR) dimensions, got shape {shape} ({a.ndim}-D)"
        )
    _check_pixels(shape[1], shape[0], f"image array of shape {shape}")
    _check_dtype(a)
    if gray:
        g = a if a.ndim == 2 else a[:, :, 0]
        out = np.empty((shape[0], shape[1], 3), dtype=np.uint8)
        out[...] = g[:, :, None]  # the cast (if any) happens during the copy
        return out
    rgb = a[:, :, ::-1]
    if a.dtype == np.uint8:
        return np.ascontiguousarray(rgb)  # copies (the reversed view is never contiguous)
    return rgb.astype(np.uint8, order="C")


def _type_error(x) -> TypeError:
    extra = ""
    if isinstance(x, dict):
        extra = " Pass the image itself, not a dict."
    elif isinstance(x, (list, tuple)):
        extra = " Pass one image at a time."
    return TypeError(
        f"image input must be {_ACCEPTED}; got {type(x).__module__}.{type(x).__qualname__}.{extra}"
    )


def _as_path(x):
    """str or os.PathLike -> str path/URL, else None."""
    if isinstance(x, str):
        return x
    if isinstance(x, os.PathLike):
        p = os.fspath(x)
        return os.fsdecode(p) if isinstance(p, bytes) else p
    return None


def load_image(x) -> Image.Image:
    """Load ``x`` as a PIL image in mode ``'RGB'`` (ModelScope ``LoadImage.convert_to_img`` semantics).

    ``x``: a file path or http(s) URL (str or os.PathLike), a ``PIL.Image.Image``, or a numpy array in **BGR**
    order (HxWx3) or gray (HxW, HxWx1). The result never shares memory with ``x``.

    Raises ``TypeError`` (other types), ``FileNotFoundError`` (missing file),
    :class:`~msvision.errors.ImageDecodeError` (not an image / corrupt / truncated) and
    :class:`~msvision.errors.InvalidInputError` (empty, bad shape or dtype, too many pixels, download failure).
    """
    if isinstance(x, Image.Image):
        return _convert_pil(x)
    if isinstance(x, np.ndarray):
        return Image.fromarray(_array_to_rgb(x))
    if isinstance(x, ENCODED_TYPES):
        return _decode_bytes(x)
    path = _as_path(x)
    if path is not None:
        return _load_path(path)
    raise _type_error(x)


def load_image_array(x) -> np.ndarray:
    """Like :func:`load_image` but return a writable, C-contiguous HxWx3 ``uint8`` **RGB** numpy array.

    The result is always a new array (never a view of an input array), so callers may modify it in place.
    """
    if isinstance(x, np.ndarray):
        return _array_to_rgb(x)
    if isinstance(x, Image.Image):
        img = x if x.mode == "RGB" else _convert_pil(x)
        if img is x:
            _check_pixels(x.width, x.height, "PIL image (mode RGB)")
            try:
                x.load()
            except MemoryError:
                raise
            except Exception as e:
                raise ImageDecodeError(f"cannot decode PIL image (mode RGB): {e}") from e
        return np.array(img)
    if isinstance(x, ENCODED_TYPES):
        return np.array(_decode_bytes(x))
    path = _as_path(x)
    if path is not None:
        return np.array(_load_path(path))
    raise _type_error(x)


def load_image_values(x) -> np.ndarray:
    """HxWx3 **RGB** as ModelScope's ``LoadImage.convert_to_ndarray`` gives it to the pipelines that use it
    directly: like :func:`load_image_array` (decoding, validation, errors), except that a non-uint8 array keeps its
    own values and dtype (BGR flipped to RGB, a gray array repeated to 3 channels) instead of becoming uint8."""
    rgb = load_image_array(x)
    if isinstance(x, np.ndarray) and x.dtype != np.uint8:
        src = x if x.ndim == 3 else x[:, :, None]
        if src.shape[2] == 1:
            src = np.repeat(src, 3, axis=2)
        return src[:, :, ::-1]
    return rgb
