"""The textbook preparation of a digit image, the baseline the real pipeline is measured against.

What a tutorial does with a user's image, following how MNIST was made (LeCun et al.): gray
levels; the paper is the median, the ink whatever differs from it, scaled to [0, 1] by its
strongest pixel; a global threshold (20% of that) finds the ink's box; the box is scaled,
keeping its aspect ratio, so its longer side is 20 px (anti-aliased); the patch is placed in a
28x28 field with its centre of mass at the centre. No paper model, no noise floor, no rule
lines or borders removed. benchmarks/conditions.py reads every render this way too, with the
same model, so each condition's row shows what `preprocess()` gains over it (or loses).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .decode import MAX_BYTES, MAX_PIXELS, decode

THRESHOLD = 0.2  # ink is what differs from the paper by at least this share of the strongest ink
BOX, SIZE = 20, 28


def textbook(source, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Any image (bytes, a path, a PIL image or a Decoded) -> (28, 28) uint8, white ink on black (all zeros where no ink stands out)."""
    gray = decode(source, max_bytes, max_pixels).gray()
    paper = float(np.median(gray))
    ink = paper - gray if paper > 0.5 else gray - paper  # dark ink on light paper, or light on dark
    ink = np.clip(ink / max(float(ink.max()), 1e-6), 0.0, 1.0)
    rows, cols = np.nonzero((ink >= THRESHOLD).any(1))[0], np.nonzero((ink >= THRESHOLD).any(0))[0]
    if not len(rows) or ink.max() <= 0:
        return np.zeros((SIZE, SIZE), np.uint8)
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    k = BOX / max(h, w)
    nh, nw = max(1, round(h * k)), max(1, round(w * k))
    patch = np.clip(np.asarray(Image.fromarray(crop, "F").resize((nw, nh), Image.Resampling.LANCZOS), np.float32), 0, 1)
    field = np.zeros((2 * SIZE, 2 * SIZE), np.float32)  # room to shift the mass to the centre
    y0, x0 = (2 * SIZE - nh) // 2, (2 * SIZE - nw) // 2
    field[y0 : y0 + nh, x0 : x0 + nw] = patch
    total = float(field.sum())
    if total <= 0:
        return np.zeros((SIZE, SIZE), np.uint8)
    idx = np.arange(2 * SIZE, dtype=np.float32)
    cy, cx = int(round(float(field.sum(1) @ idx) / total)), int(round(float(field.sum(0) @ idx) / total))
    out = field[cy - SIZE // 2 : cy + SIZE // 2, cx - SIZE // 2 : cx + SIZE // 2]
    return np.round(out * 255).astype(np.uint8)
