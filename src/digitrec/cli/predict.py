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


STDIN = Path("-")


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="image files or folders (searched recursively); - reads one image from standard input")
    model_args(p)
    p.add_argument("--top-k", type=int, default=1, help="how many best guesses to print")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object per line")
    fmt.add_argument("--csv", action="store_true", help="CSV with all class probabilities")
    p.add_argument("--save-preview", action="store_true",
                   help="write the 28x28 model input next to each image as <name><ext>.preview.png")
    p.add_argument("--show", action="store_true",
                   help="print the 28x28 model input as text under each answer (text output only)")


def _skip_reason(path: Path) -> str | None:
    """Why an image-named entry met in a folder cannot be read, or None if it can."""
    import stat

    from ..inference.decode import KIND_OF_FILE

    try:
        mode = path.stat().st_mode  # follows links: a loop or a dangling link fails here
    except OSError as e:
        if path.is_symlink():
            return "a symbolic link that " + ("loops" if "symbolic links" in str(e.strerror) else "leads nowhere")
        return f"cannot read it: {e.strerror or e}"
    for test, kind in KIND_OF_FILE:
        if test(mode):
            return f"it is {kind}, not an image file"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "not readable (permission denied)"
    return None


def find_images(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(files to read, [(file skipped, why)]): files as given, folders searched recursively
    for image-named entries (our own previews left out; links to folders are not followed)."""
    out, skipped = [], []
    for p in paths:
        if p != STDIN and p.is_dir():
            found = []
            for root, dirs, names in os.walk(p):
                dirs.sort()
                for name in names + [d for d in dirs if (Path(root) / d).is_symlink()]:
                    f = Path(root) / name
                    if f.suffix.lower() not in IMAGE_SUFFIXES or name.lower().endswith(PREVIEW_SUFFIX):
                        continue
                    why = _skip_reason(f)
                    found.append((f, why))
            for f, why in sorted(found):
                (skipped.append((f, why)) if why else out.append(f))
        else:
            out.append(p)  # a named file is tried whatever its suffix; a missing one is reported
    return out, skipped


def preview_path(path: Path) -> Path:
    """x.jpg -> x.jpg.preview.png: x.jpg's and x.png's previews do not overwrite each other."""
    return path.with_name(path.name + PREVIEW_SUFFIX)


def ascii_art(image: np.ndarray) -> str:
    """The 28x28 model input as text, two characters per pixel so it looks square."""
    ramp = " .:-=+*#%@"
    return "\n".join("".join(ramp[int(v) * (len(ramp) - 1) // 255] * 2 for v in row) for row in image)


class Output:
    """Writes answers and errors as text, JSON lines or CSV (the Answer's own formats), and counts them."""

    def __init__(self, fmt: str, classes: list[str], out=None):
        from ..inference.predictor import Answer

        self.fmt, self.out = fmt, out or sys.stdout
        self.counts = {"ok": 0, "unsure": 0, "blank": 0, "failed": 0, "skipped": 0}
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

    def skipped(self, path: Path, why: str) -> None:
        """A file met in a folder and not read: always on stderr, whatever the format."""
        self.counts["skipped"] += 1
        print(f"{path}: skipped: {why}", file=sys.stderr)

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
        if n > 1 or c["failed"] or c["skipped"]:
            print(f"{n} image{'s' * (n != 1)}: {c['ok']} ok, {c['unsure']} unsure, {c['blank']} blank, "
                  f"{c['failed']} failed" + (f"; {c['skipped']} skipped" if c["skipped"] else ""), file=sys.stderr)


def _save_preview(path: Path, pre) -> tuple[dict, str | None]:
    if path == STDIN:
        return {}, None  # nothing to write it next to
    try:
        preview_path(path).write_bytes(pre.png())
        return {"preview": str(preview_path(path))}, None
    except OSError as e:
        return {}, f"could not write {preview_path(path)}: {e.strerror or e}"


def _read(path: Path, stdin: bytes | None):
    """The Preprocessed image at `path` (`-`: the bytes read from standard input)."""
    from ..inference.preprocess import preprocess

    return preprocess(stdin if path == STDIN else path)


def _stdin(paths: list[Path]) -> bytes | None:
    """Standard input's bytes when `-` is among the paths (once), read within the byte limit."""
    from ..errors import PreprocessError
    from ..inference.decode import MAX_BYTES, read_limited

    n = paths.count(STDIN)
    if n == 0:
        return None
    if n > 1:
        raise UserError("- (standard input) can be given once")
    if sys.stdin is None or sys.stdin.isatty():
        raise UserError("- reads an image from standard input, which is a terminal: pipe one in, "
                        "e.g. digitrec predict - < digit.png")
    try:
        return read_limited(sys.stdin.buffer, MAX_BYTES)
    except PreprocessError as e:
        raise UserError(f"standard input: {e}") from None


def run(args) -> int:
    """Exit 0 when every file was read, 1 when any could not be or was skipped (2 on usage
    errors, from main)."""
    from ..errors import PreprocessError
    from ..inference.predictor import Predictor

    if args.top_k < 1:
        raise UserError(f"--top-k must be at least 1, not {args.top_k}")
    files, skipped = find_images(args.paths)
    if not files and not skipped:
        raise UserError("no image files found in " + ", ".join(str(p) for p in args.paths)
                        + f" (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    stdin = _stdin(files)
    predictor = Predictor(args.checkpoint, backend=args.backend, device=args.device)
    out = Output("json" if args.json else "csv" if args.csv else "text", predictor.classes)
    for path, why in skipped:
        out.skipped(path, why)
    k = min(args.top_k, len(predictor.classes))
    try:
        for start in range(0, len(files), BATCH):
            chunk = []  # (path, Preprocessed or the error message), in the order given
            for path in files[start : start + BATCH]:
                try:
                    chunk.append((path, _read(path, stdin)))
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
    out.summary(len(files) + len(skipped))
    return 1 if out.counts["failed"] or out.counts["skipped"] else 0
