"""The loss of one batch, shared by the ordinary step (loop.py) and the CUDA-graph step (graph.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import distributed

OUTLIER_WEIGHT = 0.5  # the outlier term's weight in the loss, as in Hendrycks et al.


def batch_loss(run, idx: torch.Tensor, whole_batch: int) -> torch.Tensor:
    """`run` (a loop.Run): the loss on the training images `idx` indexes (with --real-world, a share
    of them replaced by rendered training digits as preprocessing prepares them; with --real-sets
    and --styles, further shares by their banks (inputs.extras); with --outliers,
    plus shapes that are not characters, pushed towards equal probabilities), augmented; with --teacher, against
    the label mixed with the teachers' probabilities; under torchrun, this rank's share of the mean over the
    whole batch of `whole_batch` images."""
    x, y = run.x_train[idx], run.y_train[idx]
    n, k = len(x), 0
    if run.renders is not None and n:  # a share of the digits as users hand them over, prepared as theirs are
        bank_x, bank_y = run.renders
        k = min(n, round(run.cfg.real_world * n))
        pick = torch.randint(len(bank_x), (k,), generator=run.aug_gen, device=bank_x.device)
        x, y = torch.cat([bank_x[pick], x[k:]]), torch.cat([bank_y[pick], y[k:]])
    for bank_x, bank_y, share in run.extras:  # real handwriting beyond MNIST, continental styles
        m = min(n - k, round(share * n))
        pick = torch.randint(len(bank_x), (m,), generator=run.aug_gen, device=bank_x.device)
        x, y, k = torch.cat([x[:k], bank_x[pick], x[k + m:]]), torch.cat([y[:k], bank_y[pick], y[k + m:]]), k + m
    if run.outliers is not None:
        o = max(1, round(run.cfg.outliers * n))
        x = torch.cat([x, run.outliers[torch.randint(len(run.outliers), (o,), generator=run.aug_gen,
                                                     device=run.outliers.device)]])
    if run.aug is not None:
        x = run.aug(x, run.card.background, run.aug_gen, run.card.std)
    with run.amp:
        logits = run.forward(x)
        world = distributed.dist_info()[1]
        if run.soft is None:
            loss = F.cross_entropy(logits[:n], y, label_smoothing=run.cfg.label_smoothing,
                                   reduction="mean" if world == 1 else "sum")
        else:  # distillation: the label (smoothed) and the teachers' probabilities, mixed
            loss = _distilled(run, logits[:n], y, run.soft[idx], k, world)
        if world > 1:  # DDP averages over ranks: this makes it the mean over the whole batch
            loss = loss * distributed.loss_scale(whole_batch)
        if run.outliers is not None:
            loss = loss - OUTLIER_WEIGHT * logits[n:].float().log_softmax(1).mean()
    return loss


def _distilled(run, logits: torch.Tensor, y: torch.Tensor, soft: torch.Tensor, k: int, world: int) -> torch.Tensor:
    """Cross-entropy against (1 - distill) x the smoothed label + distill x the teachers' mean
    probabilities of the image; the first `k` images (real-world renders, which no teacher
    read) against their label alone."""
    c = logits.shape[1]
    label = F.one_hot(y, c).float() * (1 - run.cfg.label_smoothing) + run.cfg.label_smoothing / c
    soft = torch.cat([label[:k], soft[k:]])
    target = (1 - run.cfg.distill) * label + run.cfg.distill * soft
    per_image = -(target * logits.float().log_softmax(1)).sum(1)
    return per_image.mean() if world == 1 else per_image.sum()
