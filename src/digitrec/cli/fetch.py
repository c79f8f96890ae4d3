"""`digitrec fetch`: download and verify a dataset's files."""

from __future__ import annotations

from pathlib import Path

from .options import data_args


def add_arguments(p) -> None:
    data_args(p)
    p.add_argument("--force", action="store_true", help="delete the cached files and fetch them again")
    p.add_argument("--from", dest="source", type=Path, default=None, metavar="FOLDER",
                   help="take the files from FOLDER first: uncompressed, .gz, or the dataset's archive "
                        "(default: download them from the dataset's mirrors)")


def run(args) -> int:
    from ..data.fetch import dataset_dir, default_data_dir, fetch
    from ..data.load import load

    if args.force or args.source:
        fetch(args.dataset, args.data_dir, force=args.force, source=args.source)
    ds = load(args.dataset, args.data_dir)
    folder = dataset_dir(ds.spec, args.data_dir or default_data_dir())
    print(f"{ds.spec.name}: {len(ds.train_x):,} training and {len(ds.test_x):,} test images, "
          f"checked, in {folder}")
    return 0
