"""Graphs built a block of rows at a time (cprune_core.blockwise, sparse_graph, layer_view.scan_layer) against the
dense path on layers that fit both: the same edges, counts, summary, centralities (to 1e-6), layout and payload;
the budget checked from the shape first; memory bounded on a hostile shape (measured in a fresh process); the
limit on graphs built at once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cprune_core.blockwise import (MAX_GRAPH_NEURONS, DistanceSums, EdgesAbove, GraphBudget, GraphSlots,
                                   StrongestEdges, StrongestPerNeuron, check_graph_cost, read_normalised, scan_pairs,
                                   similarity_graph)
from cprune_core.criteria import CRITERIA, distance_sums, graph_of, make_criterion
from cprune_core.errors import ConfigError, StopRequested
from cprune_core.graph import (adjacency_of, cosine_similarity, force_layout, layout_2d, normalise_rows, summarize,
                               threshold_adjacency, to_networkx)
from cprune_core.graph_view import EDGE_CAP, build_payload, edge_counts, edges_above, payload_from_edges
from cprune_core.layer_view import graph_above, layer_scores, scan_layer, scan_scores
from cprune_core.model_source import FileSource
from cprune_core.sparse_graph import SparseGraph
from weights_files import save_safetensors

ROOT = Path(__file__).resolve().parents[1]
SMALL = GraphBudget(block_bytes=2 * 2**20)  # a 700-neuron layer in 6 blocks
TAUS = [round(0.05 * k, 2) for k in range(12)]


@pytest.fixture(scope="module")
def vectors() -> torch.Tensor:
    """700 neurons in 40 dimensions, with planted groups (so the graph has structure) and a few exact duplicates
    (ties at every cap)."""
    generator = torch.Generator().manual_seed(7)
    centres = torch.randn(12, 40, generator=generator)
    found = centres[torch.randint(12, (700,), generator=generator)] * 0.8 + torch.randn(700, 40, generator=generator)
    found[690:] = found[:10]
    return found


@pytest.fixture(scope="module")
def layer_file(vectors, tmp_path_factory) -> FileSource:
    return FileSource.open(save_safetensors({"w.weight": vectors}, tmp_path_factory.mktemp("w") / "w.safetensors"))


def test_the_budget_splits_a_layer_into_blocks_and_bounds_them():
    assert 700 // SMALL.rows_per_block(700) == 5 and SMALL.rows_per_block(700) * 700 * 24 <= SMALL.block_bytes
    assert GraphBudget().rows_per_block(10**9) == 1
    assert GraphBudget.from_settings() == GraphBudget() and GraphBudget().memory_bytes <= 2048 * 2**20
    os.environ["CPRUNE_GRAPH_MEMORY_MB"] = "512"
    try:
        small = GraphBudget.from_settings()
    finally:
        del os.environ["CPRUNE_GRAPH_MEMORY_MB"]
    assert small.block_bytes == 64 * 2**20 and small.memory_bytes <= 512 * 2**20


class BlockHeights:
    def __init__(self):
        self.starts, self.heights = [], []

    def add(self, start: int, block: torch.Tensor) -> None:
        self.starts.append(start)
        self.heights.append(len(block))


@pytest.mark.parametrize("neurons, most_rows", [(700, 256), (8192, 512)])
def test_blocks_are_short_enough_to_skip_most_of_the_triangle_below_the_diagonal(neurons, most_rows):
    heights = BlockHeights()
    scan_pairs(torch.zeros(neurons, 1), [heights])  # the default budget would hold far taller blocks
    assert max(heights.heights) == most_rows and sum(heights.heights) == neurons
    assert heights.starts == list(np.cumsum([0, *heights.heights[:-1]]))


def test_blockwise_edges_are_exactly_the_dense_ones(vectors):
    similarity = cosine_similarity(vectors)
    for tau in (0.0, 0.2, 0.45):
        dense = edges_above(similarity, tau)
        graph = similarity_graph(vectors, tau, SMALL)
        assert np.array_equal(graph.rows, dense.rows) and np.array_equal(graph.cols, dense.cols)
        assert np.array_equal(graph.weights, dense.weights), "each pair's float32 similarity is the dense one's"
        assert summarize(graph) == summarize(threshold_adjacency(similarity, tau))


def test_sparse_centralities_equal_the_dense_ones(vectors):
    adjacency = adjacency_of(vectors, 0.3)
    graph = similarity_graph(vectors, 0.3, SMALL)
    for name in ("eigenvector", "inverse-eigenvector", "pagerank", "degree"):
        dense = make_criterion(name, 0.3).from_adjacency(adjacency)
        sparse = make_criterion(name, 0.3).from_adjacency(graph)
        assert sparse.converged == dense.converged
        tolerance = 1e-6 if name != "degree" else 1e-6 * float(dense.scores.abs().max())  # a float32 sum
        assert float((sparse.scores.double() - dense.scores.double()).abs().max()) <= tolerance, name
    assert np.array_equal(graph.degree(), (adjacency > 0).sum(1).numpy())
    assert to_networkx(graph).number_of_edges() == summarize(adjacency).edges


def test_a_graph_criterion_goes_sparse_beyond_one_block(vectors):
    assert isinstance(graph_of(vectors, 0.3), torch.Tensor)
    assert isinstance(graph_of(vectors, 0.3, GraphBudget(block_bytes=2**20)), SparseGraph)  # 700^2 floats do not fit


def test_read_normalised_is_normalise_rows_and_its_layout_is_layout_2d(vectors, layer_file):
    rows = read_normalised(lambda start, stop: layer_file.weight_vectors("w", (start, stop)), 700, 40,
                           GraphBudget(block_bytes=40 * 8 * 100), {"l1": make_criterion("l1")})
    assert torch.equal(rows.normalised, normalise_rows(vectors))
    assert np.array_equal(rows.norms, vectors.norm(dim=1).numpy())
    assert np.array_equal(rows.row_scores["l1"], make_criterion("l1")(vectors).numpy())
    assert np.allclose(layout_2d(rows.normalised, normalised=True), layout_2d(vectors), atol=1e-6)


def test_distance_sums_are_fpgms_whole_matrix(vectors):
    assert torch.equal(distance_sums(vectors, SMALL), torch.cdist(vectors, vectors).sum(1))
    sums = DistanceSums(vectors.norm(dim=1).numpy())
    scan_pairs(normalise_rows(vectors), [sums], SMALL)
    assert np.allclose(sums.sums.numpy(), make_criterion("fpgm")(vectors).numpy(), rtol=1e-5)


def test_the_strongest_edges_and_counts_make_the_dense_payload(vectors):
    """A cap smaller than the graph, with ties at it (the duplicated neurons): kept a block at a time, the same edges
    as the dense payload keeps, and so the same bytes."""
    similarity = cosine_similarity(vectors)
    tied_cap = int(edge_counts(similarity, TAUS)[4])  # every edge above 0.2, and ties among them
    positions, norms = layout_2d(vectors), vectors.norm(dim=1).numpy()
    for cap in (tied_cap, 1000, 1):
        strongest = StrongestEdges(700, TAUS, cap)
        scan_pairs(normalise_rows(vectors), [strongest], GraphBudget(block_bytes=2**20))
        assert np.array_equal(strongest.counts, edge_counts(similarity, TAUS))
        ours = payload_from_edges(strongest.edges(), positions, norms, TAUS, max_iter=100, counts=strongest.counts)
        theirs = build_payload(similarity, positions, norms, TAUS, max_iter=100, edge_cap=cap)
        assert ours.encoded == theirs.encoded, cap


def test_each_neurons_strongest_edges(vectors):
    vectors = vectors[:690]  # no duplicates: which of two equal partners is among the strongest is arbitrary
    similarity = cosine_similarity(vectors).fill_diagonal_(-2)
    found = StrongestPerNeuron(690, 0.1, 3)
    scan_pairs(normalise_rows(vectors), [found], SMALL)
    graph = found.graph()
    top = torch.topk(similarity, 3, dim=1)
    expected = {(min(i, int(j)), max(i, int(j))) for i in range(690) for j, value in zip(top.indices[i], top.values[i])
                if value > 0.1}
    assert set(zip(graph.rows.tolist(), graph.cols.tolist())) == expected
    assert np.allclose(graph.weights, similarity[graph.rows, graph.cols].numpy())


def test_more_edges_than_the_budget_holds_is_one_sentence_before_memory_grows(vectors):
    with pytest.raises(ConfigError, match="raise tau"):
        similarity_graph(vectors, 0.0, GraphBudget(max_edges=20_000))
    collector = EdgesAbove(700, 0.0, 1000)
    with pytest.raises(ConfigError, match="more than 1,000 edges"):
        scan_pairs(normalise_rows(vectors), [collector], SMALL)
    assert sum(len(part[0]) for part in collector.parts) <= 1000


def test_a_layers_cost_is_checked_from_its_shape_before_any_value_is_read(tmp_path):
    cost = check_graph_cost(11_008, 4_096, "up")
    assert cost.weights == 4 * 11_008 * 4_096 and cost.total < GraphBudget().memory_bytes
    with pytest.raises(ConfigError, match="graphs are built for up to 65,536"):
        check_graph_cost(MAX_GRAPH_NEURONS + 1, 2, "wide")
    with pytest.raises(ConfigError, match="CPRUNE_GRAPH_MEMORY_MB"):
        check_graph_cost(16_384, 16_384, "square", GraphBudget(weights_bytes=512 * 2**20))
    source = FileSource.open(save_safetensors({"w.weight": torch.ones(64, 64)}, tmp_path / "w.safetensors"))
    source.weights.weight = lambda *args: pytest.fail("read before the budget was checked")
    with pytest.raises(ConfigError, match="a graph may take here"):
        scan_layer(source, "w", tau=0.1, budget=GraphBudget(weights_bytes=2**10))


def test_the_scan_gives_every_criterion_as_the_vectors_do(vectors, layer_file):
    scan = scan_layer(layer_file, "w", tau=0.3, distances=True, layout=True, budget=SMALL)
    ours, notes = scan_scores(scan, list(CRITERIA), 0.3)
    theirs, _ = layer_scores(vectors, list(CRITERIA), 0.3)
    assert notes == {} and list(ours) == list(CRITERIA)
    for name in CRITERIA:
        assert np.allclose(ours[name], theirs[name], rtol=1e-5, atol=1e-6), name
    assert scan_scores(scan_layer(layer_file, "w", budget=SMALL), ["fpgm", "l2"], 0.3)[1] == {
        "fpgm": "fpgm could not be computed (the layer was read without what it needs)"}


def test_a_graph_at_a_tau_comes_from_the_strongest_edges_when_they_hold_it(layer_file, vectors, monkeypatch):
    similarity = cosine_similarity(vectors)
    counts = edge_counts(similarity, TAUS)
    scan = scan_layer(layer_file, "w", taus=TAUS, edge_cap=int(counts[6]), budget=SMALL)
    whole = similarity_graph(vectors, 0.3, SMALL)
    monkeypatch.setattr("cprune_core.layer_view.scan_layer", lambda *a, **k: pytest.fail("scanned again"))
    prefix = graph_above(scan, TAUS, layer_file, "w", 0.3, SMALL)
    assert np.array_equal(prefix.rows, whole.rows) and np.array_equal(prefix.weights, whole.weights)
    monkeypatch.undo()
    assert graph_above(scan, TAUS, layer_file, "w", 0.25, SMALL).edges == counts[5]  # scanned at 0.25
    with pytest.raises(ConfigError, match=r"raise tau to 0\.\d\d or more"):
        graph_above(scan, TAUS, layer_file, "w", 0.0, GraphBudget(max_edges=20_000))


def test_a_sparse_graph_lays_out_as_its_dense_matrix(vectors):
    adjacency = adjacency_of(vectors[:300], 0.4)
    assert np.array_equal(force_layout(SparseGraph.from_dense(adjacency)), force_layout(adjacency))


def test_at_most_so_many_graphs_are_built_at_once_and_the_others_are_told(monkeypatch):
    slots, heard, release = GraphSlots(2), [], threading.Event()

    def build() -> None:
        with slots.held():
            release.wait(10)

    builders = [threading.Thread(target=build) for _ in range(2)]
    for builder in builders:
        builder.start()
    while slots.building < 2:
        time.sleep(0.01)
    holding, done = threading.Event(), threading.Event()

    def third_build() -> None:
        with slots.held(lambda *report: heard.append(report[2])):
            holding.set()
            done.wait(10)

    third = threading.Thread(target=third_build)
    third.start()
    while not heard:
        time.sleep(0.01)
    assert heard[0] == "Waiting for 2 other graphs to be built (this server builds 2 at once) …"
    assert slots.building == 2 and slots.waiting == 1 and not holding.is_set()
    release.set()
    assert holding.wait(10) and slots.waiting == 0  # the third builds once one of the two is done
    done.set()
    third.join(10)
    for builder in builders:
        builder.join(10)
    assert slots.building == 0
    one, stop = GraphSlots(1), threading.Event()
    stop.set()
    with one.held(), pytest.raises(StopRequested), one.held(stop=stop):
        pass


PROBE = r"""
import json, resource, sys
from cprune_core.model_source import FileSource
from cprune_core.errors import ConfigError
source = FileSource.open(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if sys.argv[2] == "canvas":
    from cprune_core.graph_cache import cached_scan, GraphCache
    scan = cached_scan(source, "w", [round(0.01 * k, 2) for k in range(100)], cache=GraphCache(limit_bytes=0))
    found = {"sent": len(scan.strongest.weights), "above_0": int(scan.counts[0])}
else:
    from cprune_core.layer_report import layer_report
    try:
        layer_report(source, "w", 0.1)
        found = {"refused": ""}
    except ConfigError as error:
        found = {"refused": str(error)}
found["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
print(json.dumps(found))
"""


@pytest.mark.slow
def test_a_tiny_file_of_16384_by_2_neurons_costs_bounded_memory(tmp_path):
    """Issue 29's hostile shape: a 64 KiB file whose graph has 67 million edges above 0. The canvas's scan keeps the
    2,000,000 strongest and counts the rest; the command line's graph at 0.1 is refused in one sentence, as soon as
    it passes the edge budget. Peak memory of each, in a fresh process, above what it held before."""
    path = save_safetensors({"w.weight": torch.randn(16_384, 2).half()}, tmp_path / "w.safetensors")
    assert path.stat().st_size < 70_000
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CPRUNE_HOME": str(tmp_path)}
    for case in ("canvas", "command line"):
        done = subprocess.run([sys.executable, "-c", PROBE, str(path), case], capture_output=True, text=True,
                              env=environment, timeout=600)
        found = json.loads(done.stdout.strip().splitlines()[-1])
        assert found["peak_mb"] < 900, (case, found)  # the dense path took 8 GB
        if case == "canvas":
            assert found["sent"] == EDGE_CAP and found["above_0"] > 60_000_000
        else:
            assert "raise tau" in found["refused"]
