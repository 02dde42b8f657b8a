"""Which neurons a criterion keeps, and how its kept set compares with the others': what the Prune page shows.

``kept_set`` chooses exactly as ``prune_model`` does. Pruning ranks a layer of its own by its own scores,
and the channels of a residual stream (several coupled layers that lose the same channels) by the
criterion averaged over its layers (``GroupImportance``): ``pruning_scores`` and ``group_similarity`` follow
that rule, so ``kept_curves`` and ``kept_geometry`` describe the set pruning would really keep.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .geometry import KeptSetCurves, group_curves, group_similarities
from .graph import cosine_similarity
from .layer_view import criterion_scores
from .model_source import BackboneSource
from .pruning import PruningGraph, kept_indices
from .criteria import make_criterion

__all__ = ["GEOMETRY_SEEDS", "kept_set", "kept_mask", "kept_overlap", "prunes_alone", "group_similarity",
           "pruning_scores", "kept_curves", "kept_geometry"]

GEOMETRY_SEEDS = 8  # random's kept sets a geometry table averages: live as the Prune page's sliders move


def kept_set(scores: np.ndarray, count: int) -> set[int]:
    """The ``count`` best-scored neurons, chosen exactly as prune_model chooses them (ties in a seeded random order: ``pruning.ranking``)."""
    return set(kept_indices(torch.from_numpy(scores), count))


def kept_mask(scores: np.ndarray, count: int) -> np.ndarray:
    """``kept_set`` as one boolean per neuron."""
    mask = np.zeros(len(scores), bool)
    mask[list(kept_set(scores, count))] = True
    return mask


def kept_overlap(scores: Mapping[str, np.ndarray], criterion: str, count: int) -> pd.DataFrame:
    """How far the ``count`` neurons ``criterion`` keeps agree with those each other criterion keeps.

    Parameters
    ----------
    scores : criterion -> its scores of one layer's neurons (``criterion`` among them).
    criterion : the criterion whose kept set is compared.
    count : the neurons kept, at least 1.

    Returns
    -------
    One row per other criterion of ``scores``, in their order: "criterion" and "Jaccard with kept set", the
    Jaccard index of the two kept sets (1: the same neurons).

    Example: with ``scores = {"a": np.array([3., 2, 1]), "b": np.array([1., 2, 3])}``, ``kept_overlap(scores,
    "a", 2)`` has one row, b, 1/3 (kept {0, 1} and {1, 2}).
    """
    kept = kept_set(scores[criterion], count)
    rows = []
    for other, theirs in scores.items():
        if other != criterion:
            other_kept = kept_set(theirs, count)
            rows.append({"criterion": other, "Jaccard with kept set": len(kept & other_kept) / len(kept | other_kept)})
    return pd.DataFrame(rows, columns=["criterion", "Jaccard with kept set"])


def prunes_alone(graph: PruningGraph, layer: str) -> bool:
    """Whether pruning ranks ``layer``'s channels by its own scores: its group is the layer alone (not a
    residual stream, nor a depthwise follower of another layer). ConfigError for a layer that cannot be
    pruned."""
    return list(graph.group_for(layer).layers) == [layer]


def group_similarity(source: BackboneSource, layer: str, similarity: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The similarity matrix of each layer whose channels go with ``layer``'s: its own for a layer pruned alone
    (``similarity`` when the caller has it), every coupled layer's for a residual stream."""
    if prunes_alone(source.graph, layer):
        return [similarity if similarity is not None else cosine_similarity(source.weight_vectors(layer))]
    return group_similarities(source.backbone.model, source.graph.group_for(layer))


def pruning_scores(source: BackboneSource, layer: str, criterion: str, tau: float, seed: int = 0,
                   own_scores: np.ndarray | None = None) -> np.ndarray:
    """The scores pruning ranks ``layer``'s channels by: the layer's own (``criterion_scores``) when it is
    pruned alone, the criterion averaged over the coupled layers for a residual stream (float64).
    ``own_scores``: the layer's own scores by this criterion, tau and seed, when the caller has them."""
    if prunes_alone(source.graph, layer):
        return own_scores if own_scores is not None else criterion_scores(source.weight_vectors(layer), criterion, tau,
                                                                          seed=seed)[0]
    group = source.graph.group_for(layer)
    return source.graph.group_scores(group, make_criterion(criterion, tau, seed)).double().numpy()


def kept_curves(source: BackboneSource, layer: str, criterion: str, tau: float, seed: int = 0, *,
                similarities: Sequence[torch.Tensor] | None = None,
                own_scores: np.ndarray | None = None) -> KeptSetCurves:
    """Redundancy and coverage of ``criterion``'s kept set of every size in ``layer``'s group, its channels
    ranked as pruning ranks them (``pruning_scores``; ``atlas.group_curves``). ``similarities``: the group's
    matrices (``group_similarity``) and ``own_scores`` the layer's own scores, when the caller has them."""
    if similarities is None:
        similarities = group_similarity(source, layer)
    return group_curves(similarities, pruning_scores(source, layer, criterion, tau, seed, own_scores))


def kept_geometry(curves: Mapping[str, KeptSetCurves], random: Sequence[KeptSetCurves], count: int) -> pd.DataFrame:
    """Each criterion's kept set of ``count`` neurons: its redundancy and coverage, and each minus random's.

    Parameters
    ----------
    curves : criterion -> its ``kept_curves`` (random left out).
    random : random's ``kept_curves``, one per seed (GEOMETRY_SEEDS of them on the Prune page); at least one.
    count : the neurons kept (0 to n).

    Returns
    -------
    One row per criterion of ``curves``, then "random (mean of N seeds)": "criterion", "redundancy",
    "redundancy − random", "coverage", "coverage − random" (NaN where a figure is undefined: redundancy
    below 2 kept, coverage with none or all kept).
    """
    def at(found: KeptSetCurves) -> tuple[float, float]:
        return float(found.redundancy[count]), float(found.coverage[count])

    mean = np.mean([at(found) for found in random], axis=0)
    rows = [(name, *at(found)) for name, found in curves.items()]
    rows.append((f"random (mean of {len(random)} seeds)", *mean))
    table = pd.DataFrame(rows, columns=["criterion", "redundancy", "coverage"])
    table.insert(2, "redundancy − random", table["redundancy"] - mean[0])
    table["coverage − random"] = table["coverage"] - mean[1]
    return table
