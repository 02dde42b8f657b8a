"""The layer-view API the app and ``cprune graph`` share (layer_view, the layer-wise table of layer_report,
kept_sets), on plain tensors and a random-init backbone: no Streamlit."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cprune_core import BackboneSource, FileSource, cosine_similarity, make_criterion, summarize, threshold_adjacency
from cprune_core.geometry import group_curves
from cprune_core.centrality import POWER_TOLERANCE
from cprune_core.errors import ConfigError
from cprune_core.graph import adjacency_of
from cprune_core.graph_view import edge_counts
from cprune_core.kept_sets import (GEOMETRY_SEEDS, group_similarity, kept_curves, kept_geometry, kept_mask, kept_overlap,
                                   kept_set, pruning_scores, prunes_alone)
from cprune_core.layer_report import LAYERWISE_COLUMNS, MAX_GRAPH_NEURONS, layerwise_row, layerwise_rows
from cprune_core.layer_view import (SUGGESTED_DEGREE, criterion_scores, graph_figures, layer_graph, layer_scores,
                                    layout_for, scan_layer, suggested_tau, walkthrough)
from cprune_core.graph import MAX_FORCE_LAYOUT_NODES
from cprune_core.pruning import kept_indices
from cprune_core.spectral import layer_spectrum
from weights_files import save_safetensors


@pytest.fixture(scope="module")
def vectors() -> torch.Tensor:
    return torch.randn(40, 12, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def lite0_random() -> BackboneSource:
    """A registry backbone with residual streams, random init (nothing read or downloaded)."""
    return BackboneSource.load("efficientnet_lite0", "random")


def test_criterion_scores_are_the_criterions_and_share_an_adjacency(vectors):
    adjacency = adjacency_of(vectors, 0.1)
    for name in ("eigenvector", "pagerank", "l1", "fpgm"):
        scores, note = criterion_scores(vectors, name, 0.1)
        assert note == "" and np.allclose(scores, make_criterion(name, 0.1)(vectors).numpy())
        assert np.array_equal(criterion_scores(vectors, name, 0.1, adjacency)[0], scores)
    first, other = criterion_scores(vectors, "random", 0.1, seed=0)[0], criterion_scores(vectors, "random", 0.1, seed=1)[0]
    assert not np.array_equal(first, other) and np.array_equal(first, make_criterion("random", seed=0)(vectors).numpy())
    with pytest.raises(ConfigError, match="Unknown criterion"):
        criterion_scores(vectors, "magic", 0.1)


def test_a_stopped_power_iteration_is_a_note_with_its_last_iterate(vectors, monkeypatch):
    monkeypatch.setattr("cprune_core.criteria.RANKING_MAX_ITER", 1)
    scores, note = criterion_scores(vectors, "eigenvector", 0.05)
    assert "eigenvector: power iteration stopped at its budget of 1 steps" in note and scores.shape == (40,)
    figures = graph_figures(adjacency_of(vectors, 0.05))
    assert figures.centrality_note.startswith("eigenvector centrality: power iteration stopped")
    assert layer_scores(vectors, ["eigenvector", "l1"], 0.05)[1] == {"eigenvector": note}


def test_layer_graph_is_the_graphs_summary_centrality_degree_and_strongest_edges(vectors):
    adjacency = adjacency_of(vectors, 0.1)
    view = layer_graph(adjacency, vectors.norm(dim=1).numpy(), edge_limit=5)
    assert view.summary == summarize(adjacency) and view.centrality_note == ""
    assert np.allclose(view.centrality, make_criterion("eigenvector").from_adjacency(adjacency).scores.numpy())
    assert np.array_equal(view.degree, (adjacency > 0).sum(1).numpy())
    assert len(view.edge_weights) == 5 and list(view.edge_weights) == sorted(view.edge_weights, reverse=True)
    assert np.isclose(view.edge_weights[0], float(adjacency.max()))
    assert (view.edge_rows < view.edge_cols).all()
    values = view.node_values(np.zeros((40, 2)))
    assert list(values) == ["centrality", "degree", "l2_norm", "pca_x", "pca_y"]


def test_an_edgeless_graph_scores_every_neuron_alike():
    view = layer_graph(torch.zeros(4, 4), np.ones(4))
    assert view.summary.edges == 0 and view.summary.isolated == 4 and len(view.edge_rows) == 0
    assert np.allclose(view.centrality, 0.5) and not view.degree.any()


def test_suggested_tau_gives_about_that_many_edges_and_layouts_switch_at_the_force_limit(vectors):
    similarity = cosine_similarity(torch.randn(200, 30, generator=torch.Generator().manual_seed(1)))
    taus = [round(0.01 * k, 2) for k in range(100)]
    tau = suggested_tau(taus, edge_counts(similarity, taus), 200)
    edges = summarize(threshold_adjacency(similarity, tau)).edges
    assert SUGGESTED_DEGREE * 200 / 2 <= edges <= 1.6 * SUGGESTED_DEGREE * 200 / 2  # the largest such step of 0.01
    assert suggested_tau(taus, [0] * 100, 1) == 0.0
    assert layout_for(MAX_FORCE_LAYOUT_NODES, "force") == "force"
    assert layout_for(MAX_FORCE_LAYOUT_NODES + 1, "force") == "pca" and layout_for(10, "pca") == "pca"


def test_the_walkthrough_ends_at_the_centrality_pruning_uses(vectors, tmp_path):
    source = FileSource.open(save_safetensors({"w.weight": vectors}, tmp_path / "w.safetensors"))
    steps = walkthrough(source, "w", 0.1)
    assert steps.converged and steps.tolerance == 40 * POWER_TOLERANCE
    assert steps.changes[-1] < steps.tolerance and len(steps.iterates) == len(steps.changes) == len(steps.eigenvalues)
    assert np.abs(steps.iterates[-1] - steps.centrality).max() < 1e-5
    assert np.array_equal(steps.adjacency, threshold_adjacency(cosine_similarity(vectors), 0.1).numpy())
    assert np.allclose(np.linalg.norm(steps.normalised, axis=1), 1, atol=1e-6) and steps.inputs_per_column == 1
    assert np.array_equal(steps.weights, vectors.numpy())


# The layer-wise table: one for the command line and the app ---------------------------------------------------

@pytest.fixture(scope="module")
def wide_file(tmp_path_factory) -> FileSource:
    generator = torch.Generator().manual_seed(5)
    path = save_safetensors({"small.weight": torch.randn(30, 8, generator=generator),
                             "wide.weight": torch.randn(MAX_GRAPH_NEURONS + 1, 2, generator=generator),
                             "last.weight": torch.randn(12, 30, generator=generator)},
                            tmp_path_factory.mktemp("wide") / "wide.safetensors")
    return FileSource.open(path)


def test_the_layerwise_table_is_the_same_from_cached_graphs_and_notes_a_layer_too_large(wide_file, monkeypatch):
    asked = []

    def cached(layer: str):  # as the app's cache makes it: from the layer's blockwise scan
        asked.append(layer)
        scan = scan_layer(wide_file, layer, tau=0.2)
        return layer_graph(scan.graph, scan.norms)

    by_the_app = layerwise_rows(wide_file, 0.2, cached)
    read = []
    monkeypatch.setattr(wide_file, "weight_vectors", lambda layer, rows=None: read.append(layer) or
                        FileSource.weight_vectors(wide_file, layer, rows))
    by_the_command_line = layerwise_rows(wide_file, 0.2)
    drawn = [layer for layer in wide_file.graph_layers if layer != "wide"]
    assert asked == read == drawn and len(drawn) == 2, "a layer too large has no graph (its spectrum is computed)"
    assert pd.DataFrame(by_the_app).equals(pd.DataFrame(by_the_command_line))
    table = pd.DataFrame(by_the_command_line, columns=LAYERWISE_COLUMNS).set_index("layer")
    assert list(table.index) == wide_file.graph_layers  # in the file's order
    assert table.loc["wide", "note"] == f"no graph: over {MAX_GRAPH_NEURONS:,} neurons"
    assert pd.isna(table.loc["wide", "edges"]) and table.loc["wide", "neurons"] == MAX_GRAPH_NEURONS + 1
    adjacency = adjacency_of(wide_file.weight_vectors("small"), 0.2)
    assert table.loc["small", "edges"] == summarize(adjacency).edges and table.loc["small", "note"] == ""
    assert 0 <= table.loc["small", "gini"] <= 1 and 0.1 <= table.loc["small", "top10_share"] <= 1
    with pytest.raises(ConfigError, match="tau"):
        layerwise_rows(wide_file, 1.5)


def test_a_layerwise_row_has_every_column(wide_file):
    info = wide_file.layers[0]
    assert list(layerwise_row(info, None)) == list(LAYERWISE_COLUMNS)
    row = layerwise_row(info, graph_figures(adjacency_of(wide_file.weight_vectors(info.name), 0.1)),
                        layer_spectrum(wide_file, info.name))
    assert list(row) == list(LAYERWISE_COLUMNS) and None not in row.values()


# Kept sets, ranked as pruning ranks them -------------------------------------------------------------------------

def test_kept_sets_are_prunings_and_their_overlap_is_a_jaccard_index():
    scores = np.array([0.3, 0.9, 0.9, 0.1], dtype=np.float32)
    assert kept_set(scores, 2) == set(kept_indices(torch.from_numpy(scores), 2)) == {1, 2}
    assert kept_mask(scores, 3).tolist() == [True, True, True, False]
    table = kept_overlap({"a": np.array([3.0, 2, 1]), "b": np.array([1.0, 2, 3]), "c": np.array([3.0, 2, 1])}, "a", 2)
    assert table["criterion"].tolist() == ["b", "c"]
    assert table["Jaccard with kept set"].tolist() == pytest.approx([1 / 3, 1.0])


def test_a_layer_of_its_own_is_ranked_by_its_scores_and_a_residual_stream_by_its_groups(lite0_random):
    alone, stream = "blocks.1.expand.1", "blocks.1.project.1"
    assert prunes_alone(lite0_random.graph, alone) and not prunes_alone(lite0_random.graph, stream)
    own = criterion_scores(lite0_random.weight_vectors(alone), "l1", 0.1)[0]
    assert np.array_equal(pruning_scores(lite0_random, alone, "l1", 0.1), own)
    assert not pruning_scores(lite0_random, alone, "l1", 0.1, own_scores=own * 0).any(), "the caller's scores used"
    group = lite0_random.graph.group_for(stream)
    expected = lite0_random.graph.group_scores(group, make_criterion("l1")).double().numpy()
    ignored = np.zeros(len(expected))
    assert np.array_equal(pruning_scores(lite0_random, stream, "l1", 0.1, own_scores=ignored), expected)
    assert len(group_similarity(lite0_random, stream)) == len(group.layers) == 2
    [mine] = group_similarity(lite0_random, alone, similarity=torch.eye(3))
    assert torch.equal(mine, torch.eye(3)), "the caller's similarity used"
    curves = kept_curves(lite0_random, stream, "l1", 0.1)
    reference = group_curves(group_similarity(lite0_random, stream), expected)
    assert np.allclose(curves.coverage, reference.coverage, equal_nan=True)
    with pytest.raises(ConfigError, match="no layer named"):
        prunes_alone(lite0_random.graph, "nope")


def test_the_geometry_table_compares_each_criterion_with_randoms_mean(lite0_random):
    layer = "blocks.1.expand.1"
    curves = {name: kept_curves(lite0_random, layer, name, 0.1) for name in ("eigenvector", "l1")}
    random = [kept_curves(lite0_random, layer, "random", 0.1, seed) for seed in range(GEOMETRY_SEEDS)]
    table = kept_geometry(curves, random, 10)
    assert table.columns.tolist() == ["criterion", "redundancy", "redundancy − random", "coverage", "coverage − random"]
    assert table["criterion"].tolist() == ["eigenvector", "l1", f"random (mean of {GEOMETRY_SEEDS} seeds)"]
    mean = np.mean([found.redundancy[10] for found in random])
    assert table["redundancy"].iloc[-1] == pytest.approx(mean) and table["redundancy − random"].iloc[-1] == 0
    assert table["redundancy"].iloc[1] == pytest.approx(curves["l1"].redundancy[10])
    assert table["coverage − random"].iloc[0] == pytest.approx(curves["eigenvector"].coverage[10]
                                                                 - np.mean([f.coverage[10] for f in random]))
