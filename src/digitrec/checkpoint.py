"""Checkpoints: tensors plus plain metadata, written atomically, read with weights_only=True.

A checkpoint is a dict:
    format      "digitrec-checkpoint/1"
    model       {"name": registry name, "args": keyword arguments}
    state_dict  the model's weights
    meta        JSON-able: dataset (name, classes, normalisation, checksums), metrics,
                config, versions
    train_state (only in last.pt) optimiser, scheduler, RNG states, epoch, history: for --resume
Because it holds only tensors, numbers, strings, lists and dicts, it loads with
`torch.load(weights_only=True)`, which refuses any pickled object that could run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError  # noqa: F401  defined there so the CLI can catch it without torch
from .models import create_model
from .util import atomic_write

FORMAT = "digitrec-checkpoint/1"


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under torch.compile / DistributedDataParallel wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def save_checkpoint(path: Path, model: nn.Module, model_name: str, model_args: dict, meta: dict,
                    train_state: dict | None = None) -> None:
    payload = {
        "format": FORMAT,
        "model": {"name": model_name, "args": dict(model_args)},
        "state_dict": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "meta": meta,
    }
    if train_state is not None:
        payload["train_state"] = train_state
    atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path | str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train one with `digitrec train` "
                              "or pass the path of an existing .pt file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refused to load {path}: it contains pickled Python objects that could run code when "
            f"loaded ({str(e).splitlines()[0][:200]}). digitrec checkpoints hold only tensors and "
            "plain data; do not load this file unless you know where it came from") from None
    except Exception as e:  # truncated zip, half-written pickle, not a torch file at all
        raise CheckpointError(f"{path} is not a readable checkpoint (damaged or truncated?): "
                              f"{str(e).splitlines()[0][:200]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a digitrec checkpoint (no '{FORMAT}' format tag)")
    for key in ("model", "state_dict", "meta"):
        if key not in ckpt:
            raise CheckpointError(f"{path} is an incomplete digitrec checkpoint (no {key!r})")
    return ckpt


def build_model(ckpt: dict, path: Path | str = "checkpoint") -> nn.Module:
    """The model described by a loaded checkpoint, with its weights, in eval mode."""
    try:
        model = create_model(ckpt["model"]["name"], **ckpt["model"]["args"])
        model.load_state_dict(ckpt["state_dict"])
    except (ValueError, TypeError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"{path}: the weights do not fit model "
                              f"{ckpt['model'].get('name')!r}: {str(e).splitlines()[0][:300]}") from None
    return model.eval()


def load_model(path: Path | str) -> tuple[nn.Module, dict]:
    ckpt = load_checkpoint(path)
    return build_model(ckpt, path), ckpt
