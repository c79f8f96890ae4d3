"""ONNX export: a checkpoint as an .onnx file that stands on its own, checked against PyTorch, and
the cached export of a checkpoint (`cached_onnx`) that the onnx backend runs. Running an export is
inference's (inference/onnxrun.py; inference/onnxmodel.py behind the torch model's call): this
module imports nothing from inference, which imports it.

The ONNX file stands on its own, like a checkpoint: its input is `image`, float32
(batch, 1, 28, 28), normalised as in training; its output `logits` (batch, classes); the
batch dimension is dynamic. The checkpoint's metadata (class names, normalisation,
calibration, metrics, config) travels in the model's metadata_props under "digitrec", as
JSON, with the SHA-256 of the checkpoint it came from, so that a cached export is reused
only while the checkpoint is unchanged.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path

import torch

from .checkpoint import FORMAT, load_model
from .data.fetch import default_data_dir, sha256_file
from .errors import CheckpointError, require
from .util import atomic_write

META_KEY = "digitrec"  # the metadata_props entry holding the checkpoint's metadata (inference/onnxrun.py reads it)

OPSET = 20
TOLERANCE = 1e-4  # largest difference in probabilities from PyTorch that an export may show


def export_onnx(checkpoint: Path | str, out: Path | str | None = None) -> Path:
    """Export `checkpoint` to `out` (default: next to it, .onnx), checked against PyTorch."""
    require("onnx", "ONNX export")
    import onnx

    checkpoint = Path(checkpoint)
    out = Path(out) if out else checkpoint.with_suffix(".onnx")
    source_sha = sha256_file(checkpoint)
    model, ckpt = load_model(checkpoint)
    example = torch.zeros(2, 1, 28, 28)  # (B, 1, 28, 28); B=2, so the exporter does not specialise it to 1
    try:
        proto = to_onnx(model, example, {0: torch.export.Dim("batch")}, "image", META_KEY,
                        {"format": FORMAT, "model": ckpt.model, "meta": ckpt.meta,
                         "source": checkpoint.name, "source_sha256": source_sha})
    except Exception as e:  # noqa: BLE001  the exporter's errors are many and deep
        raise CheckpointError(f"could not export the {ckpt.name!r} model of {checkpoint} to ONNX: "
                              f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}") from None
    atomic_write(out, lambda tmp: onnx.save_model(proto, str(tmp)))

    # Never leave an export that disagrees with the model it came from.
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x).softmax(1)
    got = _onnx_logits(out, x).softmax(1)
    worst = float((got - want).abs().max())
    if not worst <= TOLERANCE:
        out.unlink(missing_ok=True)
        raise CheckpointError(f"the ONNX export of {checkpoint} differs from PyTorch by {worst:.2g} in "
                              f"probability (allowed: {TOLERANCE}); it was not kept")
    return out


def _onnx_logits(path: Path, x: torch.Tensor) -> torch.Tensor:
    """(B, classes) logits of the export at `path` for `x`, by ONNX Runtime on the CPU."""
    require("onnxruntime", "checking an ONNX export")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    run = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return torch.from_numpy(run.run(None, {run.get_inputs()[0].name: x.numpy()})[0])


def to_onnx(model: torch.nn.Module, example: torch.Tensor, dynamic: dict, input_name: str, key: str, info: dict):
    """The model as an ONNX proto (opset OPSET, output "logits", the dims in `dynamic` left
    free), `info` in its metadata under `key`; the exporter's chatter silenced."""
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)  # it warns about torchvision ops this model does not use
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (example,), None, dynamo=True, opset_version=OPSET,
                                        input_names=[input_name], output_names=["logits"],
                                        dynamic_shapes=(dynamic,), verbose=False)
    finally:
        onnx_log.setLevel(level)
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = key, json.dumps(info, default=str)
    proto.producer_name = "digitrec"
    return proto


def _onnx_info(path: Path) -> dict | None:
    """The digitrec metadata of an ONNX file, or None if it is not a readable digitrec export."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
        props = {p.key: p.value for p in proto.metadata_props}
        return json.loads(props[META_KEY])
    except Exception:  # noqa: BLE001  damaged, foreign or half-written: export again
        return None


def cached_onnx(checkpoint: Path | str) -> Path:
    """The ONNX export of `checkpoint`: reused if it is up to date, else written next to the
    checkpoint (or, where that folder is read-only, into the cache folder)."""
    require("onnx", "exporting a checkpoint for the onnx backend")
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(f"checkpoint {checkpoint} does not exist; train one with `digitrec train` "
                              "or pass the path of an existing .pt or .onnx file")
    sha = sha256_file(checkpoint)
    candidates = [checkpoint.with_suffix(".onnx"), default_data_dir() / "onnx" / f"{sha[:16]}.onnx"]
    for path in candidates:
        info = _onnx_info(path) if path.is_file() else None
        if info and info.get("source_sha256") == sha:
            return path
    for path in candidates:
        try:
            return export_onnx(checkpoint, path)
        except PermissionError:
            continue
    raise CheckpointError(f"cannot write the ONNX export of {checkpoint}: neither "
                          f"{candidates[0].parent} nor {candidates[1].parent} is writable")
