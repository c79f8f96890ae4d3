"""Loading a dataset's checked files as tensors, and the fixed validation split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import DataError
from .fetch import dataset_dir, default_data_dir, fetch
from .idx import parse_idx
from .registry import ROLES, DatasetSpec, FileSpec, get_spec


@dataclass
class Dataset:
    spec: DatasetSpec
    train_x: torch.Tensor  # (N, 28, 28) uint8, upright (EMNIST's transposition undone)
    train_y: torch.Tensor  # (N,) int64, class indices 0..C-1 (label offset removed)
    test_x: torch.Tensor  # (M, 28, 28) uint8
    test_y: torch.Tensor  # (M,) int64
    checksums: dict[str, str] = field(default_factory=dict)  # file name -> SHA-256


def _read(path: Path, fs: FileSpec, ndim: int, spec: DatasetSpec) -> tuple[torch.Tensor, str]:
    if not path.exists():
        raise DataError(f"{path} is missing; run `digitrec fetch --dataset {spec.name}`")
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if fs.size is not None and len(raw) != fs.size:
        what = "truncated" if len(raw) < fs.size else "too long"
        raise DataError(f"{fs.name} is {what} ({len(raw):,} of {fs.size:,} bytes); "
                        f"delete it or run `digitrec fetch --force`")
    if fs.sha256 is not None and digest != fs.sha256:
        raise DataError(f"{fs.name} is damaged or replaced (its SHA-256 does not match); "
                        f"delete it or run `digitrec fetch --force`")
    return parse_idx(raw, fs.name, ndim), digest


def _load_folder(spec: DatasetSpec, folder: Path) -> Dataset:
    out, sums = {}, {}
    for role in ROLES:
        fs = spec.files[role]
        out[role], sums[fs.name] = _read(folder / fs.name, fs, 3 if role.endswith("images") else 1, spec)
    for part in ("train", "test"):
        x, y = out[f"{part}_images"], out[f"{part}_labels"]
        if len(x) != len(y):
            raise DataError(f"{spec.files[part + '_images'].name} has {len(x)} images but "
                            f"{spec.files[part + '_labels'].name} has {len(y)} labels")
        if spec.transposed:
            x = x.transpose(1, 2).contiguous()
        y = y.long() - spec.label_offset
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= spec.num_classes):
            raise DataError(f"{spec.files[part + '_labels'].name} has labels outside "
                            f"{spec.label_offset}..{spec.num_classes - 1 + spec.label_offset}")
        out[f"{part}_images"], out[f"{part}_labels"] = x, y
    return Dataset(spec, out["train_images"], out["train_labels"], out["test_images"],
                   out["test_labels"], sums)


def load(name: str | DatasetSpec = "mnist", data_dir: Path | str | None = None,
         fetch_missing: bool = True) -> Dataset:
    """The dataset as tensors. Cached files that fail their checks are fetched again."""
    from ..util import say

    spec = get_spec(name) if isinstance(name, str) else name
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    try:
        return _load_folder(spec, dataset_dir(spec, data_dir))
    except DataError as e:
        if not fetch_missing or spec.folder:
            raise
        if dataset_dir(spec, data_dir).exists():
            say(f"{e.args[0].split(';')[0]}; fetching again")
    return _load_folder(spec, fetch(spec, data_dir))


def split_indices(n: int, val_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint (train, val) index tensors; the same seed always gives the same split."""
    if not 0 <= val_size < n:
        raise DataError(f"validation size {val_size} must be between 0 and {n - 1}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values
