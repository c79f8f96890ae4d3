"""The model cards: what a model expects and what its outputs mean, in one validated type.

Every consumer of a model (training, evaluation, prediction, export, the server) reads the
same `ModelCard`: the class names (one per output), the normalisation of its 28x28 input,
and the calibration that turns its logits into honest probabilities and `unsure` answers.
Checkpoints and ONNX exports carry it in their metadata; `ModelCard.from_meta` reads it
from any digitrec file, old or new, and refuses a file whose card cannot work, naming the
file and the field. Torch-free: the ONNX path of `digitrec predict` uses it too.

`LineCard` is the line model's (inference/linemodel.py): its class names, `unsure` threshold
and the geometry of the strips it reads, carried in lines.onnx's metadata.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from .errors import CheckpointError

INPUT_SIZE = 28  # every digitrec model reads (B, 1, 28, 28)
# The strip geometry every line model before the LineCard was trained with: what a card that
# does not say (those files held only classes, threshold, height and stride) is taken to mean.
LINE_HEIGHT, LINE_INK_HEIGHT, LINE_PAD, LINE_STRIDE = 32, 24, 8, 4
MIN_DIVISOR = 1e-3  # smallest std and temperature a card may hold (MNIST's std is 0.31; T is 0.05 to 20)


def normalise(x, mean: float, std: float):
    """uint8 images (N, H, W) -> float32 (N, 1, H, W), as the model saw them in training:
    (x / 255 - mean) / std. A numpy array gives a numpy array, a torch tensor a tensor."""
    f = x.astype(np.float32) if isinstance(x, np.ndarray) else x.float()
    return ((f / 255.0 - mean) / std)[:, None]


@dataclass(frozen=True)
class ModelCard:
    dataset: str  # the dataset it was trained on
    classes: tuple[str, ...]  # one name per output, in output order
    mean: float  # normalisation of pixels scaled to [0, 1]
    std: float
    temperature: float = 1.0  # logits are divided by this before the softmax
    threshold: float = 0.5  # answers less confident than this are `unsure`
    calibrated: bool = False  # temperature and threshold were fitted on the validation split
    input_size: int = INPUT_SIZE
    preparation: dict | None = None  # ink.Preparation it was trained under (None: made before it was recorded)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def normalise(self, x):
        """uint8 images (N, 28, 28), numpy or torch -> the model's float input (N, 1, 28, 28)."""
        return normalise(x, self.mean, self.std)

    @property
    def background(self) -> float:
        """An empty (0) pixel after normalisation."""
        return -self.mean / self.std

    def with_calibration(self, temperature: float, threshold: float) -> "ModelCard":
        return replace(self, temperature=float(temperature), threshold=float(threshold), calibrated=True)

    def to_json(self) -> dict:
        return {**asdict(self), "classes": list(self.classes)}

    @classmethod
    def from_meta(cls, meta, source: str = "the model file") -> "ModelCard":
        """The card in a checkpoint's or export's metadata, checked field by field.

        Files written before the card existed keep it as meta["dataset"] (name, classes, mean,
        std) and meta["calibration"] (temperature, threshold); both layouts are read."""
        bad = _Checker(source)
        if not isinstance(meta, dict):
            bad(f"its metadata is {type(meta).__name__}, not a JSON object")
        raw = meta.get("card")
        if raw is None:  # digitrec-checkpoint/1
            dataset, calibration = meta.get("dataset"), meta.get("calibration") or {}
            if not isinstance(dataset, dict):
                bad("its metadata has no 'card' and no 'dataset' with the class names and normalisation")
            if not isinstance(calibration, dict):
                bad(f"its calibration is {type(calibration).__name__}, not a JSON object")
            calibrated = "temperature" in calibration and "threshold" in calibration
            raw = {"dataset": dataset.get("name", "unknown"), "classes": dataset.get("classes"),
                   "mean": dataset.get("mean"), "std": dataset.get("std"), "calibrated": calibrated,
                   **({k: calibration[k] for k in ("temperature", "threshold")} if calibrated else {})}
        if not isinstance(raw, dict):
            bad(f"its card is {type(raw).__name__}, not a JSON object")
        return bad.card(raw)

    def check_outputs(self, outputs: int, source: str) -> None:
        """The model must have one output per class name."""
        if outputs != self.num_classes:
            raise CheckpointError(f"{source}: the model has {outputs} outputs but its card lists "
                                  f"{self.num_classes} class names; the file is inconsistent, export or train it again")


@dataclass(frozen=True)
class LineCard:
    """A line model's card: (B, 1, height, W) strips, each line's ink scaled to ink_height px
    high with pad px of paper left and right -> a frame of len(classes) + 1 scores (the CTC
    blank last) every stride px; characters less confident than threshold are `unsure`."""

    classes: tuple[str, ...]  # one name per output before the blank
    threshold: float  # chosen on validation lines (training/lines.py: unsure_threshold)
    height: int = LINE_HEIGHT  # the strip's height
    ink_height: int = LINE_INK_HEIGHT  # the line's ink box, scaled to this height
    pad: int = LINE_PAD  # paper left and right of the ink
    stride: int = LINE_STRIDE  # strip pixels per output frame

    def to_json(self) -> dict:
        return {**asdict(self), "classes": list(self.classes)}

    @classmethod
    def from_meta(cls, raw, source: str = "the line model") -> "LineCard":
        """The card in a line model's metadata (lines.onnx's `digitrec.lines`, lines.pt's
        meta["card"]), checked field by field; fields an older file lacks take the defaults."""
        bad = _Checker(source, "line model card")
        if not isinstance(raw, dict):
            bad(f"it is {type(raw).__name__}, not a JSON object")
        classes = bad.classes(raw)
        size = {k: bad.whole(raw, k, getattr(cls, k), low) for k, low in
                (("height", 8), ("ink_height", 1), ("pad", 0), ("stride", 1))}
        if size["ink_height"] > size["height"]:
            bad(f"ink_height {size['ink_height']} is more than the strip's height {size['height']}")
        if "threshold" not in raw:
            bad("it has no threshold")
        return cls(classes, bad.number(raw, "threshold", low=0.0, high=1.0), **size)


class _Checker:
    """Validates a card's fields, raising CheckpointError that names the file and the field."""

    def __init__(self, source: str, what: str = "model card"):
        self.source, self.what = source, what

    def __call__(self, what: str):
        raise CheckpointError(f"{self.source} has an unusable {self.what}: {what}")

    def classes(self, raw: dict) -> tuple[str, ...]:
        classes = raw.get("classes")
        if not isinstance(classes, (list, tuple)) or not classes or not all(isinstance(c, str) for c in classes):
            self(f"classes is {str(classes)[:80]!r}, not a non-empty list of names")
        if len(set(classes)) != len(classes):
            self("classes lists the same name twice")
        return tuple(classes)

    def whole(self, raw: dict, key: str, default: int, low: int) -> int:
        v = raw.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            self(f"{key} is {v!r}; it must be a whole number of at least {low}")
        return v

    def number(self, raw: dict, key: str, default=None, low: float = -math.inf, high: float = math.inf,
               low_open: bool = False) -> float:
        v = raw.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self(f"{key} is {v!r}, not a number")
        v = float(v)
        if not math.isfinite(v) or v < low or v > high or (low_open and v <= low):
            self(f"{key} is {v!r}; it must be a finite number "
                 + (f"above {low}" if low_open else f"between {low:g} and {high:g}"))
        return v

    def card(self, raw: dict) -> ModelCard:
        classes = self.classes(raw)
        dataset = raw.get("dataset", "unknown")
        if not isinstance(dataset, str):
            self(f"dataset is {dataset!r}, not a name")
        calibrated = raw.get("calibrated", False)
        if not isinstance(calibrated, bool):
            self(f"calibrated is {calibrated!r}, not true or false")
        size = raw.get("input_size", INPUT_SIZE)
        if size != INPUT_SIZE:
            self(f"input_size is {size!r}; digitrec models read {INPUT_SIZE}x{INPUT_SIZE} images")
        return ModelCard(
            dataset=dataset, classes=tuple(classes),
            # std and temperature divide: near 0 they turn every input into inf and NaN answers.
            mean=self.number(raw, "mean", high=1.0, low=0.0), std=self.number(raw, "std", low=MIN_DIVISOR, high=10.0),
            temperature=self.number(raw, "temperature", 1.0, low=MIN_DIVISOR, high=100.0),
            threshold=self.number(raw, "threshold", 0.5, low=0.0, high=1.0), calibrated=calibrated,
            preparation=self.preparation(raw))

    def preparation(self, raw: dict) -> dict | None:
        prep = raw.get("preparation")
        if prep is not None and not (isinstance(prep, dict) and all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in prep.items())):
            self(f"preparation is {str(prep)[:80]!r}, not a table of preprocessing thresholds")
        return prep
