"""Decoded pixels as numbers: any Pillow mode -> float values in [0, 1] (gray or colour,
transparency composited over a background that keeps the strokes readable), luminance, and
the shrinking decode.py and the analysis use. Torch-free."""

from __future__ import annotations

import numpy as np
from PIL import Image

WORK_SIZE = 1024  # images are shrunk to at most this many pixels a side before analysis


def normalise_mode(im: Image.Image) -> Image.Image:
    """Any mode -> L, LA, RGB, RGBA (8 bits) or F (deeper images, scaled to [0, 1])."""
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return im
    if mode.startswith("I") or mode == "F":
        # 16-bit, 32-bit and float data: stretched from its own darkest to its lightest value
        # (scans often use a sliver of 16 bits; cutting them to 8 bits would clip them flat).
        a = np.nan_to_num(np.asarray(im).astype(np.float32))
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


def shrink(im: Image.Image, limit: int = WORK_SIZE) -> Image.Image:
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
    im = shrink(normalise_mode(im))
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


def mean_pool(a: np.ndarray, f: int) -> np.ndarray:
    """The mean of f x f blocks, the partial blocks at the right and bottom edges included."""
    h, w = a.shape
    p = np.pad(a, ((0, -h % f), (0, -w % f)), mode="edge")
    return p.reshape(p.shape[0] // f, f, p.shape[1] // f, f).mean(axis=(1, 3)).astype(np.float32)
