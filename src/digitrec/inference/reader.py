"""Reading whole numbers: every character in an image, in reading order, each recognised.

Built on the one decode (decode.py) and the one ink finder (ink.py): the image's ink map is cut
into characters (find.py), each prepared exactly as a single digit is (20x20 box, centre of
mass), and read in one batch. Nothing here assumes digits: a letters model reads letters.

    line model  where a line model for the same classes is at hand (the packaged one reads
                digits: lineread.py), it reads each line whole first, without cutting (it reads
                touching digits that no cut separates); where it is sure (LineReading.first_pass)
                its reading is kept, each character's box being the ink in the columns it covers
    touching    elsewhere the line is segmented (segment.py: candidate cuts, and a dynamic
                programme scoring each split by how confidently the classifier reads the parts);
                where segmentation is not sure either, the line model's reading may still win
                (LineReading.policy)
    expected    where the caller knows how many characters a line holds, or a pattern it
                matches (expect.py), the surest candidate reading that matches is chosen

Measured elsewhere, and so not switches here: rescoring the line model's characters with the
classifier read fewer validation lines right (docs/notes), and the line model reading first is
what the whole-number figures in docs/results.md were measured with.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..ink import ink_map
from .decode import MAX_BYTES, MAX_PIXELS, decode
from .expect import Expect
from .find import Limits
from .linemodel import LineModel, Read, decode_counts, greedy
from .lineread import Whole, line_model_for, read_whole
from .predictor import Predictor, answers
from .reading import Character, Reading, doubt
from .segment import JOIN_GAP, Line, plan, segmentations

SURE_WIDTH = 0.8  # no piece wider than this times its line's height (most single digits): segmentation is sure
STEM = 0.3  # a piece at most this times its line's height wide, closer than JOIN_GAP, may be a stroke of its neighbour

Option = tuple[float, list[Character]]  # a way to read a line: its confidence, its characters


def _confidence(probs: np.ndarray) -> float:
    return float(np.prod(probs.max(1))) if len(probs) else 0.0


def _text(chars: list[Character]) -> str:
    """The characters' labels; "?" for a character that is no character of the model's (not_a_digit)."""
    return "".join(c.answer.label or "?" for c in chars)


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
    _greedy: Option | None = None

    @property
    def by_count(self) -> dict[int, tuple[float, list[Character]]]:
        if self._by_count is None:
            self._by_count = segmentations(self.line, self.ink, self.predictor.probabilities)
        return self._by_count

    @property
    def whole(self) -> Whole:
        if self._whole is None:
            self._whole = read_whole(self.line.pieces, self.ink, self.model)
        return self._whole

    def answered(self, chars: list[Character], threshold: float) -> Option:
        """Characters with their answers (unsure under `threshold`), and the reading's confidence."""
        classes = self.predictor.classes
        probs = np.stack([c.probabilities for c in chars]) if chars else np.zeros((0, len(classes)))
        got = answers(probs, classes, threshold, self.top_k)
        return _confidence(probs), [replace(c, answer=a) for c, a in zip(chars, got)]

    def cut(self, chars: list[Character]) -> Option:
        """Segmentation's characters, answered by the classifier."""
        return self.answered(chars, self.predictor.threshold)

    def read(self, reads: list[Read]) -> Option:
        """The line model's characters, answered by it."""
        return self.answered(self.whole.characters(reads), self.model.threshold)

    def greedy(self) -> Option:
        """The line model's own reading (its best symbol at every frame), worked out once."""
        if self._greedy is None:
            self._greedy = self.read(greedy(self.whole.frames))
        return self._greedy

    def first_pass(self) -> list[Character] | None:
        """The line model's reading where it is sure of it: each character at least its
        threshold, and the characters where the pieces say they can be: each piece standing
        apart holds at least one (none was dropped, and no two pieces are one character, a join
        segmentation judges better), one narrow enough to be a single character (SURE_WIDTH)
        holds one (none doubled), and none lies between pieces; and no piece as narrow as a
        stroke (STEM) stands close enough to its neighbour to be part of it (JOIN_GAP: a 4
        drawn in two strokes, which the line model reads as 41). None where it is not sure."""
        atoms, height = self.line.atoms, self.line.height
        width = [a.box[2] - a.box[0] for a in atoms]
        if any(b.box[0] - a.box[2] < JOIN_GAP * height and min(wa, wb) <= STEM * height
               for a, b, wa, wb in zip(atoms, atoms[1:], width, width[1:])):
            return None
        chars = self.greedy()[1]
        if any(c.probabilities.max() < self.model.threshold for c in chars):
            return None
        centres = np.array([(c.ink_box[0] + c.ink_box[2]) / 2 for c in chars])
        held = [int(((a.box[0] <= centres) & (centres < a.box[2])).sum()) for a in atoms]
        narrow = [w <= SURE_WIDTH * height for w in width]
        if sum(held) != len(chars) or any(n < 1 or (n > 1 and one) for n, one in zip(held, narrow)):
            return None
        return chars

    def policy(self) -> Option:
        """Segmentation where it is sure (its characters stand apart: no piece wider than
        SURE_WIDTH times the line's height, none cut, none joined to another, the classifier
        sure of each); otherwise the line model's reading where it finds another number of
        characters; where segmentation's only doubt was a join (a 4 drawn in two strokes, or a 1
        close beside a 0), only if the line model is also the surer of the two."""
        found = max(self.by_count.values(), key=lambda v: v[0])[1] if self.by_count else []
        first = self.cut(found)
        sure = all(a.box[2] - a.box[0] <= SURE_WIDTH * self.line.height for a in self.line.atoms) \
            and not any(c.cut for c in found) and all(c.answer.status == "ok" for c in first[1])
        if self.model is not None and not (sure and len(found) == len(self.line.atoms)):
            other = self.greedy()
            if len(other[1]) != len(first[1]) and (not sure or other[0] > first[0]):
                return other
        return first

    def matching(self, expected: Expect, most: int) -> list[Option]:
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
             top_k: int | None, expected: Expect | None = None) -> tuple[list[Character], bool]:
    """One line's characters, left to right, and whether they match `expected` (True without it).
    Where the line model is at hand it reads the line first, and where it is sure
    (LineReading.first_pass) that reading is kept; otherwise the line is segmented
    (LineReading.policy). Where that reading does not match `expected`, the surest that does
    (LineReading.matching) is kept instead; where none does, the first reading stays (and False)."""
    reading = LineReading(line, ink, predictor, model, top_k)
    chars = reading.first_pass() if model is not None else None
    if chars is None:
        chars = reading.policy()[1]
    if expected is None or expected.matches(_text(chars)):
        return chars, True
    matching = reading.matching(expected, most=4 * (len(line.atoms) + len(chars)) + 4)
    return (max(matching, key=lambda o: o[0])[1], True) if matching else (chars, False)


def read(source, predictor: Predictor, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS,
         top_k: int | None = None, line_model: LineModel | Path | str | None = "auto",
         limits: Limits = Limits(), expected: Expect | None = None) -> Reading:
    """Every character in an image (bytes, a path, a PIL image or a Decoded), in reading order.
    `line_model`: see lineread.line_model_for. An image holding more than `limits` allows (also
    more characters than limits.characters once read) raises TooMuchInk (a PreprocessError), as
    an image that cannot be decoded does. `expected` (expect.expect: a number of characters or a
    pattern) is what each line must be: the best matching reading is chosen, and where no reading
    of a line matches, the text is `unsure` and `reason` says so."""
    model = line_model_for(predictor, line_model)
    decoded = decode(source, max_bytes, max_pixels)
    ink, blank, _ = ink_map(decoded.gray())
    size, scale = decoded.size, (decoded.size[0] / ink.shape[1], decoded.size[1] / ink.shape[0])
    empty = Reading("", "blank", None, size=size, decoded=decoded, ink_scale=scale[0])
    if blank:
        return empty
    got = [read_row(line, ink, predictor, model, top_k, expected) for line in plan(ink, limits)]
    rows = [chars for chars, _ in got if chars]
    chars = [replace(c, box=_scaled(c.ink_box, scale, size)) for row in rows for c in row]
    if not chars:
        return empty
    limits.check("characters", len(chars), limits.characters)
    text = "\n".join(_text(row) for row in rows)
    missed = [i + 1 for i, (row, matched) in enumerate(got) if row and not matched]
    doubts = [doubt(i + 1, c.answer) for i, c in enumerate(chars) if c.answer.status != "ok"]
    if missed:
        doubts.append(f"no reading of line{'s' * (len(missed) > 1)} {', '.join(map(str, missed))} matches "
                      f"{expected.text} (read: {text.replace(chr(10), ' / ')})")
    confidence = float(np.prod([c.answer.confidence or 0.0 for c in chars]))
    return Reading(text, "unsure" if doubts else "ok", confidence, chars, [len(row) for row in rows], size,
                   "; ".join(doubts) or None, decoded, scale[0])


def _scaled(box, k: tuple[float, float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A box in the ink map -> in the original's pixels (k: of them per ink-map pixel, across and
    down), within the image."""
    (l, t, r, b), (kx, ky) = box, k
    return int(l * kx), int(t * ky), min(size[0], int(np.ceil(r * kx))), min(size[1], int(np.ceil(b * ky)))
