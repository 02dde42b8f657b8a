"""Neuron-similarity graphs of one layer.

Each neuron (a Linear output unit or a Conv2d output filter) is a node; the weight on edge
(i, j) is the cosine similarity of the two neurons' incoming weight vectors where it exceeds
the threshold tau. Everything here works on torch tensors, on whatever device they live. A graph is a dense
n x n adjacency (``threshold_adjacency``) or, for a layer too large for one, a ``sparse_graph.SparseGraph`` of
its edges (``blockwise``): every function below that takes an ``adjacency`` takes either.
"""
from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
import torch
from torch import nn

from .errors import ConfigError
from .layers import weight_vectors
from .ranges import GRAPH_FORMATS, TAU

if TYPE_CHECKING:
    from .sparse_graph import SparseGraph

    Adjacency = torch.Tensor | SparseGraph

__all__ = ["GraphSummary", "nodes_of", "normalise_rows", "cosine_similarity", "threshold_adjacency", "adjacency_of", "adjacency_for", "summarize",
           "to_scipy", "upper_edges", "to_networkx", "strongest_edges", "principal_components", "layout_2d",
           "force_layout", "FORCE_STEPS", "FORCE_STEP_BUDGET", "MAX_NETWORKX_EDGES", "MAX_FORCE_LAYOUT_NODES",
           "tau_for_mean_degree", "graph_file", "GRAPH_FORMATS"]

EPS = 1e-8


def normalise_rows(vectors: torch.Tensor) -> torch.Tensor:
    """W_hat: each row divided by (its L2 norm + eps), in float32; an all-zero row stays zero."""
    vectors = vectors.float()
    return vectors / (vectors.norm(dim=1, keepdim=True) + EPS)


def cosine_similarity(vectors: torch.Tensor) -> torch.Tensor:
    """S = W_hat W_hat^T (see normalise_rows); float32, one n x n copy."""
    normalised = normalise_rows(vectors)
    return normalised @ normalised.T


def threshold_adjacency(similarity: torch.Tensor, tau: float, inplace: bool = False) -> torch.Tensor:
    """A_ij = S_ij where S_ij > tau and i != j, else 0.

    Parameters
    ----------
    similarity : tensor, n x n (``cosine_similarity``), on any device.
    tau : the threshold in [0, 1): an edge needs a similarity strictly above it.
    inplace : overwrite ``similarity``, so a 4,096-neuron layer holds one 64 MiB matrix instead of two.

    Returns
    -------
    The weighted adjacency matrix (``similarity`` itself when ``inplace``). Negative similarities
    never make edges; a tau above every similarity gives a graph with no edge (see
    ``tau_for_mean_degree``).

    Raises
    ------
    ConfigError : for a tau outside [0, 1) (NaN included).

    Example: ``threshold_adjacency(torch.tensor([[1., .5], [.5, 1.]]), 0.1)`` is ``[[0, .5], [.5, 0]]``.
    """
    TAU.check(tau, "tau")
    adjacency = similarity if inplace else similarity.clone()
    adjacency.masked_fill_(adjacency <= tau, 0.0)
    adjacency.fill_diagonal_(0.0)
    return adjacency


def adjacency_of(vectors: torch.Tensor, tau: float) -> torch.Tensor:
    """The thresholded similarity graph of the neurons' weight ``vectors`` (n x d), holding a single n x n
    matrix: ``threshold_adjacency(cosine_similarity(vectors), tau, inplace=True)``. ConfigError for a tau
    outside [0, 1)."""
    return threshold_adjacency(cosine_similarity(vectors), tau, inplace=True)


def adjacency_for(module: nn.Module, tau: float, layer_name: str = "layer") -> torch.Tensor:
    """The thresholded similarity graph of a Linear or Conv2d layer: ``adjacency_of`` its weight vectors.
    ConfigError for a module without neurons or a tau outside [0, 1); NonFiniteWeightsError (naming
    ``layer_name``) when a weight is NaN or Inf.
    """
    return adjacency_of(weight_vectors(module, layer_name), tau)


@dataclass(frozen=True)
class GraphSummary:
    """What ``summarize`` counts in a graph."""

    nodes: int
    edges: int
    density: float  # edges / (n (n - 1) / 2); 0 for n < 2
    components: int  # connected components, isolated nodes included
    isolated: int  # nodes with no edge
    largest_component: int


def nodes_of(adjacency: Adjacency) -> int:
    """The number of nodes of a dense adjacency or a SparseGraph."""
    return adjacency.shape[0] if isinstance(adjacency, torch.Tensor) else adjacency.n


def summarize(adjacency: Adjacency) -> GraphSummary:
    """Nodes, edges, density, connected components, isolated nodes and the largest component's size of a
    symmetric adjacency matrix or a SparseGraph (each edge counted once). An empty graph (n = 0) has 0 of
    everything."""
    n = nodes_of(adjacency)
    sparse = to_scipy(adjacency)
    edges = sparse.nnz // 2
    components, labels = scipy.sparse.csgraph.connected_components(sparse, directed=False)
    degree = np.diff(sparse.indptr)
    return GraphSummary(
        nodes=n, edges=edges, density=edges / (n * (n - 1) / 2) if n > 1 else 0.0,
        components=int(components), isolated=int((degree == 0).sum()),
        largest_component=int(np.bincount(labels).max()) if n else 0,
    )


def to_scipy(adjacency: Adjacency) -> scipy.sparse.csr_array:
    """The nonzero entries of ``adjacency`` (or a SparseGraph's edges) as a SciPy CSR array (float64, both
    triangles)."""
    if not isinstance(adjacency, torch.Tensor):
        return adjacency.scipy()
    rows, cols = torch.nonzero(adjacency, as_tuple=True)
    values = adjacency[rows, cols].double().cpu().numpy()
    n = adjacency.shape[0]
    return scipy.sparse.csr_array((values, (rows.cpu().numpy(), cols.cpu().numpy())), shape=(n, n))


def upper_edges(adjacency: Adjacency) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each edge once: the rows, columns and weights of the nonzero entries above the diagonal (i < j), in
    row-major order, on the adjacency's device (a SparseGraph's: its edges, on the CPU). An edgeless graph
    gives three empty tensors."""
    if not isinstance(adjacency, torch.Tensor):
        return (torch.from_numpy(adjacency.rows), torch.from_numpy(adjacency.cols),
                torch.from_numpy(adjacency.weights))
    rows, cols = torch.nonzero(torch.triu(adjacency, diagonal=1), as_tuple=True)
    return rows, cols, adjacency[rows, cols]


MAX_NETWORKX_EDGES = 2_000_000


def to_networkx(adjacency: Adjacency, max_edges: int = MAX_NETWORKX_EDGES) -> nx.Graph:
    """Undirected weighted networkx Graph with nodes 0..n-1 (isolated nodes included).

    Parameters
    ----------
    adjacency : tensor, n x n, symmetric (only the upper triangle is read: ``upper_edges``), or a SparseGraph.
    max_edges : the most edges accepted.

    Returns
    -------
    A ``networkx.Graph`` whose edges carry the similarity as "weight".

    Raises
    ------
    ConfigError : for more than ``max_edges`` edges: networkx stores each edge as Python dicts, and a
        dense 4,096-neuron graph would need gigabytes. Raise tau to thin it.
    """
    rows, cols, weights = upper_edges(adjacency)
    if rows.numel() > max_edges:
        raise ConfigError(
            f"The graph has {rows.numel():,} edges, more than {max_edges:,} for networkx; raise tau to thin it."
        )
    graph = nx.Graph()
    graph.add_nodes_from(range(nodes_of(adjacency)))
    graph.add_weighted_edges_from(zip(rows.tolist(), cols.tolist(), weights.tolist()))
    return graph


def tau_for_mean_degree(taus: Sequence[float], counts: Sequence[int], neurons: int, mean_degree: float) -> float:
    """The largest tau of ``taus`` (ascending) at which neurons still have ``mean_degree`` edges on average, from the
    graph's edge ``counts`` at those taus (``graph_view.edge_counts``, or a large layer's, counted a block at a
    time: ``blockwise.StrongestEdges``): where a random-init layer, whose cosine similarities are all about
    +-1/sqrt(d), still draws a graph. The first tau when no step has that many edges, or for fewer than two
    neurons.

    Example: ``tau_for_mean_degree([0.0, 0.1, 0.2], [90, 40, 5], 10, 5)`` is ``0.1`` (25 edges wanted).
    """
    wanted = mean_degree * neurons / 2
    enough = [tau for tau, count in zip(taus, counts) if count >= wanted]
    return float(enough[-1]) if neurons >= 2 and enough and wanted >= 1 else float(taus[0])


def graph_file(adjacency: Adjacency, node_values: dict[str, np.ndarray], file_format: str,
               max_edges: int = MAX_NETWORKX_EDGES) -> bytes:
    """The thresholded graph as a GraphML or GEXF file: nodes 0..n-1 with ``node_values`` as
    attributes (e.g. centrality, degree, x, y), edges with their cosine similarity as weight."""
    graph = to_networkx(adjacency, max_edges)
    for name, values in node_values.items():
        nx.set_node_attributes(graph, {i: float(v) for i, v in enumerate(values)}, name)
    buffer = io.BytesIO()
    if file_format == "graphml":
        nx.write_graphml(graph, buffer)
    elif file_format == "gexf":
        nx.write_gexf(graph, buffer)
    else:
        raise ConfigError(f"Unknown graph format {file_format!r}; choose one of {', '.join(GRAPH_FORMATS)}.")
    return buffer.getvalue()


def strongest_edges(adjacency: Adjacency, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The ``limit`` heaviest edges (i < j), strongest first, and the total edge count."""
    rows, cols, weights = upper_edges(adjacency)
    total = int(weights.numel())
    if total > limit:
        top = torch.topk(weights, limit).indices
        rows, cols, weights = rows[top], cols[top], weights[top]
    else:
        order = torch.argsort(weights, descending=True)
        rows, cols, weights = rows[order], cols[order], weights[order]
    return rows.cpu().numpy(), cols.cpu().numpy(), weights.cpu().numpy(), total


def principal_components(matrix: torch.Tensor | scipy.sparse.sparray, k: int = 2, seed: int = 0) -> torch.Tensor:
    """The rows of ``matrix`` (n x d), centred, projected on their ``k`` leading principal axes: n x k float32,
    on the CPU.

    Parameters
    ----------
    matrix : a dense tensor, or a SciPy sparse array (a graph's adjacency: never made dense).
    k : the number of axes; n, d >= k.
    seed : the random start of the iteration.

    Randomized subspace iteration (Halko, Martinsson and Tropp 2011, algorithm 4.4, with four power
    iterations, as ``torch.pca_lowrank``), in float32, that never forms the centred matrix: C X is
    M X - 1 (mean^T X). Milliseconds where a full SVD of a 1,280 x 1,280 matrix takes seconds, and
    a sparse 3,072-node adjacency costs its edges, not its 9.4 million entries. Draws from its own
    ``seed``, never from torch's or NumPy's global generator: the same matrix always gives the same
    projection.
    """
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().float().cpu().numpy()
    else:
        matrix = matrix.astype(np.float32)
    mean = np.asarray(matrix.mean(0), np.float32).reshape(-1)

    def centred(x: np.ndarray) -> np.ndarray:  # C x
        return matrix @ x - mean @ x

    def centred_t(y: np.ndarray) -> np.ndarray:  # C^T y
        return matrix.T @ y - np.outer(mean, y.sum(0))

    def orthonormal(x: np.ndarray) -> np.ndarray:
        return np.linalg.qr(x)[0]

    basis = orthonormal(centred(np.random.default_rng(seed).standard_normal((matrix.shape[1], k), np.float32)))
    for _ in range(4):
        basis = orthonormal(centred(orthonormal(centred_t(basis))))
    axes = np.linalg.svd(centred_t(basis).T, full_matrices=False)[2].T  # of B = Q^T C, d x k
    return torch.from_numpy(np.ascontiguousarray(centred(axes[:, :k]), np.float32))


def layout_2d(vectors: torch.Tensor, seed: int = 0, normalised: bool = False) -> np.ndarray:
    """Node positions (n x 2, float32, within about [-1, 1]) that depend on the weights only, never on tau.

    The two principal components of the normalised weight vectors (``principal_components``: a few products
    with n x 2 and d x 2 matrices, never an n x n one) place similar neurons close together (cosine distance is
    monotone in the Euclidean distance of unit vectors); a small jitter drawn with ``seed`` separates exact
    duplicates. The same weights and seed give the same positions. Fewer than 3 neurons: the jitter alone
    around the origin. ``normalised``: ``vectors`` are already W-hat (``normalise_rows``), as a large layer's
    blockwise graph holds them (``blockwise.scan_layer``): no second copy. Cache it per (backbone, layer).
    """
    normalised = vectors if normalised else normalise_rows(vectors)
    n = normalised.shape[0]
    generator = torch.Generator().manual_seed(seed)
    if n < 3:
        coords = torch.zeros(n, 2)
    else:
        coords = principal_components(normalised, 2, seed)
        spread = coords.abs().max().clamp_min(EPS)
        coords = coords / spread
    coords = coords + 0.01 * torch.randn(n, 2, generator=generator)
    return coords.numpy()


MAX_FORCE_LAYOUT_NODES = 4096
REPULSION_SAMPLE = 256  # nodes each node is pushed away from per step (all of them in smaller graphs)
FORCE_EDGE_SAMPLE = 65_536  # edges that pull per step, drawn anew each step (all of them in sparser graphs)


FORCE_STEPS = 150  # a force layout's steps up to FORCE_STEP_BUDGET / FORCE_STEPS nodes
FORCE_STEP_BUDGET = 150 * 2048  # node-steps: a larger graph takes fewer steps (3,072 nodes: 100; 4,096: 75)


def force_layout(adjacency: Adjacency, iterations: int | None = None, seed: int = 0) -> np.ndarray:
    """Node positions (n x 2, within [-1, 1]) of the thresholded graph itself: Fruchterman-Reingold.

    Edges pull their ends together in proportion to their weight (in a denser graph, each step a seeded
    sample of FORCE_EDGE_SAMPLE edges, scaled up); nodes push each other apart (each step against a
    seeded sample of REPULSION_SAMPLE nodes, scaled up, so a step costs n x 256 rather than n x n);
    a weak pull to the centre keeps isolated nodes and small
    components in view; the step size cools linearly. The start is the principal components of
    the adjacency rows (computed on the edges alone, ``principal_components`` of a sparse array)
    plus a seeded jitter, so the same graph always looks the same. NumPy in float32, on one thread:
    many small steps would only wait for each other on several (about 1 s for 3,072 nodes).
    ``iterations``: the steps; None: FORCE_STEPS, or fewer above 2,048 nodes so that a layout costs at
    most FORCE_STEP_BUDGET node-steps (the step size still cools to 0). Fewer steps were measured to lay
    out as well: a random 3,072 x 768 layer's mean edge length against a random pair's distance is 0.733
    after 150 steps, 0.738 after 100, 0.737 after 50; EfficientNet-Lite0's head.1, 0.659 and 0.659.
    Sampling the edges, the same figure at tau 0.06 (226,614 edges) is 0.915 with every edge and with
    65,536 a step (3.1 s and 1.7 s); random 4,096 x 25,088 at tau 0.01 (474,104 edges), 0.949 and 0.968
    (4.4 s and 1.5 s).
    Awkward cases: n = 0 gives an empty array, n = 1 the origin; a graph with no edge spreads its
    nodes evenly around the centre. More than MAX_FORCE_LAYOUT_NODES nodes: ConfigError (use
    layout_2d).
    """
    n = nodes_of(adjacency)
    if n > MAX_FORCE_LAYOUT_NODES:
        raise ConfigError(f"A force-directed layout of {n:,} neurons is offered up to {MAX_FORCE_LAYOUT_NODES:,} "
                          "neurons; use the weight-PCA layout.")
    if n < 2:
        return np.zeros((n, 2), dtype=np.float32)
    dense = isinstance(adjacency, torch.Tensor)
    rows, cols, pulls = (part.numpy() for part in upper_edges(adjacency.detach().float().cpu() if dense else adjacency))
    pulls = pulls / pulls.mean() if len(pulls) else pulls  # relative weights: the pull balances the push at tau
    rng = np.random.default_rng(seed)
    position = 0.1 * rng.standard_normal((n, 2), np.float32)
    if n >= 3 and len(rows):
        symmetric = scipy.sparse.csr_array((np.concatenate([pulls, pulls]), (np.concatenate([rows, cols]),
                                                                            np.concatenate([cols, rows]))), (n, n))
        start = principal_components(symmetric, 2, seed).numpy()
        position += start / max(float(np.abs(start).max()), EPS)
    ideal = 1.0 / math.sqrt(n)  # the distance at which a pull and a push balance, in a unit area
    iterations = iterations or min(FORCE_STEPS, FORCE_STEP_BUDGET // n)
    pull_scale = np.float32(max(1.0, len(rows) / FORCE_EDGE_SAMPLE))
    for step in range(iterations):
        move = _repulsion(position, rng, ideal)
        pulled = rng.integers(0, len(rows), FORCE_EDGE_SAMPLE) if len(rows) > FORCE_EDGE_SAMPLE else slice(None)
        ends, others, weights = rows[pulled], cols[pulled], pulls[pulled] * pull_scale
        along = position[others] - position[ends]
        pull = (weights * np.sqrt((along * along).sum(1)) / ideal)[:, None] * along
        for axis in range(2):
            move[:, axis] += np.bincount(ends, pull[:, axis], n) - np.bincount(others, pull[:, axis], n)
        move -= (0.05 * n * ideal) * position  # gravity: a weak pull to the centre
        length = np.maximum(np.sqrt((move * move).sum(1, keepdims=True)), EPS)
        position += move / length * np.minimum(length, 0.1 * (1 - step / iterations))
    position -= position.mean(0, keepdims=True)
    return position / max(float(np.abs(position).max()), EPS)


def _repulsion(position: np.ndarray, rng: np.random.Generator, ideal: float) -> np.ndarray:
    """One step's push on every node from a seeded sample of REPULSION_SAMPLE others (all of them in smaller
    graphs), scaled up to all n: sum_j c_ij (x_i - x_j) with c_ij = ideal^2 / d_ij^2, as x_i sum_j c_ij - C x,
    so it needs n x 256 float32 scalars (distances from dot products), never an n x 256 x 2 array. Products
    with 2 columns are written out: a BLAS call would split so little work over threads."""
    n = len(position)
    sample_size = min(n, REPULSION_SAMPLE)
    others = rng.permutation(n)[:sample_size] if sample_size < n else np.arange(n)
    squared = (position * position).sum(1)
    other = position[others]
    coefficient = np.multiply.outer(position[:, 0], other[:, 0])
    coefficient += np.multiply.outer(position[:, 1], other[:, 1])
    coefficient *= -2
    coefficient += squared[:, None]
    coefficient += squared[None, others]  # now the squared distances
    apart = coefficient > 1e-8
    np.divide(np.float32(ideal * ideal), np.maximum(coefficient, 1e-8, out=coefficient), out=coefficient)
    coefficient *= apart
    pushed = np.stack([(coefficient * other[:, 0]).sum(1), (coefficient * other[:, 1]).sum(1)], axis=1)
    return (position * coefficient.sum(1, keepdims=True) - pushed) * np.float32(n / sample_size)
