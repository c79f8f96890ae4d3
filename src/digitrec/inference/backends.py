"""The two ways to run a model for answers, behind one call: PyTorch (a .pt checkpoint) and
ONNX Runtime (an .onnx export; a checkpoint is exported once and the export reused). Both take
float32 (B, 1, 28, 28) normalised numpy arrays and return (B, classes) numpy logits, and both
carry the model's card. Only the torch backend imports torch."""

from __future__ import annotations

from contextlib import ExitStack
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, UserError, missing

BACKENDS = ("auto", "torch", "onnx")


def packaged_checkpoint():
    return resources.files("digitrec") / "pretrained" / "mnist.pt"


def packaged_onnx():
    """The ONNX export of packaged_checkpoint() (`digitrec export`; tests keep the two in step)."""
    return resources.files("digitrec") / "pretrained" / "mnist.onnx"


def resolve_backend(backend: str, checkpoint: Path | str | None) -> str:
    """`auto` -> onnx where ONNX Runtime is installed and the model is an ONNX file (the packaged
    model has one), else torch. `torch` and `onnx` are taken as asked."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}: use {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    is_onnx = packaged_onnx().is_file() if checkpoint is None else Path(checkpoint).suffix.lower() == ".onnx"
    return "onnx" if is_onnx and not missing("onnxruntime") else "torch"


class TorchBackend:
    """A checkpoint's model in PyTorch, prepared for answering (models.for_inference)."""

    name = "torch"

    def __init__(self, path: Path, device: str = "cpu"):
        from ..checkpoint import load_checkpoint
        from ..models import for_inference
        from ..util import resolve_device

        if path.suffix.lower() == ".onnx":
            fix = ("use --backend onnx or auto" if not missing("onnxruntime") else
                   "running it needs ONNX Runtime: pip install 'digitrec[onnx]'")
            raise CheckpointError(f"{path} is an ONNX model, which PyTorch cannot run; {fix}")
        ckpt = load_checkpoint(path)
        self.path, self.meta, self.card, self.model = path, ckpt.meta, ckpt.card, ckpt.model
        self.device = resolve_device(device)
        self._net = for_inference(ckpt.build()).to(self.device)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        if len(x) == 0:
            return np.zeros((0, self.card.num_classes), np.float32)
        with torch.no_grad():
            return self._net(torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)).float().cpu().numpy()


class OnnxBackend:
    """An ONNX export in ONNX Runtime; a checkpoint given instead is exported first (once: the
    export is cached next to it, see export.cached_onnx), which needs PyTorch."""

    name = "onnx"

    def __init__(self, path: Path, threads: int = 0):
        from .onnxrun import OnnxRunner

        if path.suffix.lower() != ".onnx":
            from ..export import cached_onnx

            runner = OnnxRunner(cached_onnx(path), threads)
        else:
            runner = OnnxRunner(path, threads)
        self.path, self.meta, self.card, self.model = path, runner.meta, runner.card, runner.model
        self.device = "cpu"
        self._runner = runner

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._runner(x)


def open_model(checkpoint: Path | str | None = None, backend: str = "auto", device: str = "cpu",
               threads: int = 0) -> "TorchBackend | OnnxBackend":
    """A model ready to run: `checkpoint` None is the pretrained model shipped with digitrec."""
    backend = resolve_backend(backend, checkpoint)
    with ExitStack() as stack:
        if checkpoint is None:
            ref = packaged_onnx() if backend == "onnx" and packaged_onnx().is_file() else packaged_checkpoint()
            if not ref.is_file():
                raise CheckpointError("no pretrained model shipped with this copy of digitrec; pass "
                                      "--checkpoint PATH (train one with `digitrec train`)")
            checkpoint = stack.enter_context(resources.as_file(ref))
        path = Path(checkpoint)
        return OnnxBackend(path, threads) if backend == "onnx" else TorchBackend(path, device)

