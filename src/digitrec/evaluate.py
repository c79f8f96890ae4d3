"""Inference and metrics. Logits come first; everything else is computed from them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

EVAL_BATCH = 1000  # fixed, so that training and `digitrec evaluate` compute identical logits


@torch.no_grad()
def logits_of(model: nn.Module, x: torch.Tensor, mean: float, std: float, device: str = "cpu",
              batch_size: int = EVAL_BATCH, tta: bool = False) -> torch.Tensor:
    """uint8 images (N, 28, 28) -> float32 logits (N, C) on the CPU, in eval mode.

    With `tta`, each image is also seen shifted by one pixel in each direction, and the
    logits are the mean log-probabilities of the five views (augment.TTA_SHIFTS)."""
    from .augment import TTA_SHIFTS, shifted

    was_training = model.training
    model.eval()
    background = -mean / std  # a normalised 0 pixel
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device, non_blocking=True)
        xb = ((xb.float() / 255.0 - mean) / std).unsqueeze(1)  # (B, 1, 28, 28)
        if tta:
            views = [model(shifted(xb, dx, dy, background)).float().log_softmax(1) for dx, dy in TTA_SHIFTS]
            out.append(torch.stack(views).mean(0).cpu())
        else:
            out.append(model(xb).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


def _some(classes, k: int = 5) -> str:
    return " ".join(classes[:k]) + (" ..." if len(classes) > k else "")


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


def evaluate_checkpoints(paths: list, out=None, data_dir=None, device: str = "auto", data=None,
                         log=print, dataset: str | None = None, tta: bool = False) -> dict:
    """Reload checkpoints (no retraining), score them and their ensemble, write the report.
    With `tta`, every model sees each image and its four one-pixel shifts (see logits_of).

    The test data is the checkpoints' own dataset unless `dataset` names another with the
    same classes (e.g. an MNIST model on emnist-digits)."""
    from pathlib import Path

    from .calibrate import calibrate, reliability
    from .checkpoint import CheckpointError, load_model
    from .data import load, split_indices
    from .report import write_report
    from .util import resolve_device, write_json

    device = resolve_device(device)
    paths = [Path(p) for p in paths]
    loaded = [load_model(p) for p in paths]
    datasets = {c["meta"]["dataset"]["name"] for _, c in loaded}
    classes = {tuple(c["meta"]["dataset"]["classes"]) for _, c in loaded}
    if len(datasets) > 1 or len(classes) > 1:
        raise CheckpointError("the checkpoints were trained on different datasets "
                              f"({', '.join(sorted(datasets))}); an ensemble needs one dataset")
    first = loaded[0][1]["meta"]
    ds = data if data is not None else load(dataset or first["config"]["dataset"], data_dir)
    if tuple(ds.spec.classes) != tuple(first["dataset"]["classes"]):
        trained = first["dataset"]["classes"]
        raise CheckpointError(
            f"{paths[0]} was trained on {first['dataset']['name']} ({len(trained)} classes: "
            f"{_some(trained)}) but the data is {ds.spec.name} ({ds.spec.num_classes} classes: "
            f"{_some(ds.spec.classes)}); pass --dataset {first['dataset']['name']}, or a dataset with its classes")
    spec = ds.spec
    if spec.name != first["dataset"]["name"]:
        log(f"evaluating models trained on {first['dataset']['name']} on {spec.name}")
    elif first["dataset"].get("checksums") and first["dataset"]["checksums"] != ds.checksums:
        log("warning: the dataset files differ from the ones this model was trained on")
    # Each model sees images normalised as in its own training, whatever data it is scored on.
    norm = [(c["meta"]["dataset"]["mean"], c["meta"]["dataset"]["std"]) for _, c in loaded]
    _, va = split_indices(len(ds.train_x), first["config"]["val_size"], first["config"]["split_seed"])
    x_val, y_val = ds.train_x[va], ds.train_y[va]
    members, test_probs, val_probs = [], [], []
    for path, (model, ckpt), (mean, std) in zip(paths, loaded, norm):
        model.to(device)
        lt = logits_of(model, ds.test_x, mean, std, device, tta=tta)
        lv = logits_of(model, x_val, mean, std, device, tta=tta)
        m = metrics_from_logits(lt, ds.test_y, spec.num_classes)
        stored = ckpt["meta"].get("metrics", {}).get("test_accuracy")
        if spec.name != first["dataset"]["name"]:
            stored = None  # that was another dataset's test set
        members.append({"name": f"{ckpt['model']['name']} ({path})", "path": str(path),
                        "parameters": ckpt["meta"].get("parameters", 0), "test": m.to_json(),
                        "val_accuracy": float((lv.argmax(1) == y_val).float().mean()),
                        "stored_test_accuracy": stored})
        if stored is None:
            same = ""
        elif tta:
            same = f" with test-time augmentation ({100 * stored:.2f}% without, in training)"
        else:
            same = " (same as in training)" if stored == m.accuracy else f" (training reported {100 * stored:.2f}%)"
        log(f"{path}: test accuracy {100 * m.accuracy:.2f}%{same}")
        test_probs.append(lt.softmax(1))
        val_probs.append(lv.softmax(1))
    probs = torch.stack(test_probs).mean(0)
    ens = metrics_from_probs(probs, ds.test_y, spec.num_classes)
    if len(paths) > 1:
        log(f"ensemble of {len(paths)}: test accuracy {100 * ens.accuracy:.2f}%")
    # Calibrate on validation; report on test.
    val_logits = torch.stack(val_probs).mean(0).clamp_min(1e-12).log()
    test_logits = probs.clamp_min(1e-12).log()
    val_cal = calibrate(val_logits, y_val)  # as training does for the checkpoint
    scaled = (test_logits / val_cal["temperature"]).softmax(1)
    flagged = scaled.max(1).values < val_cal["threshold"]
    wrong = scaled.argmax(1) != ds.test_y
    calibration = {"temperature": val_cal["temperature"], "threshold": val_cal["threshold"], "val": val_cal,
                   "test_before": reliability(probs, ds.test_y), "test_after": reliability(scaled, ds.test_y),
                   "test_flagged": float(flagged.float().mean()),
                   "test_errors_caught": float((wrong & flagged).sum() / max(int(wrong.sum()), 1))}
    if out is None:
        out = paths[0].parent if len(paths) == 1 else paths[0].parent / "ensemble"
        if spec.name != first["dataset"]["name"]:
            out = out / f"on-{spec.name}"  # the run's own report stays as it is
        if tta:
            out = out / "tta"
    out = Path(out)
    title = members[0]["name"] if len(paths) == 1 else f"ensemble of {len(paths)} models"
    title += " with test-time augmentation" if tta else ""
    result = {"title": title, "dataset": spec.name, "tta": tta, "members": members,
              "ensemble": {**ens.to_json(), "val_accuracy": float((val_logits.argmax(1) == y_val).float().mean())},
              "probs": probs, "calibration": calibration}
    run_dirs = list(dict.fromkeys(p.parent for p in paths))
    figs = write_report(out, result, ds.test_x, ds.test_y, spec.classes, run_dirs)
    summary = {k: v for k, v in result.items() if k != "probs"}
    write_json(out / "evaluation.json", summary)
    log(f"report: {out / 'report.md'}")
    return {**summary, "figures": [str(f) for f in figs], "out": str(out)}
