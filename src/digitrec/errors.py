"""Every error digitrec reports to a person, and the one check for optional dependencies.

Nothing here imports PyTorch (or the CLI), so the CLI can catch these without loading torch:
`digitrec predict` answers without it. `cli.main` prints a `DigitrecError` as one line and
exits with code 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from importlib.util import find_spec


class DigitrecError(Exception):
    """Something the user can fix; printed as one message, without a traceback."""


class UserError(DigitrecError):
    """A bad option or argument; the message says which and what would work."""


class DataError(DigitrecError):
    """A problem with the data that the user can fix; the message says how."""


class CheckpointError(DigitrecError):
    """A model file that cannot be used; the message names the file, why, and what to do."""


class UnknownDataset(UserError):
    """A dataset name that is neither registered nor a folder."""


class MissingExtra(DigitrecError, ImportError):
    """An optional dependency is not installed; the message names the `pip install` that fixes it."""


class PreprocessError(DigitrecError):
    """An input that cannot be turned into a model input; `kind` says which way it failed:
    empty, too_large (bytes), too_many_pixels (or decoded bytes), unsupported (not an image we
    decode), damaged, busy (the process's decoding budget stayed full: try again), too_much_ink
    (more than a reading takes on: TooMuchInk)."""

    def __init__(self, message: str, kind: str = "damaged"):
        super().__init__(message)
        self.kind = kind


class TooMuchInk(PreprocessError):
    """An image holding more than one reading takes on (reader.Limits: pieces of ink, lines,
    candidate characters): refused before the work, so no upload costs more than about a
    second. `what` names the measure; `found` and `allowed` are its count and limit."""

    def __init__(self, what: str, found: int, allowed: int, characters: int):
        super().__init__(f"it holds {found:,} {what}, more than one reading takes on (at most {allowed:,} with "
                         f"max_characters {characters:,}); crop it to the number to read, or raise the limit "
                         f"(digitrec read --max-characters N, digitrec serve --max-characters N)",
                         kind="too_much_ink")
        self.what, self.found, self.allowed = what, found, allowed


# The optional extras of pyproject.toml: what each installs, by import name.
EXTRAS = {
    "serve": ("fastapi", "uvicorn", "multipart", "fastapi_offline"),
    "onnx": ("onnx", "onnxscript", "onnxruntime"),
    "onnxruntime": ("onnxruntime",),  # running an .onnx file needs only this part of the onnx extra
    "heif": ("pillow_heif",),
}


def missing(extra: str) -> list[str]:
    """The modules of `extra` that are not installed."""
    return [m for m in EXTRAS[extra] if find_spec(m) is None]


def require(extra: str, what: str) -> None:
    """Raise MissingExtra, naming `what` needs it and the pip command, unless `extra` is installed."""
    gone = missing(extra)
    if gone:
        package = "onnx" if extra == "onnxruntime" else extra
        raise MissingExtra(f"{what} needs {', '.join(gone)}: pip install 'digitrec[{package}]'")
