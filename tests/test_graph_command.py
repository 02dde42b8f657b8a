"""``cprune graph``: a layer's graph and every criterion's score per neuron, read back with networkx; the
layer-wise table; the same one-line errors and exit codes as the other commands."""
from __future__ import annotations

import importlib
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch

from cprune_core import cli
from cprune_core.criteria import CRITERIA, make_criterion
from cprune_core.graph import cosine_similarity, summarize, threshold_adjacency
from cprune_core.layer_report import MAX_GRAPH_NEURONS
from cprune_core.registry import load_backbone
from cprune_core.weights import open_weights_file
from weights_files import hugging_face_checkpoint, llama_like, resnet18_safetensors, save_safetensors


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """A CPRUNE_HOME of the test's own: --layer all records its rows there (graph_cache)."""
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    return resnet18_safetensors(tmp_path_factory.mktemp("graph"), classes=5)[0]


@pytest.fixture(scope="module")
def stack_file(tmp_path_factory):
    """A transformer-like stack: the MLP of two blocks, 3,072 x 768 and 768 x 3,072, in fp16."""
    torch.manual_seed(0)
    state = {f"h.{block}.mlp.{name}.weight": torch.randn(*shape).half()
             for block in range(2) for name, shape in (("fc", (3072, 768)), ("proj", (768, 3072)))}
    return save_safetensors(state, tmp_path_factory.mktemp("stack") / "stack.safetensors"), state


def run(capsys, *args) -> tuple[int, str, str]:
    code = cli.main(["graph", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["graph", "--help"])
    text = capsys.readouterr().out
    for option in ("--weights", "--backbone", "--backbone-weights", "--layer", "--tau", "--criteria", "--out",
                   "--format"):
        assert option in text


def test_without_a_layer_it_lists_the_layers_and_the_backbone_the_file_fits(resnet_file, capsys):
    code, out, _ = run(capsys, "--weights", resnet_file)
    assert code == 0
    assert "resnet18.safetensors (a safetensors file): 21 layers" in out
    assert "layer4.1.conv2" in out and "checkpoint of: resnet18" in out


def layer_adjacency(vectors: torch.Tensor, tau: float) -> torch.Tensor:
    return threshold_adjacency(cosine_similarity(vectors), tau)


@pytest.mark.parametrize("file_format, read", [("graphml", nx.read_graphml), ("gexf", nx.read_gexf)])
def test_a_layer_graph_reads_back_with_networkx_with_every_score(resnet_file, tmp_path, capsys, file_format, read):
    code, out, _ = run(capsys, "--weights", resnet_file, "--layer", "layer2.0.conv1", "--tau", 0.05,
                       "--out", tmp_path, "--format", file_format)
    assert code == 0 and f"layer2.0.conv1.{file_format}" in out
    graph = read(tmp_path / f"layer2.0.conv1.{file_format}", node_type=int)
    vectors = open_weights_file(resnet_file).weight_vectors("layer2.0.conv1")
    adjacency = layer_adjacency(vectors, 0.05)
    assert graph.number_of_nodes() == 128 and graph.number_of_edges() == summarize(adjacency).edges
    for name in CRITERIA:
        expected = make_criterion(name, 0.05)(vectors).numpy()
        found = np.array([graph.nodes[i][name] for i in range(128)])
        assert np.allclose(found, expected, rtol=1e-5, atol=1e-7), name
    i, j = next(iter(graph.edges))
    assert graph.edges[i, j]["weight"] == pytest.approx(float(adjacency[i, j]), rel=1e-6)


def test_csv_output_of_a_3072_neuron_layer_reads_back_as_a_graph(stack_file, tmp_path, capsys):
    path, state = stack_file
    code, out, _ = run(capsys, "--weights", path, "--layer", "h.1.mlp.fc", "--criteria", "eigenvector,l2",
                       "--out", tmp_path, "--format", "csv")
    assert code == 0 and "3072 neurons" in out
    nodes = pd.read_csv(tmp_path / "h.1.mlp.fc.nodes.csv")
    edges = pd.read_csv(tmp_path / "h.1.mlp.fc.edges.csv")
    assert list(nodes.columns) == ["neuron", "eigenvector", "l2", "neighbours", "l2_norm", "pca_x", "pca_y"]
    graph = nx.from_pandas_edgelist(edges, edge_attr="weight")
    graph.add_nodes_from(nodes["neuron"])
    vectors = state["h.1.mlp.fc.weight"].float()
    summary = summarize(layer_adjacency(vectors, 0.1))
    assert graph.number_of_nodes() == 3072 and graph.number_of_edges() == summary.edges > 0
    assert nx.number_connected_components(graph) == summary.components
    assert np.allclose(nodes["l2"], vectors.norm(dim=1).numpy(), rtol=1e-5)
    assert (nodes["neighbours"].to_numpy() == np.array([d for _, d in sorted(graph.degree)])).all()


def test_layer_all_writes_the_layerwise_table(stack_file, tmp_path, capsys):
    path, state = stack_file
    code, _, _ = run(capsys, "--weights", path, "--layer", "all", "--tau", 0.05, "--out", tmp_path)
    assert code == 0
    table = pd.read_csv(tmp_path / "layerwise.csv").set_index("layer")
    assert list(table.index) == ["h.0.mlp.fc", "h.0.mlp.proj", "h.1.mlp.fc", "h.1.mlp.proj"]
    summary = summarize(layer_adjacency(state["h.0.mlp.proj.weight"].float(), 0.05))
    row = table.loc["h.0.mlp.proj"]
    assert (row["neurons"], row["edges"], row["components"]) == (768, summary.edges, summary.components)
    assert row["density"] == pytest.approx(summary.density)
    assert 0 <= row["gini"] <= 1 and 0.1 <= row["top10_share"] <= 1


def test_layer_all_resumes_from_the_rows_it_recorded_and_reports_each_layer(stack_file, tmp_path, capsys,
                                                                           monkeypatch):
    layer_report = importlib.import_module("cprune_core.layer_report")  # the module, not the function of that name
    path, _ = stack_file
    real, made = layer_report.layer_row, []

    def interrupted_at_the_third(*job):
        if len(made) == 2:
            raise KeyboardInterrupt  # the command is stopped with two rows made
        made.append(job[1])
        return real(*job)

    monkeypatch.setattr(layer_report, "layer_row", interrupted_at_the_third)
    assert run(capsys, "--weights", path, "--layer", "all", "--tau", 0.05, "--out", tmp_path / "a")[0] == 130
    monkeypatch.setattr(layer_report, "layer_row", lambda *job: made.append(job[1]) or real(*job))
    code, out, err = run(capsys, "--weights", path, "--layer", "all", "--tau", 0.05, "--out", tmp_path / "a")
    assert code == 0 and made == ["h.0.mlp.fc", "h.0.mlp.proj", "h.1.mlp.fc", "h.1.mlp.proj"], "resumed at the third"
    again = tmp_path / "b"
    assert run(capsys, "--weights", path, "--layer", "all", "--tau", 0.05, "--out", again)[0] == 0
    assert len(made) == 4, "every row was recorded: none is made again"
    assert pd.read_csv(tmp_path / "a" / "layerwise.csv").equals(pd.read_csv(again / "layerwise.csv"))
    assert run(capsys, "--weights", path, "--layer", "all", "--tau", 0.06, "--out", tmp_path / "c")[0] == 0
    assert len(made) == 8, "another tau is another table"


@pytest.mark.ray
def test_layer_all_on_a_local_ray_writes_the_table_of_this_process(tmp_path, capsys, monkeypatch):
    """One task per layer on a Ray the command starts and shuts down: the same table, and its summary line says
    where the layers ran."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    torch.manual_seed(0)
    path = save_safetensors({"a.weight": torch.randn(96, 32), "b.weight": torch.randn(64, 96)},
                            tmp_path / "small.safetensors")
    assert run(capsys, "--weights", path, "--layer", "all", "--tau", 0.1, "--out", tmp_path / "here")[0] == 0
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path / "another home"))  # no row read back: every layer a task
    code, out, _ = run(capsys, "--weights", path, "--layer", "all", "--tau", 0.1, "--out", tmp_path / "ray",
                       "--executor", "ray", "--cpus-per-layer", 1)
    assert code == 0 and "(a Ray cluster of 1 node" in out
    assert pd.read_csv(tmp_path / "ray" / "layerwise.csv").equals(pd.read_csv(tmp_path / "here" / "layerwise.csv"))


def test_a_backbone_layer_is_scored_as_its_module(tmp_path, capsys):
    code, _, _ = run(capsys, "--backbone", "efficientnet_lite0", "--layer", "stem.1", "--criteria", "eigenvector",
                     "--out", tmp_path)
    assert code == 0
    graph = nx.read_graphml(tmp_path / "stem.1.graphml", node_type=int)
    module = load_backbone("efficientnet_lite0").model.get_submodule("stem.1")
    expected = make_criterion("eigenvector", 0.1)(module.weight.detach().flatten(1)).numpy()
    assert np.allclose([graph.nodes[i]["eigenvector"] for i in range(32)], expected, atol=1e-6)


def test_a_layer_too_large_for_a_graph_is_refused_and_noted_in_the_table(tmp_path, capsys):
    path = save_safetensors({"wide.weight": torch.randn(MAX_GRAPH_NEURONS + 1, 2), "small.weight": torch.randn(4, 2)},
                tmp_path / "wide.safetensors")
    code, _, err = run(capsys, "--weights", path, "--layer", "wide", "--out", tmp_path)
    assert code == 2 and f"graphs are built for up to {MAX_GRAPH_NEURONS:,}" in err
    assert run(capsys, "--weights", path, "--layer", "all", "--out", tmp_path)[0] == 0
    table = pd.read_csv(tmp_path / "layerwise.csv").set_index("layer")
    assert table.loc["wide", "note"].startswith("no graph: over") and table.loc["small", "neurons"] == 4


@pytest.mark.parametrize("args, code, message", [
    (["--layer", "nope"], 2, "has no layer 'nope'; its 21 layers include conv1"),
    (["--layer", "fc", "--tau", "1.5"], 2, "tau must be in [0, 1)"),
    (["--layer", "fc", "--tau", "nan"], 2, "tau must be in [0, 1)"),
    (["--layer", "fc", "--criteria", "eigenvector,magic"], 2, "Unknown criterion 'magic'"),
])
def test_bad_options_are_one_line_with_the_usage_code(resnet_file, tmp_path, capsys, args, code, message):
    found, _, err = run(capsys, "--weights", resnet_file, "--out", tmp_path, *args)
    assert found == code and err.startswith("error: ") and message in err and err.count("\n") == 1


def test_unusable_files_are_one_line_with_the_input_code(resnet_file, tmp_path, capsys):
    mislabelled = tmp_path / "weights.onnx"
    mislabelled.write_bytes(resnet_file.read_bytes())
    nan = torch.ones(3, 2)
    nan[1, 0] = float("inf")
    for path, message in [(tmp_path / "missing.safetensors", "does not exist"),
                          (mislabelled, "is not an ONNX model: its content looks like a safetensors file"),
                          (save_safetensors({"x.weight": nan}, tmp_path / "nan.safetensors"), "Layer x has NaN or Inf weights")]:
        code, _, err = run(capsys, "--weights", path, "--layer", "x", "--out", tmp_path)
        assert code == 3 and err.startswith("error: ") and message in err and err.count("\n") == 1


def test_a_checkpoint_folder_or_its_index_lists_its_layers_and_every_tensor_that_is_none(tmp_path, capsys):
    state = llama_like(blocks=1, hidden=32, mlp=96, vocab=40, dtype=torch.bfloat16)
    folder = hugging_face_checkpoint(tmp_path / "llama", state, shards=2,
                                     tied={"lm_head.weight": "model.embed_tokens.weight"})
    for path in (folder, folder / "model.safetensors.index.json"):
        code, out, _ = run(capsys, "--weights", path)
        assert code == 0 and "(a sharded checkpoint: an index and its shards (2 files)): 8 layers" in out
        assert "model.layers.0.self_attn.q_proj" in out and "tied: also model.embed_tokens.weight" in out
        assert "not layers (4):" in out and "  model.norm.weight: shape [32]: one value per channel" in out
    code, out, _ = run(capsys, "--weights", folder, "--layer", "model.layers.0.mlp.up_proj", "--format", "csv",
                       "--out", tmp_path / "graphs", "--criteria", "eigenvector")
    assert code == 0 and "96 neurons" in out
    nodes = pd.read_csv(tmp_path / "graphs" / "model.layers.0.mlp.up_proj.nodes.csv")
    vectors = state["model.layers.0.mlp.up_proj.weight"].float()
    assert np.allclose(nodes["l2_norm"], vectors.norm(dim=1).numpy(), rtol=1e-5)


def test_out_as_the_current_folder_or_the_root_writes_inside_it(resnet_file, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, out, err = run(capsys, "--weights", resnet_file, "--layer", "fc", "--out", ".")
    assert code == 0 and err == "" and (work / "fc.graphml").is_file() and set(tmp_path.iterdir()) == {work}
    written = []
    monkeypatch.setattr("cprune_core.cli.graph.atomic_write", lambda path, write: written.append(path) or path)
    for layer, name in (("fc", "fc.graphml"), ("all", "layerwise.csv")):
        code, _, err = run(capsys, "--weights", resnet_file, "--layer", layer, "--out", "/", "--criteria", "l2")
        assert code == 0 and "error" not in err and written[-1] == Path("/") / name  # inside /, never beside it


def test_a_layer_with_no_edge_gets_the_tau_that_draws_one(tmp_path, capsys):
    """Random 64-dimensional vectors have cosine similarities of about +-0.125: none clears tau 0.9, and the
    command says at which tau each neuron has about ten edges (layer_view.suggested_tau), as the app does."""
    torch.manual_seed(0)
    vectors = torch.randn(40, 64)
    path = save_safetensors({"w": vectors}, tmp_path / "random.safetensors")
    code, out, err = run(capsys, "--weights", path, "--layer", "w", "--tau", 0.9, "--out", tmp_path)
    assert code == 0 and ", 0 edges" in out
    suggested = float(err.split("at --tau ")[1].split()[0])
    assert 0 < suggested < 0.9
    edges = int(np.count_nonzero(np.triu(layer_adjacency(vectors, suggested).numpy(), 1)))
    assert 40 * 10 / 2 <= edges <= 40 * 10 / 2 + 40  # about ten per neuron (tau rounded down to 0.01)
    code, _, err = run(capsys, "--weights", path, "--layer", "w", "--tau", suggested, "--out", tmp_path)
    assert code == 0 and "hint:" not in err
