"""Accuracy of a model on batches or on a dataset, overall and per class."""
from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from .data import ImageListDataset, make_loader
from .device import Precision, to_device
from .progress import ProgressCallback, check_stop, report

__all__ = ["Evaluation", "accuracy_counts", "accuracy", "evaluate_model"]


@dataclass
class Evaluation:
    """``evaluate_model``'s figures: overall accuracy and counts, and per class."""

    accuracy: float | None  # None when no sample could be evaluated
    correct: int
    total: int
    per_class: dict[str, tuple[int, int]]  # class -> (correct, total)


def accuracy_counts(model: nn.Module, batches: Iterable, device: torch.device, precision: Precision,
                    num_classes: int, stop: threading.Event | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct, total) per label over ``batches`` of (inputs, labels); None batches are skipped.
    StopRequested when ``stop`` is set (checked before every batch). The model is left in the mode it
    came in, also after a stop."""
    correct = torch.zeros(num_classes, dtype=torch.long)
    total = torch.zeros(num_classes, dtype=torch.long)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                check_stop(stop)
                if batch is None:
                    continue
                inputs, labels = to_device(batch, device)
                with precision.autocast():
                    predictions = model(inputs).argmax(1)
                labels, hits = labels.cpu(), (predictions == labels).cpu()
                total += torch.bincount(labels, minlength=num_classes)
                correct += torch.bincount(labels[hits], minlength=num_classes)
    finally:
        model.train(was_training)
    return correct, total


def accuracy(model: nn.Module, batches: Iterable, device: torch.device, precision: Precision, num_classes: int,
             stop: threading.Event | None = None) -> float | None:
    """Overall accuracy over ``batches`` (None when there was nothing to evaluate)."""
    correct, total = accuracy_counts(model, batches, device, precision, num_classes, stop)
    return int(correct.sum()) / int(total.sum()) if int(total.sum()) else None


def evaluate_model(model: nn.Module, dataset: ImageListDataset, transform, *, batch_size: int = 64,
                   device: str | torch.device = "cpu", label_map: list[int] | None = None,
                   class_names: list[str] | None = None, progress: ProgressCallback | None = None) -> Evaluation:
    """Accuracy of ``model`` on ``dataset`` read with ``transform``, overall and per class.

    Parameters
    ----------
    model : moved to ``device`` and run in eval mode (left in the mode it came in).
    dataset, transform : the images and how to read them (``build_transform``), through ``make_loader``:
        on a GPU, in worker processes with pinned memory.
    batch_size, device : as ``make_loader``.
    label_map : ``label_map[dataset_label]`` is the model's output index for each dataset class
        (classes matched by name by the caller); None: the same indices.
    class_names : names for the per-class figures; None: the dataset's classes.
    progress : ``progress(images done, images, "Evaluating")`` before the first batch and after each.

    Returns
    -------
    Evaluation : accuracy None when no image could be read or the dataset is empty; unreadable images
    are skipped and counted in ``dataset.n_failed``.
    """
    device = torch.device(device)
    model = model.to(device)
    loader = make_loader(dataset, transform, batch_size, device)
    mapping = torch.tensor(label_map if label_map is not None else range(len(dataset.classes)))
    batches = _reported(loader, mapping, len(dataset), progress)
    num_outputs = int(mapping.max()) + 1
    correct, total = accuracy_counts(model, batches, device, Precision(device), num_outputs)
    names = class_names or dataset.classes
    per_class = {name: (int(correct[mapping[i]]), int(total[mapping[i]])) for i, name in enumerate(names)}
    n_correct, n_total = int(correct.sum()), int(total.sum())
    return Evaluation(n_correct / n_total if n_total else None, n_correct, n_total, per_class)


def _reported(loader, mapping: torch.Tensor, images: int, progress: ProgressCallback | None):
    """The loader's readable batches with their labels mapped, reporting the images done after each batch."""
    report(progress, 0, images, "Evaluating")
    for index, batch in enumerate(loader):
        if batch is not None:
            yield batch[0], mapping[batch[1]]
        report(progress, min((index + 1) * loader.batch_size, images), images, "Evaluating")
