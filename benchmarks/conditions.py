"""Real-world conditions: does `digitrec predict` read digits rendered the way people hand them over?

Each MNIST test digit chosen (--n per condition, a different random sample for each) is
rendered under every condition of `digitrec.scenes.CONDITIONS` (low-resolution scans,
soft and faint strokes, coloured pens on tinted paper, phone photos with shadows, rule
lines, scan borders, dark tables, form frames, noise, rotation, and documents: a register's
cell, a form's captioned box, underlines, ticks and crosses, a binding's shadow), written as an image
file, and read by `digitrec predict --json`: the path a user takes. The same model reads
the same digits as raw 28x28 arrays (`Predictor.predict`); the gap between the two is what
preprocessing loses. Per condition the table shows:
    accuracy    the label is right (a blank answer is wrong)
    blank       answered `blank`: no ink found
    unsure      answered `unsure`
    caught      of the wrong non-blank answers, the share that came back `unsure`
    textbook    the same renders prepared the textbook way (crop, 20x20 fit, centre of mass:
                digitrec.inference.textbook), same model: the baseline the pipeline must beat
    raw         the same digits as raw 28x28 arrays
    gap         accuracy - raw, in points
and the mean over conditions. `--non-digits N` also renders N shapes that are not digits
(dots, blobs, empty frames, scribbles, letters A H K M W X in fonts and by hand; all kinds,
through every condition) and reports how they are answered, with the share of digits
flagged `unsure`, and how well simple rules on the preprocessing's shape evidence
(`Preprocessed.shape`) separate the two.

    python benchmarks/conditions.py [--n 1000] [--split test] [--checkpoint PATH] [--non-digits 1000]

Every choice in preprocessing (thresholds, filter sizes) was made on `--split val`: the same
renders of the 5,000 validation images of the MNIST training set (`split_indices(60000,
5000, 0)[1]`, which the shipped model did not train on), never on test digits. The record of
what was tried and the validation numbers behind each choice is in
docs/notes/preprocessing.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine  # noqa: E402

NON_DIGIT_FOLDER = "non_digits"


# ----------------------------------------------------------------------------- rendering (in workers)


def _render_one(task: tuple) -> tuple[str, tuple[dict | None, np.ndarray]]:
    """(path, digit or non-digit kind, condition, seed, with_shape) -> (path, (shape evidence or
    None, the textbook preparation of the image: the baseline row))."""
    from digitrec import scenes
    from digitrec.inference.textbook import textbook

    path, what, condition, seed, with_shape = task
    rng = np.random.default_rng(seed)
    glyph = scenes.glyph_of(what) if isinstance(what, np.ndarray) else scenes.non_digit(what, rng)
    data, suffix = scenes.render_glyph(glyph, condition, rng)
    path = Path(path).with_suffix(suffix)
    path.write_bytes(data)
    return str(path), (_shape_of(data) if with_shape else None, textbook(data))


def _shape_of(data: bytes) -> dict | None:
    """The preprocessing's own evidence about the ink's shape, where it gives one."""
    from dataclasses import asdict, is_dataclass

    from digitrec.inference.preprocess import preprocess

    shape = getattr(preprocess(data), "shape", None)
    return asdict(shape) if is_dataclass(shape) else shape


def render_all(tasks: list[tuple], jobs: int) -> dict[str, tuple[dict | None, np.ndarray]]:
    """Render every task (in `jobs` processes): {path written: (shape evidence or None, textbook input)}."""
    if jobs <= 1:
        return dict(map(_render_one, tasks))
    with ProcessPoolExecutor(jobs) as pool:
        return dict(pool.map(_render_one, tasks, chunksize=64))


# ----------------------------------------------------------------------------- reading (the CLI)


def predict_folders(folders: list[Path], checkpoint: Path | None, jobs: int) -> dict[str, dict]:
    """`digitrec predict FOLDER... --json`, in this process or split over `jobs` processes:
    {path: its JSON answer}."""
    extra = ["--checkpoint", str(checkpoint)] if checkpoint else []
    if jobs <= 1:
        from digitrec.cli.main import main as digitrec_main

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            digitrec_main(["predict", *map(str, folders), "--json", *extra])
        lines = out.getvalue().splitlines()
    else:
        procs = [subprocess.Popen([sys.executable, "-m", "digitrec", "predict", *map(str, folders[i::jobs]), "--json",
                                   *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                 for i in range(jobs) if folders[i::jobs]]
        lines = [line for p in procs for line in p.communicate()[0].splitlines()]
    rows = [json.loads(line) for line in lines]
    return {r["path"]: r for r in rows}


# ----------------------------------------------------------------------------- tables


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def condition_table(names: list[str], answers: dict[str, list[dict]], truth: dict[str, list[int]],
                    raw_right: dict[str, np.ndarray], textbook_right: dict[str, np.ndarray], classes: list[str],
                    documents: tuple[str, ...] = ()) -> None:
    print("| condition | n | accuracy | blank | unsure | errors caught by unsure | textbook | raw 28x28 | gap to raw |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    means = []
    for name in names:
        rows, labels = answers[name], truth[name]
        right = np.array([r.get("label") == classes[y] for r, y in zip(rows, labels)])
        status = np.array([r["status"] for r in rows])
        wrong = ~right & (status != "blank")
        caught = int((wrong & (status == "unsure")).sum())
        acc, raw, book = float(right.mean()), float(raw_right[name].mean()), float(textbook_right[name].mean())
        blank, unsure = float((status == "blank").mean()), float((status == "unsure").mean())
        means.append((acc, blank, unsure, book, raw))
        print(f"| {name} | {len(rows):,} | {100 * acc:.2f}% | {pct(blank)} | {pct(unsure)} | "
              f"{caught} of {int(wrong.sum())} | {100 * book:.2f}% | {100 * raw:.2f}% | {100 * (acc - raw):+.2f} pt |")
    # the documents apart, so that the first mean stays comparable with earlier tables
    for title, group in (("mean", [n not in documents for n in names]),
                         ("mean, documents", [n in documents for n in names])):
        if any(group):
            acc, blank, unsure, book, raw = np.mean([m for m, g in zip(means, group) if g], 0)
            print(f"| **{title}** | | **{100 * acc:.2f}%** | {pct(blank)} | {pct(unsure)} | | {100 * book:.2f}% | "
                  f"{100 * raw:.2f}% | **{100 * (acc - raw):+.2f} pt** |")


def rapidocr_reads(paths: list[str]) -> list[str]:
    """RapidOCR's text detector and recogniser (PP-OCR models as ONNX, shipped in the `rapidocr`
    wheel) on each image, as a general OCR reads a cell: the digits among the texts it finds."""
    import logging

    from rapidocr import RapidOCR

    logging.getLogger("RapidOCR").setLevel(logging.WARNING)
    engine = RapidOCR()
    out = []
    for path in paths:
        found = engine(path)
        out.append("".join(ch for ch in "".join(found.txts or ()) if ch.isdigit()))
    return out


def in_folder(written: list[str], name: str) -> list[str]:
    """The digits' images of condition `name`, in the order written."""
    return [p for p in written if Path(p).parent.name == name and NON_DIGIT_FOLDER not in p]


def peer_table(peers: dict[str, list[str]], answers: dict[str, list[dict]], truth: dict[str, list[int]],
               classes: list[str]) -> None:
    """digitrec against RapidOCR on the same images (a peer's reading is right when the digits it
    finds are exactly the label)."""
    print("\n| condition | n | digitrec | RapidOCR (detector + recogniser) |")
    print("|---|---:|---:|---:|")
    for name, reads in peers.items():
        ours = np.mean([r.get("label") == classes[y] for r, y in zip(answers[name], truth[name])])
        theirs = np.mean([got == classes[y] for got, y in zip(reads, truth[name])])
        print(f"| {name} | {len(reads):,} | {pct(ours)} | {pct(theirs)} |")


def non_digit_table(rows: list[tuple[str, str, dict]]) -> None:
    """rows: (kind, condition, answer) for every non-digit."""
    print("\n| non-digit kind | n | ok | unsure | blank |")
    print("|---|---:|---:|---:|---:|")
    kinds = sorted({k for k, _, _ in rows}) + ["all"]
    for kind in kinds:
        sel = [a["status"] for k, _, a in rows if kind in (k, "all")]
        n = len(sel)
        print(f"| {kind} | {n:,} | {pct(sel.count('ok') / n)} | {pct(sel.count('unsure') / n)} | "
              f"{pct(sel.count('blank') / n)} |")


SHAPE_RULES = {  # name -> (rule on the shape evidence: True means "not a digit", its description)
}


def shape_rule_table(digit_shapes: list[dict | None], other_shapes: list[dict | None]) -> None:
    """How well each rule in SHAPE_RULES flags non-digits, and at what price in digits flagged."""
    if not SHAPE_RULES or any(s is None for s in digit_shapes + other_shapes):
        print("\n(no shape evidence from this preprocessing)")
        return
    print("\n| rule on the shape evidence | non-digits flagged | digits flagged |")
    print("|---|---:|---:|")
    for name, (rule, _) in SHAPE_RULES.items():
        hit_other = np.mean([bool(rule(s)) for s in other_shapes])
        hit_digit = np.mean([bool(rule(s)) for s in digit_shapes])
        print(f"| {name} | {pct(hit_other)} | {pct(hit_digit)} |")


# ----------------------------------------------------------------------------- main


def pick_digits(split: str, data_dir: Path | None, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """The pool of digits to draw from: the test set, or the 5,000 validation images of the training set."""
    from digitrec.data.load import load, split_indices

    ds = load(dataset, data_dir)
    if split == "test":
        return ds.test_x.numpy(), ds.test_y.numpy()
    val = split_indices(len(ds.train_x), 5000, 0)[1].numpy()
    return ds.train_x.numpy()[val], ds.train_y.numpy()[val]


def main(argv=None) -> int:
    from digitrec import scenes

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="digits rendered per condition")
    ap.add_argument("--split", choices=("test", "val"), default="test",
                    help="test digits, or the validation split of the training set (for making choices)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="model (default: the packaged one)")
    ap.add_argument("--conditions", default="all",
                    help="comma-separated condition names; `all` every one, `documents` the document conditions "
                         f"({', '.join(scenes.DOCUMENTS)})")
    ap.add_argument("--non-digits", type=int, default=0, help="also render this many non-digits")
    ap.add_argument("--seed", type=int, default=0, help="which digits, and how each is drawn")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for rendering and reading")
    ap.add_argument("--data-dir", type=Path, default=None, help="data cache folder")
    ap.add_argument("--keep", type=Path, default=None, help="write the images here and keep them")
    ap.add_argument("--peers", action="store_true",
                    help="also read the document conditions' (and clean paper's) images with RapidOCR's detector "
                         "and recogniser (pip install rapidocr: PP-OCR as ONNX), side by side")
    args = ap.parse_args(argv)
    groups = {"all": list(scenes.CONDITIONS), "documents": list(scenes.DOCUMENTS)}
    names = [m for n in args.conditions.split(",") if n.strip() for m in groups.get(n.strip(), [n.strip()])]
    for n in names:
        try:
            scenes.get_condition(n)
        except ValueError as e:
            ap.error(f"{e}, or a group: {', '.join(groups)}")

    from digitrec.inference.predictor import Predictor

    predictor = Predictor(args.checkpoint)
    x, y = pick_digits(args.split, args.data_dir, predictor.card.dataset)
    print(f"machine: {machine()}")
    print(f"checkpoint: {predictor.path}; {args.split} digits, {args.n} per condition, seed {args.seed}\n")
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        folder = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="conditions-")))
        tasks, picks = [], {}
        for ci, name in enumerate(names):
            (folder / name).mkdir(parents=True, exist_ok=True)
            idx = np.sort(np.random.default_rng([args.seed, ci]).choice(len(x), min(args.n, len(x)), replace=False))
            picks[name] = idx
            tasks += [(str(folder / name / f"{i:05d}"), x[i], name, [args.seed, ci, int(i)], args.non_digits > 0)
                      for i in idx]
        kinds = scenes.NON_DIGITS
        for j in range(args.non_digits):
            name = names[(j // len(kinds)) % len(names)]
            (folder / NON_DIGIT_FOLDER / name).mkdir(parents=True, exist_ok=True)
            tasks.append((str(folder / NON_DIGIT_FOLDER / name / f"{j:05d}-{kinds[j % len(kinds)]}"),
                          kinds[j % len(kinds)], name, [args.seed, 10**6 + j], True))
        shapes = render_all(tasks, args.jobs)
        t1 = time.perf_counter()
        folders = [folder / n for n in names] + ([folder / NON_DIGIT_FOLDER] if args.non_digits else [])
        answers = predict_folders(folders, args.checkpoint, args.jobs)
        t2 = time.perf_counter()
        peers = {n: rapidocr_reads(in_folder(list(shapes), n)) for n in names
                 if args.peers and (n in scenes.DOCUMENTS or n == "clean_paper")}
    written = list(shapes)
    by_condition = {n: [answers[p] for p in in_folder(written, n)] for n in names}
    truth = {n: [int(y[int(Path(p).stem)]) for p in in_folder(written, n)] for n in names}
    raw = predictor.probabilities(list(x)).argmax(1) == y
    raw_right = {n: raw[picks[n]] for n in names}
    textbook_right = {}  # the same renders, prepared the textbook way (digitrec.inference.textbook), same model
    for n in names:
        paths = in_folder(written, n)
        textbook_right[n] = predictor.probabilities([shapes[p][1] for p in paths]).argmax(1) == np.array(truth[n])
    print(f"rendered {len(tasks):,} images in {t1 - t0:.0f} s; `digitrec predict` read them in {t2 - t1:.0f} s "
          f"({1000 * (t2 - t1) * args.jobs / len(tasks):.1f} ms per image per process)\n")
    condition_table(names, by_condition, truth, raw_right, textbook_right, predictor.classes, scenes.DOCUMENTS)
    if peers:
        peer_table(peers, by_condition, truth, predictor.classes)
    if args.non_digits:
        report_non_digits(written, answers, shapes, predictor, x)
    return 0


def report_non_digits(written: list[str], answers: dict, shapes: dict, predictor, x: np.ndarray) -> None:
    rows = [(Path(p).stem.split("-", 1)[1], Path(p).parent.name, answers[p]) for p in written if NON_DIGIT_FOLDER in p]
    non_digit_table(rows)
    digits = [answers[p]["status"] for p in written if NON_DIGIT_FOLDER not in p]
    raw = [a.status for a in predictor.predict(list(x))]
    print(f"\ndigits flagged unsure: {pct(digits.count('unsure') / len(digits))} of the rendered ones, "
          f"{pct(raw.count('unsure') / len(raw))} of the {len(raw):,} raw 28x28 digits of the split")
    shape_rule_table([shapes[p][0] for p in written if NON_DIGIT_FOLDER not in p],
                     [shapes[p][0] for p in written if NON_DIGIT_FOLDER in p])


if __name__ == "__main__":
    sys.exit(main())
