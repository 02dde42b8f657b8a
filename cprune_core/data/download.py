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

__all__ = ["download_errors", "download_lock", "LOCK_FILE"]

LOCK_FILE = ".download.lock"  # hidden: indexing skips it

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
def download_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s download lock (flock on its ``.download.lock`` file): the runs of a node (Ray tasks,
    app workers) that need a dataset wait for the first one's download instead of downloading it side by
    side. The kernel releases the lock when its holder dies. A file system without locks (some network
    ones) is a DatasetError that says so."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise DatasetError(f"The dataset folder {folder} cannot be written ({error.strerror}). Set CPRUNE_HOME to a "
                           "writable folder, or pass the dataset's folder as root.") from error
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError as error:
            raise DatasetError(f"{folder} cannot be locked for a download ({error.strerror}): download the dataset "
                               "once by hand (or on one node), then run again.") from error
        yield
    finally:
        os.close(lock)
