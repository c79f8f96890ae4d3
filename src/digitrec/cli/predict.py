"""`digitrec predict`: read the character in each image file, or in every image in a folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .files import EXPLAIN_SUFFIX, PREVIEW_SUFFIX, STDIN, run_over_files, write_beside
from .options import image_args

BATCH = 256  # images per forward pass


def add_arguments(p) -> None:
    image_args(p, (1, "how many best guesses to print"), "CSV with all class probabilities",
               "what the answer rests on, and why not the runner-up")
    p.add_argument("--save-preview", action="store_true",
                   help="write the 28x28 model input next to each image as <name><ext>.preview.png")
    p.add_argument("--show", action="store_true",
                   help="print the 28x28 model input as text under each answer (text output only)")




def ascii_art(image: np.ndarray) -> str:
    """The 28x28 model input as text, two characters per pixel so it looks square."""
    ramp = " .:-=+*#%@"
    return "\n".join("".join(ramp[int(v) * (len(ramp) - 1) // 255] * 2 for v in row) for row in image)


def _explain(path: Path, pre, answer, predictor) -> tuple[dict, str | None]:
    from ..inference.decode import decode
    from ..inference.explain import explanation_picture

    if answer.label is None:  # blank, or not a digit: nothing to explain
        return {}, None
    return write_beside(path, EXPLAIN_SUFFIX, "explanation",
                        lambda: explanation_picture(decode(path)[0], pre.image, pre.box, answer, predictor))


def _save_preview(path: Path, pre) -> tuple[dict, str | None]:
    return write_beside(path, PREVIEW_SUFFIX, "preview", pre.png)


def run(args) -> int:
    from ..inference.predictor import Answer

    return run_over_files(args, Answer.csv_header, lambda *a: _answer_all(args, *a))


def _answer_all(args, predictor, out, files: list[Path], stdin: bytes | None) -> None:
    """Preprocess the files a batch at a time, answer each batch in one forward pass."""
    from ..errors import PreprocessError
    from ..inference.preprocess import preprocess

    k = min(args.top_k, len(predictor.classes))
    for start in range(0, len(files), BATCH):
        chunk = []  # (path, Preprocessed or the error message), in the order given
        for path in files[start : start + BATCH]:
            try:
                chunk.append((path, preprocess(stdin if path == STDIN else path)))
            except PreprocessError as e:
                chunk.append((path, str(e)))
        answers = iter(predictor.predict([pre.image for _, pre in chunk if not isinstance(pre, str)], top_k=k))
        for path, pre in chunk:
            if isinstance(pre, str):
                out.error(path, pre)
                continue
            answer = next(answers)
            extra, error = _save_preview(path, pre) if args.save_preview else ({}, None)
            if args.explain and error is None:
                more, error = _explain(path, pre, answer, predictor)
                extra.update(more)
            out.result(path, answer, extra, error, ascii_art(pre.image) if args.show else None)
        out.out.flush()
