"""One layer's neuron graph and scores, as the app's pages and ``cprune graph`` read them.

Every function takes plain arguments: a layer's weight vectors (``ModelSource.weight_vectors``: one row
per neuron), their cosine similarity (``graph.cosine_similarity``), or the graph thresholded at tau
(``graph.threshold_adjacency``), so a caller that keeps them (the app, per model, layer and tau) computes
each once. ``layer_report`` builds the command line's outputs and the layer-wise table on these.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .centrality import POWER_TOLERANCE, power_iteration
from .criteria import RANKING_MAX_ITER, make_criterion
from .errors import CPruneError
from .graph import (MAX_FORCE_LAYOUT_NODES, GraphSummary, adjacency_of, normalise_rows, strongest_edges, summarize,
                    tau_for_mean_degree, threshold_adjacency)

__all__ = ["EDGE_LIMIT", "SUGGESTED_DEGREE", "LAYOUTS", "criterion_scores", "layer_scores", "GraphFigures",
           "graph_figures", "LayerGraph", "layer_graph", "suggested_tau", "layout_for", "Walkthrough", "walkthrough"]

EDGE_LIMIT = 1500  # the strongest edges a LayerGraph keeps: what the app's physics view draws
SUGGESTED_DEGREE = 10  # edges per neuron at a layer's suggested tau: a graph one can read
LAYOUTS = {"force": "force-directed", "pca": "weight PCA"}  # the layouts a layer is drawn in, for people


def criterion_scores(vectors: torch.Tensor, criterion: str, tau: float, adjacency: torch.Tensor | None = None,
                     seed: int = 0) -> tuple[np.ndarray, str]:
    """One criterion's score per neuron, and a note when they are not exact.

    Parameters
    ----------
    vectors : n x d weight vectors of one layer.
    criterion : a name from ``CRITERIA``.
    tau : the graph criteria's threshold.
    adjacency : the tau-thresholded similarity of ``vectors``, when the caller has it (a graph criterion
        computes it when None; the others ignore it).
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
    result = scorer.from_adjacency(adjacency if adjacency is not None else adjacency_of(vectors, tau))
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
        adjacency = adjacency_of(vectors, tau)
    scores, notes = {}, {}
    for name in scorers:
        try:
            scores[name], notes[name] = criterion_scores(vectors, name, tau, adjacency)
        except (CPruneError, MemoryError) as error:
            notes[name] = f"{name} could not be computed ({error})"
    return scores, {name: note for name, note in notes.items() if note}


@dataclass(frozen=True)
class GraphFigures:
    """What the layer-wise table reads of one layer's graph at one tau."""

    summary: GraphSummary
    centrality: np.ndarray  # eigenvector centrality per neuron (the paper's criterion)
    centrality_note: str  # non-empty when power iteration stopped before converging


def graph_figures(adjacency: torch.Tensor) -> GraphFigures:
    """The summary of a thresholded graph (``graph.summarize``) and its eigenvector centrality, as pruning
    computes it (``criteria.EigenvectorCentrality``; at most RANKING_MAX_ITER steps, then the last iterate and
    a note). A graph with no edge gives every neuron 1/sqrt(n)."""
    centrality = make_criterion("eigenvector").from_adjacency(adjacency)
    return GraphFigures(summarize(adjacency), centrality.scores.numpy(), centrality.note("eigenvector centrality"))


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


def layer_graph(adjacency: torch.Tensor, norms: np.ndarray, edge_limit: int = EDGE_LIMIT) -> LayerGraph:
    """``graph_figures`` of ``adjacency`` with each neuron's degree, the weight vectors' ``norms`` (n) and the
    ``edge_limit`` strongest edges (i < j), strongest first."""
    figures = graph_figures(adjacency)
    rows, cols, weights, _ = strongest_edges(adjacency, edge_limit)
    return LayerGraph(figures.summary, figures.centrality, figures.centrality_note, (adjacency > 0).sum(1).numpy(),
                      norms, rows, cols, weights)


def suggested_tau(similarity: torch.Tensor) -> float:
    """The tau (a multiple of 0.01) at which the layer's neurons have about SUGGESTED_DEGREE edges each
    (``graph.tau_for_mean_degree``): where a random-init layer, all of whose similarities are near 0, still
    draws a graph; 0 for fewer than two neurons."""
    return tau_for_mean_degree(similarity, SUGGESTED_DEGREE)


def layout_for(neurons: int, layout: str) -> str:
    """The layout (a key of LAYOUTS) a layer of ``neurons`` is drawn in when ``layout`` is asked for:
    force-directed up to graph.MAX_FORCE_LAYOUT_NODES neurons, weight PCA above (and when asked)."""
    return "force" if layout == "force" and neurons <= MAX_FORCE_LAYOUT_NODES else "pca"


@dataclass(frozen=True)
class Walkthrough:
    """Every quantity of the method for one small layer, step by step, from the core's own functions."""

    weights: np.ndarray  # W: neurons x inputs
    normalised: np.ndarray  # W-hat: each row divided by its L2 norm
    similarity: np.ndarray  # S = W-hat W-hat^T
    adjacency: np.ndarray  # A: S where S > tau, off the diagonal
    iterates: np.ndarray  # x_k of power iteration, one row per step k = 1..K
    changes: np.ndarray  # L1 change of each step
    eigenvalues: np.ndarray  # the eigenvalue estimate at each step
    converged: bool
    tolerance: float  # the L1 change below which iteration stops: n x tol
    centrality: np.ndarray  # what pruning ranks by (the eigenvector criterion's scores)


def walkthrough(vectors: torch.Tensor, similarity: torch.Tensor, tau: float) -> Walkthrough:
    """The method on one layer at ``tau``: its weight vectors (n x d), normalised; their ``similarity``
    (``graph.cosine_similarity(vectors)``); the graph; every step of the power iteration (at most
    RANKING_MAX_ITER, as pruning's); the eigenvector criterion's scores. Meant for small layers: every
    matrix is kept. ConfigError for a tau out of range."""
    adjacency = threshold_adjacency(similarity, tau)
    steps = list(power_iteration(adjacency, max_iter=RANKING_MAX_ITER))
    centrality = make_criterion("eigenvector", tau).from_adjacency(adjacency).scores
    return Walkthrough(
        weights=vectors.float().numpy(), normalised=normalise_rows(vectors).numpy(),
        similarity=similarity.numpy(), adjacency=adjacency.numpy(),
        iterates=torch.stack([step.x for step in steps]).numpy(),
        changes=np.array([step.change for step in steps]), eigenvalues=np.array([step.eigenvalue for step in steps]),
        converged=steps[-1].converged, tolerance=adjacency.shape[0] * POWER_TOLERANCE, centrality=centrality.numpy())
