import io
import math

import networkx as nx
import numpy as np
import pytest
import torch
from torch import nn

from cprune_core import graph as graph_module
from cprune_core.errors import ConfigError, NonFiniteWeightsError
from cprune_core.graph_view import edge_counts
from cprune_core.graph import (MAX_FORCE_LAYOUT_NODES, adjacency_for, cosine_similarity, force_layout, graph_file,
                               layout_2d, principal_components, strongest_edges, summarize, tau_for_mean_degree,
                               threshold_adjacency, to_networkx, upper_edges)
from cprune_core.layers import finite_rows, weight_vectors


def test_weight_vectors_linear_rows_and_flattened_filters():
    linear = nn.Linear(5, 3)
    assert torch.equal(weight_vectors(linear), linear.weight)
    conv = nn.Conv2d(4, 6, 3)
    vectors = weight_vectors(conv)
    assert vectors.shape == (6, 4 * 3 * 3)
    assert torch.equal(vectors[2], conv.weight[2].flatten())
    with pytest.raises(ConfigError, match="only Linear and Conv2d"):
        weight_vectors(nn.BatchNorm2d(3))


def test_cosine_similarity_matches_definition():
    vectors = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [-1.0, 0.0]])
    s = cosine_similarity(vectors)
    assert s[0, 1] == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    assert s[0, 2] == pytest.approx(0.0, abs=1e-6)
    assert s[0, 3] == pytest.approx(-1.0, abs=1e-6)
    assert torch.allclose(s, s.T)
    assert torch.allclose(torch.diagonal(s), torch.ones(4), atol=1e-6)


def test_threshold_is_strict_drops_diagonal_and_can_work_in_place():
    s = torch.tensor([[1.0, 0.5, 0.2], [0.5, 1.0, 0.8], [0.2, 0.8, 1.0]])
    a = threshold_adjacency(s, 0.5)
    assert a.tolist() == [[0, 0, 0], [0, 0, 0.800000011920929], [0, 0.800000011920929, 0]]
    assert s[0, 0] == 1.0  # not modified
    threshold_adjacency(s, 0.1, inplace=True)
    assert s[0, 0] == 0.0 and s[0, 2] == pytest.approx(0.2)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        threshold_adjacency(s, 1.0)


def test_summary_counts_components_and_isolated_nodes():
    a = torch.zeros(6, 6)
    for i, j in [(0, 1), (1, 2), (3, 4)]:
        a[i, j] = a[j, i] = 0.5
    summary = summarize(a)
    assert (summary.nodes, summary.edges, summary.components, summary.isolated, summary.largest_component) == (6, 3, 3, 1, 3)
    assert summary.density == pytest.approx(3 / 15)
    assert summarize(torch.zeros(1, 1)).density == 0.0


def test_networkx_export_keeps_isolated_nodes_and_weights():
    a = torch.zeros(4, 4)
    a[0, 2] = a[2, 0] = 0.7
    graph = to_networkx(a)
    assert sorted(graph.nodes) == [0, 1, 2, 3]
    assert graph.number_of_edges() == 1 and graph[0][2]["weight"] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="raise tau"):
        to_networkx(a, max_edges=0)


def test_upper_edges_lists_each_edge_once_in_row_major_order():
    a = torch.zeros(4, 4)
    for (i, j), w in {(2, 3): 0.6, (0, 2): 0.3, (0, 1): 0.9}.items():
        a[i, j] = a[j, i] = w
    rows, cols, weights = upper_edges(a)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 1), (0, 2), (2, 3)]
    assert weights.tolist() == pytest.approx([0.9, 0.3, 0.6])
    assert all(len(part) == 0 for part in upper_edges(torch.zeros(3, 3)))  # no edge
    assert all(len(part) == 0 for part in upper_edges(torch.zeros(0, 0)))  # no neuron


def test_principal_components_find_the_spread_are_repeatable_and_leave_the_global_generator_alone():
    generator = torch.Generator().manual_seed(0)
    # Points spread 10x more along one direction than along the others.
    points = torch.randn(200, 5, generator=generator) * torch.tensor([10.0, 1.0, 0.3, 0.3, 0.3])
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    projected = principal_components(points, 2)
    assert torch.equal(torch.rand(1), expected)
    assert projected.shape == (200, 2) and torch.equal(projected, principal_components(points, 2))
    assert projected[:, 0].std() > 5 * projected[:, 1].std()
    assert abs(projected.mean(0)).max() < 1e-4  # centred


def test_strongest_edges_come_first_and_total_is_reported():
    a = torch.zeros(4, 4)
    for (i, j), w in {(0, 1): 0.3, (1, 2): 0.9, (2, 3): 0.6}.items():
        a[i, j] = a[j, i] = w
    rows, cols, weights, total = strongest_edges(a, limit=2)
    assert total == 3
    assert list(zip(rows, cols)) == [(1, 2), (2, 3)]
    assert weights.tolist() == pytest.approx([0.9, 0.6])


def test_layout_is_deterministic_and_places_similar_neurons_together():
    torch.manual_seed(1)
    base = torch.randn(3, 20)
    vectors = torch.cat([base[0] + 0.01 * torch.randn(10, 20), base[1] + 0.01 * torch.randn(10, 20)])
    first, second = layout_2d(vectors), layout_2d(vectors)
    assert np.array_equal(first, second) and first.shape == (20, 2)
    within = np.linalg.norm(first[:10] - first[:10].mean(0), axis=1).mean()
    between = np.linalg.norm(first[:10].mean(0) - first[10:].mean(0))
    assert between > 5 * within


def test_non_finite_weights_name_the_layer():
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight[1, 2] = float("nan")
    with pytest.raises(NonFiniteWeightsError, match="classifier.0.*1 neuron"):
        adjacency_for(layer, 0.1, "classifier.0")


def test_a_block_of_rows_is_checked_alone_and_names_its_bad_neurons_by_their_number_in_the_layer():
    layer = nn.Linear(4, 6)
    with torch.no_grad():
        layer.weight[4, 1] = float("inf")
    assert weight_vectors(layer, "fc", rows=(0, 3)).shape == (3, 4)  # the bad row is not among these
    with pytest.raises(NonFiniteWeightsError, match=r"Layer fc has NaN or Inf weights in 1 neuron\(s\) \(first: \[4\]\)"):
        weight_vectors(layer, "fc", rows=(3, 6))


def test_large_finite_weights_whose_sum_overflows_are_not_called_infinite():
    vectors = torch.full((3, 4), 3e38)  # finite, but their float32 sum is not
    assert finite_rows(vectors, "big") is vectors


def test_real_layer_graph_is_symmetric_with_no_self_loops(lite0):
    a = adjacency_for(lite0.model.get_submodule("head.1"), 0.1, "head.1")
    assert a.shape == (1280, 1280)
    assert torch.equal(a, a.T) and not torch.diagonal(a).any()
    assert (a[a > 0] > 0.1).all()
    assert nx.number_of_edges(to_networkx(a)) == summarize(a).edges


# ----------------------------------------------------------------------------- force-directed layout


def two_cliques(n: int = 10) -> torch.Tensor:
    adjacency = torch.zeros(2 * n, 2 * n)
    adjacency[:n, :n] = 0.5
    adjacency[n:, n:] = 0.5
    adjacency.fill_diagonal_(0)
    return adjacency


@pytest.mark.parametrize("edge_sample", [None, 16])  # every edge pulls each step; 16 of the 90 drawn each step
def test_force_layout_puts_linked_neurons_together_and_is_repeatable(edge_sample, monkeypatch):
    if edge_sample is not None:
        monkeypatch.setattr(graph_module, "FORCE_EDGE_SAMPLE", edge_sample)
    adjacency = two_cliques()
    xy = force_layout(adjacency)
    assert xy.shape == (20, 2) and np.isfinite(xy).all() and np.abs(xy).max() <= 1.0 + 1e-6
    within = np.linalg.norm(xy[:10, None] - xy[None, :10], axis=-1).mean()
    between = np.linalg.norm(xy[:10, None] - xy[None, 10:], axis=-1).mean()
    assert within < 0.5 * between
    assert np.array_equal(xy, force_layout(adjacency)) and not np.array_equal(xy, force_layout(adjacency, seed=1))


@pytest.mark.parametrize("n", [0, 1, 2, 7])
def test_force_layout_of_small_and_edgeless_graphs(n):
    xy = force_layout(torch.zeros(n, n))
    assert xy.shape == (n, 2) and np.isfinite(xy).all()
    if n == 1:
        assert np.array_equal(xy, np.zeros((1, 2)))
    if n == 7:  # no edge: spread around the centre, no two nodes on top of each other
        assert np.linalg.norm(xy[:, None] - xy[None], axis=-1)[np.triu_indices(7, 1)].min() > 0.05


def test_force_layout_refuses_very_large_graphs():
    with pytest.raises(ConfigError, match="weight-PCA layout"):
        force_layout(torch.zeros(MAX_FORCE_LAYOUT_NODES + 1, MAX_FORCE_LAYOUT_NODES + 1))


def test_tau_for_mean_degree_gives_about_that_many_edges_and_handles_tiny_graphs():
    torch.manual_seed(0)
    similarity = cosine_similarity(torch.randn(300, 500))  # random vectors: similarities near 0
    taus = [round(0.01 * k, 2) for k in range(100)]
    tau = tau_for_mean_degree(taus, edge_counts(similarity, taus), 300, 10)
    assert 0.0 < tau < 0.2 and tau == round(tau, 2)
    degree = 2 * summarize(threshold_adjacency(similarity, tau)).edges / 300
    assert 10 <= degree <= 40  # the largest step with at least as many
    assert 2 * summarize(threshold_adjacency(similarity, tau + 0.01)).edges / 300 < 10
    assert tau_for_mean_degree(taus, edge_counts(similarity[:1, :1], taus), 1, 10) == 0.0
    small = cosine_similarity(torch.randn(3, 4))
    assert tau_for_mean_degree(taus, edge_counts(small, taus), 3, 10) == 0.0  # wants more pairs than exist


@pytest.mark.parametrize("file_format, marker", [("graphml", b"<graphml"), ("gexf", b"<gexf")])
def test_graph_files_hold_nodes_edges_and_attributes(file_format, marker):
    adjacency = threshold_adjacency(cosine_similarity(torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])), 0.5)
    content = graph_file(adjacency, {"centrality": np.array([0.7, 0.7, 0.0])}, file_format)
    assert marker in content
    graph = (nx.read_graphml if file_format == "graphml" else nx.read_gexf)(io.BytesIO(content))
    assert graph.number_of_nodes() == 3 and graph.number_of_edges() == 1
    assert float(graph.nodes["0"]["centrality"]) == pytest.approx(0.7)
    with pytest.raises(ConfigError, match="Unknown graph format"):
        graph_file(adjacency, {}, "dot")
