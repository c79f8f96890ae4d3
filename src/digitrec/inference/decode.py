"""Decoding any image a person sends into pixel values, safely and in bounded memory.

Limits, checked before any pixel is decoded: bytes (MAX_BYTES, applied while reading, and
only regular files are read), pixels (MAX_PIXELS), and the memory the decoded pixels take,
which depends on the mode: 1 byte a pixel for gray or palette images, 2 for 16-bit gray,
4 for RGB, RGBA, CMYK, 32-bit and float (Pillow keeps RGB in 4 bytes), times the copies some
decoders hold (see COPIES). Decoding then happens inside a process-wide budget of decoded
bytes in flight (BUDGET, shared by every thread: the server's workers and the CLI alike), so
eight huge images at once wait for each other instead of taking eight times the memory.

JPEGs are decoded at 1/2 .. 1/8 scale by libjpeg where that still leaves WORK_SIZE pixels a
side; every other format is decoded whole and at once shrunk, within the budget, to at most
WORK_SIZE a side (by an integer factor a strip of rows at a time, then a box filter), so
that nothing downstream holds a full-size copy. EXIF orientation is honoured; palette,
16-bit, CMYK and transparency are handled; HEIC/HEIF photos are read when pillow-heif is
installed (the `heif` extra).
Used by every interface through `preprocess()`; torch-free.
"""

from __future__ import annotations

import io
import os
import re
import stat
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import PreprocessError, missing
from .pixels import WORK_SIZE, luminance, mean_pool, normalise_mode, shrink, to_pixels

MAX_BYTES = 20_000_000  # largest encoded image accepted: the one limit of the CLI, the API and the page
MAX_PIXELS = 40_000_000  # largest decoded image (width x height): a 40 MP photo; bombs are far bigger
MAX_DECODED = 256 * 2**20  # decoded bytes in flight in this process (and so for any one image):
# a 40 MP photo in RGB (160 MB), a 24 MP HEIC from a phone (196 MB)
BUDGET_WAIT = 60.0  # seconds an image may wait for its share of MAX_DECODED before "busy"
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "DIB", "WEBP", "TIFF", "HEIF")  # JPEG includes MPO (phone cameras)
FORMAT_NAMES = "PNG, JPEG, GIF, BMP, WebP, TIFF or HEIC"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".gif", ".bmp", ".dib", ".webp", ".tif", ".tiff",
                  ".heic", ".heif", ".hif"}
DRAFT = WORK_SIZE // 2  # libjpeg decodes big JPEGs at 1/2, 1/4 or 1/8 scale down to this a side
# Decoders that hold their own full-size buffers besides Pillow's image while decoding: measured
# peaks for a 6320x6320 RGB image (160 MB in Pillow) were WebP 618 MB (libwebp's RGBA output
# and copies) and HEIC 285 MB (libheif's planes). TIFF adds one strip or tile (_tiff_buffer).
COPIES = {"WEBP": 4, "HEIF": 2}
STRIP_BYTES = 4 * 2**20  # the shrinking works on horizontal strips of about this size
# EXIF orientation -> the transpose that makes the image upright
UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}


class DecodeBudget:
    """Bytes of decoded pixels in flight, shared by every thread of the process: `hold(n)`
    waits until n bytes are free (at most `wait` seconds, then PreprocessError "busy").
    A thread already holding n bytes holds them again for free: the server takes an image's
    whole cost (decode and analysis) around preprocess(), whose decode() then asks again."""

    def __init__(self, total: int, wait: float = BUDGET_WAIT):
        self.total, self.wait, self.used, self.peak = total, wait, 0, 0
        self._cond = threading.Condition()
        self._mine = threading.local()

    @contextmanager
    def hold(self, n: int):
        n = min(n, self.total)  # callers refuse larger images first; this never deadlocks
        have = getattr(self._mine, "held", 0)
        extra = max(0, n - have)
        with self._cond:
            if not self._cond.wait_for(lambda: self.used + extra <= self.total, self.wait):
                raise PreprocessError("the server is busy decoding other large images; try again in a moment",
                                      "busy")
            self.used += extra
            self.peak = max(self.peak, self.used)
        self._mine.held = have + extra
        try:
            yield
        finally:
            self._mine.held = have
            with self._cond:
                self.used -= extra
                self._cond.notify_all()


BUDGET = DecodeBudget(MAX_DECODED)
_heif_lock = threading.Lock()
_heif_ready = False


def _register_heif() -> None:
    """Teach Pillow HEIC/HEIF (pillow-heif), once, where it is installed."""
    global _heif_ready
    with _heif_lock:
        if not _heif_ready and not missing("heif"):
            import pillow_heif

            pillow_heif.register_heif_opener(thumbnails=False)
        _heif_ready = True


def give_freed_memory_back() -> bool:
    """Make glibc hand freed image memory back to the system at once (for a long-running
    server). By default it serves blocks above 128 KB with mmap, but raises that threshold to
    the size of any such block freed (up to 32 MB): after the first big image, Pillow's 16 MB
    blocks come from heaps that keep their pages, one heap per thread, and the process's memory
    only grows. A fixed 1 MB threshold and two heaps keep it where the budget says. No-op
    (False) elsewhere than glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_mmap_threshold, m_arena_max = -3, -8
    return bool(mallopt(m_mmap_threshold, 1 << 20)) and bool(mallopt(m_arena_max, 2))


def read_limited(f, max_bytes: int) -> bytes:
    """At most max_bytes from a binary stream; PreprocessError as soon as it holds more."""
    data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PreprocessError(f"the image is larger than the limit of {max_bytes:,} bytes", "too_large")
    return data


KIND_OF_FILE = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a device"),
                (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))


def read_file(path: Path | str, max_bytes: int = MAX_BYTES) -> bytes:
    """A regular file's bytes, at most max_bytes. FIFOs, devices and sockets are refused
    without reading (a FIFO with no writer would block forever, /dev/zero never ends)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise PreprocessError("no such file", "unsupported") from None
    except OSError as e:
        raise PreprocessError(f"cannot read it: {e.strerror or e}", "damaged") from None
    mode = os.fstat(fd).st_mode
    for test, kind in KIND_OF_FILE:
        if test(mode):
            os.close(fd)
            raise PreprocessError(f"it is {kind}, not an image file", "unsupported")
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as f:
        try:
            return read_limited(f, max_bytes)
        except OSError as e:
            raise PreprocessError(f"cannot read it: {e.strerror or e}", "damaged") from None


def _read_bytes(source, max_bytes: int) -> bytes:
    data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else read_file(source, max_bytes)
    if not data:
        raise PreprocessError("the file is empty (0 bytes)", "empty")
    if len(data) > max_bytes:
        raise PreprocessError(f"the image is {len(data):,} bytes; the limit is {max_bytes:,}", "too_large")
    return data


def decoded_bytes(im: Image.Image) -> int:
    """Memory that decoding `im` at its current size takes: Pillow's pixels (1, 2 or 4 bytes
    each, by mode) times the copies its decoder holds, plus the shrunk copy made from it."""
    w, h = im.size
    per_pixel = 1 if im.mode in ("1", "L", "P") else 2 if im.mode.startswith("I;16") else 4
    decoded = w * h * per_pixel * COPIES.get(im.format, 1) + _tiff_buffer(im)
    if max(w, h) <= WORK_SIZE:
        return decoded  # used as it is
    f = _factor(im.size)
    reduced = (-(-w // f)) * (-(-h // f)) * 4  # by f (f == 1: a copy in a mode that shrinks)
    return decoded + reduced + WORK_SIZE * WORK_SIZE * 4 + (2 * STRIP_BYTES if f > 1 else 0)


def _tiff_buffer(im: Image.Image) -> int:
    """libtiff reads a TIFF a strip or a tile at a time into a buffer of its own: its size."""
    if im.format != "TIFF":
        return 0
    w, h = im.size
    try:
        tags = im.tag_v2
        tile = (int(tags.get(322, 0)), int(tags.get(323, 0)))  # TileWidth, TileLength
        rows = min(h, int(tags.get(278, h)))  # RowsPerStrip
        return (tile[0] * tile[1] if all(tile) else rows * w) * 4
    except (TypeError, ValueError, AttributeError):
        return w * h * 4  # unreadable tags: assume one strip


def analysis_bytes(size: tuple[int, int]) -> int:
    """Memory the ink analysis after decoding takes: a dozen float32 planes of the image
    shrunk to WORK_SIZE (to_pixels' colour and alpha, luminance, ink, masks)."""
    k = min(1.0, WORK_SIZE / max(size))
    return int(size[0] * k + 1) * int(size[1] * k + 1) * 4 * 12


def decoded_cost(data: bytes) -> int:
    """What preprocessing an encoded image holds in memory at most, decoded_bytes() plus
    analysis_bytes(), read from its header alone (0 if we cannot read it: it will fail
    quickly). The server queues by it and holds it in BUDGET for the whole preprocessing."""
    try:
        im = _open(data)
    except PreprocessError:
        return 0
    if im.format in ("JPEG", "MPO"):
        im.draft(im.mode, (DRAFT, DRAFT))
    return decoded_bytes(im) + analysis_bytes(im.size)


def _too_many(e: Exception, max_pixels: int) -> PreprocessError:
    """Pillow's decompression-bomb refusal in our words and with our limit (its message quotes its own)."""
    m = re.search(r"\((\d+) pixels\)", str(e))
    size = f"{int(m[1]):,} pixels" if m else "far more pixels than any photo"
    return PreprocessError(f"the image is {size}; the limit is {max_pixels:,} (a 40-megapixel photo): "
                           "send a smaller image", "too_many_pixels")


def _open(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    _register_heif()
    with warnings.catch_warnings():
        # Our own pixel limit is stricter than Pillow's warning; its hard limit is an error below.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data), formats=FORMATS)
        except UnidentifiedImageError:
            raise PreprocessError(f"not an image in a supported format ({FORMAT_NAMES})", "unsupported") from None
        except Image.DecompressionBombError as e:
            raise _too_many(e, max_pixels) from None
        except Exception as e:  # noqa: BLE001  decoders raise many kinds on broken files
            raise PreprocessError(f"damaged image header: {first_line(e)}") from None


def _load(im: Image.Image, fmt: str | None, max_decoded: int, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode the pixels within the budget and return them shrunk (see _reduce)."""
    need = decoded_bytes(im)
    if need > max_decoded:
        w, h = im.size
        raise PreprocessError(f"the {w}x{h} {im.mode} image would take {need / 2**20:,.0f} MB to decode; "
                              f"the limit is {max_decoded / 2**20:,.0f} MB (send a smaller or 8-bit image)",
                              "too_many_pixels")
    with BUDGET.hold(need), warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im.load()
        except Image.DecompressionBombError as e:
            raise _too_many(e, max_pixels) from None
        except Exception as e:  # noqa: BLE001  OSError, SyntaxError, struct.error, ...
            raise PreprocessError(f"the {fmt} data is damaged or truncated: {first_line(e)}") from None
        try:
            return _reduce(im)
        except (OSError, ValueError) as e:  # a lazily decoded, broken frame
            raise PreprocessError(f"the {fmt} data is damaged or truncated: {first_line(e)}") from None


@dataclass(frozen=True, eq=False)
class Decoded:
    """An image decoded once: everything after it (the ink finder, the model, the explanation, the
    preview) works on this one object. `image` is the first frame, upright, loaded and shrunk to
    at most WORK_SIZE a side; `size` is the original's (width, height) once upright, the size
    every box given to users is measured in."""

    image: Image.Image
    format: str | None  # PNG, JPEG, ... (None for a PIL image passed in directly)
    size: tuple[int, int]

    @property
    def scale(self) -> float:
        """Original pixels per pixel of `image` (1 for an image that was not shrunk)."""
        return self.size[0] / self.image.size[0]

    @cached_property
    def pixels(self) -> np.ndarray:
        """to_pixels(image): (H, W) or (H, W, 3) float32 in [0, 1]; PreprocessError for a mode
        that cannot be converted or a lazily decoded, broken frame."""
        try:
            return to_pixels(self.image)
        except Exception as e:  # noqa: BLE001  an odd mode or a broken frame
            raise PreprocessError(f"cannot convert the {self.image.mode} image: {first_line(e)}") from None

    def gray(self, max_side: int = WORK_SIZE) -> np.ndarray:
        """(H, W) float32 luminance in [0, 1], block-averaged to at most `max_side` a side (the
        ink of one character is found as well at a third of a megapixel; a line of them at WORK_SIZE)."""
        gray = luminance(self.pixels)
        f = -(-max(gray.shape) // max_side)
        return mean_pool(gray, f) if f > 1 else gray


def decode(source, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS,
           max_decoded: int = MAX_DECODED) -> Decoded:
    """Bytes, a path, a PIL image or a Decoded (returned as it is) -> Decoded: the first frame,
    upright, loaded and shrunk to at most WORK_SIZE a side, with its format and original size."""
    if isinstance(source, Decoded):
        return source
    if isinstance(source, Image.Image):
        im, fmt = source, source.format
        _check_pixels(im, max_pixels)
        full, orientation = im.size, _orientation(im)
        im = _reduce(im)
    else:
        im = _open(_read_bytes(source, max_bytes), max_pixels)
        fmt = im.format
        _check_pixels(im, max_pixels)
        full, orientation = im.size, _orientation(im)
        if fmt in ("JPEG", "MPO"):
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the result is still big enough.
            im.draft(im.mode, (DRAFT, DRAFT))
        im = _load(im, fmt, max_decoded, max_pixels)
    _check_pixels(im, max_pixels)
    if orientation in UPRIGHT:
        im = im.transpose(UPRIGHT[orientation])
        if orientation >= 5:  # a quarter turn: width and height swap
            full = full[::-1]
    return Decoded(im, fmt, full)


def _orientation(im: Image.Image) -> int:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data": then there is no orientation to honour
            return int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001  a broken EXIF block only costs us the orientation
        return 1


def _factor(size: tuple[int, int]) -> int:
    """The integer shrink that leaves between WORK_SIZE and 2 x WORK_SIZE pixels a side."""
    return max(1, max(size) // WORK_SIZE)


def _reducible(im: Image.Image) -> Image.Image:
    """A mode Image.reduce() averages in: palette and 1-bit as 8-bit colour or gray, 16-bit
    as 32-bit integers (values kept: to_pixels stretches them later, over the whole image)."""
    if im.mode.startswith("I;16"):
        return im.convert("I")
    if im.mode in ("P", "PA", "1"):
        return normalise_mode(im)
    return im


def _reduce(im: Image.Image) -> Image.Image:
    """Shrink to at most WORK_SIZE a side: by _factor (a box average), a strip of rows at a
    time so that the only full-size copy is the decoded one, then by to_pixels' own shrink."""
    if max(im.size) <= WORK_SIZE:
        return im
    f = _factor(im.size)
    if f == 1:
        return shrink(_reducible(im))
    w, h = im.size
    rows = max(f, STRIP_BYTES // (4 * w) // f * f)
    out = None
    for y in range(0, h, rows):
        strip = _reducible(im.crop((0, y, w, min(h, y + rows)))).reduce(f)
        if out is None:
            out = Image.new(strip.mode, (-(-w // f), -(-h // f)))
        out.paste(strip, (0, y // f))
    return shrink(out)


def _check_pixels(im: Image.Image, max_pixels: int) -> None:
    w, h = im.size
    if w < 1 or h < 1:
        raise PreprocessError(f"the image has no pixels ({w}x{h})", "damaged")
    if w * h > max_pixels:
        raise PreprocessError(f"the image is {w}x{h} = {w * h:,} pixels; the limit is {max_pixels:,}",
                              "too_many_pixels")


def first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:200]
