"""Answers: a model behind one small class, and the `Answer` every interface shows.

Every answer carries a status a person can act on (ok, unsure, not_a_digit, blank: see `Answer`),
the reason in words when it is not ok, and, where the model read something, all class
probabilities (temperature-scaled, as calibrated on the validation split) and the top guesses.

`Answer` is built in one place (`answers()`, which `Predictor.predict` calls) and written in one
place for each format: JSON (`to_json`, which the API and the page read), CSV (`csv_header`,
`csv_rows`) and text (`describe`). A new field added to `Answer` reaches all of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from ..errors import PreprocessError  # noqa: F401  (re-exported for callers of predict_image)
from ..ink import PREPARATION, Preparation
from .backends import open_model
from .preprocess import MAX_BYTES, MAX_PIXELS, Preprocessed, preprocess
from .textbook import textbook

_TABLE = ("probabilities", "top")  # fields that are tables, not single values: CSV spreads them out
BLANK_REASON = "no ink found: nothing in the image differs from the paper"  # the reason of every blank answer
NO_INK_LEFT_REASON = ("ink was found, but nothing in it is like a {noun}: only specks, noise, rule lines or a "
                      "frame, which are left out")  # not_a_digit where the ink finder kept nothing
# A flat answer: the best class is under FLAT times the 1/C of a blind guess, i.e. no class stands
# out even twice as likely as chance (and under DOUBT, a third). Why the top probability, and 2:
# the shipped model was trained to answer 1/C for every class on shapes that are no character
# (outlier exposure), and answers its `unsure` threshold (81%) or more for 99.3% of MNIST test
# digits (README); an honest doubt between two or three classes leaves the best at a third or more
# (DOUBT), and stays `unsure` whatever C is: with 10 classes only a spread over more than half of
# them falls under 2/C = 20%. Measured on the packaged model: dots, blobs, frames and letters
# answer 10-11% at their 90th percentile, scribbles 10% at the median; drawn digits 97% at the
# least (the rule's tests in tests/test_predict.py).
FLAT = 2.0
DOUBT = 1 / 3


@dataclass
class Answer:
    """What the model answers for one image. `status` is one of
        ok           the model is at least as confident as its card's `unsure` threshold
        unsure       it is less confident: about half of the validation errors fall here
        not_a_digit  there is ink, but nothing in it is a character: label and confidence None.
                     Either the model spreads its answer nearly evenly over the classes (its
                     best class under FLAT times the 1/C of a blind guess; the shipped model was
                     trained to answer equal probabilities for shapes that are no character):
                     then the probabilities are kept, flat as they are; or the ink held nothing
                     that survived preprocessing (specks, noise, rule lines, a frame; the caller
                     says so with `answers(inked=...)`): then no probabilities and no top
        blank        the image holds no ink, nothing to recognise: label and confidence None, no
                     probabilities and no top (a model's answer for an empty input means nothing)
    `reason` says in words why the status is not ok (the same words in JSON, CSV and text)."""

    status: str  # ok | unsure | not_a_digit | blank (see the module's docstring)
    label: str | None  # the most probable class; None when not_a_digit or blank
    confidence: float | None  # the label's calibrated probability; None when not_a_digit or blank
    reason: str | None = None  # why the status is not ok, in words; None when it is ok
    probabilities: dict[str, float] = field(default_factory=dict)  # every class, in class order; {} when blank
    top: list[dict] = field(default_factory=list)  # the k best: [{"label", "probability"}], best first; [] when blank

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def csv_header(classes) -> list[str]:
        return [f.name for f in fields(Answer) if f.name not in _TABLE] + list(classes)

    def csv_rows(self) -> list[list[str]]:
        """One row: single values as text (floats to 6 places, None empty), then every class
        probability (none for an answer without probabilities: those cells stay empty)."""
        return [[cell(getattr(self, f.name)) for f in fields(self) if f.name not in _TABLE] + [
            f"{p:.6f}" for p in self.probabilities.values()]]

    def describe(self) -> str:
        """One line for people: the label and the best guesses, or why there is none."""
        if self.status == "blank":
            return f"blank: {self.reason or BLANK_REASON}"
        if self.label is None:
            return f"not a digit: {self.reason}" if self.reason else "not a digit"
        guesses = ", ".join(f"{t['label']} {100 * t['probability']:.1f}%" for t in self.top)
        return f"{self.label}  ({guesses})" + (f"  [unsure: {self.reason}]" if self.status == "unsure" else "")


def cell(v) -> str:
    """A single value as a CSV cell: floats to 6 places, None empty."""
    return "" if v is None else f"{v:.6f}" if isinstance(v, float) else str(v)


def noun(classes) -> str:
    """What one class is, for the words of a reason: digit when every class is one, else character."""
    return "digit" if classes and all(str(c).isdigit() for c in classes) else "character"


def unsure_reason(p: np.ndarray, classes: list[str], threshold: float) -> str:
    """Why an answer with probabilities `p` is unsure: its confidence against the threshold, and
    the runner-up; or, where the answer is flat (`is_flat`), that it is no character at all."""
    order = np.argsort(-p, kind="stable")
    if is_flat(p):
        return (f"this does not look like a {noun(classes)}: the model gives every class about the same "
                f"chance (at most {100 * p[order[0]]:.0f}%, where a blind guess among {len(p)} gets "
                f"{100 / len(p):.0f}%)")
    why = f"{100 * p[order[0]]:.0f}% is below the {100 * threshold:.0f}% this model needs to be sure"
    return why + (f"; it could also be {classes[order[1]]} ({100 * p[order[1]]:.0f}%)" if len(p) > 1 else "")


def is_flat(p: np.ndarray) -> bool:
    """Whether probabilities `p` (C,) say nothing: the best under FLAT times the 1/C of a blind
    guess, and under DOUBT (with few classes, a doubt between two or three is still a doubt)."""
    return float(p.max()) < min(FLAT / len(p), DOUBT)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits, stable for any magnitudes."""
    e = np.exp(z - z.max(1, keepdims=True, initial=-np.inf))
    return e / e.sum(1, keepdims=True)


def answers(probs: np.ndarray, classes: list[str], threshold: float, top_k: int | None = None,
            blank: list[bool] | None = None, inked: list[bool] | None = None) -> list[Answer]:
    """(N, C) probabilities -> N answers: the label, `unsure` below `threshold`, `not_a_digit`
    where the answer is flat (is_flat), the k best (all when top_k is None). An image marked
    `blank` (no model input: nothing survived preprocessing) gets a blank answer, or, where
    `inked` says the image held ink all the same, a not_a_digit one; neither carries
    probabilities, which for an empty input mean nothing."""
    k = min(top_k or len(classes), len(classes))
    out = []
    for i, p in enumerate(probs):
        if blank is not None and blank[i]:
            ink = inked is not None and inked[i]
            out.append(Answer("not_a_digit", None, None, NO_INK_LEFT_REASON.format(noun=noun(classes)))
                       if ink else Answer("blank", None, None, BLANK_REASON))
            continue
        idx = np.argsort(-p, kind="stable")[:k]  # best first; ties in class order
        top = [{"label": classes[j], "probability": float(p[j])} for j in idx]
        probabilities = dict(zip(classes, p.tolist()))
        if is_flat(p):
            out.append(Answer("not_a_digit", None, None, unsure_reason(p, classes, threshold), probabilities, top))
            continue
        status = "unsure" if top[0]["probability"] < threshold else "ok"
        reason = unsure_reason(p, classes, threshold) if status == "unsure" else None
        out.append(Answer(status, top[0]["label"], top[0]["probability"], reason, probabilities, top))
    return out


def preparation_changes(card) -> list[str]:
    """How the preprocessing a model's card records differs from the one in use ('name a -> b'
    each); none for a card that records none (made before they were recorded)."""
    if card.preparation is None:
        return []
    return Preparation.from_json(card.preparation).differences(PREPARATION)


class Predictor:
    """A model ready to answer: `Predictor(path).predict([img28, ...]) -> [Answer, ...]`.

    `checkpoint` None means the pretrained model shipped with digitrec; a path is a checkpoint
    or an ONNX export. `backend` is torch, onnx (a checkpoint is exported first, once) or auto
    (backends.resolve_backend; what `digitrec predict` and `serve` use). Images are (28, 28)
    uint8 arrays, white ink on black, as `preprocess()` returns them. `threads` caps ONNX
    Runtime's threads per prediction (0: its default); torch's are set process-wide.
    """

    def __init__(self, checkpoint: Path | str | None = None, backend: str = "auto", device: str = "cpu",
                 threads: int = 0):
        from ..util import say

        self._model = open_model(checkpoint, backend, device, threads)
        self.card, self.meta, self.path = self._model.card, self._model.meta, self._model.path
        self.backend, self.device = self._model.name, self._model.device
        self.classes: list[str] = list(self.card.classes)
        blank = self._model(self.card.normalise(np.zeros((1, 28, 28), np.uint8)))  # (1, C)
        self.card.check_outputs(blank.shape[-1], str(self.path))
        if not np.isfinite(blank).all():
            from ..errors import CheckpointError

            raise CheckpointError(f"{self.path}: the model's outputs for a blank image are not finite numbers "
                                  "(NaN or infinite weights); the file is damaged, train or export it again")
        changed = preparation_changes(self.card)
        if changed:
            say(f"warning: {self.path} was trained on inputs made under other preprocessing thresholds than "
                f"this digitrec uses ({', '.join(changed)}); its answers on photos and scans may be worse than "
                "its metrics say: train it again, or serve it with the digitrec it was trained with")
        if not self.card.calibrated:
            say(f"warning: {self.path} carries no calibration (is it a last.pt?); using temperature 1 "
                "and an `unsure` threshold of 0.5. The run's best.pt is calibrated.")

    @property
    def threshold(self) -> float:
        return self.card.threshold

    def info(self) -> dict:
        return {"checkpoint": self.path.name, "model": self._model.model.get("name"),
                "dataset": self.card.dataset, "classes": self.classes, "backend": self.backend,
                "temperature": self.card.temperature, "threshold": self.card.threshold,
                "calibrated": self.card.calibrated, "test_accuracy": self.meta.get("metrics", {}).get("test_accuracy")}

    def probabilities(self, images) -> np.ndarray:
        """(28, 28) uint8 images -> (N, C) calibrated probabilities, one forward pass."""
        x = np.stack([np.asarray(im, dtype=np.uint8) for im in images]) if len(images) else np.zeros((0, 28, 28))
        return softmax(self._model(self.card.normalise(x)) / self.card.temperature)

    def predict(self, images, top_k: int | None = None) -> list[Answer]:
        """Answers for a batch of (28, 28) uint8 images or of what preprocess() returned (Preprocessed):
        label, status, confidence, all probabilities, top-k."""
        arrays = [im.image if isinstance(im, Preprocessed) else np.asarray(im) for im in images]
        blank = [not a.any() for a in arrays]
        inked = [isinstance(im, Preprocessed) and im.found_ink for im in images]
        return answers(self.two_views(images, arrays, blank), self.classes, self.card.threshold, top_k, blank, inked)

    def two_views(self, images, arrays: list[np.ndarray], blank: list[bool]) -> np.ndarray:
        """(N, C) probabilities of each image's input; for what preprocess() returned (a
        Preprocessed, which holds the decode) that the model is not sure of (under its threshold),
        the mean with those of the textbook preparation of the same decode where that finds ink
        (textbook.py: a plain crop, 20x20 fit, centre of mass). The two fail apart: a
        low-resolution scan that preprocess() breaks into pieces is whole to the textbook crop, and
        a form's frame that spoils the crop is left out by preprocess(). Chosen on validation
        renders (docs/notes/world-handwriting.md): the mean of 21 conditions 99.33 -> 99.56%,
        documents 95.5 -> 96.0%, with as many answers unsure and as few sure and wrong as before
        (the mean everywhere: 99.62%, but a quarter of all answers unsure)."""
        probs = self.probabilities(arrays)
        doubt = [i for i, im in enumerate(images) if isinstance(im, Preprocessed) and not blank[i]
                 and probs[i].max() < self.card.threshold]
        views = [textbook(images[i].decoded) for i in doubt]
        keep = [i for i, v in zip(doubt, views) if v.any()]
        if keep:
            probs[keep] = (probs[keep] + self.probabilities([v for v in views if v.any()])) / 2
        return probs

    def predict_image(self, source, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS,
                      top_k: int | None = None) -> tuple[Answer, Preprocessed]:
        """Any image -> (answer, the preprocessed input, which holds the one decode). Raises PreprocessError."""
        pre = preprocess(source, max_bytes, max_pixels)
        return self.predict([pre], top_k)[0], pre
