"""Your own images (``folder``) and the sample that ships in assets/ (``flowers-sample``):
both in the ImageFolder layout, root/<class>/**/<image>."""
from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError
from ..paths import SAMPLE_FLOWERS
from .indexing import existing_dir

__all__ = ["locate_folder", "locate_sample"]


def locate_folder(root: Path | None, cache_dir: Path, download: bool) -> Path:
    if root is None:
        raise DatasetError('The "folder" dataset needs a root: a folder with one sub-folder per class.')
    return root


def locate_sample(root: Path | None, cache_dir: Path, download: bool) -> Path:
    return root or existing_dir(SAMPLE_FLOWERS, "The embedded sample")
