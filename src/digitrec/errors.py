"""The errors that `digitrec` reports as one message, without a traceback.

They live here, away from the modules that raise them (which import PyTorch), so that the
CLI can catch them without importing torch: `digitrec predict` answers without it. Each is
re-exported where it is raised (`from digitrec.checkpoint import CheckpointError` works).
"""


class UserError(Exception):
    """Something the user can fix; printed as one message, without a traceback."""


class DataError(Exception):
    """A problem with the data that the user can fix; the message says how."""


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message says why and what to do."""


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the `pip install` that fixes it."""
