"""Graph centralities on dense weighted adjacency tensors (CPU or GPU).

Plain functions in the style of networkx, with tensor operations instead of Python loops.

Behaviour on awkward graphs (tested in tests/test_centrality.py):
- no edges at all: every node gets the same centrality 1/sqrt(n);
- several connected components: power iteration from the uniform vector converges to the
  Perron vector of the component with the largest eigenvalue, so nodes of other components
  tend to 0 (as networkx does); components with equal leading eigenvalues keep their
  relative starting mass;
- isolated nodes: centrality 0 whenever the graph has at least one edge;
- n = 1: centrality 1.
- no convergence within ``max_iter``: PowerIterationFailedConvergence, carrying the last
  iterate, like networkx.
"""
from __future__ import annotations

import torch


class PowerIterationFailedConvergence(RuntimeError):
    def __init__(self, max_iter: int, last: torch.Tensor):
        super().__init__(f"power iteration did not converge within {max_iter} iterations")
        self.max_iter = max_iter
        self.last = last


def _check_square(adjacency: torch.Tensor) -> int:
    if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
        raise ValueError(f"adjacency must be a square matrix, got shape {tuple(adjacency.shape)}")
    if (adjacency < 0).any():
        raise ValueError("adjacency must be non-negative for a Perron (eigenvector) centrality")
    return adjacency.shape[0]


def eigenvector_centrality(adjacency: torch.Tensor, max_iter: int = 1000, tol: float = 1e-6) -> torch.Tensor:
    """Eigenvector centrality: the non-negative x with A x = lambda_max x, ||x||_2 = 1.

    Power iteration on (I + A) from the uniform vector (the shift keeps bipartite graphs from
    oscillating and is what networkx.eigenvector_centrality does), stopping when the L1 change
    is below n * tol. Returns float32 scores on the adjacency's device.
    """
    n = _check_square(adjacency)
    if n == 0:
        return adjacency.new_zeros(0)
    x = adjacency.new_full((n,), 1.0 / n)
    for _ in range(max_iter):
        previous = x
        x = previous + adjacency @ previous
        x = x / x.norm().clamp_min(torch.finfo(x.dtype).tiny)
        if (x - previous).abs().sum() < n * tol:
            return x
    raise PowerIterationFailedConvergence(max_iter, x)


def weighted_degree(adjacency: torch.Tensor) -> torch.Tensor:
    """Sum of edge weights at each node (0 for isolated nodes)."""
    _check_square(adjacency)
    return adjacency.sum(1)


def pagerank(adjacency: torch.Tensor, alpha: float = 0.85, max_iter: int = 200, tol: float = 1e-8) -> torch.Tensor:
    """Weighted PageRank with uniform teleport; isolated (dangling) nodes spread their mass
    uniformly, as networkx.pagerank does. Scores sum to 1."""
    n = _check_square(adjacency)
    if n == 0:
        return adjacency.new_zeros(0)
    out_weight = adjacency.sum(1)
    dangling = out_weight == 0
    inverse = torch.where(dangling, torch.zeros_like(out_weight), 1.0 / out_weight.clamp_min(1e-30))
    x = adjacency.new_full((n,), 1.0 / n)
    for _ in range(max_iter):
        previous = x
        spread = adjacency.T @ (previous * inverse)
        x = alpha * (spread + previous[dangling].sum() / n) + (1 - alpha) / n
        if (x - previous).abs().sum() < n * tol:
            return x
    raise PowerIterationFailedConvergence(max_iter, x)


def concentration(scores: torch.Tensor) -> tuple[float, float]:
    """(Gini coefficient, share of the total held by the top 10% of nodes) of |scores|.

    0 and 0.1 for perfectly even scores; both tend to 1 when one node holds everything.
    An all-zero or empty vector gives (0, 0).
    """
    values = torch.sort(scores.detach().abs().double().flatten()).values
    total = values.sum()
    n = values.numel()
    if n == 0 or total == 0:
        return 0.0, 0.0
    ranks = torch.arange(1, n + 1, dtype=torch.float64, device=values.device)
    gini = float(((2 * ranks - n - 1) * values).sum() / (n * total))
    top = values[-max(1, round(0.1 * n)):].sum()
    return gini, float(top / total)
