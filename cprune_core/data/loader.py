"""The one loader factory (as timm's ``create_loader``): every DataLoader of images CPrune reads is made here."""
from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader

from .dataset import ImageListDataset, collate_skip_bad

__all__ = ["make_loader", "loader_workers"]


def loader_workers(device: torch.device) -> int:
    """Worker processes that read images: none on the CPU (the model needs every core; workers would only
    compete with it), else up to 8 (a GPU waits for images read on the main thread)."""
    return 0 if device.type == "cpu" else min(8, os.cpu_count() or 1)


def make_loader(dataset: ImageListDataset, transform: Callable | None, batch_size: int, device: torch.device, *,
                shuffle_seed: int | None = None) -> DataLoader:
    """Batches of ``dataset`` read with ``transform``, for a model on ``device``.

    Parameters
    ----------
    dataset : the images (its own transform is replaced by ``transform``; the dataset is not changed).
    transform : what turns a PIL image into a tensor (``build_transform``).
    batch_size : images per batch; the last batch may be smaller.
    device : where the batches go. On a GPU: ``loader_workers`` worker processes and pinned memory, so
        images are read while the GPU computes; on the CPU: read on the main thread.
    shuffle_seed : None: in order. A number: shuffled anew each epoch by a generator seeded with it.

    Returns
    -------
    A ``DataLoader`` whose batches are ``(images, labels)``, or None when no image of the batch could be
    read (``collate_skip_bad``; the unreadable ones are counted in ``dataset.n_failed``).

    Every loader draws from a generator of its own, never from torch's global one: a run's numbers
    (dropout, augmentation) then do not depend on how often a loader was iterated, nor on whether
    features came from a cache.
    """
    generator = torch.Generator().manual_seed(0 if shuffle_seed is None else shuffle_seed)
    return DataLoader(dataset.with_transform(transform), batch_size=batch_size, shuffle=shuffle_seed is not None,
                      generator=generator, collate_fn=collate_skip_bad, num_workers=loader_workers(device),
                      pin_memory=device.type == "cuda")
