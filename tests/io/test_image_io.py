"""msvision.io.image against ModelScope's LoadImage.convert_to_img, plus bad-input behaviour."""

import functools
import http.server
import io
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from msvision.errors import ImageDecodeError, InvalidInputError
from msvision.io import image as msimage
from msvision.io import load_image, load_image_array


@pytest.fixture(scope="module")
def ms_load():
    """ModelScope's LoadImage (the reference implementation)."""
    pytest.importorskip("modelscope")
    from modelscope.preprocessors.image import LoadImage

    return LoadImage


@pytest.fixture(autouse=True)
def _default_limits(monkeypatch):
    monkeypatch.delenv("MSVISION_MAX_IMAGE_PIXELS", raising=False)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)


def _pattern(h=24, w=32, channels=3, seed=0):
    """A non-symmetric test pattern (so any flip/rotation/channel swap shows)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + 2 * y) % 256], axis=-1)
    extra = rng.integers(0, 256, (h, w, max(channels - 3, 0)))
    return np.concatenate([base, extra], axis=-1).astype(np.uint8)[:, :, :channels]


def _exif_jpeg(path, orientation):
    img = Image.fromarray(_pattern())
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    img.save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    out = {}
    for o in range(1, 9):
        out[f"exif{o}.jpg"] = _exif_jpeg(d / f"exif{o}.jpg", o)
    rgba = Image.fromarray(_pattern(channels=4), "RGBA")
    rgba.save(d / "rgba.png")
    out["rgba.png"] = d / "rgba.png"
    pal = Image.fromarray(_pattern()).quantize(16)
    pal.info["transparency"] = 3
    pal.save(d / "palette.png", transparency=3)
    out["palette.png"] = d / "palette.png"
    Image.fromarray(_pattern()[:, :, 0]).save(d / "gray.png")
    out["gray.png"] = d / "gray.png"
    Image.fromarray(_pattern(channels=4), "RGBA").convert("LA").save(d / "la.png")
    out["la.png"] = d / "la.png"
    g16 = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 83).astype(np.uint16)
    Image.fromarray(g16).save(d / "gray16.png")
    out["gray16.png"] = d / "gray16.png"
    Image.fromarray(_pattern()).convert("1").save(d / "bilevel.png")
    out["bilevel.png"] = d / "bilevel.png"
    Image.fromarray(_pattern()).convert("CMYK").save(d / "cmyk.jpg")
    out["cmyk.jpg"] = d / "cmyk.jpg"
    Image.fromarray(_pattern()).save(d / "plain.bmp")
    out["plain.bmp"] = d / "plain.bmp"
    Image.fromarray(_pattern()).save(
        d / "anim.gif", save_all=True, append_images=[Image.new("RGB", (32, 24))]
    )
    out["anim.gif"] = d / "anim.gif"
    Image.fromarray(_pattern()).save(d / "plain.tiff")
    out["plain.tiff"] = d / "plain.tiff"
    return out


def _assert_same(ours, ref):
    assert isinstance(ours, Image.Image)
    assert ours.mode == "RGB" == ref.mode
    assert ours.size == ref.size
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))


def _assert_array_contract(arr):
    assert isinstance(arr, np.ndarray)
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    assert arr.flags.c_contiguous and arr.flags.writeable


# ---------------------------------------------------------------- files: pixel-identical to ModelScope


FILE_NAMES = [f"exif{o}.jpg" for o in range(1, 9)] + [
    "rgba.png",
    "palette.png",
    "gray.png",
    "la.png",
    "gray16.png",
    "bilevel.png",
    "cmyk.jpg",
    "plain.bmp",
    "anim.gif",
    "plain.tiff",
]


@pytest.mark.parametrize("name", FILE_NAMES)
def test_file_matches_modelscope(ms_load, files, name):
    path = str(files[name])
    ref = ms_load.convert_to_img(path)
    _assert_same(load_image(path), ref)
    arr = load_image_array(path)
    _assert_array_contract(arr)
    np.testing.assert_array_equal(arr, np.asarray(ref))


def test_exif_orientation_is_applied(files):
    plain = load_image(str(files["exif1.jpg"]))
    rotated = load_image(str(files["exif6.jpg"]))
    assert plain.size == (32, 24)
    assert rotated.size == (24, 32)  # orientation 6: rotate 90 degrees clockwise
    np.testing.assert_array_equal(
        np.asarray(rotated), np.asarray(plain.transpose(Image.Transpose.ROTATE_270))
    )


def test_pathlike_accepted(files):
    np.testing.assert_array_equal(
        load_image_array(files["rgba.png"]), load_image_array(str(files["rgba.png"]))
    )


# ---------------------------------------------------------------- PIL inputs


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "1", "I", "I;16", "F", "CMYK", "YCbCr"])
def test_pil_image_matches_modelscope(ms_load, mode):
    src = Image.fromarray(_pattern(channels=4), "RGBA")
    if mode == "I;16":
        img = Image.fromarray(np.asarray(src)[:, :, 0].astype(np.uint16) * 3)
    elif mode in ("I", "F"):
        img = src.convert("L").convert(mode)
    elif mode == "P":
        img = src.convert("RGB").quantize(32)
    else:
        img = src.convert(mode)
    ref = ms_load.convert_to_img(img)
    ours = load_image(img)
    _assert_same(ours, ref)
    assert ours is not img
    arr = load_image_array(img)
    _assert_array_contract(arr)
    np.testing.assert_array_equal(arr, np.asarray(ref))


def test_pil_image_no_exif_transpose(ms_load, files):
    with Image.open(files["exif6.jpg"]) as img:
        ref = ms_load.convert_to_img(img)
        ours = load_image(img)
    assert ours.size == (32, 24)  # PIL inputs are not EXIF-transposed (as in ModelScope)
    _assert_same(ours, ref)


def test_pil_input_not_modified():
    img = Image.fromarray(_pattern())
    before = np.asarray(img).copy()
    arr = load_image_array(img)
    arr[:] = 0
    np.testing.assert_array_equal(np.asarray(img), before)


# ---------------------------------------------------------------- array inputs


def test_bgr_array_matches_modelscope(ms_load):
    bgr = _pattern()
    ref = ms_load.convert_to_img(bgr)
    _assert_same(load_image(bgr), ref)
    arr = load_image_array(bgr)
    _assert_array_contract(arr)
    np.testing.assert_array_equal(arr, bgr[:, :, ::-1])
    assert not np.shares_memory(arr, bgr)


def test_noncontiguous_bgr_array_matches_modelscope(ms_load):
    bgr = _pattern(24, 64)[:, ::2]
    assert not bgr.flags.c_contiguous
    ref = ms_load.convert_to_img(bgr)
    _assert_same(load_image(bgr), ref)
    np.testing.assert_array_equal(load_image_array(bgr), np.asarray(ref))


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.astype(np.float32) + 0.75,  # floats in 0..255: truncated like astype('uint8')
        lambda p: p.astype(np.float64),
        lambda p: p.astype(np.uint16),
        lambda p: p.astype(np.int32),
        lambda p: p.astype(np.float16),
    ],
    ids=["float32+0.75", "float64", "uint16-in-range", "int32-in-range", "float16"],
)
def test_in_range_non_uint8_arrays_match_modelscope(ms_load, make):
    a = make(_pattern().astype(np.float64).clip(0, 254).astype(np.uint8))
    ref = ms_load.convert_to_img(a)
    _assert_same(load_image(a), ref)
    np.testing.assert_array_equal(load_image_array(a), np.asarray(ref))


def test_gray_array(ms_load):
    gray = _pattern()[:, :, 1]
    # ModelScope's convert_to_img crashes on 2-D arrays (IndexError); its convert_to_ndarray expands gray to
    # three equal channels, which is what the contract asks for.
    with pytest.raises(IndexError):
        ms_load.convert_to_img(gray)
    expected = ms_load.convert_to_ndarray(gray)
    arr = load_image_array(gray)
    _assert_array_contract(arr)
    np.testing.assert_array_equal(arr, expected)
    np.testing.assert_array_equal(np.asarray(load_image(gray)), expected)
    np.testing.assert_array_equal(load_image_array(gray[:, :, None]), expected)  # HxWx1 is gray too
    np.testing.assert_array_equal(load_image_array(gray.astype(np.float32)), expected)


def test_load_image_array_equals_load_image(files):
    for x in [_pattern(), _pattern()[:, :, 0], Image.fromarray(_pattern()), str(files["palette.png"])]:
        np.testing.assert_array_equal(load_image_array(x), np.asarray(load_image(x)))


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("bad", [42, 3.5, None, {"image": "x.png"}, ["a.png"], object()])
def test_wrong_type(bad):
    for fn in (load_image, load_image_array):
        with pytest.raises(TypeError) as ei:
            fn(bad)
        msg = str(ei.value)
        assert type(bad).__qualname__ in msg
        assert "PIL.Image.Image" in msg and "numpy.ndarray" in msg


def test_missing_file(tmp_path):
    p = str(tmp_path / "nope.jpg")
    for fn in (load_image, load_image_array):
        with pytest.raises(FileNotFoundError) as ei:
            fn(p)
        assert p in str(ei.value)


def test_directory(tmp_path):
    with pytest.raises(IsADirectoryError):
        load_image(str(tmp_path))


def test_corrupt_and_non_image_files(tmp_path, files):
    cases = {
        "random.jpg": np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes(),
        "text.png": b"this is not an image\n",
        "empty.png": b"",
        "truncated.jpg": Path(files["exif1.jpg"]).read_bytes()[:400],
        "truncated.png": Path(files["rgba.png"]).read_bytes()[:200],
    }
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        for fn in (load_image, load_image_array):
            with pytest.raises(ImageDecodeError) as ei:
                fn(str(p))
            assert str(p) in str(ei.value), name
            assert isinstance(ei.value, ValueError)


def test_unsupported_url_scheme():
    with pytest.raises(InvalidInputError, match="scheme"):
        load_image("ftp://example.com/a.png")


@pytest.mark.parametrize("shape", [(0, 5, 3), (5, 0, 3), (0, 0), (4, 0)])
def test_empty_array(shape):
    with pytest.raises(InvalidInputError, match="empty"):
        load_image_array(np.zeros(shape, np.uint8))


def test_empty_pil_image():
    with pytest.raises(InvalidInputError, match="empty"):
        load_image(Image.new("RGB", (0, 3)))


@pytest.mark.parametrize(
    "shape,match",
    [
        ((5,), "dimensions"),
        ((1, 4, 4, 3), "dimensions"),
        ((4, 4, 2), "2 channels"),
        ((4, 4, 4), "alpha"),
        ((3, 16, 16), "channel-first"),
    ],
)
def test_bad_array_shapes(shape, match):
    for fn in (load_image, load_image_array):
        with pytest.raises(InvalidInputError, match=match):
            fn(np.zeros(shape, np.uint8))


@pytest.mark.parametrize(
    "arr,match",
    [
        (np.ones((4, 4, 3), bool), "boolean"),
        (np.full((4, 4, 3), 1000, np.uint16), "modulo 256"),
        (np.full((4, 4, 3), -3, np.int16), "0..255"),
        (np.full((4, 4, 3), 0.5, np.float32), "0..1"),
        (np.full((4, 4, 3), 300.0, np.float32), "0..255"),
        (np.full((4, 4, 3), -1.0, np.float64), "0..255"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
        (np.full((4, 4, 3), np.inf, np.float32), "0..255"),
        (np.zeros((4, 4, 3), np.complex64), "dtype"),
        (np.zeros((4, 4, 3), object), "dtype"),
    ],
    ids=[
        "bool",
        "uint16-big",
        "negative-int",
        "float-0..1",
        "float-big",
        "float-neg",
        "nan",
        "inf",
        "complex",
        "obj",
    ],
)
def test_bad_array_values(arr, match):
    for fn in (load_image, load_image_array):
        with pytest.raises(InvalidInputError, match=match):
            fn(arr)


def test_all_zero_float_array_is_fine():
    np.testing.assert_array_equal(
        load_image_array(np.zeros((2, 2, 3), np.float32)), np.zeros((2, 2, 3), np.uint8)
    )


# ---------------------------------------------------------------- pixel limit


def test_pixel_limit(monkeypatch, tmp_path):
    assert msimage.max_image_pixels() == 89478485 == Image.MAX_IMAGE_PIXELS
    monkeypatch.setenv("MSVISION_MAX_IMAGE_PIXELS", "100")
    assert load_image_array(np.zeros((10, 10, 3), np.uint8)).shape == (10, 10, 3)
    p = tmp_path / "big.png"
    Image.new("RGB", (11, 10)).save(p)
    for x in (
        np.zeros((10, 11, 3), np.uint8),
        np.zeros((11, 10), np.uint8),
        Image.new("L", (11, 10)),
        str(p),
    ):
        for fn in (load_image, load_image_array):
            with pytest.raises(InvalidInputError, match="MSVISION_MAX_IMAGE_PIXELS") as ei:
                fn(x)
            assert "110" in str(ei.value)
    monkeypatch.setenv("MSVISION_MAX_IMAGE_PIXELS", "none")
    assert msimage.max_image_pixels() is None
    assert load_image(str(p)).size == (11, 10)
    monkeypatch.setenv("MSVISION_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="MSVISION_MAX_IMAGE_PIXELS"):
        load_image(str(p))


def test_pil_decompression_bomb_becomes_invalid_input(monkeypatch, tmp_path):
    p = tmp_path / "bomb.png"
    Image.new("RGB", (20, 20)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # PIL errors above 2 * 50 pixels
    with pytest.raises(InvalidInputError, match="MAX_IMAGE_PIXELS"):
        load_image(str(p))


# ---------------------------------------------------------------- URLs


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_url(http_root, files, monkeypatch):
    root, base = http_root
    (root / "a.jpg").write_bytes(Path(files["exif6.jpg"]).read_bytes())
    (root / "junk.png").write_bytes(b"not an image")
    np.testing.assert_array_equal(
        load_image_array(base + "/a.jpg"), load_image_array(str(files["exif6.jpg"]))
    )
    with pytest.raises(InvalidInputError, match="404"):
        load_image(base + "/missing.jpg")
    with pytest.raises(ImageDecodeError, match="junk.png"):
        load_image(base + "/junk.png")
    monkeypatch.setattr(msimage, "MAX_DOWNLOAD_BYTES", 100)
    with pytest.raises(InvalidInputError, match="download limit"):
        load_image(base + "/a.jpg")


def test_url_unreachable(monkeypatch):
    monkeypatch.setattr(msimage, "DOWNLOAD_TIMEOUT_S", 2)
    with pytest.raises(InvalidInputError, match="could not download"):
        load_image("http://127.0.0.1:9/x.png")  # discard port: connection refused


@pytest.mark.parametrize(
    "name", ["exif6.jpg", "exif3.jpg", "rgba.png", "palette.png", "gray16.png", "cmyk.jpg"]
)
@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_encoded_bytes_decode_exactly_as_the_path(files, name, wrap):
    data = wrap(Path(files[name]).read_bytes())
    from_path = load_image_array(str(files[name]))
    np.testing.assert_array_equal(load_image_array(data), from_path)  # EXIF transpose included
    np.testing.assert_array_equal(np.asarray(load_image(data)), from_path)


@pytest.mark.parametrize(
    "data, error, match",
    [
        (b"", InvalidInputError, "empty"),
        (b"not an image at all", ImageDecodeError, "image bytes"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, ImageDecodeError, "image bytes"),
    ],
)
def test_bad_encoded_bytes(data, error, match):
    for fn in (load_image, load_image_array):
        with pytest.raises(error, match=match):
            fn(data)


def test_truncated_encoded_bytes(files):
    data = Path(files["exif1.jpg"]).read_bytes()[:400]
    with pytest.raises(ImageDecodeError, match="image bytes"):
        load_image_array(data)


def test_bytesio_object_is_a_type_error():
    with pytest.raises(TypeError, match="BytesIO"):
        load_image(io.BytesIO(b"x"))


def _trickling_server(send_headers_slowly: bool):
    """A local HTTP server that sends one byte every 0.2 s: each read returns before any per-read timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            head = b"HTTP/1.0 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
            payload = head if send_headers_slowly else b""
            if not send_headers_slowly:
                conn.sendall(head)
            payload += b"\x89PNG" + bytes(100000)
            for i in range(len(payload)):
                if stop.wait(0.2):
                    return
                try:
                    conn.sendall(payload[i : i + 1])
                except OSError:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, stop, thread


@pytest.mark.parametrize("slow_part", ["headers", "body"])
def test_url_that_trickles_is_cut_at_the_overall_deadline(monkeypatch, slow_part):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(msimage, "DOWNLOAD_TIMEOUT_S", 1)
    listener, stop, thread = _trickling_server(send_headers_slowly=slow_part == "headers")
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/slow.png"
    start = time.perf_counter()
    try:
        with pytest.raises(InvalidInputError, match="did not arrive within 1 s"):
            load_image(url)
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert time.perf_counter() - start < 3


def test_url_whose_connection_outlasts_the_deadline(monkeypatch):
    """A connection that only opens after the deadline (slow name lookup or connect): the caller stops waiting at
    the deadline all the same (was: a deadlock in the deadline's lock, waiting for ever)."""
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(msimage, "DOWNLOAD_TIMEOUT_S", 1)
    real_create = socket.create_connection

    def slow_create(*args, **kwargs):
        time.sleep(1.5)
        return real_create(*args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", slow_create)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    start = time.perf_counter()
    try:
        with pytest.raises(InvalidInputError, match="did not arrive within 1 s"):
            load_image(f"http://127.0.0.1:{listener.getsockname()[1]}/late.png")
        assert time.perf_counter() - start < 1.4
    finally:
        listener.close()


class _RedirectToFtp(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", "ftp://127.0.0.1:9/a.png")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_url_redirect_to_another_scheme_is_refused(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "ftp_proxy", "FTP_PROXY"):
        monkeypatch.delenv(var, raising=False)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RedirectToFtp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(InvalidInputError, match="non-http"):
            load_image(f"http://127.0.0.1:{server.server_address[1]}/x.png")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _png_header_only(width: int, height: int, mode_byte: int = 0) -> bytes:
    """A PNG whose header claims width x height (gray) and whose data is missing: enough for PIL's open."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, mode_byte, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_refused_before_decoding(tmp_path):
    """A 13000x13000 gray PNG (169 Mpixels, over PIL's MAX_IMAGE_PIXELS) is refused from its header, naming its
    size and the setting, through a whole pipeline (it used to be decoded and denoised for minutes)."""
    from msvision import pipeline

    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(13000, 13000))
    denoise = pipeline("image-denoising")  # the embedded default model
    start = time.perf_counter()
    with pytest.raises(InvalidInputError, match=r"13000x13000 = 169000000 pixels.*MSVISION_MAX_IMAGE_PIXELS"):
        denoise(str(path))
    assert time.perf_counter() - start < 2


def test_load_image_values_keeps_a_non_uint8_arrays_values():
    """LoadImage.convert_to_ndarray semantics for the pipelines that use the array directly (MogFace,
    DAMO-YOLO): BGR flipped to RGB and gray to 3 channels, without the uint8 cast of load_image_array."""
    from msvision.io import load_image_values

    bgr = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3) * 13.25  # 0..225.25, not whole numbers
    np.testing.assert_array_equal(load_image_values(bgr), bgr[:, :, ::-1])
    gray = np.full((2, 2), 200.25, np.float64)
    out = load_image_values(gray)
    assert out.shape == (2, 2, 3) and out.dtype == np.float64 and (out == 200.25).all()
    u8 = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    np.testing.assert_array_equal(load_image_values(u8), u8[:, :, ::-1])
