"""Prediction: a checkpoint behind one small class, and the `digitrec predict` command.

Every answer carries all class probabilities (temperature-scaled, as calibrated on the
validation split), the top label and a status a person can act on:
    ok      the model is at least as confident as the checkpoint's `unsure` threshold
    unsure  it is less confident: about half of the validation errors fall here
    blank   the image holds no ink; there is nothing to recognise (label is None)

Two backends run the model: PyTorch, from a checkpoint, or ONNX Runtime, from an ONNX export
(export.py). The onnx path imports no torch, so that `digitrec predict` answers quickly; this
module imports torch only where the torch backend needs it.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from contextlib import ExitStack
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import CheckpointError
from .preprocess import MAX_BYTES, MAX_PIXELS, Preprocessed, PreprocessError, preprocess

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".gif", ".bmp", ".dib", ".webp", ".tif", ".tiff"}
PREVIEW_SUFFIX = ".preview.png"
BATCH = 256  # images per forward pass in `digitrec predict`
BACKENDS = ("auto", "torch", "onnx")


def packaged_checkpoint():
    return resources.files("digitrec") / "pretrained" / "mnist.pt"


def packaged_onnx():
    """The ONNX export of packaged_checkpoint() (`digitrec export`; tests keep the two in step)."""
    return resources.files("digitrec") / "pretrained" / "mnist.onnx"


def resolve_backend(backend: str, checkpoint: Path | str | None) -> str:
    """`auto` -> onnx where ONNX Runtime is installed and the model is an ONNX file (the packaged
    model has one), else torch. `torch` and `onnx` are taken as asked."""
    from .onnxrun import have_onnxruntime

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    is_onnx = packaged_onnx().is_file() if checkpoint is None else Path(checkpoint).suffix.lower() == ".onnx"
    return "onnx" if is_onnx and have_onnxruntime() else "torch"


class Predictor:
    """A model ready to answer: `Predictor(path).predict([img28, ...]) -> [answer, ...]`.

    `checkpoint` None means the pretrained model shipped with digitrec; a path is a checkpoint
    or an ONNX export. `backend` is torch, onnx (a checkpoint is exported first, once) or auto
    (see resolve_backend; what `digitrec predict` and `serve` use). Images are (28, 28) uint8
    arrays or tensors, white ink on black, as `preprocess()` returns them. `threads` caps
    ONNX Runtime's threads per prediction (0: its default); torch's are set process-wide.
    """

    def __init__(self, checkpoint: Path | str | None = None, backend: str = "torch", device: str = "cpu",
                 threads: int = 0):
        from .util import resolve_device, say

        backend = resolve_backend(backend, checkpoint)
        with ExitStack() as stack:
            if checkpoint is None:
                ref = packaged_onnx() if backend == "onnx" and packaged_onnx().is_file() else packaged_checkpoint()
                if not ref.is_file():
                    raise CheckpointError("no pretrained model shipped with this copy of digitrec; pass "
                                          "--checkpoint PATH (train one with `digitrec train`)")
                checkpoint = stack.enter_context(resources.as_file(ref))
            self.path = Path(checkpoint)
            if backend == "onnx":
                from .onnxrun import OnnxRunner

                self.device = "cpu"
                self._model = OnnxRunner(self.path, threads)
                self.meta = self._model.meta
            else:
                from .checkpoint import build_model, load_checkpoint
                from .models import for_inference
                from .onnxrun import have_onnxruntime

                if self.path.suffix.lower() == ".onnx":
                    fix = ("use --backend onnx or auto" if have_onnxruntime() else
                           "running it needs ONNX Runtime: pip install 'digitrec[onnx]'")
                    raise CheckpointError(f"{self.path} is an ONNX model, which PyTorch cannot run; {fix}")
                ckpt = load_checkpoint(self.path)
                self.meta = ckpt["meta"]
                self.device = resolve_device(device)
                self._model = for_inference(build_model(ckpt, self.path)).to(self.device)
        self.backend = backend
        dataset = self.meta.get("dataset", {})
        self.classes: list[str] = [str(c) for c in dataset.get("classes", [])]
        if not self.classes:
            raise CheckpointError(f"{self.path} does not list its class names (meta.dataset.classes)")
        self.mean, self.std = float(dataset.get("mean", 0.0)), float(dataset.get("std", 1.0))
        calibration = self.meta.get("calibration") or {}
        self.calibrated = "temperature" in calibration and "threshold" in calibration
        self.temperature = float(calibration.get("temperature", 1.0))
        self.threshold = float(calibration.get("threshold", 0.5))
        if not self.calibrated:
            say(f"warning: {self.path} carries no calibration (is it a last.pt?); using temperature 1 "
                "and an `unsure` threshold of 0.5. The run's best.pt is calibrated.")

    def info(self) -> dict:
        return {"checkpoint": self.path.name, "model": self.meta.get("config", {}).get("model"),
                "dataset": self.meta.get("dataset", {}).get("name"), "classes": self.classes,
                "backend": self.backend, "temperature": self.temperature, "threshold": self.threshold,
                "calibrated": self.calibrated, "test_accuracy": self.meta.get("metrics", {}).get("test_accuracy")}

    def probabilities(self, images):
        """(28, 28) uint8 images -> (N, C) calibrated probabilities, one forward pass: a numpy
        array with the onnx backend, a torch tensor with the torch backend."""
        x = np.stack([np.asarray(im, dtype=np.uint8) for im in images]) if len(images) else np.zeros((0, 28, 28))
        x = ((x.astype(np.float32) / 255.0 - self.mean) / self.std)[:, None]  # (N, 1, 28, 28)
        if self.backend == "onnx":
            z = self._model(x) / self.temperature  # (N, C)
            e = np.exp(z - z.max(1, keepdims=True, initial=-np.inf))
            return e / e.sum(1, keepdims=True)
        import torch

        if len(images) == 0:
            return torch.zeros(0, len(self.classes))
        with torch.no_grad():
            logits = self._model(torch.from_numpy(x).to(self.device)).float().cpu()
        return (logits / self.temperature).softmax(1)

    def predict(self, images, top_k: int | None = None) -> list[dict]:
        """Answers for a batch of (28, 28) images: label, status, confidence, all probabilities, top-k."""
        probs = np.asarray(self.probabilities(images))  # (N, C); no copy of a CPU tensor
        k = min(top_k or len(self.classes), len(self.classes))
        out = []
        for im, p in zip(images, probs):
            idx = np.argsort(-p, kind="stable")[:k]  # best first; ties in class order
            blank = not np.asarray(im).any()
            top = [{"label": self.classes[i], "probability": float(p[i])} for i in idx]
            status = "blank" if blank else ("unsure" if top[0]["probability"] < self.threshold else "ok")
            out.append({"label": None if blank else top[0]["label"], "status": status,
                        "confidence": None if blank else top[0]["probability"],
                        "probabilities": dict(zip(self.classes, p.tolist())), "top": top})
        return out

    def predict_image(self, source, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS,
                      top_k: int | None = None) -> tuple[dict, Preprocessed]:
        """Any image -> (answer, the preprocessed input). Raises PreprocessError."""
        pre = preprocess(source, max_bytes, max_pixels)
        return self.predict([pre.image], top_k)[0], pre


# ----------------------------------------------------------------------------- the command


def find_images(paths: list[Path]) -> list[Path]:
    """Files as given, folders searched recursively for images (our own previews left out)."""
    out = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                              and not f.name.lower().endswith(PREVIEW_SUFFIX)))
        else:
            out.append(p)  # a named file is tried whatever its suffix; a missing one is reported
    return out


def preview_path(path: Path) -> Path:
    return path.with_name(path.stem + PREVIEW_SUFFIX)


def ascii_art(image: np.ndarray) -> str:
    """The 28x28 model input as text, two characters per pixel so it looks square."""
    ramp = " .:-=+*#%@"
    return "\n".join("".join(ramp[int(v) * (len(ramp) - 1) // 255] * 2 for v in row) for row in image)


def _text_line(path: Path, answer: dict) -> str:
    if answer["status"] == "blank":
        return f"{path}: blank (no ink found)"
    guesses = ", ".join(f"{t['label']} {100 * t['probability']:.1f}%" for t in answer["top"])
    return f"{path}: {answer['label']}  ({guesses})" + ("  [unsure]" if answer["status"] == "unsure" else "")


def predict_cli(args) -> int:
    """`digitrec predict`: exit 0 when every file was read, 1 when any could not be, 2 on usage errors."""
    from .cli import UserError

    if args.top_k < 1:
        raise UserError(f"--top-k must be at least 1, not {args.top_k}")
    files = find_images(args.paths)
    if not files:
        raise UserError("no image files found in " + ", ".join(str(p) for p in args.paths)
                        + f" (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    predictor = Predictor(args.checkpoint, backend=args.backend, device=args.device)
    k = min(args.top_k, len(predictor.classes))
    fmt = "json" if args.json else "csv" if args.csv else "text"
    show = getattr(args, "show", False)
    out = sys.stdout
    writer = None
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(["path", "status", "label", "confidence", *predictor.classes, "error"])
    counts = {"ok": 0, "unsure": 0, "blank": 0, "failed": 0}

    def report_error(path: Path, message: str) -> None:
        counts["failed"] += 1
        if fmt == "json":
            print(json.dumps({"path": str(path), "status": "error", "error": message}), file=out)
        elif fmt == "csv":
            writer.writerow([str(path), "error", "", "", *[""] * len(predictor.classes), message])
        else:
            print(f"{path}: error: {message}", file=sys.stderr)

    def report(path: Path, pre: Preprocessed, answer: dict) -> None:
        counts[answer["status"]] += 1
        preview_error = None
        if args.save_preview:
            try:
                preview_path(path).write_bytes(pre.png())
            except OSError as e:
                preview_error = f"could not write {preview_path(path)}: {e.strerror or e}"
                counts["failed"] += 1
        if fmt == "json":
            extra = {"preview": str(preview_path(path))} if args.save_preview and not preview_error else {}
            print(json.dumps({"path": str(path), **answer, **extra,
                              **({"error": preview_error} if preview_error else {})}), file=out)
        elif fmt == "csv":
            conf = "" if answer["confidence"] is None else f"{answer['confidence']:.6f}"
            writer.writerow([str(path), answer["status"], answer["label"] or "", conf,
                             *(f"{p:.6f}" for p in answer["probabilities"].values()), preview_error or ""])
        else:
            print(_text_line(path, answer), file=out)
            if show:
                print(ascii_art(pre.image), file=out)
            if preview_error:
                print(f"{path}: error: {preview_error}", file=sys.stderr)

    try:
        for start in range(0, len(files), BATCH):
            chunk = []  # (path, Preprocessed or the error message), in the order given
            for path in files[start : start + BATCH]:
                try:
                    chunk.append((path, preprocess(path)))
                except PreprocessError as e:
                    chunk.append((path, str(e)))
            answers = iter(predictor.predict([pre.image for _, pre in chunk if isinstance(pre, Preprocessed)],
                                             top_k=k))
            for path, pre in chunk:
                if isinstance(pre, Preprocessed):
                    report(path, pre, next(answers))
                else:
                    report_error(path, pre)
            out.flush()
    except BrokenPipeError:  # `digitrec predict ... | head`: the reader has gone, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    if len(files) > 1 or counts["failed"]:
        print(f"{len(files)} image{'s' * (len(files) != 1)}: {counts['ok']} ok, {counts['unsure']} unsure, {counts['blank']} blank, "
              f"{counts['failed']} failed", file=sys.stderr)
    return 1 if counts["failed"] else 0
