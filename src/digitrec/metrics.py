"""Logits and the metrics computed from them: what training's validation and the `evaluate`
stage both use. Logits come first; everything else is computed from them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .card import ModelCard

EVAL_BATCH = 1000  # fixed, so that training and `digitrec evaluate` compute identical logits


@torch.no_grad()
def logits_of(model: nn.Module, x: torch.Tensor, card: ModelCard, device: str = "cpu",
              batch_size: int = EVAL_BATCH, tta: bool = False) -> torch.Tensor:
    """uint8 images (N, 28, 28) -> float32 logits (N, C) on the CPU, in eval mode, each batch
    normalised as the card says.

    With `tta`, each image is also seen shifted by one pixel in each direction, and the
    logits are the mean log-probabilities of the five views (augment.TTA_SHIFTS)."""
    from .augment import TTA_SHIFTS, shifted

    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = card.normalise(x[i : i + batch_size].to(device, non_blocking=True))  # (B, 1, 28, 28)
        if tta:
            views = [model(shifted(xb, dx, dy, card.background)).float().log_softmax(1) for dx, dy in TTA_SHIFTS]
            out.append(torch.stack(views).mean(0).cpu())
        else:
            out.append(model(xb).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


@dataclass
class Metrics:
    loss: float
    accuracy: float
    per_class: list[float]
    confusion: list[list[int]]  # confusion[true][pred]
    count: int

    def to_json(self) -> dict:
        return {"loss": self.loss, "accuracy": self.accuracy, "count": self.count,
                "per_class_accuracy": self.per_class, "confusion": self.confusion}


def metrics_from_logits(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> Metrics:
    return metrics_from_probs(logits.softmax(1), y, num_classes,
                              loss=float(F.cross_entropy(logits, y)) if len(y) else float("nan"))


def metrics_from_probs(probs: torch.Tensor, y: torch.Tensor, num_classes: int,
                       loss: float | None = None) -> Metrics:
    pred = probs.argmax(1)
    conf = torch.bincount(y * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)
    per_class = (conf.diag().float() / conf.sum(1).clamp(min=1)).tolist()
    if loss is None:
        loss = float(F.nll_loss(probs.clamp_min(1e-12).log(), y)) if len(y) else float("nan")
    acc = float((pred == y).float().mean()) if len(y) else float("nan")
    return Metrics(loss, acc, per_class, conf.tolist(), len(y))
