"""`digitrec read`: read every character in each image (a number, a code, several lines), in
reading order, with each character's box."""

from __future__ import annotations

from pathlib import Path

from .files import EXPLAIN_SUFFIX, STDIN, run_over_files, write_beside
from .options import image_args


def add_arguments(p) -> None:
    image_args(p, (3, "best guesses listed for each character (JSON)"),
               "CSV, one row per character, with all class probabilities", "what each character's answer rests on")
    p.add_argument("--lines", default="auto", metavar="auto|none|PATH",
                   help="the line model that also reads each line whole (touching digits): auto is the packaged "
                        "one where it reads the checkpoint's classes; none reads by segmentation alone")


def run(args) -> int:
    from ..inference.reader import Reading

    return run_over_files(args, Reading.csv_header, lambda *a: _read_all(args, *a))


def _read_all(args, predictor, out, files: list[Path], stdin: bytes | None) -> None:
    from ..errors import PreprocessError
    from ..inference.reader import read

    from ..inference.reader import line_model_for

    model = line_model_for(predictor, args.lines)
    for path in files:
        try:
            reading = read(stdin if path == STDIN else path, predictor, top_k=args.top_k, line_model=model)
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
