"""The graph canvas's payload (cprune_core/graph_view.py): what the browser is sent is what the core computes."""
import numpy as np
import pytest
import torch

from cprune_core.errors import ConfigError
from cprune_core.graph import cosine_similarity, summarize, threshold_adjacency
from cprune_core.centrality import POWER_TOLERANCE
from cprune_core.sparse_graph import EdgeList
from cprune_core.graph_view import (PAYLOAD_MAGIC, build_payload, decode_payload, edge_counts,
                                    edges_above, louvain_labels, payload_from_edges)

TAUS = [round(0.01 * k, 2) for k in range(100)]


def layer_similarity(n: int = 60, d: int = 12, seed: int = 0) -> torch.Tensor:
    """Cosine similarity of n random neurons with some shared directions (a spread of similarities)."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(4, d, generator=generator)
    vectors = base[torch.arange(n) % 4] + 0.8 * torch.randn(n, d, generator=generator)
    return cosine_similarity(vectors)


def test_edge_counts_are_the_cores_at_every_tau_step():
    similarity = layer_similarity()
    counts = edge_counts(similarity, TAUS)
    assert counts.tolist() == [summarize(threshold_adjacency(similarity, t)).edges for t in TAUS]
    assert counts[0] > counts[50] >= counts[-1]


def test_a_similarity_equal_to_tau_is_no_edge_in_float32_as_in_the_core():
    similarity = torch.eye(3)
    similarity[0, 1] = similarity[1, 0] = 0.13  # float32(0.13): on the boundary of the step tau = 0.13
    similarity[1, 2] = similarity[2, 1] = torch.nextafter(torch.tensor(0.13), torch.tensor(1.0))
    counts = edge_counts(similarity, [0.12, 0.13, 0.14])
    assert counts.tolist() == [summarize(threshold_adjacency(similarity, t)).edges for t in (0.12, 0.13, 0.14)]
    assert counts.tolist() == [2, 1, 0]


def test_edge_counts_need_ascending_taus():
    with pytest.raises(ConfigError, match="ascending"):
        edge_counts(torch.eye(2), [0.2, 0.1])


def test_payload_edges_are_the_strongest_first_and_each_step_is_a_prefix():
    similarity = layer_similarity()
    n = similarity.shape[0]
    positions = np.random.default_rng(0).standard_normal((n, 2)).astype(np.float32)
    norms = np.linspace(0.5, 2.0, n).astype(np.float32)
    payload = build_payload(similarity, positions, norms, TAUS, max_iter=500)
    assert np.all(np.diff(payload.weights) <= 0) and np.all(payload.rows < payload.cols)
    assert len(payload.weights) == payload.counts[0]  # no cap: every edge above the lowest tau
    upper = similarity[payload.rows.astype(np.int64), payload.cols.astype(np.int64)].numpy()
    assert np.array_equal(upper, payload.weights)
    for step, tau in enumerate(TAUS):  # the edges above tau are the first counts[step]
        assert (payload.weights > np.float32(tau)).sum() == payload.counts[step]
    assert payload.complete_from == 0.0 and payload.holds_every_edge(0.0)

    header, arrays = decode_payload(payload.encoded)
    assert payload.encoded[:4] == PAYLOAD_MAGIC and header["key"] == payload.key
    assert (header["n"], header["m"], header["maxIter"], header["tol"]) == (n, len(payload.weights), 500,
                                                                            POWER_TOLERANCE)
    assert header["taus"] == TAUS and header["counts"] == payload.counts.tolist()
    assert np.array_equal(arrays["positions"].reshape(n, 2), positions) and np.array_equal(arrays["norms"], norms)
    for name in ("rows", "cols", "weights"):
        assert np.array_equal(arrays[name], getattr(payload, name))
    assert arrays["rows"].dtype == np.uint16
    assert all(spec["offset"] % 4 == 0 for spec in header["arrays"].values())  # typed arrays in the browser


def test_the_cap_keeps_the_strongest_and_says_where_the_payload_is_complete():
    similarity = layer_similarity()
    n = similarity.shape[0]
    full = build_payload(similarity, np.zeros((n, 2)), np.ones(n), TAUS, max_iter=100)
    capped = build_payload(similarity, np.zeros((n, 2)), np.ones(n), TAUS, max_iter=100, edge_cap=200)
    assert len(capped.weights) == 200 and np.array_equal(capped.weights, full.weights[:200])
    assert np.array_equal(capped.counts, full.counts)  # the counts are the whole graph's
    first = int(np.argmax(capped.counts <= 200))
    assert capped.complete_from == TAUS[first] and capped.holds_every_edge(TAUS[first])
    assert not capped.holds_every_edge(TAUS[first - 1])
    assert capped.key != full.key


def test_payload_of_one_neuron_and_bad_shapes():
    one = build_payload(torch.ones(1, 1), np.zeros((1, 2)), np.ones(1), TAUS, max_iter=10)
    assert len(one.weights) == 0 and one.counts.sum() == 0 and one.complete_from == 0.0
    with pytest.raises(ConfigError, match="n x 2 positions"):
        build_payload(torch.eye(3), np.zeros((2, 2)), np.ones(3), TAUS, max_iter=10)
    with pytest.raises(ConfigError, match="at least one tau"):
        build_payload(torch.eye(3), np.zeros((3, 2)), np.ones(3), [], max_iter=10)
    with pytest.raises(ConfigError, match="magic"):
        decode_payload(b"NOPE" + bytes(8))


def test_a_payload_from_an_edge_list_in_any_order_is_the_one_from_the_dense_similarity():
    """The large path (an edge list, never an n x n matrix) and the dense one make the same payload, whatever the
    list's order and whatever it holds at or below the lowest tau."""
    similarity = layer_similarity()
    n = similarity.shape[0]
    positions, norms = np.zeros((n, 2)), np.ones(n)
    dense = build_payload(similarity, positions, norms, TAUS[10:], max_iter=100)
    edges = edges_above(similarity, 0.0)  # more than the payload keeps: it starts at tau 0.10
    shuffled = np.random.default_rng(1).permutation(len(edges.weights))
    listed = payload_from_edges(EdgeList(n, edges.rows[shuffled], edges.cols[shuffled], edges.weights[shuffled]),
                                positions, norms, TAUS[10:], max_iter=100)
    assert listed.key == dense.key and listed.encoded == dense.encoded
    capped = [payload_from_edges(EdgeList(n, edges.rows[order], edges.cols[order], edges.weights[order]), positions,
                                 norms, TAUS, max_iter=100, edge_cap=150)
              for order in (shuffled, np.arange(len(shuffled)))]
    assert capped[0].key == capped[1].key and len(capped[0].weights) == 150  # ties at the cap broken the same way


def test_edges_above_are_the_pairs_the_core_thresholds():
    similarity = layer_similarity()
    edges = edges_above(similarity, 0.25)
    adjacency = threshold_adjacency(similarity, 0.25)
    assert np.all(edges.rows < edges.cols) and len(edges.weights) == summarize(adjacency).edges
    assert np.array_equal(adjacency[edges.rows, edges.cols].numpy(), edges.weights)


@pytest.mark.parametrize(("rows", "cols", "weights", "refusal"), [
    ([0, 1], [1], [0.5, 0.5], "one length"),
    ([1], [0], [0.5], "pairs i < j"),
    ([1], [1], [0.5], "pairs i < j"),
    ([-1], [2], [0.5], "pairs i < j"),
    ([0], [3], [0.5], "pairs i < j"),
    ([0, 0], [1, 1], [0.5, 0.4], "twice"),
])
def test_an_edge_list_that_is_not_one_is_refused(rows, cols, weights, refusal):
    edges = EdgeList(3, np.array(rows), np.array(cols), np.array(weights, np.float32))
    with pytest.raises(ConfigError, match=refusal):
        payload_from_edges(edges, np.zeros((3, 2)), np.ones(3), TAUS, max_iter=10)


def test_louvain_finds_two_groups_numbers_them_by_size_and_is_seeded():
    adjacency = torch.zeros(9, 9)
    for group in (range(0, 5), range(5, 8)):  # a clique of 5, a clique of 3 and neuron 8 alone
        for i in group:
            for j in group:
                if i != j:
                    adjacency[i, j] = 0.9
    adjacency[4, 5] = adjacency[5, 4] = 0.1  # a weak bridge
    labels = louvain_labels(adjacency)
    assert labels.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 2]
    similarity = layer_similarity(seed=3)
    graph = threshold_adjacency(similarity, 0.3)
    assert np.array_equal(louvain_labels(graph, seed=1), louvain_labels(graph, seed=1))
