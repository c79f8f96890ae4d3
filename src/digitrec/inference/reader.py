"""Reading whole numbers: find every character in an image, order them, recognise each.

Built on the one ink finder (preprocess.py): the image's ink map is cut into characters, each
character is prepared exactly as a single digit is (20x20 box, centre of mass), and all of them
go through the model in one batch. Nothing here assumes digits: a letters model reads letters.

    pieces      8-connected components of the ink; specks (a sliver of the largest piece's
                ink) are noise
    lines       pieces whose rows overlap are one line; lines top to bottom
    characters  in a line, pieces whose columns mostly overlap are one character (the separate
                top bar of a 5, a 4 or a 7 drawn in two strokes), and a small piece right beside
                a character joins it (a pencil stroke broken in two); left to right
    touching    a character much wider than its line is tall may be several that touch:
                candidate cuts at the valleys of its column profile, each split scored by how
                confidently the model reads the parts, against reading it whole
    line model  where a line model for the same classes is at hand (the packaged one reads
                digits: linemodel.py) and segmentation is not sure (a piece that may hold two
                characters, a cut, a join, or a character the classifier is unsure of), the line
                is also read whole, without cutting; where that finds another number of
                characters, its reading is kept (it reads touching digits that no cut
                separates), each character's box being the ink in the columns it covers
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from .linemodel import PAD, LineModel, spans, strip
from .predictor import Answer, Predictor, answers, cell
from .decode import MAX_BYTES, MAX_PIXELS, decode, luminance, to_pixels
from .preprocess import EDGE, fit, ink_map, thicken

Box = tuple[int, int, int, int]  # left, top, right, bottom (right and bottom exclusive)
SPECK = 0.04  # pieces with less ink than this share of the largest piece's are noise
MERGE = 0.5  # pieces sharing this share of the narrower one's columns are one character
WIDE = 0.6  # a piece wider than this times its line's height may be several characters that touch
CUTS = 6  # valleys of the column profile tried as cuts, per wide piece
MAX_WIDTH = 1.6  # no character is wider than this times its line's height
SURE_WIDTH = 0.8  # no piece wider than this times its line's height (most single digits): segmentation is sure
JOIN_GAP = 0.12  # pieces further apart than this times the line's height are never one character
SEGMENT_COST = 2.0  # taken from every character's score: a reading prefers fewer characters...
JOIN_COST = 1.0  # ...but not by joining separate pieces (each gap joined costs this)...
CUT_COST = 1.0  # ...and not by cutting through ink (each cut costs this)


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

    @staticmethod
    def csv_header(classes) -> list[str]:
        """One row per character: the reading's columns, then the character's (its Answer's)."""
        return ["status", "text", "confidence", "line", "position", "left", "top", "right", "bottom",
                *(f"char_{name}" for name in Answer.csv_header(()) ), *classes]

    def csv_rows(self) -> list[list[str]]:
        whole = [self.status, self.text, cell(self.confidence)]
        if not self.characters:
            return [whole + [""] * 6 + [""] * (len(Answer.csv_header(())))]
        rows, at = [], 0
        for line, n in enumerate(self.lines):
            for pos, c in enumerate(self.characters[at : at + n]):
                rows.append(whole + [str(line), str(pos), *map(str, c.box), *c.answer.csv_rows()[0]])
            at += n
        return rows

    def describe(self) -> str:
        """One line for people: the text (lines joined by " / "), its status and confidence."""
        if self.status == "blank":
            return "blank (no ink found)"
        flag = "  [unsure: " + ", ".join(f"{c.answer.label} at {i + 1}" for i, c in enumerate(self.characters)
                                        if c.answer.status != "ok") + "]" if self.status == "unsure" else ""
        return f"{self.text.replace(chr(10), ' / ')}  ({100 * self.confidence:.1f}%){flag}"


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


def lines(found: list[Piece]) -> list[list[Piece]]:
    """Pieces grouped into lines: a piece joins the line whose rows hold at least half of its
    own; lines top to bottom."""
    rows: list[list[Piece]] = []
    for c in sorted(found, key=lambda p: -(p.box[3] - p.box[1])):  # the tallest first: they set the bands
        t, b = c.box[1], c.box[3]
        for row in rows:
            rt, rb = min(p.box[1] for p in row), max(p.box[3] for p in row)
            if min(b, rb) - max(t, rt) >= 0.5 * (b - t):
                row.append(c)
                break
        else:
            rows.append([c])
    return sorted(rows, key=lambda row: min(p.box[1] for p in row))


def line_height(row: list[Piece]) -> float:
    """The height of a line's characters: that of its tallest pieces, not of its specks."""
    return float(np.percentile([p.box[3] - p.box[1] for p in row], 75))


def characters(row: list[Piece]) -> list[Piece]:
    """A line's pieces merged into characters, left to right: pieces sharing most of the narrower
    one's columns are one character (in a line, characters stand side by side, never stacked);
    a small piece right beside a character joins it (a stroke broken by the pen)."""
    height = line_height(row)
    chars = sorted(row, key=lambda p: -p.mass)
    merged = True
    while merged:
        merged = False
        for i in range(len(chars)):
            for j in range(i + 1, len(chars)):
                if _belong(chars[i], chars[j], height):
                    chars[i] = _union(chars[i], chars[j])
                    del chars[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(chars, key=lambda p: (p.box[0] + p.box[2]) / 2)


def _belong(a: Piece, b: Piece, height: float) -> bool:
    """Are two pieces of one line parts of one character? (a has at least b's ink)"""
    if _shared_columns(a.box, b.box) >= MERGE:
        return True
    small = b.box[3] - b.box[1] < 0.45 * height and b.box[2] - b.box[0] < 0.45 * height
    gap = max(a.box[0], b.box[0]) - min(a.box[2], b.box[2])
    return small and gap < 0.12 * height and b.mass < 0.25 * a.mass


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
    best = np.empty(hi - lo)
    for y in range(1, h):  # one short vectorised step per row: the least of the three cells above
        prev = acc[y - 1]
        best[:] = prev
        np.minimum(best[1:], prev[:-1], out=best[1:])
        np.minimum(best[:-1], prev[1:], out=best[:-1])
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


@dataclass
class Node:
    """A place a character may begin or end: an edge of a piece (`path` None) or a cut through it."""

    atom: int  # the piece it cuts, or the piece it is the left edge of
    path: np.ndarray | None = None  # (rows of the piece,) the cut's column in each row, within the piece


def _segment(atoms: list[Piece], ink: np.ndarray, a: Node, b: Node) -> tuple[np.ndarray, Box, float] | None:
    """(model input, box, aspect log-prior) of the ink from node `a` to node `b`: the rest of a's
    piece right of a's cut, every piece in between, and b's piece left of b's cut."""
    parts = []
    last = b.atom if b.path is not None else b.atom - 1
    for i in range(a.atom, last + 1):
        left = a.path if i == a.atom else None
        right = b.path if (i == b.atom and b.path is not None) else None
        mask = _between(atoms[i].mask, left, right)
        if mask.any():
            parts.append((atoms[i].box, mask))
    if not parts:
        return None
    l, t = min(bx[0] for bx, _ in parts), min(bx[1] for bx, _ in parts)
    r, bt = max(bx[2] for bx, _ in parts), max(bx[3] for bx, _ in parts)
    sub = np.zeros((bt - t, r - l), np.float32)
    for (pl, pt, pr, pb), mask in parts:
        sub[pt - t : pb - t, pl - l : pr - l] += ink[pt:pb, pl:pr] * _grow(mask)
    rows, cols = np.nonzero((sub >= EDGE).any(1))[0], np.nonzero((sub >= EDGE).any(0))[0]
    if not len(rows):
        return None
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return (model_input(np.minimum(sub, 1.0), (x0, y0, x1, y1)), (l + x0, t + y0, l + x1, t + y1),
            aspect_prior(x1 - x0, y1 - y0))


def _nodes(atoms: list[Piece], ink: np.ndarray, height: float) -> list[Node]:
    """Every place a character may begin or end along a line, left to right: each piece's left
    edge, cuts through pieces wide enough to hold two characters, and the line's end."""
    nodes = []
    for i, piece in enumerate(atoms):
        nodes.append(Node(i))
        l, t, r, b = piece.box
        if r - l > WIDE * height:
            weights = ink[t:b, l:r] * piece.mask
            nodes += [Node(i, cut_path(weights, c, max(2, (r - l) // 8))) for c in cut_candidates(piece, ink)]
    return nodes + [Node(len(atoms))]


def _joinable(atoms: list[Piece], a: Node, b: Node, height: float) -> bool:
    """May the ink from a to b be one character? Not wider than any character is, and not across
    a clear gap."""
    first, last = a.atom, (b.atom if b.path is not None else b.atom - 1)
    if atoms[last].box[2] - atoms[first].box[0] > MAX_WIDTH * height:
        return False
    return all(atoms[i + 1].box[0] - atoms[i].box[2] < JOIN_GAP * height for i in range(first, last))


def _joins(nodes: list[Node], i: int, j: int) -> int:
    """How many gaps between pieces the character from node i to node j spans."""
    first, last = nodes[i].atom, (nodes[j].atom if nodes[j].path is not None else nodes[j].atom - 1)
    return last - first


def segment(atoms: list[Piece], ink: np.ndarray, height: float,
            predictor: Predictor) -> list[tuple[np.ndarray, Box, bool, np.ndarray]]:
    """A line's characters, (model input, box, whether a cut through ink bounds it, the model's
    probabilities) each: the split of its pieces (merging neighbours, cutting touching ones)
    that scores best, by dynamic programming over the places characters may begin and end. A
    candidate character scores the model's log-confidence in it plus the log-likelihood of its
    shape for one character (ASPECT_LOG_PRIOR); all candidates go through the model in one batch."""
    nodes = _nodes(atoms, ink, height)
    segments = {}
    for i in range(len(nodes)):
        for j in range(i + 1, len(nodes)):
            if not _joinable(atoms, nodes[i], nodes[j], height):
                break  # further nodes are further right: wider still
            got = _segment(atoms, ink, nodes[i], nodes[j])
            if got is not None:
                segments[(i, j)] = got
    if not segments:
        return []
    keys = list(segments)
    probs = predictor.probabilities([segments[k][0] for k in keys])  # (candidates, C)
    confident = np.log(np.maximum(probs.max(1), 1e-9))
    score = {k: float(c) + segments[k][2] - SEGMENT_COST - _joins(nodes, *k) * JOIN_COST
             - (nodes[k[1]].path is not None) * CUT_COST for k, c in zip(keys, confident)}
    best = {0: (0.0, [])}  # node -> (score, segments so far)
    for j in range(1, len(nodes)):
        options = [(best[i][0] + score[(i, j)], best[i][1] + [(i, j)]) for i in range(j) if i in best and (i, j) in score]
        if options:
            best[j] = max(options, key=lambda o: o[0])
    end = len(nodes) - 1
    chosen = best[end][1] if end in best else [k for k in keys if k[1] == k[0] + 1]
    row_of = {k: i for i, k in enumerate(keys)}
    return [(*segments[k][:2], nodes[k[0]].path is not None or nodes[k[1]].path is not None, probs[row_of[k]])
            for k in chosen]


# ----------------------------------------------------------------------------- reading


def packaged_line_model() -> Path:
    return Path(str(resources.files("digitrec") / "pretrained" / "mnist.lines.onnx"))


@lru_cache(maxsize=4)
def _open_line_model(path: Path) -> LineModel:
    return LineModel(path)


def line_model_for(predictor: Predictor, choice: LineModel | Path | str | None = "auto") -> LineModel | None:
    """The line model to read with: "auto" is the packaged one where it reads the predictor's
    classes (none for letters); None or "none" reads by segmentation alone; a path is opened."""
    if choice is None or isinstance(choice, LineModel):
        return choice
    if str(choice) == "none":
        return None
    if str(choice) == "auto":
        path = packaged_line_model()
        model = _open_line_model(path) if path.is_file() else None
        return model if model is not None and model.classes == predictor.classes else None
    model = _open_line_model(Path(choice))
    if model.classes != predictor.classes:
        from ..errors import UserError

        raise UserError(f"the line model {choice} reads {', '.join(model.classes)}, but the checkpoint reads "
                        f"{', '.join(predictor.classes)}; pass a line model for the same classes, or --lines none")
    return model


def line_ink(row: list[Piece], ink: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Only one line's ink (its pieces and their rims, nothing of the lines above or below), in
    the line's box: (ink, left, top)."""
    l, t = min(p.box[0] for p in row), min(p.box[1] for p in row)
    r, b = max(p.box[2] for p in row), max(p.box[3] for p in row)
    sub = np.zeros((b - t, r - l), np.float32)
    for p in row:
        pl, pt, pr, pb = p.box
        np.maximum(sub[pt - t : pb - t, pl - l : pr - l], ink[pt:pb, pl:pr] * _grow(p.mask),
                   out=sub[pt - t : pb - t, pl - l : pr - l])
    return sub, l, t


def read_whole(row: list[Piece], ink: np.ndarray, model: LineModel) -> list[tuple[np.ndarray, Box, np.ndarray]]:
    """A line read whole by the line model: (model input, box in the ink map, probabilities) per
    character; its box is the ink in the columns it covers (linemodel.spans)."""
    sub, l, t = line_ink(row, ink)
    x, k, left = strip(sub)
    reads = model(x)
    out = []
    for r, (s0, s1) in zip(reads, spans(reads, x)):
        c0 = max(0, int(np.floor(left + (s0 - PAD) / k)))
        c1 = min(sub.shape[1], int(np.ceil(left + (s1 - PAD) / k)))
        part = sub[:, c0:max(c1, c0 + 1)]
        rows, cols = np.nonzero((part >= EDGE).any(1))[0], np.nonzero((part >= EDGE).any(0))[0]
        if not len(rows):  # read where the ink is faint: the whole height of those columns
            rows, cols = np.array([0, part.shape[0] - 1]), np.array([0, part.shape[1] - 1])
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        out.append((model_input(part, box), (l + c0 + box[0], t + box[1], l + c0 + box[2], t + box[3]),
                    r.probabilities))
    return out


def read_row(row: list[Piece], ink: np.ndarray, predictor: Predictor, model: LineModel | None,
             top_k: int | None) -> list[tuple[Box, np.ndarray, Answer]]:
    """One line's characters, (box in the ink map, model input, answer) each, left to right.
    Segmentation is trusted where its characters stand apart (no piece wider than SURE_WIDTH
    times the line's height, none cut, none joined to another) and the classifier is sure of
    each. Otherwise the line model reads the line too, and its reading is kept where it finds
    another number of characters; where segmentation's only doubt was a join (a 4 drawn in two
    strokes, or a 1 close beside a 0), only if the line model is also the surer of the two."""
    atoms, height = characters(row), line_height(row)
    found = segment(atoms, ink, height, predictor)
    cut = answers(np.stack([p for *_, p in found]), predictor.classes, predictor.threshold, top_k) if found else []
    sure = all(a.box[2] - a.box[0] <= SURE_WIDTH * height for a in atoms) and not any(c for _, _, c, _ in found) \
        and all(a.status == "ok" for a in cut)
    if model is not None and not (sure and len(found) == len(atoms)):
        whole = read_whole(row, ink, model)
        probs = np.stack([p for _, _, p in whole]) if whole else np.zeros((0, len(predictor.classes)))
        if len(whole) != len(cut) and (not sure or np.prod(probs.max(1)) > np.prod([a.confidence for a in cut])):
            return [(box, im, a) for (im, box, _), a in zip(whole, answers(probs, predictor.classes, model.threshold, top_k))]
    return [(box, im, a) for (im, box, _, _), a in zip(found, cut)]


def read(source, predictor: Predictor, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS,
         top_k: int | None = None, line_model: LineModel | Path | str | None = "auto") -> Reading:
    """Every character in an image (bytes, a path or a PIL image), in reading order. `line_model`:
    see line_model_for."""
    model = line_model_for(predictor, line_model)
    im, _, shrunk = decode(source, max_bytes, max_pixels)
    size = (round(im.size[0] * shrunk), round(im.size[1] * shrunk))
    ink, blank, _ = ink_map(luminance(to_pixels(im)))
    if blank:
        return Reading("", "blank", None, size=size)
    rows = [read_row(row, ink, predictor, model, top_k) for row in lines(pieces(ink))]
    kx, ky = size[0] / ink.shape[1], size[1] / ink.shape[0]
    chars = [Character((int(l * kx), int(t * ky), min(size[0], int(np.ceil(r * kx))), min(size[1], int(np.ceil(b * ky)))),
                       image, answer) for row in rows for (l, t, r, b), image, answer in row]
    if not chars:
        return Reading("", "blank", None, size=size)
    text = "\n".join("".join(a.label or "" for _, _, a in row) for row in rows if row)
    counts = [len(row) for row in rows if row]
    status = "unsure" if any(c.answer.status != "ok" for c in chars) else "ok"
    confidence = float(np.prod([c.answer.confidence or 0.0 for c in chars]))
    return Reading(text, status, confidence, chars, counts, size)
