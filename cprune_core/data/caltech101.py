"""Caltech-101: 101_ObjectCategories/ in the ImageFolder layout, without its BACKGROUND_Google class."""
from __future__ import annotations

import threading
from pathlib import Path

from ..errors import DatasetError
from .download import download_errors
from .indexing import Index, index_image_folder

__all__ = ["locate", "index"]

EXCLUDED = frozenset({"BACKGROUND_Google"})  # clutter images, not an object class


def Caltech101(root: str, download: bool = False):  # noqa: N802  (torchvision's dataset class, imported late)
    """torchvision's Caltech101 (it downloads when made), imported at the first download: torchvision takes
    seconds to import, and the app's start needs no dataset."""
    from torchvision.datasets import Caltech101 as caltech101

    return caltech101(root, download=download)


def locate(root: Path | None, cache_dir: Path, download: bool) -> Path:
    """101_ObjectCategories/ under root (torchvision's root/caltech101/ layout), downloaded if needed."""
    root = root or cache_dir
    for folder in (root, root / "101_ObjectCategories", root / "caltech101" / "101_ObjectCategories"):
        if folder.name == "101_ObjectCategories" and folder.is_dir():
            return folder
    target = root / "caltech101" / "101_ObjectCategories"
    where = (
        "Extract caltech-101.zip (then its 101_ObjectCategories.tar.gz) from https://data.caltech.edu/records/mzrjq-6wc02 "
        f"so that {target} holds one sub-folder per class, or pass that folder as root"
    )
    if not download:
        raise DatasetError(f"Caltech-101 not found under {root}. {where}.")
    with download_errors(f"Caltech-101 into {root}", where):
        Caltech101(str(root), download=True)
    return target


def index(folder: Path, roots: list[Path] | None = None, stop: threading.Event | None = None) -> Index:
    return index_image_folder(folder, EXCLUDED, roots, stop)
