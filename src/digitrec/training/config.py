"""Training configuration: `TrainConfig`, its checks, and the named recipes. Free of PyTorch
imports, so the CLI can build its `--help` (every option and default, enum options as
`choices`, read from the `Literal` annotations below) and refuse bad options before torch loads."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Literal

from ..errors import CheckpointError, DigitrecError, UserError

Optimizer = Literal["adam", "adamw", "sgd"]  # sgd: Nesterov momentum 0.9
Schedule = Literal["constant", "cosine", "onecycle"]  # onecycle: linear warm-up, linear decay
Device = Literal["auto", "cpu", "cuda", "mps"]
Amp = Literal["auto", "off", "bf16"]
Keep = Literal["best", "last"]
Graph = Literal["auto", "on", "off"]
FinetuneDevice = Literal["cpu", "cuda", "mps"]


@dataclass
class TrainConfig:
    model: str = "seed"  # a name from the model registry
    model_args: dict = field(default_factory=dict)  # extra keyword arguments for the model
    dataset: str = "mnist"  # a registered dataset, or a folder of IDX files
    data_dir: str | None = None  # default: $DIGITREC_DATA or ~/.cache/digitrec
    epochs: float = 6  # may be fractional: training stops after that share of the last epoch
    batch_size: int = 128  # images per optimiser step (the whole batch, over all processes)
    optimizer: Optimizer = "adam"  # adam | adamw | sgd (Nesterov momentum 0.9)
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.0  # decoupled (AdamW) or L2 (adam, sgd), on weights only: not biases or norms
    beta1: float = 0.9  # Adam's and AdamW's decay of the gradient's running mean...
    beta2: float = 0.999  # ...and of its square's
    schedule: Schedule = "cosine"  # constant | cosine | onecycle (linear warm-up, linear decay)
    warmup: float = 0.0  # share of all steps spent warming up (cosine, onecycle)
    label_smoothing: float = 0.0  # share of the target spread evenly over every class
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0 = off
    augment: bool = False  # random affine transform per image (rotate, scale, shear, shift)
    aug_rotate: float = 10.0  # with --augment: largest rotation, degrees
    aug_scale: float = 0.10  # with --augment: largest change of size, as a share
    aug_shear: float = 0.15  # with --augment: largest shear
    aug_translate: float = 2.0  # with --augment: largest shift, pixels
    aug_elastic: float = 0.0  # elastic distortion: largest displacement in pixels (0 = off)
    aug_stroke: float = 0.0  # stroke width: up to this share of a 3x3 dilation or erosion (0 = off)
    aug_blur: float = 0.0  # resolution loss: Gaussian blur with sigma up to this many pixels (0 = off)
    aug_contrast: float = 0.0  # ink raised to a power in [1/(1+c), 1+c]: soft or hard strokes (0 = off)
    outliers: float = 0.0  # shapes that are not one character added to each batch, as a share of it, trained towards equal probabilities (0 = off)
    real_world: float = 0.0  # share of each batch's digits drawn instead from training digits rendered under real-world conditions and prepared by preprocess(), as users' images are (training/renders.py; 0 = off)
    real_world_bank: int = 30000  # renders in that bank (made once, cached beside the data)
    real_sets: float = 0.0  # share of each batch's digits drawn instead from real handwriting beyond MNIST (USPS and Semeion training writers), drawn on paper and prepared by preprocess() (data/real.py; 0 = off)
    styles: float = 0.0  # share of each batch's digits drawn instead from training digits written the continental way: flagged 1, crossed 7, closed 4, hooked 9, slashed 0 (training/styles.py; 0 = off)
    style_bank: int = 12000  # styled digits in that bank (made once per run)
    teacher: str = ""  # distillation: checkpoints (comma-separated) whose mean probabilities on each training image join its label as the target ("" = off)
    distill: float = 0.5  # with --teacher: the teachers' share of the target (the rest: the label, smoothed)
    val_size: int = 5000  # validation images carved from the training set
    split_seed: int = 0  # fixed, so every run and seed is chosen on the same validation set
    seed: int = 0  # model initialisation, shuffling and augmentation
    device: Device = "auto"  # auto | cpu | cuda | mps
    threads: int = 0  # torch CPU threads; 0 = PyTorch's default
    amp: Amp = "auto"  # auto | off | bf16: bfloat16 autocast; auto = on for CUDA, off for CPU (slower there)
    channels_last: bool = False  # channels-last memory (faster convolution stacks on a CPU)
    compile: bool = False  # torch.compile the model (compile time reported separately)
    graph: Graph = "auto"  # capture the whole step in a CUDA graph: auto = on CUDA where it can (capture is warm-up)
    eval_every: int = 1  # evaluate on validation every N epochs (and always at the end)
    keep: Keep = "best"  # best.pt holds: best = the epoch with the best validation accuracy | last = the final weights

    def check(self) -> "TrainConfig":
        """Refuse, before anything is loaded, options that cannot work."""
        for name, allowed in choices().items():
            if getattr(self, name) not in allowed:
                raise UserError(f"unknown {name} {getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        if not (self.epochs > 0 and self.batch_size > 0 and self.lr > 0) or not math.isfinite(self.epochs * self.lr):
            raise UserError("--epochs, --batch-size and --lr must be positive")
        if min(self.aug_elastic, self.aug_stroke, self.aug_blur, self.aug_contrast) < 0 or self.aug_stroke > 1:
            raise UserError("--aug-elastic, --aug-blur and --aug-contrast must be at least 0, --aug-stroke in [0, 1]")
        if not 0 <= self.ema < 1 or not 0 <= self.label_smoothing < 1 or not 0 <= self.warmup < 1:
            raise UserError("--ema, --label-smoothing and --warmup must be in [0, 1)")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise UserError("--beta1 and --beta2 must be in [0, 1)")
        if not all(0 <= v <= 1 for v in (self.outliers, self.real_world, self.real_sets, self.styles)):
            raise UserError("--outliers, --real-world, --real-sets and --styles are shares of the batch, in [0, 1]")
        if self.real_world + self.real_sets + self.styles > 1:
            raise UserError("--real-world, --real-sets and --styles together replace at most the whole batch")
        if self.real_world and self.real_world_bank < 1:
            raise UserError("--real-world-bank must be at least 1")
        if not 0 <= self.distill <= 1:
            raise UserError("--distill is the teachers' share of the target, in [0, 1]")
        if self.val_size < 1 or self.eval_every < 1 or self.threads < 0:
            raise UserError("--val-size and --eval-every must be at least 1, --threads at least 0")
        if not isinstance(self.model_args, dict):
            raise UserError(f"model_args must be a dict of keyword arguments, not {self.model_args!r}")
        return self

    @classmethod
    def from_json(cls, raw, source: str = "the saved options", error: type[DigitrecError] = CheckpointError) -> "TrainConfig":
        """The options a run saved (a checkpoint's meta["config"], a run's config.json), read back
        as the type: options missing from an older file take the defaults above; an unknown
        option, or a value of the wrong type, is refused (`error`), naming `source` and the option."""
        return from_json(cls, raw, source, error)


@dataclass
class FinetuneConfig:
    """Options of `digitrec finetune` (finetune.py)."""

    steps: int = 0  # optimiser steps; 0 = 12 passes over the corrections kept for training, at least 200
    lr: float = 1e-3  # peak learning rate (AdamW), decaying linearly to 0
    anchor: float = 1e-2  # pull towards the starting weights: this times their squared distance (L2-SP; 0 = off)
    batch: int = 32  # corrections per step (drawn with replacement, each with a random affine transform)
    replay: int = 96  # replayed training digits of the model's dataset per step
    holdout: float = 0.25  # share of the corrections kept aside to measure the result
    seed: int = 0  # the split, the batches and the transforms
    device: FinetuneDevice = "cpu"  # cpu | cuda | mps
    data_dir: str | None = None  # the model's dataset is read from here (default: $DIGITREC_DATA or ~/.cache/digitrec)

    def check(self) -> "FinetuneConfig":
        if self.steps < 0 or self.lr <= 0 or self.batch < 1 or self.replay < 0 or not 0 <= self.holdout < 1 \
                or self.anchor < 0:
            raise UserError("--steps must be >= 0, --lr > 0, --batch >= 1, --replay >= 0, --holdout in [0, 1), "
                            "--anchor >= 0")
        return self


@dataclass
class LineConfig:
    """Options of `digitrec train-lines` (training/lines.py)."""

    steps: int = 12000  # optimiser steps (the shipped line model's: 38 minutes on 2 cores)
    batch: int = 32  # lines per step, all of one length
    lr: float = 3e-3  # peak learning rate (AdamW, one-cycle)
    weight_decay: float = 1e-4  # AdamW's decoupled weight decay
    width: int = 32  # channels of the first convolution; the rest scale with it
    max_length: int = 10  # lines hold 1 to this many digits
    val_lines: int = 1000  # validation lines, built from the validation split
    seed: int = 0  # the network's initial weights, the lines drawn and their order
    val_size: int = 5000  # the training digits held out for validation lines (as `digitrec train`)
    dataset: str = "mnist"  # a registered dataset or a folder of IDX files
    conditions: float = 0.5  # share of each batch drawn from lines rendered under real-world conditions (linebank.py; 0 = off)
    bank: int = 12000  # lines in that bank, rendered once and cached beside the data
    init: str = ""  # a lines.onnx or lines.pt to start from (default: random weights)
    data_dir: str | None = None  # data and rendered-line cache folder (default: $DIGITREC_DATA or ~/.cache/digitrec)

    def check(self) -> "LineConfig":
        if min(self.steps, self.batch, self.width // 2, self.max_length, self.val_lines) < 1 or self.lr <= 0:
            raise UserError("--steps, --batch, --max-length and --val-lines must be at least 1, --width at least 2, "
                            "--lr > 0")
        return self

    def same_run(self, other: "LineConfig") -> bool:
        """Whether a state saved under `other` goes on under these options (where the data lie does not matter)."""
        return replace(self, data_dir=None) == replace(other, data_dir=None)


def choices(cls=TrainConfig) -> dict[str, tuple[str, ...]]:
    """The options of a config type whose values are a fixed set, and that set (from the Literal annotations)."""
    hints = typing.get_type_hints(cls)
    return {f.name: typing.get_args(hints[f.name]) for f in fields(cls)
            if typing.get_origin(hints[f.name]) is Literal}


def from_json(cls, raw, source: str, error: type[DigitrecError] = CheckpointError):
    """An instance of the config dataclass `cls` from a JSON object: missing fields take their
    defaults; unknown fields and values of the wrong type raise `error`, in words."""
    if not isinstance(raw, dict):
        raise error(f"{source}: its training options are {type(raw).__name__}, not a JSON object")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise error(f"{source} has training options this digitrec does not know: {', '.join(unknown)}")
    hints, enums = typing.get_type_hints(cls), choices(cls)
    for name, value in raw.items():
        if name in enums:
            ok, wanted = value in enums[name], "one of " + ", ".join(enums[name])
        else:
            ok, wanted = _fits(value, hints[name]), _TYPE_NAMES.get(hints[name], str(hints[name]))
        if not ok:
            raise error(f"{source}: its training option {name} is {value!r}; it must be {wanted}")
    return cls(**raw)


_TYPE_NAMES = {int: "a whole number", float: "a number", bool: "true or false", str: "a string",
               dict: "a JSON object", str | None: "a string or null"}


def _fits(value, hint) -> bool:
    """Whether a JSON value fits a field annotated `hint` (bool is not a number here)."""
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint == str | None:
        return value is None or isinstance(value, str)
    return isinstance(value, hint)


# Named starting points; explicit command-line options override them.
RECIPES: dict[str, dict] = {
    # The documented baseline: one convolution, ReLU, one linear layer; Adam.
    "seed": dict(model="seed", epochs=6, batch_size=128, lr=1e-3, schedule="cosine"),
    # Time to 99%: the record's own network (lenet) for one epoch at batch 256, Adam at 1e-2 with
    # its betas (0.7, 0.9), one-cycle, label smoothing, channels-last memory (2.5x faster steps on
    # a CPU). Chosen on validation (benchmarks/speedrun_choice.py): it reached the anchor's
    # final validation accuracy in 5.5 s against the anchor's 10.0 s and the former speedrun's
    # (the `fast` model, 2 epochs) 11.8 s, 3 seeds each, and ended at 99.07% against 98.71%.
    "speedrun": dict(model="lenet", epochs=1, batch_size=256, lr=0.01, beta1=0.7, beta2=0.9, schedule="onecycle",
                     warmup=0.25, label_smoothing=0.1, channels_last=True, eval_every=100),
    # The most accurate per CPU-minute: a batch-norm CNN, a random affine transform per image,
    # AdamW with one-cycle, label smoothing; the final weights, not a choice among epochs whose
    # validation accuracies differ by noise. About 10 minutes on 2 cores.
    "best": dict(model="deep", model_args={"width": 48}, augment=True, epochs=15, batch_size=128,
                 optimizer="adamw", lr=3e-3, weight_decay=0.05, schedule="onecycle", warmup=0.15,
                 label_smoothing=0.1, channels_last=True, keep="last"),
}
# On a GPU: `best` twice as wide at batch 512 (learning rate 6e-3). Chosen on validation on an
# H200 (benchmarks/gpu.sh, 4 seeds each, mean validation accuracy): 99.62% in 4.3 s of
# training, against `best` 99.57% in 6.8 s, batch 512 at width 48 99.58% (3.0 s), 8 epochs
# of that 99.55% (1.6 s), width 96 for 30 epochs at batch 128 99.58% (15.3 s) or 512 99.58%
# (8.6 s). On 2 CPU cores it takes about four times as long as `best`.
RECIPES["gpu"] = {**RECIPES["best"], "model_args": {"width": 96}, "batch_size": 512, "lr": 6e-3}
# The shipped model: `best`, trained also on what preprocess() makes of real-world inputs
# (half of each batch: training/renders.py) and on shapes that are no digit (an eighth more,
# pushed towards equal probabilities). The share was chosen on validation renders
# (docs/notes/real-world-training.md; 3-epoch probes, 150 digits per condition): 0 / 0.25 / 0.5
# gave a conditions mean of 95.9 / 97.8 / 98.1% and 8x8 scans 83.3 / 93.3 / 95.3%, at
# 99.40 / 99.24 / 99.22% validation accuracy.
RECIPES["realworld"] = {**RECIPES["best"], "outliers": 0.125, "real_world": 0.5}
# `realworld`, and also real handwriting beyond MNIST (USPS and Semeion training writers, a tenth of
# each batch) and continental shapes (a twentieth: flagged 1, crossed 7, closed 4, hooked 9,
# slashed 0), with document cells in the renders and doodles among the non-digits. Compared with
# `realworld` on held-out writers and validation renders (docs/notes/world-handwriting.md).
RECIPES["world"] = {**RECIPES["realworld"], "real_sets": 0.1, "styles": 0.05}


def trained_with(meta: dict, card_dataset: str, source: str) -> TrainConfig:
    """The options a model file's metadata (a checkpoint's or export's meta) says it was trained
    with, read back as the type (TrainConfig.from_json, refusing a damaged record in words); a
    file that records none (made by another tool): the defaults, on the dataset its card names."""
    saved = meta.get("config")
    return TrainConfig.from_json(saved if saved is not None else {"dataset": card_dataset}, source)


def config_from(recipe: str | None = None, **overrides) -> TrainConfig:
    """A recipe's options, overridden by every option given that is not None; checked."""
    if recipe is not None and recipe not in RECIPES:
        raise UserError(f"unknown recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
    base = dict(RECIPES[recipe]) if recipe else {}
    base.update({k: v for k, v in overrides.items() if v is not None})
    return _build(base, "the options given")


def from_saved(saved: dict, where: str) -> TrainConfig:
    """The config a run folder's config.json holds (for --resume), checked."""
    if not isinstance(saved, dict):
        raise UserError(f"{where} does not hold a JSON object of training options")
    return TrainConfig.from_json({k: v for k, v in saved.items() if k != "resolved_device"}, where, UserError).check()


def _build(options: dict, where: str) -> TrainConfig:
    unknown = sorted(set(options) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise UserError(f"{where} has training options this digitrec does not know: {', '.join(unknown)}")
    return TrainConfig(**options).check()
