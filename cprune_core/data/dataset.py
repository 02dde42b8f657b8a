"""A split as a torch Dataset of image files, and the three splits of a loaded dataset."""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from ..errors import UnreadableImageError
from .images import open_rgb
from .splits import SPLITS

__all__ = ["ImageListDataset", "collate_skip_bad", "DatasetSplits"]

log = logging.getLogger(__name__)


class ImageListDataset(Dataset):
    """A list of (image path, label) pairs; items are (tensor, label).

    An item whose file cannot be decoded comes back as None, which `collate_skip_bad` drops;
    each such sample is flagged once in shared memory, so failures seen in DataLoader worker
    processes are counted too (`n_failed`, `failed_paths`). With ``roots`` (a visitor's dataset),
    a file is read only when the file actually opened lies inside them (``open_confined``).
    """

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        classes: Sequence[str],
        transform: Callable | None = None,
        roots: list[Path] | None = None,
    ) -> None:
        self.samples = [(str(path), int(label)) for path, label in samples]
        self.classes = list(classes)
        self.transform = transform
        self.roots = roots
        self._failed = torch.zeros(len(self.samples), dtype=torch.uint8).share_memory_()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        path, label = self.samples[index]
        try:
            image = open_rgb(path, self.roots)
        except UnreadableImageError as err:
            if not self._failed[index]:
                log.warning("Skipping unreadable image: %s", err)
            self._failed[index] = 1
            return None
        if self.transform is None:
            from torchvision.transforms.v2 import functional  # with the first image: torchvision takes seconds

            return functional.to_dtype(functional.to_image(image), torch.float32, scale=True), label
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
