"""The atlas in the app (AppTest, as tests/test_app.py): the Layer-wise page's heatmap of a recorded atlas, a
clicked cell's route to the importance page and the explorer, launching and stopping an atlas from the page,
whose runs a visitor sees, and the Prune page's redundancy and coverage against the core's.

The recorded atlas is EfficientNet-Lite0's (the app's default) on 32 px images this module writes, two layers,
tiny samples: made here in seconds, by the command line's owner (None: shared).
"""
from __future__ import annotations

import base64
import json
import math
import shutil

import numpy as np
import pytest
import torch
from app_pages import assert_clean, errors, launches, open_app, shown
from tiny_data import make_tiny_folder

from cprune_core import CRITERIA, FinetuneConfig, PruningGraph, keep_count, kept_indices
from cprune_core.ablation import scores_by_criterion
from cprune_core.atlas import AtlasRecords, AtlasSettings, atlas_sentences, run_atlas
from cprune_core.geometry import group_geometry, group_similarities
from cprune_core.atlas.report import heatmap_panels
from cprune_core.features import FeatureCache
from cprune_server import LaunchState
from ui import atlas_view
from ui.services import run_queue

pytestmark = pytest.mark.usefixtures("app_home")  # a fresh CPRUNE_HOME (conftest.py)

LAYERS = ("blocks.15.project.1", "head.1")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_tiny_folder(tmp_path_factory.mktemp("data") / "tiny", per_class=12, size=40)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, folder):
    """A home whose records hold the command line's atlas of Lite0 (two layers), and that atlas."""
    home = tmp_path_factory.mktemp("home-with-atlas")
    config = FinetuneConfig(dataset="folder", dataset_root=str(folder), image_size=32, epochs=2, batch_size=16,
                            val_fraction=0.25, test_fraction=0.25, device="cpu")
    settings = AtlasSettings(layers=LAYERS, sample_size=6, val_images=12, seeds=3, resamples=100, permutations=99)
    result = run_atlas(config, settings, records=AtlasRecords(home / "atlas"), feature_cache=FeatureCache())
    return home, result


@pytest.fixture
def home(recorded, folder, tmp_path, monkeypatch):
    """A copy of the recorded home as CPRUNE_HOME, with the test's data folder one of the server's data folders."""
    copy = tmp_path / "home"
    shutil.copytree(recorded[0], copy)
    monkeypatch.setenv("CPRUNE_HOME", str(copy))
    monkeypatch.setenv("CPRUNE_DATA_ROOTS", str(folder.parent))
    return copy


def heatmap(at) -> dict:
    chart = next(chart for chart in at.main.get("plotly_chart") if chart.proto.id.endswith("atlas_heatmap"))
    return json.loads(chart.proto.spec)


def as_array(values) -> np.ndarray:
    """A figure's array as Plotly's JSON holds it: typed (base64 bytes) or nested lists (None for NaN)."""
    if isinstance(values, dict):
        shape = tuple(int(n) for n in values["shape"].split(","))
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).reshape(shape)
    return np.array([[math.nan if v is None else v for v in row] for row in values], dtype=float)


def click(at, layer: str, criterion: str) -> None:
    """What a click on a cell sends: the selection of the invisible point that carries (layer, criterion)."""
    at.session_state["atlas_heatmap"] = {"selection": {"points": [{"customdata": [layer, criterion]}],
                                                       "point_indices": [0], "box": [], "lasso": []}}
    at.run()
    assert_clean(at)


def test_the_layerwise_page_shows_the_recorded_atlas_as_a_heatmap(home, recorded):
    result = recorded[1]
    at = open_app("layerwise")
    assert [box.options for box in at.selectbox if box.label == "Recorded atlas"] == [
        [atlas_view.run_label(entry) for entry in AtlasRecords().runs()]]
    [shared] = [entry for entry in AtlasRecords().runs() if not entry.reference]
    assert "shared (command line)" in atlas_view.run_label(shared)
    finding = atlas_sentences(result)[0]
    assert any(shown(m.value) == finding for m in at.markdown), "the generated finding, as text, above the heatmap"
    panels = heatmap_panels(result)
    for index, panel in enumerate(panels):
        at.radio(key="atlas_colour").set_value(index).run()
        assert_clean(at)
        cells = heatmap(at)["data"][0]
        assert cells["y"] == [layer.label for layer in result.layers]  # network order, depth, kind and neurons
        assert cells["x"] == [name for name in result.criteria if name != "random"]
        assert np.allclose(as_array(cells["z"]), panel.values, equal_nan=True)
        assert np.array_equal(np.array([["*" in text for text in row] for row in cells["text"]]), panel.significant)
    points = heatmap(at)["data"][1]
    assert points["customdata"][0] == [LAYERS[0], "eigenvector"]  # what a click on a cell carries
    assert any(shown(c.value).startswith("Measured on tiny (folder) at 32 px") and "2 of the 24 prunable layers; 6 "
               "neurons of each layer" in shown(c.value) and
               f"on {result.layers[0].result.n_images} validation images, averaged over 3 heads" in shown(c.value)
               for c in at.caption), "the settings the run used"


def test_a_fresh_install_shows_the_reference_atlas_without_measuring_anything(recorded, tmp_path, monkeypatch):
    """The committed report's runs (docs/atlas-<backbone>.json.gz) are listed first, read-only, for everyone."""
    from cprune_core.atlas import records
    from cprune_core.atlas.report import write_atlas_report

    result = recorded[1]
    docs = tmp_path / "docs"
    write_atlas_report(result, docs, command="cmd", elapsed_s=1, device="cpu")
    monkeypatch.setattr(records, "REFERENCE_DIR", docs)
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path / "fresh-home"))  # nothing recorded, nothing measured
    [entry] = AtlasRecords().runs("efficientnet_lite0")
    assert entry.reference and entry.owner is None
    at = open_app("layerwise")
    assert [box.options for box in at.selectbox if box.label == "Recorded atlas"] == [[atlas_view.run_label(entry)]]
    assert "reference (docs/atlas.md)" in atlas_view.run_label(entry)
    assert any(shown(m.value) == atlas_sentences(result)[0] for m in at.markdown)
    assert not any("No atlas" in i.value for i in at.info)
    read_back = AtlasRecords().read(entry).to_dict()["tests"]
    for name, families in result.to_dict()["tests"].items():  # 6 significant digits keep every verdict
        for theirs, ours in zip(read_back[name], families):
            assert theirs["verdicts"] == ours["verdicts"]
            assert theirs["adjusted_p"] == pytest.approx(ours["adjusted_p"], rel=1e-5, nan_ok=True)


def test_a_clicked_cell_opens_its_layer_on_the_importance_page_and_in_the_explorer(home, recorded, folder):
    result = recorded[1]
    route = atlas_view.cell_route(result, "head.1", "l1")
    assert route == {"layer": "head.1", "imp_layer": "head.1", "criterion": "l1", "dataset": "folder",
                     "imp_root": str(folder), "imp_image_size": 32}
    at = open_app("layerwise")
    click(at, "head.1", "l1")
    at.button(key="atlas_open_importance").click().run()
    assert_clean(at)
    assert at.title[0].value == "Does centrality predict importance?"
    assert at.selectbox(key="imp_layer").value == "head.1" and at.selectbox(key="imp_image_size").value == 32
    assert at.text_input(key="imp_root").value == str(folder) and at.session_state["dataset"] == "folder"
    assert (at.query_params["layer"], at.query_params["criterion"]) == ("head.1", "l1")  # the link of the view

    at.switch_page("pages/layerwise.py").run()
    click(at, LAYERS[0], "eigenvector")
    at.button(key="atlas_open_explorer").click().run()
    assert_clean(at)
    assert at.title[0].value == "Graph explorer" and at.session_state["layer"] == LAYERS[0]
    assert at.query_params["layer"] == LAYERS[0]


def test_a_route_leaves_out_a_folder_outside_the_data_folders(recorded, monkeypatch, tmp_path):
    monkeypatch.setenv("CPRUNE_DATA_ROOTS", str(tmp_path))
    assert "imp_root" not in atlas_view.cell_route(recorded[1], "head.1", "eigenvector")


def _form(at, folder) -> None:
    at.selectbox(key="dataset").set_value("folder").run()
    at.text_input(key="atlas_root").set_value(str(folder))
    at.selectbox(key="atlas_image_size").set_value(32)
    for name, value in (("atlas_sample", 3), ("atlas_images", 8), ("atlas_seeds", 2)):
        at.number_input(key=name).set_value(value)


def _atlas_launches(at) -> list:
    return [launch for launch in launches(at) if launch.kind == atlas_view.KIND]


def test_launch_stop_and_finish_an_atlas_from_the_page_which_only_its_visitor_sees(home, folder):
    at = open_app("layerwise")
    _form(at, folder)
    at.button(key="atlas_start").click().run()
    assert_clean(at)
    assert not at.error, errors(at)
    [launch] = _atlas_launches(at)
    assert run_queue().wait(launch.id, 300, until=lambda launch: launch.progress[1] > 0)  # it runs, reporting
    at.run()
    assert any(p.proto.text for p in at.get("progress")), "its progress"
    at.button(key=f"atlas_stop_{launch.id}").click().run()
    assert run_queue().wait(launch.id, 300)
    at.run()
    assert_clean(at)
    assert _atlas_launches(at)[0].failure == "Stopped."
    assert any(shown(w.value) == "Stopped." for w in at.warning)
    at.switch_page("pages/importance.py").run()
    assert any("No analysis yet" in i.value for i in at.info), "an atlas is not listed as an analysis"
    at.switch_page("pages/layerwise.py").run()

    _form(at, folder)  # the page's inputs were left with the page
    at.button(key="atlas_start").click().run()
    finished = next(launch for launch in _atlas_launches(at) if launch.state != LaunchState.ENDED)
    assert run_queue().wait(finished.id, 600)
    at.run()
    assert_clean(at)
    [ended] = [launch for launch in _atlas_launches(at) if launch.id == finished.id]
    assert ended.failure == "" and ended.result.owner == at.session_state["_visitor"]
    [runs] = [box.options for box in at.selectbox if box.label == "Recorded atlas"]
    assert len(runs) == 2 and "yours" in runs[0] and "shared (command line)" in runs[1]  # the newest first, shown
    assert len(heatmap(at)["data"][0]["y"]) == 4  # the app's default: 4 layers spread over the network

    other = open_app("layerwise")  # another visitor: the shared run only
    [theirs] = [box.options for box in other.selectbox if box.label == "Recorded atlas"]
    assert len(theirs) == 1 and "shared (command line)" in theirs[0]
    assert not _atlas_launches(other)


def _expected_geometry(lite0, layer: str, count: int) -> dict[str, tuple[float, float]]:
    """The core's figures: the atlas's scores and kept sets (random: the mean over the atlas's seeds)."""
    graph = PruningGraph(lite0.model, lite0.spec)
    group = graph.group_for(layer)
    similarities = group_similarities(lite0.model, group)
    expected = {}
    for name, rows in scores_by_criterion(graph, group, list(CRITERIA), tau=0.1, seeds=8).items():
        each = []
        for row in rows:
            keep = torch.zeros(group.channels, dtype=torch.bool)
            keep[kept_indices(torch.from_numpy(row), count)] = True
            geometry = group_geometry(similarities, keep)
            each.append((geometry.redundancy, geometry.coverage))
        expected[name] = tuple(np.mean(each, axis=0))
    return expected


@pytest.mark.parametrize("layer", ["head.1", "blocks.5.project.1"])  # a layer of its own; a residual stream of 3
def test_the_prune_pages_redundancy_and_coverage_are_the_cores(layer, lite0):
    at = open_app("prune", layer=layer)
    at.slider(key="widget_keep").set_value(0.25).run()
    assert_clean(at)
    table = next(frame.value for frame in at.dataframe if "coverage" in frame.value.columns).set_index("criterion")
    expected = _expected_geometry(lite0, layer, keep_count(lite0.model.get_submodule(layer).out_channels, 0.25))
    random = expected.pop("random")
    assert list(table.index) == list(expected) + ["random (mean of 8 seeds)"]
    for name, (redundancy, coverage) in {**expected, "random (mean of 8 seeds)": random}.items():
        row = table.loc[name]
        assert (row["redundancy"], row["coverage"]) == pytest.approx((redundancy, coverage), abs=1e-5)
        assert (row["redundancy − random"], row["coverage − random"]) == pytest.approx(
            (redundancy - random[0], coverage - random[1]), abs=1e-5)
    coupled = any("3 coupled layers" in c.value for c in at.caption)
    assert coupled == (layer != "head.1")
