"""Whole numbers: lines of 1 to 10 MNIST digits rendered as a photo or scan would show them,
read by `digitrec read --json` (the path a user takes), scored against the digits written.

    python benchmarks/whole_numbers.py                      # test digits: the table for the README
    python benchmarks/whole_numbers.py --split val --n 100  # validation digits: what choices are made on

(Not benchmarks/numbers.py: run as a script, a file of that name in benchmarks/ would stand in
for the standard library's `numbers`, which numpy imports, in every benchmark.)

Lines are built by scenes.render_line from MNIST digits (test digits by default, never
trained on; `--split val` takes the validation split of the training digits instead, which is
what every segmentation choice was made on): each digit scaled by +-12% and moved up or down by
+-8% of its height, the gap to its neighbour drawn from a range in units of the digit's ink
width (negative: overlapping), and the line rendered under a condition of the preprocessing
benchmark (clean paper by default; `--conditions all` cycles through every one).

Prints, per length with clear gaps: whole-string accuracy (against the goal 0.997^n, what the
single-digit classifier alone would allow), per-digit accuracy (edit-distance alignment),
and the share answered `unsure`; then, for 4-digit numbers, the same by overlap.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import machine

GAPS = {  # name -> range of the gap, in units of a digit's ink width
    "clear": (0.15, 0.6),
    "touching (0-10% overlap)": (-0.1, 0.0),
    "overlap 10-20%": (-0.2, -0.1),
    "overlap 20-30%": (-0.3, -0.2),
}


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def digits_of(split: str):
    from digitrec.data.load import load, split_indices

    ds = load("mnist")
    if split == "test":
        return ds.test_x.numpy(), ds.test_y.numpy()
    _, va = split_indices(len(ds.train_x), 5000, 0)
    return ds.train_x[va].numpy(), ds.train_y[va].numpy()


def render_cases(folder: Path, x, y, cases: list[tuple[str, int, int]], conditions: list[str], seed: int) -> dict:
    """Write every line as an image file; returns {path: (truth, gap name, length, condition)}."""
    from digitrec.scenes import render_line

    rng = np.random.default_rng(seed)
    truth = {}
    k = 0
    for gap, length, count in cases:
        for _ in range(count):
            idx = rng.choice(len(x), length, replace=False)
            condition = conditions[k % len(conditions)]
            data, suffix, _ = render_line([x[i] for i in idx], condition, rng, gap=GAPS[gap])
            path = folder / f"{k:05d}{suffix}"
            path.write_bytes(data)
            truth[str(path)] = ("".join(str(int(y[i])) for i in idx), gap, length, condition)
            k += 1
    return truth


def read_all(folder: Path, checkpoint: Path | None, lines: str = "auto") -> tuple[list[dict], float]:
    from digitrec.cli.main import main

    args = ["read", str(folder), "--json", "--lines", lines] + (["--checkpoint", str(checkpoint)] if checkpoint else [])
    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out):
        main(args)
    return [json.loads(line) for line in out.getvalue().splitlines()], time.perf_counter() - t0


def table(rows: list[tuple], title: str, by_length: bool) -> None:
    print(f"\n{title}\n")
    head = "| digits | lines | whole string | goal 0.997^n | per digit | unsure |" if by_length else \
        "| gap | lines | whole string | per digit | unsure |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for key, got in rows:
        n = len(got)
        whole = sum(text == truth for truth, text, _ in got) / n
        per = 1 - sum(edit_distance(truth, text) for truth, text, _ in got) / sum(len(t) for t, _, _ in got)
        unsure = sum(status == "unsure" for _, _, status in got) / n
        goal = f" {100 * 0.997 ** key:.1f}% |" if by_length else ""
        print(f"| {key} | {n} | {100 * whole:.1f}% |{goal} {100 * per:.2f}% | {100 * unsure:.1f}% |")


def main(argv=None) -> int:
    from digitrec.scenes import CONDITIONS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=["test", "val"], default="test", help="digits to build lines from")
    p.add_argument("--n", type=int, default=200, help="lines per length and per gap")
    p.add_argument("--conditions", default="clean_paper", help="comma-separated condition names, or all")
    p.add_argument("--checkpoint", type=Path, default=None, help="model (default: the packaged one)")
    p.add_argument("--lines", default="auto", help="the line model: auto, none (segmentation alone) or a path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", type=Path, default=None, help="write the images here and keep them")
    args = p.parse_args(argv)
    conditions = list(CONDITIONS) if args.conditions == "all" else args.conditions.split(",")
    x, y = digits_of(args.split)
    cases = [("clear", n, args.n) for n in range(1, 11)] + [(g, 4, args.n) for g in GAPS if g != "clear"]
    with contextlib.ExitStack() as stack:
        folder = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="numbers-")))
        folder.mkdir(parents=True, exist_ok=True)
        truth = render_cases(folder, x, y, cases, conditions, args.seed)
        answers, seconds = read_all(folder, args.checkpoint, args.lines)
    got = {a["path"]: (a.get("text", ""), a["status"]) for a in answers}
    results = [(truth[p][1], truth[p][2], (truth[p][0], *got.get(p, ("", "error")))) for p in truth]
    print(f"{machine()}\n{len(truth)} lines of {args.split} digits under {', '.join(conditions)}; "
          f"`digitrec read` took {1000 * seconds / len(truth):.0f} ms a line")
    table([(n, [r for g, k, r in results if g == "clear" and k == n]) for n in range(1, 11)],
          "Clear gaps, by length:", by_length=True)
    table([(g, [r for gg, k, r in results if gg == g and k == 4]) for g in GAPS],
          "Four-digit numbers, by gap:", by_length=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
