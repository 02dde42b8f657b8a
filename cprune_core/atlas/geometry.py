"""Why a kept set costs what it costs: how redundant the kept neurons are, and how well they cover the removed ones.

Both figures read a layer's cosine-similarity matrix S (``graph.cosine_similarity`` of its weight vectors),
so they cost no forward pass: the Prune page can show them live as the keep ratio moves.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..graph import cosine_similarity
from ..layers import weight_vectors
from ..pruning import PrunableGroup

__all__ = ["KeptSetGeometry", "kept_set_geometry", "group_similarities", "group_geometry"]


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
