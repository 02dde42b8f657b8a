"""Similarity at scale: a layer's graph computed a block of rows at a time, in a memory budget.

A layer of n neurons with weight vectors of length d: its normalised weights W-hat (n x d float32), read a
block of rows at a time (``read_normalised``: from a model's file only those rows' bytes,
``ModelSource.weight_vectors(layer, rows=...)``), then for each block of rows [a, b) the product
W-hat[a:b] W-hat[a:]^T: the pairs i < j, each once, handed to collectors (``scan_pairs``), never an n x n
matrix. Each pair's similarity is the float32 number the dense ``graph.cosine_similarity`` gives it (the same
row times the same column) and it is compared with tau as ``graph.threshold_adjacency`` compares it, so the
edges kept are exact. Time: n^2 d / 2 multiply-adds, half the dense product's.

Collectors: ``EdgesAbove`` (every edge above tau: the graph, a ``SparseGraph``), ``StrongestEdges`` (the
strongest edges above the lowest tau step, at most a cap, and the exact edge count at every step: what the
canvas is sent), ``StrongestPerNeuron`` (each neuron's k strongest edges above tau) and ``DistanceSums``
(FPGM's summed Euclidean distances, ||a - b||^2 = |a|^2 + |b|^2 - 2 a.b from the same products).

The memory (``GraphBudget``; ``graph_cost`` says it from the shape alone, ``check_graph_cost`` refuses before any
work): W-hat (4 n d bytes; a layer holds at most 2^28 values, ``weights.WeightsBudget``), one block of pairs
(``block_bytes``, BYTES_PER_PAIR each) and the edges kept (``max_edges``). ``GRAPH_SLOTS`` lets at most
CPRUNE_GRAPHS_AT_ONCE graphs be built at once in a process; the others wait and are told so.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ConfigError
from .ranges import MAX_GRAPH_NEURONS
from .graph import EPS, normalise_rows
from .graph_view import counts_above, strongest
from .progress import ProgressCallback, check_stop, report
from .settings import setting
from .sparse_graph import BYTES_PER_EDGE, EdgeList, SparseGraph

__all__ = ["MAX_GRAPH_NEURONS", "BYTES_PER_PAIR", "GraphBudget", "GraphCost", "graph_cost", "check_graph_cost",
           "NormalisedRows", "read_normalised", "scan_pairs", "EdgesAbove", "StrongestEdges", "StrongestPerNeuron",
           "DistanceSums", "similarity_graph", "GraphSlots", "GRAPH_SLOTS"]

MiB = 2**20
# A pair in a block: its similarity (4 bytes), its comparison with tau (1), an edge taken from it (a flat index and
# a value: 12), FPGM's distance and mask (5), rounded up.
BYTES_PER_PAIR = 24
NO_PAIR = -2.0  # what a block holds on and below its diagonal: below every cosine similarity, so never an edge
# A block of b rows also multiplies the b^2 / 2 pairs below its diagonal, for nothing: blocks of at most a
# sixteenth of the layer keep that under 1/16 of the work, and at least MIN_BLOCK_ROWS rows keep the product at
# full speed. (VGG16 classifier.0, 4,096 x 25,088: blocks of 2,730 rows took 4.0 s, of 256 rows 3.0 s.)
MIN_BLOCK_ROWS = 256


@dataclass(frozen=True)
class GraphBudget:
    """The memory one layer's graph may take while it is built: ``block_bytes`` for a block of pairs, ``max_edges``
    edges kept (BYTES_PER_EDGE each) and ``weights_bytes`` for the normalised weights (n x d float32).
    ``GraphBudget.from_settings()`` splits CPRUNE_GRAPH_MEMORY_MB (default 2048): an eighth (at most 256 MiB) for a
    block, an eighth for the edges, the rest for the weights; the defaults are that split of 2048 MiB."""

    block_bytes: int = 256 * MiB
    max_edges: int = 256 * MiB // BYTES_PER_EDGE
    weights_bytes: int = 1536 * MiB

    @classmethod
    def from_settings(cls) -> GraphBudget:
        memory = int(setting("CPRUNE_GRAPH_MEMORY_MB")) * MiB
        block, edges = min(256 * MiB, memory // 8), memory // 8
        return cls(block, edges // BYTES_PER_EDGE, memory - block - edges)

    @property
    def memory_bytes(self) -> int:
        return self.block_bytes + self.max_edges * BYTES_PER_EDGE + self.weights_bytes

    def rows_per_block(self, n: int, bytes_per_row: int | None = None) -> int:
        """Rows of a block: as many as ``block_bytes`` holds at ``bytes_per_row`` each (default: a row of n pairs),
        at least one."""
        return max(1, self.block_bytes // max(bytes_per_row or BYTES_PER_PAIR * n, 1))


@dataclass(frozen=True)
class GraphCost:
    """What a layer's graph takes, from its shape: bytes of each part and in all."""

    neurons: int
    vector_length: int
    weights: int  # the normalised weights, n x d float32
    blocks: int  # one block of pairs at a time
    edges: int  # the most the edges kept may take

    @property
    def total(self) -> int:
        return self.weights + self.blocks + self.edges

    def sentence(self) -> str:
        return (f"about {self.total / MiB:,.0f} MiB: the normalised weights {self.weights / MiB:,.0f} MiB, a block of "
                f"similarities {self.blocks / MiB:,.0f} MiB, the edges up to {self.edges / MiB:,.0f} MiB")


def graph_cost(neurons: int, vector_length: int, budget: GraphBudget = GraphBudget()) -> GraphCost:
    """The memory of a layer's graph built in ``budget``'s blocks (see the module's docstring), from its shape."""
    blocks = min(budget.block_bytes, BYTES_PER_PAIR * neurons * neurons // 2 + BYTES_PER_PAIR * neurons)
    return GraphCost(neurons, vector_length, 4 * neurons * vector_length, max(blocks, BYTES_PER_PAIR * neurons),
                     budget.max_edges * BYTES_PER_EDGE)


def check_graph_cost(neurons: int, vector_length: int, layer: str, budget: GraphBudget = GraphBudget()) -> GraphCost:
    """``graph_cost``, checked before any work. ConfigError (one sentence) for a layer of more than
    MAX_GRAPH_NEURONS neurons, or one whose graph would take more than ``budget.memory_bytes``."""
    cost = graph_cost(neurons, vector_length, budget)
    if neurons > MAX_GRAPH_NEURONS:
        raise ConfigError(f"Layer {layer} has {neurons:,} neurons; graphs are built for up to {MAX_GRAPH_NEURONS:,} "
                          "(the canvas's limit). Choose another layer.")
    if cost.weights > budget.weights_bytes:
        raise ConfigError(f"Layer {layer}'s graph would take {cost.sentence()}, more than the "
                          f"{budget.memory_bytes / MiB:,.0f} MiB a graph may take here (CPRUNE_GRAPH_MEMORY_MB).")
    return cost


@dataclass(frozen=True)
class NormalisedRows:
    """A layer's normalised weights and what was computed from each row as it was read."""

    normalised: torch.Tensor  # n x d float32: W-hat, as graph.normalise_rows gives it
    norms: np.ndarray  # each row's L2 norm
    row_scores: dict[str, np.ndarray]  # name -> one value per row (e.g. the l1 and l2 criteria)


def read_normalised(read_rows: Callable[[int, int], torch.Tensor], neurons: int, vector_length: int,
                    budget: GraphBudget = GraphBudget(),
                    row_scores: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
                    progress: ProgressCallback | None = None, stop: threading.Event | None = None) -> NormalisedRows:
    """W-hat of a layer read a block of rows at a time: ``read_rows(start, stop)`` gives rows start:stop as float32
    (``ModelSource.weight_vectors(layer, (start, stop))``), each normalised as ``graph.normalise_rows`` does into
    one n x d tensor; ``row_scores`` (functions of a block of rows that give one value per row, e.g. the l1 and
    l2 criteria) computed on the rows as read. Never more than W-hat and one block (and its normalised copy) of
    ``budget.block_bytes``. StopRequested once ``stop`` is set."""
    normalised = torch.empty(neurons, vector_length)
    norms = np.empty(neurons, np.float32)
    scores = {name: np.empty(neurons, np.float32) for name in row_scores or {}}
    step = budget.rows_per_block(neurons, 8 * vector_length)  # a block read and its normalised copy
    for start in range(0, neurons, step):
        check_stop(stop)
        end = min(neurons, start + step)
        block = read_rows(start, end).float()
        norm = block.norm(dim=1, keepdim=True)
        torch.div(block, norm + EPS, out=normalised[start:end])
        norms[start:end] = norm.squeeze(1).numpy()
        for name, score in (row_scores or {}).items():
            scores[name][start:end] = score(block).cpu().numpy()
        report(progress, end, neurons, f"Reading the weights: {end:,} of {neurons:,} neurons")
    return NormalisedRows(normalised, norms, scores)


def scan_pairs(normalised: torch.Tensor, collectors: Sequence, budget: GraphBudget = GraphBudget(),
               progress: ProgressCallback | None = None, stop: threading.Event | None = None) -> None:
    """Hand every pair i < j of W-hat's rows to ``collectors``, a block of rows at a time: ``collector.add(start,
    block)`` gets rows start:start+len(block) times every row from ``start`` on (block[k, c] is the similarity of
    neurons start + k and start + c), NO_PAIR on and below the diagonal. At most ``budget.block_bytes`` of pairs at
    once. StopRequested once ``stop`` is set."""
    n = normalised.shape[0]
    step = min(budget.rows_per_block(n), max(MIN_BLOCK_ROWS, -(-n // 16)))
    total = n * (n - 1) // 2
    for start in range(0, n, step):
        check_stop(stop)
        end = min(n, start + step)
        block = normalised[start:end] @ normalised[start:].T
        block[:, :end - start].masked_fill_(torch.ones(end - start, end - start, dtype=torch.bool).tril_(), NO_PAIR)
        for collector in collectors:
            collector.add(start, block)
        done = total - (n - end) * (n - end - 1) // 2
        report(progress, done, total, f"Comparing neurons: {done / max(total, 1):.0%} of {total:,} pairs")


def _above(start: int, block: torch.Tensor, tau: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of a block above ``tau`` (float32 compare): rows, cols (int64) and weights, in (row, col) order."""
    flat = (block > torch.tensor(tau, dtype=block.dtype)).view(-1).nonzero().squeeze(1)
    values = block.view(-1)[flat].numpy()
    rows, cols = np.divmod(flat.numpy(), block.shape[1])
    return rows + start, cols + start, values


class EdgesAbove:
    """Every edge above ``tau``: ``graph()`` is the ``SparseGraph``. ConfigError (a sentence that says to raise tau)
    as soon as there are more than ``max_edges``: the memory stays bounded."""

    def __init__(self, n: int, tau: float, max_edges: int):
        self.n, self.tau, self.max_edges = n, tau, max_edges
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.count = 0

    def add(self, start: int, block: torch.Tensor) -> None:
        rows, cols, values = _above(start, block, self.tau)
        self.count += len(values)
        if self.count > self.max_edges:
            raise ConfigError(f"At tau = {self.tau:g} this layer's graph has more than {self.max_edges:,} edges "
                              f"(found by neuron {start + len(block):,} of {self.n:,}), more than a graph is built "
                              "with here: raise tau.")
        self.parts.append((rows.astype(np.int32), cols.astype(np.int32), values))

    def graph(self) -> SparseGraph:
        if not self.parts:
            return SparseGraph(self.n, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
        rows, cols, weights = (np.concatenate(part) for part in zip(*self.parts))
        return SparseGraph(self.n, rows.astype(np.int64), cols.astype(np.int64), weights)  # blocks came in row order


class StrongestEdges:
    """The ``cap`` strongest edges above ``taus[0]`` (``graph_view.strongest``'s choice, whatever the blocks) and
    the exact edge count above each tau of ``taus`` (ascending): what ``graph_view.payload_from_edges`` needs of a
    graph too large to list. Holds at most twice ``cap`` edges between blocks."""

    def __init__(self, n: int, taus: Sequence[float], cap: int):
        self.n, self.taus, self.cap = n, list(taus), cap
        self.counts = np.zeros(len(self.taus), np.int64)
        self.kept = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
        self.floor = np.float32(self.taus[0])  # below this weight an edge can no longer be among the strongest
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.held = 0

    def add(self, start: int, block: torch.Tensor) -> None:
        rows, cols, values = _above(start, block, self.taus[0])
        self.counts += counts_above(values, self.taus)
        if len(self.kept[2]) >= self.cap:
            chosen = values >= self.floor
            rows, cols, values = rows[chosen], cols[chosen], values[chosen]
        self.pending.append((rows, cols, values))
        self.held += len(values)
        if self.held > self.cap:
            self._select()

    def _select(self) -> None:
        rows, cols, weights = (np.concatenate(part) for part in zip(self.kept, *self.pending))
        kept = strongest(rows, cols, weights, self.n, self.cap)
        self.kept = (rows[kept], cols[kept], weights[kept])
        self.pending, self.held = [], len(kept)
        if len(kept) >= self.cap:
            self.floor = max(self.floor, self.kept[2].min())

    def edges(self) -> EdgeList:
        if self.pending:
            self._select()
        return EdgeList(self.n, *self.kept)


class StrongestPerNeuron:
    """Each neuron's ``k`` strongest edges above ``tau``; ``graph()`` is their union (an edge kept by either end)."""

    def __init__(self, n: int, tau: float, k: int):
        self.n, self.tau, self.k = n, tau, k
        self.values = torch.full((n, k), NO_PAIR)
        self.others = torch.full((n, k), -1, dtype=torch.int64)

    def _merge(self, neurons: torch.Tensor, values: torch.Tensor, others: torch.Tensor) -> None:
        """Merge candidates (one row per neuron of ``neurons``) into those neurons' k strongest."""
        values = torch.cat([self.values[neurons], values], 1)
        others = torch.cat([self.others[neurons], others], 1)
        top = torch.topk(values, self.k, dim=1)
        self.values[neurons], self.others[neurons] = top.values, others.gather(1, top.indices)

    def add(self, start: int, block: torch.Tensor) -> None:
        k, rows = min(self.k, block.shape[1]), torch.arange(start, start + len(block))
        top = torch.topk(block, k, dim=1)  # each row's strongest partners j > i
        self._merge(rows, top.values, top.indices + start)
        if block.shape[0] > 0 and block.shape[1] > 0:  # each column's strongest partners i < j, among these rows
            top = torch.topk(block, min(self.k, len(block)), dim=0)
            self._merge(torch.arange(start, start + block.shape[1]), top.values.T, rows[top.indices].T)

    def graph(self) -> SparseGraph:
        keep = self.values > torch.tensor(self.tau, dtype=self.values.dtype)
        ends = torch.arange(self.n).unsqueeze(1).expand(-1, self.k)[keep]
        others, weights = self.others[keep], self.values[keep]
        rows, cols = torch.minimum(ends, others).numpy(), torch.maximum(ends, others).numpy()
        flat, first = np.unique(rows * self.n + cols, return_index=True)
        return SparseGraph(self.n, flat // self.n, flat % self.n, weights.numpy()[first])


class DistanceSums:
    """FPGM's score: each neuron's summed Euclidean distance to every other, from the block products:
    ||a - b||^2 = |a|^2 + |b|^2 - 2 (|a| + eps)(|b| + eps) cos(a, b), the identity ``torch.cdist`` computes with
    (equal to ``criteria.FPGM`` to float32 rounding; tests/test_blockwise.py)."""

    def __init__(self, norms: np.ndarray):
        self.norms = torch.from_numpy(norms)
        self.sums = torch.zeros(len(norms), dtype=torch.float64)

    def add(self, start: int, block: torch.Tensor) -> None:
        end = start + len(block)
        rows, cols = self.norms[start:end], self.norms[start:]
        distance = block * ((rows + EPS) * -2).unsqueeze(1)
        distance.mul_((cols + EPS).unsqueeze(0)).add_((rows * rows).unsqueeze(1)).add_((cols * cols).unsqueeze(0))
        distance.clamp_min_(0).sqrt_().masked_fill_(block <= NO_PAIR, 0.0)
        self.sums[start:end] += distance.sum(1, dtype=torch.float64)
        self.sums[start:] += distance.sum(0, dtype=torch.float64)


def similarity_graph(vectors: torch.Tensor, tau: float, budget: GraphBudget = GraphBudget(),
                     per_neuron: int | None = None) -> SparseGraph:
    """The graph of ``vectors`` (n x d, in memory) at ``tau``, a block at a time: every edge above ``tau`` (the
    edges of ``graph.threshold_adjacency(cosine_similarity(vectors), tau)``), or with ``per_neuron`` each neuron's
    that many strongest among them. ConfigError for more than ``budget.max_edges`` edges (raise tau).

    Example: ``similarity_graph(torch.tensor([[1., 0.], [1., .1], [0., 1.]]), 0.5).rows.tolist()`` is ``[0]``.
    """
    n = vectors.shape[0]
    collector = EdgesAbove(n, tau, budget.max_edges) if per_neuron is None else StrongestPerNeuron(n, tau, per_neuron)
    scan_pairs(normalise_rows(vectors.detach().cpu()), [collector], budget)
    return collector.graph()


class GraphSlots:
    """At most ``limit`` graphs built at once in this process (the app's server: every visitor's together; the
    command line: each of its layers); ``limit`` None: CPRUNE_GRAPHS_AT_ONCE (default 2), read at each wait."""

    def __init__(self, limit: int | None = None):
        self.limit = limit
        self._changed = threading.Condition()
        self.building = 0
        self.waiting = 0

    @contextmanager
    def held(self, progress: ProgressCallback | None = None, stop: threading.Event | None = None) -> Iterator[None]:
        """Hold a slot for the ``with`` block; while none is free, ``progress(0, 0, "Waiting for N other graphs
        ...")`` every half second. StopRequested once ``stop`` is set while waiting."""
        limit = self.limit or int(setting("CPRUNE_GRAPHS_AT_ONCE"))
        with self._changed:
            self.waiting += 1
            try:
                while self.building >= limit:
                    others = self.building + self.waiting - 1
                    report(progress, 0, 0, f"Waiting for {others} other graph{'s' * (others != 1)} to be built "
                                           f"(this server builds {limit} at once) …")
                    self._changed.wait(0.5)
                    check_stop(stop)
            finally:
                self.waiting -= 1
            self.building += 1
        try:
            yield
        finally:
            with self._changed:
                self.building -= 1
                self._changed.notify_all()


GRAPH_SLOTS = GraphSlots()
