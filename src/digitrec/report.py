"""The evaluation report: figures and report.md, computed from an `Evaluation` (logits and
metrics already computed) and the run's saved history. The model is re-run only for the
saliency gallery (occlusion, inference/explain.py), through `Report.probabilities`.

The report is a list of sections, each with its text and its figures (`SECTIONS`). Adding a
figure is one plot function `(Report, path) -> bool` (False: nothing to draw) and one
`Figure` entry in its section, both in this file.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .ink import stroke_width
from .util import atomic_write, atomic_write_text


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    _plt().close(fig)


@dataclass
class Report:
    """What the figures and text are drawn from."""

    evaluation: object  # evaluate.Evaluation: title, dataset, members, ensemble, probs, calibration
    x_test: torch.Tensor  # (N, 28, 28) uint8
    y_test: torch.Tensor  # (N,)
    classes: tuple[str, ...]
    run_dirs: list[Path] = field(default_factory=list)  # where history.csv and steps.csv may be
    # the model as a function, list of (28, 28) uint8 -> (N, C) probabilities; None: no saliency gallery
    probabilities: Callable | None = None

    @cached_property
    def pred(self) -> torch.Tensor:
        return self.evaluation.probs.argmax(1)

    @cached_property
    def conf(self) -> torch.Tensor:
        return self.evaluation.probs.max(1).values

    @cached_property
    def wrong(self) -> torch.Tensor:
        return self.pred != self.y_test

    @property
    def ensemble(self) -> dict:
        return self.evaluation.ensemble


# ----------------------------------------------------------------------------- numbers


def ink_stats(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image (N, 28, 28 uint8): ink mass, faintness and stroke width.

    - ink: total ink, the sum of pixel values / 255
    - intensity: mean value of the pixels that carry ink (low = faint strokes)
    - width: stroke width in pixels of the pixels >= 128 (ink.stroke_width; low = thin)
    """
    xf = x.float() / 255.0
    inked = x > 25
    ink = xf.sum((1, 2))
    intensity = (xf * inked).sum((1, 2)) / inked.sum((1, 2)).clamp(min=1)
    width = torch.from_numpy(stroke_width(x.numpy() >= 128).astype(np.float32))
    return {"ink": ink, "intensity": intensity, "width": width}


def ink_analysis(x: torch.Tensor, wrong: torch.Tensor) -> dict:
    """How the ink of misclassified digits differs from that of correct ones."""
    stats = ink_stats(x)
    out = {}
    for name, v in stats.items():
        q = torch.quantile(v, torch.tensor([0.25, 0.5, 0.75]))
        quart = torch.bucketize(v, q)  # 0 = lowest quarter
        err_by_q = [float(wrong[quart == i].float().mean()) if (quart == i).any() else float("nan")
                    for i in range(4)]
        out[name] = {
            "mean_wrong": float(v[wrong].mean()) if wrong.any() else float("nan"),
            "mean_right": float(v[~wrong].mean()) if (~wrong).any() else float("nan"),
            "error_rate_by_quartile": err_by_q,
        }
    return out


def confused_pairs(confusion: list[list[int]], classes, k: int = 6) -> list[dict]:
    c = torch.tensor(confusion)
    pairs = []
    for i in range(len(c)):
        for j in range(i + 1, len(c)):
            n = int(c[i, j] + c[j, i])
            if n:
                pairs.append({"a": classes[i], "b": classes[j], "total": n,
                              "a_as_b": int(c[i, j]), "b_as_a": int(c[j, i])})
    return sorted(pairs, key=lambda p: -p["total"])[:k]


# ----------------------------------------------------------------------------- figures


def _read_run(d: Path) -> tuple[torch.Tensor, list[dict]] | None:
    """(per-step losses, per-epoch rows) of a run folder, or None where it has none."""
    steps_f, hist_f = d / "steps.csv", d / "history.csv"
    if not (steps_f.exists() and hist_f.exists()):
        return None
    with open(steps_f) as f:
        losses = torch.tensor([float(r["loss"]) for r in csv.DictReader(f)])
    with open(hist_f) as f:
        hist = list(csv.DictReader(f))
    return (losses, hist) if len(losses) and hist else None


def plot_loss(r: Report, path: Path) -> bool:
    """Per-step training loss (raw and smoothed), per-epoch train and validation loss."""
    runs = [(d, got) for d in r.run_dirs if (got := _read_run(d)) is not None]
    if not runs:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k, (d, (losses, hist)) in enumerate(runs):
        tag = f" ({d.name})" if len(r.run_dirs) > 1 else ""
        spe = int(hist[0]["step"]) or 1  # steps in the first epoch
        x = torch.arange(1, len(losses) + 1) / spe
        ax.plot(x, losses, alpha=0.2, lw=0.6, color=f"C{k}")
        win = max(1, min(50, len(losses) // 10))
        smooth = torch.nn.functional.avg_pool1d(losses[None, None], win, 1).flatten()
        ax.plot(x[win - 1 :], smooth, color=f"C{k}", lw=1.2, label=f"train, per step (smoothed){tag}")
        ep = [int(row["epoch"]) for row in hist]
        ax.plot(ep, [float(row["train_loss"]) for row in hist], "o-", color=f"C{k}", ms=4, lw=1,
                label=f"train, per epoch{tag}")
        val = [(e, float(row["val_loss"])) for e, row in zip(ep, hist) if row["val_loss"] not in ("", "nan")]
        if val:
            ax.plot(*zip(*val), "s--", color=f"C{k}", ms=4, lw=1, alpha=0.8, label=f"validation{tag}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title("Training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


def plot_grid(x, titles: list[str], path: Path, title: str, colors=None, cols: int = 10, cmaps=None) -> None:
    """Images (N, H, W) in a grid, each with a title (and optionally its own colour map)."""
    plt = _plt()
    n = len(x)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.3 + 0.4), squeeze=False)
    size = 7 if max(map(len, titles), default=0) <= 16 else 5.5  # long class names: "T-shirt/top→Dress"
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = x[i].numpy() if isinstance(x[i], torch.Tensor) else x[i]
            ax.imshow(img, cmap=(cmaps[i] if cmaps else "gray"), **({} if img.ndim == 3 else {"vmin": 0, "vmax": 255}))
            ax.set_title(titles[i].replace(" (", "\\n("), fontsize=size, color=(colors[i] if colors else "black"))
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def plot_correct(r: Report, path: Path) -> bool:
    g = torch.Generator().manual_seed(0)
    idx = (~r.wrong).nonzero().flatten()
    idx = idx[torch.randperm(len(idx), generator=g)[:40]]
    plot_grid(r.x_test[idx], [f"{r.classes[int(r.pred[i])]} ({100 * float(r.conf[i]):.0f}%)" for i in idx],
              path, "Correctly classified test images: prediction (confidence)")
    return True


def plot_errors(r: Report, path: Path) -> bool:
    idx = r.wrong.nonzero().flatten()
    idx = idx[r.conf[idx].argsort(descending=True)][:60]
    plot_grid(r.x_test[idx],
              [f"{r.classes[int(r.y_test[i])]}→{r.classes[int(r.pred[i])]} ({100 * float(r.conf[i]):.0f}%)" for i in idx],
              path, f"Misclassified test images ({int(r.wrong.sum())} in all, most confident first): "
                    "true→predicted (confidence)", colors=["tab:red"] * len(idx))
    return True


def plot_error_saliency(r: Report, path: Path, n: int = 12) -> bool:
    """The most confident errors, each with what the model saw for its answer and for the truth
    (occlusion saliency: red is evidence for the class, blue against)."""
    if r.probabilities is None or not bool(r.wrong.any()):
        return False
    from .inference.explain import blend, heat, saliency

    idx = r.wrong.nonzero().flatten()
    idx = idx[r.conf[idx].argsort(descending=True)][:n]
    tiles, titles = [], []
    for i in idx.tolist():
        image = r.x_test[i].numpy()
        pred, true = int(r.pred[i]), int(r.y_test[i])
        maps = saliency(r.probabilities, image, [pred, true])
        scale = float(np.abs(maps).max())
        gray = np.repeat(image[..., None] / 255.0, 3, -1)
        for k, (cls, word) in enumerate(((pred, "answered"), (true, "true"))):
            tiles.append(np.round(blend(gray, heat(maps[k], scale)) * 255).astype(np.uint8))
            titles.append(f"{word} {r.classes[cls]}")
    plot_grid(tiles, titles, path, "Misclassified test images: why the answer, and why not the truth "
              "(red: evidence for that class, blue: against)", cols=8)
    return True


def plot_confusion(r: Report, path: Path) -> bool:
    plt = _plt()
    c = torch.tensor(r.ensemble["confusion"]).float()
    classes, k = r.classes, len(r.classes)
    fig, ax = plt.subplots(figsize=(max(5, k * 0.45), max(4.5, k * 0.4)))
    off = c.clone()
    off.fill_diagonal_(0)
    im = ax.imshow(off.numpy(), cmap="Reds")
    fig.colorbar(im, ax=ax, label="errors (diagonal shown as numbers only)")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if c[i, j]:
                    ax.text(j, i, int(c[i, j]), ha="center", va="center", fontsize=7,
                            color="tab:blue" if i == j else "black")
    slant = {"rotation": 45, "ha": "right"} if max(map(len, classes)) > 2 else {}
    ax.set_xticks(range(k), classes, fontsize=7, **slant)
    ax.set_yticks(range(k), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (test set)")
    _save(fig, path)
    return True


def plot_per_class(r: Report, path: Path) -> bool:
    plt = _plt()
    classes = r.classes
    fig, ax = plt.subplots(figsize=(max(6, len(classes) * 0.35), 3.5))
    acc = [100 * a for a in r.ensemble["per_class_accuracy"]]
    ax.bar(range(len(classes)), acc, color="tab:blue")
    ax.set_xticks(range(len(classes)), classes, fontsize=8,
                  **({"rotation": 45, "ha": "right"} if max(map(len, classes)) > 2 else {}))
    lo = min(acc)
    ax.set_ylim(max(0, lo - (100 - lo) * 0.5 - 0.5), 100)
    for i, a in enumerate(acc):
        ax.text(i, a, f"{a:.1f}", ha="center", va="bottom", fontsize=6)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Per-class accuracy")
    _save(fig, path)
    return True


def plot_ink(r: Report, path: Path) -> bool:
    plt = _plt()
    stats, wrong = ink_stats(r.x_test), r.wrong
    labels = {"ink": "total ink", "intensity": "mean ink intensity (faintness)", "width": "stroke width (px)"}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, (name, v) in zip(axes, stats.items()):
        lo, hi = float(torch.quantile(v, 0.005)), float(torch.quantile(v, 0.995))
        kw = dict(bins=40, range=(lo, hi), density=True, alpha=0.6)
        ax.hist(v[~wrong].numpy(), label="correct", **kw)
        if wrong.any():
            ax.hist(v[wrong].numpy(), label="misclassified", **kw)
        ax.set_title(labels[name], fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Ink statistics: misclassified vs correct test images", fontsize=10)
    _save(fig, path)
    return True


def plot_reliability(r: Report, path: Path) -> bool:
    cal = r.evaluation.calibration
    if not cal:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    e = torch.tensor(cal["test_before"]["edges"])
    centers = ((e[1:] + e[:-1]) / 2).tolist()
    for rel, name, c in ((cal["test_before"], "raw", "tab:red"), (cal["test_after"], "temperature-scaled", "tab:blue")):
        pts = [(cx, a) for cx, a, n in zip(centers, rel["accuracy"], rel["count"]) if n > 0]
        ax.plot(*zip(*pts), "o-", color=c, ms=4, label=f"{name} (ECE {100 * rel['ece']:.2f}%)")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability diagram (test set)")
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


# ----------------------------------------------------------------------------- text


def pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def text_summary(r: Report) -> list[str]:
    n = len(r.y_test)
    lines = [f"Dataset: **{r.evaluation.dataset}**, test set of {n:,} images "
             "(never used to choose epochs, checkpoints or hyperparameters).", "",
             "| model | parameters | test accuracy | test loss | errors |", "|---|---:|---:|---:|---:|"]
    for m in r.evaluation.members:
        lines.append(f"| {m['name']} | {m['parameters']:,} | {pct(m['test']['accuracy'])} | "
                     f"{m['test']['loss']:.4f} | {round((1 - m['test']['accuracy']) * n)} |")
    if len(r.evaluation.members) > 1:
        lines.append(f"| **ensemble (mean of probabilities)** | | **{pct(r.ensemble['accuracy'])}** | "
                     f"{r.ensemble['loss']:.4f} | {int(r.wrong.sum())} |")
    return lines


def text_training(r: Report) -> list[str]:
    return [] if any(_read_run(d) for d in r.run_dirs) else ["No training history was found next to the checkpoint."]


def text_errors(r: Report) -> list[str]:
    lines = ["Most-confused pairs (both directions):", "",
             "| pair | errors | a read as b | b read as a |", "|---|---:|---:|---:|"]
    lines += [f"| {p['a']} vs {p['b']} | {p['total']} | {p['a_as_b']} | {p['b_as_a']} |"
              for p in confused_pairs(r.ensemble["confusion"], r.classes)]
    worst = sorted(zip(r.classes, r.ensemble["per_class_accuracy"]), key=lambda t: t[1])[:3]
    return lines + ["", "Hardest classes: " + ", ".join(f"{c} ({pct(a)})" for c, a in worst) + "."]


def text_ink(r: Report) -> list[str]:
    ink = ink_analysis(r.x_test, r.wrong)
    lines = ["Ink statistics of misclassified versus correctly classified test images, and the error "
             "rate in each quarter of the test set sorted by that statistic (Q1 = least):", "",
             "| statistic | mean, misclassified | mean, correct | error rate Q1 | Q2 | Q3 | Q4 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, label in (("ink", "total ink"), ("intensity", "ink intensity"), ("width", "stroke width (px)")):
        s = ink[name]
        lines.append(f"| {label} | {s['mean_wrong']:.3f} | {s['mean_right']:.3f} | " +
                     " | ".join(pct(e) for e in s["error_rate_by_quartile"]) + " |")
    return lines + ["", _ink_words(ink)]


def text_calibration(r: Report) -> list[str]:
    cal = r.evaluation.calibration
    if not cal:
        return []
    return [f"Temperature scaling fitted on the validation split: T = {cal['temperature']:.3f}. "
            f"Expected calibration error on the test set: {pct(cal['test_before']['ece'])} raw, "
            f"{pct(cal['test_after']['ece'])} after scaling. Answers below confidence "
            f"{cal['threshold']:.3f} are reported as `unsure`: that flags "
            f"{pct(cal['test_flagged'])} of test images, which hold {pct(cal['test_errors_caught'])} "
            "of the test errors."]


# ----------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Figure:
    file: str
    plot: Callable[[Report, Path], bool]  # draws into the path; False when there is nothing to draw
    caption: str


@dataclass(frozen=True)
class Section:
    title: str | None  # None: the report's opening, under its title
    text: Callable[[Report], list[str]]
    figures: tuple[Figure, ...] = ()


SECTIONS = (
    Section(None, text_summary),
    Section("Training", text_training, (Figure("loss_curve.png", plot_loss, "loss curve"),)),
    Section("Where the errors are", text_errors, (Figure("confusion.png", plot_confusion, "confusion matrix"),
                                                  Figure("per_class.png", plot_per_class, "per-class accuracy"))),
    Section("Faint and thin strokes", text_ink, (Figure("ink.png", plot_ink, "ink statistics"),)),
    Section("Galleries", lambda r: [], (Figure("errors_grid.png", plot_errors, "misclassified"),
                                        Figure("errors_saliency.png", plot_error_saliency,
                                               "misclassified, with saliency for the answer and the truth"),
                                        Figure("correct_grid.png", plot_correct, "correct"))),
    Section("Calibration", text_calibration, (Figure("reliability.png", plot_reliability, "reliability diagram"),)),
)


def write_report(out: Path, report: Report) -> list[Path]:
    """Every section's figures and report.md in `out`; returns the figures drawn."""
    out.mkdir(parents=True, exist_ok=True)
    lines, figs = [f"# Evaluation report: {report.evaluation.title}", ""], []
    for section in SECTIONS:
        drawn = [f for f in section.figures if f.plot(report, out / f.file)]
        text = section.text(report)
        if section.title is not None and not (text or drawn):
            continue
        if section.title is not None:
            lines += [f"## {section.title}", ""]
        lines += text + ([""] if text else [])
        lines += [line for f in drawn for line in (f"![{f.caption}]({f.file})", "")]
        figs += [out / f.file for f in drawn]
    atomic_write_text(out / "report.md", "\n".join(lines))
    return figs


def _ink_words(ink: dict) -> str:
    parts = []
    for name, what in (("intensity", "faint strokes"), ("width", "thin strokes"), ("ink", "images with little ink")):
        s = ink[name]
        q = s["error_rate_by_quartile"]
        if s["mean_wrong"] != s["mean_wrong"]:  # no errors at all
            continue
        ratio = q[0] / q[3] if q[3] > 0 else float("inf")
        conc = "concentrate" if ratio > 1.5 else "do not concentrate" if ratio > 0.67 else "are rarer"
        parts.append(f"Errors {conc} in {what}: misclassified images average "
                     f"{s['mean_wrong']:.3f} against {s['mean_right']:.3f} for correct ones, and the error rate "
                     f"is {pct(q[0])} in the lowest quarter against {pct(q[3])} in the highest.")
    return " ".join(parts) if parts else "No errors to analyse."
