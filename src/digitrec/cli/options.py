"""Pieces of argument parsing that several commands share. Torch-free."""

from __future__ import annotations

import argparse
from pathlib import Path


def field_comments(cls) -> dict[str, str]:
    """A dataclass's fields' end-of-line comments, which are their help texts."""
    import inspect
    import re

    return dict(re.findall(r"^\s+(\w+): .*?#\s*(.*)$", inspect.getsource(cls), re.M))


def config_options(p: argparse.ArgumentParser, cls, unset: bool = False, skip: tuple[str, ...] = ()) -> None:
    """One option per field of the config dataclass `cls` (but those in `skip`): --the-name, its
    help the field's end-of-line comment (a field without one is a bug), its default shown, a
    `Literal` field's values as `choices`, a bool as --name/--no-name. With `unset`, every
    option's default is None, so that a recipe fills in the options not given (the field's own
    default is still what the help shows)."""
    import dataclasses
    import typing

    comments, hints, defaults = field_comments(cls), typing.get_type_hints(cls), cls()
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if not comments.get(f.name):
            raise TypeError(f"{cls.__name__}.{f.name} has no comment to serve as its --help")
        default, hint, text = getattr(defaults, f.name), hints[f.name], comments[f.name]
        if "default" not in text and default is not None:
            text = f"{text} (default: {default})"
        flag, given = "--" + f.name.replace("_", "-"), None if unset else default
        if hint is bool:
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=given, help=text)
            continue
        values = typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else None
        kind = {int: int, float: float}.get(hint, str)  # `epochs: float = 6` takes 0.5
        p.add_argument(flag, dest=f.name, type=kind, default=given, choices=values, help=text)


def config_values(args: argparse.Namespace, cls, skip: tuple[str, ...] = ()) -> dict:
    """The values of the options `config_options` declared for `cls`, by field name."""
    import dataclasses

    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.name not in skip}


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, unless it has none worth showing (None, a
    flag that is off) or the help already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS) or not action.option_strings:
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._VersionAction,
                               argparse._HelpAction)):
            return text
        return f"{text} (default: %(default)s)"


def add_command(sub, name: str, help: str, module) -> argparse.ArgumentParser:
    """A subcommand whose options `module.add_arguments` declares and `module.run` carries out."""
    p = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", formatter_class=Formatter)
    module.add_arguments(p)
    p.set_defaults(run=module.run)
    return p


def data_args(p: argparse.ArgumentParser, dataset_default: str | None = "mnist") -> None:
    from ..data.registry import REGISTRY

    p.add_argument("--dataset", default=dataset_default,
                   help=f"{', '.join(REGISTRY)}, or a folder of MNIST-format IDX files"
                   + f" (default: {dataset_default or 'the one the checkpoint was trained on'})")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="data cache folder (default: $DIGITREC_DATA or ~/.cache/digitrec)")


def model_args(p: argparse.ArgumentParser) -> None:
    from ..inference.backends import BACKENDS

    p.add_argument("--checkpoint", type=Path, default=None,
                   help="model to use, a .pt checkpoint or an .onnx export "
                        "(default: the pretrained model shipped with digitrec)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="run the model with PyTorch or with ONNX Runtime; auto: ONNX Runtime where it is "
                        "installed and the model is an .onnx file, as the pretrained one is, else PyTorch")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="cpu",
                   help="where the torch backend runs")


def image_args(p: argparse.ArgumentParser, top_k: tuple[int, str], csv: str, explain: str) -> None:
    """The options of a command that answers images (predict, read): the files, the model, how
    many guesses, the output format, and the explanation pictures."""
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="image files or folders (searched recursively); - reads one image from standard input")
    model_args(p)
    p.add_argument("--top-k", type=int, default=top_k[0], help=top_k[1])
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object per image, a line each")
    fmt.add_argument("--csv", action="store_true", help=csv)
    p.add_argument("--explain", action="store_true", help=f"write <name><ext>.explain.png beside each image: {explain}")
