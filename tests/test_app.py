"""Every page of the Streamlit app through streamlit.testing.v1.AppTest, on the offline default.

Pages are reached as a user reaches them: app.py (st.navigation, shared sidebar) and
AppTest.switch_page. Fine-tuning runs are tiny (64-pixel images, a few images per class).
"""
from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from cprune_core.ablation import analyse_importance
from cprune_core.graph_view import decode_payload
from cprune_core import (CRITERIA, CostModel, FinetuneConfig, PruningGraph, adjacency_for, eigenvector_centrality, keep_count,
                         kept_indices, load_backbone, power_iteration)
from cprune_core.schema import EventKind
from cprune_server import LaunchState
from streamlit.proto.Metric_pb2 import Metric
from ui.services import run_queue, uploads
from app_pages import APP, ROOT, TIMEOUT, assert_clean, errors, launches, open_app, shown

MetricDirection = Metric.MetricDirection
pytestmark = pytest.mark.usefixtures("app_home")  # a fresh CPRUNE_HOME (conftest.py)


def plotly_charts(at: AppTest) -> list:
    return [el for el in at.main.get("plotly_chart")]


def canvas(at: AppTest, key: str = "explorer_graph") -> tuple[dict, dict, dict]:
    """A graph canvas of the page: (its state of this run, its payload's header, the payload's arrays). The canvas
    is mounted twice (ui/graph_canvas.py): the payload as bytes, then the state as JSON."""
    mounts = {el.proto.id: el.proto for el in at.main.get("bidi_component")
              if el.proto.component_name == "cprune_graph_canvas"}
    state = next(json.loads(p.json) for p in mounts.values() if p.WhichOneof("data") == "json" and p.id.endswith(key))
    header, arrays = decode_payload(next(p.bytes for p in mounts.values() if p.id.endswith(f"{key}-payload")))
    assert header["key"] == state["payload"]
    return state, header, arrays


def edges_drawn(at: AppTest, key: str = "explorer_graph") -> int:
    """The edge count the canvas shows at the run's tau (the payload's count for that tau step)."""
    state, header, _ = canvas(at, key)
    return header["counts"][header["taus"].index(state["tau"])]


def test_explorer_default_and_widgets():
    at = open_app()
    assert at.title[0].value == "Graph explorer"
    assert at.session_state["layer"] == "head.1"
    assert not at.error
    assert not plotly_charts(at) and at.main.get("image")  # the graph is the canvas, the neuron's weights a picture
    state, header, arrays = canvas(at)
    assert header["n"] == 1280 and len(arrays["positions"]) == 2 * 1280 and state["slider"]
    assert state["selected"] == at.session_state["neuron"] and state["server"] is None  # the browser holds every edge
    edges_at_default = edges_drawn(at)

    at.session_state["tau"] = 0.3  # what the canvas's released slider does (its on_tau callback: state.set_value)
    at.run()
    assert_clean(at)
    assert canvas(at)[0]["tau"] == 0.3 and edges_drawn(at) < edges_at_default
    assert at.query_params["tau"] == "0.3"

    at.selectbox(key="widget_layer").set_value("blocks.1.expand.1").run()
    assert_clean(at)
    assert canvas(at)[1]["n"] == 96
    assert at.query_params["layer"] == "blocks.1.expand.1"

    at.number_input(key="neuron").set_value(5).run()
    assert_clean(at)
    assert any("of neuron 5**" in m.value for m in at.markdown) and canvas(at)[0]["selected"] == 5

    at.segmented_control(key="graph_view").set_value("pyvis physics").run()
    assert_clean(at)
    frames = at.main.get("iframe")
    assert frames, "the pyvis view is drawn in an iframe"
    assert [m.label for m in at.metric] == ["Neurons", "Edges", "Density", "Components", "Isolated neurons"]
    assert at.metric[0].value == "96" and at.slider(key="widget_tau").value == 0.3


def test_pyvis_html_is_self_contained():
    from ui import cache, pyvis_view

    key = cache.ModelKey("efficientnet_lite0", "pretrained")
    page = pyvis_view.network_html(cache.layer_graph(key, "blocks.1.expand.1", 0.1), "<script>alert(1)</script>")
    assert "vis.Network" in page or "new vis" in page
    assert pyvis_view.external_urls(page) == []
    assert "<script>alert(1)</script>" not in page


def test_link_state_from_url_and_bad_parameters():
    at = open_app(layer="stem.1", tau="0.25", criterion="l1", keep="0.3", backbone="nope")
    assert at.session_state["layer"] == "stem.1"
    assert at.session_state["tau"] == 0.25
    assert at.session_state["backbone"] == "efficientnet_lite0"
    assert any("unknown backbone" in shown(w.value) for w in at.warning)
    at.switch_page("pages/prune.py").run()
    assert_clean(at)
    assert at.selectbox(key="widget_criterion").value == "l1"
    assert at.slider(key="widget_keep").value == 0.3


def test_prune_page_live_metrics_and_build():
    at = open_app("prune")
    assert at.title[0].value == "Prune"
    model_params = next(m for m in at.metric if m.label == "Model params")
    assert model_params.delta.startswith("-") and model_params.proto.direction == MetricDirection.DOWN
    before = model_params.value

    at.slider(key="widget_keep").set_value(0.25).run()
    assert_clean(at)
    assert next(m for m in at.metric if m.label == "Model params").value != before
    assert next(m for m in at.metric if m.label == "Layer neurons kept").value == "320 / 1,280"

    for criterion in ("l2", "fpgm", "pagerank", "eigenvector"):
        at.selectbox(key="widget_criterion").set_value(criterion).run()
        assert_clean(at)
    at.slider(key="widget_tau").set_value(0.2).run()
    assert_clean(at)
    at.radio(key="prune_rule").set_value("score cut-off").run()
    assert_clean(at)
    at.radio(key="prune_scope").set_value("all prunable layers").run()
    assert_clean(at)
    assert next(m for m in at.metric if m.label == "Layers pruned").value != "1"

    at.button(key="build").click().run()
    assert_clean(at)
    built = at.dataframe[-1].value
    assert list(built["pruned"])[0] != list(built["original"])[0]
    latency = built.set_index("")
    low, high = (float(v) for v in latency.loc["latency's middle half (ms)", "original"].split("–"))
    assert low <= float(latency.loc["latency (ms, one image, median)", "original"]) <= high  # a median in its spread
    change = latency.loc["latency (ms, one image, median)", "change"]
    assert change == "within the spread" or change.endswith(" %")
    assert not any("disagree" in w.value for w in at.warning)
    at.slider(key="widget_keep").set_value(0.5).run()
    assert any("Settings changed since the last build" in c.value for c in at.caption)
    at.slider(key="widget_keep").set_value(0.25).run()  # the settings built before: shown again, from the cache
    assert at.dataframe[-1].value.equals(built)


def test_the_prune_page_link_that_crashed_on_the_default_backbone_shows_every_section():
    """Issue 28: PageRank stuck at float32 rounding noise replaced everything below "Overlap of the kept set"."""
    at = open_app("prune", backbone="efficientnet_lite0", layer="blocks.1.project.1", tau="0.2")
    overlap = at.dataframe[[i for i, d in enumerate(at.dataframe) if "Jaccard with kept set" in d.value.columns][0]]
    assert set(overlap.value["criterion"]) == {name for name in CRITERIA if name != "eigenvector"}


def test_layerwise_page_and_open_in_explorer():
    at = open_app("layerwise")
    assert at.title[0].value == "Layer-wise centrality"
    summary = at.dataframe[0].value
    assert len(summary) == 33 and {"gini", "top10_share", "density"} <= set(summary.columns)
    at.slider(key="widget_tau").set_value(0.05).run()
    assert_clean(at)
    at.session_state["layerwise_table"] = {"selection": {"rows": [2], "columns": [], "cells": []}}
    at.run()
    assert_clean(at)
    assert at.title[0].value == "Graph explorer"
    assert at.session_state["layer"] == summary["layer"][2]


def test_random_init_other_backbone_explains_an_empty_graph_and_offers_a_tau():
    at = open_app()
    at.radio(key="weights").set_value("random").run()
    at.selectbox(key="widget_backbone").set_value("resnet18").run()
    assert_clean(at)
    assert not at.error
    assert at.session_state["layer"] == "layer4.1.conv1"
    assert "random init" in " ".join(c.value for c in at.sidebar.caption)
    assert edges_drawn(at) == 0
    note = " ".join(i.value for i in at.info)
    assert "random" in note and "about ±0.015" in note  # 1/sqrt(512 x 3 x 3)
    at.button(key="use_suggested_tau").click().run()
    assert_clean(at)
    edges = edges_drawn(at)
    assert 512 * 10 / 2 <= edges <= 512 * 20 and at.session_state["tau"] > 0
    assert canvas(at)[0]["tau"] == at.session_state["tau"]  # the canvas follows a tau set elsewhere


def test_explorer_layouts_kept_highlight_and_graph_files():
    at = open_app(layer="blocks.1.expand.1", keep="0.25")
    assert at.session_state["graph_layout"] == "force"
    force_key = canvas(at)[1]["key"]
    at.segmented_control(key="graph_layout").set_value("pca").run()
    assert_clean(at)
    assert canvas(at)[1]["key"] != force_key  # another payload: the same edges at other positions
    at.toggle(key="show_kept").set_value(True).run()
    assert_clean(at)
    kept = np.frombuffer(base64.b64decode(canvas(at)[0]["kept"]), np.uint8)
    assert len(kept) == 96 and kept.sum() == keep_count(96, 0.25)  # the rest drawn hollow
    at.segmented_control(key="graph_colour").set_value("community").run()
    assert_clean(at)
    state = canvas(at)[0]
    labels = np.frombuffer(base64.b64decode(state["communities"]), np.uint16)
    assert state["colouring"] == "community" and len(labels) == 96 and labels.min() == 0
    assert {b.proto.label for b in at.get("download_button")} >= {"GRAPHML", "GEXF"}


def saved_bytes(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("content, expected", [
    (b"this is not a checkpoint", "Could not read"),
    ({"foo.weight": torch.zeros(2, 2)}, "unexpected keys: foo.weight"),
    ({"stem.1.weight": torch.zeros(2), 7: torch.zeros(2)}, "not a state dict"),
    ({"stem.1.weight": [1.0, 2.0]}, "not a state dict"),
    ("a fitting state dict with one NaN", "NaN or Inf"),  # shapes are checked first: this one fits
])
def test_bad_checkpoint_upload_is_an_error_and_is_deleted(content, expected):
    if content == "a fitting state dict with one NaN":
        content = load_backbone("efficientnet_lite0", "random").model.state_dict()
        content["stem.1.weight"][0, 0, 0, 0] = float("nan")
    if not isinstance(content, bytes):
        content = saved_bytes(content)
    at = open_app()
    at.radio(key="weights").set_value("checkpoint").run()
    assert_clean(at)
    at.file_uploader(key="checkpoint_upload").upload("model.pt", content).run()
    assert_clean(at)
    assert expected in errors(at)
    assert any("No model is loaded" in i.value for i in at.info)
    assert list(uploads().folder.iterdir()) == [], "a refused upload is deleted at once"
    writes = []
    original = uploads().add
    uploads().add = lambda *args: writes.append(args) or original(*args)
    try:
        at.run()  # any rerun, e.g. a slider moved: the same upload is not written and read again
    finally:
        del uploads().add
    assert expected in errors(at) and writes == [] and list(uploads().folder.iterdir()) == []


def _finetune_page(**settings) -> AppTest:
    at = open_app("finetune")
    at.selectbox(key="ft_image_size").set_value(settings.pop("image_size", 64))
    at.selectbox(key="ft_batch").set_value(8)
    for key, value in settings.items():
        widget = at.number_input(key=key) if key in ("ft_epochs", "ft_per_class") else at.radio(key=key)
        widget.set_value(value)
    return at


def _wait_for_runs(at: AppTest, timeout: float) -> None:
    for launch in launches(at):
        assert run_queue().wait(launch.id, timeout), "the run did not end in time"
    at.run()
    assert_clean(at)


def test_finetune_baseline_and_pruned_to_the_end():
    at = _finetune_page(ft_epochs=1, ft_per_class=4)
    at.button(key="ft_start").click().run()
    assert_clean(at)
    assert not at.error
    _wait_for_runs(at, 300)
    table = at.dataframe[-1].value
    assert list(table["run"]) == ["baseline", "pruned"]
    assert set(table["status"]) == {"finished"}
    assert table["params"][1] < table["params"][0]
    assert "latency_ms" not in table and table["test_acc"].between(0, 100).all()  # one unit per quantity: %
    assert at.main.get("plotly_chart"), "loss and accuracy curves"

    at.switch_page("pages/results.py").run()
    assert_clean(at)
    runs = at.dataframe[0].value
    assert set(runs["mode"]) >= {"baseline", "pruned"} and "status" not in runs  # every run's: said once, above
    assert any(shown(c.value).startswith("Every run: status **finished**") for c in at.caption)
    assert "latency_ms" not in runs and runs["test_acc_pct"].between(0, 100).all()
    assert list(runs.loc[runs["mode"] == "baseline", "setting"]) == ["—"]  # not "None"
    assert set(runs["image_size"]) == {64}  # the size its MACs are counted at
    assert len(at.main.get("plotly_chart")) == 2  # curves and accuracy against MACs
    assert at.get("download_button"), "CSV and model downloads"
    at.session_state["runs_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.selectbox(key="download_run").set_value(int(runs["id"][1])).run()
    assert_clean(at)

    other = open_app("results")  # another visitor sees none of these runs
    assert not other.dataframe or not set(other.dataframe[0].value["id"]) & set(runs["id"])


def test_only_the_visitors_own_models_saved_by_the_app_are_offered(monkeypatch, tmp_path):
    """A model is offered for download only when its run is this visitor's AND it lies in the app's models
    folder: a command-line run's --save folder, or a run of theirs pointing elsewhere, is not."""
    from cprune_core import RunStore
    from cprune_core.paths import models_dir
    from cprune_core.schema import RunStatus, RunSummary

    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path / "home"))
    at = open_app("results")
    me = at.session_state["_visitor"]

    def saved_model(folder: Path, owner: str | None) -> int:
        folder.mkdir(parents=True)
        (folder / "model.json").write_text("{}")
        (folder / "model.pt").write_bytes(b"weights")
        store = RunStore()
        run_id = store.record_run(FinetuneConfig().to_dict(), RunSummary(RunStatus.FINISHED, "done", test_acc=0.5),
                                  [], owner=owner)
        store.set_model_dir(run_id, folder)
        return run_id

    mine_elsewhere = saved_model(tmp_path / "private-model", owner=me)
    command_line_in_models = saved_model(models_dir() / "cli-run", owner=None)
    at.run()
    assert set(at.dataframe[0].value["id"]) == {mine_elsewhere, command_line_in_models}  # both listed
    assert not any(box.key == "download_run" for box in at.selectbox)
    assert any("No saved model of yours yet" in c.value for c in at.caption)

    mine = saved_model(models_dir() / "mine", owner=me)
    at.run()
    assert at.selectbox(key="download_run").value == mine and len(at.selectbox(key="download_run").options) == 1


def test_results_page_with_no_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path))
    at = open_app("results")
    assert any("No runs recorded yet" in i.value for i in at.info)


def test_a_damaged_run_store_is_reported_on_the_results_page(monkeypatch, tmp_path):
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path))
    (tmp_path / "runs.sqlite").write_bytes(b"not a database" * 100)
    at = open_app("results")
    assert any("was damaged" in shown(w.value) for w in at.warning)
    (tmp_path / "runs.sqlite").unlink()
    (tmp_path / "runs.sqlite").mkdir()
    at = open_app("results")
    assert "is a folder, not a file" in errors(at)


def test_visitors_queue_and_own_their_runs():
    first = _finetune_page(ft_epochs=50, ft_per_class=0, ft_train_scope="all")
    first.multiselect(key="ft_modes").set_value(["finetune"])
    first.button(key="ft_start").click().run()
    assert_clean(first)
    [theirs] = launches(first)
    assert run_queue().wait(theirs.id, 60, until=lambda launch: launch.state == LaunchState.RUNNING)
    second = _finetune_page(ft_epochs=1, ft_per_class=4)
    second.multiselect(key="ft_modes").set_value(["baseline"])
    second.button(key="ft_start").click().run()
    assert_clean(second)
    assert not second.error, "queued, not refused"
    [mine] = launches(second)
    assert any("number 1 in the queue" in m.value for m in second.markdown)
    assert not run_queue().stop(second.session_state["_visitor"], theirs.id), "only its visitor stops a launch"
    assert all(f"ft_stop_{theirs.id}" != b.key for b in second.button)

    training = run_queue().wait(theirs.id, 300, until=lambda launch: any(
        event.kind == EventKind.START for event in launch.tracks[0].events))
    assert training, "the first visitor's run did not start training"
    first.run()
    first.button(key=f"ft_stop_{theirs.id}").click().run()
    assert_clean(first)
    assert run_queue().wait(theirs.id, 120) and run_queue().wait(mine.id, 300)
    first.run()
    second.run()
    assert launches(first)[0].tracks[0].final.status == "stopped"
    assert any("stopped" in w.value for w in first.warning)
    assert launches(second)[0].tracks[0].final.status == "finished"


def test_a_visitor_may_queue_only_so_many_launches():
    at = _finetune_page(ft_epochs=1, ft_per_class=4)
    at.multiselect(key="ft_modes").set_value(["baseline"])
    visitor = at.session_state["_visitor"]
    config = FinetuneConfig(mode="baseline", epochs=1, image_size=64, train_per_class=2)
    held = [run_queue().submit(visitor, {"baseline": config}) for _ in range(2)]
    at.button(key="ft_start").click().run()
    assert "limit is 2" in errors(at)
    for launch in held:
        run_queue().stop(visitor, launch.id)
        assert run_queue().wait(launch.id, 300)


def test_the_lecture_preset_sets_a_small_image_size_and_few_images_per_class_and_says_so():
    at = _finetune_page()
    at.button(key="ft_lecture").click().run()
    assert_clean(at)
    assert at.selectbox(key="ft_image_size").value == 128 and at.number_input(key="ft_per_class").value == 30
    assert at.number_input(key="ft_epochs").value == 5 and at.radio(key="ft_train_scope").value == "suffix"
    assert any("128 px images, 30 training images per class and 5 epochs" in c.value for c in at.caption)


def test_the_glossary_explains_every_term_a_page_names():
    from ui.glossary import TERMS

    at = open_app("glossary")
    assert at.title[0].value == "Glossary"
    assert len(at.markdown) >= len(TERMS) and any(m.value.startswith("**MACs**") for m in at.markdown)
    for page in ("prune", "how-it-works", "finetune", "results"):
        at.switch_page(f"pages/{page}.py").run()
        assert_clean(at)
        assert at.expander[0].label == "Terms on this page", page


def test_finetune_invalid_dataset_folder_is_an_error(tmp_path):
    at = open_app()
    at.selectbox(key="dataset").set_value("folder").run()
    at.switch_page("pages/finetune.py").run()
    assert_clean(at)
    at.button(key="ft_start").click().run()
    assert "needs a folder" in errors(at)
    at.text_input(key="ft_root").set_value(str(tmp_path / "missing")).run()
    at.selectbox(key="ft_image_size").set_value(64)
    at.button(key="ft_start").click().run()
    assert "not one of this server's data folders" in errors(at) and str(tmp_path) not in errors(at)
    assert not launches(at), "nothing was queued"


def test_unavailable_weights_offer_random_init(monkeypatch):
    from dataclasses import replace

    from cprune_core import BACKBONES, WeightsUnavailableError

    build = BACKBONES["resnet18"].build

    def offline(pretrained: bool):
        if pretrained:
            raise WeightsUnavailableError("Could not load the ImageNet weights of resnet18 (offline).")
        return build(False)

    monkeypatch.setitem(BACKBONES, "resnet18", replace(BACKBONES["resnet18"], build=offline))
    at = open_app()
    at.selectbox(key="widget_backbone").set_value("resnet18").run()
    assert_clean(at)
    assert "offline" in errors(at)
    at.button[0].click().run()  # "Use random init instead"
    assert_clean(at)
    assert not at.error
    assert at.radio(key="weights").value == "random"


def test_how_it_works_shows_the_cores_numbers_for_the_layer(lite0):
    at = open_app("how-it-works", tau="0.2", keep="0.25")
    assert at.title[0].value == "How it works" and at.session_state["hiw_layer"] == "stem.1"
    module = lite0.model.get_submodule("stem.1")
    adjacency = adjacency_for(module, 0.2, "stem.1")
    steps = list(power_iteration(adjacency, max_iter=20_000))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Step k"] == f"1 of {len(steps)}"
    assert metrics["λ estimate"] == f"{steps[0].eigenvalue:.6f}" and metrics["L1 change"] == f"{steps[0].change:.3e}"
    at.slider(key="hiw_step").set_value(5).run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["λ estimate"] == f"{steps[4].eigenvalue:.6f}" and metrics["L1 change"] == f"{steps[4].change:.3e}"
    edges = int(torch.count_nonzero(torch.triu(adjacency, 1)))
    assert any(f"**{edges}** of the 496 pairs" in m.value for m in at.markdown)

    centrality = eigenvector_centrality(adjacency, max_iter=20_000).scores
    ranking = at.dataframe[-1].value.sort_values("neuron")  # the ranking table, last on the page
    assert np.array_equal(ranking["centrality"].to_numpy(), centrality.numpy())
    kept = kept_indices(centrality, keep_count(32, 0.25))
    assert sorted(ranking.loc[ranking["kept"], "neuron"]) == kept
    graph = PruningGraph(lite0.model, lite0.spec)
    cost = CostModel(lite0.model, graph, 224)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Weight matrix"] == "8 × 27" and metrics["Neurons kept"] == "8 of 32"
    assert metrics["Layer params"] == f"{cost.layer_estimate('stem.1', 8).params:,}"
    assert metrics["Layer MACs"] == f"{cost.layer_estimate('stem.1', 8).macs:,}"
    halved = next(m for m in at.metric if m.label == "Layer params")
    assert halved.delta == f"from {cost.layer_estimate('stem.1', 32).params:,}"
    assert halved.proto.direction == MetricDirection.DOWN  # the arrow says what happened: fewer (issue 28)
    assert any("from the core's `eigenvector_centrality` is **0.0e+00**" in m.value for m in at.markdown)

    at.button(key="hiw_open_prune").click().run()
    assert_clean(at)
    assert at.title[0].value == "Prune" and at.session_state["layer"] == "stem.1"
    assert at.session_state["criterion"] == "eigenvector" and at.session_state["keep"] == 0.25


def test_how_it_works_takes_the_nearest_small_layer_to_a_big_one():
    at = open_app("how-it-works", layer="blocks.5.expand.1")
    assert at.session_state["hiw_layer"] != "blocks.5.expand.1"
    assert any("too many to show step by step" in c.value for c in at.caption)


def test_every_page_url_is_its_file_name_as_legacy_mode_would_serve_it():
    from ui.navigation import PAGES

    for entry in PAGES:
        assert Path(ROOT / entry.script).is_file()
        assert entry.url_path in ("", Path(entry.script).stem), entry


def _analyse(at: AppTest, timeout: float = 600) -> None:
    at.button(key="imp_start").click().run()
    assert_clean(at)
    assert not at.error, errors(at)
    [launch] = [launch for launch in launches(at) if launch.task is not None and launch.state != LaunchState.ENDED]
    assert run_queue().wait(launch.id, timeout)
    at.run()
    assert_clean(at)


def test_importance_page_shows_the_analysis_of_the_head_layer():
    at = open_app("importance")
    at.selectbox(key="imp_image_size").set_value(32)
    at.number_input(key="imp_seeds").set_value(2)
    _analyse(at)
    assert "neurons of head.1" in " ".join(shown(i.value) for i in at.info)  # the generated sentence
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Neurons measured"] == "all 1,280"
    table = at.dataframe[0].value.set_index("criterion")
    config = FinetuneConfig(mode="baseline", epochs=8, image_size=32, log_every=1000)
    expected = analyse_importance(config, "head.1", tau=0.1, seeds=2)  # features cached by the page's run
    for name, correlation in expected.correlations.items():
        assert table.loc[name, "Spearman rho"] == pytest.approx(correlation.spearman, nan_ok=True)
    assert len(at.main.get("plotly_chart")) == 2  # the scatter panels and the zero-shot curve


def test_importance_page_says_when_it_measured_a_sample():
    at = open_app("importance")
    at.selectbox(key="imp_layer").set_value("blocks.15.project.1").run()
    at.selectbox(key="imp_image_size").set_value(32)
    at.number_input(key="imp_seeds").set_value(1)
    at.number_input(key="imp_sample").set_value(3)
    _analyse(at)
    assert {m.label: m.value for m in at.metric}["Neurons measured"] == "3 of 320"
    assert any("This is a sample: 3 of the 320 neurons" in c.value for c in at.caption)


@pytest.mark.parametrize("layer", ["no.such.layer", "classifier"])  # not a layer; a layer never pruned
def test_a_rejected_layer_leaves_the_url_at_once(layer):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(layer=layer)
    at.switch_page("pages/prune.py").run()  # the link opens the Prune page itself
    assert_clean(at)
    assert at.query_params["layer"] == "head.1", "the URL shows the layer actually shown"
    assert any(f"Layer '{layer}' is not a prunable layer" in shown(c.value) for c in at.caption)


def test_the_store_folder_message_advises_what_a_visitor_can_do(monkeypatch, tmp_path):
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path))
    (tmp_path / "runs.sqlite").mkdir()
    at = open_app("results")
    assert "is a folder, not a file. Whoever runs this server can set CPRUNE_HOME" in errors(at)
    assert "--store" not in errors(at) and "--no-record" not in errors(at)


def test_a_stopped_launch_says_what_happened_to_each_run():
    from cprune_server import STOPPED_BY_OWNER

    gate = threading.Event()
    blocker = run_queue().submit_task("another visitor", "holds the worker", lambda stop, progress: gate.wait(TIMEOUT))
    try:
        at = _finetune_page(ft_epochs=1, ft_per_class=4)
        at.button(key="ft_start").click().run()
        [waiting] = launches(at)
        texts = [p.proto.text for p in at.get("progress")]
        assert texts == ["**baseline** · waiting", "**pruned** · waiting"], "not 'preparing' while it waits"
        at.button(key=f"ft_stop_{waiting.id}").click().run()
        assert_clean(at)
        assert any(f"not started: {STOPPED_BY_OWNER}" in m.value for m in at.markdown)
        assert [c.value for c in at.caption if "not started" in c.value] == [
            f"**baseline** · not started: {STOPPED_BY_OWNER}", f"**pruned** · not started: {STOPPED_BY_OWNER}"]
    finally:
        gate.set()
    assert run_queue().wait(blocker.id, TIMEOUT)

    at.button(key="ft_start").click().run()
    running = next(launch for launch in launches(at) if launch.state != LaunchState.ENDED)
    assert run_queue().wait(running.id, TIMEOUT, until=lambda launch: launch.tracks[0].events)  # preparing
    at.button(key=f"ft_stop_{running.id}").click().run()
    _wait_for_runs(at, 300)
    warnings = [shown(w.value) for w in at.warning]
    assert warnings and "0 of 0" not in " ".join(warnings)
    assert re.fullmatch(r"\*\*baseline\*\* stopped (before training began|after \d+ of [1-9]\d* steps)\.", warnings[0])
    assert f"**pruned** · not started: {STOPPED_BY_OWNER}" in [c.value for c in at.caption]


def test_with_downloads_off_a_shared_link_fetches_nothing(monkeypatch, tmp_path):
    from dataclasses import replace

    from cprune_core import BACKBONES

    build, fetched = BACKBONES["resnet18"].build, []

    def recorded(pretrained: bool):
        fetched.append(pretrained)
        return build(pretrained)

    monkeypatch.setitem(BACKBONES, "resnet18", replace(BACKBONES["resnet18"], build=recorded))
    monkeypatch.setenv("CPRUNE_DOWNLOADS", "off")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # nothing cached
    at = open_app(backbone="resnet18")
    assert at.radio(key="weights").value == "random" and "pretrained" not in at.radio(key="weights").options
    assert any("downloads nothing on a visitor's behalf" in c.value for c in at.sidebar.caption)
    assert True not in fetched, "no pretrained weights were asked for"
    at.selectbox(key="dataset").set_value("caltech101").run()
    assert any("caltech101 is not in its dataset cache" in c.value for c in at.sidebar.caption)


OPERATOR_TOKEN = "k7Qm-2xVt9Lp_R4wZb8NcY3s"  # as secrets.token_urlsafe makes them


@pytest.mark.parametrize("token", ["", "s3cret-operator-token", OPERATOR_TOKEN])
def test_only_the_operator_token_opens_the_operator_page(monkeypatch, token):
    monkeypatch.setenv("CPRUNE_ADMIN_TOKEN", token)
    at = open_app("operator")
    if token == "":
        assert any("The operator's page is off" in i.value for i in at.info)
        return
    if token != OPERATOR_TOKEN:  # 21 characters, one kind but for two hyphens: could be guessed
        assert "CPRUNE_ADMIN_TOKEN is too easy to guess" in errors(at) and token not in errors(at)
        return
    at.text_input(key="operator_token").input("not-the-operator-token").run()
    assert any("not the operator's token" in i.value for i in at.info) and not at.metric
    at.text_input(key="operator_token").input(token).run()  # at once: too soon, not even compared
    assert any("Too many wrong tokens: try again in 1 s." in i.value for i in at.info) and not at.metric
    time.sleep(1.1)

    running = run_queue().submit_task("id-of-visitor-one", "runs", lambda stop, progress: stop.wait(TIMEOUT))
    waiting = run_queue().submit_task("id-of-visitor-two", "waits", lambda stop, progress: None)
    try:
        assert run_queue().wait(running.id, 60, until=lambda launch: launch.state == LaunchState.RUNNING)
        at.text_input(key="operator_token").input(token).run()
        assert_clean(at)
        table = at.dataframe[0].value
        assert {running.id, waiting.id} <= set(table["launch"]) and "id-of-visitor" not in table.to_csv()
        assert set(table["visitor is"]) == {"here"}, "scripts' visitors, never in a browser, count as here"
        at.button(key="operator_clear").click().run()
        assert any("Took 1 waiting launch(es) out" in i.value for i in at.info)
        at.selectbox(key="operator_running").set_value(running.id)
        at.button(key="operator_stop").click().run()
        assert run_queue().wait(running.id, 60) and not run_queue().is_pending(waiting.id)
    finally:
        run_queue().stop_any(running.id)
        run_queue().stop_any(waiting.id)
    at.button(key="operator_leave").click().run()
    assert at.text_input(key="operator_token") is not None and not at.metric
