"""What `predict` and `read` share: finding image files (folders searched, standard input,
entries that cannot be read listed with why) and writing results as text, JSON lines or CSV."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

from ..errors import UserError
from ..inference.decode import IMAGE_SUFFIXES
from ..util import atomic_write_bytes

PREVIEW_SUFFIX = ".preview.png"
EXPLAIN_SUFFIX = ".explain.png"
OURS = (PREVIEW_SUFFIX, EXPLAIN_SUFFIX)  # images digitrec writes beside the user's: never read as input
STDIN = Path("-")


def skip_reason(path: Path) -> str | None:
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
                    if f.suffix.lower() not in IMAGE_SUFFIXES or name.lower().endswith(OURS):
                        continue
                    why = skip_reason(f)
                    found.append((f, why))
            for f, why in sorted(found):
                (skipped.append((f, why)) if why else out.append(f))
        else:
            out.append(p)  # a named file is tried whatever its suffix; a missing one is reported
    return out, skipped


def beside(path: Path, suffix: str) -> Path:
    """x.jpg -> x.jpg<suffix>: what digitrec writes about x.jpg, beside it (x.jpg's and x.png's do
    not overwrite each other)."""
    return path.with_name(path.name + suffix)


def write_beside(path: Path, suffix: str, key: str, make) -> tuple[dict, str | None]:
    """Write `make()` (bytes) as <path><suffix>: ({key: where} for the JSON output, or an error);
    nothing for standard input, which has no place beside it."""
    if path == STDIN:
        return {}, None
    target = beside(path, suffix)
    try:
        atomic_write_bytes(target, make())
        return {key: str(target)}, None
    except OSError as e:
        return {}, f"could not write {target}: {e.strerror or e}"


def read_stdin(paths: list[Path]) -> bytes | None:
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


class Output:
    """Writes results (an Answer, a Reading: anything with to_json, csv_rows, describe and a
    status) and errors as text, JSON lines or CSV, and counts them. `header` is the CSV columns
    after the path (the result type's csv_header), the status first."""

    def __init__(self, fmt: str, header: list[str], out=None):
        self.fmt, self.out = fmt, out or sys.stdout
        self.counts = {"ok": 0, "unsure": 0, "not_a_digit": 0, "blank": 0, "failed": 0, "skipped": 0}
        self.header = header
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

    def result(self, path: Path, result, extra: dict, error: str | None = None, art: str | None = None) -> None:
        self.counts[result.status] += 1
        if error:
            self.counts["failed"] += 1
        if self.fmt == "json":
            print(json.dumps({"path": str(path), **result.to_json(), **extra, **({"error": error} if error else {})}),
                  file=self.out)
        elif self.fmt == "csv":
            self.writer.writerows([str(path), *row, *[""] * (len(self.header) - len(row)), error or ""]
                                  for row in result.csv_rows())  # no probabilities: empty cells
        else:
            print(f"{path}: {result.describe()}", file=self.out)
            for what, where in extra.items():  # the files written beside it
                print(f"  {what} written to {where}", file=self.out)
            if art:
                print(art, file=self.out)
            if error:
                print(f"{path}: error: {error}", file=sys.stderr)

    def summary(self, n: int) -> None:
        c = self.counts
        if n > 1 or c["failed"] or c["skipped"]:
            print(f"{n} image{'s' * (n != 1)}: {c['ok']} ok, {c['unsure']} unsure, "
                  f"{c['not_a_digit']} not a digit, {c['blank']} blank, "
                  f"{c['failed']} failed" + (f"; {c['skipped']} skipped" if c["skipped"] else ""), file=sys.stderr)


def run_over_files(args, csv_header, work) -> int:
    """The frame of `predict` and `read`: check the options, find the files (listing the ones
    skipped), read standard input, load the model once, open the output in the format asked
    for, then `work(predictor, out, files, stdin)`. Exit 0 when every file was read, 1 when any
    could not be or was skipped (2, for usage errors, comes from main)."""
    from ..inference.predictor import Predictor

    if args.top_k < 1:
        raise UserError(f"--top-k must be at least 1, not {args.top_k}")
    files, skipped = find_images(args.paths)
    if not files and not skipped:
        raise UserError("no image files found in " + ", ".join(str(p) for p in args.paths)
                        + f" (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    stdin = read_stdin(files)
    predictor = Predictor(args.checkpoint, backend=args.backend, device=args.device)
    out = Output("json" if args.json else "csv" if args.csv else "text", csv_header(predictor.classes))
    for path, why in skipped:
        out.skipped(path, why)
    try:
        work(predictor, out, files, stdin)
    except BrokenPipeError:  # `digitrec ... | head`: the reader has gone, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    out.summary(len(files) + len(skipped))
    return 1 if out.counts["failed"] or out.counts["skipped"] else 0
