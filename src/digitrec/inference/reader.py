"""Reading whole numbers: find every character in an image, order them, recognise each.

Built on the one ink finder (preprocess.py): the image's ink map is cut into characters, each
character is prepared exactly as a single digit is (20x20 box, centre of mass), and all of them
go through the model in one batch. Nothing here assumes digits: a letters model reads letters.

    pieces      8-connected components of the ink, those linked by a fainter trace of the pen
                being one (a hairline thinner than a pixel in places); specks (a sliver of the
                largest piece's ink) are noise
    limits      pieces, lines and candidate characters are counted before the work they cost,
                and an image holding more than one reading takes on is refused (Limits)
    lines       pieces whose rows overlap are one band; bands not clearly apart are one line
                (the tops of broken characters are no line of their own); top to bottom
    characters  in a line, pieces whose columns mostly overlap are one character (the separate
                top bar of a 5, a 4 or a 7 drawn in two strokes), and a small piece right beside
                a character joins it (a pencil stroke broken in two); left to right
    line model  where a line model for the same classes is at hand (the packaged one reads
                digits: linemodel.py), it reads each line whole first, without cutting (it reads
                touching digits that no cut separates); where it is sure (LineReading.first_pass)
                its reading is kept, each character's box being the ink in the columns it covers
    touching    elsewhere the line is segmented: a character much wider than its line is tall
                may be several that touch: candidate cuts at the valleys of its column profile,
                each split scored by how confidently the model reads the parts, against reading
                it whole (dynamic programming over the places characters begin and end); where
                segmentation is not sure either, the line model's reading may still win
                (LineReading.policy)
    expected    where the caller knows how many characters a line holds, or a pattern it
                matches (expect.py), the surest candidate reading that matches is chosen
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from .expect import Expect
from .linemodel import PAD, LineModel, Read, decode_counts, spans, strip
from .linemodel import decode as decode_line
from .predictor import Answer, Predictor, answers, cell
from .decode import MAX_BYTES, MAX_PIXELS, decode, luminance, to_pixels
from .preprocess import EDGE, fit, ink_map, thicken

Box = tuple[int, int, int, int]  # left, top, right, bottom (right and bottom exclusive)
SPECK = 0.04  # pieces with less ink than this share of the largest piece's are noise
LINK = 0.2  # pieces joined by ink this strong (a hairline's fainter trace) are one piece
LINE_GAP = 0.15  # bands of ink closer than this times the taller one's height are one line...
SHORT_BAND = 0.5  # ...and so is a band shorter than this times its neighbour's, within half its height
MERGE = 0.5  # pieces sharing this share of the narrower one's columns are one character
WIDE = 0.6  # a piece wider than this times its line's height may be several characters that touch
CUTS = 6  # valleys of the column profile tried as cuts, per wide piece
MAX_WIDTH = 1.6  # no character is wider than this times its line's height
SURE_WIDTH = 0.8  # no piece wider than this times its line's height (most single digits): segmentation is sure
JOIN_GAP = 0.12  # pieces further apart than this times the line's height are never one character
STROKE = 0.3  # a piece at most this times its line's height wide may be a stroke of its neighbour (a 4's stem)
SEGMENT_COST = 2.0  # taken from every character's score: a reading prefers fewer characters...
JOIN_COST = 1.0  # ...but not by joining separate pieces (each gap joined costs this)...
CUT_COST = 1.0  # ...and not by cutting through ink (each cut costs this)
FIRST_PASS = True  # the line model reads each line first; segmentation only where it is not sure
RESCORE = False  # ...and the classifier rescores each character it reads (off: worse on validation lines)
MAX_CHARACTERS = 40  # characters one image may hold (Limits); what the others are scaled from
PIECES_PER_CHARACTER = 4  # pieces of ink one character may be in (drawn in strokes, broken by the pen)
CHARACTERS_PER_LINE = 4  # lines are allowed one per this many characters
CANDIDATES_PER_CHARACTER = 25  # candidate characters the dynamic programme scores, per character allowed


@dataclass(frozen=True)
class Limits:
    """What one image may cost the reader, all scaled from the characters it may hold: pieces of
    ink, lines, and candidate characters the dynamic programme scores (touching characters are
    tried cut at several places, each cut giving several candidates). Each is counted before the
    work it bounds and an image over it is refused (TooMuchInk), so that no upload within the
    size limit costs more than about a second on 2 cores (benchmarks/attacks.py measures it)."""

    characters: int = MAX_CHARACTERS

    def __post_init__(self):
        if self.characters < 1:
            from ..errors import UserError

            raise UserError(f"max_characters must be at least 1, not {self.characters}")

    @property
    def pieces(self) -> int:
        return PIECES_PER_CHARACTER * self.characters

    @property
    def lines(self) -> int:
        return max(1, self.characters // CHARACTERS_PER_LINE)

    @property
    def candidates(self) -> int:
        return CANDIDATES_PER_CHARACTER * self.characters

    def check(self, what: str, found: int, allowed: int) -> None:
        """Refuse the image (TooMuchInk) when `found` of `what` is more than `allowed`."""
        if found > allowed:
            from ..errors import TooMuchInk

            raise TooMuchInk(what, found, allowed, self.characters)


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
    reason: str | None = None  # why the text is unsure where no reading matched what was expected

    def to_json(self) -> dict:
        return {"text": self.text, "status": self.status, "confidence": self.confidence, "reason": self.reason,
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
        doubts = [f"{c.answer.label or 'not a digit'} at {i + 1}" for i, c in enumerate(self.characters)
                  if c.answer.status != "ok"]
        doubts += [self.reason] if self.reason else []
        flag = f"  [unsure: {', '.join(doubts)}]" if self.status == "unsure" else ""
        return f"{self.text.replace(chr(10), ' / ')}  ({100 * self.confidence:.1f}%){flag}"


# ----------------------------------------------------------------------------- finding characters


def pieces(ink: np.ndarray, limits: Limits | None = None) -> list[Piece]:
    """The ink's pieces: its 8-connected components at its half-coverage edge, those linked by a
    fainter trace of the pen (ink of at least LINK) being one piece (a hairline, thinner than a
    pixel in places, is broken at its edge but not in its trace), specks left out; more than
    `limits` allows are refused (TooMuchInk) before any is looked at."""
    from scipy import ndimage

    linked, n = ndimage.label(ink >= LINK, structure=np.ones((3, 3), bool))
    labels = np.where(ink >= EDGE, linked, 0)  # each piece is its pixels at the edge; its trace only links them
    if n == 0 or not labels.any():
        return []
    mass = ndimage.sum_labels(ink, labels, index=np.arange(1, n + 1))
    keep = mass >= SPECK * mass.max()
    if limits is not None:
        limits.check("pieces of ink", int(keep.sum()), limits.pieces)
    out = []
    for k, sl in enumerate(ndimage.find_objects(labels, max_label=n)):
        if keep[k] and sl is not None:
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


def lines(found: list[Piece]) -> list[list[Piece]]:
    """Pieces grouped into lines: a piece joins the band whose rows hold at least half of its
    own, the tallest pieces first; bands that are not clearly apart (by LINE_GAP times the taller
    one's height, across the whole width) are one line (the pieces of a broken digit can fill
    bands of their own); lines top to bottom."""
    bands: list[list] = []  # [top, bottom, pieces]
    for c in sorted(found, key=lambda p: -(p.box[3] - p.box[1])):  # the tallest first: they set the bands
        t, b = c.box[1], c.box[3]
        for band in bands:
            if min(b, band[1]) - max(t, band[0]) >= 0.5 * (b - t):
                band[0], band[1] = min(band[0], t), max(band[1], b)
                band[2].append(c)
                break
        else:
            bands.append([t, b, [c]])
    out: list[list] = []
    for t, b, row in sorted(bands, key=lambda band: band[0]):
        if out and _one_line(out[-1][1] - out[-1][0], b - t, t - out[-1][1]):
            out[-1] = [out[-1][0], max(out[-1][1], b), out[-1][2] + row]
        else:
            out.append([t, b, row])
    return [row for _, _, row in out]


def _one_line(above: int, below: int, gap: int) -> bool:
    """Are two bands of ink `above` and `below` px tall, `gap` px apart, one line? Where they are
    not clearly apart (LINE_GAP), or where one is much shorter than the other (SHORT_BAND: the
    tops or bottoms of broken characters) and no further than half the taller one's height."""
    tall, short = max(above, below), min(above, below)
    return gap < LINE_GAP * tall or (short < SHORT_BAND * tall and gap < 0.5 * tall)


def line_height(row: list[Piece]) -> float:
    """The height of a line's characters: that of its tallest pieces, not of its specks."""
    return float(np.percentile([p.box[3] - p.box[1] for p in row], 75))


def characters(row: list[Piece]) -> list[Piece]:
    """A line's pieces merged into characters, left to right: pieces sharing most of the narrower
    one's columns are one character (in a line, characters stand side by side, never stacked);
    a small piece right beside a character joins it (a stroke broken by the pen). Merged in
    rounds (every group of pieces that belong together at once) until nothing more merges."""
    height = line_height(row)
    chars = list(row)
    while len(chars) > 1:
        groups = _groups(_belong(chars, height))
        if len(groups) == len(chars):
            break
        chars = [_union_all([chars[i] for i in g]) for g in groups]
    return sorted(chars, key=lambda p: (p.box[0] + p.box[2]) / 2)


def _union_all(parts: list[Piece]) -> Piece:
    out = parts[0]
    for p in parts[1:]:
        out = _union(out, p)
    return out


def _belong(chars: list[Piece], height: float) -> np.ndarray:
    """(n, n) bool: which pairs of a line's pieces are parts of one character."""
    box = np.array([p.box for p in chars], np.float64)  # (n, 4)
    mass = np.array([p.mass for p in chars])
    l, t, r, b = box.T
    w, h = r - l, b - t
    overlap = np.minimum(r[:, None], r[None]) - np.maximum(l[:, None], l[None])  # (n, n); negative: the gap
    shared = np.maximum(overlap, 0) / np.maximum(np.minimum(w[:, None], w[None]), 1)
    small = (h < 0.45 * height) & (w < 0.45 * height)
    lighter = np.where(mass[:, None] >= mass[None], small[None], small[:, None])  # the lighter of each pair is small
    ratio = np.minimum(mass[:, None], mass[None]) / np.maximum(np.maximum(mass[:, None], mass[None]), 1e-9)
    out = (shared >= MERGE) | (lighter & (-overlap < 0.12 * height) & (ratio < 0.25))
    np.fill_diagonal(out, False)
    return out


def _groups(adjacent: np.ndarray) -> list[list[int]]:
    """The connected groups of a graph given as a symmetric (n, n) bool matrix, in order of their
    first member: each node takes the smallest label among its neighbours' until none changes
    (scipy's connected_components would cost 0.1 s of imports at every start)."""
    label = np.arange(len(adjacent))
    while True:
        new = np.minimum(label, np.where(adjacent, label[None], len(label)).min(1))
        if (new == label).all():
            break
        label = new
    return [list(np.flatnonzero(label == k)) for k in np.unique(label)]


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
    """A place a character may begin or end: an edge of a piece (`column` None) or a cut through it."""

    atom: int  # the piece it cuts, or the piece it is the left edge of
    column: int | None = None  # where the cut starts, in the piece's box
    path: np.ndarray | None = None  # (rows of the piece,) the cut's column in each row (traced once planned)


@dataclass
class Line:
    """One line, planned for the dynamic programme: its pieces, its characters' pieces (`atoms`,
    left to right), its height, the places characters may begin and end (`nodes`), and the
    candidate characters (`pairs` of nodes) the programme would score."""

    pieces: list[Piece]
    atoms: list[Piece]
    height: float
    nodes: list[Node]
    pairs: list[tuple[int, int]]


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
    edge, cuts through pieces wide enough to hold two characters (not traced yet), and the
    line's end."""
    nodes = []
    for i, piece in enumerate(atoms):
        nodes.append(Node(i))
        if piece.box[2] - piece.box[0] > WIDE * height:
            nodes += [Node(i, c) for c in cut_candidates(piece, ink)]
    return nodes + [Node(len(atoms))]


def _last(b: Node) -> int:
    """The last piece a character ending at node b holds some of."""
    return b.atom if b.column is not None else b.atom - 1


def _joinable(atoms: list[Piece], a: Node, b: Node, height: float) -> bool:
    """May the ink from a to b be one character? Not wider than any character is, and not across
    a clear gap."""
    first, last = a.atom, _last(b)
    if atoms[last].box[2] - atoms[first].box[0] > MAX_WIDTH * height:
        return False
    return all(atoms[i + 1].box[0] - atoms[i].box[2] < JOIN_GAP * height for i in range(first, last))


def plan_line(row: list[Piece], ink: np.ndarray) -> Line:
    """A line's characters' pieces, the places they may begin and end, and the candidate
    characters between them: cheap, so the work is counted before it is done (Limits)."""
    atoms, height = characters(row), line_height(row)
    nodes = _nodes(atoms, ink, height)
    pairs = []
    for i in range(len(nodes)):
        for j in range(i + 1, len(nodes)):
            if not _joinable(atoms, nodes[i], nodes[j], height):
                break  # further nodes are further right: wider still
            pairs.append((i, j))
    return Line(row, atoms, height, nodes, pairs)


def _trace(line: Line, ink: np.ndarray) -> None:
    """The cut paths of a planned line's cut nodes."""
    for node in line.nodes:
        if node.column is not None and node.path is None:
            l, t, r, b = line.atoms[node.atom].box
            weights = ink[t:b, l:r] * line.atoms[node.atom].mask
            node.path = cut_path(weights, node.column, max(2, (r - l) // 8))


Found = tuple[np.ndarray, Box, bool, np.ndarray]  # a character: input, box, whether a cut bounds it, probabilities


def segmentations(line: Line, ink: np.ndarray, predictor: Predictor) -> dict[int, tuple[float, list[Found]]]:
    """For every number of characters k a line can be split into, the split with k characters
    (merging neighbouring pieces, cutting touching ones) that scores best: {k: (score, its
    characters)}, by dynamic programming over the places characters may begin and end and the
    characters so far. A candidate character scores the model's log-confidence in it plus the
    log-likelihood of its shape for one character (ASPECT_LOG_PRIOR), less the costs of a
    character, a join and a cut; all candidates go through the model in one batch."""
    _trace(line, ink)
    atoms, nodes = line.atoms, line.nodes
    segments = {k: got for k in line.pairs if (got := _segment(atoms, ink, nodes[k[0]], nodes[k[1]])) is not None}
    if not segments:
        return {}
    keys = list(segments)
    probs = predictor.probabilities([segments[k][0] for k in keys])  # (candidates, C)
    confident = np.log(np.maximum(probs.max(1), 1e-9))
    n = len(nodes)
    best = np.full((n, n), -np.inf)  # best[j, k]: the best split of the ink up to node j into k characters
    came = np.zeros((n, n), np.int64)  # ... the candidate it ends with
    best[0, 0] = 0.0
    for c, (i, j) in enumerate(keys):  # in order of i, so every way into node i is known before it is left
        score = (confident[c] + segments[(i, j)][2] - SEGMENT_COST - (_last(nodes[j]) - nodes[i].atom) * JOIN_COST
                 - (nodes[j].column is not None) * CUT_COST)
        better = best[i, :-1] + score > best[j, 1:]
        best[j, 1:][better] = best[i, :-1][better] + score
        came[j, 1:][better] = c

    def found(c: int) -> Found:
        i, j = keys[c]
        return (*segments[keys[c]][:2], nodes[i].column is not None or nodes[j].column is not None, probs[c])

    out = {}
    for k in np.flatnonzero(np.isfinite(best[-1])):
        chosen, j = [], n - 1
        for m in range(k, 0, -1):
            chosen.append(came[j, m])
            j = keys[came[j, m]][0]
        out[int(k)] = (float(best[-1, k]), [found(c) for c in reversed(chosen)])
    if not out:  # no way through (a piece too wide to be a character): each step between nodes
        steps = [c for c, (i, j) in enumerate(keys) if j == i + 1]
        out[len(steps)] = (-np.inf, [found(c) for c in steps])
    return out


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


@dataclass
class Whole:
    """A line as the line model sees it: the strip, its frames' probabilities, and where the
    strip lies in the ink map (`k`, `left`: see linemodel.strip; `sub`, `l`, `t`: line_ink)."""

    x: np.ndarray
    frames: np.ndarray
    k: float
    left: int
    sub: np.ndarray
    l: int
    t: int

    def characters(self, reads: list[Read]) -> list[tuple[np.ndarray, Box, np.ndarray]]:
        """(model input, box in the ink map, probabilities) per character read; its box is the ink
        in the columns it covers (linemodel.spans)."""
        out, sub = [], self.sub
        for r, (s0, s1) in zip(reads, spans(reads, self.x)):
            c0 = max(0, int(np.floor(self.left + (s0 - PAD) / self.k)))
            c1 = min(sub.shape[1], int(np.ceil(self.left + (s1 - PAD) / self.k)))
            part = sub[:, c0:max(c1, c0 + 1)]
            rows, cols = np.nonzero((part >= EDGE).any(1))[0], np.nonzero((part >= EDGE).any(0))[0]
            if not len(rows):  # read where the ink is faint: the whole height of those columns
                rows, cols = np.array([0, part.shape[0] - 1]), np.array([0, part.shape[1] - 1])
            box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
            out.append((model_input(part, box), (self.l + c0 + box[0], self.t + box[1], self.l + c0 + box[2],
                                                 self.t + box[3]), r.probabilities))
        return out


def read_whole(row: list[Piece], ink: np.ndarray, model: LineModel) -> Whole:
    """A line read whole by the line model: its strip and frames (Whole; decode them with
    linemodel.decode or decode_counts, and Whole.characters gives their boxes)."""
    sub, l, t = line_ink(row, ink)
    x, k, left = strip(sub)
    return Whole(x, model.frames(x), k, left, sub, l, t)


def one_line_strip(source, limits: Limits = Limits()) -> np.ndarray | None:
    """The line model's input for an image that holds one line of characters (the line model's
    training renders such images: training/linebank.py): all the ink the reader finds there,
    taken as one line and prepared as read_whole prepares a line; None where there is none."""
    im, _, _ = decode(source)
    ink, blank, _ = ink_map(luminance(to_pixels(im)))
    found = [] if blank else pieces(ink, limits)
    return strip(line_ink(found, ink)[0])[0] if found else None


Char = tuple[Box, np.ndarray, Answer]  # a character read: box in the ink map, model input, answer


def _confidence(probs: np.ndarray) -> float:
    return float(np.prod(probs.max(1))) if len(probs) else 0.0


def _text(chars: list[Char]) -> str:
    return "".join(a.label or "" for _, _, a in chars)


@dataclass
class LineReading:
    """The ways one line can be read, each worked out once, when first asked for: segmentation's
    best split into each number of characters, and the line model's frames."""

    line: Line
    ink: np.ndarray
    predictor: Predictor
    model: LineModel | None
    top_k: int | None
    _by_count: dict | None = None
    _whole: Whole | None = None
    _reads: list[Read] | None = None
    _greedy: dict = field(default_factory=dict)  # rescore -> the line model's own reading

    @property
    def by_count(self) -> dict[int, tuple[float, list[Found]]]:
        if self._by_count is None:
            self._by_count = segmentations(self.line, self.ink, self.predictor)
        return self._by_count

    @property
    def whole(self) -> Whole:
        if self._whole is None:
            self._whole = read_whole(self.line.pieces, self.ink, self.model)
        return self._whole

    @property
    def reads(self) -> list[Read]:
        """The line model's characters, decoded greedily."""
        if self._reads is None:
            self._reads = decode_line(self.whole.frames)
        return self._reads

    def greedy(self, rescore: bool = False) -> tuple[float, list[Char]]:
        """The line model's own reading (`read` of `reads`), worked out once for each `rescore`."""
        if rescore not in self._greedy:
            self._greedy[rescore] = self.read(self.reads, rescore)
        return self._greedy[rescore]

    def cut(self, chars: list[Found]) -> tuple[float, list[Char]]:
        """Segmentation's characters as (confidence, characters), answered by the classifier."""
        classes = self.predictor.classes
        probs = np.stack([p for *_, p in chars]) if chars else np.zeros((0, len(classes)))
        return _confidence(probs), [(box, im, a) for (im, box, _, _), a
                                    in zip(chars, answers(probs, classes, self.predictor.threshold, self.top_k))]

    def read(self, reads: list[Read], rescore: bool = False) -> tuple[float, list[Char]]:
        """The line model's characters as (confidence, characters); `rescore`: each character's
        probabilities are the line model's times the classifier's on its box (normalised)."""
        got = self.whole.characters(reads)
        classes = self.predictor.classes
        probs = np.stack([p for _, _, p in got]) if got else np.zeros((0, len(classes)))
        threshold = self.model.threshold
        if rescore and got:
            probs = probs * self.predictor.probabilities([im for im, _, _ in got])
            probs, threshold = probs / probs.sum(1, keepdims=True), self.predictor.threshold
        return _confidence(probs), [(box, im, a) for (im, box, _), a
                                    in zip(got, answers(probs, classes, threshold, self.top_k))]

    def first_pass(self) -> list[Char] | None:
        """The line model's reading where it is sure of it: each character at least its
        threshold, and the characters where the pieces say they can be: each piece standing
        apart holds at least one (none was dropped, and no two pieces are one character, a join
        segmentation judges better), one narrow enough to be a single character (SURE_WIDTH)
        holds one (none doubled), and none lies between pieces; and no piece as narrow as a
        stroke (STROKE) stands close enough to its neighbour to be part of it (JOIN_GAP: a 4
        drawn in two strokes, which the line model reads as 41). None where it is not sure."""
        atoms, height = self.line.atoms, self.line.height
        width = [a.box[2] - a.box[0] for a in atoms]
        if any(b.box[0] - a.box[2] < JOIN_GAP * height and min(wa, wb) <= STROKE * height
               for a, b, wa, wb in zip(atoms, atoms[1:], width, width[1:])):
            return None
        if any(r.probabilities.max() < self.model.threshold for r in self.reads):
            return None
        chars = self.greedy(RESCORE)[1]
        centres = np.array([(l + r) / 2 for (l, _, r, _), _, _ in chars])
        held = [int(((a.box[0] <= centres) & (centres < a.box[2])).sum()) for a in atoms]
        narrow = [w <= SURE_WIDTH * height for w in width]
        if sum(held) != len(chars) or any(n < 1 or (n > 1 and one) for n, one in zip(held, narrow)):
            return None
        return chars

    def policy(self) -> tuple[float, list[Char]]:
        """Segmentation where it is sure (its characters stand apart: no piece wider than
        SURE_WIDTH times the line's height, none cut, none joined to another, the classifier
        sure of each); otherwise the line model's reading where it finds another number of
        characters; where segmentation's only doubt was a join (a 4 drawn in two strokes, or a 1
        close beside a 0), only if the line model is also the surer of the two."""
        found = max(self.by_count.values(), key=lambda v: v[0])[1] if self.by_count else []
        first = self.cut(found)
        sure = all(a.box[2] - a.box[0] <= SURE_WIDTH * self.line.height for a in self.line.atoms) \
            and not any(c for _, _, c, _ in found) and all(a.status == "ok" for _, _, a in first[1])
        if self.model is not None and not (sure and len(found) == len(self.line.atoms)):
            other = self.greedy()
            if len(other[1]) != len(first[1]) and (not sure or other[0] > first[0]):
                return other
        return first

    def matching(self, expected: Expect, most: int) -> list[tuple[float, list[Char]]]:
        """Every candidate reading that matches `expected`: segmentation's best split into each
        number of characters it allows, and the line model's best path with each number (up to
        `most`)."""
        low, high = expected.lengths()
        options = [self.cut(chars) for k, (_, chars) in self.by_count.items() if low <= k <= high]
        if self.model is not None:
            counts = decode_counts(self.whole.frames, min(high, len(self.whole.frames), most))
            options += [self.read(reads) for k, (_, reads) in counts.items() if k >= low]
        return [o for o in options if expected.matches(_text(o[1]))]


def read_row(line: Line, ink: np.ndarray, predictor: Predictor, model: LineModel | None,
             top_k: int | None, expected: Expect | None = None) -> tuple[list[Char], bool]:
    """One line's characters, left to right, and whether they match `expected` (True without it).
    Where the line model is at hand (FIRST_PASS) it reads the line first, and where it is sure
    (LineReading.first_pass) that reading is kept, each character rescored by the classifier;
    otherwise the line is segmented (LineReading.policy). Where that reading does not match
    `expected`, the surest that does (LineReading.matching) is kept instead; where none does,
    the first reading stays (and False)."""
    reading = LineReading(line, ink, predictor, model, top_k)
    chars = reading.first_pass() if model is not None and FIRST_PASS else None
    if chars is None:
        chars = reading.policy()[1]
    if expected is None or expected.matches(_text(chars)):
        return chars, True
    matching = reading.matching(expected, most=4 * (len(line.atoms) + len(chars)) + 4)
    return (max(matching, key=lambda o: o[0])[1], True) if matching else (chars, False)


def plan(ink: np.ndarray, limits: Limits) -> list[Line]:
    """The image's lines, planned (plan_line), each measure of the work checked against `limits`
    before that work is done: pieces right after labelling, then lines, then candidates."""
    rows = lines(pieces(ink, limits))
    limits.check("lines", len(rows), limits.lines)
    planned = [plan_line(row, ink) for row in rows]
    limits.check("candidate characters", sum(len(line.pairs) for line in planned), limits.candidates)
    return planned


def read(source, predictor: Predictor, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS,
         top_k: int | None = None, line_model: LineModel | Path | str | None = "auto",
         limits: Limits = Limits(), expected: Expect | None = None) -> Reading:
    """Every character in an image (bytes, a path or a PIL image), in reading order. `line_model`:
    see line_model_for. An image holding more than `limits` allows raises TooMuchInk (a
    PreprocessError), as an image that cannot be decoded does. `expected` (expect.expect: a
    number of characters or a pattern) is what each line must be: the best matching reading is
    chosen, and where no reading of a line matches, the text is `unsure` and `reason` says so."""
    model = line_model_for(predictor, line_model)
    im, _, shrunk = decode(source, max_bytes, max_pixels)
    size = (round(im.size[0] * shrunk), round(im.size[1] * shrunk))
    ink, blank, _ = ink_map(luminance(to_pixels(im)))
    if blank:
        return Reading("", "blank", None, size=size)
    got = [read_row(line, ink, predictor, model, top_k, expected) for line in plan(ink, limits)]
    rows = [chars for chars, _ in got]
    kx, ky = size[0] / ink.shape[1], size[1] / ink.shape[0]
    chars = [Character((int(l * kx), int(t * ky), min(size[0], int(np.ceil(r * kx))), min(size[1], int(np.ceil(b * ky)))),
                       image, answer) for row in rows for (l, t, r, b), image, answer in row]
    if not chars:
        return Reading("", "blank", None, size=size)
    text = "\n".join(_text(row) for row in rows if row)
    counts = [len(row) for row in rows if row]
    missed = [i + 1 for i, (chars, matched) in enumerate(got) if chars and not matched]
    reason = (f"no reading of line{'s' * (len(missed) > 1)} {', '.join(map(str, missed))} matches {expected.text} "
              f"(read: {text.replace(chr(10), ' / ')})") if missed else None
    status = "unsure" if missed or any(c.answer.status != "ok" for c in chars) else "ok"
    confidence = float(np.prod([c.answer.confidence or 0.0 for c in chars]))
    return Reading(text, status, confidence, chars, counts, size, reason)
