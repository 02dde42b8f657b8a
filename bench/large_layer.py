"""A synthetic layer of 14,336 neurons (a 7B language model's MLP width) whose graph has about 1.5 million edges
above tau = 0, for the graph canvas at scale: bench/bench_app.py's large case and tests/test_graph_canvas.py's.

Planted clusters: each neuron's weight vector is its cluster's centre plus noise, on a block of coordinates of its
cluster's own, so two neurons of different clusters have a cosine similarity of exactly 0 (no edge at any tau)
and the edges are found cluster by cluster, never with an n x n matrix, as a large layer's similarity computed
a block at a time yields them. Clusters differ in size (seeded), so the graph has one leading component.

Run: python bench/large_layer.py FILE.npz   (writes the vectors and the edges above tau = 0)
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from cprune_core.graph import normalise_rows
from cprune_core.sparse_graph import EdgeList

NEURONS = 14_336
CLUSTERS = 70
BLOCK = 8  # coordinates per cluster


def planted_layer(n: int = NEURONS, clusters: int = CLUSTERS, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """(n x clusters*BLOCK float32 weight vectors, each neuron's cluster), seeded."""
    rng = np.random.default_rng(seed)
    shares = rng.uniform(0.5, 1.5, clusters)
    sizes = np.floor(shares / shares.sum() * n).astype(int)
    sizes[0] += n - sizes.sum()
    labels = np.repeat(np.arange(clusters), sizes)
    vectors = np.zeros((n, clusters * BLOCK), np.float32)
    for cluster, (start, size) in enumerate(zip(np.cumsum(sizes) - sizes, sizes)):
        centre = rng.standard_normal(BLOCK)
        vectors[start:start + size, cluster * BLOCK:(cluster + 1) * BLOCK] = centre + rng.standard_normal((size, BLOCK))
    return torch.from_numpy(vectors), labels


def cluster_edges(vectors: torch.Tensor, labels: np.ndarray, tau: float) -> EdgeList:
    """Every edge above ``tau`` >= 0 (pairs i < j with cosine similarity > tau, in float32), cluster by cluster."""
    unit = normalise_rows(vectors)
    rows, cols, weights = [], [], []
    for cluster in np.unique(labels):
        members = torch.from_numpy(np.nonzero(labels == cluster)[0])
        similarity = unit[members] @ unit[members].T
        i, j = torch.nonzero(torch.triu(similarity > torch.tensor(tau, dtype=similarity.dtype), 1), as_tuple=True)
        rows.append(members[i].numpy())
        cols.append(members[j].numpy())
        weights.append(similarity[i, j].numpy())
    return EdgeList(len(labels), np.concatenate(rows), np.concatenate(cols), np.concatenate(weights))


def write(path: str) -> EdgeList:
    vectors, labels = planted_layer()
    edges = cluster_edges(vectors, labels, 0.0)
    np.savez(path, vectors=vectors.numpy(), rows=edges.rows, cols=edges.cols, weights=edges.weights)
    return edges


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {sys.argv[0]} FILE.npz")
    print(f"{len(write(sys.argv[1]).weights):,} edges above tau = 0 written to {sys.argv[1]}")
