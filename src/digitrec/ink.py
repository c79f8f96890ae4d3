"""Measures of ink shared by preprocessing (is this stroke too thin?) and the report (are
errors in thin strokes?). Numpy only, so the torch-free prediction path can use it."""

from __future__ import annotations

import numpy as np


def stroke_width(mask: np.ndarray) -> np.ndarray:
    """Typical stroke width in pixels of boolean ink masks (..., H, W): twice the area over
    the outline length (a stroke of width w and length L has area wL and an outline of 2L).
    Outline pixels are the inked ones with an empty 4-neighbour. Counting them overstates
    slanted outlines, so this reads up to 30% low; fine for comparing strokes."""
    m = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)])
    core = m[..., 1:-1, 1:-1]
    inner = core & m[..., :-2, 1:-1] & m[..., 2:, 1:-1] & m[..., 1:-1, :-2] & m[..., 1:-1, 2:]
    area = core.sum((-2, -1))
    outline = area - inner.sum((-2, -1))
    return 2 * area / np.maximum(outline, 1)
