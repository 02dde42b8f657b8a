import math

import networkx as nx
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from cprune_core.centrality import eigenvector_centrality, pagerank, weighted_degree
from cprune_core.graph import adjacency_for, cosine_similarity, threshold_adjacency, to_networkx
from cprune_core.criteria import make_criterion


def networkx_scores(adjacency: torch.Tensor, algorithm=nx.eigenvector_centrality, **kwargs) -> np.ndarray:
    graph = to_networkx(adjacency)
    scores = algorithm(graph, weight="weight", **kwargs)
    return np.array([scores[i] for i in range(adjacency.shape[0])])


def test_agrees_with_networkx_on_a_real_pretrained_layer(lite0):
    adjacency = adjacency_for(lite0.model.get_submodule("head.1"), 0.1, "head.1")
    ours = eigenvector_centrality(adjacency).scores.numpy()
    reference = networkx_scores(adjacency, max_iter=1000)
    assert spearmanr(ours, reference).statistic >= 0.999
    k = 640
    assert set(np.argsort(-ours)[:k]) == set(np.argsort(-reference)[:k])
    assert np.allclose(ours, reference, atol=1e-5)


def test_no_edges_gives_uniform_scores():
    scores = eigenvector_centrality(torch.zeros(5, 5)).scores
    assert torch.allclose(scores, torch.full((5,), 1 / math.sqrt(5)))


def test_isolated_nodes_get_zero_and_others_match_networkx():
    a = torch.zeros(5, 5)
    for i, j, w in [(0, 1, 0.5), (1, 2, 0.9), (0, 2, 0.3)]:
        a[i, j] = a[j, i] = w
    ours = eigenvector_centrality(a).scores.numpy()
    assert ours[3] == pytest.approx(0, abs=1e-5) and ours[4] == pytest.approx(0, abs=1e-5)
    assert np.allclose(ours, networkx_scores(a, max_iter=1000), atol=1e-5)


def test_several_components_follow_the_dominant_one_like_networkx():
    a = torch.zeros(7, 7)
    for i, j in [(0, 1), (1, 2), (0, 2), (2, 3)]:  # a denser component
        a[i, j] = a[j, i] = 0.9
    a[4, 5] = a[5, 4] = 0.2  # a weak pair
    ours = eigenvector_centrality(a, max_iter=5000).scores.numpy()
    reference = networkx_scores(a, max_iter=5000)
    assert np.allclose(ours, reference, atol=1e-4)
    assert ours[[4, 5, 6]].max() < 1e-3 < ours[[0, 1, 2, 3]].min()


def test_duplicate_neurons_get_equal_centrality():
    torch.manual_seed(0)
    vectors = torch.randn(30, 8)
    vectors[7] = vectors[3]
    scores = eigenvector_centrality(threshold_adjacency(cosine_similarity(vectors), 0.1)).scores
    assert scores[3] == pytest.approx(float(scores[7]), rel=1e-5)


def test_single_node_and_empty_graph():
    assert eigenvector_centrality(torch.zeros(1, 1)).scores.tolist() == [1.0]
    assert eigenvector_centrality(torch.zeros(0, 0)).scores.numel() == 0
    assert pagerank(torch.zeros(1, 1)).scores.tolist() == [1.0]
    assert pagerank(torch.zeros(0, 0)).scores.numel() == 0


def test_no_convergence_is_a_value_with_the_last_iterate_and_a_note():
    torch.manual_seed(0)
    a = threshold_adjacency(cosine_similarity(torch.randn(50, 10)), 0.0)
    stopped = eigenvector_centrality(a, max_iter=1, tol=1e-12)
    assert not stopped.converged and stopped.iterations == 1 and stopped.scores.shape == (50,)
    assert "eigenvector: power iteration stopped at its budget of 1 steps" in stopped.note("eigenvector")
    converged = eigenvector_centrality(a)
    assert converged.converged and converged.note("eigenvector") == ""
    assert not pagerank(a, max_iter=1).converged


def test_pagerank_converges_on_the_default_backbones_small_residual_layer(lite0):
    """The crash of issue 28: at tau 0.2, blocks.1.project.1 (24 neurons) stuck at float32 rounding noise above
    its tolerance; iterated in float64 it converges and equals networkx.pagerank."""
    adjacency = adjacency_for(lite0.model.get_submodule("blocks.1.project.1"), 0.2)
    result = pagerank(adjacency)
    assert result.converged
    assert np.allclose(result.scores.numpy(), networkx_scores(adjacency, nx.pagerank), atol=1e-6)


def test_rejects_non_square_or_negative():
    with pytest.raises(ValueError, match="square"):
        eigenvector_centrality(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="non-negative"):
        eigenvector_centrality(-torch.ones(2, 2))


def test_pagerank_and_degree_match_networkx():
    torch.manual_seed(0)
    a = threshold_adjacency(cosine_similarity(torch.randn(60, 12)), 0.2)
    a[:, 5] = 0
    a[5, :] = 0  # a dangling node
    assert np.allclose(pagerank(a).scores.numpy(), networkx_scores(a, nx.pagerank), atol=1e-6)
    graph = to_networkx(a)
    degree = dict(graph.degree(weight="weight"))
    assert np.allclose(weighted_degree(a).numpy(), [degree[i] for i in range(60)], atol=1e-5)


def test_eigenvector_criterion_uses_the_same_graph(lite0):
    head = lite0.model.get_submodule("head.1")
    criterion = make_criterion("eigenvector", tau=0.1)
    direct = eigenvector_centrality(adjacency_for(head, 0.1), max_iter=20_000).scores
    assert torch.allclose(criterion(head.weight.detach().flatten(1)), direct)


def test_concentration_extremes():
    from cprune_core.centrality import concentration

    assert concentration(torch.ones(100)) == pytest.approx((0.0, 0.1))
    one_hub = torch.zeros(100)
    one_hub[3] = 1.0
    gini, top = concentration(one_hub)
    assert gini == pytest.approx(0.99) and top == pytest.approx(1.0)
    assert concentration(torch.zeros(5)) == (0.0, 0.0)
