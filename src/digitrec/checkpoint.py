"""Checkpoints: tensors plus plain metadata, written atomically, read with weights_only=True.

On disk a checkpoint is a dict:
    format      "digitrec-checkpoint/2" (files marked /1, from before the model card, still load)
    model       {"name": registry name, "args": keyword arguments}
    state_dict  the model's weights
    meta        JSON-able: "card" (the ModelCard: classes, normalisation, calibration),
                "dataset" (name and file checksums), metrics, config, environment
    train_state (only in last.pt) the resume state, training/state.py
Because it holds only tensors, numbers, strings, lists and dicts, it loads with
`torch.load(weights_only=True)`, which refuses any pickled object that could run code.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .card import ModelCard
from .errors import CheckpointError, DigitrecError
from .models import create_model
from .util import atomic_write

FORMAT = "digitrec-checkpoint/2"
READABLE = ("digitrec-checkpoint/1", FORMAT)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under torch.compile / DistributedDataParallel wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


@dataclass
class Checkpoint:
    model: dict  # {"name": registry name, "args": keyword arguments}
    state_dict: dict
    meta: dict
    card: ModelCard
    train_state: dict | None = field(default=None, repr=False)
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.model["name"]

    def build(self) -> nn.Module:
        """The model with its weights, in eval mode, checked against the card."""
        source = str(self.path or "checkpoint")
        try:
            model = create_model(self.model["name"], **self.model["args"])
            model.load_state_dict(self.state_dict)
        except (ValueError, TypeError, RuntimeError, KeyError, DigitrecError) as e:
            raise CheckpointError(f"{source}: the weights do not fit model "
                                  f"{self.model.get('name')!r}: {str(e).splitlines()[0][:300]}") from None
        model.eval()
        with torch.no_grad():
            outputs = model(torch.zeros(1, 1, self.card.input_size, self.card.input_size)).shape[-1]
        self.card.check_outputs(outputs, source)
        return model


def save_checkpoint(path: Path, model: nn.Module, model_name: str, model_args: dict, meta: dict,
                    train_state: dict | None = None) -> None:
    """`meta` must hold the model's card as meta["card"] (ModelCard.to_json(); a line model's
    LineCard.to_json())."""
    payload = {
        "format": FORMAT,
        "model": {"name": model_name, "args": dict(model_args)},
        "state_dict": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "meta": meta,
    }
    if train_state is not None:
        payload["train_state"] = train_state
    atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path | str) -> Checkpoint:
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(f"{path} is an ONNX export; this needs a PyTorch checkpoint (.pt), "
                              "such as a run's best.pt")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train one with `digitrec train` "
                              "or pass the path of an existing .pt file")
    raw = read_checkpoint(path)
    card = ModelCard.from_meta(raw["meta"], str(path))
    state = raw.get("train_state")
    return Checkpoint(raw["model"], raw["state_dict"], raw["meta"], card, state if isinstance(state, dict) else None,
                      path)


def read_checkpoint(path: Path) -> dict:
    """A checkpoint file's dict, its layout checked (format, model entry, weights, meta), its card
    not: the caller reads that (ModelCard, or LineCard for the line model: training/lines.py)."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refused to load {path}: it contains pickled Python objects that could run code when "
            f"loaded ({str(e).splitlines()[0][:200]}). digitrec checkpoints hold only tensors and "
            "plain data; do not load this file unless you know where it came from") from None
    except Exception as e:  # noqa: BLE001  truncated zip, half-written pickle, not a torch file at all
        raise CheckpointError(f"{path} is not a readable checkpoint (damaged or truncated?): "
                              f"{str(e).splitlines()[0][:200]}") from None
    if not isinstance(raw, dict) or raw.get("format") not in READABLE:
        raise CheckpointError(f"{path} is not a digitrec checkpoint (no '{FORMAT}' format tag)")
    for key, kind in (("model", dict), ("state_dict", dict), ("meta", dict)):
        if raw.get(key) is None:
            raise CheckpointError(f"{path} is an incomplete digitrec checkpoint (no {key!r})")
        if not isinstance(raw[key], kind):
            raise CheckpointError(f"{path} is a damaged digitrec checkpoint: its {key} is "
                                  f"{type(raw[key]).__name__}, not a JSON object")
    model = raw["model"]
    if not isinstance(model.get("name"), str) or not isinstance(model.get("args", {}), dict):
        raise CheckpointError(f"{path}: its model entry {str(model)[:80]} does not name a model and its arguments")
    return {**raw, "model": {"name": model["name"], "args": model.get("args", {})}}


def load_model(path: Path | str) -> tuple[nn.Module, Checkpoint]:
    ckpt = load_checkpoint(path)
    return ckpt.build(), ckpt
