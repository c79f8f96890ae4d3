"""Which committee? Ensemble recipes compared on validation, three disjoint ensembles each.

    python benchmarks/ensemble.py runs/gpu                    # run folders named KIND-sSEED
    python benchmarks/ensemble.py runs/gpu --kinds best,wide  # only these kinds of member

A member is a run folder NAME-sSEED holding best.pt (benchmarks/gpu.sh makes them; any
`digitrec train --out DIR/KIND-sSEED` does). A recipe is a list of kinds; its ensemble i takes
the i-th seed of every kind, so the three ensembles of a recipe share no member. Each member's
validation and test probabilities are computed once (cached in its folder as probs.pt).

The recipe is chosen on validation alone: the highest mean validation accuracy of its three
ensembles (ties: fewer members). Test accuracy is printed beside it for the record; the
docs/results.md reports the chosen row. A greedy selection of kinds on validation is printed too, as a
check that the declared recipes did not miss a better one.
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path

import torch

from digitrec.checkpoint import load_model
from digitrec.data.load import load, split_indices
from digitrec.metrics import logits_of
from digitrec.util import atomic_write

ENSEMBLES = 3


def members(root: Path) -> dict[str, list[Path]]:
    """kind -> its run folders, by seed."""
    found: dict[str, list[tuple[int, Path]]] = {}
    for d in sorted(root.iterdir()):
        m = re.fullmatch(r"(.+)-s(\d+)", d.name)
        if m and (d / "best.pt").exists():
            found.setdefault(m.group(1), []).append((int(m.group(2)), d))
    return {k: [d for _, d in sorted(v)] for k, v in found.items()}


def probabilities(run: Path, ds, va) -> dict[str, torch.Tensor]:
    """The member's softmax probabilities on validation and test, cached in its folder."""
    cache = run / "probs.pt"
    if cache.exists() and cache.stat().st_mtime >= (run / "best.pt").stat().st_mtime:
        return torch.load(cache, weights_only=True)
    model, ckpt = load_model(run / "best.pt")
    probs = {name: logits_of(model, x, ckpt.card, "cpu").softmax(1)
             for name, x in (("val", ds.train_x[va]), ("test", ds.test_x))}
    atomic_write(cache, lambda tmp: torch.save(probs, tmp))
    return probs


def accuracy(probs: list[torch.Tensor], y: torch.Tensor) -> float:
    return float((torch.stack(probs).mean(0).argmax(1) == y).float().mean())


def score(recipe: list[str], kinds: dict, probs: dict, y: dict) -> dict | None:
    """Mean validation and test accuracy of the recipe's three disjoint ensembles."""
    if any(len(kinds[k]) < ENSEMBLES for k in recipe):
        return None
    out = {}
    for split in ("val", "test"):
        out[split] = [accuracy([probs[kinds[k][i]][split] for k in recipe], y[split]) for i in range(ENSEMBLES)]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path)
    p.add_argument("--kinds", help="comma-separated kinds to use (default: every kind with 3 seeds or more)")
    args = p.parse_args()
    kinds = members(args.root)
    if args.kinds:
        kinds = {k: kinds[k] for k in args.kinds.split(",")}
    kinds = {k: v for k, v in kinds.items() if len(v) >= ENSEMBLES}
    ds = load("mnist")
    _, va = split_indices(len(ds.train_x), 5000, 0)
    y = {"val": ds.train_y[va], "test": ds.test_y}
    probs = {d: probabilities(d, ds, va) for ds_kind in kinds.values() for d in ds_kind}

    print("| member kind | seeds | validation % (mean) | test % (mean) |\n|---|---:|---:|---:|")
    for k, runs in kinds.items():
        v = statistics.mean(accuracy([probs[d]["val"]], y["val"]) for d in runs)
        t = statistics.mean(accuracy([probs[d]["test"]], y["test"]) for d in runs)
        print(f"| {k} | {len(runs)} | {100 * v:.3f} | {100 * t:.3f} |")

    all_kinds = list(kinds)
    recipes = {"every kind": all_kinds, **{f"{k} alone": [k] for k in all_kinds}}
    no_elastic = [k for k in all_kinds if k not in ("elastic", "long")]
    recipes["every kind without elastic distortion"] = no_elastic
    wide = [k for k in all_kinds if k.startswith(("wide", "w96"))]
    if wide:
        recipes["the width-96 kinds"] = wide
        recipes["the width-96 kinds and best"] = wide + ["best"]
    # greedy: add the kind that raises the mean validation accuracy most, while one does
    chosen: list[str] = []
    best_val = 0.0
    while True:
        trials = [(statistics.mean(score(chosen + [k], kinds, probs, y)["val"]), k) for k in all_kinds if k not in chosen]
        if not trials:
            break
        v, k = max(trials)
        if v <= best_val:
            break
        chosen, best_val = chosen + [k], v
    recipes["greedy on validation: " + "+".join(chosen)] = chosen

    rows = []
    for name, recipe in recipes.items():
        s = score(recipe, kinds, probs, y)
        if s is not None:
            rows.append((statistics.mean(s["val"]), -len(recipe), name, recipe, s))
    rows.sort(reverse=True)
    print(f"\n| recipe ({ENSEMBLES} disjoint ensembles) | members each | validation %: each, mean | test %: each, mean |"
          "\n|---|---:|---|---|")
    for v, _, name, recipe, s in rows:
        cells = [", ".join(f"{100 * a:.2f}" for a in s[split]) + f"; **{100 * statistics.mean(s[split]):.3f}**"
                 for split in ("val", "test")]
        print(f"| {name} | {len(recipe)} | {cells[0]} | {cells[1]} |")
    v, _, name, recipe, s = rows[0]
    print(f"\nChosen on validation: {name} ({len(recipe)} members): validation {100 * v:.3f}%, "
          f"test {100 * statistics.mean(s['test']):.3f}% (mean of {ENSEMBLES}).")
    for i in range(ENSEMBLES):
        print("  digitrec evaluate --checkpoint " + " ".join(str(kinds[k][i] / "best.pt") for k in recipe))


if __name__ == "__main__":
    main()
