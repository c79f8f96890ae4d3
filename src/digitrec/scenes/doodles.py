"""Doodles: things people draw in a digit box that are not digits.

A smiley, a heart, a star, an arrow, a letter, a tick, a cross: each drawn by a hand (wobbly
strokes, a slant, a tilt, its own pen) or, for letters, set in a font, as a glyph the way
`scenes.non_digit` draws its shapes: (field, field) float ink in [0, 1], the shape filling the
central 20/28 of the field. The outlier bank (training/outliers.py) trains on them towards
equal probabilities, and benchmarks/nondigits.py measures how often the model still answers
`ok` to them. Letters that a hand makes look like digits are left out (O I l S Z B G q g:
0, 1, 5, 2, 8, 6, 9). numpy and Pillow only.
"""

from __future__ import annotations

import numpy as np

from .canvas import FIELD, GLYPH
from .nondigits import fit_field, in_font
from .strokes import draw_strokes, smooth_path

DOODLES = ("smiley", "heart", "star", "arrow", "letter", "tick", "cross")
UPPER = "ACDEFHJKLMNPQRTUVWXY"  # A-Z less O I S Z B G
LOWER = "acdefhkmnprtuvwxy"  # lower case less those like digits (b g i j l o q s z)


def _arc(cx: float, cy: float, r: float, start: float, stop: float, n: int = 12, ry: float | None = None) -> list:
    """Points on an elliptic arc, angles in degrees counter-clockwise from the right (y down)."""
    a = np.deg2rad(np.linspace(start, stop, n))
    return list(zip(cx + r * np.cos(a), cy - (ry or r) * np.sin(a)))


SKELETONS = {  # each letter's strokes in a unit box, x to the right, y down
    "A": [[(0, 1), (0.5, 0), (1, 1)], [(0.22, 0.62), (0.78, 0.62)]],
    "C": [_arc(0.55, 0.5, 0.5, 50, 310)],
    "D": [[(0, 0), (0, 1)], [(0, 0)] + _arc(0.2, 0.5, 0.8, 60, -60, 9, 0.5) + [(0, 1)]],
    "E": [[(1, 0), (0, 0), (0, 1), (1, 1)], [(0, 0.5), (0.7, 0.5)]],
    "F": [[(1, 0), (0, 0), (0, 1)], [(0, 0.48), (0.7, 0.48)]],
    "H": [[(0, 0), (0, 1)], [(1, 0), (1, 1)], [(0, 0.5), (1, 0.5)]],
    "J": [[(0.2, 0), (1, 0)], [(0.65, 0), (0.65, 0.75)] + _arc(0.35, 0.75, 0.3, 0, -160, 8, 0.25)],
    "K": [[(0, 0), (0, 1)], [(1, 0), (0, 0.6)], [(0.3, 0.42), (1, 1)]],
    "L": [[(0, 0), (0, 1), (0.85, 1)]],
    "M": [[(0, 1), (0, 0), (0.5, 0.65), (1, 0), (1, 1)]],
    "N": [[(0, 1), (0, 0), (1, 1), (1, 0)]],
    "P": [[(0, 1), (0, 0), (0.6, 0)] + _arc(0.6, 0.25, 0.3, 90, -90, 8, 0.25) + [(0, 0.5)]],
    "Q": [_arc(0.5, 0.47, 0.5, 0, 360, 20, 0.47), [(0.6, 0.72), (1.05, 1.08)]],
    "R": [[(0, 1), (0, 0), (0.6, 0)] + _arc(0.6, 0.25, 0.3, 90, -90, 8, 0.25) + [(0, 0.5)], [(0.35, 0.5), (1, 1)]],
    "T": [[(0, 0), (1, 0)], [(0.5, 0), (0.5, 1)]],
    "U": [[(0, 0), (0, 0.6)] + _arc(0.5, 0.6, 0.5, 180, 360, 10, 0.4) + [(1, 0)]],
    "V": [[(0, 0), (0.5, 1), (1, 0)]],
    "W": [[(0, 0), (0.25, 1), (0.5, 0.3), (0.75, 1), (1, 0)]],
    "X": [[(0, 0), (1, 1)], [(1, 0), (0, 1)]],
    "Y": [[(0, 0), (0.5, 0.5), (1, 0)], [(0.5, 0.5), (0.5, 1)]],
}


def _star(rng: np.random.Generator) -> list:
    """A five-pointed star in one stroke (a pentagram) or as its outline."""
    a = np.deg2rad(90 + 72 * np.arange(6))
    if rng.random() < 0.5:
        order = [0, 2, 4, 1, 3, 0]
        return [[(0.5 + 0.5 * np.cos(a[i]), 0.5 - 0.5 * np.sin(a[i])) for i in order]]
    b = np.deg2rad(90 + 36 + 72 * np.arange(5))
    pts = []
    for i in range(5):
        pts += [(0.5 + 0.5 * np.cos(a[i]), 0.5 - 0.5 * np.sin(a[i])), (0.5 + 0.2 * np.cos(b[i]), 0.5 - 0.2 * np.sin(b[i]))]
    return [pts + pts[:1]]


def _arrow(rng: np.random.Generator) -> list:
    """An arrow: a shaft and a head, pointing any way (turned by the caller's tilt, too)."""
    turn = rng.choice([0, 90, 180, 270, 45, 135, 225, 315])
    c, s = np.cos(np.deg2rad(turn)), np.sin(np.deg2rad(turn))
    head = rng.uniform(0.2, 0.35)
    shape = [[(0, 0.5), (1, 0.5)], [(1 - head, 0.5 - head), (1, 0.5), (1 - head, 0.5 + head)]]
    return [[(0.5 + (x - 0.5) * c - (y - 0.5) * s, 0.5 + (x - 0.5) * s + (y - 0.5) * c) for x, y in line]
            for line in shape]


def shape_strokes(kind: str, rng: np.random.Generator) -> list:
    """A doodle's strokes, as lists of (x, y) points in a unit box (y down)."""
    if kind == "smiley":
        mouth = _arc(0.5, 0.52, 0.24, 200, 340, 9) if rng.random() < 0.8 else [(0.3, 0.7), (0.7, 0.7)]
        face = [_arc(0.5, 0.5, 0.5, 0, 360, 24)] if rng.random() < 0.85 else []
        return face + [[(0.35, 0.33), (0.35, 0.36)], [(0.65, 0.33), (0.65, 0.36)], mouth]
    if kind == "heart":
        t = np.linspace(0, 2 * np.pi, 30)
        x, y = 16 * np.sin(t) ** 3, 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        return [list(zip(0.5 + x / 34, 0.45 - y / 34))]
    if kind == "star":
        return _star(rng)
    if kind == "arrow":
        return _arrow(rng)
    if kind == "tick":
        return [[(0, 0.55), (0.3, 1), (1, 0)]]
    if kind == "cross":
        return [[(0, 0), (1, 1)], [(1, 0), (0, 1)]] if rng.random() < 0.5 else [[(0.5, 0), (0.5, 1)], [(0, 0.5), (1, 0.5)]]
    if kind == "letter":
        return SKELETONS[UPPER[rng.integers(len(UPPER))]]
    raise ValueError(f"unknown doodle {kind!r}; known: {', '.join(DOODLES)}")


def by_hand(strokes: list, rng: np.random.Generator, field: int) -> np.ndarray:
    """Strokes in a unit box drawn by a hand: wobbly points, bends, a slant, a tilt, an aspect and a pen
    of its own, fitted to the field as a glyph."""
    g = field * GLYPH / FIELD * 0.8  # drawn a little smaller than the field's box, then fitted to it
    aspect, slant, tilt = rng.uniform(0.75, 1.15), rng.uniform(-0.25, 0.25), np.deg2rad(rng.normal(0, 8))
    rot = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
    lines = []
    for stroke in strokes:
        p = np.asarray(stroke, np.float64)
        if len(p) <= 3:  # straight strokes bend a little in the middle
            mids = (p[:-1] + p[1:]) / 2 + rng.normal(0, 0.025, (len(p) - 1, 2))
            p = np.insert(p, range(1, len(p)), mids, axis=0)
        p = p + rng.normal(0, 0.02, p.shape)
        x = (p[:, 0] - 0.5) * aspect + slant * (0.5 - p[:, 1])
        xy = np.stack([x, p[:, 1] - 0.5], 1) @ rot.T * g + field / 2
        lines.append(smooth_path(xy, 3) if len(xy) > 2 else xy)
    return fit_field(draw_strokes(lines, field, field, rng.uniform(0.07, 0.14) * g), field)


def doodle(kind: str, rng: np.random.Generator, field: int = 112) -> np.ndarray:
    """A glyph ((field, field) float in [0, 1]) of the doodle `kind` (one of DOODLES); half of
    the letters are set in a font, upper or lower case, the rest written by hand."""
    if kind == "letter" and rng.random() < 0.5:
        letters = UPPER + LOWER
        return in_font(letters[rng.integers(len(letters))], rng, field)
    return by_hand(shape_strokes(kind, rng), rng, field)
