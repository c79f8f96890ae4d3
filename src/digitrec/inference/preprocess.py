"""One preprocessing function: any user image -> the 28x28 input the model saw in training.

The CLI (`digitrec predict`), the HTTP API and the web page all call `preprocess()`.
MNIST digits were made like this (LeCun et al.): the ink's bounding box scaled, keeping
its aspect ratio, so that its longer side is 20 pixels, with anti-aliasing; then the
20x20 patch placed in a 28x28 field so that its centre of mass lands on the centre
(pixel index 14; the training set's mean is 13.996 +- 0.29). White ink on black.

The steps, in order (the first three in decode.py):
  decode       PNG, JPEG, GIF (first frame), BMP, WebP, TIFF; byte and pixel limits first
  orient       EXIF orientation, so phone photos are upright
  composite    transparency over a background that contrasts with the visible strokes;
               palette, 16-bit, CMYK, ... -> float values in [0, 1], never clipped
  polarity     the background is the median; ink is whichever side deviates the most,
               so dark-on-light is inverted and light-on-dark is kept
  noise        background subtracted, a floor of 3 robust sigmas (MAD) removes paper
               texture; small specks are dropped before measuring the ink's extent
  thicken      strokes much thinner than MNIST's (fine pen, big photo) are widened
  fit          the ink's box (its 50% coverage edge) scaled to 20 px, anti-aliased
  centre       integer shift putting the centre of mass at (14, 14) in 28x28
"""

from __future__ import annotations

import io
from collections import deque
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import PreprocessError
from ..ink import stroke_width as _stroke_width
from .decode import MAX_BYTES, MAX_PIXELS, first_line, decode, luminance, to_pixels

MIN_CONTRAST = 0.08  # ink must differ from the background by 8% of full scale, else `blank`
NOISE_SIGMAS = 3.0  # background noise below this many robust standard deviations is removed
EDGE = 0.5  # the ink's edge is where it covers half a pixel: the box is measured there
SPECK = 0.03  # ink blobs lighter than 3% of the largest blob are specks, ignored for the box
BOX = 20  # the longer side of the ink's box in the 28x28 output, as in MNIST
MIN_STROKE = 1.0  # strokes estimated thinner than this many output pixels (MNIST's: 2 to 4)...
STROKE = 2.5  # ...are thickened to this many, so a fine pen or pencil on a big image stays visible
SIZE = 28


@dataclass
class Preprocessed:
    image: np.ndarray  # (28, 28) uint8, white ink on black: exactly what the model sees
    blank: bool  # no ink found; `image` is all zeros
    inverted: bool  # the input was dark ink on a light background
    size: tuple[int, int]  # of the decoded image, (width, height), after EXIF rotation
    format: str | None  # PNG, JPEG, ... (None for an Image passed in directly)
    box: tuple[int, int, int, int] | None  # the ink's (left, top, right, bottom) in the input's pixels

    def png(self, scale: int = 1) -> bytes:
        """The model input as a PNG, optionally scaled up with square pixels for people."""
        im = Image.fromarray(self.image, "L")
        if scale > 1:
            im = im.resize((SIZE * scale, SIZE * scale), Image.Resampling.NEAREST)
        buf = io.BytesIO()
        im.save(buf, "PNG")
        return buf.getvalue()


# ----------------------------------------------------------------------------- decode


# ----------------------------------------------------------------------------- ink


def _supported_extremes(a: np.ndarray) -> tuple[float, float]:
    """The darkest and lightest values held by at least two touching pixels: a lone speck
    does not count, a stroke one pixel wide does."""
    p = np.pad(a, 1, mode="edge")
    h, w = a.shape
    shifts = [p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    near_max, near_min = shifts[0], shifts[0]
    for s in shifts[1:]:
        near_max, near_min = np.maximum(near_max, s), np.minimum(near_min, s)
    return float(np.maximum(a, near_min).min()), float(np.minimum(a, near_max).max())


def ink_map(gray: np.ndarray) -> tuple[np.ndarray, bool, bool]:
    """(H, W) luminance -> (ink in [0, 1] with the background at 0, blank?, inverted?)."""
    sample = gray[::2, ::2] if gray.size > 65536 else gray  # medians of a quarter are as good, and faster
    background = float(np.median(sample))
    sigma = 1.4826 * float(np.median(np.abs(sample - background)))  # robust noise level (MAD)
    if min(gray.shape) >= 32:  # the extremes of strokes, not of specks
        darkest, lightest = _supported_extremes(gray)
    else:  # a tiny image: every pixel counts
        darkest, lightest = float(gray.min()), float(gray.max())
    dark, light = background - darkest, lightest - background
    inverted = dark > light
    ink = (background - gray) if inverted else (gray - background)
    level = max(dark, light)
    floor = NOISE_SIGMAS * sigma
    if level < max(MIN_CONTRAST, 2 * floor):
        return np.zeros_like(gray), True, inverted
    ink = np.clip((ink - floor) / (level - floor), 0.0, 1.0)
    return ink.astype(np.float32), False, inverted


def _components(mask: np.ndarray) -> list[tuple[int, list[tuple[int, int]]]]:
    """8-connected components of a small boolean grid: [(size, cells)], largest first."""
    seen = np.zeros_like(mask, dtype=bool)
    h, w = mask.shape
    out = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        seen[y0, x0] = True
        cells, queue = [], deque([(int(y0), int(x0))])
        while queue:
            y, x = queue.popleft()
            cells.append((y, x))
            for ny in (y - 1, y, y + 1):
                for nx in (x - 1, x, x + 1):
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
        out.append((len(cells), cells))
    return sorted(out, key=lambda c: -c[0])


def ink_box(ink: np.ndarray, grid: int = 64) -> tuple[int, int, int, int] | None:
    """The (left, top, right, bottom) box of the ink's solid part, specks left out; None if none.

    Components are found on a grid of at most `grid` cells a side (each cell: does it
    hold ink?), which keeps the pure-Python search small whatever the image size.
    """
    mask = ink >= EDGE
    if not mask.any():
        return None
    h, w = mask.shape
    cell = max(1, -(-max(h, w) // grid))  # ceil
    gh, gw = -(-h // cell), -(-w // cell)
    padded = np.zeros((gh * cell, gw * cell), dtype=np.float32)
    padded[:h, :w] = np.where(mask, ink, 0)
    mass = padded.reshape(gh, cell, gw, cell).sum((1, 3))  # (gh, gw) ink per cell
    comps = _components(mass > 0)
    masses = [sum(mass[c] for c in cells) for _, cells in comps]
    biggest = max(masses)
    keep = np.zeros((gh, gw), dtype=bool)
    for m, (_, cells) in zip(masses, comps):
        if m >= SPECK * biggest:
            for c in cells:
                keep[c] = True
    mask &= np.repeat(np.repeat(keep, cell, 0), cell, 1)[:h, :w]
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def stroke_width(ink: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Typical stroke width in pixels of the solid ink inside `box` (ink.stroke_width); only
    used to catch strokes several times thinner than MNIST's."""
    left, top, right, bottom = box
    return float(_stroke_width(ink[top:bottom, left:right] >= EDGE))


def thicken(ink: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Strokes much thinner than MNIST's (a fine pen on a big image) would fade to nothing when
    shrunk to 20 px: widen them (a max filter) to STROKE output pixels. Returns the ink
    around the box, thickened or not, and the box in it."""
    left, top, right, bottom = box
    scale = BOX / max(right - left, bottom - top)
    width = stroke_width(ink, box)
    r = int(np.ceil((STROKE / scale - width) / 2)) if width * scale < MIN_STROKE else 0
    m = r + int(np.ceil(3 / scale)) + 2  # what fit() reads around the box
    y0, x0 = max(top - m, 0), max(left - m, 0)
    sub = ink[y0 : bottom + m, x0 : right + m].copy()
    for _ in range(r):  # a (2r+1)-square max filter, one pixel at a time
        sub[1:] = np.maximum(sub[1:], sub[:-1])
        sub[:-1] = np.maximum(sub[:-1], sub[1:])
        sub[:, 1:] = np.maximum(sub[:, 1:], sub[:, :-1])
        sub[:, :-1] = np.maximum(sub[:, :-1], sub[:, 1:])
    h, w = sub.shape
    return sub, (max(left - x0 - r, 0), max(top - y0 - r, 0), min(right - x0 + r, w), min(bottom - y0 + r, h))


def fit(ink: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Scale the ink so its box's longer side is 20 px, then centre its mass in 28x28: (28, 28) float."""
    left, top, right, bottom = box
    scale = BOX / max(right - left, bottom - top)
    # The patch keeps 2 output pixels around the box for the anti-aliased edge, and no ink
    # from further away (that is specks and smudges outside the digit).
    pw = min(SIZE, int(np.ceil((right - left) * scale)) + 4)
    ph = min(SIZE, int(np.ceil((bottom - top) * scale)) + 4)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    src = (cx - pw / 2 / scale, cy - ph / 2 / scale, cx + pw / 2 / scale, cy + ph / 2 / scale)
    # Pillow wants the source box inside the image: pad the crop with background.
    x0, y0 = int(np.floor(src[0])) - 1, int(np.floor(src[1])) - 1
    x1, y1 = int(np.ceil(src[2])) + 1, int(np.ceil(src[3])) + 1
    crop = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
    sy0, sx0 = max(y0, 0), max(x0, 0)
    sy1, sx1 = min(y1, ink.shape[0]), min(x1, ink.shape[1])
    crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = ink[sy0:sy1, sx0:sx1]
    # Lanczos in Pillow widens its kernel when shrinking: anti-aliased both ways, and the
    # closest to MNIST of the filters tried (benchmarks/user_like.py).
    patch = Image.fromarray(crop, "F").resize(
        (pw, ph), Image.Resampling.LANCZOS,
        box=(src[0] - x0, src[1] - y0, src[2] - x0, src[3] - y0))
    patch = np.clip(np.asarray(patch, dtype=np.float32), 0.0, 1.0)
    field = np.zeros((2 * SIZE, 2 * SIZE), dtype=np.float32)  # room to shift in any direction
    oy, ox = (2 * SIZE - ph) // 2, (2 * SIZE - pw) // 2
    field[oy : oy + ph, ox : ox + pw] = patch
    total = float(field.sum())
    if total <= 0:
        return np.zeros((SIZE, SIZE), dtype=np.float32)
    idx = np.arange(2 * SIZE, dtype=np.float32)
    my = float(field.sum(1) @ idx) / total
    mx = float(field.sum(0) @ idx) / total
    y, x = int(round(my)) - SIZE // 2, int(round(mx)) - SIZE // 2
    return field[y : y + SIZE, x : x + SIZE]


# ----------------------------------------------------------------------------- the function


def preprocess(source, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> Preprocessed:
    """Any image (bytes, a path or a PIL image) -> the 28x28 model input, or PreprocessError."""
    im, fmt, shrunk = decode(source, max_bytes, max_pixels)
    size = (round(im.size[0] * shrunk), round(im.size[1] * shrunk))
    try:
        gray = luminance(to_pixels(im))
    except Exception as e:  # noqa: BLE001  an odd mode or a lazily decoded, broken frame
        raise PreprocessError(f"cannot convert the {im.mode} image: {first_line(e)}") from None
    ink, blank, inverted = ink_map(gray)
    box = None if blank else ink_box(ink)
    if box is None or max(box[2] - box[0], box[3] - box[1]) < 2:  # a dot is not a character
        return Preprocessed(np.zeros((SIZE, SIZE), np.uint8), True, inverted, size, fmt, None)
    out = fit(*thicken(ink, box))
    image = np.round(out * 255).astype(np.uint8)
    # The box in the caller's pixels (the analysis may have run on a shrunk copy).
    k = size[0] / gray.shape[1], size[1] / gray.shape[0]
    orig_box = (int(box[0] * k[0]), int(box[1] * k[1]), min(size[0], int(np.ceil(box[2] * k[0]))),
                min(size[1], int(np.ceil(box[3] * k[1]))))
    return Preprocessed(image, not image.any(), inverted, size, fmt, orig_box)
