"""Oxford Flowers-102 with its official splits: jpg/, imagelabels.mat and setid.mat."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ..errors import DatasetError, PathNotAllowedError
from .splits import SPLITS
from .download import download_errors
from .indexing import Index, finish_index, scan_images
from .roots import NOT_ALLOWED, is_inside

__all__ = ["URL", "locate", "index"]

URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"


def Flowers102(root: Path, download: bool = False):  # noqa: N802  (torchvision's dataset class, imported late)
    """torchvision's Flowers102 (it downloads when made), imported at the first download: torchvision takes seconds
    to import, and the app's start needs no dataset."""
    from torchvision.datasets import Flowers102 as flowers102

    return flowers102(root, download=download)


def _class_names() -> list[str]:
    """The 102 official class names, in label order (torchvision's)."""
    from torchvision.datasets import Flowers102 as flowers102

    return flowers102.classes


def locate(root: Path | None, cache_dir: Path, download: bool) -> Path:
    """The flowers-102/ folder (jpg/, imagelabels.mat, setid.mat) under root, or root itself."""
    root = root or cache_dir
    folder = root if root.name == "flowers-102" or (root / "jpg").is_dir() else root / "flowers-102"
    required = ("jpg", "imagelabels.mat", "setid.mat")
    missing = [name for name in required if not (folder / name).exists()]
    if not missing:
        return folder
    where = (
        f"Put the extracted 102flowers.tgz (jpg/), imagelabels.mat and setid.mat from {URL} "
        f"into {folder}, or pass as root the folder that holds them"
    )
    if not download:
        raise DatasetError(f"Oxford Flowers-102 is incomplete in {folder} (missing: {', '.join(missing)}). {where}.")
    with download_errors(f"Oxford Flowers-102 into {folder}", where):
        Flowers102(folder.parent, download=True)
    return folder


def _read_labels_and_splits(folder: Path) -> tuple[np.ndarray, dict[str, list[int]]]:
    from scipy.io import loadmat  # only this dataset needs scipy

    try:
        labels = np.atleast_1d(loadmat(folder / "imagelabels.mat", squeeze_me=True)["labels"]).astype(int)
        set_ids = loadmat(folder / "setid.mat", squeeze_me=True)
        ids_by_split = {
            split: np.atleast_1d(set_ids[key]).astype(int).tolist()
            for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid"))
        }
    except (OSError, ValueError, KeyError) as err:
        raise DatasetError(
            f"Cannot read imagelabels.mat / setid.mat in {folder} ({err!r}). Download them again from {URL}."
        ) from err
    return labels, ids_by_split


def index(folder: Path, roots: list[Path] | None = None, stop: threading.Event | None = None) -> Index:
    """Index Flowers-102 with its official splits from setid.mat and labels from imagelabels.mat
    (with ``roots``, images whose real path lies outside them are skipped)."""
    if roots is not None and not all(is_inside(folder / name, roots) for name in ("imagelabels.mat", "setid.mat")):
        raise PathNotAllowedError(NOT_ALLOWED)  # links out of the data folders are not read
    labels, ids_by_split = _read_labels_and_splits(folder)
    split_by_path: dict[str, str] = {}
    label_by_path: dict[str, int] = {}
    for split, image_ids in ids_by_split.items():
        for image_id in image_ids:
            if not 1 <= image_id <= len(labels):
                raise DatasetError(
                    f"setid.mat lists image {image_id} but imagelabels.mat has {len(labels)} labels; "
                    f"the two files in {folder} do not match. Download them again from {URL}."
                )
            path = str(folder / "jpg" / f"image_{image_id:05d}.jpg")
            split_by_path[path] = split
            label_by_path[path] = int(labels[image_id - 1])

    listed = sorted(split_by_path)
    outside = {path for path in listed if roots is not None and not is_inside(path, roots)}
    present = [path for path in listed if path not in outside and os.path.isfile(path)]
    problems = scan_images(present, stop, roots)
    skipped = sorted(
        [(path, "link to a place outside the server's data folders") for path in outside]
        + [(path, "listed in setid.mat but missing") for path in listed if path not in problems and path not in outside]
        + [(path, problem) for path, problem in problems.items() if problem is not None]
    )
    label_ids = sorted(set(label_by_path.values()))
    class_names = _class_names()
    standard = all(i <= len(class_names) for i in label_ids)  # else the names would not match
    names = {i: class_names[i - 1] if standard else f"class_{i:03d}" for i in label_ids}
    readable = {names[i]: [] for i in label_ids}
    for path, problem in problems.items():
        if problem is None:
            readable[names[label_by_path[path]]].append(path)
    result = finish_index(folder, readable, skipped)

    label_of_class = {name: label for label, name in enumerate(result.classes)}
    result.official_splits = {split: [[] for _ in result.classes] for split in SPLITS}
    for paths in result.paths_by_class:
        for path in paths:
            label = label_of_class[names[label_by_path[path]]]
            result.official_splits[split_by_path[path]][label].append(path)
    return result
