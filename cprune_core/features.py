"""The feature cache: what a frozen prefix computes runs once per (backbone, weights, split, size, cut).

Frozen prefix outputs are kept in an LRU cache in memory (``FEATURE_CACHE``) and, when asked,
on disk under ``paths.features_dir()``. A baseline's pooled features are computed from the
prefix features by the frozen suffix, so a baseline and a pruned run on the same data share
the expensive pass. Frozen modules run in eval mode, so features of the *train* split use the
evaluation transform (no augmentation); augmentation needs train_scope "all".
"""
from __future__ import annotations

import hashlib
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.data import DataLoader

from .data import ImageListDataset, build_transform, make_loader
from .device import Precision, to_device
from .errors import DatasetError
from .paths import atomic_write, features_dir
from .progress import check_stop
from .settings import setting

if TYPE_CHECKING:
    from .registry import BackboneSpec
    from .schema import FinetuneConfig

__all__ = ["FEATURE_CACHE", "FeatureCache", "Features", "TensorBatches", "samples_digest", "weights_id", "file_version",
           "extract_features", "prefix_features", "pooled_features", "FEATURE_BATCH_SIZE"]

FEATURE_BATCH_SIZE = 64
# A frozen prefix's images per batch on a CPU: as fast per image as 64, and a counter that moves every few seconds
# on a busy laptop (a batch of 64 at 224 px took minutes on a loaded 2-core machine).
CPU_FEATURE_BATCH_SIZE = 16
Features = tuple[torch.Tensor, torch.Tensor]  # (features, labels) on the CPU


class FeatureCache:
    """LRU cache of frozen features in memory, optionally backed by files on disk.

    Memory is bounded by ``max_bytes`` (settings: CPRUNE_FEATURE_CACHE_MB, default 2048): the least
    recently used entries go first, and an entry larger than the bound is not kept at all. Disk files
    (under ``disk_dir``, default ``paths.features_dir()``) are written atomically and carry the key they
    were computed for and a SHA-256 of the key and their own contents; they are read with
    ``torch.load(weights_only=True)`` and checked (the digest, the key, the shapes, and what ``accept``
    asks), so a damaged, stale or tampered file is recomputed, never trusted. Safe to share between
    threads. ``FEATURE_CACHE`` is the process's own.
    """

    def __init__(self, max_bytes: int | None = None, disk_dir: str | Path | None = None):
        self.max_bytes = max_bytes if max_bytes is not None else setting("CPRUNE_FEATURE_CACHE_MB") * 2**20
        self._disk_dir = Path(disk_dir) if disk_dir else None
        self._entries: OrderedDict[str, Features] = OrderedDict()
        self._lock = threading.Lock()  # the app may run several runs from different threads

    @property
    def disk_dir(self) -> Path:
        return self._disk_dir or features_dir()  # read when used: CPRUNE_HOME may change

    @staticmethod
    def key(*parts) -> str:
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]

    def get(self, key: str, disk: bool = False, accept: Callable[[Features], bool] | None = None) -> Features | None:
        """The entry for ``key`` from memory, else (``disk``) from its file when ``accept`` approves it."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        path = self.disk_dir / f"{key}.pt"
        if disk and path.is_file():
            value = _read_features(path, key)
            if value is None or (accept is not None and not accept(value)):
                return None
            self._store(key, value)
            return value
        return None

    def put(self, key: str, value: Features, disk: bool = False) -> None:
        """Keep ``value`` under ``key`` in memory and, with ``disk``, in its file (replacing any)."""
        self._store(key, value)
        if disk:
            self.disk_dir.mkdir(parents=True, exist_ok=True)
            path = self.disk_dir / f"{key}.pt"
            atomic_write(path, lambda temporary: torch.save({"features": value[0], "labels": value[1], "key": key,
                                                             "sha256": _contents_digest(key, *value)}, temporary))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _store(self, key: str, value: Features) -> None:
        size = sum(t.numel() * t.element_size() for t in value)
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > 1 and self._bytes() > self.max_bytes:
                self._entries.popitem(last=False)
            if size > self.max_bytes:
                self._entries.pop(key, None)

    def _bytes(self) -> int:
        return sum(t.numel() * t.element_size() for value in self._entries.values() for t in value)

    def __len__(self) -> int:
        return len(self._entries)


def _contents_digest(key: str, features: torch.Tensor, labels: torch.Tensor) -> str:
    """SHA-256 of a cache entry's key and its tensors' shapes, dtypes and bytes."""
    digest = hashlib.sha256(key.encode())
    for tensor in (features, labels):
        digest.update(repr((tuple(tensor.shape), str(tensor.dtype))).encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _read_features(path: Path, key: str) -> Features | None:
    """The disk entry of ``key``, or None when it is unreadable, not what put() writes for that key, or its
    contents do not match the digest written with them."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        features, labels = saved["features"], saved["labels"]
        sound = (isinstance(features, torch.Tensor) and isinstance(labels, torch.Tensor)
                 and features.is_floating_point() and labels.dtype == torch.long and labels.ndim == 1
                 and features.ndim >= 2 and len(features) == len(labels) and features.layout == torch.strided
                 and saved.get("key") == key and saved.get("sha256") == _contents_digest(key, features, labels)
                 and bool(torch.isfinite(features).all()) and (len(labels) == 0 or int(labels.min()) >= 0))
    except Exception:  # any damage means "recompute"
        return None
    return (features, labels) if sound else None


FEATURE_CACHE = FeatureCache()


def file_version(path: str) -> tuple[int, int] | None:
    """(size, mtime) of a file, or None when it cannot be read: a cache key part that changes with the file."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def weights_id(weights: str, checkpoint: str | None) -> str:
    """Names the starting weights in cache keys; a checkpoint by its path and file version."""
    if weights != "checkpoint" or checkpoint is None:
        return weights
    return f"checkpoint:{Path(checkpoint).resolve()}:{file_version(checkpoint)}"


def samples_digest(dataset: ImageListDataset) -> str:
    """Identifies a split's exact contents (paths, labels, file versions) for cache keys."""
    digest = hashlib.sha256()
    for path, label in dataset.samples:
        digest.update(repr((path, label, file_version(path))).encode())
    return digest.hexdigest()


class TensorBatches:
    """Mini-batches over cached features, shuffled by a seeded generator each epoch."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 generator: torch.Generator | None = None):
        self.features, self.labels, self.batch_size, self.generator = features, labels, batch_size, generator

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.generator is not None else torch.arange(n)
        for start in range(0, n, self.batch_size):
            index = order[start:start + self.batch_size]
            yield self.features[index], self.labels[index]


def extract_features(prefix: nn.Module, loader: DataLoader, precision: Precision, stop: threading.Event | None,
                     split: str) -> Generator[tuple[int, int], None, Features]:
    """Run ``prefix`` over ``loader`` on ``precision.device``: yields (images done, images) before every batch and
    once at the end, and returns the features and labels, on the CPU. StopRequested when ``stop`` is set (checked
    before every batch); DatasetError when no image of the split could be read."""
    features, labels = [], []
    prefix.eval()
    images = len(loader.dataset)
    with torch.no_grad():
        for index, batch in enumerate(loader):
            check_stop(stop, "Stopped while computing features.")
            yield min(index * loader.batch_size, images), images
            if batch is None:
                continue
            inputs, batch_labels = to_device(batch, precision.device)
            with precision.autocast():
                output = prefix(inputs)
            features.append(output.float().cpu().contiguous())
            labels.append(batch_labels.cpu())
    yield images, images
    if not features:
        raise DatasetError(f"No image of the {split} split could be read.")
    return torch.cat(features), torch.cat(labels)


def prefix_features(prefix: nn.Module, dataset: ImageListDataset, config: FinetuneConfig, spec: BackboneSpec, *,
                    split: str, precision: Precision, stop: threading.Event | None = None, cut: str | None = None,
                    cache: FeatureCache | None = None) -> Generator[tuple[int, int], None, Features]:
    """What ``prefix`` computes on ``dataset``, read as ``config``'s run reads it, from the cache or computed.

    Parameters
    ----------
    prefix : the frozen part of ``config``'s model before the module ``cut`` (``cut_model``), on
        ``precision.device``.
    dataset : the split's images, read with the evaluation transform at ``config.image_size`` (or the
        backbone's own size).
    config, spec : the run and its backbone: they name the features in the cache (backbone, starting weights,
        cut, image size and the split's exact files, with what decides their rounding: the device, its mixed
        precision and, on the CPU, torch's thread count); ``config.disk_cache`` also keeps them on disk.
    split : the split's name, for messages.
    precision : the device and mixed precision to compute with.
    stop : checked before every batch.
    cut : where the prefix ends; None: the registry's ``spec.suffix_start``.
    cache : None: the process's ``FEATURE_CACHE``.

    Returns
    -------
    A generator: it yields (images done, images) while computing (``extract_features``) (nothing when the cache has them) and returns
    (features, labels) on the CPU; empty tensors for an empty split. Drain it with ``progress.Steps``.

    Raises
    ------
    StopRequested : when ``stop`` is set while computing.
    DatasetError : when no image of the split could be read.
    """
    if len(dataset) == 0:  # e.g. val_fraction=0: nothing to evaluate
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    cache = cache if cache is not None else FEATURE_CACHE
    cut = cut or spec.suffix_start
    image_size = config.image_size or spec.input_size
    # The same run on 1 and 2 CPU threads, or under bf16, computes features that differ in their last bits: one
    # run's features reused by another would make its numbers depend on what ran before it in this process.
    rounding = (precision.device.type, str(precision.dtype),
                torch.get_num_threads() if precision.device.type == "cpu" else None)
    key = cache.key("prefix", config.backbone, weights_id(config.weights, config.checkpoint), cut, image_size,
                    samples_digest(dataset), rounding)
    value = cache.get(key, disk=config.disk_cache,
                      accept=lambda found: _fits(prefix, found, image_size, dataset, precision.device))
    if value is None:
        batch_size = FEATURE_BATCH_SIZE if precision.device.type == "cuda" else CPU_FEATURE_BATCH_SIZE
        loader = make_loader(dataset, build_transform(image_size, spec.mean, spec.std, train=False), batch_size,
                             precision.device)
        value = yield from extract_features(prefix, loader, precision, stop, split)
        cache.put(key, value, disk=config.disk_cache)
    return value


def _fits(prefix: nn.Module, features: Features, image_size: int, dataset: ImageListDataset,
          device: torch.device) -> bool:
    """Whether features read from disk are what ``prefix`` makes for ``dataset`` (a tampered or stale file is
    recomputed): the shape of one image's features, and labels that are the split's own, in its order, with
    at most the images that could not be read left out (a rewritten label is caught here, whatever digest
    came with it)."""
    values, labels = features
    with torch.no_grad():
        expected = prefix.eval()(torch.zeros(1, 3, image_size, image_size, device=device)).shape[1:]
    return values.shape[1:] == expected and _in_order_within(labels.tolist(), dataset.targets)


def _in_order_within(labels: list[int], targets: list[int]) -> bool:
    """Whether ``labels`` is ``targets`` with some entries left out (a subsequence, in order)."""
    remaining = iter(targets)
    return all(any(label == target for target in remaining) for label in labels)


def pooled_features(suffix: nn.Module, classifier: nn.Module, cached: dict[str, Features],
                    device: torch.device) -> dict[str, Features]:
    """What the frozen suffix feeds ``classifier``, from the prefix features of each split."""
    captured: list[torch.Tensor] = []
    hook = classifier.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0].float().cpu()))
    pooled = {}
    try:
        suffix.eval()
        with torch.no_grad():
            for split, (features, labels) in cached.items():
                if len(labels) == 0:
                    pooled[split] = features, labels
                    continue
                captured.clear()
                for start in range(0, len(features), FEATURE_BATCH_SIZE):
                    suffix(features[start:start + FEATURE_BATCH_SIZE].to(device))
                pooled[split] = torch.cat(captured), labels
    finally:
        hook.remove()
    return pooled
