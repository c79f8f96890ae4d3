"""Corrections: samples people label ("wrong? it is 7"), kept as an MNIST-format dataset.

A corrections folder holds
    train-images-idx3-ubyte  (N, 28, 28) the model inputs, white ink on black, as MNIST
    train-labels-idx1-ubyte  (N,) class indices
    log.csv                  one row per sample: index, time (UTC, ISO 8601), label, original file
    dataset.json             the class names and normalisation, as any folder dataset has

Appending is safe against a kill at any moment: the two IDX files are appended in place (their
old bytes never rewritten but for the 4-byte count in the header), then the sample's log row is
written and flushed. The log is the record of what is committed: whoever opens the folder reads
the first (rows in log.csv) samples and, when it may write, cuts the IDX files back to them, so
a kill loses at most the sample in flight and never what was there. Writers in one process take
a lock, writers in several processes a file lock. The folder has a cap on samples.
Torch-free (the server collects without PyTorch).
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .errors import DataError, UserError
from .util import atomic_write_text

IMAGES, LABELS, LOG, META = "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "log.csv", "dataset.json"
LOG_FIELDS = ["index", "time", "label", "original"]
MAX_SAMPLES = 20_000  # default cap: 16 MB of images
SIZE = 28
_locks: dict[str, threading.Lock] = {}


class CorrectionsFull(DataError):
    """The folder holds its cap of samples."""


def _header(ndim: int, dims: list[int]) -> bytes:
    return bytes([0, 0, 0x08, ndim]) + b"".join(d.to_bytes(4, "big") for d in dims)


def _count(path: Path, ndim: int) -> int:
    """The count in an IDX file's header, or 0 if the file is missing."""
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[:3] != b"\0\0\x08" or head[3] != ndim:
        raise DataError(f"{path} is not an IDX file of unsigned bytes with {ndim} dimensions; "
                        "it is not a corrections folder, or it was damaged")
    return int.from_bytes(head[4:8], "big")


def _log_rows(path: Path) -> list[dict]:
    """The complete rows of log.csv (a last line cut short by a kill is not a row)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = list(csv.DictReader(io.StringIO(text)))
    return [r for r in rows if r.get("original") is not None]


@dataclass
class Corrections:
    folder: Path
    classes: tuple[str, ...]
    mean: float = 0.1307
    std: float = 0.3081
    max_samples: int = MAX_SAMPLES

    def __post_init__(self):
        self.folder = Path(self.folder)

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(_log_rows(self.folder / LOG))

    def load(self) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """(images (N, 28, 28) uint8, labels (N,) int64, log rows): the committed samples."""
        rows = _log_rows(self.folder / LOG)
        n = len(rows)
        if n == 0:
            return np.zeros((0, SIZE, SIZE), np.uint8), np.zeros(0, np.int64), []
        images = np.fromfile(self.folder / IMAGES, np.uint8, count=16 + n * SIZE * SIZE)[16:]
        labels = np.fromfile(self.folder / LABELS, np.uint8, count=8 + n)[8:]
        if len(images) != n * SIZE * SIZE or len(labels) != n:
            raise DataError(f"{self.folder} is damaged: log.csv lists {n} samples but the IDX files hold fewer; "
                            "its samples cannot be trusted")
        return images.reshape(n, SIZE, SIZE), labels.astype(np.int64), rows

    # ------------------------------------------------------------------ writing

    @contextmanager
    def _locked(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = _locks.setdefault(str(self.folder.resolve()), threading.Lock())
        with lock, open(self.folder / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _repair(self) -> int:
        """Cut the IDX files back to the samples the log commits; write the header of a new
        folder. Returns the number of committed samples."""
        meta = self.folder / META
        if meta.exists():
            saved = json.loads(meta.read_text())
            if tuple(saved.get("classes", ())) != tuple(self.classes):
                raise UserError(f"{self.folder} collects {', '.join(saved.get('classes', []))}, not the classes of "
                                f"this model ({', '.join(self.classes)}); choose another folder")
        else:
            meta.write_text(json.dumps({"name": self.folder.name, "classes": list(self.classes),
                                        "mean": self.mean, "std": self.std}, indent=2) + "\n")
        rows = _log_rows(self.folder / LOG)
        n = len(rows)
        for name, ndim, item in ((IMAGES, 3, SIZE * SIZE), (LABELS, 1, 1)):
            path = self.folder / name
            dims = [n, SIZE, SIZE] if ndim == 3 else [n]
            if not path.exists():
                path.write_bytes(_header(ndim, [0, SIZE, SIZE] if ndim == 3 else [0]))
            _count(path, ndim)  # refuses a file that is not ours
            size = len(_header(ndim, dims)) + n * item
            if path.stat().st_size < size:
                raise DataError(f"{path} holds fewer samples than log.csv lists ({n}); the folder was damaged")
            with open(path, "r+b") as f:
                f.truncate(size)
                f.seek(0)
                f.write(_header(ndim, dims))
                f.flush()
                os.fsync(f.fileno())
        log = self.folder / LOG
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        if not text.endswith("\n"):  # new, or its last row was cut short by a kill: keep the whole rows
            buf = io.StringIO()
            w = csv.DictWriter(buf, LOG_FIELDS)
            w.writeheader()
            w.writerows(rows)
            atomic_write_text(log, buf.getvalue())
        return n

    def add(self, image: np.ndarray, label: str, original: str = "") -> int:
        """Append one sample ((28, 28) uint8 model input, a class name); returns its index."""
        image = np.asarray(image)
        if image.shape != (SIZE, SIZE) or image.dtype != np.uint8:
            raise UserError(f"a correction is a (28, 28) uint8 model input, not {image.dtype} {image.shape}")
        if label not in self.classes:
            raise UserError(f"label {label!r} is not one of the model's classes ({', '.join(self.classes)})")
        with self._locked():
            n = self._repair()
            if n >= self.max_samples:
                raise CorrectionsFull(f"{self.folder} holds its cap of {self.max_samples:,} samples; "
                                      "fine-tune on it and move it away, or raise the cap")
            for name, data, ndim, dims in ((IMAGES, image.tobytes(), 3, [n + 1, SIZE, SIZE]),
                                           (LABELS, bytes([self.classes.index(label)]), 1, [n + 1])):
                with open(self.folder / name, "r+b") as f:
                    f.seek(0, os.SEEK_END)
                    f.write(data)
                    f.seek(0)
                    f.write(_header(ndim, dims))
                    f.flush()
                    os.fsync(f.fileno())
            row = {"index": n, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "label": label, "original": original.replace("\n", " ")[:300]}
            buf = io.StringIO()
            csv.DictWriter(buf, LOG_FIELDS).writerow(row)
            with open(self.folder / LOG, "a", encoding="utf-8") as f:  # the commit
                f.write(buf.getvalue())
                f.flush()
                os.fsync(f.fileno())
        return n


# ----------------------------------------------------------------------------- importing

def labelled_files(source: Path, classes: tuple[str, ...]) -> list[tuple[Path, str]]:
    """(image file, label) pairs from a folder of class folders (`7/`, `digit_7/`, `A/`: the name,
    or its part after the last underscore, is the label) or from a CSV file of path,label rows
    (paths relative to the CSV's folder; a header row is allowed)."""
    from .inference.decode import IMAGE_SUFFIXES

    source = Path(source)
    if source.is_file():
        pairs = []
        with open(source, newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                if len(row) < 2 or row[1].strip() not in classes:
                    if pairs or row[:2] not in (["path", "label"], ["file", "label"]):
                        raise UserError(f"{source}: row {row!r} is not `path,label` with a label among "
                                        f"{', '.join(classes)}")
                    continue
                pairs.append((source.parent / row[0].strip(), row[1].strip()))
        return pairs
    if not source.is_dir():
        raise UserError(f"{source} is neither a folder of class folders nor a CSV file")
    pairs = []
    for sub in sorted(p for p in source.iterdir() if p.is_dir()):
        label = sub.name.rsplit("_", 1)[-1]
        if label not in classes:
            raise UserError(f"{sub}: folder name {sub.name!r} names no class ({', '.join(classes)}); "
                            "name class folders `7/` or `digit_7/`")
        pairs += [(f, label) for f in sorted(sub.rglob("*")) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    return pairs


def import_labelled(corrections: Corrections, source: Path) -> tuple[int, list[tuple[Path, str]]]:
    """Preprocess every labelled image of `source` into the folder; returns (added, [(file, why
    it was skipped)])."""
    from .errors import PreprocessError
    from .inference.preprocess import preprocess

    added, skipped = 0, []
    for path, label in labelled_files(source, corrections.classes):
        try:
            pre = preprocess(path)
        except PreprocessError as e:
            skipped.append((path, str(e)))
            continue
        if pre.blank:
            skipped.append((path, "no ink found"))
            continue
        corrections.add(pre.image, label, str(path))
        added += 1
    return added, skipped
