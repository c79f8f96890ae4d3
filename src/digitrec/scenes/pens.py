"""Pens: a faint pencil, a hairline or a marker, coloured pens on tinted paper."""

from __future__ import annotations

import numpy as np

from .canvas import Box, Canvas, glyph_height, ink_box
from .paper import PAPERS, on_paper, paper, to_image, write
from .strokes import restroke


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
        pen = rng.uniform(low, high) * (glyph_height(canvas) if relative else 1.0)
        ink = restroke(canvas, pen)
        redrawn = Canvas(ink, _refit(ink, canvas.boxes, int(pen) + 2))
        return to_image(on_paper(redrawn, rng)), redrawn.boxes

    return paint


def colour_pen(low, high, papers: tuple[str, ...]):
    """A coloured pen (each channel drawn from `low`..`high`) on one of `papers`."""
    def paint(canvas: Canvas, rng: np.random.Generator):
        pen = rng.uniform(low, high)
        sheet = np.asarray(PAPERS[papers[rng.integers(len(papers))]]) * rng.uniform(0.92, 1.0)
        return to_image(on_paper(canvas, rng, pen, sheet)), canvas.boxes

    return paint
