"""The environment variables the core reads, each declared once with its default and its valid values.

``setting(name)`` is the one way to read one: the variable's value when set, checked, else the default.
A number is checked against its range, a word against its choices, a secret for how hard it is to guess,
a list of folders for absolute paths; a value that cannot be used is a ConfigError naming the variable and
what it must be (a secret's value is never repeated). ``Setting`` is the declaration: the app's server
declares its own variables the same way (``cprune_server.settings``) and checks them all as it starts, so
a bad value stops start-up with one sentence instead of failing later inside a visitor's run.
"""
from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .paths import user_path
from .ranges import Range, number_from_text

__all__ = ["Setting", "SETTINGS", "MIN_SECRET_CHARS", "MIN_SECRET_BITS", "MAKE_SECRET", "secret_bits", "setting",
           "check_settings"]

# A secret must be hard to guess: MIN_SECRET_CHARS or more, an estimated MIN_SECRET_BITS (``secret_bits``), at least
# MIN_SECRET_DISTINCT different characters, none making up more than a quarter of it. The estimate catches what people
# type (``aaaa...``, a word, one kind of character); it cannot tell a random string from a phrase of common words.
MIN_SECRET_CHARS = 22  # secrets.token_urlsafe(16): 128 random bits
MIN_SECRET_BITS = 128
MIN_SECRET_DISTINCT = 10
MAKE_SECRET = 'python -c "import secrets; print(secrets.token_urlsafe(24))"'  # 32 characters, 192 bits


@dataclass(frozen=True)
class Setting:
    """One environment variable: its default, valid values and meaning (for docs/serving.md and errors). A number
    has a ``range``; a word has ``choices``; a ``secret`` is a text hard to guess (the rule above; "" when
    unset: the feature it guards is off); ``folders`` are absolute paths separated by os.pathsep (a tuple of
    Paths, empty when unset)."""

    name: str
    default: float | str
    help: str
    range: Range | None = None
    choices: tuple[str, ...] = ()
    secret: bool = False
    folders: bool = False

    def read(self) -> int | float | str | tuple[Path, ...]:
        """The variable's value, or its default when unset or empty.

        Raises
        ------
        ConfigError
            When a number's value is not a number (``lots``), not written in ASCII, not finite, not whole where
            a count is asked for, or out of its range; when a word is not one of its choices; when a secret is
            easy to guess (shorter than MIN_SECRET_CHARS, under MIN_SECRET_BITS, too few different characters);
            when a list of folders names none, or a path that is not absolute (``data``, ``~nosuchuser/data``: it
            would depend on the server's current folder). The message names the variable and what it must be; it
            quotes the value, except a secret's.
        """
        text = os.environ.get(self.name, "").strip()
        if not text:
            return () if self.folders else self.default
        if self.folders:
            return _folders(self, text)
        if self.secret:
            if not _hard_to_guess(text):
                raise ConfigError(f"The environment variable {self.name} is too easy to guess ({self.help}; its value "
                                  f"is not shown): it needs at least {MIN_SECRET_CHARS} varied characters, an estimated "
                                  f"{MIN_SECRET_BITS} bits. Make one with {MAKE_SECRET}, or unset it.")
            return text
        if self.choices:
            if text.lower() not in self.choices:
                raise ConfigError(f"The environment variable {self.name} must be one of {', '.join(self.choices)} "
                                  f"({self.help}), got {text[:40]!r}. Unset it for the default, {self.default}.")
            return text.lower()
        return _number(self, text)


SETTINGS: dict[str, Setting] = {entry.name: entry for entry in (
    Setting("CPRUNE_FEATURE_CACHE_MB", 2048, "memory for cached frozen features (0: none kept)",
            Range(0, 10**9, integer=True)),
    Setting("CPRUNE_INDEX_MAX_ENTRIES", 2_000_000, "files and folders indexing a dataset may look at",
            Range(1, 10**10, integer=True)),
    Setting("CPRUNE_INDEX_MAX_SECONDS", 600, "seconds indexing a dataset may take", Range(0, 10**6, low_open=True)),
    Setting("CPRUNE_GRAPH_MEMORY_MB", 2048, "memory one layer's graph may take while it is built: its normalised "
            "weights, a block of similarities (an eighth, at most 256 MiB) and its edges (an eighth)",
            Range(64, 10**6, integer=True)),
    Setting("CPRUNE_GRAPHS_AT_ONCE", 2, "layers' graphs built at once in one process (the app's server: every "
            "visitor's together); the others wait and are told so", Range(1, 64, integer=True)),
    Setting("CPRUNE_GRAPH_CACHE_MB", 1024, "disk space for layers' graphs, layouts and layer-wise rows kept between "
            "runs and visitors, the least recently used deleted first (0: none kept)", Range(0, 10**9, integer=True)),
    Setting("CPRUNE_APP_LIMITS_PERCENT", 100, "the share of each of the app's size limits (neurons measured, "
            "validation images, heads, random kept sets, seeds) a visitor may ask for", Range(1, 100, integer=True)),
)}


def setting(name: str) -> int | float | str | tuple[Path, ...]:
    """The value of the core's environment variable ``name`` (one of SETTINGS): ``Setting.read``."""
    return SETTINGS[name].read()


def secret_bits(secret: str) -> float:
    """The estimated bits of ``secret``: its length times log2 of the alphabet its kinds of character make up (ASCII
    lower case 26, upper case 26, digits 10, any other character 33); 0 for "".

    Example
    -------
    >>> round(secret_bits("a" * 22)), round(secret_bits("ik3mgMKED09Pm5jCyd01mg"))
    (103, 131)
    """
    kinds = ((str.islower, 26), (str.isupper, 26), (str.isdigit, 10))
    alphabet = sum(size for test, size in kinds if any(c.isascii() and test(c) for c in secret))
    alphabet += 33 if any(not (c.isascii() and c.isalnum()) for c in secret) else 0
    return len(secret) * math.log2(alphabet) if alphabet else 0.0


def _hard_to_guess(secret: str) -> bool:
    return (len(secret) >= MIN_SECRET_CHARS and secret_bits(secret) >= MIN_SECRET_BITS
            and len(set(secret)) >= MIN_SECRET_DISTINCT and max(Counter(secret).values()) <= len(secret) / 4)


def _number(entry: Setting, text: str) -> int | float:
    try:
        value = number_from_text(text, entry.range.integer)
    except ValueError:
        value = math.nan
    if value not in entry.range:
        kind = "a whole number" if entry.range.integer else "a number"
        raise ConfigError(f"The environment variable {entry.name} must be {kind} in {entry.range} ({entry.help}), "
                          f"got {text[:40]!r}. Unset it for the default, {entry.default:,}.")
    return value


def _folders(entry: Setting, text: str) -> tuple[Path, ...]:
    folders = tuple(user_path(part.strip()) for part in text.split(os.pathsep) if part.strip())
    wrong = next((str(folder) for folder in folders if not folder.is_absolute()), None)
    if not folders or wrong is not None:
        raise ConfigError(f"The environment variable {entry.name} must list absolute folder paths separated by "
                          f"{os.pathsep!r} ({entry.help}), got {(wrong or text)[:80]!r}. Write each folder's full "
                          "path, or unset it for the default.")
    return folders


def check_settings(settings: Iterable[Setting] = SETTINGS.values()) -> None:
    """Read every one of ``settings`` once (the core's by default): ConfigError naming the first variable whose
    value cannot be used."""
    for entry in settings:
        entry.read()
