"""Shapes that are not one character, for teaching a model to say so (outlier exposure).

A model trained only on digits answers every input with some digit, confidently: a dot, a
blob, the letter K, half of a 0, or a 3 and a 1 that touch. Trained besides on such shapes
with a target of equal probabilities for every class (Hendrycks et al., "Deep anomaly
detection with outlier exposure", 2019), it spreads its answer instead, so its confidence
falls below the `unsure` threshold; and the whole-number reader can tell a good cut between
two touching digits from a bad one by how confidently the model reads the parts.

The bank holds, as 28x28 model inputs made the way preprocessing makes them:
    fragment   a vertical slice (a third to two thirds) of a training digit
    pair       two training digits side by side, touching or overlapping, as one shape
    shape      a dot, blob, frame, scribble, or a letter that resembles no digit, in a font or
               by hand (scenes.non_digit)
Only training-split digits are used; the validation split stays unseen.
"""

from __future__ import annotations

import numpy as np
import torch

from ..inference.preprocess import fit, thicken

KINDS = ("fragment", "pair", "shape")


def _glyph(digit: np.ndarray) -> np.ndarray:
    """A 28x28 uint8 digit's ink, cropped to its box, as float in [0, 1]."""
    ys, xs = np.nonzero(digit > 0)
    return digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32) / 255.0


def model_input(ink: np.ndarray) -> np.ndarray | None:
    """Any ink map -> the 28x28 uint8 input preprocessing would make of it (None: no ink)."""
    ys, xs = np.nonzero(ink >= 0.5)
    if not len(ys):
        return None
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return np.round(fit(*thicken(ink, box)) * 255).astype(np.uint8)


def fragment(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    g = _glyph(digit)
    w = g.shape[1]
    keep = int(round(w * rng.uniform(0.3, 0.65)))
    if keep < 2 or w - keep < 2:
        return None
    part = g[:, :keep] if rng.random() < 0.5 else g[:, -keep:]
    return model_input(np.pad(part, 4))


def pair(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    ga, gb = _glyph(a), _glyph(b)
    overlap = int(round(rng.uniform(-0.1, 0.3) * min(ga.shape[1], gb.shape[1])))
    h = max(ga.shape[0], gb.shape[0])
    w = ga.shape[1] + gb.shape[1] - overlap
    canvas = np.zeros((h + 8, max(w, ga.shape[1]) + 8), np.float32)
    ya, yb = 4 + (h - ga.shape[0]) // 2, 4 + (h - gb.shape[0]) // 2
    canvas[ya : ya + ga.shape[0], 4 : 4 + ga.shape[1]] = ga
    x = 4 + ga.shape[1] - overlap
    region = canvas[yb : yb + gb.shape[0], x : x + gb.shape[1]]
    canvas[yb : yb + gb.shape[0], x : x + gb.shape[1]] = np.maximum(region, gb[:, : region.shape[1]])
    return model_input(canvas)


def shape(rng: np.random.Generator) -> np.ndarray | None:
    from ..scenes import NON_DIGITS, non_digit

    return model_input(non_digit(NON_DIGITS[rng.integers(len(NON_DIGITS))], rng, field=56))


def bank(digits: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """(n, 28, 28) uint8: an equal share of each kind, from `digits` (training digits, uint8
    (N, 28, 28)) and from drawn shapes; the same for the same arguments."""
    rng = np.random.default_rng(seed)
    x = digits.numpy()
    out: list[np.ndarray] = []
    while len(out) < n:
        kind = KINDS[len(out) % len(KINDS)]
        if kind == "fragment":
            got = fragment(x[rng.integers(len(x))], rng)
        elif kind == "pair":
            got = pair(x[rng.integers(len(x))], x[rng.integers(len(x))], rng)
        else:
            got = shape(rng)
        if got is not None:
            out.append(got)
    return torch.from_numpy(np.stack(out))
