"""Running a digitrec ONNX export with ONNX Runtime: numpy in, numpy out, no PyTorch.

This is the path `digitrec predict` takes by default, so that one answer does not wait for
`import torch` (about a second); keep this module's imports to numpy and onnxruntime.
The file format is described in export.py, which writes it.
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from .errors import CheckpointError, MissingExtra

META_KEY = "digitrec"  # the metadata_props entry holding the checkpoint's metadata, as JSON


def have_onnxruntime() -> bool:
    return find_spec("onnxruntime") is not None


class OnnxRunner:
    """A digitrec model in an ONNX Runtime session: float32 (B, 1, 28, 28), normalised as in
    training -> (B, classes) float32 logits, both numpy arrays.

    `path` is a digitrec .onnx file, or a checkpoint, whose export is made or reused (that
    step needs PyTorch; running an .onnx file does not). `.meta` is the checkpoint's
    metadata (classes, normalisation, calibration, ...), `.model` its model name and arguments.
    `threads` is ONNX Runtime's intra-op thread count; 0 leaves its default.
    """

    def __init__(self, path: Path | str, threads: int = 0):
        if not have_onnxruntime():
            raise MissingExtra("the onnx backend needs onnxruntime: pip install 'digitrec[onnx]'")
        import onnxruntime as ort

        path = Path(path)
        if path.suffix.lower() != ".onnx":
            from .export import cached_onnx

            path = cached_onnx(path)
        if not path.is_file():
            raise CheckpointError(f"ONNX model {path} does not exist; make one with `digitrec export CHECKPOINT`")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001  ORT raises its own types for damaged files
            raise CheckpointError(f"{path} is not a readable ONNX model: {str(e).splitlines()[0][:200]}") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
        if raw is None:
            raise CheckpointError(f"{path} is an ONNX model, but not one exported by digitrec: it carries no "
                                  "class names or normalisation. Export with `digitrec export CHECKPOINT`")
        info = json.loads(raw)
        self.path, self.meta, self.model = path, info["meta"], info["model"]
        self.source_sha256 = info.get("source_sha256")  # of the checkpoint it was exported from
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)  # (B, 1, 28, 28)
        if len(x) == 0:
            return np.zeros((0, len(self.meta["dataset"]["classes"])), np.float32)
        return self.session.run(None, {self.input: x})[0]  # (B, C)
