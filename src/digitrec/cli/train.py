"""`digitrec train`: every TrainConfig field is an option, its help and default read from the
config's own comments; enum options are `choices` from its Literal annotations."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import typing
from pathlib import Path

from ..errors import UserError
from .options import field_comments

NONE_DEFAULTS = {"data_dir": "$DIGITREC_DATA or ~/.cache/digitrec"}  # what a None default means


def _config_fields():
    from ..training.config import TrainConfig

    comments = field_comments(TrainConfig)
    return [(f, comments.get(f.name, "")) for f in dataclasses.fields(TrainConfig)]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..training.config import RECIPES, TrainConfig, choices

    p.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help="a named recipe to start from; options below override it (default: seed)")
    defaults, enums, hints = TrainConfig(), choices(), typing.get_type_hints(TrainConfig)
    for f, comment in _config_fields():
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        shown = NONE_DEFAULTS.get(f.name, default)
        if f.name == "model_args":
            p.add_argument("--model-arg", dest="model_args", action="append", metavar="KEY=VALUE",
                           help="extra model argument, repeatable (e.g. --model-arg width=32)")
        elif isinstance(default, bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                           help=f"{comment} (default: {default})")
        else:
            kind = {int: int, float: float}.get(hints[f.name], str)  # the annotation: `epochs: float = 6`
            p.add_argument(flag, dest=f.name, type=kind, default=None, choices=enums.get(f.name),
                           help=f"{comment} (default: {shown})")
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
    overrides = {f.name: getattr(args, f.name) for f, _ in _config_fields() if f.name != "model_args"}
    overrides["model_args"] = parse_model_args(args.model_args) if args.model_args else None
    cfg = config_from(args.recipe or "seed", **overrides)
    out = args.out or Path("runs") / f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (out / "metrics.json").exists() or (out / "last.pt").exists():
        raise UserError(f"{out} already holds a run; choose another --out, or continue it with --resume {out}")
    return cfg, out, False


def run(args) -> int:
    cfg, out, resume = _config(args)  # every option checked before torch is imported
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
