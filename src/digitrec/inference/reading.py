"""What a reading is: one `Character` type from the finder to the JSON, and the `Reading` of an
image that holds them, written in one place for each format (JSON, CSV, text).

A character is found (find.py, segment.py) or read by the line model (lineread.py) with its box
in the ink map (`ink_box`), its 28x28 model input and its probabilities; the reader (reader.py)
gives it its `answer` and its `box` in the original image's pixels. `line` says which model
answered: None for the classifier, else where on the line model's strip it was read, so that an
explanation shows the evidence of the model that gave the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .predictor import Answer, cell

Box = tuple[int, int, int, int]  # left, top, right, bottom (right and bottom exclusive)


@dataclass
class LineSource:
    """Where the line model read a character: its line's strip (lineread.Whole), the read
    (linemodel.Read: the frame and class), and the strip columns it covers."""

    whole: object
    read: object
    span: tuple[float, float]


@dataclass
class Character:
    ink_box: Box  # in the ink map's pixels
    image: np.ndarray = field(repr=False)  # (28, 28) uint8, the model input
    probabilities: np.ndarray = field(repr=False)  # (C,) the answering model's, over the classes
    cut: bool = False  # a cut through ink bounds it (segmentation)
    line: LineSource | None = field(default=None, repr=False)  # set where the line model answered
    answer: Answer | None = None  # given by the reader
    box: Box | None = None  # in the original image's pixels, given by the reader

    @property
    def model(self) -> str:
        return "classifier" if self.line is None else "line"

    def to_json(self) -> dict:
        return {"box": list(self.box) if self.box else None, "model": self.model, **self.answer.to_json()}


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ... 11th, 12th, 13th, ... 21st."""
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def doubt(position: int, answer: Answer) -> str:
    """In words: which character is unsure and what else it could be."""
    if answer.label is None:
        return f"the {ordinal(position)} character does not look like a {'digit' if answer.probabilities else 'character'}"
    order = sorted(answer.probabilities.items(), key=lambda kv: -kv[1])[:2]
    options = " or ".join(f"{label} ({100 * p:.0f}%)" for label, p in order)
    return f"the {ordinal(position)} character could be {options}"


@dataclass
class Reading:
    text: str  # the lines read, top to bottom, joined with a newline
    status: str  # ok | unsure (any character is) | blank (no ink)
    confidence: float | None  # the chance every character is right: the product of theirs
    characters: list[Character] = field(default_factory=list)  # in reading order
    lines: list[int] = field(default_factory=list)  # how many characters each line holds
    size: tuple[int, int] = (0, 0)  # of the image, (width, height)
    reason: str | None = None  # why the text is unsure, in words; None when it is ok
    decoded: object = field(default=None, repr=False)  # the one decode of the image (decode.Decoded)
    ink_scale: float = 1.0  # original pixels per ink-map pixel

    def to_json(self) -> dict:
        return {"text": self.text, "status": self.status, "confidence": self.confidence, "reason": self.reason,
                "lines": self.lines, "characters": [c.to_json() for c in self.characters],
                "input": {"width": self.size[0], "height": self.size[1]}}

    @staticmethod
    def csv_header(classes) -> list[str]:
        """One row per character: the reading's columns, then the character's (its Answer's)."""
        return ["status", "text", "confidence", "line", "position", "left", "top", "right", "bottom",
                *(f"char_{name}" for name in Answer.csv_header(())), *classes]

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
        """One line for people: the text (lines joined by " / "), its status and confidence, and
        in words why it is unsure."""
        if self.status == "blank":
            return "blank (no ink found)"
        flag = f"  [unsure: {self.reason}]" if self.status == "unsure" and self.reason else ""
        return f"{self.text.replace(chr(10), ' / ')}  ({100 * self.confidence:.1f}%){flag}"
