"""Pen strokes: polylines drawn with a round pen, skeletons, and ink redrawn along them."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .canvas import Canvas, resize


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



def smooth_path(points: np.ndarray, per: int = 8) -> np.ndarray:
    """A Catmull-Rom curve through (N, 2) points, `per` samples per span."""
    p = np.concatenate([points[:1], points, points[-1:]])
    t = np.linspace(0, 1, per, endpoint=False)[:, None]
    spans = [0.5 * (2 * p[i] + (-p[i - 1] + p[i + 1]) * t + (2 * p[i - 1] - 5 * p[i] + 4 * p[i + 1] - p[i + 2]) * t**2
                    + (-p[i - 1] + 3 * p[i] - 3 * p[i + 1] + p[i + 2]) * t**3) for i in range(1, len(p) - 2)]
    return np.concatenate(spans + [points[-1:]])
