"""The line model's side of reading: which line model reads with a classifier, a line's ink as
the line model's strip (Whole), and the characters it reads there with their boxes."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..ink import EDGE, ink_map
from .decode import decode
from .find import Box, Limits, Piece, line_ink, pieces
from .linemodel import LineModel, Read, strip
from .predictor import Predictor
from .reading import Character, LineSource
from .segment import model_input


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
        raise UserError(f"the line model {choice} reads {', '.join(model.classes)}, but the checkpoint reads "
                        f"{', '.join(predictor.classes)}; pass a line model for the same classes, or --lines none")
    return model


@dataclass
class Whole:
    """A line as the line model sees it: the strip, its frames' probabilities, and where the
    strip lies in the ink map (`k`, `left`: see linemodel.strip; `sub`, `l`, `t`: line_ink), in
    the geometry of `model`'s card."""

    model: LineModel
    x: np.ndarray
    frames: np.ndarray
    k: float
    left: int
    sub: np.ndarray
    l: int
    t: int

    def characters(self, reads: list[Read]) -> list[Character]:
        """The characters read, each with its box in the ink map: the ink in the columns it covers
        (linemodel.spans), its model input and the line model's probabilities."""
        out, sub = [], self.sub
        for r, span in zip(reads, self.model.spans(reads, self.x)):
            c0, c1 = self.columns(span)
            part = sub[:, c0:max(c1, c0 + 1)]
            rows, cols = np.nonzero((part >= EDGE).any(1))[0], np.nonzero((part >= EDGE).any(0))[0]
            if not len(rows):  # read where the ink is faint: the whole height of those columns
                rows, cols = np.array([0, part.shape[0] - 1]), np.array([0, part.shape[1] - 1])
            box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
            out.append(Character((self.l + c0 + box[0], self.t + box[1], self.l + c0 + box[2], self.t + box[3]),
                                 model_input(part, box), r.probabilities, line=LineSource(self, r, span)))
        return out

    def columns(self, span: tuple[float, float]) -> tuple[int, int]:
        """The columns of `sub` that the strip's columns `span` show."""
        s0, s1 = span
        pad = self.model.card.pad
        c0 = max(0, int(np.floor(self.left + (s0 - pad) / self.k)))
        return c0, min(self.sub.shape[1], int(np.ceil(self.left + (s1 - pad) / self.k)))

    def box_of(self, span: tuple[float, float]) -> Box:
        """The box in the ink map that the strip's columns `span` show, the line's ink rows high."""
        c0, c1 = self.columns(span)
        rows = np.nonzero((self.sub >= EDGE).any(1))[0]
        top, bottom = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, self.sub.shape[0])
        return self.l + c0, self.t + top, self.l + c1, self.t + bottom


def read_whole(row: list[Piece], ink: np.ndarray, model: LineModel) -> Whole:
    """A line read whole by the line model: its strip and frames (Whole; decode them with
    linemodel.greedy or decode_counts, and Whole.characters gives their boxes)."""
    sub, l, t = line_ink(row, ink)
    x, k, left = model.strip(sub)
    return Whole(model, x, model.frames(x), k, left, sub, l, t)


def one_line_strip(source, limits: Limits = Limits()) -> np.ndarray | None:
    """The line model's input for an image that holds one line of characters (the line model's
    training renders such images: training/linebank.py): all the ink the reader finds there,
    taken as one line and prepared as read_whole prepares a line; None where there is none."""
    ink, blank, _ = ink_map(decode(source).gray())
    found = [] if blank else pieces(ink, limits)
    return strip(line_ink(found, ink)[0])[0] if found else None
