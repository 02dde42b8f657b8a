"""Where CPrune keeps things: one lazy ``cache_home()`` and the folders of the checkout.

Everything CPrune writes (the run store, saved models, downloaded datasets, cached features)
lives under ``cache_home()``: ``$CPRUNE_HOME`` when set, else ``$XDG_CACHE_HOME/cprune``, else
``~/.cache/cprune``. It is read at every call, so changing CPRUNE_HOME takes effect at once.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ConfigError

__all__ = ["REPO_ROOT", "ASSETS_DIR", "SAMPLE_FLOWERS", "SHARED_DATA", "SHARED_FLOWERS", "DOCS_DIR", "cache_home",
           "datasets_dir", "features_dir", "models_dir", "quick_reports_dir", "store_path", "writable_dir"]

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS_DIR = REPO_ROOT / "assets"
SAMPLE_FLOWERS = ASSETS_DIR / "flowers-sample"
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()
SHARED_FLOWERS = SHARED_DATA / "flowers128"
DOCS_DIR = REPO_ROOT / "docs"


def cache_home() -> Path:
    """$CPRUNE_HOME, else $XDG_CACHE_HOME/cprune, else ~/.cache/cprune."""
    home = os.environ.get("CPRUNE_HOME")
    if home:
        return Path(home).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "cprune"


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


def writable_dir(path: str | os.PathLike, option: str) -> Path:
    """``path`` as a folder (created when missing) that this process can write, checked by writing a
    file there; else ConfigError naming ``option``. Used before long work whose output would be lost."""
    folder = Path(path).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ConfigError(f"{option} {folder} cannot be written ({error.strerror or error}): "
                          "choose a folder you can write.") from error
    return folder
