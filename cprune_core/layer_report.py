"""A layer's graph and every criterion's score per neuron; the layer-wise table of a whole model.

What ``cprune graph`` writes and the app's Layer-wise page shows, from any ``ModelSource`` (a backbone
or a weights file), with the core's own functions: layer_view.py for the blockwise scan of a layer (its graph
in a memory budget, ``blockwise``) and the scores (graph criteria share one graph), centrality.concentration
for the table, spectral.py for its data-free spectral columns. The table runs one task per layer on any
executor (this process, or Ray: ``experiment.executors``), each row kept in the graph cache (``graph_cache``)
under the layer's identity and tau as soon as it is made, so an interrupted table resumes where it stopped.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .blockwise import MAX_GRAPH_NEURONS, GraphBudget
from .centrality import concentration
from .criteria import CRITERIA
from .graph import GraphSummary, summarize
from .graph_cache import GraphCache, entry_key, layer_identity
from .layer_view import GraphFigures, graph_figures, scan_layer, scan_scores
from .model_source import BackboneSource, FileSource, ModelSource
from .progress import ProgressCallback, check_stop, report
from .pruning import LayerInfo
from .errors import ConfigError
from .ranges import TAU, choose
from .sparse_graph import SparseGraph
from .spectral import SPECTRAL_COLUMNS, LayerSpectrum, layer_spectrum, spectral_row
from .weights import LOCAL_BUDGET

__all__ = ["MAX_GRAPH_NEURONS", "LayerReport", "check_graph_settings", "layer_report", "LAYERWISE_COLUMNS",
           "layerwise_row", "layer_row", "SourceOpener", "layerwise_rows"]

LAYERWISE_COLUMNS = ("layer", "kind", "neurons", "vector_length", "edges", "density", "components", "isolated",
                     "largest_component", "gini", "top10_share", "note", *SPECTRAL_COLUMNS)


@dataclass(frozen=True)
class LayerReport:
    """One layer's thresholded similarity graph and its neurons' scores."""

    layer: str
    tau: float
    adjacency: SparseGraph  # the edges whose cosine similarity is above tau, each pair once
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


def layer_report(source: ModelSource, layer: str, tau: float, criteria: Sequence[str] = tuple(CRITERIA),
                 budget: GraphBudget | None = None, progress: ProgressCallback | None = None,
                 stop: threading.Event | None = None) -> LayerReport:
    """The graph of ``layer`` of ``source`` at ``tau`` and every criterion's score per neuron, in one blockwise pass
    over the layer (``layer_view.scan_layer``: memory within ``budget``, whatever its size; ``progress`` as it
    goes).

    Raises ConfigError for an unknown layer or criterion, a tau out of range, a layer over MAX_GRAPH_NEURONS
    neurons or the budget (before its values are read), or more edges than the budget holds (raise tau);
    NonFiniteWeightsError for NaN or Inf weights.
    """
    check_graph_settings(tau, criteria)
    distances = any(CRITERIA[name].uses_distances for name in criteria)
    scan = scan_layer(source, layer, tau=tau, distances=distances, layout=True, budget=budget, progress=progress,
                      stop=stop)
    scores, notes = scan_scores(scan, criteria, tau)
    return LayerReport(layer, tau, scan.graph, summarize(scan.graph), scores, notes, scan.graph.degree(), scan.norms,
                       scan.positions)


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


@dataclass(frozen=True)
class SourceOpener:
    """How a task opens the model again in its own process (a Ray worker): a weights file or folder, read with
    ``weights.LOCAL_BUDGET``, or a registry backbone with its weights. Calling it gives the ``ModelSource``,
    opened once per process."""

    weights: str | None = None
    backbone: str | None = None
    backbone_weights: str = "pretrained"

    def __call__(self) -> ModelSource:
        return _opened(self)


@lru_cache(maxsize=2)
def _opened(opener: SourceOpener) -> ModelSource:
    if opener.weights is not None:
        return FileSource.open(opener.weights, LOCAL_BUDGET)
    return BackboneSource.load(opener.backbone, opener.backbone_weights)


def layer_row(open_source: Callable[[], ModelSource], layer: str, tau: float,
              figures: Callable[[str], GraphFigures] | None = None,
              spectra: Callable[[str], LayerSpectrum] | None = None) -> dict:
    """One row of the layer-wise table (``layerwise_row``): a task any executor runs. ``open_source()`` gives the
    model (a ``SourceOpener`` in another process); ``figures``, ``spectra`` as ``layerwise_rows`` takes them. A
    layer over MAX_GRAPH_NEURONS neurons, or whose graph at ``tau`` has more edges than the graph budget holds,
    gets a row without graph figures and a note saying why."""
    source = open_source()
    info = source.info(layer)
    graph, why = None, f"no graph: over {MAX_GRAPH_NEURONS:,} neurons"
    if info.neurons <= MAX_GRAPH_NEURONS:
        try:
            graph = figures(layer) if figures else graph_figures(scan_layer(source, layer, tau=tau).graph)
        except ConfigError as error:  # more edges than the budget holds
            why = f"no graph: {error}"
    row = layerwise_row(info, graph, spectra(layer) if spectra else layer_spectrum(source, layer))
    return row if graph is not None else {**row, "note": why}


def layerwise_rows(source: ModelSource, tau: float, figures: Callable[[str], GraphFigures] | None = None,
                   spectra: Callable[[str], LayerSpectrum] | None = None, *, executor=None,
                   reopen: Callable[[], ModelSource] | None = None, records: GraphCache | None = None,
                   progress: ProgressCallback | None = None, stop: threading.Event | None = None) -> list[dict]:
    """The layer-wise table at ``tau``: one row per layer of ``source.graph_layers`` (``layer_row``), with
    the graph's edges, density, components, isolated neurons, largest component, how concentrated
    eigenvector centrality is (Gini coefficient, share of the top 10% of neurons), and the data-free spectral
    figures (``spectral.SPECTRAL_COLUMNS``: the ESD's tail exponent alpha with its fit, alpha of the shuffled
    weights, stable rank, spectral norm).

    Parameters
    ----------
    source : a backbone's prunable layers, or every layer of a weights file.
    tau : the threshold of every layer's graph.
    figures : ``figures(layer)`` gives a layer's ``GraphFigures`` at ``tau`` (the app passes its cached
        ``LayerGraph``); None: the blockwise graph of the layer (``layer_view.scan_layer``).
    spectra : ``spectra(layer)`` gives a layer's ``LayerSpectrum`` (the app passes its cached one); None:
        ``spectral.layer_spectrum(source, layer)``.
    executor : runs one task per layer (``experiment.executors``' LocalExecutor or RayExecutor, entered), yielding
        rows as layers end; None: one layer after another in this process.
    reopen : how a task in another process opens the model (``SourceOpener``); None: the tasks use ``source``
        itself (this process only).
    records : where each row is kept as soon as it is made, under the layer's identity and tau
        (``graph_cache.layer_identity``), and found again: a table stopped midway resumes with the layers left.
        None: nothing recorded.
    progress : ``progress(done, total, message)`` after each layer; stop : a set Event ends it (StopRequested).

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
    layers = list(source.graph_layers)
    keys = {layer: entry_key(layer_identity(source, layer), "layerwise-row", tau=float(tau))
            for layer in layers} if records is not None else {}
    rows = {layer: row for layer, key in keys.items() if (row := _recorded(records, key)) is not None}
    todo = [layer for layer in layers if layer not in rows]
    jobs = [(reopen or (lambda: source), layer, tau, figures, spectra) for layer in todo]
    report(progress, len(rows), len(layers), f"{len(rows)} of {len(layers)} layers recorded before")
    results = executor.map(layer_row, jobs, stop) if executor is not None else (
        (index, layer_row(*job)) for index, job in enumerate(jobs))
    for index, row in results:
        check_stop(stop)
        layer = todo[index]
        rows[layer] = row
        if records is not None:
            records.put(keys[layer], {"row": np.array(json.dumps(row, default=_plain))})
        edges = "no graph" if row["edges"] is None else f"{row['edges']:,} edges"
        report(progress, len(rows), len(layers), f"{layer}: {edges}")
    return [rows[layer] for layer in layers]


def _recorded(records: GraphCache, key: str) -> dict | None:
    stored = records.get(key)
    try:
        return json.loads(str(stored["row"])) if stored is not None else None
    except (KeyError, ValueError):
        return None


def _plain(value):
    """NumPy's scalars as Python's, for JSON."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")
