"""Are the explanations faithful, and what do they cost? The deletion test on MNIST test digits.

    python benchmarks/explain.py [--n 1000] [--checkpoint PATH]

For each digit, the pixels of its ink are wiped (set to the background) in an order, a tenth of
them at a time, and the model's probability of the class it first answered is read after each
step; the curves are the means over all digits. The orders:
    saliency   most salient first (inference/explain.py: occlusion, what `--explain` shows)
    brightest  the strongest ink first (a map that knows nothing of the model)
    random     a random order
A faithful map's curve falls first and fastest: below random's at every step. Also timed: the
cost of explaining one image on the torch-free path (ONNX Runtime, the shipped model), which is
what `digitrec predict --explain` and `/api/predict?explain=1` add per image.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from _common import machine


def main(argv=None) -> int:
    from digitrec.data.load import load
    from digitrec.inference.explain import deletion_curve, saliency
    from digitrec.inference.predictor import Predictor

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="test digits")
    p.add_argument("--steps", type=int, default=10, help="deletion steps (each wipes 1/steps of the ink)")
    p.add_argument("--checkpoint", type=Path, default=None, help="model (default: the shipped one, on ONNX Runtime)")
    args = p.parse_args(argv)
    predictor = Predictor(args.checkpoint)
    ds = load(predictor.card.dataset)
    images = ds.test_x[: args.n].numpy()
    target = predictor.probabilities(list(images)).argmax(1)
    times, maps = [], []
    for image, c in zip(images, target):
        t0 = time.perf_counter()
        maps.append(saliency(predictor.probabilities, image, [int(c)])[0])
        times.append(1000 * (time.perf_counter() - t0))
    rng = np.random.default_rng(0)
    orders = {
        "saliency": np.argsort(-np.stack(maps).reshape(len(images), -1), 1, kind="stable"),
        "brightest": np.argsort(-images.reshape(len(images), -1).astype(np.int64), 1, kind="stable"),
        "random": np.stack([rng.permutation(images[0].size) for _ in images]),
    }
    curves = {k: deletion_curve(predictor.probabilities, images, target, o, args.steps) for k, o in orders.items()}
    print(f"{machine()}\n{args.n} MNIST test digits, {predictor.path.name} on {predictor.backend}; mean probability of "
          f"the first answer as its ink is wiped, most salient first\n")
    head = " | ".join(f"{100 * s // args.steps}%" for s in range(args.steps + 1))
    print(f"| order | {head} | area under the curve |")
    print("|---|" + "---:|" * (args.steps + 2))
    for k, c in curves.items():
        area = float(np.trapezoid(c, dx=1 / args.steps)) if hasattr(np, "trapezoid") else float(np.trapz(c, dx=1 / args.steps))
        print(f"| {k} | " + " | ".join(f"{v:.3f}" for v in c) + f" | {area:.3f} |")
    below = all(curves["saliency"][s] < curves["random"][s] for s in range(1, args.steps))
    print(f"\nsaliency below random at every step in between: {'yes' if below else 'NO'}")
    print(f"explaining one image: median {statistics.median(times):.1f} ms (p90 "
          f"{sorted(times)[int(0.9 * len(times))]:.1f} ms)")
    return 0 if below else 1


if __name__ == "__main__":
    sys.exit(main())
