"""Documents: a character in a printed form's box, and what else documents put around it:
a caption, an underline, a tick or a cross, a book's binding. (A register's cell: register.py.)"""

from __future__ import annotations

import numpy as np

from .canvas import Canvas, union_box
from .paper import dark_pen, noise, on_paper, paper, to_image, white_paper, write
from .printing import CAPTIONS, grow, printed, printers_ink, scanned, stamp
from .strokes import draw_strokes, smooth_path


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


def form_box(canvas: Canvas, rng: np.random.Generator):
    """A number written in a printed form's box, cut out with the box's caption ("No.", "Qty",
    "Age"...) in small print to its left or above it."""
    h, w = canvas.shape
    left, top, right, bottom = union_box(canvas.boxes, h, w)
    tall = max(bottom - top, 1)
    pad = round(rng.uniform(0.15, 0.45) * tall)
    caption = printed(CAPTIONS[rng.integers(len(CAPTIONS))], round(tall * rng.uniform(0.3, 0.55)))
    (th, tw), m, gap = caption.shape, int(rng.integers(2, 9)), int(rng.integers(2, max(3, pad + 2)))
    bw, bh = w + 2 * pad + round(rng.uniform(0, 0.8) * tall), h + 2 * pad
    if rng.random() < 0.5:  # beside the box, on its left
        bx, by, cx, cy = m + tw + gap, m + max(0, (th - bh) // 2), m, m + max(0, (bh - th) // 2)
        width, height = bx + bw + m, max(bh, th) + 2 * m
    else:  # above it
        bx, by, cx, cy = m, m + th + gap, m + int(rng.integers(0, max(1, bw // 3))), m
        width, height = max(bw, cx + tw - m) + 2 * m, by + bh + m
    x, y = bx + pad + int(rng.integers(0, bw - w - 2 * pad + 1)), by + pad
    placed = grow(canvas, x, y, width - w - x, height - h - y)
    rect = np.array([[bx, by], [bx + bw, by], [bx + bw, by + bh], [bx, by + bh], [bx, by]], np.float64)
    frame = draw_strokes([rect], width, height, rng.uniform(1.0, 2.2), supersample=2)
    sheet = write(paper(height, width, rng, white_paper(rng)), stamp(frame, caption, cx, cy), printers_ink(rng))
    return scanned(write(sheet, placed.ink, dark_pen(rng)), rng, gray=0.3, sharp=0.6), placed.boxes


def _room(canvas: Canvas, left: float, top: float, right: float, bottom: float) -> tuple[Canvas, int, int]:
    """The canvas grown so that the box (left, top, right, bottom) fits on it with 2 px to spare:
    (the grown canvas, how far it moved the old pixels right and down)."""
    h, w = canvas.shape
    dx, dy = max(0, int(np.ceil(2 - left))), max(0, int(np.ceil(2 - top)))
    more_x, more_y = max(0, int(np.ceil(right + 2 - w))), max(0, int(np.ceil(bottom + 2 - h)))
    return grow(canvas, dx, dy, more_x, more_y), dx, dy


def underlined(canvas: Canvas, rng: np.random.Generator):
    """The number underlined close under it: by hand with the writing's pen (a wobbly stroke),
    or printed (a straight rule, now and then doubled)."""
    h, w = canvas.shape
    left, top, right, bottom = union_box(canvas.boxes, h, w)
    tall = max(bottom - top, 1)
    y = bottom + rng.uniform(0.04, 0.2) * tall
    x0, x1 = left - rng.uniform(-0.05, 0.3) * tall, right + rng.uniform(-0.05, 0.3) * tall
    canvas, dx, dy = _room(canvas, x0, top, x1, y + 0.3 * tall)
    x0, x1, y, (h, w) = x0 + dx, x1 + dx, y + dy, canvas.shape
    pen = dark_pen(rng)
    if rng.random() < 0.6:  # by hand
        n = 6
        xs = np.linspace(x0, x1, n)
        ys = y + np.linspace(0, rng.uniform(-0.08, 0.08) * tall, n) + rng.normal(0, 0.02 * tall, n)
        line, colour = draw_strokes([smooth_path(np.stack([xs, ys], 1), 6)], w, h, rng.uniform(0.07, 0.13) * tall), pen
    else:
        rows = [y] + ([y + rng.uniform(2.5, 5)] if rng.random() < 0.2 else [])
        line = draw_strokes([np.array([[x0, r], [x1, r]]) for r in rows], w, h, rng.uniform(1.0, 2.2))
        colour = printers_ink(rng)
    sheet = write(paper(h, w, rng, white_paper(rng)), line, colour)
    return to_image(write(sheet, canvas.ink, pen) + noise(rng, (h, w, 1), 0.01)), canvas.boxes


def _mark(tick: bool, x: float, y: float, size: float, rng: np.random.Generator) -> list[np.ndarray]:
    """A tick or a cross `size` px tall, its top left at (x, y), drawn by a quick hand."""
    if tick:
        pts = [(0.0, 0.55), (0.35, 1.0), (1.0, rng.uniform(-0.1, 0.1))]
        strokes = [np.array(pts)]
    else:
        strokes = [np.array([(0.0, 0.0), (1.0, 1.0)]), np.array([(1.0, 0.0), (0.0, 1.0)])]
    return [(s + rng.normal(0, 0.04, s.shape)) * size * (rng.uniform(0.7, 1.1), 1.0) + (x, y) for s in strokes]


def tick_cross(canvas: Canvas, rng: np.random.Generator):
    """A small tick or cross beside the number, as a checker marks it: in the writer's pen,
    or in red or blue."""
    h, w = canvas.shape
    left, top, right, bottom = union_box(canvas.boxes, h, w)
    tall = max(bottom - top, 1)
    size, gap = rng.uniform(0.3, 0.7) * tall, rng.uniform(0.1, 0.6) * tall
    x = right + gap if rng.random() < 0.6 else left - gap - size
    y = (top + bottom) / 2 - size / 2 + rng.uniform(-0.3, 0.3) * tall
    canvas, dx, dy = _room(canvas, x, y, x + size, y + size)
    (h, w), pen = canvas.shape, dark_pen(rng)
    strokes = _mark(rng.random() < 0.5, x + dx, y + dy, size, rng)
    colour = [pen, np.array([0.8, 0.12, 0.15]), np.array([0.15, 0.2, 0.65])][rng.choice(3, p=[0.4, 0.35, 0.25])]
    marks = draw_strokes(strokes, w, h, rng.uniform(0.06, 0.12) * tall)
    sheet = write(paper(h, w, rng, white_paper(rng)), marks, colour)
    return to_image(write(sheet, canvas.ink, pen) + noise(rng, (h, w, 1), 0.01)), canvas.boxes


def binding_shadow(canvas: Canvas, rng: np.random.Generator):
    """A page of a bound book, scanned: the binding's shadow, dark at one edge and fading over
    12-45% of the page, which may reach the writing."""
    h, w = canvas.shape
    sheet = on_paper(canvas, rng)
    side = rng.choice(4, p=[0.4, 0.4, 0.1, 0.1])  # left, right, top, bottom
    y, x = (a.astype(np.float32) for a in np.ogrid[0:h, 0:w])
    depth = [x / w, (w - 1 - x) / w, y / h, (h - 1 - y) / h][side]
    reach = rng.uniform(0.12, 0.45)
    fade = np.clip(1 - depth / reach, 0, 1) ** rng.uniform(1.5, 3.0)
    shade = 1 - rng.uniform(0.45, 0.85) * fade
    return to_image(sheet * shade[..., None] + noise(rng, (h, w, 1), 0.012)), canvas.boxes
