"""Real handwriting beyond MNIST: per-class and overall accuracy of a model on USPS and Semeion
digits, each rendered onto paper as a user's image (digitrec.data.real) and read by
`preprocess()`; with --textbook, also by the textbook preparation of the same pages.

    DIGITREC_DATA=~/.cache/digitrec python benchmarks/real_sets.py [--checkpoint best.pt] [--textbook]

The sets: USPS test (zip.test, 2,007), USPS val (zip.train's last 1,291) and Semeion val (1,593
records' writer blocks 3 and 6: 597 digits by about 30 writers). Tune on the val sets only:
USPS test is reported, never tuned on. The files are fetched and checked first (registry.REAL_SETS);
the prepared inputs are cached in the data folder, so only the first run preprocesses (about
4,000 pages, a few minutes on two cores).

Measured with the shipped model (mnist.pt, torch, AMD EPYC, 2 shared CPUs, `--textbook`), overall
accuracy, preprocess() / textbook: USPS test 98.06 / 98.16% (2,007), USPS val 99.46 / 99.54%
(1,291), Semeion val 91.29 / 91.29% (597; its 1s 68.9%, 9s 67.8%, 4s 88.3%: Semeion stretches
every digit to fill its square, so 1s are wide strokes). Preparing the 3,895 pages: about 110 s
with preprocess(), 50 s textbook; later runs read the cache.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

SETS = (("usps", "test"), ("usps", "val"), ("semeion", "val"))


def accuracy(pred: np.ndarray, labels: np.ndarray, classes: int = 10) -> tuple[list[float | None], float]:
    """Per-class accuracy (None for a class with no digits) and overall accuracy, in %."""
    per = [100 * float((pred[labels == c] == c).mean()) if (labels == c).any() else None for c in range(classes)]
    return per, 100 * float((pred == labels).mean()) if len(labels) else float("nan")


def probabilities(predictor, name: str, split: str, how: str, data_dir) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, labels, probabilities) of a split prepared `how`; "both" is what `digitrec predict`
    answers (Predictor.two_views): where the model is not sure of preprocess()'s input, the mean
    of its probabilities and those of the textbook crop (where that finds ink)."""
    from digitrec.data.real import prepared

    if how == "both":
        x, y, p = probabilities(predictor, name, split, "preprocess", data_dir)
        book, _, q = probabilities(predictor, name, split, "textbook", data_dir)
        inked = book.reshape(len(book), -1).any(1) & x.reshape(len(x), -1).any(1) & (p.max(1) < predictor.threshold)
        return x, y, np.where(inked[:, None], (p + q) / 2, p)
    digits = prepared(name, split, how, data_dir)
    x, y = digits.images.numpy(), digits.labels.numpy()
    return x, y, np.concatenate([predictor.probabilities(x[i : i + 1000]) for i in range(0, len(x), 1000)])


def score(predictor, name: str, split: str, how: str, data_dir) -> dict:
    t = time.perf_counter()
    x, y, probs = probabilities(predictor, name, split, how, data_dir)
    pred = probs.argmax(1)
    per, overall = accuracy(pred, y)
    blank = int((x.reshape(len(x), -1).max(1) == 0).sum())
    print(f"{name} {split} ({how}): {overall:.2f}% of {len(y):,}, {blank} blank, "
          f"{time.perf_counter() - t:.1f} s", file=sys.stderr)
    return {"per": per, "overall": overall, "n": len(y), "blank": blank}


def table(columns: dict[str, dict]) -> str:
    head = "| digit | " + " | ".join(columns) + " |\n|---|" + "---:|" * len(columns) + "\n"
    rows = []
    for c in range(10):
        rows.append(f"| {c} | " + " | ".join("-" if r["per"][c] is None else f"{r['per'][c]:.1f}"
                                            for r in columns.values()) + " |")
    rows.append("| **all** | " + " | ".join(f"**{r['overall']:.2f}**" for r in columns.values()) + " |")
    rows.append("| digits | " + " | ".join(f"{r['n']:,}" for r in columns.values()) + " |")
    rows.append("| blank | " + " | ".join(str(r["blank"]) for r in columns.values()) + " |")
    return head + "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--checkpoint", help="a checkpoint or ONNX file (default: the model shipped with digitrec)")
    ap.add_argument("--backend", default="torch", choices=("torch", "onnx", "auto"))
    ap.add_argument("--data-dir", help="the data folder (default: $DIGITREC_DATA or ~/.cache/digitrec)")
    ap.add_argument("--textbook", action="store_true", help="add columns for the textbook preparation alone and "
                                                             "for both views, as `digitrec predict` reads an image")
    args = ap.parse_args(argv)

    from _common import machine

    from digitrec.errors import DigitrecError
    from digitrec.inference.predictor import Predictor

    try:
        predictor = Predictor(args.checkpoint, backend=args.backend)
        columns = {}
        for name, split in SETS:
            for how in ("preprocess", "textbook", "both") if args.textbook else ("preprocess",):
                label = f"{name} {split}" + ("" if how == "preprocess" else f" {how}")
                columns[label] = score(predictor, name, split, how, args.data_dir)
    except DigitrecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"Model: {predictor.path.name} ({predictor.backend}); {machine()}\n")
    print(table(columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
