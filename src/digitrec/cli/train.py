"""`digitrec train`: every TrainConfig field is an option (options.config_options: its help and
default read from the config's own comments; enum options are `choices` from its Literal
annotations)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import UserError
from .options import config_options, config_values


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..training.config import RECIPES, TrainConfig

    p.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help="a named recipe to start from; options below override it (default: seed)")
    config_options(p, TrainConfig, unset=True, skip=("model_args",))
    p.add_argument("--model-arg", dest="model_args", action="append", metavar="KEY=VALUE",
                   help="extra model argument, repeatable (e.g. --model-arg width=32)")
    p.add_argument("--out", type=Path, help="run folder (default: runs/<model>-<date>-<time>)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue an interrupted run from RUN_DIR/last.pt (default: start a new run)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")


def parse_model_args(items) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--model-arg {item!r} should look like KEY=VALUE")
        k, v = item.split("=", 1)
        for cast in (int, float):
            try:
                v = cast(v)
                break
            except ValueError:
                pass
        out[k] = v
    return out


def _latest_link(out: Path) -> None:
    link = out.parent / "latest"
    tmp = out.parent / ".latest.tmp"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(out.name)
        tmp.replace(link)
    except OSError:
        pass  # symlinks are a convenience only


def _config(args):
    """(config, run folder, resume?) from the command line or from the run folder to resume."""
    import json

    from ..training.config import config_from, from_saved

    if args.resume:
        run = args.resume
        if not (run / "config.json").exists():
            raise UserError(f"{run} is not a run folder that can be resumed (it has no config.json)")
        try:
            saved = json.loads((run / "config.json").read_text())
        except ValueError as e:
            raise UserError(f"{run / 'config.json'} is not valid JSON ({e}); the run cannot be resumed") from None
        cfg = from_saved(saved, str(run / "config.json"))
        return cfg, run, (run / "last.pt").exists()  # killed before its first checkpoint: start again
    from ..training.config import TrainConfig

    overrides = config_values(args, TrainConfig, skip=("model_args",))
    overrides["model_args"] = parse_model_args(args.model_args) if args.model_args else None
    cfg = config_from(args.recipe or "seed", **overrides)
    out = args.out or Path("runs") / f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (out / "metrics.json").exists() or (out / "last.pt").exists():
        raise UserError(f"{out} already holds a run; choose another --out, or continue it with --resume {out}")
    return cfg, out, False


def _refuse_gpu_recipe_on_cpu(args, cfg) -> None:
    """The gpu recipe runs for hours on a CPU: without CUDA it starts only where --device says so."""
    if args.recipe != "gpu" or cfg.device != "auto":
        return
    import torch

    if not torch.cuda.is_available():
        raise UserError("--recipe gpu is made for a CUDA GPU, and this PyTorch sees none; on the CPU it takes "
                        "hours (about four times --recipe best). Run it there anyway with --device cpu, or "
                        "use --recipe best")


def run(args) -> int:
    cfg, out, resume = _config(args)  # every option checked before torch is imported
    _refuse_gpu_recipe_on_cpu(args, cfg)
    from ..training.distributed import dist_info, leave
    from ..training.loop import TrainingInterrupted, train

    try:
        train(cfg, out, resume=resume, quiet=args.quiet)
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        leave(130)
        return 130
    if dist_info()[0] == 0:
        _latest_link(out)
        print(f"run folder: {out}  (metrics.json, history.csv, best.pt, last.pt)")
        print(f"evaluate with: digitrec evaluate --checkpoint {out / 'best.pt'}")
    leave(0)
    return 0
