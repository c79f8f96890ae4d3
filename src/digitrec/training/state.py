"""The resume state: everything `digitrec train --resume` needs to continue a run as if it had
never stopped, as one type. It is written into last.pt as `train_state` (a dict of tensors,
numbers and lists, so it loads with weights_only=True) and read back by `TrainState.from_dict`.
`LineState` is the same for the line trainer (training/lines.py), in its state.pt."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from ..errors import CheckpointError


def _no_best() -> dict:
    return {"val_accuracy": -1.0, "val_loss": math.inf, "epoch": 0}


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches completed in epoch `epoch` (mid-epoch saves only)
    history: list[dict] = field(default_factory=list)  # one row per completed epoch
    step_losses: list[float] = field(default_factory=list)  # one per step, the whole run
    best: dict = field(default_factory=_no_best)  # validation accuracy and loss of the kept epoch, and its number
    train_time: float = 0.0  # seconds spent training, not evaluating or writing
    shuffle_gen_epoch: torch.Tensor | None = None  # the shuffling generator's state at the start of `epoch`
    aug_gen: torch.Tensor | None = None  # the augmentation generator's state
    torch_rng: torch.Tensor | None = None  # the global CPU generator (dropout)
    optimizer: dict | None = None
    scheduler: dict | None = None
    ema: dict | None = None  # the averaged model, when training with --ema
    model: dict | None = None  # with --ema, the trained (not averaged) weights; else the checkpoint's own

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw, where: str) -> "TrainState":
        return _from_dict(cls, raw, where, ("epoch", "batch", "history", "step_losses", "best", "train_time",
                                            "shuffle_gen_epoch", "aug_gen", "torch_rng", "optimizer", "scheduler"))


@dataclass
class LineState:
    """Where the line trainer stands after `step` steps; its weights are the checkpoint's own."""

    step: int = 0  # optimiser steps taken
    optimizer: dict | None = None
    scheduler: dict | None = None
    rng: dict | None = None  # the numpy generator's state: which lines come next
    torch_rng: torch.Tensor | None = None  # the global CPU generator

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw, where: str) -> "LineState":
        return _from_dict(cls, raw, where, tuple(cls.__dataclass_fields__))


def _from_dict(cls, raw, where: str, needed: tuple[str, ...]):
    if not isinstance(raw, dict) or any(k not in raw for k in needed):
        raise CheckpointError(f"{where} holds no complete training state to resume from")
    return cls(**{k: raw.get(k) for k in cls.__dataclass_fields__})
