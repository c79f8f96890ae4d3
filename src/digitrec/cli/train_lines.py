"""`digitrec train-lines`: train the line model, which reads a whole line of digits at once
(touching ones too) for `digitrec read`."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path


def add_arguments(p) -> None:
    from ..training.config import LineConfig

    p.add_argument("--out", type=Path, default=Path("runs/lines"),
                   help="folder for lines.pt, lines.onnx (what `digitrec read --lines` takes) and lines.json")
    defaults = LineConfig()
    for f in fields(LineConfig):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(getattr(defaults, f.name)),
                       default=getattr(defaults, f.name), help=f"(default: {getattr(defaults, f.name)})")


def run(args) -> int:
    from ..errors import UserError
    from ..training.config import LineConfig
    from ..training.lines import train_lines

    cfg = LineConfig(**{f.name: getattr(args, f.name) for f in fields(LineConfig)})
    if min(cfg.steps, cfg.batch, cfg.width // 2, cfg.max_length, cfg.val_lines) < 1 or cfg.lr <= 0:
        raise UserError("--steps, --batch, --max-length and --val-lines must be at least 1, --width at least 2, --lr > 0")
    metrics = train_lines(args.out, cfg)
    print(f"wrote {args.out / 'lines.onnx'}: {100 * metrics['val_line_accuracy']:.2f}% of "
          f"{metrics['val_lines']} validation lines read whole; use it with `digitrec read --lines {args.out / 'lines.onnx'}`")
    return 0
