"""The folders a visitor of the app may read datasets from, and confining a path to them.

The app passes ``data_roots()`` down to ``load_dataset``; the command line, run by the machine's
own user, passes nothing and may read any folder. ``CPRUNE_DATA_ROOTS`` (folders separated by
the OS path separator, ':' on Linux) replaces the default: the project's assets, ../shared/data
when present, and the dataset cache. ``CPRUNE_DOWNLOADS`` says whether the server downloads for a
visitor at all (``visitor_downloads``); the command line always may.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import PathNotAllowedError
from ..paths import ASSETS_DIR, SHARED_DATA, datasets_dir, user_path
from ..settings import setting

__all__ = ["data_roots", "confine", "is_inside", "visitor_downloads", "NOT_ALLOWED", "NO_VISITOR_DOWNLOADS"]

# The same words for every refused path, whether it exists or not: they tell nothing about it.
NOT_ALLOWED = ("That folder is not one of this server's data folders. Choose a folder inside them "
               "(whoever runs the server can add folders with CPRUNE_DATA_ROOTS).")


# Why the app offers less, or refuses, when CPRUNE_DOWNLOADS is off.
NO_VISITOR_DOWNLOADS = "This server downloads nothing on a visitor's behalf"


def data_roots() -> list[Path]:
    """The configured data folders, resolved (links followed); read at every call. ConfigError when
    CPRUNE_DATA_ROOTS is set to something else than absolute paths (settings.setting)."""
    roots = list(setting("CPRUNE_DATA_ROOTS")) or [ASSETS_DIR, datasets_dir()] + (
        [SHARED_DATA] if SHARED_DATA.is_dir() else [])
    return [Path(os.path.realpath(root)) for root in roots]


def visitor_downloads() -> bool:
    """Whether the server downloads weights and datasets a visitor asks for (CPRUNE_DOWNLOADS, default on;
    `make serve` and the Docker image set it off); read at every call."""
    return setting("CPRUNE_DOWNLOADS") == "on"


def is_inside(path: str | os.PathLike, roots: list[Path]) -> bool:
    """True when the real path (links followed) of ``path`` is one of ``roots`` or lies below one."""
    try:
        real = Path(os.path.realpath(path))
    except (OSError, ValueError):  # a link in /proc that may not be followed; a NUL byte in the path
        return False
    return any(real == root or root in real.parents for root in roots)


def confine(path: str | os.PathLike, roots: list[Path]) -> Path:
    """``path`` with links resolved when it lies inside ``roots``; else PathNotAllowedError(NOT_ALLOWED).

    A relative path is taken from the current directory. Links are followed before the check,
    so a link inside a root that leads outside is refused too.
    """
    if not is_inside(user_path(path), roots):
        raise PathNotAllowedError(NOT_ALLOWED)
    return Path(os.path.realpath(user_path(path)))
