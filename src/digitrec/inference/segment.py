"""Splitting a line into characters where pieces touch or belong together: candidate cuts at
the valleys of a wide piece's column profile (traced as drop-fall paths), and a dynamic
programme over the places characters may begin and end that scores each candidate character
by how confidently a classifier reads it and how likely its shape is for one character.

    plan_line      the line's characters' pieces, the places characters may begin and end, and
                   the candidate characters between them: cheap, so the work is counted first
    segmentations  for every number of characters, the best split (model in one batch)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ink import EDGE
from ..marks import fit, thicken
from .reading import Character
from .find import Box, Limits, Piece, group_lines, grow, line_height, merge_pieces, pieces

WIDE = 0.6  # a piece wider than this times its line's height may be several characters that touch
CUTS = 6  # valleys of the column profile tried as cuts, per wide piece
MAX_WIDTH = 1.6  # no character is wider than this times its line's height
JOIN_GAP = 0.12  # pieces further apart than this times the line's height are never one character
SEGMENT_COST = 2.0  # taken from every character's score: a reading prefers fewer characters...
JOIN_COST = 1.0  # ...but not by joining separate pieces (each gap joined costs this)...
CUT_COST = 1.0  # ...and not by cutting through ink (each cut costs this)


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
        sub[pt - t : pb - t, pl - l : pr - l] += ink[pt:pb, pl:pr] * grow(mask)
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
    atoms, height = merge_pieces(row), line_height(row)
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


def plan(ink: np.ndarray, limits: Limits) -> list[Line]:
    """The image's lines, planned (plan_line), each measure of the work checked against `limits`
    before that work is done: pieces right after labelling, then lines, then candidates."""
    rows = group_lines(pieces(ink, limits))
    limits.check("lines", len(rows), limits.lines)
    planned = [plan_line(row, ink) for row in rows]
    limits.check("candidate characters", sum(len(line.pairs) for line in planned), limits.candidates)
    return planned


def segmentations(line: Line, ink: np.ndarray, probabilities) -> dict[int, tuple[float, list[Character]]]:
    """For every number of characters k a line can be split into, the split with k characters
    (merging neighbouring pieces, cutting touching ones) that scores best: {k: (score, its
    characters)}, by dynamic programming over the places characters may begin and end and the
    characters so far. A candidate character scores the model's log-confidence in it plus the
    log-likelihood of its shape for one character (ASPECT_LOG_PRIOR), less the costs of a
    character, a join and a cut; all candidates go through the model (`probabilities`: (28, 28)
    uint8 images -> (N, C), Predictor.probabilities) in one batch."""
    _trace(line, ink)
    atoms, nodes = line.atoms, line.nodes
    segments = {k: got for k in line.pairs if (got := _segment(atoms, ink, nodes[k[0]], nodes[k[1]])) is not None}
    if not segments:
        return {}
    keys = list(segments)
    probs = probabilities([segments[k][0] for k in keys])  # (candidates, C)
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

    def found(c: int) -> Character:
        i, j = keys[c]
        image, box = segments[keys[c]][:2]
        return Character(box, image, probs[c], cut=nodes[i].column is not None or nodes[j].column is not None)

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
