"""One layer's neuron graph and scores, as the app's pages and ``cprune graph`` read them.

``scan_layer`` reads a layer of any size from its ``ModelSource`` a block of rows at a time and builds its graph
in a memory budget (``blockwise``): the edges above tau (a ``SparseGraph``), the strongest edges with every tau
step's edge count (what the canvas is sent), each neuron's row-wise scores (l1, l2) and FPGM's distance sums,
the weight-PCA layout; ``scan_scores`` gives every criterion's scores from it. The other functions take plain
arguments: a layer's weight vectors (``ModelSource.weight_vectors``: one row per neuron) or the graph thresholded
at tau (a dense ``graph.threshold_adjacency`` or a ``SparseGraph``), so a caller that keeps them (the app, per
model, layer and tau) computes each once. ``layer_report`` builds the command line's outputs and the layer-wise
table on these.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from .blockwise import (GRAPH_SLOTS, DistanceSums, EdgesAbove, GraphBudget, GraphSlots, StrongestEdges,
                        check_graph_cost, read_normalised, scan_pairs)
from .centrality import POWER_TOLERANCE, power_iteration
from .criteria import CRITERIA, RANKING_MAX_ITER, graph_of, make_criterion
from .errors import ConfigError, CPruneError
from .graph import (MAX_FORCE_LAYOUT_NODES, GraphSummary, layout_2d, normalise_rows, strongest_edges, summarize,
                    tau_for_mean_degree, threshold_adjacency)
from .graph_view import EDGE_CAP
from .model_source import ModelSource
from .progress import ProgressCallback
from .ranges import TAU
from .sparse_graph import EdgeList, SparseGraph

__all__ = ["EDGE_LIMIT", "SUGGESTED_DEGREE", "TAU_STEP", "TAU_STEPS", "LAYOUTS", "LayerScan", "scan_layer", "scan_scores", "graph_above",
           "similarities_to", "criterion_scores",
           "layer_scores", "GraphFigures", "graph_figures", "LayerGraph", "layer_graph", "suggested_tau", "layout_for",
           "Walkthrough", "walkthrough"]

EDGE_LIMIT = 1500  # the strongest edges a LayerGraph keeps: what the app's physics view draws
SUGGESTED_DEGREE = 10  # edges per neuron at a layer's suggested tau: a graph one can read
LAYOUTS = {"force": "force-directed", "pca": "weight PCA"}  # the layouts a layer is drawn in, for people


@dataclass(frozen=True)
class LayerScan:
    """What one pass over a layer's blocks gave (``scan_layer``); each part None when it was not asked for."""

    neurons: int
    norms: np.ndarray  # the L2 norm of each neuron's weight vector
    row_scores: dict[str, np.ndarray]  # the row-wise criteria's scores (l1, l2), computed as the rows were read
    graph: SparseGraph | None  # every edge above tau
    strongest: EdgeList | None  # the strongest edges above taus[0], at most the cap
    counts: np.ndarray | None  # the whole graph's edge count above each of taus
    distance_sums: np.ndarray | None  # FPGM's scores
    positions: np.ndarray | None  # the weight-PCA layout (graph.layout_2d)


def scan_layer(source: ModelSource, layer: str, *, tau: float | None = None, taus: Sequence[float] | None = None,
               edge_cap: int = EDGE_CAP, distances: bool = False, layout: bool = False,
               budget: GraphBudget | None = None, slots: GraphSlots = GRAPH_SLOTS,
               progress: ProgressCallback | None = None, stop: threading.Event | None = None) -> LayerScan:
    """One layer's graph in one pass over its blocks, in a memory budget (``blockwise``).

    Parameters
    ----------
    source, layer : the model and the layer (its name as listed, or as the file writes it).
    tau : give the graph of every edge above it (``LayerScan.graph``).
    taus : ascending tau steps: give the ``edge_cap`` strongest edges above the first and the edge count above
        each (``strongest``, ``counts``: a canvas payload's).
    distances : give FPGM's summed distances; layout : give the weight-PCA layout.
    budget : the memory (default ``GraphBudget.from_settings()``); slots : the graphs built at once.
    progress, stop : ``progress(done, total, message)`` as blocks are read and compared (and while waiting for a
        slot); a set ``stop`` ends it with StopRequested.

    Returns
    -------
    A ``LayerScan``; the row-wise criteria's scores and the norms always.

    Raises
    ------
    ConfigError : an unknown layer, a tau out of range, a layer over ``blockwise.MAX_GRAPH_NEURONS`` or the budget
    (before any value is read), more edges above ``tau`` than the budget holds (raise tau).
    NonFiniteWeightsError : NaN or Inf weights.
    """
    info = source.info(layer)
    if tau is not None:
        TAU.check(tau, "tau")
    budget = budget or GraphBudget.from_settings()
    check_graph_cost(info.neurons, info.vector_length, layer, budget)
    row_wise = {name: make_criterion(name) for name, kind in CRITERIA.items() if kind.row_wise}
    with slots.held(progress, stop):
        rows = read_normalised(partial(_rows, source, layer), info.neurons, info.vector_length, budget, row_wise,
                               progress, stop)
        parts = {"graph": EdgesAbove(info.neurons, tau, budget.max_edges) if tau is not None else None,
                 "strongest": StrongestEdges(info.neurons, taus, edge_cap) if taus is not None else None,
                 "distances": DistanceSums(rows.norms) if distances else None}
        scan_pairs(rows.normalised, [part for part in parts.values() if part is not None], budget, progress, stop)
        positions = layout_2d(rows.normalised, normalised=True) if layout else None
    graph, strongest, distance = parts["graph"], parts["strongest"], parts["distances"]
    return LayerScan(info.neurons, rows.norms, rows.row_scores, graph.graph() if graph else None,
                     strongest.edges() if strongest else None, strongest.counts if strongest else None,
                     distance.sums.float().numpy() if distance else None, positions)


def _rows(source: ModelSource, layer: str, start: int, stop: int) -> torch.Tensor:
    """Rows start:stop of the layer (a NaN or Inf among them is named by its neuron's number in the layer)."""
    return source.weight_vectors(layer, (start, stop))


def scan_scores(scan: LayerScan, criteria: Sequence[str], tau: float) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each criterion's score per neuron from a ``scan_layer`` at ``tau`` (as ``layer_scores`` gives them from the
    vectors): the graph criteria from its graph, l1 and l2 from its rows, FPGM from its distance sums, random
    (seed 0) from its size. A criterion the scan holds nothing for (FPGM without ``distances``, a graph
    criterion without ``tau``) is absent, with a note."""
    scores, notes = {}, {}
    for name in criteria:
        scorer = make_criterion(name, tau)
        if scorer.uses_graph and scan.graph is not None:
            result = scorer.from_adjacency(scan.graph)
            scores[name], notes[name] = result.scores.cpu().numpy(), result.note(name)
        elif scorer.row_wise:
            scores[name] = scan.row_scores[name]
        elif scorer.uses_distances and scan.distance_sums is not None:
            scores[name] = scan.distance_sums
        elif not (scorer.uses_graph or scorer.uses_distances):
            scores[name] = scorer(torch.empty(scan.neurons, 0)).numpy()
        else:
            notes[name] = f"{name} could not be computed (the layer was read without what it needs)"
    return scores, {name: note for name, note in notes.items() if note}


def graph_above(scan: LayerScan, taus: Sequence[float], source: ModelSource, layer: str, tau: float,
                budget: GraphBudget | None = None, progress: ProgressCallback | None = None,
                stop: threading.Event | None = None) -> SparseGraph:
    """Every edge above ``tau`` of the layer ``scan`` scanned at the tau steps ``taus`` (its ``strongest`` and
    ``counts``): those of its strongest edges when they hold every edge above a step at or below ``tau``, else a
    scan of the layer at ``tau`` (``scan_layer``).

    Raises ConfigError (before any work, from the counts) when the graph at ``tau`` has more edges than
    ``budget.max_edges``: the sentence names the lowest step at which it has few enough.
    """
    budget = budget or GraphBudget.from_settings()
    below = [step for step, value in enumerate(taus) if value <= tau + 1e-9]
    step = below[-1] if below else 0
    if below and scan.counts[step] <= len(scan.strongest.weights):
        return SparseGraph.from_edges(scan.strongest).above(tau)
    if scan.counts[step] > budget.max_edges:
        fits = next((f"{value:.2f}" for value, count in zip(taus, scan.counts) if count <= budget.max_edges), "")
        raise ConfigError(f"At tau = {tau:.2f} this layer's graph has about {int(scan.counts[step]):,} edges, more "
                          f"than the {budget.max_edges:,} a graph is built with here (CPRUNE_GRAPH_MEMORY_MB)"
                          + (f": raise tau to {fits} or more." if fits else "."))
    return scan_layer(source, layer, tau=tau, budget=budget, progress=progress, stop=stop).graph


def criterion_scores(vectors: torch.Tensor, criterion: str, tau: float, adjacency: torch.Tensor | None = None,
                     seed: int = 0) -> tuple[np.ndarray, str]:
    """One criterion's score per neuron, and a note when they are not exact.

    Parameters
    ----------
    vectors : n x d weight vectors of one layer.
    criterion : a name from ``CRITERIA``.
    tau : the graph criteria's threshold.
    adjacency : the tau-thresholded similarity of ``vectors`` (dense, or a ``SparseGraph``), when the caller has it
        (a graph criterion computes it when None: ``criteria.graph_of``; the others ignore it).
    seed : the seed of ``random``.

    Returns
    -------
    (scores, note): n scores (higher: keep); "" or the sentence for a power iteration stopped at its budget
    (the scores are then its last iterate).

    Raises
    ------
    ConfigError : an unknown criterion or a tau out of range.

    Example: ``criterion_scores(torch.eye(3), "l1", 0.1)`` is ``(array([1., 1., 1.], ...), "")``.
    """
    scorer = make_criterion(criterion, tau, seed)
    if not scorer.uses_graph:
        return scorer(vectors).cpu().numpy(), ""
    result = scorer.from_adjacency(adjacency if adjacency is not None else graph_of(vectors, tau), vectors.device)
    return result.scores.cpu().numpy(), result.note(criterion)


def layer_scores(vectors: torch.Tensor, criteria: Sequence[str], tau: float,
                 adjacency: torch.Tensor | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each criterion's score per neuron on ``vectors`` at ``tau`` (``criterion_scores``, ``random`` with seed
    0), and a note for each criterion that did not give exact scores.

    Parameters
    ----------
    vectors : n x d weight vectors of one layer.
    criteria : names from ``CRITERIA``.
    tau : the graph criteria's threshold.
    adjacency : the tau-thresholded similarity of ``vectors``, shared by the graph criteria (computed when None).

    Returns
    -------
    (scores, notes): criterion -> n scores (higher: keep); criterion -> a sentence for a criterion whose power
    iteration stopped at its budget (its scores are the last iterate) or that could not be computed at all (a
    ``CPruneError`` or running out of memory: it is then absent from ``scores``). One criterion's failure never
    takes the others down.

    Raises
    ------
    ConfigError : an unknown criterion or a tau out of range (before any work).

    Example: ``layer_scores(torch.eye(3), ["l1", "degree"], 0.1)[0]["l1"]`` is ``array([1., 1., 1.], ...)``.
    """
    scorers = {name: make_criterion(name, tau) for name in criteria}
    if adjacency is None and any(scorer.uses_graph for scorer in scorers.values()):
        adjacency = graph_of(vectors, tau)
    scores, notes = {}, {}
    for name in scorers:
        try:
            scores[name], notes[name] = criterion_scores(vectors, name, tau, adjacency)
        except (CPruneError, MemoryError) as error:
            notes[name] = f"{name} could not be computed ({error})"
    return scores, {name: note for name, note in notes.items() if note}


def similarities_to(source: ModelSource, layer: str, neuron: int, budget: GraphBudget | None = None) -> np.ndarray:
    """The cosine similarity of ``neuron`` with each neuron of ``layer`` (itself included: 1), its rows read a block
    at a time: a neuron's row of S without S. ConfigError for a neuron outside the layer."""
    info = source.info(layer)
    if not 0 <= neuron < info.neurons:
        raise ConfigError(f"Layer {layer} has no neuron {neuron}: its neurons are 0 to {info.neurons - 1}.")
    target = normalise_rows(_rows(source, layer, neuron, neuron + 1))
    step = (budget or GraphBudget.from_settings()).rows_per_block(info.neurons, 8 * info.vector_length)
    return torch.cat([normalise_rows(_rows(source, layer, start, min(info.neurons, start + step)))
                      @ target.squeeze(0) for start in range(0, info.neurons, step)]).numpy()


@dataclass(frozen=True)
class GraphFigures:
    """What the layer-wise table reads of one layer's graph at one tau."""

    summary: GraphSummary
    centrality: np.ndarray  # eigenvector centrality per neuron (the paper's criterion)
    centrality_note: str  # non-empty when power iteration stopped before converging


def graph_figures(adjacency: torch.Tensor | SparseGraph) -> GraphFigures:
    """The summary of a thresholded graph (dense or a ``SparseGraph``: ``graph.summarize``) and its eigenvector
    centrality, as pruning computes it (``criteria.EigenvectorCentrality``; at most RANKING_MAX_ITER steps, then
    the last iterate and a note). A graph with no edge gives every neuron 1/sqrt(n)."""
    centrality = make_criterion("eigenvector").from_adjacency(adjacency)
    return GraphFigures(summarize(adjacency), centrality.scores.cpu().numpy(),
                        centrality.note("eigenvector centrality"))


@dataclass(frozen=True)
class LayerGraph(GraphFigures):
    """The thresholded similarity graph of one layer, as the views draw it."""

    degree: np.ndarray  # number of edges per neuron
    norms: np.ndarray  # L2 norm of each neuron's weight vector
    edge_rows: np.ndarray  # the strongest edges first, at most the limit given to layer_graph
    edge_cols: np.ndarray
    edge_weights: np.ndarray

    def node_values(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        """Per-neuron columns for ``graph.graph_file``: centrality, degree, L2 norm and the n x 2 ``positions``
        (a weight-PCA layout: ``graph.layout_2d``)."""
        return {"centrality": self.centrality, "degree": self.degree, "l2_norm": self.norms,
                "pca_x": positions[:, 0], "pca_y": positions[:, 1]}


def layer_graph(adjacency: torch.Tensor | SparseGraph, norms: np.ndarray, edge_limit: int = EDGE_LIMIT) -> LayerGraph:
    """``graph_figures`` of ``adjacency`` (dense or a ``SparseGraph``) with each neuron's degree, the weight
    vectors' ``norms`` (n) and the ``edge_limit`` strongest edges (i < j), strongest first."""
    figures = graph_figures(adjacency)
    rows, cols, weights, _ = strongest_edges(adjacency, edge_limit)
    degree = adjacency.degree() if isinstance(adjacency, SparseGraph) else (adjacency > 0).sum(1).cpu().numpy()
    return LayerGraph(figures.summary, figures.centrality, figures.centrality_note, degree, norms, rows, cols, weights)


TAU_STEP = 0.01  # the app's tau slider moves by it; a layer's edges are counted at every step


def _tau_steps(step: float) -> tuple[float, ...]:
    low = TAU.low + step if TAU.low_open else TAU.low
    high = TAU.high - step if TAU.high_open else TAU.high
    return tuple(float(t) for t in np.round(np.arange(low, high + step / 2, step), 2))


TAU_STEPS = _tau_steps(TAU_STEP)  # the slider's positions, lowest first: where edges are counted


def suggested_tau(taus: Sequence[float], counts: Sequence[int], neurons: int) -> float:
    """The largest of the ``taus`` at which the layer's neurons still have SUGGESTED_DEGREE edges each, from its
    edge ``counts`` there (``graph.tau_for_mean_degree``): where a random-init layer, all of whose similarities are
    near 0, still draws a graph; the first tau for fewer than two neurons."""
    return tau_for_mean_degree(taus, counts, neurons, SUGGESTED_DEGREE)


def layout_for(neurons: int, layout: str) -> str:
    """The layout (a key of LAYOUTS) a layer of ``neurons`` is drawn in when ``layout`` is asked for:
    force-directed up to graph.MAX_FORCE_LAYOUT_NODES neurons, weight PCA above (and when asked)."""
    return "force" if layout == "force" and neurons <= MAX_FORCE_LAYOUT_NODES else "pca"


WALKTHROUGH_NEURONS = 256  # a walkthrough keeps every pair: n x n matrices, n x n power-iteration rows
WALKTHROUGH_COLUMNS = 512  # W and W-hat as drawn: at most this many columns, each the mean of adjacent inputs


@dataclass(frozen=True)
class Walkthrough:
    """Every quantity of the method for one small layer, step by step, from the core's own functions."""

    weights: np.ndarray  # W: neurons x inputs, or x WALKTHROUGH_COLUMNS column means of a wider layer
    normalised: np.ndarray  # W-hat (each row divided by its L2 norm), its columns as W's
    inputs_per_column: float  # inputs averaged into each column of weights and normalised (1: every input)
    similarity: np.ndarray  # S = W-hat W-hat^T
    adjacency: np.ndarray  # A: S where S > tau, off the diagonal
    iterates: np.ndarray  # x_k of power iteration, one row per step k = 1..K
    changes: np.ndarray  # L1 change of each step
    eigenvalues: np.ndarray  # the eigenvalue estimate at each step
    converged: bool
    tolerance: float  # the L1 change below which iteration stops: n x tol
    centrality: np.ndarray  # what pruning ranks by (the eigenvector criterion's scores)


def walkthrough(source: ModelSource, layer: str, tau: float, columns: int = WALKTHROUGH_COLUMNS,
                budget: GraphBudget | None = None) -> Walkthrough:
    """The method on one small layer at ``tau``: its weight vectors (n x d) and their normalised rows, each shown
    as at most ``columns`` column means (a wide layer's d inputs averaged in groups of about d / columns); their
    similarity S (n x n, ``graph.cosine_similarity``'s numbers); the graph; every step of the power iteration (at
    most RANKING_MAX_ITER, as pruning's); the eigenvector criterion's scores.

    Its cost is bounded by the shape, whatever d: the rows are read a block at a time (two blocks of at most
    ``budget.block_bytes``; pairs of blocks multiplied when the layer is larger), and only n x columns values of W
    and W-hat are kept. ConfigError for a tau out of range or a layer of more than WALKTHROUGH_NEURONS neurons."""
    TAU.check(tau, "tau")
    info = source.info(layer)
    n, d = info.neurons, info.vector_length
    if n > WALKTHROUGH_NEURONS:
        raise ConfigError(f"Layer {layer} has {n:,} neurons; a walkthrough shows layers of up to "
                          f"{WALKTHROUGH_NEURONS} (every pair of them).")
    step = (budget or GraphBudget.from_settings()).rows_per_block(n, 8 * d)  # two blocks of rows at once
    groups = np.linspace(0, d, min(d, columns) + 1).astype(np.int64)
    weights, normalised = np.empty((n, len(groups) - 1), np.float32), np.empty((n, len(groups) - 1), np.float32)
    similarity = torch.empty(n, n)
    for start in range(0, n, step):
        block = _rows(source, layer, start, min(n, start + step))
        rows = normalise_rows(block)
        weights[start:start + len(block)] = _column_means(block.numpy(), groups)
        normalised[start:start + len(block)] = _column_means(rows.numpy(), groups)
        for other in range(start, n, step):
            others = rows if other == start else normalise_rows(_rows(source, layer, other, min(n, other + step)))
            similarity[start:start + len(rows), other:other + len(others)] = rows @ others.T
            similarity[other:other + len(others), start:start + len(rows)] = others @ rows.T
    adjacency = threshold_adjacency(similarity, tau)
    steps = list(power_iteration(adjacency, max_iter=RANKING_MAX_ITER))
    centrality = make_criterion("eigenvector", tau).from_adjacency(adjacency).scores
    return Walkthrough(
        weights=weights, normalised=normalised, inputs_per_column=d / (len(groups) - 1),
        similarity=similarity.numpy(), adjacency=adjacency.numpy(),
        iterates=torch.stack([step.x for step in steps]).numpy(),
        changes=np.array([step.change for step in steps]), eigenvalues=np.array([step.eigenvalue for step in steps]),
        converged=steps[-1].converged, tolerance=n * POWER_TOLERANCE, centrality=centrality.numpy())


def _column_means(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The means of ``values``' columns in the groups [groups[k], groups[k + 1])."""
    return np.add.reduceat(values, groups[:-1], axis=1) / np.diff(groups).astype(np.float32)
