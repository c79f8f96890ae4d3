"""`digitrec predict`: read the character in each image file, or in every image in a folder."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..inference.decode import IMAGE_SUFFIXES
from .options import model_args

PREVIEW_SUFFIX = ".preview.png"
BATCH = 256  # images per forward pass


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders (searched recursively)")
    model_args(p)
    p.add_argument("--top-k", type=int, default=1, help="how many best guesses to print")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object per line")
    fmt.add_argument("--csv", action="store_true", help="CSV with all class probabilities")
    p.add_argument("--save-preview", action="store_true",
                   help="write the 28x28 model input next to each image as <name>.preview.png")
    p.add_argument("--show", action="store_true",
                   help="print the 28x28 model input as text under each answer (text output only)")


def find_images(paths: list[Path]) -> list[Path]:
    """Files as given, folders searched recursively for images (our own previews left out)."""
    out = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                              and not f.name.lower().endswith(PREVIEW_SUFFIX)))
        else:
            out.append(p)  # a named file is tried whatever its suffix; a missing one is reported
    return out


def preview_path(path: Path) -> Path:
    return path.with_name(path.stem + PREVIEW_SUFFIX)


def ascii_art(image: np.ndarray) -> str:
    """The 28x28 model input as text, two characters per pixel so it looks square."""
    ramp = " .:-=+*#%@"
    return "\n".join("".join(ramp[int(v) * (len(ramp) - 1) // 255] * 2 for v in row) for row in image)


class Output:
    """Writes answers and errors as text, JSON lines or CSV (the Answer's own formats), and counts them."""

    def __init__(self, fmt: str, classes: list[str], out=None):
        from ..inference.predictor import Answer

        self.fmt, self.out = fmt, out or sys.stdout
        self.counts = {"ok": 0, "unsure": 0, "blank": 0, "failed": 0}
        self.header = Answer.csv_header(classes)  # status first
        self.writer = csv.writer(self.out) if fmt == "csv" else None
        if self.writer:
            self.writer.writerow(["path", *self.header, "error"])

    def error(self, path: Path, message: str) -> None:
        self.counts["failed"] += 1
        if self.fmt == "json":
            print(json.dumps({"path": str(path), "status": "error", "error": message}), file=self.out)
        elif self.fmt == "csv":
            self.writer.writerow([str(path), "error", *[""] * (len(self.header) - 1), message])
        else:
            print(f"{path}: error: {message}", file=sys.stderr)

    def answer(self, path: Path, answer, extra: dict, error: str | None = None, art: str | None = None) -> None:
        self.counts[answer.status] += 1
        if error:
            self.counts["failed"] += 1
        if self.fmt == "json":
            print(json.dumps({"path": str(path), **answer.to_json(), **extra, **({"error": error} if error else {})}),
                  file=self.out)
        elif self.fmt == "csv":
            self.writer.writerow([str(path), *answer.csv_row(), error or ""])
        else:
            print(f"{path}: {answer.text()}", file=self.out)
            if art:
                print(art, file=self.out)
            if error:
                print(f"{path}: error: {error}", file=sys.stderr)

    def summary(self, n: int) -> None:
        c = self.counts
        if n > 1 or c["failed"]:
            print(f"{n} image{'s' * (n != 1)}: {c['ok']} ok, {c['unsure']} unsure, {c['blank']} blank, "
                  f"{c['failed']} failed", file=sys.stderr)


def _save_preview(path: Path, pre) -> tuple[dict, str | None]:
    try:
        preview_path(path).write_bytes(pre.png())
        return {"preview": str(preview_path(path))}, None
    except OSError as e:
        return {}, f"could not write {preview_path(path)}: {e.strerror or e}"


def run(args) -> int:
    """Exit 0 when every file was read, 1 when any could not be (2 on usage errors, from main)."""
    from ..errors import PreprocessError
    from ..inference.predictor import Predictor
    from ..inference.preprocess import preprocess

    if args.top_k < 1:
        raise UserError(f"--top-k must be at least 1, not {args.top_k}")
    files = find_images(args.paths)
    if not files:
        raise UserError("no image files found in " + ", ".join(str(p) for p in args.paths)
                        + f" (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    predictor = Predictor(args.checkpoint, backend=args.backend, device=args.device)
    out = Output("json" if args.json else "csv" if args.csv else "text", predictor.classes)
    k = min(args.top_k, len(predictor.classes))
    try:
        for start in range(0, len(files), BATCH):
            chunk = []  # (path, Preprocessed or the error message), in the order given
            for path in files[start : start + BATCH]:
                try:
                    chunk.append((path, preprocess(path)))
                except PreprocessError as e:
                    chunk.append((path, str(e)))
            answers = iter(predictor.predict([pre.image for _, pre in chunk if not isinstance(pre, str)], top_k=k))
            for path, pre in chunk:
                if isinstance(pre, str):
                    out.error(path, pre)
                    continue
                extra, error = _save_preview(path, pre) if args.save_preview else ({}, None)
                out.answer(path, next(answers), extra, error, ascii_art(pre.image) if args.show else None)
            out.out.flush()
    except BrokenPipeError:  # `digitrec predict ... | head`: the reader has gone, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    out.summary(len(files))
    return 1 if out.counts["failed"] else 0
