"""`digitrec export`: a checkpoint as an ONNX file for other runtimes."""

from __future__ import annotations

from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="a .pt checkpoint, such as a run's best.pt")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format")
    p.add_argument("--out", type=Path, default=None, help="output file (default: next to the checkpoint, .onnx)")


def run(args) -> int:
    from ..export import OPSET, TOLERANCE, export_onnx
    from ..inference.onnxrun import OnnxRunner

    out = export_onnx(args.checkpoint, args.out)
    card = OnnxRunner(out).card
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, ONNX opset {OPSET}): input 'image' float32 "
          f"(batch, 1, 28, 28), normalised (x / 255 - {card.mean}) / {card.std}; output 'logits' "
          f"(batch, {card.num_classes}); matches PyTorch within {TOLERANCE} in probability")
    return 0
