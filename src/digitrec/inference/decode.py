"""Decoding any image a person sends into pixel values, safely: byte and pixel limits checked
before the pixels are decoded, JPEGs decoded at reduced size where that is enough, EXIF
orientation honoured, palette, 16-bit, CMYK and transparency handled. Used by every
interface through `preprocess()`; torch-free.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import PreprocessError

MAX_BYTES = 20_000_000  # largest encoded file accepted
MAX_PIXELS = 40_000_000  # largest decoded image (width x height): a 40 MP photo; bombs are far bigger
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "DIB", "WEBP", "TIFF")  # JPEG includes MPO (phone cameras)
FORMAT_NAMES = "PNG, JPEG, GIF, BMP, WebP or TIFF"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".gif", ".bmp", ".dib", ".webp", ".tif", ".tiff"}
WORK_SIZE = 1024  # images are shrunk to at most this many pixels a side before analysis


def _read_bytes(source, max_bytes: int) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            size = os.stat(path).st_size
            if size > max_bytes:
                raise PreprocessError(f"the file is {size:,} bytes; the limit is {max_bytes:,}", "too_large")
            data = path.read_bytes()
        except PreprocessError:
            raise
        except IsADirectoryError:
            raise PreprocessError("it is a folder, not an image file", "unsupported") from None
        except FileNotFoundError:
            raise PreprocessError("no such file", "unsupported") from None
        except OSError as e:
            raise PreprocessError(f"cannot read it: {e.strerror or e}", "damaged") from None
    if not data:
        raise PreprocessError("the file is empty (0 bytes)", "empty")
    if len(data) > max_bytes:
        raise PreprocessError(f"the image is {len(data):,} bytes; the limit is {max_bytes:,}", "too_large")
    return data


def decode(source, max_bytes: int = MAX_BYTES,
           max_pixels: int = MAX_PIXELS) -> tuple[Image.Image, str | None, float]:
    """Bytes, a path or a PIL image -> (the first frame, upright and loaded; its format; how
    many times smaller than the file it was decoded: JPEGs may be decoded at 1/2 .. 1/8)."""
    full = None
    if isinstance(source, Image.Image):
        im, fmt = source, source.format
    else:
        data = _read_bytes(source, max_bytes)
        with warnings.catch_warnings():
            # Our own pixel limit is stricter than Pillow's warning; its hard limit is an error below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                im = Image.open(io.BytesIO(data), formats=FORMATS)
            except UnidentifiedImageError:
                raise PreprocessError(f"not an image in a supported format ({FORMAT_NAMES})",
                                      "unsupported") from None
            except Image.DecompressionBombError as e:
                raise PreprocessError(f"refused: {e}", "too_many_pixels") from None
            except Exception as e:  # noqa: BLE001  decoders raise many kinds on broken files
                raise PreprocessError(f"damaged image header: {first_line(e)}") from None
            fmt = im.format
            _check_pixels(im, max_pixels)
            full = im.size
            if fmt in ("JPEG", "MPO"):
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the result is still big enough.
                im.draft(im.mode, (WORK_SIZE, WORK_SIZE))
            try:
                im.load()
            except Image.DecompressionBombError as e:
                raise PreprocessError(f"refused: {e}", "too_many_pixels") from None
            except Exception as e:  # noqa: BLE001  OSError, SyntaxError, struct.error, ...
                raise PreprocessError(f"the {fmt} data is damaged or truncated: {first_line(e)}") from None
    _check_pixels(im, max_pixels)
    shrunk = full[0] / im.size[0] if full else 1.0
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001  a broken EXIF block only costs us the orientation
        pass
    return im, fmt, shrunk


def _check_pixels(im: Image.Image, max_pixels: int) -> None:
    w, h = im.size
    if w < 1 or h < 1:
        raise PreprocessError(f"the image has no pixels ({w}x{h})", "damaged")
    if w * h > max_pixels:
        raise PreprocessError(f"the image is {w}x{h} = {w * h:,} pixels; the limit is {max_pixels:,}",
                              "too_many_pixels")


def first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:200]


# ----------------------------------------------------------------------------- to gray


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Any mode -> L, LA, RGB, RGBA (8 bits) or F (deeper images, scaled to [0, 1])."""
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return im
    if mode.startswith("I") or mode == "F":
        # 16-bit, 32-bit and float data: stretched from its own darkest to its lightest value
        # (scans often use a sliver of 16 bits; cutting them to 8 bits would clip them flat).
        a = np.nan_to_num(np.asarray(im).astype(np.float64))
        low, high = float(a.min()), float(a.max())
        return Image.fromarray(((a - low) / max(high - low, 1e-12)).astype(np.float32), "F")
    if mode == "P":
        return im.convert("RGBA" if "transparency" in im.info or im.palette.mode == "RGBA" else "RGB")
    if mode == "PA":
        return im.convert("RGBA")
    if mode in ("La",):
        return im.convert("LA")
    if mode in ("RGBa", "RGBX"):
        return im.convert("RGBA" if mode == "RGBa" else "RGB")
    if mode == "1":
        return im.convert("L")
    return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV


def _shrink(im: Image.Image, limit: int = WORK_SIZE) -> Image.Image:
    w, h = im.size
    if max(w, h) <= limit:
        return im
    k = limit / max(w, h)
    # BOX averages every source pixel (area anti-aliasing); RGBA/LA are premultiplied by Pillow.
    return im.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.BOX, reducing_gap=3.0)


def to_pixels(im: Image.Image) -> np.ndarray:
    """A decoded image -> float32 values in [0, 1], shrunk to at most WORK_SIZE a side, with
    transparency composited: (H, W) for gray images, (H, W, 3) for colour ones (coloured ink
    differs from its paper in colour as much as in brightness)."""
    im = _shrink(_normalise_mode(im))
    if im.mode == "F":
        return np.asarray(im, dtype=np.float32)
    a = np.asarray(im, dtype=np.float32) / 255.0
    if im.mode in ("L", "RGB"):
        return a
    values, alpha = a[..., :-1], a[..., -1]
    if im.mode == "LA":
        values = values[..., 0]
    return values if alpha.min() >= 0.999 else _composite(values, alpha)


def luminance(pixels: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) values -> (H, W) luminance (ITU-R 601)."""
    return pixels if pixels.ndim == 2 else pixels @ np.array([0.299, 0.587, 0.114], np.float32)


def _composite(values: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Put a partly transparent image onto a background that makes its content readable.

    Transparent pixels often hold black (canvas exports) or garbage, so their colour is
    ignored. If what is visible covers little of the image, it is strokes: they go onto
    white when they are dark and onto black when they are light. If it covers most of the
    image it is the paper itself, and the transparent rest takes the paper's colour.
    """
    visible = alpha > 0.5
    weight = float(alpha.sum())
    if weight < 1e-6:
        return np.zeros_like(values)  # fully transparent: blank
    a = alpha if values.ndim == 2 else alpha[..., None]
    if visible.mean() < 0.5:
        strokes = float((luminance(values) * alpha).sum()) / weight
        background = np.float32(1.0 if strokes < 0.5 else 0.0)
    else:
        background = np.median(values[visible], axis=0).astype(np.float32)
    return values * a + background * (1.0 - a)
