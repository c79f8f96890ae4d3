"""The line model: a whole line of characters read at once, without cutting it into characters.

A small convolutional network slides along a line strip and says, every STRIDE pixels, which
character is there or that none is (the CTC blank); runs of one character are one character.
It reads digits that touch or overlap, which no cut through the ink separates cleanly. It is
trained on lines composed from MNIST training digits (training/lines.py) and runs here on
ONNX Runtime, without torch.

    strip    a line's ink (from the ink map) -> the model's input: the ink's box scaled to
             INK_HEIGHT px high, in a strip HEIGHT px high, PAD px of paper left and right (a
             LineModel's own: its card's geometry, card.LineCard)
    greedy   per-frame probabilities -> characters: label, all probabilities (the blank left
             out), and the frame each one was read at; decode_counts: the best reading with
             exactly k characters, for every k (where the caller knows how many there are)
    spans    the strip columns each character covers, for its box
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..card import LINE_HEIGHT, LINE_INK_HEIGHT, LINE_PAD, LINE_STRIDE, LineCard
from ..errors import CheckpointError
from ..ink import EDGE, PREPARATION
from ..marks import box_stroke, dilate
from .onnxrun import session
from .predictor import softmax

# The geometry of every line model so far (a LineCard that does not say otherwise): the defaults.
HEIGHT = LINE_HEIGHT  # the strip's height
INK_HEIGHT = LINE_INK_HEIGHT  # the line's ink box, scaled to this height (its digits about 20 px high, as in MNIST)
PAD = LINE_PAD  # paper left and right of the ink
STRIDE = LINE_STRIDE  # strip pixels per output frame
META_KEY = "digitrec.lines"


def strip(ink: np.ndarray, card: LineCard | None = None) -> tuple[np.ndarray, float, int]:
    """A line's ink (float, 1 = ink, holding only this line) -> (the model input (HEIGHT, W)
    float32 with W a multiple of STRIDE, k, left): the strip's column c shows the ink's column
    left + (c - PAD) / k. Strokes too thin to survive the scaling are widened first, as
    preprocess.thicken does for one character. An empty line gives an empty strip. The
    geometry is `card`'s (LineModel.strip), or without one the defaults above."""
    height, ink_height, pad, stride = (HEIGHT, INK_HEIGHT, PAD, STRIDE) if card is None else (
        card.height, card.ink_height, card.pad, card.stride)
    rows, cols = np.nonzero((ink >= EDGE).any(1))[0], np.nonzero((ink >= EDGE).any(0))[0]
    if not len(rows):
        return np.zeros((height, 2 * pad), np.float32), 1.0, 0
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    k = ink_height / (bottom - top)
    width = box_stroke(ink, (left, top, right, bottom))
    r = int(np.ceil((PREPARATION.stroke / k - width) / 2)) if width * k < PREPARATION.min_stroke else 0
    top, bottom, left, right = max(top - r, 0), min(bottom + r, ink.shape[0]), max(left - r, 0), min(right + r, ink.shape[1])
    crop = dilate(ink[top:bottom, left:right].astype(np.float32), r)
    k = ink_height / (bottom - top)
    w = max(1, round((right - left) * k))
    scaled = np.clip(np.asarray(Image.fromarray(crop, "F").resize((w, ink_height), Image.Resampling.LANCZOS)), 0, 1)
    total = -(-(w + 2 * pad) // stride) * stride
    out = np.zeros((height, total), np.float32)
    y = (height - ink_height) // 2
    out[y : y + ink_height, pad : pad + w] = scaled
    return out, k, left


@dataclass
class Read:
    """One character read from a strip."""

    index: int  # class index
    probabilities: np.ndarray  # (C,) over the classes, the blank left out
    frame: int  # the frame it was read at (its most certain); the strip's columns frame * STRIDE on


def greedy(frames: np.ndarray) -> list[Read]:
    """Greedy CTC decoding of (T, C + 1) frame probabilities (blank last): each run of frames
    whose best is one class is one character, read at its most certain frame."""
    return _runs(frames, frames.argmax(1))


def _read_at(frames: np.ndarray, index: int, start: int, stop: int) -> Read:
    """The character `index` read over frames start..stop-1, at its most certain frame."""
    blank = frames.shape[1] - 1
    peak = start + int(frames[start:stop, index].argmax())
    p = frames[peak, :blank] / max(float(frames[peak, :blank].sum()), 1e-12)
    return Read(index, p.astype(np.float32), peak)


def decode_counts(frames: np.ndarray, most: int) -> dict[int, tuple[float, list[Read]]]:
    """For every k from 1 to `most`, the single most likely path through (T, C + 1) frame
    probabilities (blank last) that reads exactly k characters: {k: (log-probability, reads)},
    k missing where no path reads k. A Viterbi pass over (characters so far, symbol) states: a
    frame continues its symbol's run, is a blank, or starts a new character (another symbol)."""
    t_len, n = frames.shape
    blank, counts = n - 1, np.arange(most + 1)[:, None]
    logp = np.log(np.maximum(frames, 1e-30))
    v = np.full((most + 1, n), -np.inf)  # v[c, s]: the best path so far that has read c characters and is in s
    v[0, blank] = logp[0, blank]
    if most:
        v[1, :blank] = logp[0, :blank]
    back = np.zeros((t_len, 2, most + 1, n), np.int16)  # the state each best path came from: (count, symbol)
    for t in range(1, t_len):
        order = np.argsort(-v, axis=1, kind="stable")[:, :2]  # per count, the best and second-best symbol
        best = np.take_along_axis(v, order, 1)  # (most + 1, 2)
        first = np.arange(n) == order[:-1, :1]  # a new character comes from the best other symbol
        new = np.full((most + 1, n), -np.inf)
        new[1:] = np.where(first, best[:-1, 1:2], best[:-1, :1])
        source = np.zeros((most + 1, n), np.int64)
        source[1:] = np.where(first, order[:-1, 1:2], order[:-1, :1])
        stay = v >= new
        back[t, 0] = np.where(stay, counts, counts - 1)
        back[t, 1] = np.where(stay, np.arange(n), source)
        v = np.where(stay, v, new)
        v[:, blank] = best[:, 0]  # a blank follows anything and keeps the count
        back[t, 0, :, blank], back[t, 1, :, blank] = counts[:, 0], order[:, 0]
        v += logp[t]
    out = {}
    for k in range(1, most + 1):
        s = int(v[k].argmax())
        if np.isfinite(v[k, s]):
            out[k] = (float(v[k, s]), _runs(frames, _backtrack(back, k, s)))
    return out


def _backtrack(back: np.ndarray, c: int, s: int) -> np.ndarray:
    """(T,) the symbol of each frame along the best path that ends in state (c, s)."""
    symbols = np.empty(len(back), np.int64)
    for t in range(len(back) - 1, -1, -1):
        symbols[t] = s
        c, s = int(back[t, 0, c, s]), int(back[t, 1, c, s])
    return symbols


def _runs(frames: np.ndarray, symbols: np.ndarray) -> list[Read]:
    """The characters of a path: each run of one symbol other than the blank."""
    blank = frames.shape[1] - 1
    if not len(symbols):
        return []
    edges = np.flatnonzero(np.diff(symbols)) + 1
    starts, stops = np.r_[0, edges], np.r_[edges, len(symbols)]
    return [_read_at(frames, int(symbols[a]), a, b) for a, b in zip(starts, stops) if symbols[a] != blank]


def spans(reads: list[Read], x: np.ndarray, stride: int = STRIDE) -> list[tuple[float, float]]:
    """The strip columns each character covers: the frames a CTC model reads characters at sit at a
    steady offset from their centres (where its view has seen enough), so the centres are the
    frames moved together onto the ink's middle, and neighbours meet halfway between centres;
    the first begins and the last ends with the ink."""
    cols = np.nonzero(x.max(0) >= EDGE)[0]
    if not reads or not len(cols):
        return []
    left, right = float(cols[0]), float(cols[-1] + 1)
    at = np.array([(r.frame + 0.5) * stride for r in reads])
    centres = at - (at.mean() - (left + right) / 2)
    cuts = (centres[1:] + centres[:-1]) / 2
    return list(zip([left, *cuts], [*cuts, right]))


class LineModel:
    """A line model exported by `digitrec train-lines`: `LineModel(path)(strip) -> [Read, ...]`.
    `.card` (card.LineCard, checked on load) holds its class names (`.classes`), the confidence
    under which a character it reads is `unsure` (`.threshold`, chosen on validation lines) and
    the geometry of the strips it reads (`.strip` makes them, `.spans` places its reads)."""

    def __init__(self, path: Path | str, threads: int = 0):
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"line model {path} does not exist; train one with `digitrec train-lines`")
        self.session = session(path, threads, "the line model")
        try:
            info = json.loads(self.session.get_modelmeta().custom_metadata_map[META_KEY])
        except Exception as e:  # noqa: BLE001  an ONNX model, but not a digitrec line model
            raise CheckpointError(f"{path} is not a digitrec line model ({type(e).__name__}); "
                                  "train one with `digitrec train-lines`") from None
        self.card = LineCard.from_meta(info, str(path))
        self.classes: list[str] = list(self.card.classes)
        self.threshold = self.card.threshold
        self.path, self.info = path, info

    def strip(self, ink: np.ndarray) -> tuple[np.ndarray, float, int]:
        """A line's ink -> (strip, k, left) in this model's geometry (module `strip`)."""
        return strip(ink, self.card)

    def spans(self, reads: list[Read], x: np.ndarray) -> list[tuple[float, float]]:
        return spans(reads, x, self.card.stride)

    def frames(self, x: np.ndarray) -> np.ndarray:
        """(height, W) strip, in the card's geometry -> (W / stride, C + 1) probabilities per frame."""
        if x.shape[0] != self.card.height:
            raise ValueError(f"{self.path} reads strips {self.card.height} px high, not {x.shape[0]}")
        logits = self.session.run(None, {self.session.get_inputs()[0].name: x[None, None].astype(np.float32)})[0][0]
        return softmax(logits.T)  # (T, C + 1)

    def frames_batch(self, xs: np.ndarray) -> np.ndarray:
        """(N, HEIGHT, W) strips of one width -> (N, W / STRIDE, C + 1) probabilities per frame."""
        logits = self.session.run(None, {self.session.get_inputs()[0].name: xs[:, None].astype(np.float32)})[0]
        return softmax(logits.transpose(0, 2, 1).reshape(-1, logits.shape[1])).reshape(len(xs), -1, logits.shape[1])

    def __call__(self, x: np.ndarray) -> list[Read]:
        return greedy(self.frames(x))
