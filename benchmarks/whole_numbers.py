"""Whole numbers: lines of 1 to 10 MNIST digits rendered as a photo or scan would show them,
read by `digitrec read --json` (the path a user takes), scored against the digits written.

    python benchmarks/whole_numbers.py                      # test digits: the table in docs/results.md
    python benchmarks/whole_numbers.py --split val --n 100  # validation digits: what choices are made on
    python benchmarks/whole_numbers.py --table conditions --n 50 --lengths 3-6 \
        --conditions clean_paper,very_thin,very_thick,lowres_12,lowres_16,phone_shadow,lined_paper
    python benchmarks/whole_numbers.py --table conditions --digits   # each line read with --digits (its length)

(Not benchmarks/numbers.py: run as a script, a file of that name in benchmarks/ would stand in
for the standard library's `numbers`, which numpy imports, in every benchmark.)

Lines are built by scenes.render_line from MNIST digits (test digits by default, never
trained on; `--split val` takes the validation split of the training digits instead, which is
what every segmentation choice was made on): each digit scaled by +-12% and moved up or down by
+-8% of its height, the gap to its neighbour drawn from a range in units of the digit's ink
width (negative: overlapping), and the line rendered under a condition of the preprocessing
benchmark (clean paper by default; `--conditions all` cycles through every one).

`--table lengths` (the default) prints, per length with clear gaps: whole-string accuracy
(against the goal 0.997^n, what the single-digit classifier alone would allow), per-digit
accuracy (edit-distance alignment), and the share answered `unsure`; then, for 4-digit
numbers, the same by overlap. `--table conditions` prints, per condition and length (clear
gaps), the same figures and the per-digit accuracy of the single-digit path (`digitrec
predict`'s) on the same renders: each digit cut from the line image at its box, halfway to its
neighbours. `--digits` reads each line with `digitrec read --digits N`, N its length.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from _common import machine

GAPS = {  # name -> range of the gap, in units of a digit's ink width
    "clear": (0.15, 0.6),
    "touching (0-10% overlap)": (-0.1, 0.0),
    "overlap 10-20%": (-0.2, -0.1),
    "overlap 20-30%": (-0.3, -0.2),
}


BY_CONDITION = ("clean_paper", "very_thin", "very_thick", "lowres_12", "lowres_16", "phone_shadow", "lined_paper")


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


def render_cases(folder: Path, x, y, cases: list[tuple[str, int, int]], conditions: list[str], seed: int,
                 per_condition: bool = False) -> dict:
    """Write every line as an image file, in a folder per length; returns {path: Case}. Conditions
    are cycled through, or (`per_condition`) every case is rendered under each of them."""
    from digitrec.scenes import render_line

    rng = np.random.default_rng(seed)
    truth = {}
    k = 0
    for gap, length, count in cases:
        for i in range(count * (len(conditions) if per_condition else 1)):
            idx = rng.choice(len(x), length, replace=False)
            condition = conditions[(i // count if per_condition else k) % len(conditions)]
            data, suffix, boxes = render_line([x[i] for i in idx], condition, rng, gap=GAPS[gap])
            path = folder / str(length) / f"{k:05d}{suffix}"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            truth[str(path)] = Case("".join(str(int(y[i])) for i in idx), gap, length, condition, boxes)
            k += 1
    return truth


@dataclass
class Case:
    truth: str
    gap: str
    length: int
    condition: str
    boxes: list  # each digit's box in the image


def single_digit_reads(truth: dict, checkpoint: Path | None) -> dict[str, str]:
    """{path: the digits the single-digit path reads}: each digit cut from the line image at its
    box, widened halfway to its neighbours (and by a fifth of its height above and below), and
    read as `digitrec predict` reads an image."""
    from PIL import Image

    from digitrec.inference.predictor import Predictor

    predictor = Predictor(checkpoint)
    out = {}
    for path, case in truth.items():
        im = Image.open(path)
        im.load()
        text = ""
        for i, (l, t, r, b) in enumerate(case.boxes):
            left = (case.boxes[i - 1][2] + l) // 2 if i else max(0, l - (b - t) // 5)
            right = (r + case.boxes[i + 1][0]) // 2 if i + 1 < len(case.boxes) else min(im.width, r + (b - t) // 5)
            crop = im.crop((left, max(0, t - (b - t) // 5), right, min(im.height, b + (b - t) // 5)))
            text += predictor.predict_image(crop)[0].label or ""
        out[path] = text
    return out


def read_all(folder: Path, checkpoint: Path | None, lines: str = "auto", extra: tuple[str, ...] = ()
             ) -> tuple[list[dict], float]:
    from digitrec.cli.main import main

    args = ["read", str(folder), "--json", "--lines", lines, *extra]
    args += ["--checkpoint", str(checkpoint)] if checkpoint else []
    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out):
        main(args)
    return [json.loads(line) for line in out.getvalue().splitlines()], time.perf_counter() - t0


def per_digit(pairs: list[tuple[str, str]]) -> float:
    """1 - edit distance over the digits written, for (truth, text read) pairs."""
    return 1 - sum(edit_distance(truth, text) for truth, text in pairs) / max(1, sum(len(t) for t, _ in pairs))


def table(rows: list[tuple], title: str, by_length: bool) -> None:
    print(f"\n{title}\n")
    head = "| digits | lines | whole string | goal 0.997^n | per digit | unsure |" if by_length else \
        "| gap | lines | whole string | per digit | unsure |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for key, got in rows:
        n = len(got)
        whole = sum(text == truth for truth, text, _ in got) / n
        per = per_digit([(truth, text) for truth, text, _ in got])
        unsure = sum(status == "unsure" for _, _, status in got) / n
        goal = f" {100 * 0.997 ** key:.1f}% |" if by_length else ""
        print(f"| {key} | {n} | {100 * whole:.1f}% |{goal} {100 * per:.2f}% | {100 * unsure:.1f}% |")


def condition_table(truth: dict, got: dict, single: dict[str, str] | None, lengths: list[int]) -> None:
    """Per condition and length: lines, whole string, per digit, unsure, and the single-digit path's
    per digit on the same renders; a row per condition over all lengths."""
    print("\n| condition | digits | lines | whole string | per digit | unsure | single-digit path: per digit | gap |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for condition in dict.fromkeys(c.condition for c in truth.values()):
        for length in [*lengths, "all"]:
            paths = [p for p, c in truth.items() if c.condition == condition and length in ("all", c.length)]
            reads = [(truth[p].truth, *got.get(p, ("", "error"))) for p in paths]
            per = per_digit([(t, text) for t, text, _ in reads])
            single_per = per_digit([(truth[p].truth, single[p]) for p in paths]) if single else None
            cells = [f"{100 * sum(t == text for t, text, _ in reads) / len(reads):.1f}%", f"{100 * per:.2f}%",
                     f"{100 * sum(s == 'unsure' for _, _, s in reads) / len(reads):.1f}%",
                     f"{100 * single_per:.2f}%" if single else "",
                     f"{100 * (per - single_per):+.2f} pt" if single else ""]
            name = f"**{condition}**" if length == "all" else condition
            print(f"| {name} | {length} | {len(reads)} | " + " | ".join(cells) + " |")


def lengths_of(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def main(argv=None) -> int:
    from digitrec.scenes import CONDITIONS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", choices=["lengths", "conditions"], default="lengths",
                   help="lengths: by length (1-10) and by gap, conditions cycled; conditions: by condition and length")
    p.add_argument("--split", choices=["test", "val"], default="test", help="digits to build lines from")
    p.add_argument("--n", type=int, default=200, help="lines per length and per gap (and per condition)")
    p.add_argument("--conditions", default=None, help="comma-separated condition names, or all (default: "
                   "clean_paper; for --table conditions: " + ",".join(BY_CONDITION) + ")")
    p.add_argument("--lengths", default="3-6", help="--table conditions: the numbers' lengths, e.g. 3-6 or 4")
    p.add_argument("--digits", action="store_true", help="read each line with `digitrec read --digits N`, N its length")
    p.add_argument("--no-single", action="store_true", help="--table conditions: leave out the single-digit path")
    p.add_argument("--checkpoint", type=Path, default=None, help="model (default: the packaged one)")
    p.add_argument("--lines", default="auto", help="the line model: auto, none (segmentation alone) or a path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", type=Path, default=None, help="write the images here and keep them")
    args = p.parse_args(argv)
    by_condition = args.table == "conditions"
    named = args.conditions or (",".join(BY_CONDITION) if by_condition else "clean_paper")
    conditions = list(CONDITIONS) if named == "all" else named.split(",")
    lengths = lengths_of(args.lengths) if by_condition else list(range(1, 11))
    x, y = digits_of(args.split)
    cases = [("clear", n, args.n) for n in lengths]
    cases += [] if by_condition else [(g, 4, args.n) for g in GAPS if g != "clear"]
    with contextlib.ExitStack() as stack:
        folder = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="numbers-")))
        folder.mkdir(parents=True, exist_ok=True)
        truth = render_cases(folder, x, y, cases, conditions, args.seed, per_condition=by_condition)
        answers, seconds = [], 0.0
        for sub in sorted({Path(p).parent for p in truth}):  # a folder per length: --digits is its length
            got, took = read_all(sub, args.checkpoint, args.lines, ("--digits", sub.name) if args.digits else ())
            answers, seconds = answers + got, seconds + took
        single = single_digit_reads(truth, args.checkpoint) if by_condition and not args.no_single else None
    got = {a["path"]: (a.get("text", ""), a["status"]) for a in answers}
    print(f"{machine()}\n{len(truth)} lines of {args.split} digits under {', '.join(conditions)}; "
          f"`digitrec read{' --digits N' if args.digits else ''}` took {1000 * seconds / len(truth):.0f} ms a line")
    if by_condition:
        condition_table(truth, got, single, lengths)
        return 0
    results = [(c.gap, c.length, (c.truth, *got.get(p, ("", "error")))) for p, c in truth.items()]
    table([(n, [r for g, k, r in results if g == "clear" and k == n]) for n in range(1, 11)],
          "Clear gaps, by length:", by_length=True)
    table([(g, [r for gg, k, r in results if gg == g and k == 4]) for g in GAPS],
          "Four-digit numbers, by gap:", by_length=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
