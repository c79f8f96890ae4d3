"""Digit sets published as text, one record a line: parsing them into arrays, and checking them.

    usps     (The Elements of Statistical Learning's zip.train/zip.test, gzipped) the label, then
             256 values in [-1, 1] row by row, -1 the paper, 1 the ink; a line may carry further
             values after those 257, which are ignored
    semeion  (UCI) 256 pixels of 0/1 row by row, 1 the ink, then a one-hot label of ten 0/1;
             copies differ in separators (spaces, tabs), number style ("1.0000", "1") and
             wrapping (a record spread over several lines), and some add a column after the
             label: records are read as whole lines, joining lines until one holds 266 values

Images come out as (N, 16, 16) uint8, ink bright (255) on black (0) as in MNIST, labels as
(N,) int64. Torch-free: numpy arrays; real.py makes tensors of them.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib

import numpy as np

from ..errors import DataError
from .registry import RawFile

PIXELS = 256  # 16 x 16
CLASSES = 10


def _lines(data: bytes, name: str) -> list[bytes]:
    if data[:2] == b"\x1f\x8b":  # gzip, as published
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{name} is a damaged gzip file ({e}); delete it and fetch it again") from None
    return [line for line in data.splitlines() if line.strip()]


def _floats(tokens: list[bytes], name: str, where: str) -> np.ndarray:
    try:
        return np.array(tokens, dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_number(t))
        raise DataError(f"{name}: {where} holds {bad[:20]!r}, which is not a number; "
                        "is it another file?") from None


def _is_number(t: bytes) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


def parse_usps(data: bytes, name: str = "zip.train.gz") -> tuple[np.ndarray, np.ndarray]:
    """zip.train / zip.test (gzipped or not) -> images (N, 16, 16) uint8, labels (N,) int64."""
    rows = []
    for i, line in enumerate(_lines(data, name)):
        tokens = line.split()
        if len(tokens) < 1 + PIXELS:
            raise DataError(f"{name}: line {i + 1} has {len(tokens)} values, a record has 257 "
                            "(the label, then 16x16 pixels); the file is truncated or another file")
        rows.append(tokens[: 1 + PIXELS])  # one published test line carries an extra value
    if not rows:
        raise DataError(f"{name} holds no records")
    a = _floats([t for r in rows for t in r], name, "a record").reshape(len(rows), 1 + PIXELS)
    labels, pixels = a[:, 0], a[:, 1:]
    if not np.array_equal(labels, np.round(labels)) or labels.min() < 0 or labels.max() >= CLASSES:
        raise DataError(f"{name}: labels must be the digits 0 to 9; found {sorted(set(labels.tolist()))[:12]}")
    if pixels.min() < -1 - 1e-6 or pixels.max() > 1 + 1e-6:
        raise DataError(f"{name}: pixel values must lie in [-1, 1]; found {pixels.min():g} to {pixels.max():g}")
    images = np.round((np.clip(pixels, -1, 1) + 1) * 127.5).astype(np.uint8)  # -1 paper -> 0, 1 ink -> 255
    return images.reshape(-1, 16, 16), labels.astype(np.int64)


def _semeion_records(lines: list[bytes], name: str) -> list[list[bytes]]:
    """Whole records: lines joined until they hold at least 256 + 10 values."""
    records, pending, start = [], [], 0
    for i, line in enumerate(lines):
        if not pending:
            start = i
        pending += line.split()
        if len(pending) >= PIXELS + CLASSES:
            records.append(pending[: PIXELS + CLASSES])  # an extra column (the digit) is ignored
            pending = []
    if pending:
        raise DataError(f"{name}: the record starting on line {start + 1} ends after {len(pending)} of "
                        f"{PIXELS + CLASSES} values; the file is truncated")
    return records


def parse_semeion(data: bytes, name: str = "semeion.data") -> tuple[np.ndarray, np.ndarray]:
    """semeion.data (any of its public layouts) -> images (N, 16, 16) uint8, labels (N,) int64."""
    records = _semeion_records(_lines(data, name), name)
    if not records:
        raise DataError(f"{name} holds no records")
    a = _floats([t for r in records for t in r], name, "a record").reshape(len(records), PIXELS + CLASSES)
    if not np.isin(a, (0.0, 1.0)).all():
        r = int(np.nonzero(~np.isin(a, (0.0, 1.0)).all(1))[0][0])
        raise DataError(f"{name}: record {r + 1} holds values other than 0 and 1; Semeion's pixels and "
                        "labels are binary")
    onehot = a[:, PIXELS:]
    bad = np.nonzero(onehot.sum(1) != 1)[0]
    if len(bad):
        raise DataError(f"{name}: record {int(bad[0]) + 1} does not mark exactly one of the ten classes "
                        f"({len(bad)} such records)")
    images = (a[:, :PIXELS] * 255).astype(np.uint8).reshape(-1, 16, 16)
    return images, onehot.argmax(1).astype(np.int64)


PARSERS = {"usps": parse_usps, "semeion": parse_semeion}


def content_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """The SHA-256 of parsed records: the uint8 images' bytes, then the int64 labels' (little-endian)."""
    h = hashlib.sha256(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return h.hexdigest()


def check_records(images: np.ndarray, labels: np.ndarray, rf: RawFile) -> str | None:
    """None when the parsed records are the published ones (count, classes, content), else what differs."""
    if len(labels) != rf.records:
        return f"it holds {len(labels):,} records, the published file {rf.records:,}"
    counts = tuple(np.bincount(labels, minlength=len(rf.class_counts)).tolist())
    if counts != rf.class_counts:
        return f"its class counts are {'/'.join(map(str, counts))}, the published {'/'.join(map(str, rf.class_counts))}"
    if content_sha256(images, labels) != rf.content_sha256:
        return "its records differ from the published ones (the SHA-256 of the parsed records does not match)"
    return None
