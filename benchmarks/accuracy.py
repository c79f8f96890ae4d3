"""Accuracy of a recipe over several seeds, and of their ensemble, measured honestly.

    python benchmarks/accuracy.py --recipe best --seeds 5          # runs/accuracy/best-seed0 ... seed4
    python benchmarks/accuracy.py --recipe best --checkpoint last --tta

Nothing is chosen on the test set: `--checkpoint best` takes each run's epoch with the best
validation accuracy, `--checkpoint last` its final weights (no choice at all), and `--tta`
is a fixed test-time augmentation; the test set is only reported. A seed whose run folder
already holds metrics.json is reused, so an interrupted benchmark picks up where it stopped;
a half-finished run is resumed.
Prints a Markdown table: model, parameters, epochs, train minutes, mean/std/min/max test
accuracy, and the ensemble of all seeds (mean of probabilities).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from digitrec.evaluate import evaluate
from digitrec.training.config import config_from
from digitrec.training.loop import train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="best")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/accuracy"))
    p.add_argument("--epochs", type=float, default=None, help="override the recipe's epochs")
    p.add_argument("--width", type=int, default=None, help="override the model's width")
    p.add_argument("--keep", choices=["best", "last"], default=None, help="override the recipe's `keep`")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best",
                   help="each run's best epoch on validation, or its final weights")
    p.add_argument("--tta", action="store_true", help="score with test-time augmentation (one-pixel shifts)")
    p.add_argument("--no-ensemble", action="store_true")
    args = p.parse_args()

    runs = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        out = args.out / f"{args.recipe}-seed{seed}"
        if not (out / "metrics.json").exists():
            cfg = config_from(args.recipe, seed=seed, epochs=args.epochs, keep=args.keep,
                              model_args={"width": args.width} if args.width else None)
            resume = (out / "last.pt").exists() and (out / "config.json").exists()
            print(f"training {args.recipe} seed {seed} into {out}" + (" (resuming)" if resume else ""),
                  file=sys.stderr, flush=True)
            train(cfg, out, resume=resume)
        runs.append((out, json.loads((out / "metrics.json").read_text())))

    minutes = [m["train_seconds"] / 60 for _, m in runs]
    m0 = runs[0][1]
    tag = args.checkpoint + ("-tta" if args.tta else "")
    quiet = lambda s: print(s, file=sys.stderr)  # noqa: E731
    if args.checkpoint == "best" and not args.tta:  # what training measured
        test = [100 * m["test_accuracy"] for _, m in runs]
        val = [100 * m["val_accuracy"] for _, m in runs]
    else:  # reload and score each run's chosen weights, with its own report in <run>/<tag>/
        scored = [evaluate([o / f"{args.checkpoint}.pt"], out=o / tag, tta=args.tta, log=quiet) for o, _ in runs]
        test = [100 * r.ensemble["accuracy"] for r in scored]
        val = [100 * r.members[0]["val_accuracy"] for r in scored]
    ens = ""
    if len(runs) > 1 and not args.no_ensemble:
        res = evaluate([o / f"{args.checkpoint}.pt" for o, _ in runs], tta=args.tta, log=quiet,
                       out=args.out / f"{args.recipe}-ensemble" / tag)
        ens = f"{100 * res.ensemble['accuracy']:.2f}%"
        ens += f" (validation {100 * res.ensemble['val_accuracy']:.2f}%)"
    sd = statistics.stdev(test) if len(test) > 1 else 0.0
    print(f"checkpoint: {args.checkpoint}, test-time augmentation: {'on' if args.tta else 'off'}\n")
    print(f"| recipe | model | parameters | epochs | train minutes (mean) | test mean | std | min | max | "
          f"ensemble of {len(runs)} |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    epochs = json.loads((runs[0][0] / "config.json").read_text())["epochs"]
    args_ = {k: v for k, v in m0["model"]["args"].items() if k != "num_classes"}
    model = m0["model"]["name"] + "".join(f", {k} {v}" for k, v in args_.items())
    print(f"| `{args.recipe}` | {model} | {m0['parameters']:,} | {epochs:g} | {statistics.mean(minutes):.1f} | "
          f"{statistics.mean(test):.2f}% | {sd:.2f} | {min(test):.2f}% | {max(test):.2f}% | {ens} |")
    print(f"\nvalidation accuracy: mean {statistics.mean(val):.2f}% (min {min(val):.2f}, max {max(val):.2f})")
    print("per seed (seed, val %, test %, train minutes): " +
          ", ".join(f"({m['seed']}, {v:.2f}, {t:.2f}, {mi:.1f})" for (_, m), v, t, mi in zip(runs, val, test, minutes)))


if __name__ == "__main__":
    main()
