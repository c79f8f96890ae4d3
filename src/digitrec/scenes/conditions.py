"""The registry of real-world conditions, and rendering under them.

Rendering takes three reusable steps:
  layout  `place()` (canvas.py) puts the ink on a canvas at a size and position suited to the
          condition; `compose_line()` first sets several glyphs in a row.
  paint   the condition itself: (canvas, rng) -> (PIL image, each glyph's box in its pixels):
          paper, pen, light, rule lines, borders, noise... (paper.py, pens.py, damage.py,
          documents.py)
  encode  PNG, or JPEG at the condition's quality range.
`render_digit()` and `render_line()` do all three for any condition in `CONDITIONS`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
from PIL import Image

from .canvas import FIELD, Box, Canvas, Layout, compose_line, glyph_of, ink_box, place
from .damage import dark_table, low_resolution, phone_photo, rotated, scan_border, soft_gray, speckle
from .documents import binding_shadow, form_box, frame_box, tick_cross, underlined
from .paper import as_mnist, clean_paper, ruled
from .pens import colour_pen, faint_pencil, pen_width
from .register import register_cell


@dataclass(frozen=True)
class Condition:
    name: str
    help: str  # one line: what a person would have done to make such an image
    layout: Layout
    paint: Callable[[Canvas, np.random.Generator], tuple[Image.Image, list[Box]]]
    jpeg: tuple[int, int] | None = None  # quality range (inclusive) to save as JPEG; None: PNG


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
    # documents: the number among what forms and registers put around it
    Condition("register_cell", "a column cell of a scanned register: rules, neighbours' words, old paper",
              Layout("tight", (20, 56), (0.0, 0.04)), register_cell, jpeg=(75, 95)),
    Condition("form_box", "in a printed form's box, its caption beside or above it",
              Layout("tight", (24, 64), (0.02, 0.08)), form_box),
    Condition("underlined", "underlined close under it, by hand or printed", _page((150, 350)), underlined),
    Condition("tick_cross", "a checker's tick or cross beside it", _page((150, 350)), tick_cross),
    Condition("binding_shadow", "a bound book scanned: the binding's shadow at one edge", _page((200, 400)),
              binding_shadow),
]}
DOCUMENTS = ("register_cell", "form_box", "underlined", "tick_cross", "binding_shadow")  # the document conditions


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
