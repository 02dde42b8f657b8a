"""What a failed download looks like, turned into one DatasetError that says what to do."""
from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import DatasetError

__all__ = ["download_errors"]

# What torchvision's download and extraction helpers raise offline, on a broken or partial file.
DOWNLOAD_ERRORS = (OSError, RuntimeError, ValueError, EOFError, tarfile.TarError, zipfile.BadZipFile)


@contextmanager
def download_errors(what: str, advice: str) -> Iterator[None]:
    """Re-raise a failed download as DatasetError: "Downloading <what> failed (<why>). <advice>."."""
    try:
        yield
    except DOWNLOAD_ERRORS as err:
        raise DatasetError(f"Downloading {what} failed ({err}). {advice}.") from err
