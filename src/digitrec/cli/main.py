"""The `digitrec` command: one module per subcommand (its options and what it runs); this one
assembles them and turns a user's mistake into one line and exit code 2. Imports stay lazy,
so that `digitrec --help` and `digitrec predict` start fast and never load PyTorch early."""

from __future__ import annotations

import argparse
import sys

from . import evaluate, export, fetch, finetune, importer, predict, read, serve, train, train_lines
from .options import Formatter, add_command

COMMANDS = (
    ("fetch", "download and verify the dataset files", fetch),
    ("train", "train a model into a run folder", train),
    ("train-lines", "train the line model that reads whole lines of digits (touching ones too)", train_lines),
    ("evaluate", "reload checkpoints, score them on the test set, write the report", evaluate),
    ("predict", "recognise the character in image files or folders", predict),
    ("read", "read every character in images: whole numbers, codes, several lines", read),
    ("serve", "HTTP API and drawing canvas on http://127.0.0.1:8000", serve),
    ("export", "export a checkpoint for other runtimes", export),
    ("import", "add labelled images (class folders or a CSV) to a corrections folder", importer),
    ("finetune", "adapt a model to a folder of corrections without forgetting its dataset", finetune),
)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="digitrec", description="Handwritten digit recognition: fetch MNIST, train, evaluate, predict, serve.",
        formatter_class=Formatter)
    parser.add_argument("--version", action="version", version=f"digitrec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help, module in COMMANDS:
        add_command(sub, name, help, module)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..errors import DigitrecError

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except DigitrecError as e:  # the user can fix it: one line. Anything else is a bug: its traceback.
        print(f"digitrec {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
