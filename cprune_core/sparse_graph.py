"""A thresholded similarity graph held as its edges, never as an n x n matrix.

``SparseGraph`` is what a large layer's graph is (``blockwise.similarity_graph`` and ``blockwise.scan_layer``
build one a block of rows at a time); every step after it takes one as well as a dense adjacency:
``graph.summarize``, ``graph.to_networkx``, ``graph.force_layout``, the centralities (through ``adjacency()``,
a symmetric torch sparse CSR tensor), the criteria's ``from_adjacency`` and the canvas payload (``edge_list()``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch

from .errors import ConfigError

__all__ = ["EdgeList", "SparseGraph", "BYTES_PER_EDGE"]

# What an edge costs while a graph is built and used: its row, column and weight (12 bytes), the sort that orders
# them, and the symmetric CSR matrix of the centralities (each edge twice: an int64 column and a float32 value).
BYTES_PER_EDGE = 48


@dataclass(frozen=True)
class EdgeList:
    """The edges of a graph of ``n`` nodes above some tau: pairs ``rows[k] < cols[k]`` and their float32
    similarity ``weights[k]``, in any order."""

    n: int
    rows: np.ndarray
    cols: np.ndarray
    weights: np.ndarray

@dataclass(frozen=True)
class SparseGraph:
    """The edges of a graph of ``n`` neurons: pairs ``rows[k] < cols[k]`` in (row, col) order, each once, with
    their float32 weight (a cosine similarity above the graph's tau).

    Build one with ``SparseGraph.from_edges`` (which orders and checks the pairs) or ``from_dense``; the
    constructor trusts its arrays."""

    n: int
    rows: np.ndarray  # int64
    cols: np.ndarray  # int64
    weights: np.ndarray  # float32

    @classmethod
    def from_edges(cls, edges: EdgeList) -> SparseGraph:
        """The graph of an edge list in any order. ConfigError for arrays of different lengths, a pair that is not
        i < j of 0..n-1, or a pair given twice."""
        rows, cols = np.asarray(edges.rows, np.int64), np.asarray(edges.cols, np.int64)
        weights = np.asarray(edges.weights, np.float32)
        if not rows.shape == cols.shape == weights.shape or rows.ndim != 1:
            raise ConfigError("An edge list needs rows, cols and weights of one length.")
        if len(rows) and (rows.min() < 0 or cols.max() >= edges.n or bool((rows >= cols).any())):
            raise ConfigError(f"An edge list of {edges.n} neurons needs pairs i < j of 0..{edges.n - 1}.")
        flat = rows * edges.n + cols
        if bool((flat[1:] <= flat[:-1]).any()):
            order = np.argsort(flat, kind="stable")
            rows, cols, weights, flat = rows[order], cols[order], weights[order], flat[order]
            if bool((flat[1:] == flat[:-1]).any()):
                raise ConfigError("An edge list gives a pair of neurons twice.")
        return cls(edges.n, rows, cols, weights)

    @classmethod
    def from_dense(cls, adjacency: torch.Tensor) -> SparseGraph:
        """The graph of a dense symmetric adjacency (``graph.threshold_adjacency``): its entries above the diagonal."""
        rows, cols = torch.nonzero(torch.triu(adjacency.detach(), diagonal=1), as_tuple=True)
        weights = adjacency[rows, cols].float().cpu().numpy()
        return cls(adjacency.shape[0], rows.cpu().numpy(), cols.cpu().numpy(), weights)

    @property
    def edges(self) -> int:
        return len(self.weights)

    def above(self, tau: float) -> SparseGraph:
        """The edges whose weight is > ``tau`` (compared in float32, as ``graph.threshold_adjacency`` compares)."""
        keep = self.weights > np.float32(tau)
        return SparseGraph(self.n, self.rows[keep], self.cols[keep], self.weights[keep])

    def edge_list(self) -> EdgeList:
        return EdgeList(self.n, self.rows, self.cols, self.weights)

    def degree(self) -> np.ndarray:
        """Edges at each neuron (int64; 0 for an isolated one)."""
        return np.bincount(self.rows, minlength=self.n) + np.bincount(self.cols, minlength=self.n)

    def scipy(self) -> scipy.sparse.csr_array:
        """The symmetric adjacency as a SciPy CSR array (float64, both triangles), as ``graph.to_scipy`` gives."""
        both_rows, both_cols = np.concatenate([self.rows, self.cols]), np.concatenate([self.cols, self.rows])
        values = np.concatenate([self.weights, self.weights]).astype(np.float64)
        return scipy.sparse.csr_array((values, (both_rows, both_cols)), shape=(self.n, self.n))

    def adjacency(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The symmetric adjacency as a float32 torch sparse CSR tensor (both triangles), what the centralities'
        products take: A x costs the edges, not n^2."""
        matrix = self.scipy()
        with warnings.catch_warnings():  # "in beta": used for its products with vectors only
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(torch.from_numpy(matrix.indptr.astype(np.int64)),
                                           torch.from_numpy(matrix.indices.astype(np.int64)),
                                           torch.from_numpy(matrix.data.astype(np.float32)), size=(self.n, self.n),
                                           device=device, check_invariants=False)
