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

MIN_HELD_OUT = 20  # fewer held-out corrections measure nothing: one more right moves the figure 5 points
COLLAPSE = 0.10  # a class whose dataset accuracy falls by more than this is named as collapsed


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


def per_class(pred: torch.Tensor, y: torch.Tensor, n: int) -> list[float | None]:
    """Accuracy of each of `n` classes (None for a class without samples)."""
    total = torch.bincount(y, minlength=n)
    right = torch.bincount(y[pred == y], minlength=n)
    return [None if t == 0 else float(r) / float(t) for r, t in zip(right.tolist(), total.tolist())]


def _scores(model, x: torch.Tensor, y: torch.Tensor, card, device: str) -> tuple[float | None, list]:
    """(accuracy, per-class accuracy) of `model` on x, y."""
    if len(y) == 0:
        return None, [None] * len(card.classes)
    pred = logits_of(model, x, card, device).argmax(1).cpu()
    return float((pred == y).float().mean()), per_class(pred, y, len(card.classes))


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
             dataset=None, log=print, score_on: str = "test", keep_worse: bool = False) -> dict:
    """Fine-tune `checkpoint` on the corrections folder `data`; writes out/best.pt (calibrated),
    out/metrics.json and out/report.md; returns the metrics. The dataset accuracy before and
    after is on its test split, or (`score_on="val"`, for choosing options) its validation split.
    A model less accurate on it than the one it started from is written as out/worse.pt, not
    best.pt (metrics["kept"] False), unless `keep_worse`."""
    t0 = time.perf_counter()
    cfg.check()
    ckpt = load_checkpoint(checkpoint)
    card = ckpt.card
    images, labels, left_out, total = _corrections(Path(data), card.classes, log)
    kept, held = split(labels, cfg.holdout, cfg.seed)
    config = trained_with(ckpt.meta, card.dataset, str(checkpoint))  # the options it was trained with
    ds = dataset if dataset is not None else load(config.dataset, cfg.data_dir)
    tr, va = split_indices(len(ds.train_x), config.val_size, config.split_seed)
    model = ckpt.build().to(cfg.device)
    user_x, user_y = torch.from_numpy(images), torch.from_numpy(labels)
    held_x, held_y = user_x[held], user_y[held]

    x_eval, y_eval = (ds.test_x, ds.test_y) if score_on == "test" else (ds.train_x[va], ds.train_y[va])

    def measure() -> dict:
        (acc, classes), (held_acc, held_classes) = (_scores(model, x, y, card, cfg.device)
                                                    for x, y in ((x_eval, y_eval), (held_x, held_y)))
        return {"dataset_accuracy": acc, "held_out_accuracy": held_acc, "per_class": classes,
                "held_out_per_class": held_classes}

    before = measure()
    steps = cfg.steps or max(200, math.ceil(12 * len(kept) / cfg.batch))
    _train(model, card, user_x[kept], user_y[kept], ds.train_x[tr], ds.train_y[tr], cfg, steps,
           float(config.label_smoothing))
    after = measure()
    metrics = {"before": before, "after": after, "scored_on": score_on, "corrections": total, "left_out": left_out,
               "trained_on": len(kept), "held_out": len(held), "steps": steps, "config": dataclasses.asdict(cfg),
               "source": str(checkpoint), "classes": list(card.classes),
               **judge(before, after, len(held), card.classes, keep_worse)}
    _save(Path(out), model, ckpt, metrics, ds, va, cfg.device, t0)
    log(f"fine-tuned on {len(kept)} corrections ({steps} steps, {metrics['seconds']:.1f} s): "
        + summary(metrics, ds.spec.name))
    for line in [per_class_line(metrics, ds.spec.name), *cautions(metrics, ds.spec.name, Path(out))]:
        log(line)
    return metrics


def clean(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, dict]:
    """(indices kept, counts left out). Samples with the same image are one sample: if their
    labels disagree, none is kept (no label of theirs can be trusted; one person can store an
    image under every label), else the first is kept and the rest are duplicates."""
    if len(labels) == 0:
        return np.zeros(0, np.int64), {"contradictory": 0, "contradictory_images": 0, "duplicates": 0}
    _, first, group = np.unique(images.reshape(len(images), -1), axis=0, return_index=True, return_inverse=True)
    group = group.reshape(-1)
    pairs = np.unique(np.stack([group, labels]), axis=1)  # (2, distinct (image, label) pairs)
    labels_per_image = np.bincount(pairs[0], minlength=len(first))
    bad = labels_per_image[group] > 1  # (N,) in a group whose labels disagree
    keep = np.sort(first[labels_per_image == 1])
    return keep, {"contradictory": int(bad.sum()), "contradictory_images": int((labels_per_image > 1).sum()),
                  "duplicates": int(len(labels) - bad.sum() - len(keep))}


def _corrections(data: Path, classes, log) -> tuple[np.ndarray, np.ndarray, dict, int]:
    """(images, labels, left out, how many the folder holds): the folder's samples, checked (damage
    is refused in words), contradictory and duplicate ones left out and said so."""
    images, labels, _ = Corrections(data, classes).load()
    if len(labels) == 0:
        raise UserError(f"{data} holds no corrections yet; collect some with `digitrec serve --collect {data}` "
                        f"or `digitrec import`")
    keep, left_out = clean(images, labels)
    if left_out["contradictory"] or left_out["duplicates"]:
        log(f"left out {left_out['contradictory']} contradictory corrections ({left_out['contradictory_images']} "
            f"images stored under different labels: none of their labels is trusted) and {left_out['duplicates']} "
            "duplicates (the first of each image is kept)")
    if len(keep) == 0:
        raise UserError(f"{data} holds no corrections to learn from: every image in it is stored under different "
                        "labels; delete the folder and collect again")
    return images[keep], labels[keep], left_out, len(labels)


def judge(before: dict, after: dict, held: int, classes, keep_worse: bool) -> dict:
    """Whether the result is kept as best.pt (not if it reads the dataset worse, unless
    `keep_worse`), the classes that collapsed, and whether the held-out corrections measure anything."""
    worse = after["dataset_accuracy"] is not None and after["dataset_accuracy"] < before["dataset_accuracy"]
    collapsed = [name for name, b, a in zip(classes, before["per_class"], after["per_class"])
                 if b is not None and a is not None and a < b - COLLAPSE]
    return {"kept": keep_worse or not worse, "worse": worse, "collapsed": collapsed,
            "held_out_enough": held >= MIN_HELD_OUT}


def _save(out: Path, model, ckpt, metrics: dict, ds, va, device: str, t0: float) -> None:
    """Calibrate on the dataset's validation split; write best.pt (or worse.pt), metrics.json, report.md."""
    card, score_on = ckpt.card, metrics["scored_on"]
    val_logits = logits_of(model, ds.train_x[va], card, device)
    calibration = calibrate(val_logits, ds.train_y[va])
    # calibrate() puts the threshold just above the most confident error: above 1 for a model
    # sure of everything, which no card loads
    calibration["threshold"] = min(calibration["threshold"], 1.0)
    metrics.update(val_accuracy=float((val_logits.argmax(1) == ds.train_y[va]).float().mean()),
                   seconds=time.perf_counter() - t0, calibration=calibration)
    meta = {**ckpt.meta, "card": card.with_calibration(calibration["temperature"], calibration["threshold"]).to_json(),
            "calibration": calibration, "finetune": metrics,
            "metrics": {**ckpt.meta.get("metrics", {}), f"{score_on}_accuracy": metrics["after"]["dataset_accuracy"],
                        "val_accuracy": metrics["val_accuracy"]}}
    save_checkpoint(out / ("best.pt" if metrics["kept"] else "worse.pt"), model, ckpt.name, ckpt.model["args"], meta)
    write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "report.md", report(metrics, ds.spec.name, out))


def per_class_line(m: dict, dataset: str) -> str:
    pairs = ", ".join(f"{name} {_pct(b)} -> {_pct(a)}" for name, b, a in
                      zip(m["classes"], m["before"]["per_class"], m["after"]["per_class"]))
    return f"each class, {dataset} {m['scored_on']}: {pairs}"


def cautions(m: dict, dataset: str, out: Path) -> list[str]:
    """What a person must know before using the result: too few held out, classes lost, not kept."""
    lines, held = [], m["held_out"]
    if not m["held_out_enough"]:
        lines.append(f"warning: {held} held-out corrections are too few to measure anything (at least "
                     f"{MIN_HELD_OUT} are needed; {m['corrections']} corrections in all): the held-out figure says "
                     "nothing about how well the model now reads them")
    for name in m["collapsed"]:
        i = list(m["classes"]).index(name)
        lines.append(f"warning: class {name} collapsed: {dataset} {m['scored_on']} accuracy "
                     f"{_pct(m['before']['per_class'][i])} -> {_pct(m['after']['per_class'][i])}")
    if not m["kept"]:
        lines.append(f"not kept: {dataset} {m['scored_on']} accuracy fell from {_pct(m['before']['dataset_accuracy'])} "
                     f"to {_pct(m['after']['dataset_accuracy'])}; the model is in {out / 'worse.pt'}, not best.pt; "
                     "run again with --keep-worse to keep it anyway")
    return lines


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def summary(m: dict, dataset: str) -> str:
    b, a = m["before"], m["after"]
    return (f"{dataset} {m['scored_on']} accuracy {_pct(b['dataset_accuracy'])} -> {_pct(a['dataset_accuracy'])}; "
            f"held-out corrections ({m['held_out']}) {_pct(b['held_out_accuracy'])} -> {_pct(a['held_out_accuracy'])}")


def report(m: dict, dataset: str, out: Path = Path(".")) -> str:
    b, a, lo = m["before"], m["after"], m["left_out"]
    rows = [f"| {name} | {_pct(cb)} | {_pct(ca)} | {_pct(hb)} | {_pct(ha)} |" for name, cb, ca, hb, ha in
            zip(m["classes"], b["per_class"], a["per_class"], b["held_out_per_class"], a["held_out_per_class"])]
    return "\n".join([
        "# Fine-tuning report", "",
        f"Started from `{m['source']}`; {m['corrections']} corrections, {m['trained_on']} learned from and "
        f"{m['held_out']} held out to measure; {m['steps']} steps mixed with replayed {dataset} training digits "
        f"({m['seconds']:.1f} s). Left out: {lo['contradictory']} contradictory corrections ({lo['contradictory_images']} "
        f"images under different labels: none kept) and {lo['duplicates']} duplicates (the first of each kept).", "",
        *[f"- {line}" for line in cautions(m, dataset, out)], "",
        "| | before | after |", "|---|---:|---:|",
        f"| {dataset} {m['scored_on']} accuracy | {_pct(b['dataset_accuracy'])} | {_pct(a['dataset_accuracy'])} |",
        f"| held-out corrections | {_pct(b['held_out_accuracy'])} | {_pct(a['held_out_accuracy'])} |", "",
        f"Each class, {dataset} {m['scored_on']} and held-out corrections:", "",
        "| class | dataset before | dataset after | held out before | held out after |",
        "|---|---:|---:|---:|---:|", *rows, "",
        f"Calibrated on the {dataset} validation split ({_pct(m['val_accuracy'])} accurate): temperature "
        f"{m['calibration']['temperature']:.3f}, `unsure` below {m['calibration']['threshold']:.3f}.", ""])
