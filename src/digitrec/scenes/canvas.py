"""Glyphs and layout: ink coverage on a canvas, before any paper or pen.

A *glyph* is ink coverage in a square field, the way MNIST stores a digit: (S, S) float in
[0, 1], the character inside the central 20/28 of the field. `place()` puts the ink on a
canvas at a size and position suited to a condition (`Layout`); `compose_line()` first sets
several glyphs in a row. Either way the result is a `Canvas`: ink (H, W) and each glyph's box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # (left, top, right, bottom) in pixels, right and bottom exclusive
FIELD = 28  # MNIST's field...
GLYPH = 20  # ...and the box its character fills


@dataclass
class Canvas:
    ink: np.ndarray  # (H, W) float32 ink coverage in [0, 1]
    boxes: list[Box]  # each glyph's box in these pixels

    @property
    def shape(self) -> tuple[int, int]:
        return self.ink.shape


@dataclass(frozen=True)
class Layout:
    """How big the ink is drawn and where, before a condition paints it.

    raw    the glyph's field as it is (an MNIST digit stays 28x28)
    page   a canvas whose longer side is drawn from `size` (px); the glyph field's height is
           `fill` of the canvas height (a digit's ink is 20/28 of that), anywhere on it
    tight  cropped to the ink plus a margin of `fill` times the ink's height (0: the ink touches
           the edges), `square` padding it square; then scaled so that its longer side (a
           line's: its height) is drawn from `size` px
    """
    kind: str
    size: tuple[int, int] = (28, 28)
    fill: tuple[float, float] = (0.0, 0.0)
    square: bool = False


def glyph_of(digit: np.ndarray) -> np.ndarray:
    """An MNIST digit, (28, 28) uint8 white on black -> its glyph: (28, 28) float32 in [0, 1]."""
    return np.asarray(digit, np.float32) / 255.0


def ink_box(ink: np.ndarray, level: float = 0.1) -> Box:
    """The box of the pixels holding at least `level` of the strongest ink (the whole array if none)."""
    mask = ink >= level * max(float(ink.max()), 1e-6)
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    if not len(rows):
        return 0, 0, ink.shape[1], ink.shape[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def resize(ink: np.ndarray, width: int, height: int, sharp: bool = True) -> np.ndarray:
    """Ink scaled to (height, width): bicubic when enlarging (then, with `sharp`, edges re-sharpened
    to about 1.5 px, as a pen draws them), area-averaged when shrinking."""
    h, w = ink.shape
    up = width > w or height > h
    out = Image.fromarray(ink.astype(np.float32), "F").resize(
        (width, height), Image.Resampling.BICUBIC if up else Image.Resampling.BOX)
    out = np.clip(np.asarray(out, np.float32), 0.0, 1.0)
    k = min(width / w, height / h)
    if up and sharp and k > 1.5:
        out = np.clip((out - 0.5) * (k / 1.5) + 0.5, 0.0, 1.0)
    return out


def blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """A nearly Gaussian blur of a float (H, W) array: three box filters, by cumulative sums."""
    r = max(0, int(round((np.sqrt(4 * sigma**2 + 1) - 1) / 2)))  # box radius for this sigma
    out = np.asarray(a, np.float32)
    for axis in (0, 1):
        for _ in range(3 if r else 0):
            p = np.pad(out, [(r + 1, r) if i == axis else (0, 0) for i in range(2)], mode="edge")
            c = np.cumsum(p, axis=axis, dtype=np.float64)
            hi = c.take(np.arange(2 * r + 1, c.shape[axis]), axis=axis)
            lo = c.take(np.arange(0, c.shape[axis] - 2 * r - 1), axis=axis)
            out = ((hi - lo) / (2 * r + 1)).astype(np.float32)
    return out


def _scale_boxes(boxes: list[Box], k: float, dx: float = 0.0, dy: float = 0.0) -> list[Box]:
    return [(int(np.floor(b[0] * k + dx)), int(np.floor(b[1] * k + dy)),
             int(np.ceil(b[2] * k + dx)), int(np.ceil(b[3] * k + dy))) for b in boxes]


def place(canvas: Canvas, layout: Layout, rng: np.random.Generator, field: int | None = None) -> Canvas:
    """Put glyph ink on a new canvas as `layout` says: one glyph's field (`field` None), or a line
    from `compose_line` whose glyph fields are `field` px tall."""
    ink, boxes = canvas.ink, canvas.boxes
    h, w = ink.shape
    if layout.kind == "raw":  # as MNIST stores it: a glyph field 28 px tall
        k = FIELD / (field or h)
        if k == 1:
            return canvas
        return Canvas(resize(ink, max(1, round(w * k)), max(1, round(h * k))), _scale_boxes(boxes, k))
    if layout.kind == "page":
        side = int(rng.integers(layout.size[0], layout.size[1] + 1))
        aspect = rng.uniform(0.75, 1.33)
        ch, cw = round(side * min(1.0, 1 / aspect)), round(side * min(1.0, aspect))
        k = rng.uniform(*layout.fill) * ch / (field or h)
        gw, gh = max(1, round(w * k)), max(1, round(h * k))
        cw, ch = max(cw, gw + round(0.1 * ch)), max(ch, gh + 2)  # a line gets a wider sheet
        x, y = int(rng.integers(0, cw - gw + 1)), int(rng.integers(0, ch - gh + 1))
        out = np.zeros((ch, cw), np.float32)
        out[y : y + gh, x : x + gw] = resize(ink, gw, gh)
        return Canvas(out, _scale_boxes(boxes, gw / w, x, y))
    if layout.kind == "tight":
        left, top, right, bottom = ink_box(ink)
        m = rng.uniform(*layout.fill) * (bottom - top)
        left, top, right, bottom = left - m, top - m, right + m, bottom + m
        if layout.square:
            cx, cy, half = (left + right) / 2, (top + bottom) / 2, max(right - left, bottom - top) / 2
            left, top, right, bottom = cx - half, cy - half, cx + half, cy + half
        side = int(rng.integers(layout.size[0], layout.size[1] + 1))
        k = side / (max(right - left, bottom - top) if field is None else bottom - top)  # a line: its height
        tw, th = max(1, round((right - left) * k)), max(1, round((bottom - top) * k))
        p = int(np.ceil(max(-left, -top, right - w, bottom - h, 0))) + 1  # the margin may reach past the field
        out = Image.fromarray(np.pad(ink, p).astype(np.float32), "F").resize(
            (tw, th), Image.Resampling.BICUBIC, box=(left + p, top + p, right + p, bottom + p))
        out = np.asarray(out, np.float32)
        out = np.clip((out - 0.5) * max(k / 1.5, 1.0) + 0.5, 0.0, 1.0) if k > 1.5 else np.clip(out, 0, 1)
        return Canvas(out, _scale_boxes(boxes, k, -left * k, -top * k))
    raise ValueError(f"unknown layout {layout.kind!r}")


def compose_line(glyphs: list[np.ndarray], rng: np.random.Generator, gap: tuple[float, float] = (-0.3, 0.6),
                 size_jitter: float = 0.12, baseline_jitter: float = 0.08) -> Canvas:
    """Glyphs (fields of one size) set side by side in one strip, each cropped to its ink's width.

    `gap` is the space between neighbours in units of the glyph's ink width: negative values
    overlap them (-0.3: by 30% of a digit's width; 0: touching). Each glyph is scaled by
    1 +- `size_jitter` and moved up or down by +- `baseline_jitter` of the field. Overlapping
    ink combines as a pen would (the darker wins). Returns the strip (height: one field plus
    the jitter room) and each glyph's ink box in it.
    """
    s = glyphs[0].shape[0]
    pad = int(np.ceil(s * (size_jitter + baseline_jitter))) + 1
    height = s + 2 * pad
    pieces, x = [], pad
    for g in glyphs:
        k = 1.0 + rng.uniform(-size_jitter, size_jitter)
        n = max(2, round(s * k))
        scaled = resize(g, n, n, sharp=False)
        left, top, right, bottom = ink_box(scaled)
        y = pad + (s - n) // 2 + round(rng.uniform(-baseline_jitter, baseline_jitter) * s)
        width = right - left
        if pieces:
            x += round(rng.uniform(*gap) * width)
        pieces.append((scaled[:, left:right], max(x, 0), y, (top, bottom)))
        x = max(x, 0) + width
    out = np.zeros((height, x + pad), np.float32)
    boxes = []
    for patch, px, py, (top, bottom) in pieces:
        region = out[py : py + patch.shape[0], px : px + patch.shape[1]]
        np.maximum(region, patch[: region.shape[0]], out=region)
        boxes.append((px, py + top, px + patch.shape[1], py + bottom))
    return Canvas(out, boxes)



def glyph_height(canvas: Canvas) -> float:
    """The typical glyph height on the canvas, px."""
    return float(np.median([b[3] - b[1] for b in canvas.boxes])) if canvas.boxes else float(canvas.shape[0])


def union_box(boxes: list[Box], h: int, w: int) -> Box:
    """The box holding every box (an empty one at the centre of an (h, w) canvas if none)."""
    if not boxes:
        return w // 2, h // 2, w // 2, h // 2
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)
