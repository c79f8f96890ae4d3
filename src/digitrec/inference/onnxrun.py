"""Running a digitrec ONNX export with ONNX Runtime: numpy in, numpy out, no PyTorch.

This is the path `digitrec predict` takes by default, so that one answer does not wait for
`import torch` (about a second); keep this module's imports to numpy and onnxruntime.
The file format is described in export.py, which writes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..card import ModelCard
from ..errors import CheckpointError, require

META_KEY = "digitrec"  # the metadata_props entry holding the checkpoint's metadata, as JSON


def session(path: Path, threads: int, what: str):
    """An ONNX Runtime session on the CPU for `path` (errors only logged; `threads` intra-op
    threads, 0 its default), or a CheckpointError saying the file is not a readable model."""
    require("onnxruntime", what)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001  ORT raises its own types for damaged files
        raise CheckpointError(f"{path} is not a readable ONNX model: {str(e).splitlines()[0][:200]}") from None


class OnnxRunner:
    """A digitrec .onnx file in an ONNX Runtime session: float32 (B, 1, 28, 28), normalised as
    its card says -> (B, classes) float32 logits, both numpy arrays.

    `.card` is the model card (classes, normalisation, calibration), `.meta` the checkpoint's
    whole metadata, `.model` its model name and arguments. `threads` is ONNX Runtime's
    intra-op thread count; 0 leaves its default.
    """

    def __init__(self, path: Path | str, threads: int = 0):
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"ONNX model {path} does not exist; make one with `digitrec export CHECKPOINT`")
        self.session = session(path, threads, "the onnx backend")
        raw = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
        if raw is None:
            raise CheckpointError(f"{path} is an ONNX model, but not one exported by digitrec: it carries no "
                                  "class names or normalisation. Export with `digitrec export CHECKPOINT`")
        try:
            info = json.loads(raw)
        except ValueError:
            raise CheckpointError(f"{path} has damaged digitrec metadata (not JSON); export it again") from None
        if not isinstance(info, dict) or not isinstance(info.get("meta"), dict):
            raise CheckpointError(f"{path} has damaged digitrec metadata (no 'meta' object); export it again")
        self.path, self.meta, self.model = path, info["meta"], info.get("model") or {}
        self.card = ModelCard.from_meta(self.meta, str(path))
        self.source_sha256 = info.get("source_sha256")  # of the checkpoint it was exported from
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise CheckpointError(f"{path} has {len(inputs)} inputs and {len(outputs)} outputs; "
                                  "a digitrec model has one image input and one logits output")
        self.input = inputs[0].name
        classes = outputs[0].shape[-1] if outputs[0].shape else None
        if isinstance(classes, int):
            self.card.check_outputs(classes, str(path))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)  # (B, 1, 28, 28)
        if len(x) == 0:
            return np.zeros((0, self.card.num_classes), np.float32)
        return self.session.run(None, {self.input: x})[0]  # (B, C)
