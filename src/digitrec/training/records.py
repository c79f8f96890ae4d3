"""What a run leaves behind besides its checkpoints: the per-epoch and per-step histories
(history.csv, steps.csv) and, at the end, the kept checkpoint scored on every split, calibrated,
and metrics.json."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch

from ..calibrate import calibrate
from ..checkpoint import load_model, save_checkpoint
from ..metrics import logits_of, metrics_from_logits
from ..util import atomic_write_text, clock, write_json
from .state import TrainState


def write_history(out: Path, history: list[dict], step_losses: list[float]) -> None:
    buf = io.StringIO()
    if history:
        w = csv.DictWriter(buf, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
    atomic_write_text(out / "history.csv", buf.getvalue())
    atomic_write_text(out / "steps.csv", "step,loss\n" + "".join(
        f"{i},{loss:.6g}\n" for i, loss in enumerate(step_losses)))


def finish(run, state: TrainState, t_start: float) -> dict:
    """`run` (a loop.Run) ended: score the kept checkpoint, reloaded from disk, on every split
    (the run's own); calibrate it on validation; write metrics.json (with where the run's time
    went), and the calibrated card and metrics into best.pt."""
    ds, cfg, tr, va = run.ds, run.cfg, run.split.train, run.split.val
    with run.timed("scoring"):
        model, ckpt = load_model(run.out / "best.pt")
        model.to(run.device, memory_format=torch.channels_last if cfg.channels_last else torch.preserve_format)
        card, scores, logits = ckpt.card, {}, {}
        for name, x, y in (("train", ds.train_x[tr], ds.train_y[tr]), ("val", ds.train_x[va], ds.train_y[va]),
                           ("test", ds.test_x, ds.test_y)):
            logits[name] = logits_of(model, x, card, run.device)
            scores[name] = metrics_from_logits(logits[name], y, card.num_classes).to_json()
        calibration = calibrate(logits["val"], ds.train_y[va])
    run.phases["training"] = state.train_time
    wall = clock(run.device) - t_start
    metrics = {
        "model": ckpt.model, "parameters": ckpt.meta["parameters"], "best_epoch": state.best["epoch"],
        **{f"{k}_loss": v["loss"] for k, v in scores.items()},
        **{f"{k}_accuracy": v["accuracy"] for k, v in scores.items()},
        "per_class_accuracy": dict(zip(card.classes, scores["test"]["per_class_accuracy"])),
        "confusion": scores["test"]["confusion"],
        "train_seconds": state.train_time, "warmup_seconds": run.phases["warm-up"], "wall_seconds": wall,
        "phases": run.phases, "seed": cfg.seed, "calibration": calibration, "dataset": ckpt.meta["dataset"],
        "preparation": card.preparation,  # the preprocessing its real-world inputs were made under (ink.Preparation)
        **({"real_world": ckpt.meta["real_world"]} if "real_world" in ckpt.meta else {}),
        **ckpt.meta["environment"],
    }
    with run.timed("writing"):
        write_json(run.out / "metrics.json", metrics)
        # The metrics travel inside the best checkpoint too, so it stands on its own.
        calibrated = card.with_calibration(calibration["temperature"], calibration["threshold"])
        ckpt_meta = {**ckpt.meta, "card": calibrated.to_json(), "calibration": calibration,
                     "metrics": {k: metrics[k] for k in ("train_accuracy", "val_accuracy", "test_accuracy", "test_loss")}}
        save_checkpoint(run.out / "best.pt", model, ckpt.name, ckpt.model["args"], ckpt_meta)
    chosen = "best" if cfg.keep == "best" else "kept"
    run.log(f"{chosen} epoch {state.best['epoch']}: val acc {100 * metrics['val_accuracy']:.2f}%  "
            f"test acc {100 * metrics['test_accuracy']:.2f}%  ({state.train_time:.1f}s training, {wall:.1f}s in all: "
            + ", ".join(f"{v:.1f}s {k}" for k, v in run.phases.items() if k != "training") + ")")
    return metrics
