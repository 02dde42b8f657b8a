"""The numeric environment variables CPrune reads, each declared once with its default and valid range.

``setting(name)`` is the one way to read one: the variable's value when set, checked against its range,
else the default; a value that is not a number in range is a ConfigError naming the variable, the value
and the range. ``check_settings()`` reads them all: the server calls it as it starts, so a bad value stops
start-up with one sentence instead of failing later inside a visitor's run.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from .errors import ConfigError
from .ranges import Range

__all__ = ["Setting", "SETTINGS", "setting", "check_settings"]


@dataclass(frozen=True)
class Setting:
    """One environment variable: its default, valid range and meaning (for the README and errors)."""

    name: str
    default: float
    range: Range
    help: str


SETTINGS: dict[str, Setting] = {entry.name: entry for entry in (
    Setting("CPRUNE_CONCURRENT_RUNS", 1, Range(1, 64, integer=True),
            "launches the app's queue runs at once (on a CPU one run already uses every core)"),
    Setting("CPRUNE_QUEUED_RUNS_PER_VISITOR", 2, Range(1, 1000, integer=True),
            "launches one visitor may have waiting or running"),
    Setting("CPRUNE_MODELS_BUDGET_MB", 5120, Range(1, 10**9, integer=True),
            "disk space for the models the app's runs save, oldest deleted first"),
    Setting("CPRUNE_UPLOAD_BUDGET_MB", 2048, Range(1, 10**9, integer=True),
            "disk space for visitors' uploaded files"),
    Setting("CPRUNE_FEATURE_CACHE_MB", 2048, Range(0, 10**9, integer=True),
            "memory for cached frozen features (0: none kept)"),
    Setting("CPRUNE_INDEX_MAX_ENTRIES", 2_000_000, Range(1, 10**10, integer=True),
            "files and folders indexing a dataset may look at"),
    Setting("CPRUNE_INDEX_MAX_SECONDS", 600, Range(0, 10**6, low_open=True),
            "seconds indexing a dataset may take"),
)}


def setting(name: str) -> int | float:
    """The value of the environment variable ``name`` (one of SETTINGS), or its default when unset or empty.

    Raises
    ------
    ConfigError
        When the value is not a number (``lots``), not written in ASCII, not finite, not whole where a count is asked for, or out of
        the variable's range; the message names the variable, the value and the range.
    """
    entry = SETTINGS[name]
    text = os.environ.get(name, "").strip()
    if not text:
        return entry.default
    try:
        if not text.isascii():  # int() would read other scripts' digits: refuse them, as the options do
            raise ValueError(text)
        value: int | float = int(text) if entry.range.integer else float(text)
    except ValueError:
        value = math.nan
    if value not in entry.range:
        kind = "a whole number" if entry.range.integer else "a number"
        raise ConfigError(f"The environment variable {name} must be {kind} in {entry.range} ({entry.help}), "
                          f"got {text[:40]!r}. Unset it for the default, {entry.default:g}.")
    return value


def check_settings() -> None:
    """Read every setting once: ConfigError naming the first variable whose value cannot be used."""
    for name in SETTINGS:
        setting(name)
