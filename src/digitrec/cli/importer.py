"""`digitrec import`: labelled images (class folders or a CSV) into a corrections folder."""

from __future__ import annotations

import sys
from pathlib import Path

from .options import model_args


def add_arguments(p) -> None:
    p.add_argument("source", type=Path, metavar="SOURCE",
                   help="a folder of class folders (`7/` or `digit_7/` holding images of 7s), or a CSV of path,label")
    p.add_argument("--into", type=Path, required=True, metavar="DIR", help="the corrections folder to add them to")
    model_args(p)


def run(args) -> int:
    from ..corrections import Corrections, import_labelled
    from ..inference.backends import open_model

    card = open_model(args.checkpoint, args.backend, args.device).card  # the classes the labels must name
    folder = Corrections(args.into, card.classes, card.mean, card.std)
    added, skipped = import_labelled(folder, args.source)
    for path, why in skipped:
        print(f"{path}: skipped: {why}", file=sys.stderr)
    print(f"added {added} samples to {args.into} ({len(folder)} in all); {len(skipped)} skipped")
    return 1 if skipped else 0
