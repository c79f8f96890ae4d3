"""Shapes that are not digits (dots, blobs, frames, scribbles, letters), as glyphs: for
checking that a reader says so rather than reading a digit into them."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .canvas import FIELD, GLYPH, ink_box, resize
from .strokes import draw_strokes, smooth_path


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


def font_files() -> list[Path | None]:
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
        lines.append(smooth_path(np.stack([x, (p[:, 1] - 0.5) * g + field / 2], 1), 4))
    return fit_field(draw_strokes(lines, field, field, rng.uniform(0.08, 0.15) * g * 0.8), field)


def in_font(letter: str, rng: np.random.Generator, field: int) -> np.ndarray:
    """A letter set in a font (DejaVu, or Pillow's own) as a glyph."""
    fonts = font_files()
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
        return draw_strokes([smooth_path(pts)], field, field, rng.uniform(0.06, 0.12) * g)
    if kind in ("letter_font", "letter_hand"):
        letter = LETTERS[rng.integers(len(LETTERS))]
        return in_font(letter, rng, field) if kind == "letter_font" else _hand_letter(letter, rng, field)
    raise ValueError(f"unknown non-digit kind {kind!r}; known: {', '.join(NON_DIGITS)}")
