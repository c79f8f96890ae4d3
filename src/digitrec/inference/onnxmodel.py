"""`OnnxModel`: a digitrec ONNX export run by ONNX Runtime behind the torch model's call, for code
written for an nn.Module (evaluation's batched inference, benchmarks). onnxrun.OnnxRunner does the
running, with numpy arrays; a checkpoint given instead is exported once (export.cached_onnx)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..export import cached_onnx
from .onnxrun import OnnxRunner


class OnnxModel:
    """A digitrec model run by ONNX Runtime, called like the torch model:
    float32 (B, 1, 28, 28), normalised -> (B, classes) logits, as torch tensors.

    `path` is a digitrec .onnx file, or a checkpoint, whose export is made or reused.
    `.meta` is the checkpoint's metadata (classes, normalisation, calibration, ...).
    """

    training = False  # with eval()/train(), so code written for nn.Module can run it

    def __init__(self, path: Path | str, threads: int = 0):
        path = Path(path)
        self.runner = OnnxRunner(path if path.suffix.lower() == ".onnx" else cached_onnx(path), threads)
        self.path, self.meta, self.model, self.card = self.runner.path, self.runner.meta, self.runner.model, self.runner.card

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.runner(x.detach().to("cpu", torch.float32).numpy()))  # (B, C)

    def eval(self) -> "OnnxModel":
        return self

    def train(self, mode: bool = True) -> "OnnxModel":
        if mode:
            raise ValueError("an ONNX model runs inference only")
        return self
