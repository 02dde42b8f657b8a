"""Dataset registry: one entry per source holds how to locate (or download) and index its data.

``load_dataset`` is the one way in: locate the folder, index it, then split it with a seed
(or keep the source's official splits) and wrap each split as an ``ImageListDataset``.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..access import COMMAND_LINE, NO_DOWNLOADS, Access
from ..errors import DatasetError
from ..ranges import choose
from ..paths import SAMPLE_FLOWERS, datasets_dir, user_path
from . import caltech101, flowers102, folder, tf_flowers
from .download import download_lock
from .indexing import Index, existing_dir, index_image_folder
from .roots import confine
from .splits import SPLITS, check_split_arguments, keep_per_class, stratified_split

if TYPE_CHECKING:
    from .dataset import DatasetSplits

__all__ = ["DatasetSource", "DATASETS", "DEFAULT_DATASET", "get_source", "load_dataset", "is_cached"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetSource:
    """One entry of ``DATASETS``.

    locate(root, cache_dir, download) -> the folder holding the data (``root`` is None or an
    existing folder); index(folder, roots, stop) -> its readable images per class (and official
    splits), reading nothing outside ``roots`` when given and ending early when ``stop`` is set.
    default_root: where the data is read from when root is None without downloading (the
    embedded sample); None when the source is downloaded into the cache or needs a root.
    """

    name: str
    description: str
    locate: Callable[[Path | None, Path, bool], Path]
    index: Callable[..., Index]  # index(folder, *, roots, stop)
    needs_download: bool
    default_root: Path | None = None


DATASETS: dict[str, DatasetSource] = {
    source.name: source
    for source in (
        DatasetSource(
            "flowers-sample",
            "Offline sample shipped with the app: 5 flower classes x 100 photos (TF Flowers, 128x128).",
            folder.locate_sample, index_image_folder, needs_download=False, default_root=SAMPLE_FLOWERS,
        ),
        DatasetSource(
            "tf-flowers",
            "TensorFlow flowers: 3,670 photos of 5 classes (218 MB download), or a local folder with the same layout.",
            tf_flowers.locate, index_image_folder, needs_download=True,
        ),
        DatasetSource(
            "oxford-flowers102",
            "Oxford Flowers-102: 8,189 photos of 102 classes with the official splits (330 MB download).",
            flowers102.locate, flowers102.index, needs_download=True,
        ),
        DatasetSource(
            "caltech101",
            "Caltech-101: about 8,700 images of 101 object classes (130 MB download).",
            caltech101.locate, caltech101.index, needs_download=True,
        ),
        DatasetSource(
            "folder",
            "Your own images: a folder with one sub-folder per class.",
            folder.locate_folder, index_image_folder, needs_download=False,
        ),
    )
}
DEFAULT_DATASET = "flowers-sample"


def get_source(name: str) -> DatasetSource:
    return choose(name, DATASETS, "dataset")


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    train_per_class: int | None = None,
    download: bool = True,
    cache_dir: Path | None = None,
    access: Access = COMMAND_LINE,
    stop: threading.Event | None = None,
) -> DatasetSplits:
    """Locate (or download), index and split one of `DATASETS`.

    root: the dataset folder; None uses the embedded sample (flowers-sample) or downloads
    into cache_dir (default paths.datasets_dir()). "folder" requires a root.
    Splits are stratified per class and depend only on seed; oxford-flowers102 keeps its
    official train/val/test splits and ignores the fractions. train_per_class=k keeps k
    seeded train images per class (few-shot); val and test are unchanged.
    download: whether a dataset missing from the cache may be downloaded now. access: whom the call
    works for (``access.Access``): with data roots (the app's visitors) only folders inside them are
    read, and a folder given is never downloaded into; with downloads off nothing is downloaded,
    whatever ``download`` says. stop: ends indexing early with StopRequested.
    Raises ConfigError for impossible arguments and DatasetError for data that cannot be used.
    """
    from .dataset import DatasetSplits, ImageListDataset  # torch: only when a dataset is loaded

    source = get_source(name)
    check_split_arguments(val_fraction, test_fraction, train_per_class)
    started = time.perf_counter()
    cache_dir = user_path(cache_dir) if cache_dir is not None else datasets_dir()
    try:
        data_folder, index = _locate_and_index(source, root, cache_dir, download, access, stop)
    except OSError as error:  # the folder changed under the walk, a name too long for the file system, ...
        where = f" ({error.filename})" if error.filename else ""
        raise DatasetError(f"The dataset could not be read: {error.strerror or error}{where}. Check the folder "
                           "(it may have changed while it was being read) and try again.") from error
    by_split = index.official_splits or stratified_split(index, seed, val_fraction, test_fraction)
    if train_per_class is not None:
        by_split["train"] = keep_per_class(by_split["train"], index.classes, train_per_class, seed)
    datasets = {
        split: ImageListDataset(
            [(path, label) for label, paths in enumerate(by_split[split]) for path in paths], index.classes,
            roots=access.data_roots,
        )
        for split in SPLITS
    }
    log.info(
        "Loaded %s from %s: %d classes, %s images, %d skipped (%.1f s)",
        name, data_folder, len(index.classes), "/".join(str(len(d)) for d in datasets.values()),
        len(index.skipped), time.perf_counter() - started,
    )
    return DatasetSplits(name=name, classes=index.classes, **datasets, skipped=index.skipped,
                         dropped_classes=index.dropped_classes, root=data_folder)


def is_cached(name: str, cache_dir: Path | None = None) -> bool:
    """Whether the dataset ``name`` can be read with no folder given and no download: one that ships with the
    app, or one that is downloaded and already in the dataset cache (``cache_dir``, default
    paths.datasets_dir()). False for "folder", which needs a folder."""
    source = get_source(name)
    if source.default_root is not None:
        return True
    if not source.needs_download:
        return False
    try:
        source.locate(None, cache_dir or datasets_dir(), False)
    except (DatasetError, OSError):
        return False
    return True


def _locate_and_index(source: DatasetSource, root: str | Path | None, cache_dir: Path, download: bool,
                      access: Access, stop: threading.Event | None) -> tuple[Path, Index]:
    """The folder holding the data (downloaded when needed and allowed) and its index."""
    roots = access.data_roots
    root = existing_dir(root, roots=roots) if root is not None else None
    confined_folder = access.confined and root is not None
    try:
        data_folder = source.locate(root, cache_dir, False)  # already there: no lock, no wait
    except DatasetError as error:
        if confined_folder and source.needs_download:  # a visitor's folder is only read: anyone could fill it
            advice = ("The app downloads datasets only into its own cache: leave the folder empty to download "
                      "there." if access.downloads else f"{NO_DOWNLOADS}.")
            raise DatasetError(f"{error} {advice}") from error
        if access.confined and source.needs_download and not access.downloads:
            raise DatasetError(f"{source.name} is not in this server's dataset cache. {NO_DOWNLOADS}: type "
                               "a folder that holds it, inside the server's data folders, or choose flowers-sample.") \
                from error
        if not (source.needs_download and download and access.downloads):
            raise
        with download_lock(root or cache_dir):  # the first downloader; the others then find it there
            data_folder = source.locate(root, cache_dir, True)
    if confined_folder:  # where indexing starts (root, or a folder below it that may be a link)
        data_folder = confine(data_folder, roots)
    index = source.index(data_folder, roots=roots, stop=stop)
    return data_folder, index
