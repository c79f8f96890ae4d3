"""`digitrec evaluate`: reload checkpoints, score them on the test set, write the report."""

from __future__ import annotations

from pathlib import Path

from .options import data_args


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", nargs="+", type=Path, required=True, metavar="PT",
                   help="one .pt checkpoint, or several for an ensemble")
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default: the checkpoint's run folder; for the model shipped inside "
                        "digitrec, a new runs/evaluate-<name>-<date>-<time>)")
    data_args(p, dataset_default=None)
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto", help="where to run the models")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: also score each image shifted one pixel each way, "
                        "and average (5x the compute; report in <run>/tta/)")


def run(args) -> int:
    from ..evaluate import evaluate

    result = evaluate(args.checkpoint, out=args.out, data_dir=args.data_dir, device=args.device,
                      dataset=args.dataset, tta=args.tta)
    print(f"report folder: {result.out}")
    for f in result.written:
        print(f"wrote {f}")
    return 0
