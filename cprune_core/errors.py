"""The exceptions CPrune raises on purpose, in one hierarchy (as networkx/exception.py).

Every one of them is a ``CPruneError``: a problem of the input or of the machine, with a
message that says what failed and what to do. A run that meets one ends "failed" with that
message; the CLI prints it on one line and exits with the code its class names. Any other
exception is a bug in CPrune and is reported as one (with its traceback).

All of them pickle with their message (they cross DataLoader worker and Ray task processes).
"""
from __future__ import annotations

import unicodedata

__all__ = [
    "CPruneError", "ConfigError", "DatasetError", "UnreadableImageError", "PathNotAllowedError", "CheckpointError",
    "WeightsFileError", "WeightsUnavailableError", "NonFiniteWeightsError", "StoreError", "ClusterError", "StopRequested", "exit_code_for", "error_from", "one_line",
]


class CPruneError(Exception):
    """Base class: an expected problem, explained in the message."""

    exit_code = 3  # the CLI's exit status for this kind of problem (see cli.EXIT_CODES)


class ConfigError(CPruneError, ValueError):
    """An impossible setting: a value out of its range, an unknown name, a wrong combination."""

    exit_code = 2


class DatasetError(CPruneError):
    """A dataset cannot be located, downloaded, indexed or read."""


class UnreadableImageError(DatasetError):
    """One image file cannot be decoded (corrupt, truncated, empty or unsafe to decode)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason

    def __reduce__(self):
        return type(self), (self.path, self.reason)


class PathNotAllowedError(DatasetError):
    """A visitor asked for a folder outside the configured data roots (the message names no path)."""


class CheckpointError(CPruneError):
    """A checkpoint or saved model is unreadable, too large, tampered with or for another architecture."""


class WeightsFileError(CheckpointError):
    """A weights file (.safetensors, .onnx, a PyTorch state dict) is not what its extension says, is damaged,
    holds tensors that cannot be read safely (sparse, meta, expanded views) or exceeds a stated budget."""


class WeightsUnavailableError(CPruneError):
    """Pretrained weights could not be loaded (offline, or the cache file is missing)."""


class NonFiniteWeightsError(CPruneError, ValueError):
    """A layer's weights contain NaN or Inf, so similarities are undefined."""


class StoreError(CPruneError):
    """The run store cannot be opened or written (corrupt, truncated, unwritable, not a file)."""


class ClusterError(CPruneError):
    """The Ray cluster cannot be reached, or cannot hold one run (too few CPUs or GPUs)."""


class StopRequested(CPruneError):
    """Work was stopped on request (its stop Event was set). The one way to stop: below the engine every
    long step raises it (``progress.check_stop``; indexing a dataset too); ``Finetuner`` ends the run
    "stopped", not "failed", and the app's worker ends a task the same way. The command line's exit status
    130 is Ctrl-C's."""

    exit_code = 130


def _kind(name: str | None) -> type[CPruneError] | None:
    """The CPruneError class called ``name`` (a RunSummary.error), or None."""
    pending = [CPruneError]
    while pending:
        cls = pending.pop()
        if cls.__name__ == name:
            return cls
        pending.extend(cls.__subclasses__())
    return None


def exit_code_for(kind: str | None) -> int:
    """The CLI's exit status for a run that failed with error ``kind`` (a class name, as RunSummary.error):
    that class's code; 1 for running out of memory or an unknown kind."""
    cls = _kind(kind)
    return cls.exit_code if cls is not None else 1


def error_from(kind: str | None, message: str) -> CPruneError:
    """The error a failed run reported (its RunSummary's ``error`` and ``message``), to raise again
    where the run was a step of something larger; a plain CPruneError for out of memory."""
    cls = _kind(kind)
    if cls is None or cls is UnreadableImageError:  # needs more than a message
        return CPruneError(message)
    return cls(message)


def one_line(text: object) -> str:
    """``text`` on one line: control characters (a newline in a folder or class name a message quotes, a
    carriage return, an escape sequence) written as their escapes, so an error stays one line and prints
    nothing to a terminal but itself."""
    return "".join(repr(char)[1:-1] if unicodedata.category(char) == "Cc" else char for char in str(text))
