"""A layer's graph and every criterion's score per neuron; the layer-wise table of a whole model.

What ``cprune graph`` writes and the app's Layer-wise page shows, from any ``ModelSource`` (a backbone
or a weights file), with the core's own functions: layer_view.py for the scores (graph criteria share
one adjacency) and a graph's figures, graph.py for similarity, adjacency and layout,
centrality.concentration for the table, spectral.py for its data-free spectral columns.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from .centrality import concentration
from .criteria import CRITERIA
from .errors import ConfigError
from .graph import GraphSummary, adjacency_of, layout_2d, summarize
from .layer_view import GraphFigures, graph_figures, layer_scores
from .model_source import ModelSource
from .pruning import LayerInfo
from .ranges import TAU, choose
from .spectral import SPECTRAL_COLUMNS, LayerSpectrum, layer_spectrum, spectral_row

__all__ = ["MAX_GRAPH_NEURONS", "LayerReport", "check_graph_settings", "layer_report", "LAYERWISE_COLUMNS",
           "layerwise_row", "layerwise_rows"]

MAX_GRAPH_NEURONS = 16_384  # a 16,384-neuron similarity matrix is 1 GiB of float32
LAYERWISE_COLUMNS = ("layer", "kind", "neurons", "vector_length", "edges", "density", "components", "isolated",
                     "largest_component", "gini", "top10_share", "note", *SPECTRAL_COLUMNS)


def _check_size(neurons: int, layer: str) -> None:
    if neurons > MAX_GRAPH_NEURONS:
        raise ConfigError(f"Layer {layer} has {neurons:,} neurons; graphs are built for up to "
                          f"{MAX_GRAPH_NEURONS:,} (its similarity matrix alone would take "
                          f"{neurons * neurons * 4 / 2**30:,.1f} GiB).")


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


def _figures_of(source: ModelSource, tau: float, layer: str) -> GraphFigures:
    return graph_figures(adjacency_of(source.weight_vectors(layer), tau))


def layerwise_row(info: LayerInfo, figures: GraphFigures | None, spectral: LayerSpectrum | None = None) -> dict:
    """The row of the layer-wise table (LAYERWISE_COLUMNS) of the layer ``info`` describes, from its graph's
    ``figures`` at the table's tau and its ``spectral`` figures (None: those columns None); ``figures`` None: a
    layer over MAX_GRAPH_NEURONS neurons, whose row has its name, kind, sizes and spectral figures, no graph
    figures (None) and a note saying why."""
    row = {column: None for column in LAYERWISE_COLUMNS}
    row.update(layer=info.name, kind=info.kind, neurons=info.neurons, vector_length=info.vector_length, note="")
    if spectral is not None:
        row.update(spectral_row(spectral))
    if figures is None:
        row["note"] = f"no graph: over {MAX_GRAPH_NEURONS:,} neurons"
        return row
    summary = figures.summary
    gini, top10 = concentration(torch.from_numpy(figures.centrality))
    row.update(edges=summary.edges, density=summary.density, components=summary.components,
               isolated=summary.isolated, largest_component=summary.largest_component, gini=gini, top10_share=top10,
               note=figures.centrality_note)
    return row


def layerwise_rows(source: ModelSource, tau: float, figures: Callable[[str], GraphFigures] | None = None,
                   spectra: Callable[[str], LayerSpectrum] | None = None) -> list[dict]:
    """The layer-wise table at ``tau``: one row per layer of ``source.graph_layers`` (``layerwise_row``), with
    the graph's edges, density, components, isolated neurons, largest component, how concentrated
    eigenvector centrality is (Gini coefficient, share of the top 10% of neurons), and the data-free spectral
    figures (``spectral.SPECTRAL_COLUMNS``: the ESD's tail exponent alpha with its fit, alpha of the shuffled
    weights, stable rank, spectral norm).

    Parameters
    ----------
    source : a backbone's prunable layers, or every layer of a weights file.
    tau : the threshold of every layer's graph.
    figures : ``figures(layer)`` gives a layer's ``GraphFigures`` at ``tau`` (the app passes its cached
        ``LayerGraph``); None: ``graph_figures(adjacency_of(source.weight_vectors(layer), tau))``.
    spectra : ``spectra(layer)`` gives a layer's ``LayerSpectrum`` (the app passes its cached one); None:
        ``spectral.layer_spectrum(source, layer)``.

    Returns
    -------
    The rows, in the source's layer order. A layer over MAX_GRAPH_NEURONS neurons gets a note and no graph
    figures (its spectral figures are computed); a power iteration stopped at its budget, a note and the last
    iterate's figures; an undefined spectral figure is NaN, and ``spectral_note`` says why.

    Raises
    ------
    ConfigError : a tau out of range (before any layer is read). NonFiniteWeightsError : a layer has NaN or Inf
    weights.
    """
    check_graph_settings(tau)
    figures = figures or partial(_figures_of, source, tau)
    spectra = spectra or partial(layer_spectrum, source)
    infos = {info.name: info for info in source.layers}
    return [layerwise_row(infos[layer], figures(layer) if infos[layer].neurons <= MAX_GRAPH_NEURONS else None,
                          spectra(layer))
            for layer in source.graph_layers]
