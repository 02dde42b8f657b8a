"""Where CPrune keeps things: one lazy ``cache_home()`` and the folders of the checkout.

Everything CPrune writes (the run store, saved models, downloaded datasets, cached features)
lives under ``cache_home()``: ``$CPRUNE_HOME`` when set, else ``$XDG_CACHE_HOME/cprune``, else
``~/.cache/cprune``. It is read at every call, so changing CPRUNE_HOME takes effect at once.
"""
from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from .errors import ConfigError

__all__ = ["user_path", "unknown_home", "REPO_ROOT", "ASSETS_DIR", "SAMPLE_FLOWERS", "SHARED_DATA", "SHARED_FLOWERS",
           "DOCS_DIR", "cache_home", "datasets_dir", "features_dir", "models_dir", "quick_reports_dir", "store_path",
           "writable_dir", "atomic_write"]

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS_DIR = REPO_ROOT / "assets"
SAMPLE_FLOWERS = ASSETS_DIR / "flowers-sample"
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()
SHARED_FLOWERS = SHARED_DATA / "flowers128"
DOCS_DIR = REPO_ROOT / "docs"


def user_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path, with a leading ``~`` or ``~user`` expanded: the one way every path a person gives
    (an option, an environment variable, a folder typed in the app) enters CPrune.

    Where the expansion is impossible (``~nosuchuser/data``, or ``~`` with no home directory known) the path
    is kept as written, so the caller's usual sentence follows ("not found", "not a saved model directory",
    "not one of this server's data folders") instead of Python's RuntimeError.

    Example
    -------
    >>> user_path("~nosuchuser-cprune/data")
    PosixPath('~nosuchuser-cprune/data')
    """
    path = Path(path)
    try:
        return path.expanduser()
    except RuntimeError:  # "Could not determine home directory"
        return path


def unknown_home(path: Path) -> str | None:
    """The leading ``~`` or ``~user`` of a path that ``user_path`` could not expand, else None. Where such a path
    would be created (an output folder, a run store), it is refused instead of made in the current directory."""
    first = path.parts[0] if path.parts else ""
    return first if first.startswith("~") else None


def cache_home() -> Path:
    """$CPRUNE_HOME, else $XDG_CACHE_HOME/cprune, else ~/.cache/cprune."""
    home = os.environ.get("CPRUNE_HOME")
    if home:
        return user_path(home)
    return user_path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "cprune"


def datasets_dir() -> Path:
    """Downloaded datasets."""
    return cache_home() / "datasets"


def features_dir() -> Path:
    """Frozen-prefix features kept on disk between runs."""
    return cache_home() / "features"


def models_dir() -> Path:
    """Models saved by the app's runs."""
    return cache_home() / "models"


def quick_reports_dir() -> Path:
    """Where ``--quick`` experiments write their reports by default: never docs/, whose reports come from
    the full runs and are committed."""
    return cache_home() / "quick-reports"


def store_path() -> Path:
    """The SQLite run store shared by the CLI and the app."""
    return cache_home() / "runs.sqlite"


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(temporary)`` with a temporary file name beside ``path`` (same folder and suffix, so a
    writer that goes by the suffix, as matplotlib's savefig does, writes the same format), then rename it to
    ``path``: readers see the old file or the whole new one, never half of it, even if the process is stopped
    (a second Ctrl-C) in between. The temporary file is removed when ``write`` fails. Returns ``path``."""
    path = Path(path)
    # A name unique to this process and thread; created by write() with the usual permissions.
    temporary = str(path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}"))
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def writable_dir(path: str | os.PathLike, option: str) -> Path:
    """``path`` as a folder (created when missing) that this process can write, checked by writing a
    file there; else ConfigError naming ``option``. Used before long work whose output would be lost."""
    folder = user_path(path)
    if unknown_home(folder):
        raise ConfigError(f"{option} {folder} cannot be written (no home directory is known for "
                          f"{unknown_home(folder)}): choose a folder you can write.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ConfigError(f"{option} {folder} cannot be written ({error.strerror or error}): "
                          "choose a folder you can write.") from error
    return folder
