"""A layer's graph and every criterion's score per neuron; the layer-wise table of a whole model.

What ``cprune graph`` writes, from any ``ModelSource`` (a backbone or a weights file), with the
core's own functions: graph.py for similarity, adjacency, summary and layout, criteria.py for
the scores (graph criteria share one adjacency), centrality.concentration for the table.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .centrality import concentration
from .criteria import CRITERIA, make_criterion
from .errors import ConfigError, CPruneError
from .graph import GraphSummary, adjacency_of, layout_2d, summarize
from .model_source import ModelSource
from .ranges import TAU, choose

__all__ = ["MAX_GRAPH_NEURONS", "LayerReport", "layer_scores", "check_graph_settings", "layer_report", "layerwise_rows",
           "LAYERWISE_COLUMNS"]

MAX_GRAPH_NEURONS = 16_384  # a 16,384-neuron similarity matrix is 1 GiB of float32
LAYERWISE_COLUMNS = ("layer", "kind", "neurons", "vector_length", "edges", "density", "components", "isolated",
                     "largest_component", "gini", "top10_share", "note")


def _check_size(neurons: int, layer: str) -> None:
    if neurons > MAX_GRAPH_NEURONS:
        raise ConfigError(f"Layer {layer} has {neurons:,} neurons; graphs are built for up to "
                          f"{MAX_GRAPH_NEURONS:,} (its similarity matrix alone would take "
                          f"{neurons * neurons * 4 / 2**30:,.1f} GiB).")


def layer_scores(vectors: torch.Tensor, criteria: Sequence[str], tau: float,
                 adjacency: torch.Tensor | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each criterion's score per neuron on ``vectors`` at ``tau``, and a note for each criterion that did
    not give exact scores.

    Parameters
    ----------
    vectors : n x d weight vectors of one layer.
    criteria : names from ``CRITERIA``.
    tau : the graph criteria's threshold.
    adjacency : the tau-thresholded similarity of ``vectors``, shared by the graph criteria (computed when None).

    Returns
    -------
    (scores, notes): criterion -> n scores (higher: keep; ``random`` uses seed 0); criterion -> a sentence for
    a criterion whose power iteration stopped at its budget (its scores are the last iterate) or that could not
    be computed at all (a ``CPruneError`` or running out of memory: it is then absent from ``scores``). One
    criterion's failure never takes the others down.

    Raises
    ------
    ConfigError : an unknown criterion or a tau out of range (before any work).

    Example: ``layer_scores(torch.eye(3), ["l1", "degree"], 0.1)[0]["l1"]`` is ``array([1., 1., 1.], ...)``.
    """
    scorers = {name: make_criterion(name, tau) for name in criteria}
    if adjacency is None and any(scorer.uses_graph for scorer in scorers.values()):
        adjacency = adjacency_of(vectors, tau)
    scores, notes = {}, {}
    for name, scorer in scorers.items():
        try:
            if scorer.uses_graph:
                result = scorer.from_adjacency(adjacency)
                scores[name], notes[name] = result.scores.cpu().numpy(), result.note(name)
            else:
                scores[name] = scorer(vectors).cpu().numpy()
        except (CPruneError, MemoryError) as error:
            notes[name] = f"{name} could not be computed ({error})"
    return scores, {name: note for name, note in notes.items() if note}


@dataclass(frozen=True)
class LayerReport:
    """One layer's thresholded similarity graph and its neurons' scores."""

    layer: str
    tau: float
    adjacency: torch.Tensor  # n x n, cosine similarity where above tau, 0 elsewhere and on the diagonal
    summary: GraphSummary
    scores: dict[str, np.ndarray]  # criterion -> one score per neuron
    notes: dict[str, str]  # criterion -> why its scores are approximate or missing (layer_scores)
    neighbours: np.ndarray  # edges per neuron (the "degree" criterion is their summed weights)
    norms: np.ndarray  # L2 norm of each neuron's weight vector
    positions: np.ndarray  # n x 2, the weight-PCA layout (graph.layout_2d): independent of tau

    def node_values(self) -> dict[str, np.ndarray]:
        """Per-neuron columns, as graph.graph_file takes them: every score (named by its criterion), the
        number of neighbours, the weight vector's norm, the position."""
        return {**self.scores, "neighbours": self.neighbours, "l2_norm": self.norms,
                "pca_x": self.positions[:, 0], "pca_y": self.positions[:, 1]}


def check_graph_settings(tau: float, criteria: Sequence[str] = ()) -> None:
    """ConfigError for a tau out of range (NaN and infinities included) or an unknown criterion: what
    ``layer_report`` and ``layerwise_rows`` check first, for a caller to check before it opens a model."""
    TAU.check(tau, "tau")
    for name in criteria:
        choose(name, CRITERIA, "criterion")


def layer_report(source: ModelSource, layer: str, tau: float, criteria: Sequence[str] = tuple(CRITERIA)) -> LayerReport:
    """The graph of ``layer`` of ``source`` at ``tau`` and every criterion's score per neuron.

    Raises ConfigError for an unknown layer or criterion, a tau out of range, or a layer of more than
    MAX_GRAPH_NEURONS neurons; NonFiniteWeightsError for NaN or Inf weights.
    """
    check_graph_settings(tau, criteria)
    known = {info.name: info for info in source.layers}
    if layer in known:  # a layer too large is refused before its values are read (an unknown one: weight_vectors)
        _check_size(known[layer].neurons, layer)
    vectors = source.weight_vectors(layer)
    adjacency = adjacency_of(vectors, tau)
    scores, notes = layer_scores(vectors, criteria, tau, adjacency)
    return LayerReport(layer, tau, adjacency, summarize(adjacency), scores, notes, (adjacency > 0).sum(1).numpy(),
                       vectors.norm(dim=1).numpy(), layout_2d(vectors))


def _layerwise_row(source: ModelSource, layer: str, tau: float) -> dict:
    info = next(row for row in source.layers if row.name == layer)
    row = {column: None for column in LAYERWISE_COLUMNS}
    row.update(layer=layer, kind=info.kind, neurons=info.neurons, vector_length=info.vector_length, note="")
    if info.neurons > MAX_GRAPH_NEURONS:
        row["note"] = f"no graph: over {MAX_GRAPH_NEURONS:,} neurons"
        return row
    adjacency = adjacency_of(source.weight_vectors(layer), tau)
    centrality = make_criterion("eigenvector", tau).from_adjacency(adjacency)
    summary = summarize(adjacency)
    gini, top10 = concentration(centrality.scores)
    row.update(edges=summary.edges, density=summary.density, components=summary.components,
               isolated=summary.isolated, largest_component=summary.largest_component, gini=gini, top10_share=top10,
               note=centrality.note("eigenvector"))
    return row


def layerwise_rows(source: ModelSource, tau: float) -> list[dict]:
    """One row per layer of ``source.graph_layers`` at ``tau`` (LAYERWISE_COLUMNS): the graph's edges,
    density, components, isolated neurons, largest component, and how concentrated eigenvector centrality
    is (Gini coefficient, share of the top 10% of neurons). A layer over MAX_GRAPH_NEURONS neurons gets a
    note and no figures; a power iteration stopped at its budget, a note and the last iterate's figures.
    NonFiniteWeightsError when a layer has NaN or Inf weights."""
    check_graph_settings(tau)
    return [_layerwise_row(source, layer, tau) for layer in source.graph_layers]
