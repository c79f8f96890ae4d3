"""Documents: a character in a printed form's box, and what else documents put around it."""

from __future__ import annotations

import numpy as np

from .canvas import Canvas
from .paper import dark_pen, paper, to_image, white_paper, write
from .strokes import draw_strokes


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
