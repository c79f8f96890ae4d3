"""The correction loop: a writer whose style MNIST under-represents corrects the model's mistakes,
and `digitrec finetune` learns from 10, 20, 50 and 100 of those corrections.

    python benchmarks/feedback_loop.py                  # docs/results.md's table (held out: test digits)
    python benchmarks/feedback_loop.py --split val      # what the fine-tuning options were chosen on

The writer: every digit written with a strong slant (shear 0.5) and a thick marker (strokes
widened by a 3x3 dilation, twice), on paper, photographed (scenes' "clean_paper" condition),
and read through preprocessing like any image. The writer writes MNIST training digits (the
training part; never the validation split); each one the model gets wrong is a correction,
sent with its right label, until 100 are kept (a real corrections folder, corrections.py). For
each count, `finetune()` starts from the same model with the first N corrections (none held out:
the writer's held-out digits measure the result) and the loop prints the writer's error rate on
held-out digits in the same style (MNIST test digits; with --split val, validation digits), and
MNIST test accuracy (validation accuracy with --split val).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _common import machine

COUNTS = (10, 20, 50, 100)


def styled(x: torch.Tensor, shear: float = 0.5, widen: int = 2) -> np.ndarray:
    """The writer's hand: (N, 28, 28) uint8 MNIST digits slanted and thickened, as uint8."""
    ink = x.float()[:, None] / 255
    theta = torch.tensor([[1.0, shear, 0.0], [0.0, 1.0, 0.0]]).expand(len(x), 2, 3)
    ink = F.grid_sample(ink, F.affine_grid(theta, list(ink.shape), align_corners=False), align_corners=False)
    for _ in range(widen):
        ink = F.max_pool2d(ink, 3, 1, 1)
    return (ink.clamp(0, 1)[:, 0] * 255).round().byte().numpy()


def as_written(digits: np.ndarray, seed: int) -> np.ndarray:
    """The writer's digits on paper, photographed, and preprocessed: (N, 28, 28) model inputs."""
    from digitrec.inference.preprocess import preprocess
    from digitrec.scenes import render_digit

    rng = np.random.default_rng(seed)
    return np.stack([preprocess(render_digit(d, "clean_paper", rng)[0]).image for d in digits])


def corrections(predictor, x: np.ndarray, y: np.ndarray, folder: Path, need: int) -> int:
    """Feed the writer's digits to the model; keep each misread one, labelled, until `need`."""
    from digitrec.corrections import Corrections

    store = Corrections(folder, tuple(predictor.classes))
    for start in range(0, len(x), 500):
        answers = predictor.predict(list(x[start : start + 500]))
        for img, truth, a in zip(x[start : start + 500], y[start : start + 500], answers):
            if a.label != predictor.classes[truth] and len(store) < need:
                store.add(img, predictor.classes[truth], "writer")
        if len(store) >= need:
            break
    return len(store)


def main(argv=None) -> int:
    from digitrec.corrections import Corrections
    from digitrec.data.load import load, split_indices
    from digitrec.finetune import finetune
    from digitrec.inference.backends import packaged_checkpoint
    from digitrec.inference.predictor import Predictor
    from digitrec.training.config import FinetuneConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=["test", "val"], default="test", help="the writer's held-out digits")
    p.add_argument("--checkpoint", type=Path, default=None, help="the model to start from (default: the shipped one)")
    p.add_argument("--held-out", type=int, default=2000, help="the writer's held-out digits")
    p.add_argument("--lr", type=float, default=FinetuneConfig.lr)
    p.add_argument("--steps", type=int, default=FinetuneConfig.steps)
    p.add_argument("--replay", type=int, default=FinetuneConfig.replay)
    args = p.parse_args(argv)
    checkpoint = args.checkpoint or packaged_checkpoint()
    ds = load("mnist")
    tr, va = split_indices(len(ds.train_x), 5000, 0)
    pool = tr[torch.randperm(len(tr), generator=torch.Generator().manual_seed(1))[:6000]]
    held = ds.test_x[: args.held_out] if args.split == "test" else ds.train_x[va[: args.held_out]]
    held_y = (ds.test_y[: args.held_out] if args.split == "test" else ds.train_y[va[: args.held_out]]).numpy()
    t0 = time.perf_counter()
    writer_x, writer_y = as_written(styled(ds.train_x[pool]), 1), ds.train_y[pool].numpy()
    held_x = as_written(styled(held), 2)
    print(f"{machine()}\nwriter: slanted (shear 0.5), thick strokes, photographed; {len(writer_x)} digits written, "
          f"{len(held_x)} held out ({args.split}); rendered in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    base = Predictor(checkpoint)
    rows = [(0, float((base.probabilities(list(held_x)).argmax(1) != held_y).mean()), None, 0.0)]
    cfg = FinetuneConfig(lr=args.lr, steps=args.steps, replay=args.replay, holdout=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        kept = corrections(base, writer_x, writer_y, Path(tmp) / "all", max(COUNTS))
        images, labels, _ = Corrections(Path(tmp) / "all", tuple(base.classes)).load()
        for n in [c for c in COUNTS if c <= kept]:
            folder = Corrections(Path(tmp) / f"first{n}", tuple(base.classes))
            for img, label in zip(images[:n], labels[:n]):
                folder.add(img, base.classes[label])
            m = finetune(checkpoint, folder.folder, Path(tmp) / f"run{n}", cfg, dataset=ds, log=lambda *_: None,
                         score_on=args.split, keep_worse=True)
            tuned = Predictor(Path(tmp) / f"run{n}" / "best.pt")
            err = float((tuned.probabilities(list(held_x)).argmax(1) != held_y).mean())
            rows.append((n, err, m["after"]["dataset_accuracy"], m["seconds"]))
            print(f"  {n} corrections: writer error {100 * err:.1f}%", file=sys.stderr, flush=True)
    what = "MNIST test accuracy" if args.split == "test" else "MNIST validation accuracy"
    print(f"\n| corrections | writer's held-out error | {what} | finetune seconds |\n|---:|---:|---:|---:|")
    start_acc = base.meta.get("metrics", {}).get("test_accuracy") if args.split == "test" else None
    for n, err, acc, secs in rows:
        acc = start_acc if n == 0 else acc
        print(f"| {n} | {100 * err:.1f}% | {'' if acc is None else f'{100 * acc:.2f}%'} | {secs:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
