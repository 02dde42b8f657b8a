"""Downloads: what a failed one looks like, turned into one DatasetError that says what to do, and
one download at a time per cache folder."""
from __future__ import annotations

import fcntl
import os
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import DatasetError

__all__ = ["download_errors", "download_lock"]

# What torchvision's download and extraction helpers raise offline, on a broken or partial file.
DOWNLOAD_ERRORS = (OSError, RuntimeError, ValueError, EOFError, tarfile.TarError, zipfile.BadZipFile)


@contextmanager
def download_errors(what: str, advice: str) -> Iterator[None]:
    """Re-raise a failed download as DatasetError: "Downloading <what> failed (<why>). <advice>."."""
    try:
        yield
    except DOWNLOAD_ERRORS as err:
        raise DatasetError(f"Downloading {what} failed ({err}). {advice}.") from err


@contextmanager
def download_lock(cache_dir: Path) -> Iterator[None]:
    """Hold ``cache_dir`` locked (flock on the folder itself, which leaves no file behind): the runs of a
    node (Ray tasks, app workers) that need a dataset wait for the first one's download instead of
    downloading it side by side. The kernel releases the lock when its holder dies."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        folder = os.open(cache_dir, os.O_RDONLY)
    except OSError as error:
        raise DatasetError(f"The dataset cache {cache_dir} cannot be written ({error.strerror}). Set CPRUNE_HOME to a "
                           "writable folder, or pass the dataset's folder as root.") from error
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)
