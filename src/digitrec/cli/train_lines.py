"""`digitrec train-lines`: train the line model, which reads a whole line of digits at once
(touching ones too) for `digitrec read`. Every LineConfig field is an option (options.config_options)."""

from __future__ import annotations

from pathlib import Path

from .options import config_options, config_values


def add_arguments(p) -> None:
    from ..training.config import LineConfig

    p.add_argument("--out", type=Path, default=Path("runs/lines"),
                   help="folder for lines.pt, lines.onnx (what `digitrec read --lines` takes) and lines.json")
    config_options(p, LineConfig)


def run(args) -> int:
    from ..training.config import LineConfig
    from ..training.lines import train_lines

    cfg = LineConfig(**config_values(args, LineConfig)).check()
    metrics = train_lines(args.out, cfg)
    print(f"wrote {args.out / 'lines.onnx'}: {100 * metrics['val_line_accuracy']:.2f}% of "
          f"{metrics['val_lines']} validation lines read whole; use it with `digitrec read --lines {args.out / 'lines.onnx'}`")
    return 0
