"""`digitrec read`: read every character in each image (a number, a code, several lines), in
reading order, with each character's box."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import UserError
from ..inference.decode import IMAGE_SUFFIXES
from .files import EXPLAIN_SUFFIX, STDIN, Output, find_images, read_stdin, write_beside
from .options import model_args


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="image files or folders (searched recursively); - reads one image from standard input")
    model_args(p)
    p.add_argument("--top-k", type=int, default=3, help="best guesses listed for each character (JSON)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object per image")
    fmt.add_argument("--csv", action="store_true", help="CSV, one row per character, with all class probabilities")
    p.add_argument("--explain", action="store_true",
                   help="write <name><ext>.explain.png beside each image: what each character's answer rests on")


def run(args) -> int:
    """Exit 0 when every file was read, 1 when any could not be or was skipped (2 on usage errors)."""
    from ..errors import PreprocessError
    from ..inference.predictor import Predictor
    from ..inference.reader import Reading, read

    if args.top_k < 1:
        raise UserError(f"--top-k must be at least 1, not {args.top_k}")
    files, skipped = find_images(args.paths)
    if not files and not skipped:
        raise UserError("no image files found in " + ", ".join(str(p) for p in args.paths)
                        + f" (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    stdin = read_stdin(files)
    predictor = Predictor(args.checkpoint, backend=args.backend, device=args.device)
    out = Output("json" if args.json else "csv" if args.csv else "text", Reading.csv_header(predictor.classes))
    for path, why in skipped:
        out.skipped(path, why)
    try:
        for path in files:
            try:
                reading = read(stdin if path == STDIN else path, predictor, top_k=args.top_k)
            except PreprocessError as e:
                out.error(path, str(e))
                continue
            extra, error = _explain(path, reading, predictor, stdin) if args.explain else ({}, None)
            out.result(path, reading, extra, error)
            out.out.flush()
    except BrokenPipeError:  # `digitrec read ... | head`: the reader has gone, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    out.summary(len(files) + len(skipped))
    return 1 if out.counts["failed"] or out.counts["skipped"] else 0


def _explain(path: Path, reading, predictor, stdin) -> tuple[dict, str | None]:
    """Write the explanation picture beside the image: (JSON extra, error or None)."""
    from ..inference.explain import explain_reading

    if reading.status == "blank":
        return {}, None
    return write_beside(path, EXPLAIN_SUFFIX, "explanation", lambda: explain_reading(path, reading, predictor))
