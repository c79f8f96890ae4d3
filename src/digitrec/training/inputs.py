"""What a run's batches are drawn from, made once before training: the training/validation
split (`Split`, computed once and handed on), the training images as normalised tensors on
the device, and the optional banks: shapes that are not characters (--outliers), real-world
renders (--real-world), the teachers' probabilities (--teacher); and the augmentation."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..augment import AffineAug, Augment
from ..checkpoint import load_model
from ..data.load import Dataset, split_indices
from ..errors import UserError
from ..metrics import logits_of
from . import distributed
from .config import TrainConfig

OUTLIER_BANK = 12_000  # shapes in the --outliers bank: 6,000 of each kind


@dataclass(frozen=True)
class Split:
    """The training images a run trains on and those it validates on: indices into the
    dataset's training split, the same for every run with the same val_size and split_seed."""

    train: torch.Tensor  # (N - V,) sorted indices
    val: torch.Tensor  # (V,) sorted indices

    @classmethod
    def of(cls, cfg: TrainConfig, ds: Dataset) -> "Split":
        if not 0 < cfg.val_size < len(ds.train_x):
            raise UserError(f"--val-size {cfg.val_size} must be between 1 and {len(ds.train_x) - 1}: "
                            f"{ds.spec.name} has {len(ds.train_x):,} training images")
        return cls(*split_indices(len(ds.train_x), cfg.val_size, cfg.split_seed))


def augmentation(cfg: TrainConfig) -> Augment | None:
    """The per-image augmentation the options ask for, or None."""
    extras = {"elastic": cfg.aug_elastic, "stroke": cfg.aug_stroke, "blur": cfg.aug_blur,
              "contrast": cfg.aug_contrast}
    if not (cfg.augment or any(extras.values())):
        return None
    affine = AffineAug(cfg.aug_rotate, cfg.aug_scale, cfg.aug_shear, cfg.aug_translate) if cfg.augment else None
    return Augment(affine, **extras)


def model_inputs(cfg: TrainConfig, ds: Dataset, x: torch.Tensor, device: str) -> torch.Tensor:
    """(N, 28, 28) uint8 images -> (N, 1, 28, 28) normalised model inputs on the device, in the
    memory format training uses."""
    out = ds.spec.card().normalise(x).to(device)
    return out.contiguous(memory_format=torch.channels_last) if cfg.channels_last else out


def outliers(cfg: TrainConfig, ds: Dataset, split: Split, device: str) -> torch.Tensor | None:
    """With --outliers, the bank of shapes that are not characters (training/outliers.py), made
    from training-split digits only, normalised, on the device."""
    if not cfg.outliers:
        return None
    from .outliers import bank

    return model_inputs(cfg, ds, bank(ds.train_x[split.train], OUTLIER_BANK, cfg.seed), device)


def renders(cfg: TrainConfig, ds: Dataset, split: Split, device: str,
            log) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, dict]:
    """With --real-world, the bank of training-split digits rendered under real-world conditions
    and prepared by preprocess() (training/renders.py; built once, cached beside the data),
    normalised, on the device; and the facts of its making (for metrics.json)."""
    if not cfg.real_world:
        return None, {}
    from ..data.fetch import default_data_dir
    from .renders import bank

    cache = Path(cfg.data_dir) if cfg.data_dir else default_data_dir()
    with distributed.rank_zero_first():  # under torchrun, rank 0 renders; the others read its cache
        x, y, facts = bank(ds.train_x[split.train].numpy(), ds.train_y[split.train].numpy(), cfg.real_world_bank,
                           cfg.seed, cache, jobs=max(1, os.cpu_count() or 1), log=log)
    log(f"real-world bank: {facts['kept']:,} of {facts['renders']:,} renders kept"
        + (f", {facts['rendered_now']:,} rendered now at {facts['images_per_second']} images/s"
           if facts["rendered_now"] else " (cached)"))
    return (model_inputs(cfg, ds, torch.from_numpy(x), device), torch.from_numpy(y).to(device)), facts


def teachers(cfg: TrainConfig, ds: Dataset, split: Split, device: str, log) -> torch.Tensor | None:
    """With --teacher, the teachers' mean probabilities of every training-split image (each
    teacher reading the images as its own training did), on the device; computed once."""
    if not cfg.teacher:
        return None
    probs = []
    for path in cfg.teacher.split(","):
        model, ckpt = load_model(Path(path.strip()))
        if ckpt.card.num_classes != ds.spec.num_classes:
            raise UserError(f"teacher {path} has {ckpt.card.num_classes} classes; {ds.spec.name} has {ds.spec.num_classes}")
        probs.append(logits_of(model.to(device), ds.train_x[split.train], ckpt.card, device).float().softmax(1).cpu())
        log(f"teacher {path}: read {len(split.train):,} training images")
    return torch.stack(probs).mean(0).to(device)


def extras(cfg: TrainConfig, ds: Dataset, split: Split, device: str,
           log) -> tuple[tuple[torch.Tensor, torch.Tensor, float], ...]:
    """The other banks a share of each batch's digits is drawn from, as (normalised inputs on the
    device, labels, share): with --real-sets, real handwriting beyond MNIST (the training writers of
    USPS and Semeion, drawn on paper and prepared by preprocess(); data/real.py); with --styles,
    training-split digits written the continental way (training/styles.py). Made once."""
    out = []
    if cfg.real_sets:
        from ..data.real import prepared

        sets = [prepared(name, "train", data_dir=cfg.data_dir) for name in ("usps", "semeion")]
        x, y = torch.cat([s.images for s in sets]), torch.cat([s.labels.long() for s in sets])
        log(f"real handwriting bank: {', '.join(f'{s.name} {len(s.labels):,}' for s in sets)} training digits")
        out.append((model_inputs(cfg, ds, x, device), y.to(device), cfg.real_sets))
    if cfg.styles:
        from .styles import build_style_bank

        x, y = build_style_bank(ds.train_x[split.train], ds.train_y[split.train], cfg.style_bank, cfg.seed)
        log(f"style bank: {len(y):,} continental digits")
        out.append((model_inputs(cfg, ds, x, device), y.long().to(device), cfg.styles))
    return tuple(out)
