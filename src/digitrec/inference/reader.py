"""Reading whole numbers: find every character in an image, order them, recognise each.

Built on the one ink finder (preprocess.py): the image's ink map is cut into characters, each
character is prepared exactly as a single digit is (20x20 box, centre of mass), and all of them
go through the model in one batch. Nothing here assumes digits: a letters model reads letters.

    pieces      8-connected components of the ink; specks (a sliver of the largest piece's
                ink) are noise
    characters  pieces whose columns mostly overlap are one character (the separate top bar
                of a 5, a 4 or a 7 drawn in two strokes, a pencil stroke broken in two)
    lines       characters whose rows overlap are one line; lines top to bottom, characters
                left to right
    touching    a character much wider than its line is tall may be several that touch:
                candidate cuts at the valleys of its column profile, each split scored by how
                confidently the model reads the parts, against reading it whole
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .predictor import Answer, Predictor
from .decode import MAX_BYTES, MAX_PIXELS, decode, luminance, to_pixels
from .preprocess import EDGE, fit, ink_map, thicken

Box = tuple[int, int, int, int]  # left, top, right, bottom (right and bottom exclusive)
SPECK = 0.04  # pieces with less ink than this share of the largest piece's are noise
MERGE = 0.5  # pieces sharing this share of the narrower one's columns are one character
WIDE = 0.6  # a character wider than this times its line's height may be several that touch
CUTS = 6  # valleys of the column profile tried as cuts, per wide character
MAX_PARTS = 4  # most characters one wide blob is split into
SPLIT_GAIN = 0.0  # a split must read at least this much more confidently (log-probability) than reading whole


@dataclass
class Piece:
    box: Box  # in the ink map's pixels
    mask: np.ndarray  # (bottom - top, right - left) bool: the piece's pixels inside its box
    mass: float  # its ink


@dataclass
class Character:
    box: Box  # in the original image's pixels
    image: np.ndarray  # (28, 28) uint8, the model input
    answer: Answer

    def to_json(self) -> dict:
        return {"box": list(self.box), **self.answer.to_json()}


@dataclass
class Reading:
    text: str  # the lines read, top to bottom, joined with a newline
    status: str  # ok | unsure (any character is) | blank (no ink)
    confidence: float | None  # the chance every character is right: the product of theirs
    characters: list[Character] = field(default_factory=list)  # in reading order
    lines: list[int] = field(default_factory=list)  # how many characters each line holds
    size: tuple[int, int] = (0, 0)  # of the image, (width, height)

    def to_json(self) -> dict:
        return {"text": self.text, "status": self.status, "confidence": self.confidence,
                "lines": self.lines, "characters": [c.to_json() for c in self.characters],
                "input": {"width": self.size[0], "height": self.size[1]}}


# ----------------------------------------------------------------------------- finding characters


def pieces(ink: np.ndarray) -> list[Piece]:
    """The 8-connected components of the ink (at its half-coverage edge), specks left out."""
    from scipy import ndimage

    labels, n = ndimage.label(ink >= EDGE, structure=np.ones((3, 3), bool))
    if n == 0:
        return []
    mass = ndimage.sum_labels(ink, labels, index=np.arange(1, n + 1))
    keep = mass >= SPECK * mass.max()
    out = []
    for k, sl in enumerate(ndimage.find_objects(labels)):
        if keep[k]:
            ys, xs = sl
            out.append(Piece((xs.start, ys.start, xs.stop, ys.stop), labels[sl] == k + 1, float(mass[k])))
    return out


def _union(a: Piece, b: Piece) -> Piece:
    l, t = min(a.box[0], b.box[0]), min(a.box[1], b.box[1])
    r, bt = max(a.box[2], b.box[2]), max(a.box[3], b.box[3])
    mask = np.zeros((bt - t, r - l), bool)
    for p in (a, b):
        pl, pt, pr, pb = p.box
        mask[pt - t : pb - t, pl - l : pr - l] |= p.mask
    return Piece((l, t, r, bt), mask, a.mass + b.mass)


def _shared_columns(a: Box, b: Box) -> float:
    """The share of the narrower box's columns that the other box also covers."""
    overlap = min(a[2], b[2]) - max(a[0], b[0])
    return max(overlap, 0) / max(min(a[2] - a[0], b[2] - b[0]), 1)


def characters(found: list[Piece]) -> list[Piece]:
    """Pieces whose columns mostly overlap, and that are not a line apart, merged into one."""
    chars = sorted(found, key=lambda p: -p.mass)
    merged = True
    while merged:
        merged = False
        for i in range(len(chars)):
            for j in range(i + 1, len(chars)):
                a, b = chars[i].box, chars[j].box
                height = max(a[3] - a[1], b[3] - b[1])
                gap = max(a[1], b[1]) - min(a[3], b[3])  # rows between them (negative: they overlap)
                if _shared_columns(a, b) >= MERGE and gap < 0.35 * height:
                    chars[i] = _union(chars[i], chars[j])
                    del chars[j]
                    merged = True
                    break
            if merged:
                break
    return chars


def lines(chars: list[Piece]) -> list[list[Piece]]:
    """Characters grouped into lines (rows overlapping by half the smaller height), top to
    bottom, each left to right."""
    rows: list[list[Piece]] = []
    for c in sorted(chars, key=lambda p: (p.box[1] + p.box[3]) / 2):
        t, b = c.box[1], c.box[3]
        for row in rows:
            rt, rb = min(p.box[1] for p in row), max(p.box[3] for p in row)
            if min(b, rb) - max(t, rt) >= 0.5 * min(b - t, rb - rt):
                row.append(c)
                break
        else:
            rows.append([c])
    rows.sort(key=lambda row: min(p.box[1] for p in row))
    return [sorted(row, key=lambda p: (p.box[0] + p.box[2]) / 2) for row in rows]


# ----------------------------------------------------------------------------- splitting

# How likely a single character is to be this wide for its height: the log-density of the
# width/height of the ink of MNIST's training digits (validation split left out), at 0.0, 0.1,
# ... 2.0, relative to the most likely (0.8). Touching digits are wide; a single digit rarely is.
ASPECT_LOG_PRIOR = np.array([-7.05, -3.91, -2.33, -1.93, -1.73, -1.0, -0.34, -0.02, 0.0, -0.19, -0.43, -1.14,
                             -1.95, -2.6, -3.22, -3.91, -4.66, -4.64, -6.2, -7.11, -6.55])


def aspect_prior(width: float, height: float) -> float:
    return float(np.interp(width / max(height, 1.0), np.arange(len(ASPECT_LOG_PRIOR)) / 10, ASPECT_LOG_PRIOR))


def cut_candidates(piece: Piece, ink: np.ndarray, limit: int = CUTS) -> list[int]:
    """Columns (in the piece's box) where a touching pair may be cut: the deepest valleys of the
    piece's column profile, away from its ends, at least a tenth of its width apart."""
    l, t, r, b = piece.box
    profile = (ink[t:b, l:r] * piece.mask).sum(0)
    w = len(profile)
    k = max(1, w // 20)
    smooth = np.convolve(profile, np.ones(2 * k + 1) / (2 * k + 1), mode="same")
    inner = np.arange(max(1, int(0.12 * w)), min(w, int(0.88 * w) + 1))
    picked: list[int] = []
    for c in inner[np.argsort(smooth[inner], kind="stable")]:  # deepest first
        if all(abs(c - p) >= max(2, w // 10) for p in picked):
            picked.append(int(c))
        if len(picked) == limit:
            break
    return sorted(picked)


def cut_path(weights: np.ndarray, start: int, reach: int) -> np.ndarray:
    """The path from top to bottom through the least ink, moving at most one column per row and
    staying within `reach` columns of `start`: (rows,) column per row (drop-fall segmentation)."""
    h, w = weights.shape
    lo, hi = max(0, start - reach), min(w, start + reach + 1)
    cost = weights[:, lo:hi].astype(np.float64)
    acc = cost.copy()
    for y in range(1, h):  # one short vectorised step per row
        prev = acc[y - 1]
        best = np.minimum(prev, np.minimum(np.r_[np.inf, prev[:-1]], np.r_[prev[1:], np.inf]))
        acc[y] += best
    path = np.empty(h, np.int64)
    path[-1] = int(np.argmin(acc[-1] + 1e-6 * np.abs(np.arange(lo, hi) - start)))
    for y in range(h - 2, -1, -1):
        c = path[y + 1]
        window = acc[y, max(c - 1, 0) : c + 2]
        path[y] = max(c - 1, 0) + int(np.argmin(window))
    return path + lo


def _between(mask: np.ndarray, left: np.ndarray | None, right: np.ndarray | None) -> np.ndarray:
    """The part of a piece's mask between two cut paths (None: the piece's edge)."""
    cols = np.arange(mask.shape[1])[None]
    keep = np.ones_like(mask)
    if left is not None:
        keep &= cols >= left[:, None]
    if right is not None:
        keep &= cols < right[:, None]
    return mask & keep


def _grow(mask: np.ndarray) -> np.ndarray:
    """The mask and its 8 neighbours: keep the anti-aliased rim of each stroke."""
    p = np.pad(mask, 1)
    out = np.zeros_like(mask)
    h, w = mask.shape
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out |= p[dy : dy + h, dx : dx + w]
    return out


def model_input(sub: np.ndarray, box_in_sub: Box) -> np.ndarray:
    """A character's ink (its own crop) -> the (28, 28) uint8 model input, as preprocess() makes it."""
    return np.round(fit(*thicken(sub, box_in_sub)) * 255).astype(np.uint8)


def _part(piece: Piece, ink: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, Box, float] | None:
    """(model input, box in the ink map, aspect log-prior) of the part of `piece` under `mask`."""
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    if not len(rows):
        return None
    l, t = piece.box[:2]
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    sub = ink[t + y0 : t + y1, l + x0 : l + x1] * _grow(mask)[y0:y1, x0:x1]
    return (model_input(sub, (0, 0, x1 - x0, y1 - y0)), (l + x0, t + y0, l + x1, t + y1),
            aspect_prior(x1 - x0, y1 - y0))


def best_split(piece: Piece, ink: np.ndarray, height: float, predictor: Predictor) -> list[tuple[np.ndarray, Box]]:
    """The character(s) in `piece`: read whole, or cut along least-ink paths into up to MAX_PARTS
    parts, whichever scores best: the sum over parts of the model's log-confidence and of the
    log-likelihood of the part's shape (ASPECT_LOG_PRIOR), found by dynamic programming over cuts."""
    l, t, r, b = piece.box
    whole = _part(piece, ink, piece.mask)
    if (r - l) <= WIDE * height:
        return [whole[:2]]
    weights = ink[t:b, l:r] * piece.mask
    paths = [None] + [cut_path(weights, c, max(2, (r - l) // 8)) for c in cut_candidates(piece, ink)] + [None]
    segments = {}
    for i in range(len(paths)):
        for j in range(i + 1, len(paths)):
            if (i, j) != (0, len(paths) - 1):
                got = _part(piece, ink, _between(piece.mask, paths[i], paths[j]))
                if got is not None and got[1][2] - got[1][0] >= 0.15 * height:
                    segments[(i, j)] = got
    keys = list(segments)
    logp = np.log(np.maximum(predictor.probabilities([whole[0]] + [segments[k][0] for k in keys]).max(1), 1e-9))
    score = {k: float(v) + segments[k][2] for k, v in zip(keys, logp[1:])}
    best = {0: (0.0, [])}  # cut index -> (score, parts so far)
    for j in range(1, len(paths)):
        options = [(best[i][0] + score[(i, j)], best[i][1] + [(i, j)]) for i in range(j)
                   if i in best and (i, j) in score and len(best[i][1]) < MAX_PARTS]
        if options:
            best[j] = max(options, key=lambda o: o[0])
    end = len(paths) - 1
    if end not in best or best[end][0] <= float(logp[0]) + whole[2] + SPLIT_GAIN:
        return [whole[:2]]
    return [segments[k][:2] for k in best[end][1]]


# ----------------------------------------------------------------------------- reading


def read(source, predictor: Predictor, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS,
         top_k: int | None = None) -> Reading:
    """Every character in an image (bytes, a path or a PIL image), in reading order."""
    im, _, shrunk = decode(source, max_bytes, max_pixels)
    size = (round(im.size[0] * shrunk), round(im.size[1] * shrunk))
    ink, blank, _ = ink_map(luminance(to_pixels(im)))
    if blank:
        return Reading("", "blank", None, size=size)
    inputs, boxes, counts = [], [], []
    for row in lines(characters(pieces(ink))):
        height = float(np.median([p.box[3] - p.box[1] for p in row]))
        found = [got for p in row for got in best_split(p, ink, height, predictor)]
        inputs += [image for image, _ in found]
        boxes += [box for _, box in found]
        counts.append(len(found))
    if not inputs:
        return Reading("", "blank", None, size=size)
    kx, ky = size[0] / ink.shape[1], size[1] / ink.shape[0]
    chars = [Character((int(l * kx), int(t * ky), min(size[0], int(np.ceil(r * kx))), min(size[1], int(np.ceil(b * ky)))),
                       image, answer)
             for (l, t, r, b), image, answer in zip(boxes, inputs, predictor.predict(inputs, top_k))]
    text, at = [], 0
    for n in counts:
        text.append("".join(c.answer.label or "" for c in chars[at : at + n]))
        at += n
    status = "unsure" if any(c.answer.status != "ok" for c in chars) else "ok"
    confidence = float(np.prod([c.answer.confidence or 0.0 for c in chars]))
    return Reading("\n".join(text), status, confidence, chars, counts, size)
