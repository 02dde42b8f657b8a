"""Graph centralities on weighted adjacency tensors (CPU or GPU), dense or sparse.

Plain functions in the style of networkx, with tensor operations instead of Python loops. An adjacency is a
dense n x n tensor or a torch sparse CSR tensor (``SparseGraph.adjacency()``: a large layer's graph, whose
products cost its edges, not n^2); both give the same scores to rounding (tests/test_blockwise.py: 1e-6).

Behaviour on awkward graphs (tested in tests/test_centrality.py):
- no edges at all: every node gets the same centrality 1/sqrt(n);
- several connected components: power iteration from the uniform vector converges to the
  Perron vector of the component with the largest eigenvalue, so nodes of other components
  tend to 0 (as networkx does); components with equal leading eigenvalues keep their
  relative starting mass;
- isolated nodes: centrality 0 whenever the graph has at least one edge;
- n = 1: centrality 1.
- no convergence within ``max_iter``: not an error but a value. ``eigenvector_centrality`` and
  ``pagerank`` return a ``Centrality``: the scores (the last iterate) with ``converged`` False and
  a ``note`` that says so; callers show the note beside the scores instead of failing (networkx
  raises PowerIterationFailedConvergence here).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .errors import ConfigError

__all__ = ["POWER_TOLERANCE", "PAGERANK_TOLERANCE", "Centrality", "PowerStep", "power_iteration",
           "eigenvector_centrality", "weighted_degree", "pagerank", "concentration"]

POWER_TOLERANCE = 1e-6  # per neuron: the iteration stops when the L1 change is below n x this (networkx's rule)
PAGERANK_TOLERANCE = 1e-6  # networkx.pagerank's tol, with the same n x tol rule


@dataclass(frozen=True)
class Centrality:
    """Scores from a power iteration, and whether it converged.

    ``scores`` is the last iterate: the centrality itself when ``converged``, else the best estimate the
    step budget reached (still a sound ranking in practice: it is the dominant direction after many
    steps). ``note(name)`` is the sentence to show beside scores that did not converge ("" when they did).
    """

    scores: torch.Tensor
    converged: bool
    iterations: int  # steps taken
    change: float  # the L1 change of the last step
    tolerance: float  # the L1 change a step had to fall below (n x tol)

    def note(self, name: str) -> str:
        if self.converged:
            return ""
        return (f"{name}: power iteration stopped at its budget of {self.iterations:,} steps before converging (last "
                f"change {self.change:.2g}, tolerance {self.tolerance:.2g}); its last iterate is used")


def _is_sparse(adjacency: torch.Tensor) -> bool:
    return adjacency.layout == torch.sparse_csr


def _check_square(adjacency: torch.Tensor) -> int:
    if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
        raise ConfigError(f"adjacency must be a square matrix, got shape {tuple(adjacency.shape)}")
    if ((adjacency.values() if _is_sparse(adjacency) else adjacency) < 0).any():
        raise ConfigError("adjacency must be non-negative for a Perron (eigenvector) centrality")
    return adjacency.shape[0]


def _vector(adjacency: torch.Tensor, n: int, value: float, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A vector of n ``value``s on the adjacency's device, in its dtype (or ``dtype``)."""
    return torch.full((n,), value, dtype=dtype or adjacency.dtype, device=adjacency.device)


def _row_sums(adjacency: torch.Tensor) -> torch.Tensor:
    """Each row's sum, dense or sparse (a product with ones: CSR tensors have no sum over a dimension)."""
    return adjacency @ _vector(adjacency, adjacency.shape[0], 1.0) if _is_sparse(adjacency) else adjacency.sum(1)


def _transposed(adjacency: torch.Tensor) -> torch.Tensor:
    """A^T, as a CSR tensor of its own when sparse (CSR tensors cannot be transposed in place)."""
    return adjacency.to_sparse_coo().t().to_sparse_csr() if _is_sparse(adjacency) else adjacency.T


@dataclass(frozen=True)
class PowerStep:
    """One step k of power iteration: the new iterate x_k and how it got there.

    The L1 change and the eigenvalue estimate stay tensors until read, so a GPU is not
    synchronised for figures nobody looks at.
    """

    k: int  # 1-based
    x: torch.Tensor  # unit L2 norm
    converged: bool  # L1 change < n * tol
    change_tensor: torch.Tensor
    rayleigh_tensor: torch.Tensor

    @property
    def change(self) -> float:
        """L1 distance between x_k and x_(k-1)."""
        return float(self.change_tensor)

    @property
    def eigenvalue(self) -> float:
        """Rayleigh quotient of A at x_(k-1): the estimate of lambda_max."""
        return float(self.rayleigh_tensor)


def power_iteration(adjacency: torch.Tensor, max_iter: int = 1000, tol: float = POWER_TOLERANCE) -> Iterator[PowerStep]:
    """The steps of power iteration on (I + A) from the uniform vector, up to convergence or max_iter.

    Parameters
    ----------
    adjacency : tensor, n x n, dense or sparse CSR, non-negative (symmetric for a centrality), on any device.
    max_iter : the most steps yielded.
    tol : a step converges when its L1 change is below n * tol; it is the last one yielded.

    Yields
    ------
    PowerStep : k, the unit-norm iterate x_k, whether it converged, its L1 change and eigenvalue estimate.

    Raises
    ------
    ConfigError : for a matrix that is not square, or has a negative entry.

    The shift by I keeps bipartite graphs from oscillating (as networkx.eigenvector_centrality
    does). An empty matrix (n = 0) yields nothing; n = 1 converges at once. Example:
    ``[step.change for step in power_iteration(A)]`` is the convergence curve the app draws.
    """
    n = _check_square(adjacency)
    x = _vector(adjacency, n, 1.0 / n)
    tiny = torch.finfo(x.dtype).tiny
    for k in range(1, max_iter + 1):
        previous = x
        spread = adjacency @ previous
        x = previous + spread
        x = x / x.norm().clamp_min(tiny)
        change = (x - previous).abs().sum()
        converged = bool(change < n * tol)
        yield PowerStep(k, x, converged, change, (previous @ spread) / (previous @ previous).clamp_min(tiny))
        if converged:
            return


def eigenvector_centrality(adjacency: torch.Tensor, max_iter: int = 1000, tol: float = POWER_TOLERANCE) -> Centrality:
    """Eigenvector centrality (Bonacich 1972): the non-negative x with A x = lambda_max x, ||x||_2 = 1.

    Parameters
    ----------
    adjacency : tensor, n x n, dense or sparse CSR, symmetric and non-negative (``graph.threshold_adjacency``,
        ``SparseGraph.adjacency()``).
    max_iter, tol : as ``power_iteration``.

    Returns
    -------
    Centrality : ``scores`` (n values in the adjacency's dtype on its device; empty for n = 0), and
    ``converged``: False when ``max_iter`` steps did not reach the tolerance, the scores then being the
    last iterate (its ``note`` says so).

    Raises
    ------
    ConfigError : for a matrix that is not square, or has a negative entry.

    The awkward graphs are listed in the module's docstring (no edge: 1/sqrt(n) each; isolated
    nodes: 0). Agrees with networkx.eigenvector_centrality (tests/test_centrality.py). Example:
    ``eigenvector_centrality(torch.tensor([[0., 1.], [1., 0.]])).scores`` is ``tensor([0.7071, 0.7071])``.
    """
    n = _check_square(adjacency)
    if n == 0:
        return Centrality(_vector(adjacency, 0, 0.0), True, 0, 0.0, 0.0)
    last = deque(power_iteration(adjacency, max_iter, tol), maxlen=1)  # the last step only
    if not last:  # max_iter < 1: the start is all there is
        return Centrality(_vector(adjacency, n, 1.0 / n ** 0.5), False, 0, float("inf"), n * tol)
    step = last[0]
    return Centrality(step.x, step.converged, step.k, step.change, n * tol)


def weighted_degree(adjacency: torch.Tensor) -> torch.Tensor:
    """Sum of edge weights at each node (its strength; 0 for an isolated node), of a dense or sparse CSR
    adjacency. ConfigError for a matrix that is not square, or has a negative entry."""
    _check_square(adjacency)
    return _row_sums(adjacency)


def pagerank(adjacency: torch.Tensor, alpha: float = 0.85, max_iter: int = 1000,
             tol: float = PAGERANK_TOLERANCE) -> Centrality:
    """Weighted PageRank (Page et al. 1999) with uniform teleport, as networkx.pagerank.

    Parameters
    ----------
    adjacency : tensor, n x n, dense or sparse CSR, non-negative; entry (i, j) is the weight of the link i -> j.
    alpha : the damping factor: the probability of following a link rather than teleporting.
    max_iter, tol : stop when the L1 change of a step is below n * tol (networkx's rule and default tol).

    Returns
    -------
    Centrality : ``scores``, n values that sum to 1 (float64, on the adjacency's device; empty for n = 0);
    ``converged`` False when ``max_iter`` steps did not reach the tolerance (the last iterate is kept).
    Isolated (dangling) nodes spread their mass uniformly.

    Raises
    ------
    ConfigError : for a matrix that is not square, or has a negative entry.

    The iterate is kept in float64 whatever the adjacency's dtype (its products are taken in that dtype):
    in float32 the step change of a 16-neuron layer sticks at rounding noise (about 3e-7) above a
    tolerance of n x 1e-8, and the iteration never ends. Example: the two-node graph
    ``pagerank(torch.tensor([[0., 1.], [1., 0.]])).scores`` is ``[0.5, 0.5]``.
    """
    n = _check_square(adjacency)
    if n == 0:
        return Centrality(_vector(adjacency, 0, 0.0, torch.float64), True, 0, 0.0, 0.0)
    out_weight = _row_sums(adjacency).double()
    dangling = out_weight == 0
    inverse = torch.where(dangling, torch.zeros_like(out_weight), 1.0 / out_weight.clamp_min(1e-300))
    x = out_weight.new_full((n,), 1.0 / n)
    change = float("inf")
    incoming = _transposed(adjacency)
    for k in range(1, max_iter + 1):
        previous = x
        spread = (incoming @ (previous * inverse).to(adjacency.dtype)).double()
        x = alpha * (spread + previous[dangling].sum() / n) + (1 - alpha) / n
        change = float((x - previous).abs().sum())
        if change < n * tol:
            return Centrality(x, True, k, change, n * tol)
    return Centrality(x, False, max_iter, change, n * tol)


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
