"""The `digitrec` command: parses arguments and calls the stage modules. Imports stay lazy so
that `digitrec --help` and `digitrec predict` start fast."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import time
from pathlib import Path

from .errors import UserError  # noqa: F401  raised by the stage modules as `from .cli import UserError`


def _config_fields():
    from .config import TrainConfig

    comments = dict(re.findall(r"^\s+(\w+): .*?#\s*(.*)$", inspect.getsource(TrainConfig), re.M))
    return [(f, comments.get(f.name, "")) for f in dataclasses.fields(TrainConfig)]


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from .config import RECIPES, TrainConfig

    p.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help="a named recipe to start from; options below override it (default: seed)")
    defaults = TrainConfig()
    for f, comment in _config_fields():
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if f.name == "model_args":
            p.add_argument("--model-arg", dest="model_args", action="append", metavar="KEY=VALUE",
                           help="extra model argument, repeatable (e.g. --model-arg width=32)")
        elif isinstance(default, bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                           help=f"{comment} (default: {default})")
        else:
            kind = {int: int, float: float}.get(type(default), str)
            p.add_argument(flag, dest=f.name, type=kind, default=None,
                           help=f"{comment} (default: {default})")
    p.add_argument("--out", type=Path, help="run folder (default: runs/<model>-<date>-<time>)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue an interrupted run from RUN_DIR/last.pt")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")


def _parse_model_args(items) -> dict:
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


def cmd_fetch(args) -> int:
    from .data import fetch, load

    from .data import dataset_dir, default_data_dir

    if args.force or args.source:
        fetch(args.dataset, args.data_dir, force=args.force, source=args.source)
    ds = load(args.dataset, args.data_dir)
    folder = dataset_dir(ds.spec, args.data_dir or default_data_dir())
    print(f"{ds.spec.name}: {len(ds.train_x):,} training and {len(ds.test_x):,} test images, "
          f"checked, in {folder}")
    return 0


def _latest_link(out: Path) -> None:
    link = out.parent / "latest"
    tmp = out.parent / ".latest.tmp"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(out.name)
        tmp.replace(link)
    except OSError:
        pass  # symlinks are a convenience only


def cmd_train(args) -> int:
    from .train import TrainConfig, TrainingInterrupted, config_from, dist_info, train

    if args.resume:
        import json

        run = args.resume
        if not (run / "config.json").exists():
            raise UserError(f"{run} is not a run folder that can be resumed (it has no config.json)")
        saved = json.loads((run / "config.json").read_text())
        saved.pop("resolved_device", None)
        cfg = TrainConfig(**saved)
        out, resume = run, (run / "last.pt").exists()  # killed before its first checkpoint: start again
    else:
        overrides = {f.name: getattr(args, f.name) for f, _ in _config_fields() if f.name != "model_args"}
        overrides["model_args"] = _parse_model_args(args.model_args) if args.model_args else None
        cfg = config_from(args.recipe or "seed", **overrides)
        out = args.out or Path("runs") / f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"
        if (out / "metrics.json").exists() or (out / "last.pt").exists():
            raise UserError(f"{out} already holds a run; choose another --out, or continue it with --resume {out}")
        resume = False
    try:
        train(cfg, out, resume=resume, quiet=args.quiet)
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        return 130
    if dist_info()[0] == 0:
        _latest_link(out)
        print(f"run folder: {out}  (metrics.json, history.csv, best.pt, last.pt)")
        print(f"evaluate with: digitrec evaluate --checkpoint {out / 'best.pt'}")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate_checkpoints

    result = evaluate_checkpoints(args.checkpoint, out=args.out, data_dir=args.data_dir, device=args.device,
                                  dataset=args.dataset, tta=args.tta)
    for f in result["figures"]:
        print(f"figure: {f}")
    return 0


def cmd_predict(args) -> int:
    from .predict import predict_cli

    return predict_cli(args)


def cmd_serve(args) -> int:
    from .serve import serve_cli

    return serve_cli(args)


def cmd_export(args) -> int:
    from .export import export_cli

    return export_cli(args)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="digitrec", description="Handwritten digit recognition: fetch MNIST, train, evaluate, predict, serve.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--version", action="version", version=f"digitrec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_args(p, dataset_default: str | None = "mnist"):
        from .datasets import REGISTRY

        p.add_argument("--dataset", default=dataset_default,
                       help=f"{', '.join(REGISTRY)}, or a folder of MNIST-format IDX files"
                       + (f" (default: {dataset_default or 'the one the checkpoint was trained on'})"))
        p.add_argument("--data-dir", type=Path, default=None,
                       help="data cache folder (default: $DIGITREC_DATA or ~/.cache/digitrec)")

    p = sub.add_parser("fetch", help="download and verify the dataset files")
    data_args(p)
    p.add_argument("--force", action="store_true", help="delete the cached files and fetch them again")
    p.add_argument("--from", dest="source", type=Path, default=None, metavar="FOLDER",
                   help="take the files from FOLDER first: uncompressed, .gz, or the dataset's archive")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("train", help="train a model into a run folder")
    _add_train_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="reload checkpoints, score them on the test set, write the report")
    p.add_argument("--checkpoint", nargs="+", type=Path, required=True, metavar="PT",
                   help="one checkpoint, or several for an ensemble")
    p.add_argument("--out", type=Path, default=None, help="report folder (default: the checkpoint's run folder)")
    data_args(p, dataset_default=None)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: also score each image shifted one pixel each way, "
                        "and average (5x the compute; report in <run>/tta/)")
    p.set_defaults(func=cmd_evaluate)

    def model_args(p):
        p.add_argument("--checkpoint", type=Path, default=None,
                       help="model to use (default: the pretrained model shipped with digitrec)")
        p.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                       help="run the model with PyTorch or with ONNX Runtime; auto (the default): ONNX "
                            "Runtime where it is installed and the model is an .onnx file, as the "
                            "pretrained one is, else PyTorch")
        p.add_argument("--device", default="cpu", help="auto, cpu, cuda or mps (torch backend)")

    p = sub.add_parser("predict", help="recognise digits in image files or folders")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders (searched recursively)")
    model_args(p)
    p.add_argument("--top-k", type=int, default=1, help="how many best guesses to print")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object per line")
    fmt.add_argument("--csv", action="store_true", help="CSV with all class probabilities")
    p.add_argument("--save-preview", action="store_true",
                   help="write the 28x28 model input next to each image as <name>.preview.png")
    p.add_argument("--show", action="store_true",
                   help="print the 28x28 model input as text under each answer (text output only)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("serve", help="HTTP API and drawing canvas on http://127.0.0.1:8000")
    model_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--max-upload", type=int, default=5_000_000, help="largest accepted upload in bytes")
    p.add_argument("--max-concurrency", type=int, default=4, help="predictions computed at the same time")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", help="export a checkpoint for other runtimes")
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format")
    p.add_argument("--out", type=Path, default=None, help="output file (default: next to the checkpoint)")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Only torch-free modules here: `digitrec predict` with ONNX Runtime never imports torch.
    from .datasets import UnknownDataset
    from .errors import CheckpointError, DataError, MissingExtra

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UserError, DataError, CheckpointError, UnknownDataset, MissingExtra) as e:
        print(f"digitrec {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # invalid option values caught deep inside (device, schedule, ...)
        print(f"digitrec {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
