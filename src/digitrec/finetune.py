"""Fine-tuning a model on one person's corrections without forgetting its dataset.

The corrections (corrections.py) are split: a share is held out to measure how well the model
now reads that person. The rest are mixed, batch by batch, with replayed training digits of the
model's own dataset (never its validation or test images), so the model learns the new
handwriting and keeps the old. Batch-norm statistics stay frozen (a few dozen samples must not
move them), the learning rate is small and decays to zero. The result is calibrated on the
dataset's validation split, like any trained checkpoint, and carries before-and-after figures:
test accuracy on the dataset, and accuracy on the held-out corrections.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .augment import AffineAug
from .calibrate import calibrate
from .checkpoint import load_checkpoint, save_checkpoint
from .corrections import Corrections
from .data.load import load, split_indices
from .errors import UserError
from .training.config import FinetuneConfig, trained_with
from .metrics import logits_of
from .util import atomic_write_text, write_json


def split(labels: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept for training, held out) indices: `share` of each class held out, rounded down,
    so a class with one sample is only learned from."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.nonzero(labels == c)[0])
        k = int(math.floor(len(idx) * share))
        held += idx[:k].tolist()
        train += idx[k:].tolist()
    return np.sort(np.array(train, np.int64)), np.sort(np.array(held, np.int64))


def _accuracy(model, x: torch.Tensor, y: torch.Tensor, card, device: str) -> float | None:
    if len(y) == 0:
        return None
    return float((logits_of(model, x, card, device).argmax(1) == y).float().mean())


def _train(model, card, user_x, user_y, replay_x, replay_y, cfg: FinetuneConfig, steps: int,
           label_smoothing: float = 0.0) -> None:
    """`steps` AdamW steps on mixed batches, every image with a random affine transform, the
    loss smoothed as the model was trained and pulled towards the starting weights (L2-SP,
    Li et al. 2018: `cfg.anchor` times the squared distance); batch norm keeps its statistics."""
    g = torch.Generator().manual_seed(cfg.seed)
    aug = AffineAug(rotate=8, scale=0.08, shear=0.1, translate=1.5)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    start = [p.detach().clone() for p in model.parameters()]
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    for _ in range(steps):
        u = torch.randint(len(user_y), (cfg.batch,), generator=g)
        r = torch.randint(len(replay_y), (cfg.replay,), generator=g)
        x = aug(card.normalise(torch.cat([user_x[u], replay_x[r]])).to(cfg.device), card.background, g)
        y = torch.cat([user_y[u], replay_y[r]]).to(cfg.device)
        loss = F.cross_entropy(model(x), y, label_smoothing=label_smoothing)
        if cfg.anchor:
            loss = loss + cfg.anchor * sum(((p - p0) ** 2).sum() for p, p0 in zip(model.parameters(), start))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()


def finetune(checkpoint: Path | str, data: Path | str, out: Path | str, cfg: FinetuneConfig = FinetuneConfig(),
             dataset=None, log=print, score_on: str = "test") -> dict:
    """Fine-tune `checkpoint` on the corrections folder `data`; writes out/best.pt (calibrated),
    out/metrics.json and out/report.md; returns the metrics. The dataset accuracy before and
    after is on its test split, or (`score_on="val"`, for choosing options) its validation split."""
    t0 = time.perf_counter()
    cfg.check()
    ckpt = load_checkpoint(checkpoint)
    card = ckpt.card
    images, labels, _ = Corrections(Path(data), card.classes).load()
    if len(labels) == 0:
        raise UserError(f"{data} holds no corrections yet; collect some with `digitrec serve --collect {data}` "
                        f"or `digitrec import`")
    kept, held = split(labels, cfg.holdout, cfg.seed)
    config = trained_with(ckpt.meta, card.dataset, str(checkpoint))  # the options it was trained with
    ds = dataset if dataset is not None else load(config.dataset, cfg.data_dir)
    tr, va = split_indices(len(ds.train_x), config.val_size, config.split_seed)
    model = ckpt.build().to(cfg.device)
    user_x, user_y = torch.from_numpy(images), torch.from_numpy(labels)
    held_x, held_y = user_x[held], user_y[held]

    x_eval, y_eval = (ds.test_x, ds.test_y) if score_on == "test" else (ds.train_x[va], ds.train_y[va])

    def measure() -> dict:
        return {"dataset_accuracy": _accuracy(model, x_eval, y_eval, card, cfg.device),
                "held_out_accuracy": _accuracy(model, held_x, held_y, card, cfg.device)}

    before = measure()
    steps = cfg.steps or max(200, math.ceil(12 * len(kept) / cfg.batch))
    _train(model, card, user_x[kept], user_y[kept], ds.train_x[tr], ds.train_y[tr], cfg, steps,
           float(config.label_smoothing))
    after = measure()
    val_logits = logits_of(model, ds.train_x[va], card, cfg.device)
    calibration = calibrate(val_logits, ds.train_y[va])
    metrics = {"before": before, "after": after, "scored_on": score_on, "corrections": len(labels), "trained_on": len(kept),
               "held_out": len(held), "steps": steps, "val_accuracy": float((val_logits.argmax(1) == ds.train_y[va])
                                                                             .float().mean()),
               "seconds": time.perf_counter() - t0, "config": dataclasses.asdict(cfg), "source": str(checkpoint),
               "calibration": calibration}
    out = Path(out)
    meta = {**ckpt.meta, "card": card.with_calibration(calibration["temperature"], calibration["threshold"]).to_json(),
            "calibration": calibration, "finetune": metrics,
            "metrics": {**ckpt.meta.get("metrics", {}), f"{score_on}_accuracy": after["dataset_accuracy"],
                        "val_accuracy": metrics["val_accuracy"]}}
    save_checkpoint(out / "best.pt", model, ckpt.name, ckpt.model["args"], meta)
    write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "report.md", report(metrics, ds.spec.name))
    log(f"fine-tuned on {len(kept)} corrections ({steps} steps, {metrics['seconds']:.1f} s): "
        + summary(metrics, ds.spec.name))
    return metrics


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def summary(m: dict, dataset: str) -> str:
    b, a = m["before"], m["after"]
    return (f"{dataset} {m['scored_on']} accuracy {_pct(b['dataset_accuracy'])} -> {_pct(a['dataset_accuracy'])}; "
            f"held-out corrections ({m['held_out']}) {_pct(b['held_out_accuracy'])} -> {_pct(a['held_out_accuracy'])}")


def report(m: dict, dataset: str) -> str:
    b, a = m["before"], m["after"]
    return "\n".join([
        "# Fine-tuning report", "",
        f"Started from `{m['source']}`; {m['corrections']} corrections, {m['trained_on']} learned from and "
        f"{m['held_out']} held out to measure; {m['steps']} steps mixed with replayed {dataset} training digits "
        f"({m['seconds']:.1f} s).", "",
        "| | before | after |", "|---|---:|---:|",
        f"| {dataset} {m['scored_on']} accuracy | {_pct(b['dataset_accuracy'])} | {_pct(a['dataset_accuracy'])} |",
        f"| held-out corrections | {_pct(b['held_out_accuracy'])} | {_pct(a['held_out_accuracy'])} |", "",
        f"Calibrated on the {dataset} validation split ({_pct(m['val_accuracy'])} accurate): temperature "
        f"{m['calibration']['temperature']:.3f}, `unsure` below {m['calibration']['threshold']:.3f}.", ""])
