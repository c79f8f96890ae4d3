"""Figures and report.md, computed from saved logits and history; the model is never re-run here."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from .util import atomic_write, atomic_write_text


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    _plt().close(fig)


# ----------------------------------------------------------------------------- numbers


def ink_stats(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image (N, 28, 28 uint8): ink mass, faintness and stroke width.

    - ink: total ink, the sum of pixel values / 255
    - intensity: mean value of the pixels that carry ink (low = faint strokes)
    - width: stroke width in pixels, 2 * area / perimeter of the pixels >= 128 (low = thin)
    """
    xf = x.float() / 255.0
    inked = x > 25
    ink = xf.sum((1, 2))
    intensity = (xf * inked).sum((1, 2)) / inked.sum((1, 2)).clamp(min=1)
    solid = (x >= 128).float()
    p = torch.nn.functional.pad(solid, (1, 1, 1, 1))
    interior = p[:, 1:-1, :-2] * p[:, 1:-1, 2:] * p[:, :-2, 1:-1] * p[:, 2:, 1:-1]
    perimeter = (solid * (1 - interior)).sum((1, 2))
    width = 2 * solid.sum((1, 2)) / perimeter.clamp(min=1)
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


def plot_loss(run_dirs: list[Path], path: Path) -> bool:
    """Per-step training loss (raw and smoothed), per-epoch train and validation loss."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    drew = False
    for k, d in enumerate(run_dirs):
        steps_f, hist_f = d / "steps.csv", d / "history.csv"
        if not (steps_f.exists() and hist_f.exists()):
            continue
        tag = f" ({d.name})" if len(run_dirs) > 1 else ""
        with open(steps_f) as f:
            losses = torch.tensor([float(r["loss"]) for r in csv.DictReader(f)])
        with open(hist_f) as f:
            hist = list(csv.DictReader(f))
        if not len(losses) or not hist:
            continue
        spe = int(hist[0]["step"]) or 1  # steps in the first epoch
        x = torch.arange(1, len(losses) + 1) / spe
        ax.plot(x, losses, alpha=0.2, lw=0.6, color=f"C{k}")
        win = max(1, min(50, len(losses) // 10))
        smooth = torch.nn.functional.avg_pool1d(losses[None, None], win, 1).flatten()
        ax.plot(x[win - 1 :], smooth, color=f"C{k}", lw=1.2, label=f"train, per step (smoothed){tag}")
        ep = [int(r["epoch"]) for r in hist]
        ax.plot(ep, [float(r["train_loss"]) for r in hist], "o-", color=f"C{k}", ms=4, lw=1,
                label=f"train, per epoch{tag}")
        val = [(e, float(r["val_loss"])) for e, r in zip(ep, hist) if r["val_loss"] not in ("", "nan")]
        if val:
            ax.plot(*zip(*val), "s--", color=f"C{k}", ms=4, lw=1, alpha=0.8, label=f"validation{tag}")
        drew = True
    if not drew:
        plt.close(fig)
        return False
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title("Training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


def plot_grid(x: torch.Tensor, titles: list[str], path: Path, title: str, colors=None, cols: int = 10) -> None:
    plt = _plt()
    n = len(x)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.3 + 0.4), squeeze=False)
    size = 7 if max(map(len, titles), default=0) <= 16 else 5.5  # long class names: "T-shirt/top→Dress"
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(x[i].numpy(), cmap="gray", vmin=0, vmax=255)
            ax.set_title(titles[i].replace(" (", "\n("), fontsize=size, color=(colors[i] if colors else "black"))
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def plot_confusion(confusion: list[list[int]], classes, path: Path) -> None:
    plt = _plt()
    c = torch.tensor(confusion).float()
    k = len(classes)
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


def plot_per_class(per_class: list[float], classes, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, len(classes) * 0.35), 3.5))
    acc = [100 * a for a in per_class]
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


def plot_ink(x: torch.Tensor, wrong: torch.Tensor, path: Path) -> None:
    plt = _plt()
    stats = ink_stats(x)
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


def plot_reliability(before: dict, after: dict, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    e = torch.tensor(before["edges"])
    centers = ((e[1:] + e[:-1]) / 2).tolist()
    for rel, name, c in ((before, "raw", "tab:red"), (after, "temperature-scaled", "tab:blue")):
        pts = [(cx, a) for cx, a, n in zip(centers, rel["accuracy"], rel["count"]) if n > 0]
        ax.plot(*zip(*pts), "o-", color=c, ms=4, label=f"{name} (ECE {100 * rel['ece']:.2f}%)")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability diagram (test set)")
    ax.legend(fontsize=8)
    _save(fig, path)


# ----------------------------------------------------------------------------- report


def pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def write_report(out: Path, result: dict, x_test: torch.Tensor, y_test: torch.Tensor, classes,
                 run_dirs: list[Path]) -> list[Path]:
    """All figures plus report.md in `out`; returns the figure paths."""
    out.mkdir(parents=True, exist_ok=True)
    probs, ens = result["probs"], result["ensemble"]
    conf, pred = probs.max(1)
    wrong = pred != y_test
    figs = []
    if plot_loss(run_dirs, out / "loss_curve.png"):
        figs.append(out / "loss_curve.png")
    g = torch.Generator().manual_seed(0)
    right_idx = (~wrong).nonzero().flatten()
    right_idx = right_idx[torch.randperm(len(right_idx), generator=g)[:40]]
    plot_grid(x_test[right_idx], [f"{classes[int(pred[i])]} ({100 * float(conf[i]):.0f}%)" for i in right_idx],
              out / "correct_grid.png", "Correctly classified test images: prediction (confidence)")
    wrong_idx = wrong.nonzero().flatten()
    wrong_idx = wrong_idx[conf[wrong_idx].argsort(descending=True)][:60]
    plot_grid(x_test[wrong_idx],
              [f"{classes[int(y_test[i])]}→{classes[int(pred[i])]} ({100 * float(conf[i]):.0f}%)" for i in wrong_idx],
              out / "errors_grid.png",
              f"Misclassified test images ({int(wrong.sum())} in all, most confident first): true→predicted (confidence)",
              colors=["tab:red"] * len(wrong_idx))
    plot_confusion(ens["confusion"], classes, out / "confusion.png")
    plot_per_class(ens["per_class_accuracy"], classes, out / "per_class.png")
    plot_ink(x_test, wrong, out / "ink.png")
    figs += [out / f for f in ("correct_grid.png", "errors_grid.png", "confusion.png", "per_class.png", "ink.png")]
    cal = result.get("calibration")
    if cal:
        plot_reliability(cal["test_before"], cal["test_after"], out / "reliability.png")
        figs.append(out / "reliability.png")

    pairs = confused_pairs(ens["confusion"], classes)
    ink = ink_analysis(x_test, wrong)
    lines = [f"# Evaluation report: {result['title']}", ""]
    lines += [f"Dataset: **{result['dataset']}**, test set of {len(y_test):,} images "
              "(never used to choose epochs, checkpoints or hyperparameters).", ""]
    lines += ["| model | parameters | test accuracy | test loss | errors |", "|---|---:|---:|---:|---:|"]
    for m in result["members"]:
        lines.append(f"| {m['name']} | {m['parameters']:,} | {pct(m['test']['accuracy'])} | "
                     f"{m['test']['loss']:.4f} | {round((1 - m['test']['accuracy']) * len(y_test))} |")
    if len(result["members"]) > 1:
        lines.append(f"| **ensemble (mean of probabilities)** | | **{pct(ens['accuracy'])}** | {ens['loss']:.4f} | "
                     f"{int(wrong.sum())} |")
    lines += ["", "## Training", ""]
    lines += ["![loss curve](loss_curve.png)" if (out / "loss_curve.png").exists()
              else "No training history was found next to the checkpoint.", ""]
    lines += ["## Where the errors are", "", "Most-confused pairs (both directions):", "",
              "| pair | errors | a read as b | b read as a |", "|---|---:|---:|---:|"]
    lines += [f"| {p['a']} vs {p['b']} | {p['total']} | {p['a_as_b']} | {p['b_as_a']} |" for p in pairs]
    worst = sorted(zip(classes, ens["per_class_accuracy"]), key=lambda t: t[1])[:3]
    lines += ["", "Hardest classes: " + ", ".join(f"{c} ({pct(a)})" for c, a in worst) + ".", "",
              "![confusion matrix](confusion.png)", "", "![per-class accuracy](per_class.png)", ""]
    lines += ["## Faint and thin strokes", "",
              "Ink statistics of misclassified versus correctly classified test images, and the error "
              "rate in each quarter of the test set sorted by that statistic (Q1 = least):", "",
              "| statistic | mean, misclassified | mean, correct | error rate Q1 | Q2 | Q3 | Q4 |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name, label in (("ink", "total ink"), ("intensity", "ink intensity"), ("width", "stroke width (px)")):
        s = ink[name]
        lines.append(f"| {label} | {s['mean_wrong']:.3f} | {s['mean_right']:.3f} | " +
                     " | ".join(pct(e) for e in s["error_rate_by_quartile"]) + " |")
    lines += ["", _ink_words(ink), "", "![ink statistics](ink.png)", ""]
    lines += ["## Galleries", "", "![misclassified](errors_grid.png)", "", "![correct](correct_grid.png)", ""]
    if cal:
        lines += ["## Calibration", "",
                  f"Temperature scaling fitted on the validation split: T = {cal['temperature']:.3f}. "
                  f"Expected calibration error on the test set: {pct(cal['test_before']['ece'])} raw, "
                  f"{pct(cal['test_after']['ece'])} after scaling. Answers below confidence "
                  f"{cal['threshold']:.3f} are reported as `unsure`: that flags "
                  f"{pct(cal['test_flagged'])} of test images, which hold {pct(cal['test_errors_caught'])} "
                  "of the test errors.", "", "![reliability diagram](reliability.png)", ""]
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
