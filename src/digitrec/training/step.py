"""The loss of one batch, shared by the ordinary step (loop.py) and the CUDA-graph step (graph.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import distributed

OUTLIER_WEIGHT = 0.5  # the outlier term's weight in the loss, as in Hendrycks et al.


def batch_loss(run, idx: torch.Tensor, whole_batch: int) -> torch.Tensor:
    """`run` (a loop.Run): the loss on the training images `idx` indexes (with --real-world, a share
    of them replaced by rendered training digits as preprocessing prepares them; with --outliers,
    plus shapes that are not characters, pushed towards equal probabilities), augmented; under torchrun, this rank's
    share of the mean over the whole batch of `whole_batch` images."""
    x, y = run.x_train[idx], run.y_train[idx]
    n = len(x)
    if run.renders is not None and n:  # a share of the digits as users hand them over, prepared as theirs are
        bank_x, bank_y = run.renders
        k = min(n, round(run.cfg.real_world * n))
        pick = torch.randint(len(bank_x), (k,), generator=run.aug_gen, device=bank_x.device)
        x, y = torch.cat([bank_x[pick], x[k:]]), torch.cat([bank_y[pick], y[k:]])
    if run.outliers is not None:
        k = max(1, round(run.cfg.outliers * n))
        x = torch.cat([x, run.outliers[torch.randint(len(run.outliers), (k,), generator=run.aug_gen,
                                                     device=run.outliers.device)]])
    if run.aug is not None:
        x = run.aug(x, run.card.background, run.aug_gen, run.card.std)
    with run.amp:
        logits = run.forward(x)
        world = distributed.dist_info()[1]
        loss = F.cross_entropy(logits[:n], y, label_smoothing=run.cfg.label_smoothing,
                               reduction="mean" if world == 1 else "sum")
        if world > 1:  # DDP averages over ranks: this makes it the mean over the whole batch
            loss = loss * distributed.loss_scale(whole_batch)
        if run.outliers is not None:
            loss = loss - OUTLIER_WEIGHT * logits[n:].float().log_softmax(1).mean()
    return loss
