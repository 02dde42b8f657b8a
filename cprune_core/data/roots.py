"""Confining a path to folders: the ``data_roots`` of an ``access.Access`` (the app's visitors read
datasets only inside them; the command line, with none, reads any folder).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import PathNotAllowedError
from ..paths import user_path

__all__ = ["confine", "is_inside", "NOT_ALLOWED"]

# The same words for every refused path, whether it exists or not: they tell nothing about it.
NOT_ALLOWED = ("That folder is not one of this server's data folders. Choose a folder inside them "
               "(whoever runs the server can add folders with CPRUNE_DATA_ROOTS).")


def is_inside(path: str | os.PathLike, roots: Sequence[Path]) -> bool:
    """True when the real path (links followed) of ``path`` is one of ``roots`` or lies below one."""
    try:
        real = Path(os.path.realpath(path))
    except (OSError, ValueError):  # a link in /proc that may not be followed; a NUL byte in the path
        return False
    return any(real == root or root in real.parents for root in roots)


def confine(path: str | os.PathLike, roots: Sequence[Path]) -> Path:
    """``path`` with links resolved when it lies inside ``roots``; else PathNotAllowedError(NOT_ALLOWED).

    A relative path is taken from the current directory. Links are followed before the check,
    so a link inside a root that leads outside is refused too.
    """
    if not is_inside(user_path(path), roots):
        raise PathNotAllowedError(NOT_ALLOWED)
    return Path(os.path.realpath(user_path(path)))
