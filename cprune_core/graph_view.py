"""What a browser needs to draw one layer's similarity graph at every tau, in one binary payload.

The app's graph canvas (ui/graph_canvas.py) filters edges by tau in the browser as a slider
moves, so it is sent, once per layer and layout, everything that tau changes: the edges sorted
strongest first down to the lowest tau the slider allows (at most ``EDGE_CAP`` of them), so the
edges above any tau are a prefix of the list, and each tau step's exact edge count in the whole
graph, so the browser knows where its list is complete. The browser then computes degree,
components and eigenvector centrality of that prefix with the core's own rules (the same power
iteration, shift by I, start and tolerance as ``centrality.power_iteration``, whose constants travel
in the payload).

Edges are compared with tau exactly as ``graph.threshold_adjacency`` compares them: an edge is a
pair i < j whose float32 similarity is > tau (tau as float32). A payload is made from a list of the
edges above the lowest tau (``payload_from_edges``), so a large layer whose similarity is computed a
block at a time never needs its n x n matrix; ``build_payload`` makes one from a dense similarity
(``edges_above``). No Streamlit here.
"""
from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np
import torch

from .centrality import POWER_TOLERANCE
from .errors import ConfigError
from .graph import to_networkx
from .sparse_graph import EdgeList

__all__ = ["EDGE_CAP", "PAYLOAD_MAGIC", "GraphPayload", "edges_above", "edge_counts", "counts_above",
           "strongest",
           "payload_from_edges", "build_payload", "decode_payload", "payload_from_encoded", "louvain_labels"]

# Edges a browser is sent at most, the strongest: 8 bytes each (16 MB), held as typed arrays. A power-iteration
# step over 1.5 million edges took chromium 4-17 ms (bench/bench_app.py's 14,336-neuron layer).
EDGE_CAP = 2_000_000
PAYLOAD_MAGIC = b"CPG1"
_HEADER = struct.Struct("<4sI")  # magic, header length


def edge_counts(similarity: torch.Tensor, taus: Sequence[float]) -> np.ndarray:
    """The number of edges of the thresholded graph at each tau of ``taus`` (ascending).

    Parameters
    ----------
    similarity : the n x n cosine similarity of a layer (``graph.cosine_similarity``), symmetric.
    taus : thresholds, ascending, each in [0, 1).

    Returns
    -------
    int64 array, one count per tau: pairs i < j with similarity > tau, compared in the similarity's
    dtype as ``threshold_adjacency`` compares them, so ``summarize(threshold_adjacency(S, t)).edges``
    is the same number. A similarity exactly equal to tau is not an edge.

    Raises
    ------
    ConfigError when ``taus`` is not ascending.

    Example
    -------
    >>> edge_counts(torch.tensor([[1.0, 0.5], [0.5, 1.0]]), [0.0, 0.5]).tolist()
    [1, 0]
    """
    weights = edges_above(similarity, taus[0]).weights if len(taus) else np.zeros(0, np.float32)
    return counts_above(weights, taus)


def edges_above(similarity: torch.Tensor, tau: float) -> EdgeList:
    """The edges of a dense similarity above ``tau``: the pairs i < j whose similarity is > tau, compared in
    the similarity's dtype as ``threshold_adjacency`` compares them, in row-major order.

    Example
    -------
    >>> edges_above(torch.tensor([[1.0, 0.5], [0.5, 1.0]]), 0.2).rows.tolist()
    [0]
    """
    n = similarity.shape[0]
    flat, values = _pairs_above(similarity, tau)
    rows, cols = np.divmod(flat.numpy(), n)
    return EdgeList(n, rows, cols, values.numpy())


def _pairs_above(similarity: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs i < j whose similarity is > tau (compared as ``threshold_adjacency`` compares): their flat
    index i * n + j, ascending, and their similarity. One pass over the matrix, one boolean copy of it."""
    similarity = similarity.cpu()
    above = similarity > torch.tensor(tau, dtype=similarity.dtype)
    above.triu_(1)
    flat = above.view(-1).nonzero().squeeze(1)
    return flat, similarity.reshape(-1)[flat]


def counts_above(weights: np.ndarray, taus: Sequence[float]) -> np.ndarray:
    """How many of ``weights`` (float32) are > each tau of ``taus`` (ascending; ConfigError otherwise), compared
    in float32: int64, one count per tau. Counts of parts of a graph add up to the whole graph's."""
    values = torch.from_numpy(np.ascontiguousarray(weights, np.float32))
    boundaries = torch.tensor(list(taus), dtype=values.dtype)
    if len(boundaries) > 1 and bool((boundaries[1:] <= boundaries[:-1]).any()):
        raise ConfigError("edge_counts needs its tau values in ascending order.")
    # bucket b holds the values in (boundaries[b-1], boundaries[b]]: a value is above tau_k when its bucket is > k
    per_bucket = torch.bincount(torch.bucketize(values, boundaries), minlength=len(boundaries) + 1)
    return (values.numel() - torch.cumsum(per_bucket, 0)[:-1]).numpy().astype(np.int64)


@dataclass(frozen=True)
class GraphPayload:
    """One layer's graph as the canvas draws it; ``encoded`` is what travels, ``key`` names it."""

    positions: np.ndarray  # n x 2 float32, stay put as tau moves
    norms: np.ndarray  # n float32: L2 norm of each neuron's weight vector
    rows: np.ndarray  # edge ends (i < j), strongest edge first
    cols: np.ndarray
    weights: np.ndarray  # float32 cosine similarity, descending
    taus: np.ndarray  # the slider's tau steps, ascending
    counts: np.ndarray  # edges of the whole graph above each tau step (may exceed len(weights))
    max_iter: int  # power iteration's budget and tolerance, as the core ranks with them
    tol: float
    encoded: bytes
    key: str  # a digest of the contents

    @property
    def complete_from(self) -> float | None:
        """The lowest tau step at which the payload holds every edge (None: at no step)."""
        complete = np.nonzero(self.counts <= len(self.weights))[0]
        return float(self.taus[complete[0]]) if len(complete) else None

    def holds_every_edge(self, tau: float) -> bool:
        """Whether the payload holds every edge above ``tau`` (one of the tau steps)."""
        step = int(np.argmin(np.abs(self.taus - tau)))
        return bool(self.counts[step] <= len(self.weights))


def strongest(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, n: int, cap: int) -> np.ndarray:
    """The positions of the ``cap`` heaviest of these edges, ascending: every edge heavier than the cap-th
    weight, and of the edges of exactly that weight the first in (row, col) order. Which edges a cap keeps is
    so the same for the same edges in any order, whether they come at once or a block at a time (a running
    selection that keeps this many after each block keeps the same edges).

    Example: ``strongest(np.array([0, 0, 1]), np.array([2, 1, 2]), np.array([.5, .5, .9], np.float32), 3, 2)`` is
    ``array([1, 2])``: (0, 1) is before (0, 2).
    """
    if len(weights) <= cap:
        return np.arange(len(weights))
    if cap <= 0:
        return np.zeros(0, np.int64)
    cutoff = np.partition(weights, len(weights) - cap)[len(weights) - cap]
    heavier = np.nonzero(weights > cutoff)[0]
    tied = np.nonzero(weights == cutoff)[0]
    order = np.argsort(np.asarray(rows[tied], np.int64) * n + np.asarray(cols[tied], np.int64), kind="stable")
    return np.sort(np.concatenate([heavier, tied[order[:cap - len(heavier)]]]))


def payload_from_edges(edges: EdgeList, positions: np.ndarray, norms: np.ndarray, taus: Sequence[float], *,
                       max_iter: int, tol: float = POWER_TOLERANCE, edge_cap: int = EDGE_CAP,
                       counts: np.ndarray | None = None) -> GraphPayload:
    """The canvas payload of one layer, from its edges.

    Parameters
    ----------
    edges : every edge of the layer's graph above ``taus[0]`` (more may be given: those at or below it are left
        out); the counts of the payload are exact only if none is missing.
    positions : n x 2 node positions (``graph.force_layout`` or ``graph.layout_2d``).
    norms : n L2 norms of the weight vectors.
    taus : the slider's tau steps, ascending; edges are kept down to ``taus[0]``.
    max_iter, tol : the power iteration the browser runs (those of the ranking, ``criteria.ranking_centrality``).
    edge_cap : at most this many edges, the strongest (``strongest``: of the edges of the cap-th weight, the first
        in (row, col) order). Edges of equal weight are listed by (row, col): the payload is the same for the same
        graph in any order.
    counts : the whole graph's edge count at each tau step, when ``edges`` holds only its strongest (a large
        layer's, kept a block at a time: ``blockwise.StrongestEdges``); None: counted from ``edges``.

    Returns
    -------
    A ``GraphPayload``; ``encoded`` is ``PAYLOAD_MAGIC``, a little-endian uint32 header length, a JSON header
    (padded to 4 bytes) and the arrays it lists, each at a 4-byte-aligned offset: positions float32 (x0, y0,
    x1, ...), norms float32, rows and cols uint16 (uint32 above 65,535 neurons), weights float32.

    Raises
    ------
    ConfigError for positions or norms that do not match ``edges.n``, an empty ``taus``, edge arrays of
    different lengths, an edge that is not a pair i < j of 0..n-1, a pair given twice, or ``counts`` of another
    length than ``taus``.

    Example
    -------
    >>> e = EdgeList(3, np.array([1, 0]), np.array([2, 1]), np.array([0.3, 0.5], np.float32))
    >>> payload_from_edges(e, np.zeros((3, 2)), np.ones(3), [0.0, 0.4], max_iter=100).rows.tolist()
    [0, 1]
    """
    n = edges.n
    if positions.shape != (n, 2) or norms.shape != (n,):
        raise ConfigError(f"A graph of {n} neurons needs n x 2 positions and n norms, got {positions.shape} and "
                          f"{norms.shape}.")
    if not len(taus):
        raise ConfigError("A graph payload needs at least one tau step.")
    rows, cols, weights = _canonical(edges, float(taus[0]))
    if counts is None:
        counts = counts_above(weights, taus)
    elif len(counts) != len(taus):
        raise ConfigError(f"A graph payload needs one edge count per tau step: {len(counts)} for {len(taus)} steps.")
    counts = np.asarray(counts, np.int64)
    if len(weights) > edge_cap:
        kept = strongest(rows, cols, weights, n, edge_cap)  # kept in (row, col) order
        rows, cols, weights = rows[kept], cols[kept], weights[kept]
    order = np.argsort(-weights, kind="stable")
    index = np.uint16 if n <= 65_535 else np.uint32
    arrays = {"positions": np.ascontiguousarray(positions, np.float32).ravel(),
              "norms": np.ascontiguousarray(norms, np.float32), "rows": rows[order].astype(index),
              "cols": cols[order].astype(index), "weights": weights[order]}
    return _packed(arrays, n, taus, counts, max_iter, tol)


def _packed(arrays: dict[str, np.ndarray], n: int, taus: Sequence[float], counts: np.ndarray, max_iter: int,
            tol: float) -> GraphPayload:
    """The payload of these ready arrays (strongest edge first), named by a digest of its contents."""
    digest = hashlib.sha256(b"".join(a.tobytes() for a in arrays.values()) + counts.tobytes()).hexdigest()[:24]
    header = {"version": 1, "key": digest, "n": n, "m": len(arrays["weights"]), "taus": [float(t) for t in taus],
              "counts": counts.tolist(), "maxIter": max_iter, "tol": tol, "arrays": {}}
    return GraphPayload(positions=arrays["positions"].reshape(n, 2), norms=arrays["norms"], rows=arrays["rows"],
                        cols=arrays["cols"], weights=arrays["weights"], taus=np.asarray(taus, float),
                        counts=counts, max_iter=max_iter, tol=tol, encoded=_encode(header, arrays), key=digest)


def _canonical(edges: EdgeList, tau: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The edges above ``tau`` (float32 compare) in (row, col) order, checked (see ``payload_from_edges``)."""
    rows, cols = np.asarray(edges.rows, np.int64), np.asarray(edges.cols, np.int64)
    weights = np.asarray(edges.weights, np.float32)
    if not rows.shape == cols.shape == weights.shape or rows.ndim != 1:
        raise ConfigError(f"An edge list needs rows, cols and weights of one length, got {rows.shape}, "
                          f"{cols.shape} and {weights.shape}.")
    if len(rows) and (rows.min() < 0 or cols.max() >= edges.n or bool((rows >= cols).any())):
        raise ConfigError(f"An edge list of {edges.n} neurons needs pairs i < j of 0..{edges.n - 1}.")
    above = weights > np.float32(tau)
    rows, cols, weights = rows[above], cols[above], weights[above]
    flat = rows * edges.n + cols
    if bool((flat[1:] <= flat[:-1]).any()):
        by_pair = np.argsort(flat, kind="stable")
        rows, cols, weights, flat = rows[by_pair], cols[by_pair], weights[by_pair], flat[by_pair]
        if bool((flat[1:] == flat[:-1]).any()):
            raise ConfigError("An edge list gives a pair of neurons twice.")
    return rows, cols, weights


def build_payload(similarity: torch.Tensor, positions: np.ndarray, norms: np.ndarray, taus: Sequence[float],
                  *, max_iter: int, tol: float = POWER_TOLERANCE, edge_cap: int = EDGE_CAP) -> GraphPayload:
    """The canvas payload of one layer from its dense n x n similarity (``graph.cosine_similarity``):
    ``payload_from_edges`` of ``edges_above(similarity, taus[0])``, with its parameters, result and errors.

    Example
    -------
    >>> s = torch.tensor([[1.0, 0.5, 0.1], [0.5, 1.0, 0.3], [0.1, 0.3, 1.0]])
    >>> p = build_payload(s, np.zeros((3, 2)), np.ones(3), [0.0, 0.2, 0.4], max_iter=100)
    >>> p.weights.tolist(), p.counts.tolist()
    ([0.5, 0.30000001192092896, 0.10000000149011612], [3, 2, 1])
    """
    if not len(taus):
        raise ConfigError("A graph payload needs at least one tau step.")
    return payload_from_edges(edges_above(similarity, float(taus[0])), positions, norms, taus, max_iter=max_iter,
                              tol=tol, edge_cap=edge_cap)


def _encode(header: dict, arrays: dict[str, np.ndarray]) -> bytes:
    offset = 0
    for name, array in arrays.items():
        header["arrays"][name] = {"dtype": array.dtype.name, "offset": offset, "length": int(array.size)}
        offset += -(-array.nbytes // 4) * 4
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(_HEADER.size + len(text)) % 4)
    body = bytearray(offset)
    for name, array in arrays.items():
        start = header["arrays"][name]["offset"]
        body[start:start + array.nbytes] = array.tobytes()
    return _HEADER.pack(PAYLOAD_MAGIC, len(text)) + text + bytes(body)


def decode_payload(encoded: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, arrays) of an encoded payload, as the browser reads it; ConfigError when it is not one (too short,
    wrong magic bytes, a header that is not JSON or names arrays outside the bytes)."""
    if len(encoded) < _HEADER.size:
        raise ConfigError("Not a graph payload: too short.")
    magic, length = _HEADER.unpack_from(encoded)
    if magic != PAYLOAD_MAGIC:
        raise ConfigError("Not a graph payload: wrong magic bytes.")
    try:
        header = json.loads(encoded[_HEADER.size:_HEADER.size + length])
        base = _HEADER.size + length
        arrays = {name: np.frombuffer(encoded, dtype=spec["dtype"], count=spec["length"], offset=base + spec["offset"])
                  for name, spec in header["arrays"].items()}
    except (ValueError, TypeError, KeyError, AttributeError) as error:  # json's errors are ValueErrors
        raise ConfigError(f"Not a graph payload: its header does not describe it ({error}).") from None
    return header, arrays


def payload_from_encoded(encoded: bytes) -> GraphPayload:
    """The ``GraphPayload`` whose ``encoded`` bytes these are (a payload kept on disk: ``graph_cache``), its arrays
    views of the bytes. ConfigError when they are not a payload, or not one whole: its arrays must lie inside
    it and hash to its key."""
    header, arrays = decode_payload(encoded)
    try:
        n, counts = int(header["n"]), np.asarray(header["counts"], np.int64)
        taus, max_iter, tol = np.asarray(header["taus"], float), int(header["maxIter"]), float(header["tol"])
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"Not a whole graph payload: its header lacks {error}.") from None
    if set(arrays) != {"positions", "norms", "rows", "cols", "weights"} or len(arrays["positions"]) != 2 * n:
        raise ConfigError("Not a whole graph payload: its arrays do not match its header.")
    digest = hashlib.sha256(b"".join(a.tobytes() for a in arrays.values()) + counts.tobytes()).hexdigest()[:24]
    if digest != header["key"]:
        raise ConfigError("Not a whole graph payload: its contents do not match its key.")
    return GraphPayload(positions=arrays["positions"].reshape(n, 2), norms=arrays["norms"], rows=arrays["rows"],
                        cols=arrays["cols"], weights=arrays["weights"], taus=taus, counts=counts, max_iter=max_iter,
                        tol=tol, encoded=encoded, key=digest)


def louvain_labels(adjacency, seed: int = 0) -> np.ndarray:
    """Community of each node by networkx's Louvain method (weighted, seeded), numbered by size.

    Parameters
    ----------
    adjacency : the thresholded graph (``graph.threshold_adjacency``, n x n, or a ``SparseGraph``).
    seed : Louvain's random seed: the same graph and seed give the same communities.

    Returns
    -------
    int32 array of n labels: 0 is the largest community, ties by their smallest node. Isolated nodes
    are communities of one. An empty graph gives an empty array.

    Raises
    ------
    ConfigError above ``graph.MAX_NETWORKX_EDGES`` edges (from ``to_networkx``).

    Example
    -------
    >>> a = torch.zeros(4, 4); a[0, 1] = a[1, 0] = 0.9
    >>> louvain_labels(a).tolist()
    [0, 0, 1, 2]
    """
    graph = to_networkx(adjacency)
    communities = nx.community.louvain_communities(graph, weight="weight", seed=seed)
    labels = np.zeros(graph.number_of_nodes(), np.int32)
    for label, members in enumerate(sorted(communities, key=lambda c: (-len(c), min(c)))):
        labels[list(members)] = label
    return labels
