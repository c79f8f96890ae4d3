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
                   help="the line model that reads each line whole first (touching digits too; lines it is unsure "
                        "of are also segmented): auto is the packaged one where it reads the checkpoint's classes; "
                        "none reads by segmentation alone")
    p.add_argument("--digits", type=int, default=None, metavar="N",
                   help="each line holds N characters (digits, with a digits model), as a form's field does: the "
                        "reading with N that is likeliest is chosen; where none can be read, the answer is unsure "
                        "and says why")
    p.add_argument("--pattern", default=None, metavar="REGEX",
                   help="each line matches REGEX, e.g. '\\d{4}', '\\d{3,6}', '19\\d\\d': characters, '.', '\\d' "
                        "and [classes], each optionally counted (?, *, +, {N}, {N,M}); chosen as --digits is")
    limit_args(p)


def limit_args(p) -> None:
    """--max-characters, shared with `digitrec serve`."""
    from ..inference.find import CANDIDATES_PER_CHARACTER, CHARACTERS_PER_LINE, MAX_CHARACTERS, PIECES_PER_CHARACTER

    p.add_argument("--max-characters", type=int, default=MAX_CHARACTERS, metavar="N",
                   help=f"the most characters one image may hold. An image with more than {PIECES_PER_CHARACTER} "
                        f"pieces of ink or {CANDIDATES_PER_CHARACTER} candidate characters for each of them, or more "
                        f"than one line for every {CHARACTERS_PER_LINE}, is refused before it is read (exit code 2), "
                        "so that no image costs more than about a second; raise it for pages of many numbers")


def run(args) -> int:
    """Exit 0 when every image was read, 2 when any held more than --max-characters allows (the
    rest are still read), else 1 when any could not be read."""
    from ..inference.expect import expect
    from ..inference.find import Limits
    from ..inference.reading import Reading

    limits, expected = Limits(args.max_characters), expect(args.digits, args.pattern)  # usage errors before loading
    refused: list[Path] = []
    code = run_over_files(args, Reading.csv_header, lambda *a: _read_all(args, limits, expected, refused, *a))
    return 2 if refused else code


def _read_all(args, limits, expected, refused: list[Path], predictor, out, files: list[Path],
              stdin: bytes | None) -> None:
    from ..errors import PreprocessError, TooMuchInk
    from ..inference.lineread import line_model_for
    from ..inference.reader import read

    model = line_model_for(predictor, args.lines)
    for path in files:
        try:
            reading = read(stdin if path == STDIN else path, predictor, top_k=args.top_k, line_model=model,
                           limits=limits, expected=expected)
        except PreprocessError as e:
            out.error(path, str(e))
            if isinstance(e, TooMuchInk):
                refused.append(path)
            continue
        extra, error = _explain(path, reading, predictor, model) if args.explain else ({}, None)
        out.result(path, reading, extra, error)
        out.out.flush()


def _explain(path: Path, reading, predictor, model) -> tuple[dict, str | None]:
    """Write the explanation picture beside the image: (JSON extra, error or None)."""
    from ..inference.explain import explain_reading

    if reading.status == "blank":
        return {}, None
    return write_beside(path, EXPLAIN_SUFFIX, "explanation", lambda: explain_reading(reading, predictor, model))
