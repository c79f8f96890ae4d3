"""Calibration: temperature scaling fitted on validation logits, ECE, and the `unsure` threshold."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The T > 0 minimising the negative log-likelihood of softmax(logits / T)."""
    if len(y) == 0:
        return 1.0
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return t if 0.05 < t < 20 else 1.0


def reliability(probs: torch.Tensor, y: torch.Tensor, bins: int = 15) -> dict:
    """Expected calibration error and the per-bin table behind a reliability diagram."""
    conf, pred = probs.max(1)
    correct = (pred == y).float()
    edges = torch.linspace(0, 1, bins + 1)
    idx = torch.bucketize(conf, edges[1:-1])  # bin index 0..bins-1 for each sample
    count = torch.bincount(idx, minlength=bins).float()
    conf_sum = torch.bincount(idx, weights=conf, minlength=bins)
    acc_sum = torch.bincount(idx, weights=correct, minlength=bins)
    nz = count > 0
    ece = float(((conf_sum - acc_sum).abs()[nz]).sum() / max(len(y), 1))
    return {"ece": ece, "edges": edges.tolist(), "count": count.tolist(),
            "confidence": torch.where(nz, conf_sum / count.clamp(min=1), 0).tolist(),
            "accuracy": torch.where(nz, acc_sum / count.clamp(min=1), 0).tolist()}


MAX_FLAGGED = 0.01  # never flag more than this share of the validation digits


def unsure_threshold(probs: torch.Tensor, y: torch.Tensor, floor: float = 0.5,
                     max_flagged: float = MAX_FLAGGED) -> dict:
    """The lowest confidence threshold whose accepted answers make at most half the errors,
    unless that flags more than `max_flagged` of all answers: then the threshold that flags
    just that many (a model that is wrong rarely, and unsure of many right answers, would
    otherwise nag). Never below `floor`.

    Predictions below it are flagged `unsure`. Chosen on validation data: sorting by
    confidence, we flag the least confident answers until half of all errors are flagged.
    """
    conf, pred = probs.max(1)
    wrong = pred != y
    n_wrong = int(wrong.sum())
    if n_wrong == 0:
        return {"threshold": floor, "flagged": float((conf < floor).float().mean()), "errors_caught": 1.0}
    order = conf.argsort()
    caught = wrong[order].cumsum(0)
    k = int((caught >= (n_wrong + 1) // 2).nonzero()[0])  # index of the flagged sample that reaches half
    k = min(k, int(max_flagged * len(conf)))  # ...but no more than the cap of flagged answers
    threshold = max(float(conf[order][k]) + 1e-6, floor)
    flagged = conf < threshold
    return {"threshold": threshold, "flagged": float(flagged.float().mean()),
            "errors_caught": float(wrong[flagged].sum() / n_wrong)}


def calibrate(val_logits: torch.Tensor, val_y: torch.Tensor) -> dict:
    t = fit_temperature(val_logits, val_y)
    before = reliability(val_logits.softmax(1), val_y)
    after_probs = (val_logits / t).softmax(1)
    after = reliability(after_probs, val_y)
    return {"temperature": t, "ece_before": before["ece"], "ece_after": after["ece"],
            **unsure_threshold(after_probs, val_y)}
