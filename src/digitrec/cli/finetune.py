"""`digitrec finetune`: adapt a model to a folder of corrections without forgetting its dataset."""

from __future__ import annotations

import time
from pathlib import Path

from .options import config_options, config_values


def add_arguments(p) -> None:
    from ..training.config import FinetuneConfig

    p.add_argument("--checkpoint", type=Path, default=None,
                   help="the .pt checkpoint to start from (default: the pretrained model shipped with digitrec)")
    p.add_argument("--data", type=Path, required=True, metavar="DIR",
                   help="a corrections folder (`digitrec serve --collect DIR`, `digitrec import`)")
    p.add_argument("--out", type=Path, default=None, help="where to write best.pt (default: runs/finetune-<date>-<time>)")
    p.add_argument("--keep-worse", action="store_true",
                   help="keep the result as best.pt even if it is less accurate on the model's dataset than the "
                        "checkpoint it started from (default: it is written as worse.pt and the exit code is 1)")
    config_options(p, FinetuneConfig)


def run(args) -> int:
    from ..finetune import finetune
    from ..training.config import FinetuneConfig
    from ..inference.backends import packaged_checkpoint

    cfg = FinetuneConfig(**config_values(args, FinetuneConfig)).check()
    checkpoint = args.checkpoint or packaged_checkpoint()
    out = args.out or Path("runs") / f"finetune-{time.strftime('%Y%m%d-%H%M%S')}"
    metrics = finetune(checkpoint, args.data, out, cfg, keep_worse=args.keep_worse)
    if not metrics["kept"]:
        return 1
    print(f"wrote {out / 'best.pt'} (and metrics.json, report.md); use it with --checkpoint {out / 'best.pt'}")
    return 0
