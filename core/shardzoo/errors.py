"""The errors a user can cause, one family. The CLI prints any ShardzooError as one line (what, where,
the fix) and exits 2; everything else is a bug and keeps its traceback.

Each subclass also derives from the builtin error it replaces, so callers that caught ValueError or
RuntimeError before keep working.
"""

from __future__ import annotations


class ShardzooError(Exception):
    """A problem the user can fix: the message names the key, file or row and how to fix it."""

    kind = "error"
    """The word the CLI puts in front of the message ("config error: ...")."""


class ConfigError(ShardzooError, ValueError):
    """A config file, override or command-line argument that cannot run."""

    kind = "config error"


class DataError(ShardzooError, ValueError):
    """A dataset row or file that cannot be read: names the file and the row."""

    kind = "data error"


class CheckpointError(ShardzooError, RuntimeError):
    """A checkpoint or model folder that cannot be read or written: names the checkpoint and the file."""

    kind = "checkpoint error"


class TrainingDiverged(ShardzooError, RuntimeError):
    """The loss or gradient norm became NaN or infinite (lower the lr, check the data, resume)."""

    kind = "training diverged"
