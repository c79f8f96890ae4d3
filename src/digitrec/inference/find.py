"""Finding characters: the pieces of ink in an image's ink map, grouped into lines and into
characters, and the limits of what one image may cost. No model is asked anything here.

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

segment.py cuts touching characters apart and chooses among the ways to split a line;
reader.py reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import TooMuchInk, UserError
from ..ink import EDGE

Box = tuple[int, int, int, int]  # left, top, right, bottom (right and bottom exclusive)
PIECE_SPECK = 0.04  # pieces with less ink than this share of the largest piece's are noise
LINK = 0.2  # pieces joined by ink this strong (a hairline's fainter trace) are one piece
LINE_GAP = 0.15  # bands of ink closer than this times the taller one's height are one line...
SHORT_BAND = 0.5  # ...and so is a band shorter than this times its neighbour's, within half its height
MERGE = 0.5  # pieces sharing this share of the narrower one's columns are one character
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
            raise TooMuchInk(what, found, allowed, self.characters)


@dataclass
class Piece:
    box: Box  # in the ink map's pixels
    mask: np.ndarray  # (bottom - top, right - left) bool: the piece's pixels inside its box
    mass: float  # its ink


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
    keep = mass >= PIECE_SPECK * mass.max()
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


def group_lines(found: list[Piece]) -> list[list[Piece]]:
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


def merge_pieces(row: list[Piece]) -> list[Piece]:
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


def grow(mask: np.ndarray) -> np.ndarray:
    """The mask and its 8 neighbours: keep the anti-aliased rim of each stroke."""
    p = np.pad(mask, 1)
    out = np.zeros_like(mask)
    h, w = mask.shape
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out |= p[dy : dy + h, dx : dx + w]
    return out


def line_ink(row: list[Piece], ink: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Only one line's ink (its pieces and their rims, nothing of the lines above or below), in
    the line's box: (ink, left, top)."""
    l, t = min(p.box[0] for p in row), min(p.box[1] for p in row)
    r, b = max(p.box[2] for p in row), max(p.box[3] for p in row)
    sub = np.zeros((b - t, r - l), np.float32)
    for p in row:
        pl, pt, pr, pb = p.box
        np.maximum(sub[pt - t : pb - t, pl - l : pr - l], ink[pt:pb, pl:pr] * grow(p.mask),
                   out=sub[pt - t : pb - t, pl - l : pr - l])
    return sub, l, t
