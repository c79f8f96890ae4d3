"""Corrections: samples people label ("wrong? it is 7"), kept as an MNIST-format dataset.

A corrections folder holds
    train-images-idx3-ubyte  (N, 28, 28) the model inputs, white ink on black, as MNIST
    train-labels-idx1-ubyte  (N,) class indices
    log.csv                  one row per sample: index, time (UTC, ISO 8601), label, the model's
                             answer (`predicted`), original file, `recovered` (1: its row was rebuilt)
    dataset.json             the class names and normalisation, as any folder dataset has

Appending is safe against a kill at any moment: the two IDX files are appended in place (their
old bytes never rewritten but for the 4-byte count in the header), then the sample's log row is
written and flushed. A kill loses at most the sample in flight and never what was there.
The IDX headers count the samples: samples both files hold but the log lacks (a log lost, or a
kill just before its row) are recovered, their rows rebuilt and marked `recovered`; bytes past
the counts, or one image whose label was never written, are the sample in flight and are cut.
Anything else is damage (a truncated file, a missing one, a log row or a label byte that is no
sample of this folder, an unreadable dataset.json): refused in words, the folder left as it is,
never cut back. Writers in one process take a lock, writers in several processes a file lock.
The folder has a cap on samples. Torch-free (the server collects without PyTorch).
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
LOG_FIELDS = ["index", "time", "label", "predicted", "original", "recovered"]
OLD_LOG_FIELDS = ["index", "time", "label", "original"]  # before `predicted` and `recovered`: still read
MAX_SAMPLES = 20_000  # default cap: 16 MB of images
SIZE = 28
FORMULA = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell starting so as a formula
_locks: dict[str, threading.Lock] = {}


class CorrectionsFull(DataError):
    """The folder holds its cap of samples."""


def safe_cell(text: str) -> str:
    """`text` as a spreadsheet shows it, never runs it: a leading ' before = + - @ tab or CR
    (and before a leading ', so that plain_cell gives back any text)."""
    return "'" + text if text.startswith(FORMULA + ("'",)) else text


def plain_cell(text: str) -> str:
    """The text safe_cell was given."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA + ("'",)) else text


@dataclass(frozen=True)
class FolderState:
    """What a corrections folder holds, checked: `samples` committed, of which `recovered` had no
    log row (rows rebuilt from the IDX files); `rows` the log rows of all of them."""

    samples: int
    recovered: int
    rows: tuple[dict, ...]
    labels: np.ndarray  # (samples,) class indices
    rewrite_log: bool  # the log needs writing again: rows recovered, an old header, a row cut short


def _header(ndim: int, dims: list[int]) -> bytes:
    return bytes([0, 0, 0x08, ndim]) + b"".join(d.to_bytes(4, "big") for d in dims)


def _count(path: Path, ndim: int) -> int | None:
    """The samples an IDX file holds by its header (None if the file is missing); refused in
    words if it is not ours or holds fewer bytes than its header counts."""
    if not path.exists():
        return None
    with open(path, "rb") as f:
        head = f.read(4 + 4 * ndim)
    if len(head) < 4 + 4 * ndim or head[:3] != b"\0\0\x08" or head[3] != ndim or \
            (ndim == 3 and head[8:] != _header(3, [0, SIZE, SIZE])[8:]):
        raise DataError(f"{path} is not an IDX file of {'28x28 images' if ndim == 3 else 'labels'}; "
                        "it is not a corrections folder, or it was damaged")
    n = int.from_bytes(head[4:8], "big")
    need = len(head) + n * (SIZE * SIZE if ndim == 3 else 1)
    if path.stat().st_size < need:
        raise DataError(f"{path} is truncated: its header counts {n:,} samples ({need:,} bytes) but it holds "
                        f"{path.stat().st_size:,} bytes; restore it from a backup, or move the folder away")
    return n


def _log_rows(path: Path, classes: tuple[str, ...]) -> tuple[list[dict], bool]:
    """(the complete rows of log.csv, whether it needs rewriting); a last line cut short by a kill
    is not a row. A line that is no row of this folder is refused in words."""
    if not path.exists():
        return [], True
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as e:
        raise DataError(f"{path} cannot be read as a text log ({e}); move it away and the log is rebuilt "
                        "from the IDX files (their samples kept, marked recovered)") from None
    cut = not text.endswith("\n")
    text = text[: text.rfind("\n") + 1]
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header not in (LOG_FIELDS, OLD_LOG_FIELDS):
        raise DataError(f"{path} does not start with the header {','.join(LOG_FIELDS)}; move it away and the log "
                        "is rebuilt from the IDX files (their samples kept, marked recovered)")
    rows = []
    for line, cells in enumerate(reader, start=2):
        row = {k: plain_cell(v) for k, v in zip(header, cells)}
        if len(cells) != len(header) or row["index"] != str(len(rows)) or row["label"] not in classes:
            raise DataError(f"{path} line {line} is not the row of sample {len(rows)} (index, time, a label among "
                            f"{', '.join(classes)}, ...): {','.join(cells)[:80]!r}; correct or delete that line")
        rows.append({**dict.fromkeys(LOG_FIELDS, ""), **row})
    return rows, cut or header != LOG_FIELDS


def _check_meta(folder: Path, classes: tuple[str, ...]) -> None:
    meta = folder / META
    if not meta.exists():
        return
    try:
        saved = json.loads(meta.read_text(encoding="utf-8"))
        names = tuple(saved["classes"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise DataError(f"{meta} is not the dataset.json of a corrections folder ({type(e).__name__}: "
                        f"{str(e)[:80]}); restore it or write {{\"classes\": [...]}} naming the model's classes") \
            from None
    if names != tuple(classes):
        raise UserError(f"{folder} collects {', '.join(map(str, names))}, not the classes of "
                        f"this model ({', '.join(classes)}); choose another folder")


def _state(folder: Path, classes: tuple[str, ...]) -> FolderState:
    """The folder checked (read only): refused in words if damaged."""
    _check_meta(folder, classes)
    n_images, n_labels = _count(folder / IMAGES, 3), _count(folder / LABELS, 1)
    rows, rewrite = _log_rows(folder / LOG, classes)
    for name, n, other, m in ((IMAGES, n_images, LABELS, n_labels), (LABELS, n_labels, IMAGES, n_images)):
        if n is None and (m or rows):
            raise DataError(f"{folder / name} is missing but {other} holds {m or 0:,} samples and log.csv lists "
                            f"{len(rows):,}; restore it from a backup, or move the folder away")
    n_images, n_labels = n_images or 0, n_labels or 0
    if not 0 <= n_images - n_labels <= 1:  # the labels are written second: one image ahead is a kill
        raise DataError(f"{folder} is damaged: {IMAGES} holds {n_images:,} samples but {LABELS} {n_labels:,}; "
                        "restore them from a backup, or move the folder away")
    n = n_labels
    if len(rows) > n:
        raise DataError(f"{folder} is damaged: log.csv lists {len(rows):,} samples but the IDX files hold {n:,}; "
                        "restore them from a backup, or move the folder away")
    labels = np.fromfile(folder / LABELS, np.uint8, count=8 + n)[8:].astype(np.int64) if n else np.zeros(0, np.int64)
    bad = np.nonzero(labels >= len(classes))[0]
    if len(bad):
        raise DataError(f"{folder / LABELS}: label byte {labels[bad[0]]} of sample {bad[0]} names no class (there "
                        f"are {len(classes)}: 0 to {len(classes) - 1}); {len(bad)} such, the folder was damaged")
    names = np.array(classes, dtype=object)
    logged = np.array([r["label"] for r in rows], dtype=object)
    wrong = np.nonzero(names[labels[: len(rows)]] != logged)[0] if rows else []
    if len(wrong):
        i = int(wrong[0])
        raise DataError(f"{folder}: log.csv says sample {i} is {rows[i]['label']!r} but {LABELS} says "
                        f"{classes[labels[i]]!r} ({len(wrong)} such); the folder was damaged")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    recovered = [{**dict.fromkeys(LOG_FIELDS, ""), "index": str(i), "time": now, "label": classes[labels[i]],
                  "recovered": "1"} for i in range(len(rows), n)]
    return FolderState(n, len(recovered), tuple(rows + recovered), labels, rewrite or bool(recovered))


def _write_log(path: Path, rows) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, LOG_FIELDS)
    w.writeheader()
    w.writerows({k: safe_cell(str(v)) for k, v in r.items()} for r in rows)
    atomic_write_text(path, buf.getvalue())


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
        return self.check().samples

    def check(self) -> FolderState:
        """What the folder holds (samples without a log row counted as recovered), or DataError
        in words if it is damaged. Reads only."""
        with self._in_words():
            return _state(self.folder, tuple(self.classes))

    def load(self) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """(images (N, 28, 28) uint8, labels (N,) int64, log rows): the committed samples, checked."""
        state = self.check()
        n = state.samples
        if n == 0:
            return np.zeros((0, SIZE, SIZE), np.uint8), np.zeros(0, np.int64), []
        images = np.fromfile(self.folder / IMAGES, np.uint8, count=16 + n * SIZE * SIZE)[16:]
        return images.reshape(n, SIZE, SIZE), state.labels, list(state.rows)

    # ------------------------------------------------------------------ writing

    @contextmanager
    def _in_words(self):
        """OSError (a file where the folder should be, no permission, a full disk) as a DataError."""
        try:
            yield
        except OSError as e:
            raise DataError(f"{self.folder} cannot be used as a corrections folder: {e.strerror or e} "
                            f"({e.filename or self.folder})") from None

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

    def prepare(self) -> FolderState:
        """Check the folder and make it ready to take samples (as `serve --collect` starts): a new
        one gets its files, recovered samples their log rows. DataError in words if damaged."""
        with self._in_words(), self._locked():
            return self._repair()

    def _repair(self) -> FolderState:
        """Check the folder, cut the sample in flight, write the header of a new folder and the
        rows of recovered samples. Returns what the folder holds."""
        state = self.check()
        n = state.samples
        if not (self.folder / META).exists():
            atomic_write_text(self.folder / META, json.dumps({"name": self.folder.name, "classes": list(self.classes),
                                                              "mean": self.mean, "std": self.std}, indent=2) + "\n")
        for name, ndim, item in ((IMAGES, 3, SIZE * SIZE), (LABELS, 1, 1)):
            path = self.folder / name
            dims = [n, SIZE, SIZE] if ndim == 3 else [n]
            size = len(_header(ndim, dims)) + n * item
            if path.exists() and path.stat().st_size == size and _count(path, ndim) == n:
                continue
            with open(path, "r+b" if path.exists() else "w+b") as f:
                f.truncate(size)  # only the sample in flight: check() refused anything more
                f.seek(0)
                f.write(_header(ndim, dims))
                f.flush()
                os.fsync(f.fileno())
        if state.rewrite_log:
            _write_log(self.folder / LOG, state.rows)
        return state

    def add(self, image: np.ndarray, label: str, original: str = "", predicted: str = "") -> int:
        """Append one sample ((28, 28) uint8 model input, a class name; `predicted`: the model's
        answer, for the log); returns its index."""
        image = np.asarray(image)
        if image.shape != (SIZE, SIZE) or image.dtype != np.uint8:
            raise UserError(f"a correction is a (28, 28) uint8 model input, not {image.dtype} {image.shape}")
        if label not in self.classes:
            raise UserError(f"label {label!r} is not one of the model's classes ({', '.join(self.classes)})")
        with self._in_words(), self._locked():
            n = self._repair().samples
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
            row = {"index": n, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "label": label,
                   "predicted": predicted, "original": " ".join(original.splitlines())[:300], "recovered": ""}
            buf = io.StringIO()
            csv.DictWriter(buf, LOG_FIELDS).writerow({k: safe_cell(str(v)) for k, v in row.items()})
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
