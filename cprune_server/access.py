"""What a visitor of the app may do, as the core's ``Access``: the server's choice, from its environment.

A visitor reads datasets only inside the data folders (``data_roots``: ``CPRUNE_DATA_ROOTS``, or the
project's assets, ../shared/data when present, and the dataset cache), downloads weights and datasets
only when ``CPRUNE_DOWNLOADS`` is on (``downloads_allowed``; `make serve` and the Docker image set it
off), and owns their runs and records under their private id (visitors.py). Both variables are read at
every call, so a run started after the setting changed follows the new value.
"""
from __future__ import annotations

import os
from pathlib import Path

from cprune_core.access import Access
from cprune_core.paths import ASSETS_DIR, SHARED_DATA, datasets_dir

from .settings import setting

__all__ = ["data_roots", "downloads_allowed", "visitor_access"]


def data_roots() -> tuple[Path, ...]:
    """The configured data folders, resolved (links followed). ConfigError when CPRUNE_DATA_ROOTS is set to
    something else than absolute paths (settings.setting)."""
    roots = list(setting("CPRUNE_DATA_ROOTS")) or [ASSETS_DIR, datasets_dir()] + (
        [SHARED_DATA] if SHARED_DATA.is_dir() else [])
    return tuple(Path(os.path.realpath(root)) for root in roots)


def downloads_allowed() -> bool:
    """Whether the server downloads weights and datasets a visitor asks for (CPRUNE_DOWNLOADS, default on)."""
    return setting("CPRUNE_DOWNLOADS") == "on"


def visitor_access(visitor: str) -> Access:
    """The access of the visitor whose private id is ``visitor``: confined to ``data_roots()``, downloading as
    ``downloads_allowed()`` says, owning what they launch."""
    return Access(data_roots=data_roots(), downloads=downloads_allowed(), owner=visitor)
