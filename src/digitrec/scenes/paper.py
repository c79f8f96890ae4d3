"""Paper, ink and light: the sheet a character is written on, and the plain conditions on it.

Colours are RGB floats in [0, 1]; a sheet is an (H, W, 3) float32 array. A condition's paint
function takes (Canvas, rng) and returns (PIL image, each glyph's box in the image's pixels).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .canvas import Canvas, glyph_height
from .strokes import draw_strokes


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


PAPERS = {"white": (1.0, 1.0, 1.0), "cream": (1.0, 0.96, 0.82), "yellow": (1.0, 0.95, 0.62),
          "pink": (1.0, 0.88, 0.9), "blue": (0.84, 0.91, 1.0), "green": (0.87, 1.0, 0.87), "gray": (0.82, 0.82, 0.82)}


# ----------------------------------------------------------------------------- conditions on plain paper


def as_mnist(canvas: Canvas, rng: np.random.Generator):
    return Image.fromarray(np.round(canvas.ink * 255).astype(np.uint8), "L"), canvas.boxes


def clean_paper(canvas: Canvas, rng: np.random.Generator):
    return to_image(on_paper(canvas, rng)), canvas.boxes


def ruled(squared: bool):
    """Notebook paper: rule lines a little more than a digit apart, or squares about a third of one."""
    def paint(canvas: Canvas, rng: np.random.Generator):
        h, w = canvas.shape
        tall = glyph_height(canvas)
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
