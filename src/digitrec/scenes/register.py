"""A cell of a scanned register: a number written in one column of a ruled book, cropped out
along the column with whatever the crop caught of the rules, the neighbours' words and the
page's printed foot."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .canvas import Canvas, union_box
from .paper import write
from .printing import WORDS, fragment, grow, old_ink, old_paper, printed, printers_ink, scanned, stamp
from .strokes import draw_strokes


@dataclass(frozen=True)
class Cell:
    """Where things are in a register cell's crop, px."""
    height: int
    width: int
    left_rule: int  # x of the column's left rule (the margin before it is the neighbour's)
    right_rule: int
    top_rule: int  # y of the row's rule
    footer: int  # height of the band for a printed footer at the bottom (0: none)


def _cell(canvas: Canvas, rng: np.random.Generator) -> tuple[Cell, int, int]:
    """A cell for the ink: the number 35-60% of the crop's height mostly, 15-20% a fifth of the
    time; the rules at or near the edges. Returns the cell and where the ink goes (x, y)."""
    h, w = canvas.shape
    left, top, right, bottom = union_box(canvas.boxes, h, w)
    tall = max(bottom - top, 1)
    share = rng.uniform(0.15, 0.2) if rng.random() < 0.2 else rng.uniform(0.35, 0.6)
    height = max(round(tall / share), h + 4)
    inner = max(w + round(tall * rng.uniform(0.15, 1.2)), round(height * rng.uniform(0.6, 1.6)))
    margin_left, margin_right = (max(2, round(v * inner)) for v in rng.uniform(0, 0.18, 2))  # the rules in view
    top_rule = max(2, round(rng.uniform(0, 0.12) * height))
    footer = round(rng.uniform(0.1, 0.16) * height) if rng.random() < 0.3 else 0
    footer = min(footer, max(0, height - top_rule - h - 4))
    cell = Cell(height, inner + margin_left + margin_right, margin_left, margin_left + inner, top_rule, footer)
    x = margin_left + int(rng.integers(2, max(3, inner - w - 1)))
    y = top_rule + int(rng.integers(2, max(3, height - footer - top_rule - h - 1)))
    return cell, x, y


def _rules(cell: Cell, rng: np.random.Generator) -> np.ndarray:
    """The printed rules: the column's two verticals (one doubled now and then) and the row's
    top line, each a little tilted, running the crop's whole height or width."""
    h, w = cell.height, cell.width
    tilt = np.tan(np.radians(rng.uniform(-0.6, 0.6)))
    lines = []
    for x in (float(cell.left_rule), float(cell.right_rule)):
        lines.append(np.array([[x, 0.0], [x + tilt * h, h]]))
        if rng.random() < 0.2:  # a double rule
            x2 = x + rng.choice([-1, 1]) * rng.uniform(2.5, 4.5)
            lines.append(np.array([[x2, 0.0], [x2 + tilt * h, h]]))
    y = float(cell.top_rule)
    lines.append(np.array([[0.0, y], [w, y - tilt * w]]))
    return draw_strokes(lines, w, h, rng.uniform(1.3, 2.8), supersample=2)


def _neighbours(cell: Cell, tall: int, pen: float, rng: np.random.Generator) -> np.ndarray:
    """The neighbours' words where the crop caught them: the ends of words in the columns to
    the left and right (cut at the crop's edge), the feet of the row above's."""
    h, w = cell.height, cell.width
    ink = np.zeros((h, w), np.float32)
    for room, side in ((cell.left_rule - 2, "left"), (w - cell.right_rule - 3, "right")):
        if room >= 4 and rng.random() < 0.7:
            piece = fragment(rng, round(tall * rng.uniform(0.6, 1.1)), pen)
            y = int(rng.integers(cell.top_rule, max(cell.top_rule + 1, h - piece.shape[0] // 2)))
            stamp(ink, piece, room - piece.shape[1] if side == "left" else w - room, y)  # its end, or its start
    if cell.top_rule >= 4 and rng.random() < 0.5:
        piece = fragment(rng, round(tall * rng.uniform(0.7, 1.1)), pen)
        stamp(ink, piece, int(rng.integers(-piece.shape[1] // 2, w - 4)), cell.top_rule - piece.shape[0] + 2)
    return ink


def _footer(cell: Cell, rng: np.random.Generator) -> np.ndarray:
    """A line of print at the page's foot, cut by the crop's bottom edge now and then."""
    ink = np.zeros((cell.height, cell.width), np.float32)
    text = printed(" ".join(WORDS[i] for i in rng.integers(len(WORDS), size=6)), round(cell.footer * 0.8))
    y = cell.height - text.shape[0] + int(rng.integers(0, max(1, text.shape[0] // 3)))
    return stamp(ink, text, int(rng.integers(-text.shape[1] // 2, max(1, cell.width // 3))), y)


def _full_stop(canvas: Canvas, cell: Cell, tall: int, pen: float, rng: np.random.Generator) -> np.ndarray:
    """A full stop after the number, on its baseline, where the column has room for it."""
    ink = np.zeros_like(canvas.ink)
    right, bottom = max(b[2] for b in canvas.boxes), canvas.boxes[-1][3]
    x, y = right + rng.uniform(0.08, 0.3) * tall + pen, bottom - pen / 2 - rng.uniform(0, 0.08) * tall
    if x + pen < cell.right_rule - 2:
        ink = draw_strokes([np.array([[x, y], [x, y]])], cell.width, cell.height, pen * rng.uniform(1.0, 1.6))
    return ink


def register_cell(canvas: Canvas, rng: np.random.Generator):
    """A number in a column cell of a scanned register: the column's rules at or near both
    edges and the row's rule at the top, the neighbours' words cut at the edges, a printed
    footer sometimes, a full stop after the number sometimes, on yellowed paper, scanned."""
    h, w = canvas.shape
    cell, x, y = _cell(canvas, rng)
    placed = grow(canvas, x, y, cell.width - w - x, cell.height - h - y)
    left, top, right, bottom = union_box(canvas.boxes, h, w)
    tall = max(bottom - top, 1)
    pen = max(1.0, rng.uniform(0.08, 0.14) * tall)
    sheet = old_paper(cell.height, cell.width, rng)
    printing = _rules(cell, rng)
    if cell.footer:
        printing = np.maximum(printing, _footer(cell, rng))
    sheet = write(sheet, printing, printers_ink(rng))
    ink = old_ink(rng)
    sheet = write(sheet, _neighbours(cell, tall, pen, rng), ink * rng.uniform(0.8, 1.2))
    if placed.boxes and rng.random() < 0.35:
        sheet = write(sheet, _full_stop(placed, cell, tall, pen, rng), ink)
    return scanned(write(sheet, placed.ink, ink), rng), placed.boxes
