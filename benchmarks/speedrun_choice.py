"""How the `speedrun` recipe was chosen: on VALIDATION, never on test digits.

    python benchmarks/speedrun_choice.py                       # every candidate, 3 seeds
    python benchmarks/speedrun_choice.py --only anchor,lenet1 --seeds 5

The anchor (benchmarks/anchor.py) is trained on the same 55,000 training images digitrec trains
on and scored on the 5,000 validation images every 10 steps; the validation accuracy it ends at
(on test it ends at about 99.0%) is the target. Each candidate recipe is then trained the same
way, taking turns with the others seed by seed, and the table gives its seconds of training to
reach that target on validation (evaluation off the clock), the seeds that never did, and its
final validation accuracy. The fastest candidate that reached it on every seed is `speedrun`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from _common import machine

L = dict(recipe="speedrun", model="lenet", beta1=0.7, beta2=0.9)
CANDIDATES = {  # name -> the recipe and the options that differ from it
    "anchor": None,
    "fast2": dict(recipe="speedrun", model="fast", epochs=2, beta1=0.9, beta2=0.999),  # the speedrun before
    "lenet1": dict(L, epochs=1),
    "lenet1.25": dict(L, epochs=1.25),
    "lenet1.5": dict(L, epochs=1.5),
}


def curve_of(name: str, ds, tr, vx, vy, seed: int) -> list[tuple[float, float]]:
    """(seconds of training, validation accuracy) every 10 steps of one run."""
    from anchor import train_anchor

    from digitrec.metrics import logits_of
    from digitrec.training.config import config_from
    from digitrec.training.loop import train

    card, curve = ds.spec.card(), []

    def watch(step, seconds, model):
        curve.append((seconds, float((logits_of(model, vx, card, "cpu").argmax(1) == vy).float().mean())))

    if CANDIDATES[name] is None:
        train_anchor(ds.train_x[tr], ds.train_y[tr], "cpu", seed, observe=watch, every=10)
    else:
        kw = dict(CANDIDATES[name])
        cfg = config_from(kw.pop("recipe"), seed=seed, device="cpu", **kw)
        with tempfile.TemporaryDirectory() as tmp:
            train(cfg, tmp, data=ds, quiet=True, observe=watch, observe_every=10)
    return curve


def main() -> None:
    from digitrec.data.load import load, split_indices

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(CANDIDATES), help="comma-separated candidates (anchor first)")
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    names = args.only.split(",")
    ds = load("mnist")
    tr, va = split_indices(len(ds.train_x), 5000, 0)
    vx, vy = ds.train_x[va], ds.train_y[va]
    curves: dict[str, list] = {n: [] for n in names}
    for seed in range(args.seeds):
        for name in names if seed % 2 == 0 else names[::-1]:
            curves[name].append(curve_of(name, ds, tr, vx, vy, seed))
            print(f"  {name} seed {seed}: final {100 * curves[name][-1][-1][1]:.2f}% after {curves[name][-1][-1][0]:.2f} s",
                  flush=True)
    target = statistics.mean(c[-1][1] for c in curves["anchor"]) if "anchor" in curves else 0.99
    print(f"\n{machine()}\ntarget: {100 * target:.2f}% validation accuracy (the anchor's final, mean of {args.seeds})\n")
    print("| candidate | seconds to the target, mean | never | per seed | final validation accuracy | training seconds |")
    print("|---|---:|---:|---|---:|---:|")
    for name, cs in curves.items():
        ts = [next((s for s, a in c if a >= target), None) for c in cs]
        got = [t for t in ts if t is not None]
        print(f"| {name} | {statistics.mean(got) if got else float('nan'):.2f} | {len(ts) - len(got)} | "
              f"{', '.join('never' if t is None else f'{t:.2f}' for t in ts)} | "
              f"{100 * statistics.mean(c[-1][1] for c in cs):.2f}% | {statistics.mean(c[-1][0] for c in cs):.2f} |")


if __name__ == "__main__":
    main()
