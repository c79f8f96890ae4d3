"""`digitrec read`: read every character in each image (a number, a code, several lines), in
reading order, with each character's box."""

from __future__ import annotations

from pathlib import Path

from .files import EXPLAIN_SUFFIX, STDIN, run_over_files, write_beside
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
    from ..inference.reader import Reading

    return run_over_files(args, Reading.csv_header, lambda *a: _read_all(args, *a))


def _read_all(args, predictor, out, files: list[Path], stdin: bytes | None) -> None:
    from ..errors import PreprocessError
    from ..inference.reader import read

    for path in files:
        try:
            reading = read(stdin if path == STDIN else path, predictor, top_k=args.top_k)
        except PreprocessError as e:
            out.error(path, str(e))
            continue
        extra, error = _explain(path, reading, predictor) if args.explain else ({}, None)
        out.result(path, reading, extra, error)
        out.out.flush()


def _explain(path: Path, reading, predictor) -> tuple[dict, str | None]:
    """Write the explanation picture beside the image: (JSON extra, error or None)."""
    from ..inference.explain import explain_reading

    if reading.status == "blank":
        return {}, None
    return write_beside(path, EXPLAIN_SUFFIX, "explanation", lambda: explain_reading(path, reading, predictor))
