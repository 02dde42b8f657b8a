"""Why a kept set costs what it costs: how redundant the kept neurons are, and how well they cover the removed ones.

Both figures read a layer's cosine-similarity matrix S (``graph.cosine_similarity`` of its weight vectors),
so they cost no forward pass. ``group_curves`` gives them for every kept-set size of one ranking at once
(the Prune page reads them as the keep ratio moves).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .errors import ConfigError
from .graph import cosine_similarity
from .layers import weight_vectors
from .pruning import TIE_SEED, PrunableGroup, ranking

__all__ = ["KeptSetGeometry", "kept_set_geometry", "group_similarities", "group_geometry", "KeptSetCurves",
           "group_curves"]


@dataclass(frozen=True)
class KeptSetGeometry:
    """Redundancy and coverage of one kept set (NaN where undefined)."""

    redundancy: float  # mean cosine similarity over the pairs of kept neurons
    coverage: float  # mean, over the removed neurons, of the highest similarity to a kept neuron


def kept_set_geometry(similarity: torch.Tensor, keep: torch.Tensor) -> KeptSetGeometry:
    """Redundancy and coverage of the neurons ``keep`` marks, from their layer's similarity matrix.

    Parameters
    ----------
    similarity : n x n tensor, the cosine similarity of the layer's normalised weight vectors
        (``graph.cosine_similarity``); its diagonal is ignored, negative similarities count as they are.
    keep : n booleans, True for a kept neuron.

    Returns
    -------
    KeptSetGeometry: ``redundancy``, the mean of S[i, j] over the pairs i != j of kept neurons (NaN with
    fewer than 2 kept); ``coverage``, the mean over removed neurons r of max over kept k of S[r, k] (NaN
    when nothing is removed, or nothing kept). High redundancy: the kept neurons resemble one another (one
    dense cluster); high coverage: every removed neuron has a close kept twin.

    Raises
    ------
    ConfigError: ``keep`` is not n booleans, or ``similarity`` is not n x n.

    Example
    -------
    >>> s = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.25], [0.0, 0.25, 1.0]])
    >>> kept_set_geometry(s, torch.tensor([True, False, True]))
    KeptSetGeometry(redundancy=0.0, coverage=0.5)
    """
    n = similarity.shape[0] if similarity.ndim == 2 else -1
    if similarity.shape != (n, n) or keep.shape != (n,) or keep.dtype != torch.bool:
        raise ConfigError(f"kept_set_geometry needs an n x n similarity matrix and n booleans; got "
                          f"{tuple(similarity.shape)} and {keep.dtype} {tuple(keep.shape)}.")
    similarity = similarity.float()
    kept, removed = keep.nonzero().flatten(), (~keep).nonzero().flatten()
    redundancy = coverage = math.nan
    if len(kept) >= 2:
        block = similarity[kept][:, kept]
        redundancy = float((block.sum() - block.diagonal().sum()) / (len(kept) * (len(kept) - 1)))
    if len(kept) and len(removed):
        coverage = float(similarity[removed][:, kept].max(1).values.mean())
    return KeptSetGeometry(redundancy, coverage)


def group_similarities(model: nn.Module, group: PrunableGroup) -> list[torch.Tensor]:
    """The similarity matrix of each layer whose neurons the group removes (one for a plain layer; one
    per coupled layer of a residual stream, whose scores ``GroupImportance`` averages likewise)."""
    return [cosine_similarity(weight_vectors(model.get_submodule(name), name)) for name in group.layers]


def group_geometry(similarities: Sequence[torch.Tensor], keep: torch.Tensor) -> KeptSetGeometry:
    """``kept_set_geometry`` averaged over the group's layers (exactly it for a group of one layer)."""
    each = [kept_set_geometry(similarity, keep) for similarity in similarities]
    if len(each) == 1:
        return each[0]
    return KeptSetGeometry(sum(g.redundancy for g in each) / len(each), sum(g.coverage for g in each) / len(each))


@dataclass(frozen=True)
class KeptSetCurves:
    """Redundancy and coverage of the kept set of every size, for one ranking: entry c is the set of the c
    best-ranked neurons (c = 0..n; NaN where undefined, as ``kept_set_geometry``)."""

    redundancy: np.ndarray  # n + 1 values
    coverage: np.ndarray


def _curves(similarity: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One layer's curves, S reordered by the ranking (R): the c best-ranked are R's first c rows and columns.
    Redundancy: the pairs within the first c grow by row c's entries left of the diagonal and column c's above
    it. Coverage: running maxima along each row give every neuron's best similarity to the first c; the
    removed neurons are the rows below c."""
    n = len(order)
    ranked = similarity.take(order, 0).take(order, 1)
    sizes = np.arange(n + 1, dtype=np.float64)
    redundancy, coverage = np.full(n + 1, math.nan), np.full(n + 1, math.nan)
    added = np.tril(ranked, -1).sum(1, dtype=np.float64) + np.triu(ranked, 1).sum(0, dtype=np.float64)
    redundancy[2:] = np.cumsum(added)[1:] / (sizes[2:] * (sizes[2:] - 1))
    best = np.maximum.accumulate(ranked, axis=1)  # [r, c - 1]: r's best similarity to the c best-ranked
    coverage[1:n] = np.tril(best, -1).sum(0, dtype=np.float64)[:n - 1] / (n - sizes[1:n])
    return redundancy, coverage


def group_curves(similarities: Sequence[torch.Tensor], scores: torch.Tensor | np.ndarray,
                 tie_seed: int = TIE_SEED) -> KeptSetCurves:
    """``group_geometry`` of the kept set of every size at once, for the ranking ``scores`` gives.

    Parameters
    ----------
    similarities : the group's similarity matrices (``group_similarities``), each n x n.
    scores : n scores, higher = keep, ranked as ``pruning.ranking`` ranks them (ties in a random order drawn with
        ``tie_seed``), so the kept set of size c is exactly the one ``pruning.kept_indices`` keeps with ``count`` c.
    tie_seed : as ``pruning.ranking``.

    Returns
    -------
    KeptSetCurves: entry c equals ``group_geometry(similarities, the c best-scored neurons)`` up to rounding
    (the sums are taken in another order), NaN where that is NaN (redundancy below 2 kept; coverage with 0
    or n kept). A few passes over each n x n matrix: about what one ``kept_set_geometry`` costs, for all
    n + 1 sizes.

    Raises
    ------
    ConfigError: a matrix is not n x n for the n scores.

    Example
    -------
    >>> s = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.25], [0.0, 0.25, 1.0]])
    >>> curves = group_curves([s], torch.tensor([3.0, 1.0, 2.0]))  # ranking 0, 2, 1
    >>> float(curves.redundancy[2]), float(curves.coverage[2])
    (0.0, 0.5)
    """
    order = ranking(torch.as_tensor(scores), tie_seed).numpy()
    n = len(order)
    each = []
    for similarity in similarities:
        if tuple(similarity.shape) != (n, n):
            raise ConfigError(f"group_curves needs n x n similarity matrices for n = {n} scores; got "
                              f"{tuple(similarity.shape)}.")
        each.append(_curves(similarity.detach().cpu().float().numpy(), order))
    return KeptSetCurves(np.mean([r for r, _ in each], axis=0), np.mean([c for _, c in each], axis=0))
