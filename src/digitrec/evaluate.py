"""The `evaluate` stage: reload checkpoints (no retraining), score each and their ensemble on
the test set, calibrate on the validation split, and write the report with its figures."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .calibrate import calibrate, reliability
from .checkpoint import Checkpoint, load_model
from .data.load import Dataset, load, split_indices
from .errors import CheckpointError
from .metrics import logits_of, metrics_from_logits, metrics_from_probs
from .report import Report, write_report
from .training.config import TrainConfig, trained_with
from .util import resolve_device, write_json

PACKAGE = Path(__file__).resolve().parent  # the installed digitrec: reports are never written into it


@dataclass
class Evaluation:
    title: str
    dataset: str
    tta: bool
    members: list[dict]  # per model: name, path, parameters, test metrics, val_accuracy, stored_test_accuracy
    ensemble: dict  # test metrics of the mean of the members' probabilities, and its val_accuracy
    probs: torch.Tensor = field(repr=False)  # (N, C) the ensemble's test probabilities
    calibration: dict = field(default_factory=dict)
    out: Path | None = None
    figures: list[Path] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)  # every file the evaluation wrote, figures included

    def summary(self) -> dict:
        """What evaluation.json holds: everything but the probabilities."""
        return {"title": self.title, "dataset": self.dataset, "tta": self.tta, "members": self.members,
                "ensemble": self.ensemble, "calibration": self.calibration}


def _some(classes, k: int = 5) -> str:
    return " ".join(classes[:k]) + (" ..." if len(classes) > k else "")


def _dataset_for(ckpts: list[Checkpoint], saved: TrainConfig, data: Dataset | None, data_dir, dataset: str | None,
                 log) -> Dataset:
    """The test data: the checkpoints' own dataset (`saved`: the first one's training options)
    unless `dataset` names another with the same classes (an MNIST model on emnist-digits). The
    members must share their dataset."""
    first = ckpts[0]
    if len({c.card.dataset for c in ckpts}) > 1 or len({c.card.classes for c in ckpts}) > 1:
        raise CheckpointError("the checkpoints were trained on different datasets "
                              f"({', '.join(sorted({c.card.dataset for c in ckpts}))}); an ensemble needs one dataset")
    ds = data if data is not None else load(dataset or saved.dataset, data_dir)
    if tuple(ds.spec.classes) != first.card.classes:
        trained = first.card.classes
        raise CheckpointError(
            f"{first.path} was trained on {first.card.dataset} ({len(trained)} classes: {_some(trained)}) "
            f"but the data is {ds.spec.name} ({ds.spec.num_classes} classes: {_some(ds.spec.classes)}); "
            f"pass --dataset {first.card.dataset}, or a dataset with its classes")
    if ds.spec.name != first.card.dataset:
        log(f"evaluating models trained on {first.card.dataset} on {ds.spec.name}")
    elif first.meta.get("dataset", {}).get("checksums") not in (None, ds.checksums):
        log("warning: the dataset files differ from the ones this model was trained on")
    return ds


def _score(model, ckpt: Checkpoint, ds: Dataset, x_val, y_val, device: str, tta: bool, log):
    """One member's test metrics and its (test, validation) logits, normalised as in its own training."""
    model.to(device)
    lt = logits_of(model, ds.test_x, ckpt.card, device, tta=tta)
    lv = logits_of(model, x_val, ckpt.card, device, tta=tta)
    m = metrics_from_logits(lt, ds.test_y, ds.spec.num_classes)
    stored = ckpt.meta.get("metrics", {}).get("test_accuracy") if ds.spec.name == ckpt.card.dataset else None
    if stored is None:
        same = ""
    elif tta:
        same = f" with test-time augmentation ({100 * stored:.2f}% without, in training)"
    else:
        same = " (same as in training)" if stored == m.accuracy else f" (training reported {100 * stored:.2f}%)"
    log(f"{ckpt.path}: test accuracy {100 * m.accuracy:.2f}%{same}")
    member = {"name": f"{ckpt.name} ({ckpt.path})", "path": str(ckpt.path),
              "parameters": ckpt.meta.get("parameters", 0), "test": m.to_json(),
              "val_accuracy": float((lv.argmax(1) == y_val).float().mean()), "stored_test_accuracy": stored}
    return member, lt, lv


def _calibration(val_probs: torch.Tensor, y_val, probs: torch.Tensor, y_test) -> dict:
    """Temperature and `unsure` threshold fitted on validation (as training does), reported on test."""
    val_cal = calibrate(val_probs.clamp_min(1e-12).log(), y_val)
    scaled = (probs.clamp_min(1e-12).log() / val_cal["temperature"]).softmax(1)
    flagged = scaled.max(1).values < val_cal["threshold"]
    wrong = scaled.argmax(1) != y_test
    return {"temperature": val_cal["temperature"], "threshold": val_cal["threshold"], "val": val_cal,
            "test_before": reliability(probs, y_test), "test_after": reliability(scaled, y_test),
            "test_flagged": float(flagged.float().mean()),
            "test_errors_caught": float((wrong & flagged).sum() / max(int(wrong.sum()), 1))}


def _probabilities(loaded: list, device: str):
    """The models as one function for explanations: (28, 28) uint8 images -> (N, C) numpy, the
    members' mean probabilities (without test-time augmentation)."""
    def probabilities(images) -> np.ndarray:
        x = torch.from_numpy(np.stack([np.asarray(im, np.uint8) for im in images]))
        return torch.stack([logits_of(m, x, c.card, device).softmax(1) for m, c in loaded]).mean(0).numpy()
    return probabilities


def _default_out(paths: list[Path], first: Checkpoint, ds: Dataset, tta: bool) -> Path:
    """Beside the (first) checkpoint, in its run folder; for a checkpoint inside the installed
    package (the shipped model), a new folder under runs/ instead."""
    home = paths[0].parent
    if PACKAGE in paths[0].resolve().parents:
        home = Path("runs") / f"evaluate-{paths[0].stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = home if len(paths) == 1 else home / "ensemble"
    if ds.spec.name != first.card.dataset:
        out = out / f"on-{ds.spec.name}"  # the run's own report stays as it is
    return out / "tta" if tta else out


def evaluate(paths: list, out=None, data_dir=None, device: str = "auto", data: Dataset | None = None,
             log=print, dataset: str | None = None, tta: bool = False) -> Evaluation:
    """Score checkpoints and their ensemble, write the report; with `tta`, every model also sees
    each image's four one-pixel shifts (metrics.logits_of)."""
    device = resolve_device(device)
    paths = [Path(p) for p in paths]
    loaded = [load_model(p) for p in paths]
    ckpts = [c for _, c in loaded]
    first = ckpts[0]
    saved = trained_with(first.meta, first.card.dataset, str(first.path))
    ds = _dataset_for(ckpts, saved, data, data_dir, dataset, log)
    _, va = split_indices(len(ds.train_x), saved.val_size, saved.split_seed)
    x_val, y_val = ds.train_x[va], ds.train_y[va]
    scored = [_score(model, ckpt, ds, x_val, y_val, device, tta, log) for model, ckpt in loaded]
    probs = torch.stack([lt.softmax(1) for _, lt, _ in scored]).mean(0)
    val_probs = torch.stack([lv.softmax(1) for _, _, lv in scored]).mean(0)
    ens = metrics_from_probs(probs, ds.test_y, ds.spec.num_classes)
    if len(paths) > 1:
        log(f"ensemble of {len(paths)}: test accuracy {100 * ens.accuracy:.2f}%")
    members = [m for m, _, _ in scored]
    title = (members[0]["name"] if len(paths) == 1 else f"ensemble of {len(paths)} models") + (
        " with test-time augmentation" if tta else "")
    evaluation = Evaluation(
        title, ds.spec.name, tta, members,
        {**ens.to_json(), "val_accuracy": float((val_probs.argmax(1) == y_val).float().mean())},
        probs, _calibration(val_probs, y_val, probs, ds.test_y), Path(out) if out else _default_out(paths, first, ds, tta))
    run_dirs = list(dict.fromkeys(p.parent for p in paths))
    evaluation.figures = write_report(evaluation.out, Report(evaluation, ds.test_x, ds.test_y, ds.spec.classes, run_dirs,
                                                             _probabilities(loaded, device)))
    write_json(evaluation.out / "evaluation.json", evaluation.summary())
    evaluation.written = [evaluation.out / "report.md", evaluation.out / "evaluation.json", *evaluation.figures]
    log(f"report: {evaluation.out / 'report.md'}")
    return evaluation
