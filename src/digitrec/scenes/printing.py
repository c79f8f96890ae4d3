"""What documents put around the writing: printed text (Pillow's own default font, never a
handwriting font), fragments of other people's words, old paper and a scanner's finish, and
the canvas grown to hold it all."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .canvas import Canvas, blur
from .paper import noise, paper, to_image
from .strokes import draw_strokes, smooth_path

# Words printed or written near a number on a form or a register: letters only, so nothing
# beside the number reads as another digit.
WORDS = ("born", "bapt", "son", "of", "the", "Hans", "Anna", "Maria", "Peter", "Karen", "Jens", "Niels", "farm",
         "parish", "widow", "girl", "boy", "mother", "father", "church", "house", "name", "date", "Sept", "Oct")
CAPTIONS = ("No.", "Qty", "Age", "Nr.", "Day", "Box", "Ref.", "Item", "Lot", "Class", "Page", "Amt", "Year", "Sheet")


def printed(text: str, size: int) -> np.ndarray:
    """`text` set in Pillow's default font (FreeType, or its bitmap font where FreeType is
    missing) with a `size` px em: ink coverage (H, W) float32, cropped to the text."""
    font = ImageFont.load_default(size=max(6, int(size)))
    left, top, right, bottom = font.getbbox(text)
    im = Image.new("L", (max(1, right - left + 2), max(1, bottom - top + 2)))
    ImageDraw.Draw(im).text((1 - left, 1 - top), text, fill=255, font=font)
    return np.asarray(im, np.float32) / 255.0


def hand_word(rng: np.random.Generator, height: int, width: int, pen: float) -> np.ndarray:
    """A handwritten word in joined-up strokes (arches, a loop up or down here and there), no
    letter in particular: ink (height, width)."""
    xh = height * rng.uniform(0.3, 0.45)  # the x-height
    base = height * rng.uniform(0.68, 0.78)
    n = max(3, int(width / (xh * rng.uniform(0.3, 0.5))))
    x = np.linspace(pen, width - pen, n) + rng.normal(0, 0.05 * xh, n)
    up = np.arange(n) % 2 == 1
    y = np.where(up, base - xh, base) + rng.normal(0, 0.08 * xh, n)
    y[up & (rng.random(n) < 0.15)] = pen + rng.uniform(0, 0.1) * height  # ascenders: l, h, d
    y[~up & (rng.random(n) < 0.08)] = height - pen - rng.uniform(0, 0.1) * height  # descenders: g, p
    return draw_strokes([smooth_path(np.stack([x, y], 1), 4)], width, height, pen)


def fragment(rng: np.random.Generator, height: int, pen: float) -> np.ndarray:
    """A neighbour's words, handwritten or printed, about `height` px tall: ink (H, W)."""
    words = " ".join(WORDS[i] for i in rng.integers(len(WORDS), size=int(rng.integers(1, 3))))
    if rng.random() < 0.35:
        return printed(words, round(height * rng.uniform(0.6, 0.9)))
    return hand_word(rng, max(4, height), max(8, round(height * 0.45 * len(words))), pen)


def stamp(ink: np.ndarray, piece: np.ndarray, x: int, y: int) -> np.ndarray:
    """`piece` laid on `ink` (in place, the darker wins) with its top left at (x, y); whatever
    falls outside is cut off, as a crop cuts a neighbour's words."""
    h, w = ink.shape
    ph, pw = piece.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + pw, w), min(y + ph, h)
    if x1 > x0 and y1 > y0:
        region = ink[y0:y1, x0:x1]
        np.maximum(region, piece[y0 - y : y1 - y, x0 - x : x1 - x], out=region)
    return ink


def grow(canvas: Canvas, left: int, top: int, right: int, bottom: int) -> Canvas:
    """The canvas with empty room added on each side (px, none negative), its boxes moved along."""
    ink = np.pad(canvas.ink, ((top, bottom), (left, right)))
    return Canvas(ink, [(a + left, b + top, c + left, d + top) for a, b, c, d in canvas.boxes])


def old_paper(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Yellowed paper: cream to brownish, grainy, with broad faint stains."""
    tone = rng.uniform(0.8, 0.97)
    colour = tone * np.array([1.0, rng.uniform(0.9, 0.97), rng.uniform(0.68, 0.88)])
    sheet = paper(h, w, rng, colour, rng.uniform(0.01, 0.025))
    stains = Image.fromarray(noise(rng, (h // 16 + 2, w // 16 + 2)), "F").resize((w, h), Image.Resampling.BICUBIC)
    return sheet * (1 + rng.uniform(0.01, 0.05) * np.asarray(stains, np.float32))[..., None]


def old_ink(rng: np.random.Generator) -> np.ndarray:
    """Iron-gall ink as it ages: brown-black."""
    base = rng.uniform(0.06, 0.3)
    return np.clip(base * np.array([1.0, rng.uniform(0.7, 1.0), rng.uniform(0.5, 0.95)]), 0, 1)


def printers_ink(rng: np.random.Generator) -> np.ndarray:
    """Printed rules and captions: black or gray mostly, else a form's blue or red."""
    colours = [np.full(3, rng.uniform(0.05, 0.45)), np.array([0.2, 0.3, 0.7]), np.array([0.8, 0.3, 0.3])]
    return colours[rng.choice(3, p=[0.7, 0.15, 0.15])]


def scanned(sheet: np.ndarray, rng: np.random.Generator, gray: float = 0.4, sharp: float = 0.3) -> Image.Image:
    """A scanner's finish: a little out of focus (or, `sharp` of the time, not; less in a small
    crop, a coarser scan), sensor noise, saved in gray `gray` of the time."""
    if rng.random() >= sharp:
        sigma = rng.uniform(0.8, 0.8 + 0.8 * min(1.0, min(sheet.shape[:2]) / 150))
        sheet = np.stack([blur(sheet[..., i], sigma) for i in range(3)], -1)
    sheet = sheet + noise(rng, (*sheet.shape[:2], 1), rng.uniform(0.004, 0.03))
    if rng.random() < gray:
        sheet = np.repeat(sheet.mean(-1, keepdims=True), 3, -1)
    return to_image(sheet)
