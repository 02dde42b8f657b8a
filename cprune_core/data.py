"""Image-classification datasets: locate or download, index, split, load.

Every dataset is reduced to the same shape: a sorted list of classes and, per class, the
image files that decode. `load_dataset` turns that into seeded, stratified train/val/test
`ImageListDataset`s (Oxford Flowers-102 keeps its official splits). Files that cannot be
decoded are found while indexing (full decode, cached per path/size/mtime) and reported in
`DatasetSplits.skipped`; files that break later are dropped at load time by
`collate_skip_bad` and counted in `ImageListDataset.n_failed`.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import random
import struct
import tarfile
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset, default_collate
from torchvision.datasets import Caltech101, Flowers102
from torchvision.datasets.utils import download_and_extract_archive
from torchvision.transforms import v2

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS_DIR = REPO_ROOT / "assets"
SAMPLE_FLOWERS = ASSETS_DIR / "flowers-sample"
SHARED_FLOWERS = (REPO_ROOT / ".." / "shared" / "data" / "flowers128").resolve()
DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "cprune" / "datasets"

TF_FLOWERS_URL = "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
FLOWERS102_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
MAX_IMAGE_SIDE = 4096  # larger images are downsized on load: nothing we train needs more
EVAL_RESIZE_RATIO = 1.14  # shorter side before the centre crop, relative to the crop (256/224)
_SCAN_THREADS = min(4, os.cpu_count() or 1)
_IGNORED_NAMES = frozenset({"__MACOSX"})  # resource-fork folders left by macOS zip archives

# PIL raises any of these on corrupt or truncated data, depending on the format plugin.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)
_DOWNLOAD_ERRORS = (OSError, RuntimeError, ValueError, EOFError, tarfile.TarError, zipfile.BadZipFile)

SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """A dataset cannot be loaded; the message says what failed and what to do about it."""


class UnreadableImageError(DatasetError):
    """An image file cannot be decoded (corrupt, truncated, empty or unsafe to decode)."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason

    def __reduce__(self):  # picklable across DataLoader worker processes
        return type(self), (self.path, self.reason)


@dataclass(frozen=True)
class DatasetInfo:
    """One entry of `DATASETS`.

    default_root: where the data is read from when `root` is None without downloading
    (the embedded sample); None when the dataset is downloaded into the cache or needs a root.
    """

    name: str
    description: str
    needs_download: bool
    default_root: Path | None


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "flowers-sample",
            "Offline sample shipped with the app: 5 flower classes x 100 photos (TF Flowers, 128x128).",
            needs_download=False,
            default_root=SAMPLE_FLOWERS,
        ),
        DatasetInfo(
            "tf-flowers",
            "TensorFlow flowers: 3,670 photos of 5 classes (218 MB download), "
            "or a local folder with the same layout.",
            needs_download=True,
            default_root=None,
        ),
        DatasetInfo(
            "oxford-flowers102",
            "Oxford Flowers-102: 8,189 photos of 102 classes with the official splits (330 MB download).",
            needs_download=True,
            default_root=None,
        ),
        DatasetInfo(
            "caltech101",
            "Caltech-101: about 8,700 images of 101 object classes (130 MB download).",
            needs_download=True,
            default_root=None,
        ),
        DatasetInfo(
            "folder",
            "Your own images: a folder with one sub-folder per class.",
            needs_download=False,
            default_root=None,
        ),
    )
}


def repo_root() -> Path:
    """The repository root (the folder that holds cprune_core/ and assets/)."""
    return REPO_ROOT


# ----------------------------------------------------------------------------- images


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode an image file as an RGB PIL image.

    Palette and alpha images are composited on white, grayscale, CMYK and 16-bit images are
    converted, EXIF rotation is applied, and images larger than MAX_IMAGE_SIDE on a side are
    downsized (aspect ratio kept). Raises UnreadableImageError (a DatasetError) when the file
    is empty, truncated, corrupt or too large for PIL's decompression-bomb guard.
    """
    rgb = _decode_rgb(path, draft_size=(MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    if max(rgb.size) > MAX_IMAGE_SIDE:
        rgb.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    return rgb


def _decode_rgb(path: str | os.PathLike, draft_size: tuple[int, int]) -> Image.Image:
    """Decode the whole file to an upright RGB image.

    JPEGs are decoded at the coarsest DCT scale (1/2 to 1/8) that stays at least draft_size:
    libjpeg still reads the whole stream, so truncation is detected at any scale.
    """
    try:
        with Image.open(path) as image:
            image.draft("RGB", draft_size)
            image.load()
            rgb = _to_rgb(image)
        ImageOps.exif_transpose(rgb, in_place=True)
    except Image.DecompressionBombError as err:
        raise UnreadableImageError(path, f"too large to decode safely ({err})") from err
    except _DECODE_ERRORS as err:
        raise UnreadableImageError(path, f"cannot decode image ({err})") from err
    return rgb


def _to_rgb(image: Image.Image) -> Image.Image:
    """A new RGB image from any PIL mode (the source is closed by the caller)."""
    if image.mode == "RGB":
        return image.copy()
    if image.mode == "P" or "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode.startswith("I") or image.mode == "F":
        return _high_bit_depth_to_gray(image).convert("RGB")
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, ...


def _high_bit_depth_to_gray(image: Image.Image) -> Image.Image:
    """8-bit grayscale from 16-bit, 32-bit integer or float images (PIL's own convert clips)."""
    pixels = np.asarray(image, dtype=np.float32)
    if image.mode.startswith("I;16"):
        scaled = pixels / 257.0  # 0..65535 -> 0..255
    else:  # "I" and "F" have no fixed range: stretch to the full 8 bits
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) * (255.0 / max(high - low, 1e-12))
    return Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8))


def build_transform(
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    train: bool,
    resize_size: int | None = None,
) -> v2.Compose:
    """Preprocessing from a PIL image to a normalised float tensor of input_size x input_size.

    train: RandomResizedCrop(scale 0.6-1) + horizontal flip. Evaluation: resize the shorter
    side to resize_size (default input_size * 1.14) and centre-crop.
    """
    if train:
        geometry = [v2.RandomResizedCrop(input_size, scale=(0.6, 1.0), antialias=True), v2.RandomHorizontalFlip()]
    else:
        resize_size = resize_size or int(input_size * EVAL_RESIZE_RATIO)
        geometry = [v2.Resize(resize_size, antialias=True), v2.CenterCrop(input_size)]
    # Geometry on uint8 tensors (fast path), then scale to float and normalise.
    return v2.Compose(
        [v2.ToImage(), *geometry, v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    )


# ----------------------------------------------------------------------------- datasets


class ImageListDataset(Dataset):
    """A list of (image path, label) pairs; items are (tensor, label).

    An item whose file cannot be decoded comes back as None, which `collate_skip_bad` drops;
    each such sample is flagged once in shared memory, so failures seen in DataLoader worker
    processes are counted too (`n_failed`, `failed_paths`).
    """

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        classes: Sequence[str],
        transform: Callable | None = None,
    ) -> None:
        self.samples = [(str(path), int(label)) for path, label in samples]
        self.classes = list(classes)
        self.transform = transform
        self._failed = torch.zeros(len(self.samples), dtype=torch.uint8).share_memory_()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        path, label = self.samples[index]
        try:
            image = open_rgb(path)
        except UnreadableImageError as err:
            if not self._failed[index]:
                log.warning("Skipping unreadable image: %s", err)
            self._failed[index] = 1
            return None
        if self.transform is None:
            return v2.functional.to_dtype(v2.functional.to_image(image), torch.float32, scale=True), label
        return self.transform(image), label

    def with_transform(self, transform: Callable | None) -> ImageListDataset:
        """A shallow copy that applies `transform` (samples and failure flags are shared)."""
        clone = copy.copy(self)
        clone.transform = transform
        return clone

    @property
    def targets(self) -> list[int]:
        """The label of every sample, in order (as torchvision's ImageFolder)."""
        return [label for _, label in self.samples]

    def class_counts(self) -> list[int]:
        """Number of samples per class, indexed by label."""
        return np.bincount(self.targets, minlength=len(self.classes)).tolist()

    @property
    def n_failed(self) -> int:
        """How many distinct samples failed to decode so far."""
        return int(self._failed.sum())

    @property
    def failed_paths(self) -> list[str]:
        """The files of the samples that failed to decode so far."""
        return [self.samples[i][0] for i in self._failed.nonzero().flatten().tolist()]


def collate_skip_bad(batch: list) -> object | None:
    """DataLoader collate_fn that drops the samples that failed to load.

    Returns None when every sample of the batch failed: the training loop should skip it.
    """
    good = [item for item in batch if item is not None]
    return default_collate(good) if good else None


@dataclass
class DatasetSplits:
    """The three splits of a dataset and what indexing found wrong with it.

    skipped: (path, reason) of every image file that could not be decoded while indexing.
    dropped_classes: class folders left out because none of their images decodes.
    """

    name: str
    classes: list[str]
    train: ImageListDataset
    val: ImageListDataset
    test: ImageListDataset
    skipped: list[tuple[str, str]] = field(default_factory=list)
    dropped_classes: list[str] = field(default_factory=list)
    root: Path | None = None

    def summary(self) -> dict:
        """Counts per split and per class, and what was skipped or dropped."""
        counts = {split: getattr(self, split).class_counts() for split in SPLITS}
        return {
            "name": self.name,
            "root": str(self.root) if self.root else None,
            "n_classes": len(self.classes),
            "splits": {split: len(getattr(self, split)) for split in SPLITS},
            "per_class": {
                name: {split: counts[split][label] for split in SPLITS} for label, name in enumerate(self.classes)
            },
            "n_skipped": len(self.skipped),
            "dropped_classes": list(self.dropped_classes),
        }


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
) -> DatasetSplits:
    """Locate (or download), index and split one of `DATASETS`.

    root: the dataset folder; None uses the embedded sample (flowers-sample) or downloads
    into cache_dir (default ~/.cache/cprune/datasets). "folder" requires a root.
    Splits are stratified per class and depend only on seed; oxford-flowers102 keeps its
    official train/val/test splits and ignores the fractions. train_per_class=k keeps k
    seeded train images per class (few-shot); val and test are unchanged.
    Raises DatasetError with what failed and what to do.
    """
    if name not in DATASETS:
        raise DatasetError(f"Unknown dataset {name!r}. Choose one of: {', '.join(DATASETS)}.")
    _check_split_arguments(val_fraction, test_fraction, train_per_class)
    started = time.perf_counter()
    root = _existing_dir(root) if root is not None else None
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else DEFAULT_CACHE_DIR

    if name == "oxford-flowers102":
        folder = _flowers102_folder(root or cache_dir, download)
        index = _index_flowers102(folder)
        by_split = index.official_splits
    else:
        if name == "flowers-sample":
            folder = root or _existing_dir(SAMPLE_FLOWERS, "The embedded sample")
        elif name == "tf-flowers":
            folder = root or _tf_flowers_folder(cache_dir, download)
        elif name == "caltech101":
            folder = _caltech101_folder(root or cache_dir, download)
        elif root is None:
            raise DatasetError('The "folder" dataset needs a root: a folder with one sub-folder per class.')
        else:
            folder = root
        index = _index_image_folder(folder, exclude={"BACKGROUND_Google"} if name == "caltech101" else set())
        by_split = _stratified_split(index, seed, val_fraction, test_fraction)

    if train_per_class is not None:
        by_split["train"] = _keep_per_class(by_split["train"], index.classes, train_per_class, seed)
    datasets = {
        split: ImageListDataset(
            [(path, label) for label, paths in enumerate(by_split[split]) for path in paths], index.classes
        )
        for split in SPLITS
    }
    log.info(
        "Loaded %s from %s: %d classes, %s images, %d skipped (%.1f s)",
        name, folder, len(index.classes), "/".join(str(len(d)) for d in datasets.values()),
        len(index.skipped), time.perf_counter() - started,
    )
    return DatasetSplits(
        name=name,
        classes=index.classes,
        **datasets,
        skipped=index.skipped,
        dropped_classes=index.dropped_classes,
        root=folder,
    )


def _check_split_arguments(val_fraction: float, test_fraction: float, train_per_class: int | None) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DatasetError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must each be in [0, 1) "
            "and sum to less than 1, so that some images are left for training."
        )
    if train_per_class is not None and train_per_class < 1:
        raise DatasetError(f"train_per_class must be at least 1 (or None for all), got {train_per_class}.")


def _existing_dir(path: str | os.PathLike, what: str = "Dataset folder") -> Path:
    resolved = Path(path).expanduser().resolve()
    if not resolved.exists():
        raise DatasetError(
            f"{what} not found: {resolved}. Check the path "
            f"(a relative path is taken from the current directory, {Path.cwd()})."
        )
    if not resolved.is_dir():
        raise DatasetError(
            f"{what} {resolved} is a file, not a folder. Pass the folder that holds one sub-folder "
            "per class (extract an archive first)."
        )
    return resolved


# ----------------------------------------------------------------------------- indexing


@dataclass
class _Index:
    classes: list[str]
    paths_by_class: list[list[str]]  # readable image files, indexed by label
    skipped: list[tuple[str, str]]
    dropped_classes: list[str]
    official_splits: dict[str, list[list[str]]] = field(default_factory=dict)  # split -> paths by label


def _is_ignored(name: str) -> bool:
    return name.startswith(".") or name in _IGNORED_NAMES


def _find_image_files(folder: Path) -> list[str]:
    """Image files under folder (recursively, skipping hidden ones), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [name for name in dirnames if not _is_ignored(name)]
        found.extend(
            os.path.join(dirpath, name)
            for name in filenames
            if not _is_ignored(name) and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
        )
    return sorted(found)


# (path, size, mtime_ns) -> why the file cannot be decoded, or None when it can.
_decode_problems: dict[tuple[str, int, int], str | None] = {}


def _decode_problem(key: tuple[str, int, int]) -> str | None:
    path, size, _ = key
    if size == 0:
        return "empty file (0 bytes)"
    try:
        _decode_rgb(path, draft_size=(1, 1))  # a full check at the cheapest scale
    except UnreadableImageError as err:
        return err.reason
    return None


def _scan_images(paths: list[str]) -> dict[str, str | None]:
    """Why each file cannot be decoded (None when it can), by a full decode cached per file version."""
    problems: dict[str, str | None] = {}
    keys: dict[str, tuple[str, int, int]] = {}
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError as err:
            problems[path] = f"cannot read file: {err.strerror}"
            continue
        keys[path] = (path, stat.st_size, stat.st_mtime_ns)
    unknown = [key for key in keys.values() if key not in _decode_problems]
    if unknown:
        with ThreadPoolExecutor(_SCAN_THREADS) as pool:
            _decode_problems.update(zip(unknown, pool.map(_decode_problem, unknown)))
    problems.update((path, _decode_problems[key]) for path, key in keys.items())
    return problems


def _index_image_folder(root: Path, exclude: set[str]) -> _Index:
    """Index an ImageFolder layout: root/<class>/**/<image>."""
    class_dirs = sorted(
        entry for entry in root.iterdir() if entry.is_dir() and not _is_ignored(entry.name) and entry.name not in exclude
    )
    if not class_dirs:
        loose = sum(1 for entry in root.iterdir() if entry.suffix.lower() in IMAGE_EXTENSIONS)
        hint = f" It holds {loose} images directly: move them into per-class sub-folders." if loose else ""
        raise DatasetError(
            f"No class sub-folders in {root}. Expected one sub-folder per class, "
            f"e.g. {root / 'daisy' / 'photo1.jpg'}.{hint}"
        )
    files_by_class = {folder.name: _find_image_files(folder) for folder in class_dirs}
    problems = _scan_images([path for paths in files_by_class.values() for path in paths])
    readable = {name: [path for path in paths if problems[path] is None] for name, paths in files_by_class.items()}
    skipped = [(path, problem) for path, problem in problems.items() if problem is not None]
    return _finish_index(root, readable, sorted(skipped))


def _finish_index(root: Path, readable: dict[str, list[str]], skipped: list[tuple[str, str]]) -> _Index:
    """Drop classes without readable images; at least two classes must remain."""
    dropped = [name for name, paths in readable.items() if not paths]
    kept = {name: paths for name, paths in readable.items() if paths}
    if dropped:
        log.warning("Dropping classes with no readable images in %s: %s", root, ", ".join(dropped))
    unreadable = f" {len(skipped)} image files could not be decoded (first: {skipped[0][1]})." if skipped else ""
    if not kept:
        raise DatasetError(
            f"No readable images in {root}.{unreadable} Put the images in one sub-folder per class; "
            f"accepted extensions: {', '.join(sorted(IMAGE_EXTENSIONS))}."
        )
    if len(kept) == 1:
        others = f" (classes without readable images: {', '.join(dropped)})" if dropped else ""
        raise DatasetError(
            f"Only one class with images in {root}: {next(iter(kept))!r}{others}.{unreadable} "
            "A classifier needs at least two classes: add another sub-folder of images."
        )
    return _Index(list(kept), list(kept.values()), skipped, dropped)


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _class_rng(seed: int, class_name: str, purpose: str) -> random.Random:
    # A string seed is hashed deterministically (unlike hash()), and per class, so adding a
    # class leaves the other classes' splits unchanged.
    return random.Random(f"{seed}/{class_name}/{purpose}")


def _stratified_split(index: _Index, seed: int, val_fraction: float, test_fraction: float) -> dict[str, list[list[str]]]:
    """Per class: shuffle with the seed, then cut test, val and train (at least one train image)."""
    by_split: dict[str, list[list[str]]] = {split: [] for split in SPLITS}
    for name, paths in zip(index.classes, index.paths_by_class):
        shuffled = sorted(paths)
        _class_rng(seed, name, "split").shuffle(shuffled)
        n_test = min(_round_half_up(len(shuffled) * test_fraction), len(shuffled) - 1)
        n_val = min(_round_half_up(len(shuffled) * val_fraction), len(shuffled) - 1 - n_test)
        by_split["test"].append(shuffled[:n_test])
        by_split["val"].append(shuffled[n_test : n_test + n_val])
        by_split["train"].append(shuffled[n_test + n_val :])
    return by_split


def _keep_per_class(paths_by_class: list[list[str]], classes: list[str], k: int, seed: int) -> list[list[str]]:
    """A seeded choice of k paths per class (all of them when a class has fewer)."""
    return [
        sorted(_class_rng(seed, name, "few-shot").sample(sorted(paths), min(k, len(paths))))
        for name, paths in zip(classes, paths_by_class)
    ]


# ----------------------------------------------------------------------------- sources


def _tf_flowers_folder(cache_dir: Path, download: bool) -> Path:
    """flower_photos/ in the cache, downloaded and extracted on first use."""
    folder = cache_dir / "flower_photos"
    if folder.is_dir():
        return folder
    local_alternative = (
        "pass as root a local folder with the same layout (one sub-folder of images per class), "
        f"e.g. {SHARED_FLOWERS} or an extracted flower_photos/ folder"
    )
    if not download:
        raise DatasetError(f"TF Flowers is not in the cache ({folder}) and download is off: turn it on, or {local_alternative}.")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Extract into a staging folder so an interrupted download never leaves a partial dataset.
        with tempfile.TemporaryDirectory(prefix=".tf-flowers-", dir=cache_dir) as staging:
            download_and_extract_archive(TF_FLOWERS_URL, download_root=staging, remove_finished=True)
            extracted = Path(staging) / "flower_photos"
            if extracted.is_dir():
                extracted.rename(folder)
    except _DOWNLOAD_ERRORS as err:
        raise DatasetError(
            f"Downloading TF Flowers from {TF_FLOWERS_URL} failed ({err}). "
            f"If this machine is offline, {local_alternative}."
        ) from err
    if not folder.is_dir():
        raise DatasetError(f"The archive {TF_FLOWERS_URL} has no flower_photos/ folder; {local_alternative}.")
    return folder


def _flowers102_folder(root: Path, download: bool) -> Path:
    """The flowers-102/ folder (jpg/, imagelabels.mat, setid.mat) under root, or root itself."""
    folder = root if root.name == "flowers-102" or (root / "jpg").is_dir() else root / "flowers-102"
    required = ("jpg", "imagelabels.mat", "setid.mat")
    missing = [name for name in required if not (folder / name).exists()]
    if not missing:
        return folder
    where = (
        f"Put the extracted 102flowers.tgz (jpg/), imagelabels.mat and setid.mat from {FLOWERS102_URL} "
        f"into {folder}, or pass as root the folder that holds them"
    )
    if not download:
        raise DatasetError(f"Oxford Flowers-102 is incomplete in {folder} (missing: {', '.join(missing)}). {where}.")
    try:
        Flowers102(folder.parent, download=True)
    except _DOWNLOAD_ERRORS as err:
        raise DatasetError(f"Downloading Oxford Flowers-102 into {folder} failed ({err}). {where}.") from err
    return folder


def _index_flowers102(folder: Path) -> _Index:
    """Index Flowers-102 with its official splits from setid.mat and labels from imagelabels.mat."""
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
            f"Cannot read imagelabels.mat / setid.mat in {folder} ({err!r}). "
            f"Download them again from {FLOWERS102_URL}."
        ) from err

    split_by_path: dict[str, str] = {}
    label_by_path: dict[str, int] = {}
    for split, image_ids in ids_by_split.items():
        for image_id in image_ids:
            if not 1 <= image_id <= len(labels):
                raise DatasetError(
                    f"setid.mat lists image {image_id} but imagelabels.mat has {len(labels)} labels; "
                    f"the two files in {folder} do not match. Download them again from {FLOWERS102_URL}."
                )
            path = str(folder / "jpg" / f"image_{image_id:05d}.jpg")
            split_by_path[path] = split
            label_by_path[path] = int(labels[image_id - 1])

    listed = sorted(split_by_path)
    present = [path for path in listed if os.path.isfile(path)]
    problems = _scan_images(present)
    skipped = sorted(
        [(path, "listed in setid.mat but missing") for path in listed if path not in problems]
        + [(path, problem) for path, problem in problems.items() if problem is not None]
    )
    label_ids = sorted(set(label_by_path.values()))
    standard = all(i <= len(Flowers102.classes) for i in label_ids)  # else the names would not match
    names = {i: Flowers102.classes[i - 1] if standard else f"class_{i:03d}" for i in label_ids}
    readable = {names[i]: [] for i in label_ids}
    for path, problem in problems.items():
        if problem is None:
            readable[names[label_by_path[path]]].append(path)
    index = _finish_index(folder, readable, skipped)

    label_of_class = {name: label for label, name in enumerate(index.classes)}
    index.official_splits = {split: [[] for _ in index.classes] for split in SPLITS}
    for paths in index.paths_by_class:
        for path in paths:
            label = label_of_class[names[label_by_path[path]]]
            index.official_splits[split_by_path[path]][label].append(path)
    return index


def _caltech101_folder(root: Path, download: bool) -> Path:
    """101_ObjectCategories/ under root (torchvision's root/caltech101/ layout), downloaded if needed."""
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
    try:
        Caltech101(str(root), download=True)
    except _DOWNLOAD_ERRORS as err:
        raise DatasetError(f"Downloading Caltech-101 into {root} failed ({err}). {where}.") from err
    return target
