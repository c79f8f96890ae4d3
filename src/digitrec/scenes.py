"""Real-world conditions for handwriting: a digit (or a line of them) as people hand it over.

A *glyph* is ink coverage in a square field, the way MNIST stores a digit: (S, S) float in
[0, 1], the character inside the central 20/28 of the field. An MNIST digit is its (28, 28)
uint8 array / 255 (`glyph_of`); `non_digit` draws shapes that are not digits the same way.

Rendering takes three reusable steps:
  layout  `place()` puts the ink on a canvas at a size and position suited to the condition
          (raw: the field as it is; page: on a sheet with room around it; tight: cropped to
          the ink with a small margin). `compose_line()` first sets several glyphs in a row.
          Either way the result is a `Canvas`: ink (H, W) float in [0, 1] and each glyph's box.
  paint   the condition itself: (canvas, rng) -> (PIL image, each glyph's box in its pixels):
          paper, pen, light, rule lines, borders, noise...
  encode  PNG, or JPEG at the condition's quality range.
`render_digit()` and `render_line()` do all three for any condition in `CONDITIONS`.

Everything is drawn from the `rng` passed in, so a seed gives the same bytes every time.
numpy and Pillow only: benchmarks and tests use it without torch.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from importlib.util import find_spec
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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


@dataclass(frozen=True)
class Condition:
    name: str
    help: str  # one line: what a person would have done to make such an image
    layout: Layout
    paint: Callable[[Canvas, np.random.Generator], tuple[Image.Image, list[Box]]]
    jpeg: tuple[int, int] | None = None  # quality range (inclusive) to save as JPEG; None: PNG


# ----------------------------------------------------------------------------- glyphs and layout


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


# ----------------------------------------------------------------------------- strokes


def draw_strokes(lines: list[np.ndarray], width: int, height: int, pen: float, supersample: int = 4) -> np.ndarray:
    """Polylines ((N, 2) arrays of x, y in pixels) drawn with a round pen `pen` px wide, anti-aliased:
    (height, width) float32 ink coverage."""
    s = supersample
    im = Image.new("L", (width * s, height * s))
    draw = ImageDraw.Draw(im)
    r = max(pen * s / 2, 0.5)
    for line in lines:
        pts = [(float(x) * s, float(y) * s) for x, y in np.asarray(line, np.float64)]
        if len(pts) > 1:
            draw.line(pts, fill=255, width=max(1, round(pen * s)), joint="curve")
        for x, y in (pts if pen * s > 3 else pts[:1] + pts[-1:]):  # round caps (and joints)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(im.reduce(s), np.float32) / 255.0


def thin(mask: np.ndarray) -> np.ndarray:
    """The one-pixel skeleton of a boolean mask (Zhang and Suen's thinning, 1984), vectorised."""
    m = np.pad(mask.astype(np.uint8), 1)
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            n = [m[:-2, 1:-1], m[:-2, 2:], m[1:-1, 2:], m[2:, 2:],  # the 8 neighbours clockwise from north
                 m[2:, 1:-1], m[2:, :-2], m[1:-1, :-2], m[:-2, :-2]]
            count = sum(p.astype(np.int8) for p in n)
            turns = sum(((n[i] == 0) & (n[(i + 1) % 8] == 1)).astype(np.int8) for i in range(8))
            if step == 0:
                side = (n[0] * n[2] * n[4] == 0) & (n[2] * n[4] * n[6] == 0)
            else:
                side = (n[0] * n[2] * n[6] == 0) & (n[0] * n[4] * n[6] == 0)
            drop = (m[1:-1, 1:-1] == 1) & (count >= 2) & (count <= 6) & (turns == 1) & side
            if drop.any():
                m[1:-1, 1:-1][drop] = 0
                changed = True
    return m[1:-1, 1:-1].astype(bool)


def restroke(canvas: Canvas, pen: float, detail: int = 80) -> np.ndarray:
    """The canvas's ink redrawn along its skeleton with a round pen `pen` px wide: the same
    characters written with a fine pen or a marker. The skeleton is found with each glyph
    about `detail` px tall."""
    ink = canvas.ink
    h, w = ink.shape
    tall = float(np.median([b[3] - b[1] for b in canvas.boxes])) if canvas.boxes else h
    k = min(1.0, detail / max(tall, 1.0))
    small = resize(ink, max(1, round(w * k)), max(1, round(h * k))) if k < 1 else ink
    skeleton = thin(small > 0.5)
    ys, xs = np.nonzero(skeleton)
    padded = np.pad(skeleton, 1)
    lines = [np.array([[x, y], [x, y]]) for y, x in zip(ys, xs)]  # every pixel a dot...
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):  # ...joined to its 8-neighbours
        joined = padded[ys + 1 + dy, xs + 1 + dx]
        lines += [np.array([[x, y], [x + dx, y + dy]]) for y, x in zip(ys[joined], xs[joined])]
    scale_x, scale_y = w / small.shape[1], h / small.shape[0]
    lines = [(line + 0.5) * (scale_x, scale_y) for line in lines]
    return draw_strokes(lines, w, h, pen, supersample=2 if pen >= 4 else 4)


# ----------------------------------------------------------------------------- paper, pens and light
# Colours are RGB floats in [0, 1]; a sheet is an (H, W, 3) float32 array.


def paper(h: int, w: int, rng: np.random.Generator, colour=(1.0, 1.0, 1.0), grain: float = 0.01) -> np.ndarray:
    """A sheet of `colour` with fine grain (Gaussian, `grain` of full scale) and faint fibres."""
    fibres = Image.fromarray(noise(rng, (h // 3 + 1, w // 3 + 1)), "F").resize((w, h), Image.Resampling.BILINEAR)
    texture = grain * (noise(rng, (h, w)) + np.asarray(fibres))
    return np.asarray(colour, np.float32) * (1 + texture[..., None])


def noise(rng: np.random.Generator, shape, sigma: float = 1.0) -> np.ndarray:
    """Gaussian noise, float32."""
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)


def write(sheet: np.ndarray, ink: np.ndarray, colour) -> np.ndarray:
    """Ink of `colour` laid on the sheet as a filter: where coverage is 1 the sheet's light is
    multiplied by the ink's colour (so tinted paper tints the ink, as it does on paper)."""
    a = ink[..., None].astype(np.float32)
    return sheet * (1 - a + a * np.asarray(colour, np.float32))


def ramp(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A linear ramp from 0 to 1 across the image in a random direction: (H, W)."""
    t = rng.uniform(0, 2 * np.pi)
    y, x = np.ogrid[0:h, 0:w]
    r = (np.cos(t) * x / w + np.sin(t) * y / h).astype(np.float32)
    return (r - r.min()) / max(float(r.max() - r.min()), 1e-6)


def shadow(h: int, w: int, rng: np.random.Generator, depth: float, soft: float) -> np.ndarray:
    """A soft-edged shadow over part of the image (a hand or a phone between lamp and paper): a
    multiplicative field, 1 in the light and 1 - `depth` in the shade, the edge `soft` of the size wide."""
    y, x = (a.astype(np.float32) / max(h, w) for a in np.ogrid[0:h, 0:w])
    t = rng.uniform(0, 2 * np.pi)
    d = np.cos(t) * (x - rng.uniform(0.2, 0.8) * w / max(h, w)) + np.sin(t) * (y - rng.uniform(0.2, 0.8) * h / max(h, w))
    d += 0.05 * np.sin(x * rng.uniform(3, 9) + rng.uniform(0, 6))  # not a ruler's edge
    return 1 - depth / (1 + np.exp(-d / soft))


def rules(sheet: np.ndarray, rng: np.random.Generator, spacing: float, colour, width: float,
          vertical: bool = False) -> np.ndarray:
    """Printed rule lines (`spacing` px apart, `width` px thick, tilted by up to half a degree)
    across the sheet: horizontal, or vertical with `vertical`."""
    h, w = sheet.shape[:2]
    lines, start = [], rng.uniform(0, spacing)
    tilt = np.tan(np.radians(rng.uniform(-0.5, 0.5)))
    for p in np.arange(start, (w if vertical else h) + spacing, spacing):
        a, b = (p, p + tilt * h) if vertical else (p, p + tilt * w)
        lines.append(np.array([[a, 0], [b, h]]) if vertical else np.array([[0, a], [w, b]]))
    return write(sheet, draw_strokes(lines, w, h, width, supersample=2), colour)


def to_image(sheet: np.ndarray) -> Image.Image:
    """A float sheet -> an 8-bit PIL image (gray when it has no colour)."""
    a = np.clip(np.round(sheet * 255), 0, 255).astype(np.uint8)
    if a.ndim == 3 and np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2]):
        a = a[..., 0]
    return Image.fromarray(a, "L" if a.ndim == 2 else "RGB")


def dark_pen(rng: np.random.Generator) -> np.ndarray:
    """A ballpoint or felt tip: nearly black, a little blue or brown."""
    return np.clip(rng.uniform(0.03, 0.2) + rng.normal(0, 0.04, 3), 0, 1)


def white_paper(rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.uniform(0.9, 1.0) - np.array([0, 0, rng.uniform(0, 0.05)]), 0, 1)


def on_paper(canvas: Canvas, rng: np.random.Generator, pen=None, colour=None, grain: float = 0.01) -> np.ndarray:
    """The canvas's ink written with `pen` (default: a dark pen) on paper of `colour` (default: white)."""
    h, w = canvas.shape
    sheet = paper(h, w, rng, white_paper(rng) if colour is None else colour, grain)
    return write(sheet, canvas.ink, dark_pen(rng) if pen is None else pen)


# ----------------------------------------------------------------------------- the conditions
# Each paints a canvas: (Canvas, rng) -> (PIL image, each glyph's box in the image's pixels).


def _tall(canvas: Canvas) -> float:
    """The typical glyph height on the canvas, px."""
    return float(np.median([b[3] - b[1] for b in canvas.boxes])) if canvas.boxes else float(canvas.shape[0])


def _refit(ink: np.ndarray, boxes: list[Box], grow: int) -> list[Box]:
    """Each box re-measured on redrawn ink, looking up to `grow` px beyond it."""
    h, w = ink.shape
    out = []
    for left, top, right, bottom in boxes:
        x0, y0 = max(left - grow, 0), max(top - grow, 0)
        part = ink[y0 : min(bottom + grow, h), x0 : min(right + grow, w)]
        b = ink_box(part, 0.5)
        out.append((b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0))
    return out


def as_mnist(canvas: Canvas, rng: np.random.Generator):
    return Image.fromarray(np.round(canvas.ink * 255).astype(np.uint8), "L"), canvas.boxes


def clean_paper(canvas: Canvas, rng: np.random.Generator):
    return to_image(on_paper(canvas, rng)), canvas.boxes


def low_resolution(n: int):
    """Scanned so that the glyph field is `n` px tall, 17 gray levels, then enlarged back with a
    smooth (bilinear, bicubic) or blocky (nearest) filter: soft gray strokes."""
    filters = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.NEAREST)

    def paint(canvas: Canvas, rng: np.random.Generator):
        h, w = canvas.shape
        k = n / min(h, w)
        small = np.round(resize(canvas.ink, max(1, round(w * k)), max(1, round(h * k))) * 16) / 16
        how = filters[rng.choice(3, p=[0.4, 0.4, 0.2])]
        big = np.clip(np.asarray(Image.fromarray(small, "F").resize((w, h), how), np.float32), 0, 1)
        light, dark = rng.uniform(0.85, 1.0), rng.uniform(0.0, 0.35)
        gray = light + (dark - light) * big
        if rng.random() < 0.2:  # stored as light strokes on a dark ground, as some datasets are
            gray = 1 - gray
        return to_image(gray), canvas.boxes

    return paint


def soft_gray(canvas: Canvas, rng: np.random.Generator):
    """Out-of-focus or heavily smoothed: blurred gray strokes on gray paper."""
    h, w = canvas.shape
    ink = blur(canvas.ink, rng.uniform(0.02, 0.045) * max(h, w))
    ink = ink / max(float(ink.max()), 1e-6)  # a scanner's gain keeps the darkest stroke dark
    level = rng.uniform(0.8, 0.95)
    sheet = paper(h, w, rng, (level, level, level), 0.008)
    return to_image(write(sheet, ink, np.full(3, 1 - rng.uniform(0.35, 0.6)))), canvas.boxes


def faint_pencil(canvas: Canvas, rng: np.random.Generator):
    """A hard pencil pressed lightly: strokes 12-30% darker than the paper, grainy."""
    h, w = canvas.shape
    grain = rng.random((h, w), dtype=np.float32)
    cover = canvas.ink * rng.uniform(0.15, 0.37) * (0.4 + 1.2 * grain)
    level = rng.uniform(0.88, 0.97)
    sheet = paper(h, w, rng, (level, level, level * 0.98), 0.012)
    return to_image(write(sheet, np.clip(cover, 0, 1), (0.2, 0.2, 0.22))), canvas.boxes


def pen_width(low: float, high: float, relative: bool):
    """Redrawn with a round pen `low`..`high` wide: in px, or with `relative` in glyph heights."""
    def paint(canvas: Canvas, rng: np.random.Generator):
        pen = rng.uniform(low, high) * (_tall(canvas) if relative else 1.0)
        ink = restroke(canvas, pen)
        redrawn = Canvas(ink, _refit(ink, canvas.boxes, int(pen) + 2))
        return to_image(on_paper(redrawn, rng)), redrawn.boxes

    return paint


PAPERS = {"white": (1.0, 1.0, 1.0), "cream": (1.0, 0.96, 0.82), "yellow": (1.0, 0.95, 0.62),
          "pink": (1.0, 0.88, 0.9), "blue": (0.84, 0.91, 1.0), "green": (0.87, 1.0, 0.87), "gray": (0.82, 0.82, 0.82)}


def colour_pen(low, high, papers: tuple[str, ...]):
    """A coloured pen (each channel drawn from `low`..`high`) on one of `papers`."""
    def paint(canvas: Canvas, rng: np.random.Generator):
        pen = rng.uniform(low, high)
        sheet = np.asarray(PAPERS[papers[rng.integers(len(papers))]]) * rng.uniform(0.92, 1.0)
        return to_image(on_paper(canvas, rng, pen, sheet)), canvas.boxes

    return paint


def phone_photo(canvas: Canvas, rng: np.random.Generator):
    """Paper photographed under a lamp: light falling off across the sheet, a soft shadow, a
    colour cast and sensor noise."""
    h, w = canvas.shape
    sheet = on_paper(canvas, rng, grain=0.006)
    light = (1 - rng.uniform(0.3, 0.55) * ramp(h, w, rng)) * shadow(h, w, rng, rng.uniform(0.25, 0.5),
                                                                   rng.uniform(0.01, 0.08))
    sheet = sheet * (light[..., None] * (1 + noise(rng, 3, 0.04))) + noise(rng, (h, w, 1), 0.012)
    return to_image(sheet), canvas.boxes


def ruled(squared: bool):
    """Notebook paper: rule lines a little more than a digit apart, or squares about a third of one."""
    def paint(canvas: Canvas, rng: np.random.Generator):
        h, w = canvas.shape
        tall = _tall(canvas)
        sheet = paper(h, w, rng, white_paper(rng))
        colour = (rng.uniform(0.5, 0.8), rng.uniform(0.65, 0.88), rng.uniform(0.88, 1.0))
        if rng.random() < 0.3:
            colour = np.full(3, rng.uniform(0.55, 0.8))  # gray print
        pen = rng.uniform(1.0, 2.5)
        spacing = tall / (rng.uniform(1.8, 3.5) if squared else rng.uniform(0.6, 1.1))
        sheet = rules(sheet, rng, spacing, colour, pen)
        if squared:
            sheet = rules(sheet, rng, spacing, colour, pen, vertical=True)
        elif rng.random() < 0.3:  # the red margin line
            x = rng.uniform(0.05, 0.2) * w
            sheet = write(sheet, draw_strokes([np.array([[x, 0], [x, h]])], w, h, pen + 0.5), (0.95, 0.45, 0.5))
        return to_image(write(sheet, canvas.ink, dark_pen(rng))), canvas.boxes

    return paint


def _union(boxes: list[Box], h: int, w: int) -> Box:
    if not boxes:
        return w // 2, h // 2, w // 2, h // 2
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def scan_border(canvas: Canvas, rng: np.random.Generator):
    """A scanner's dark margin beyond the sheet on one to three sides (never over the writing),
    its inner edge a little askew, the paper shaded next to it."""
    h, w = canvas.shape
    sheet = on_paper(canvas, rng)
    left, top, right, bottom = _union(canvas.boxes, h, w)
    room = {"left": left / w, "top": top / h, "right": (w - right) / w, "bottom": (h - bottom) / h}
    sides = [s for s, r in room.items() if r >= 0.04] or [max(room, key=room.get)]
    chosen = rng.choice(sides, size=int(rng.integers(1, min(3, len(sides)) + 1)), replace=False)
    y, x = (a.astype(np.float32) for a in np.ogrid[0:h, 0:w])
    depth = {"left": x / w, "right": (w - 1 - x) / w, "top": y / h, "bottom": (h - 1 - y) / h}
    along = {"left": y / h, "right": y / h, "top": x / w, "bottom": x / w}
    for side in chosen:
        width = rng.uniform(0.02, max(0.021, min(0.12, room[side] - 0.01)))
        edge = width + rng.uniform(-0.01, 0.01) * (along[side] - 0.5)  # askew
        scale = w if side in ("left", "right") else h
        band = np.clip((edge - depth[side]) * scale + 0.5, 0, 1)[..., None]  # anti-aliased edge
        shade = 1 - 0.25 * np.exp(-np.maximum(depth[side] - edge, 0) * scale / (0.02 * scale + 1))[..., None]
        dark = rng.uniform(0.0, 0.2) + noise(rng, (h, w, 1), 0.02)
        sheet = (sheet * shade) * (1 - band) + dark * band
    return to_image(sheet), canvas.boxes


def _rotate_boxes(boxes: list[Box], angle: float, centre: tuple[float, float], new_centre: tuple[float, float],
                  dx: float = 0.0, dy: float = 0.0) -> list[Box]:
    """Boxes after a rotation by `angle` degrees (counter-clockwise, as Pillow's) about `centre`,
    moved so that `centre` lands on `new_centre` + (dx, dy): the rotated corners' boxes."""
    t = np.radians(angle)
    c, s = np.cos(t), np.sin(t)
    out = []
    for left, top, right, bottom in boxes:
        xs = np.array([left, right, right, left], np.float64) - centre[0]
        ys = np.array([top, top, bottom, bottom], np.float64) - centre[1]
        rx, ry = c * xs + s * ys + new_centre[0] + dx, -s * xs + c * ys + new_centre[1] + dy
        out.append((int(np.floor(rx.min())), int(np.floor(ry.min())), int(np.ceil(rx.max())), int(np.ceil(ry.max()))))
    return out


def _rotate(a: np.ndarray, angle: float) -> np.ndarray:
    """A float (H, W) or (H, W, C) array rotated by `angle` degrees, the canvas grown to hold it all."""
    if a.ndim == 3:
        return np.stack([_rotate(a[..., i], angle) for i in range(a.shape[2])], -1)
    return np.asarray(Image.fromarray(a.astype(np.float32), "F").rotate(
        angle, Image.Resampling.BICUBIC, expand=True), np.float32)


def rotated(canvas: Canvas, rng: np.random.Generator):
    """The paper turned a little: the writing rotated by 4-12 degrees either way."""
    h, w = canvas.shape
    angle = rng.choice([-1, 1]) * rng.uniform(4, 12)
    ink = np.clip(_rotate(canvas.ink, angle), 0, 1)
    boxes = _rotate_boxes(canvas.boxes, angle, (w / 2, h / 2), (ink.shape[1] / 2, ink.shape[0] / 2))
    return to_image(on_paper(Canvas(ink, boxes), rng)), boxes


def dark_table(canvas: Canvas, rng: np.random.Generator):
    """The sheet photographed lying on a dark table, turned a few degrees, the table all round it."""
    h, w = canvas.shape
    angle = rng.uniform(-6, 6)
    sheet = _rotate(on_paper(canvas, rng, grain=0.006), angle)
    cover = np.clip(_rotate(np.ones((h, w), np.float32), angle), 0, 1)[..., None]
    rh, rw = cover.shape[:2]
    th, tw = int(rh * rng.uniform(1.15, 1.6)), int(rw * rng.uniform(1.15, 1.6))
    y0, x0 = int(rng.integers(0, th - rh + 1)), int(rng.integers(0, tw - rw + 1))
    wood = np.asarray(Image.fromarray(noise(rng, (th // 2 + 1, tw // 8 + 1)), "F").resize(
        (tw, th), Image.Resampling.BILINEAR), np.float32)
    table = (rng.uniform(0.08, 0.3) * np.array([1.0, rng.uniform(0.75, 1.0), rng.uniform(0.55, 1.0)])
             * (1 + 0.15 * wood[..., None]))
    table[y0 : y0 + rh, x0 : x0 + rw] = table[y0 : y0 + rh, x0 : x0 + rw] * (1 - cover) + sheet * cover
    table *= (1 - rng.uniform(0.1, 0.35) * ramp(th, tw, rng))[..., None]
    table += noise(rng, (th, tw, 1), 0.012)
    boxes = _rotate_boxes(canvas.boxes, angle, (w / 2, h / 2), (rw / 2, rh / 2), x0, y0)
    return to_image(table), boxes


def frame_box(canvas: Canvas, rng: np.random.Generator):
    """A box of a printed form, cut out along its frame: the frame runs round the image edge."""
    h, w = canvas.shape
    sheet = paper(h, w, rng, white_paper(rng))
    i = float(rng.integers(0, 4)) + 0.5
    rect = np.array([[i, i], [w - i, i], [w - i, h - i], [i, h - i], [i, i]])
    pen = rng.uniform(1.0, max(1.5, 0.035 * min(h, w)))
    printed = [dark_pen(rng), np.array([0.2, 0.3, 0.7]), np.array([0.85, 0.3, 0.3])][rng.choice(3, p=[0.6, 0.2, 0.2])]
    sheet = write(sheet, draw_strokes([rect], w, h, pen), printed)
    return to_image(write(sheet, canvas.ink, dark_pen(rng))), canvas.boxes


def speckle(canvas: Canvas, rng: np.random.Generator):
    """A dusty scan: dark specks, salt-and-pepper pixels and grain all over."""
    h, w = canvas.shape
    sheet = on_paper(canvas, rng)
    n = int(rng.integers(20, 120))
    dots = [np.array([[x, y], [x, y]]) for x, y in zip(rng.uniform(0, w, n), rng.uniform(0, h, n))]
    specks = draw_strokes(dots[: n // 2], w, h, 1.5) + draw_strokes(dots[n // 2 :], w, h, rng.uniform(2, 4))
    sheet = write(sheet, np.clip(specks, 0, 1), dark_pen(rng))
    p = rng.uniform(0.002, 0.02)
    u = rng.uniform(0, 1, (h, w))
    sheet[u < p / 2] = rng.uniform(0.0, 0.2)  # pepper
    sheet[u > 1 - p / 2] = 1.0  # salt
    return to_image(sheet + noise(rng, (h, w, 1), rng.uniform(0.01, 0.04))), canvas.boxes


def _page(size=(200, 400), fill=(0.35, 0.7)) -> Layout:
    return Layout("page", size, fill)


# The registry: name -> Condition, in the order tables list them.
CONDITIONS: dict[str, Condition] = {c.name: c for c in [
    Condition("as_mnist", "the raw 28x28 digit saved as a PNG, white on black", Layout("raw"), as_mnist),
    Condition("clean_paper", "dark pen on white paper, scanned", _page(), clean_paper),
    Condition("lowres_8", "cut tightly from a form, scanned at 8x8 and enlarged",
              Layout("tight", (64, 256), (0.0, 0.06), square=True), low_resolution(8)),
    Condition("lowres_12", "cut tightly from a form, scanned at 12x12 and enlarged",
              Layout("tight", (64, 256), (0.0, 0.06), square=True), low_resolution(12)),
    Condition("lowres_16", "cut tightly from a form, scanned at 16x16 and enlarged",
              Layout("tight", (64, 256), (0.0, 0.06), square=True), low_resolution(16)),
    Condition("soft_gray", "blurred gray strokes filling the frame", Layout("tight", (80, 240), (0.0, 0.08)),
              soft_gray),
    Condition("faint_pencil", "a hard pencil pressed lightly", _page((250, 450), (0.4, 0.8)), faint_pencil),
    Condition("very_thick", "a marker: strokes a quarter of the digit's height wide", _page(),
              pen_width(0.17, 0.25, relative=True)),
    Condition("very_thin", "a fine pen on a big page: strokes 1-2.5 px wide", _page((300, 500), (0.45, 0.8)),
              pen_width(1.0, 2.5, relative=False)),
    Condition("blue_pen", "blue ballpoint on white paper, JPEG", _page(),
              colour_pen((0.05, 0.1, 0.45), (0.25, 0.3, 0.75), ("white",)), jpeg=(80, 95)),
    Condition("red_pen_tinted", "red pen on cream, yellow or pink paper", _page(),
              colour_pen((0.7, 0.05, 0.1), (0.9, 0.2, 0.25), ("white", "cream", "yellow", "pink"))),
    Condition("green_pen_tinted", "green pen on blue, green, gray or cream paper", _page(),
              colour_pen((0.05, 0.4, 0.15), (0.2, 0.6, 0.3), ("blue", "green", "gray", "cream"))),
    Condition("phone_shadow", "phone photo: light falling off across the sheet and a shadow",
              _page((700, 1100), (0.2, 0.5)), phone_photo, jpeg=(70, 92)),
    Condition("lined_paper", "written on lined notebook paper", _page((300, 500), (0.3, 0.6)), ruled(False)),
    Condition("squared_paper", "written on squared (graph) paper", _page((300, 500), (0.3, 0.6)), ruled(True)),
    Condition("scan_border", "scanned with the scanner's dark margin showing", _page((300, 500), (0.3, 0.6)),
              scan_border),
    Condition("dark_table", "the sheet photographed on a dark table", _page((350, 650), (0.25, 0.55)), dark_table,
              jpeg=(75, 92)),
    Condition("frame_box", "a box of a form, its frame at the image edge", Layout("tight", (80, 200), (0.06, 0.3)),
              frame_box),
    Condition("speckle", "a dusty scan: specks, salt-and-pepper and grain", _page((250, 450), (0.35, 0.7)), speckle),
    Condition("jpeg_low", "a small JPEG at quality 5-20", _page((150, 350)), clean_paper, jpeg=(5, 20)),
    Condition("rotated", "the paper turned by 4-12 degrees", _page(), rotated),
]}


# ----------------------------------------------------------------------------- rendering


def get_condition(condition: str | Condition) -> Condition:
    if isinstance(condition, Condition):
        return condition
    try:
        return CONDITIONS[condition]
    except KeyError:
        raise ValueError(f"unknown condition {condition!r}; known: {', '.join(CONDITIONS)}") from None


def encode(im: Image.Image, condition: Condition, rng: np.random.Generator) -> tuple[bytes, str]:
    """The image as the condition stores it: (bytes, file suffix)."""
    buf = io.BytesIO()
    if condition.jpeg:
        im.save(buf, "JPEG", quality=int(rng.integers(condition.jpeg[0], condition.jpeg[1] + 1)))
        return buf.getvalue(), ".jpg"
    im.save(buf, "PNG", compress_level=1)
    return buf.getvalue(), ".png"


def render(canvas: Canvas, condition: str | Condition, rng: np.random.Generator,
           field: int | None = None) -> tuple[bytes, str, list[Box]]:
    """Glyph ink (one field, or a line from `compose_line` with glyph fields `field` px tall)
    laid out and painted as `condition` says: (encoded bytes, suffix, each glyph's box in the image)."""
    c = get_condition(condition)
    placed = place(canvas, c.layout, rng, field)
    im, boxes = c.paint(placed, rng)
    data, suffix = encode(im, c, rng)
    return data, suffix, boxes


def render_glyph(glyph: np.ndarray, condition: str | Condition, rng: np.random.Generator) -> tuple[bytes, str]:
    """A glyph (square field, float in [0, 1]) rendered under `condition`: (encoded bytes, suffix)."""
    return render(Canvas(np.asarray(glyph, np.float32), [ink_box(glyph)]), condition, rng)[:2]


def render_digit(digit28: np.ndarray, condition: str | Condition, rng: np.random.Generator) -> tuple[bytes, str]:
    """An MNIST digit ((28, 28) uint8, white on black) rendered under `condition`: (bytes, suffix)."""
    return render_glyph(glyph_of(digit28), condition, rng)


def render_line(digits28: list[np.ndarray], condition: str | Condition, rng: np.random.Generator,
                gap: tuple[float, float] = (-0.3, 0.6), size_jitter: float = 0.12,
                baseline_jitter: float = 0.08) -> tuple[bytes, str, list[Box]]:
    """Several MNIST digits written in one line (see `compose_line` for `gap` and the jitters) and
    rendered under `condition`: (bytes, suffix, each digit's box in the image's pixels)."""
    c = get_condition(condition)
    strip = compose_line([glyph_of(d) for d in digits28], rng, gap, size_jitter, baseline_jitter)
    return render(strip, replace(c, layout=replace(c.layout, square=False)), rng, field=FIELD)


# ----------------------------------------------------------------------------- shapes that are not digits

NON_DIGITS = ("dot", "blob", "frame", "scribble", "letter_font", "letter_hand")
LETTERS = "AHKMWX"  # letters that resemble no digit
SKELETONS = {  # each letter's strokes in a unit box, x to the right, y down
    "A": [[(0, 1), (0.5, 0), (1, 1)], [(0.22, 0.62), (0.78, 0.62)]],
    "H": [[(0, 0), (0, 1)], [(1, 0), (1, 1)], [(0, 0.5), (1, 0.5)]],
    "K": [[(0, 0), (0, 1)], [(1, 0), (0, 0.6)], [(0.3, 0.42), (1, 1)]],
    "M": [[(0, 1), (0, 0), (0.5, 0.65), (1, 0), (1, 1)]],
    "W": [[(0, 0), (0.25, 1), (0.5, 0.3), (0.75, 1), (1, 0)]],
    "X": [[(0, 0), (1, 1)], [(1, 0), (0, 1)]],
}
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSerif-Italic.ttf")


def _fonts() -> list[Path | None]:
    """DejaVu fonts shipped with matplotlib (found without importing it), then Pillow's own (None)."""
    spec = find_spec("matplotlib")
    folder = Path(spec.submodule_search_locations[0]) / "mpl-data" / "fonts" / "ttf" if spec else None
    return [folder / f for f in FONT_FILES if folder and (folder / f).exists()] + [None]


def fit_field(ink: np.ndarray, field: int) -> np.ndarray:
    """Ink cropped to its box and scaled, aspect kept, so its longer side fills 20/28 of a square
    field `field` px wide, centred: a glyph."""
    left, top, right, bottom = ink_box(ink, 0.05)
    k = field * GLYPH / FIELD / max(right - left, bottom - top)
    w, h = max(1, round((right - left) * k)), max(1, round((bottom - top) * k))
    out = np.zeros((field, field), np.float32)
    y, x = (field - h) // 2, (field - w) // 2
    out[y : y + h, x : x + w] = resize(ink[top:bottom, left:right], w, h, sharp=False)
    return out


def _smooth_path(points: np.ndarray, per: int = 8) -> np.ndarray:
    """A Catmull-Rom curve through (N, 2) points, `per` samples per span."""
    p = np.concatenate([points[:1], points, points[-1:]])
    t = np.linspace(0, 1, per, endpoint=False)[:, None]
    spans = [0.5 * (2 * p[i] + (-p[i - 1] + p[i + 1]) * t + (2 * p[i - 1] - 5 * p[i] + 4 * p[i + 1] - p[i + 2]) * t**2
                    + (-p[i - 1] + 3 * p[i] - 3 * p[i + 1] + p[i + 2]) * t**3) for i in range(1, len(p) - 2)]
    return np.concatenate(spans + [points[-1:]])


def _hand_letter(letter: str, rng: np.random.Generator, field: int) -> np.ndarray:
    """A letter's skeleton written by a hand: wobbly points, a slant, its own width and pen."""
    g = field * GLYPH / FIELD
    aspect = rng.uniform(0.8, 1.3) if letter in "MW" else rng.uniform(0.55, 1.0)
    g *= 0.8  # drawn a little smaller than the field's box, then fitted to it
    slant = rng.uniform(-0.25, 0.25)
    lines = []
    for stroke in SKELETONS[letter]:
        p = np.asarray(stroke, np.float64)
        mids = (p[:-1] + p[1:]) / 2 + rng.normal(0, 0.025, (len(p) - 1, 2))  # a bend in every stroke
        p = np.insert(p, range(1, len(p)), mids, axis=0) + rng.normal(0, 0.03, (2 * len(p) - 1, 2))
        x = (p[:, 0] - 0.5) * aspect * g + slant * (0.5 - p[:, 1]) * g + field / 2
        lines.append(_smooth_path(np.stack([x, (p[:, 1] - 0.5) * g + field / 2], 1), 4))
    return fit_field(draw_strokes(lines, field, field, rng.uniform(0.08, 0.15) * g * 0.8), field)


def _font_letter(letter: str, rng: np.random.Generator, field: int) -> np.ndarray:
    fonts = _fonts()
    path = fonts[rng.integers(len(fonts))]
    font = ImageFont.truetype(str(path), field) if path else ImageFont.load_default(size=field)
    im = Image.new("L", (2 * field, 2 * field))
    ImageDraw.Draw(im).text((field // 2, field // 4), letter, fill=255, font=font)
    return fit_field(np.asarray(im, np.float32) / 255.0, field)


def non_digit(kind: str, rng: np.random.Generator, field: int = 112) -> np.ndarray:
    """A glyph ((field, field) float in [0, 1]) of something that is not a digit: `kind` is one of
    NON_DIGITS: a dot, a filled blob, an empty frame, a scribble, or a letter from LETTERS set
    in a font or written by hand."""
    g = field * GLYPH / FIELD
    c = field / 2 + rng.normal(0, 0.03 * field, 2)
    if kind == "dot":  # a pen touching the paper once, or a single click on the page
        return draw_strokes([np.array([c, c])], field, field, rng.uniform(0.06, 0.22) * g)
    if kind == "blob":  # a filled, lumpy shape
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        r = rng.uniform(0.25, 0.5) * g * (1 + sum(rng.uniform(0, 0.15) * np.cos(k * t + rng.uniform(0, 6))
                                                 for k in (2, 3, 4)))
        aspect = rng.uniform(0.6, 1.0)
        pts = [(4 * (c[0] + x), 4 * (c[1] + y)) for x, y in zip(r * np.cos(t) * aspect, r * np.sin(t))]
        im = Image.new("L", (4 * field, 4 * field))
        ImageDraw.Draw(im).polygon(pts, fill=255)
        return np.asarray(im.reduce(4), np.float32) / 255.0
    if kind == "frame":  # a box drawn by hand with nothing in it
        w, h = rng.uniform(0.5, 1.0, 2) * g / 2
        corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h], [-w, -h]]) + c + rng.normal(0, 0.02 * g, (5, 2))
        corners[-1] = corners[0]
        return draw_strokes([corners], field, field, rng.uniform(0.07, 0.13) * g)
    if kind == "scribble":  # a tangle of turns
        pts = c + rng.uniform(-0.5, 0.5, (int(rng.integers(8, 17)), 2)) * g
        return draw_strokes([_smooth_path(pts)], field, field, rng.uniform(0.06, 0.12) * g)
    if kind in ("letter_font", "letter_hand"):
        letter = LETTERS[rng.integers(len(LETTERS))]
        return _font_letter(letter, rng, field) if kind == "letter_font" else _hand_letter(letter, rng, field)
    raise ValueError(f"unknown non-digit kind {kind!r}; known: {', '.join(NON_DIGITS)}")
