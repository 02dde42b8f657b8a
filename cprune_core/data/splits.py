"""Seeded, stratified train/val/test splits and few-shot subsets of an ``Index``."""
from __future__ import annotations

import math
import random

from ..errors import ConfigError
from ..ranges import FRACTION
from .indexing import Index

__all__ = ["SPLITS", "check_split_arguments", "stratified_split", "keep_per_class"]

SPLITS = ("train", "val", "test")


def check_split_arguments(val_fraction: float, test_fraction: float, train_per_class: int | None) -> None:
    """ConfigError unless both fractions are in [0, 1) and leave images for training."""
    FRACTION.check(val_fraction, "val_fraction")
    FRACTION.check(test_fraction, "test_fraction")
    if val_fraction + test_fraction >= 1:
        raise ConfigError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must sum to less than 1, "
            "so that some images are left for training."
        )
    if train_per_class is not None and (isinstance(train_per_class, bool) or not isinstance(train_per_class, int)
                                        or train_per_class < 1):
        raise ConfigError(f"train_per_class must be a whole number of at least 1 (or None for all), "
                          f"got {train_per_class!r}.")


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _class_rng(seed: int, class_name: str, purpose: str) -> random.Random:
    # A string seed is hashed deterministically (unlike hash()), and per class, so adding a
    # class leaves the other classes' splits unchanged.
    return random.Random(f"{seed}/{class_name}/{purpose}")


def stratified_split(index: Index, seed: int, val_fraction: float, test_fraction: float) -> dict[str, list[list[str]]]:
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


def keep_per_class(paths_by_class: list[list[str]], classes: list[str], k: int, seed: int) -> list[list[str]]:
    """A seeded choice of k paths per class (all of them when a class has fewer)."""
    return [
        sorted(_class_rng(seed, name, "few-shot").sample(sorted(paths), min(k, len(paths))))
        for name, paths in zip(classes, paths_by_class)
    ]
