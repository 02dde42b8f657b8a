"""The atlas: a planted layer found among others, a planted rho, reliability and power recovered, ties flagged,
rank p-values against a hand count, the kept sets' geometry, the block inputs carried once, resuming from the
records, the JSON form and the report, the command line's errors, and Ray's numbers against this process's.

The planted network is built here (4 prunable layers, 32 px images the test writes): its layer ``planted.0``
has 12 identical filters whose BatchNorm silences them (removing one changes nothing; keeping only them removes
every signal) and 12 distinct colour detectors the classifier needs. The identical filters form a clique, so
eigenvector centrality ranks them first: in that layer it must predict importance backwards.
"""
from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_data import make_tiny_folder
from torch import nn

from cprune_core import registry
from cprune_core.access import Access
from cprune_core.atlas import (SEQUENTIAL_HITS, TIED_FLAG, AtlasRecords, AtlasResult, AtlasSettings, BlockInputs,
                               atlas_sentences, pooled_tests, run_atlas)
from cprune_core.geometry import group_curves, group_geometry, kept_set_geometry
from cprune_core.atlas.measure import single_neuron_statistics
from cprune_core.ablation import AblationResult
from cprune_core.cli import main
from cprune_core.cut import cut_model
from cprune_core.data import build_transform, load_dataset
from cprune_core.errors import ConfigError, StopRequested
from cprune_core.experiment import LocalExecutor, RayExecutor
from cprune_core.atlas.report import write_atlas_report
from cprune_core.features import FeatureCache
from cprune_core.pruning import kept_indices
from cprune_core.schema import FinetuneConfig
from cprune_core.stats import holm, minimum_detectable_rho, sequential_rank_p

CRITERIA = ("eigenvector", "inverse-eigenvector", "l1", "random")  # pagerank does not converge on a 12-clique


def conv(inputs: int, outputs: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, kernel, stride, padding=kernel // 2), nn.BatchNorm2d(outputs),
                         nn.ReLU())


class PlantedNet(nn.Module):
    """stem (colour detectors) -> mid -> planted (12 silent identical filters, then 12 detectors, 4 per colour)
    -> head -> pooling -> classifier."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.stem, self.mid = conv(3, 8, 3, stride=4), conv(8, 16, 1)  # 8 x 8 positions: cheap
        self.planted, self.head = conv(16, 24, 1), conv(24, 16, 1)
        self.pool, self.flatten, self.classifier = nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(16, 1000)
        with torch.no_grad():
            for layer in (self.stem[0], self.mid[0], self.planted[0], self.head[0]):
                layer.weight.copy_(0.1 * torch.randn(layer.weight.shape, generator=generator))
                layer.bias.zero_()
            for colour in range(3):
                self.stem[0].weight[colour, colour, 1, 1] += 1.0
                self.mid[0].weight[colour, colour] += 1.0
            for k in range(12):
                self.planted[0].weight[12 + k, k % 3] += 1.0
                self.head[0].weight[k, 12 + k] += 1.0
            silent = torch.arange(12)
            self.planted[0].weight[silent] = self.planted[0].weight[0].clone()
            self.planted[1].weight[silent] = 0.0
            self.planted[1].bias[silent] = 0.0

    def forward(self, x):
        return self.classifier(self.flatten(self.pool(self.head(self.planted(self.mid(self.stem(x)))))))


PLANTED = registry.BackboneSpec("planted", "planted (test)", lambda pretrained: PlantedNet(), "built in the test", True,
                                (0.5,) * 3, (0.25,) * 3, 32, 32, "classifier", "head.0", "head", "flatten")
# 199 random kept sets: a sequential rank p can reach 2 / 200 = 0.01, which Holm over 4 layers lets through.
SETTINGS = AtlasSettings(heads=2, seeds=199, resamples=200, permutations=999, splits=50, criteria=CRITERIA)


@pytest.fixture(scope="module")
def planted_backbone():
    """The planted network as a registered backbone for this module (FinetuneConfig's choices are the registry's)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(registry.BACKBONES, "planted", PLANTED)
        yield "planted"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    classes = {"r": (140, 110, 110), "g": (110, 140, 110), "b": (110, 110, 140)}
    return make_tiny_folder(tmp_path_factory.mktemp("colours") / "colours", classes=classes, per_class=40, size=40)


@pytest.fixture(scope="module")
def config(planted_backbone, folder) -> FinetuneConfig:
    return FinetuneConfig(backbone=planted_backbone, dataset="folder", dataset_root=str(folder), image_size=32,
                          epochs=20, batch_size=16, val_fraction=0.25, test_fraction=0.25, lr=3e-3, device="cpu")


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> AtlasRecords:
    return AtlasRecords(tmp_path_factory.mktemp("records"))


@pytest.fixture(scope="module")
def cache() -> FeatureCache:
    return FeatureCache()


@pytest.fixture(scope="module")
def atlas(config, records, cache) -> AtlasResult:
    return run_atlas(config, SETTINGS, records=records, feature_cache=cache)


# ----------------------------------------------------------------------------- the planted layer


def test_the_atlas_finds_the_planted_layer(atlas):
    assert [layer.layer for layer in atlas.layers] == ["stem.0", "mid.0", "planted.0", "head.0"]
    assert [layer.result.method for layer in atlas.layers] == ["forward"] * 3 + ["pooled"]
    planted = atlas.layer("planted.0")
    assert planted.result.full_acc == 1.0 and len(planted.result.neurons) == 24  # a small layer: every neuron
    assert np.all(planted.result.delta_loss[:12] == 0) and np.all(planted.result.delta_loss[12:] > 0)
    rho = {name: atlas.family(name, "rho") for name in ("eigenvector", "inverse-eigenvector")}
    assert rho["eigenvector"].verdicts[2] == "worse" and rho["inverse-eigenvector"].verdicts[2] == "better"
    assert rho["eigenvector"].effects[2] < -0.8
    # Keeping half by eigenvector keeps exactly the silent clique: chance accuracy, below every random seed.
    group = atlas.family("eigenvector", "group", 0.5)
    accuracy = planted.curve.accuracy
    assert accuracy["eigenvector"][0, 0] == pytest.approx(1 / 3) and accuracy["inverse-eigenvector"][0, 0] == 1.0
    assert accuracy["random"][:, 0].min() > 1 / 3 and group.p[2] == pytest.approx(2 / 200) and group.verdicts[2] == "worse"
    assert planted.random_draws == 199  # an extreme criterion keeps the sequential test drawing to its cap
    assert planted.redundancy["eigenvector"][0, 0] == pytest.approx(1.0)  # twelve identical filters
    assert planted.redundancy["random"][:, 0].max() < 0.9
    assert "below in 1 layer" in atlas_sentences(atlas)[1]


def test_the_rank_p_value_of_a_group_test_is_a_hand_count(atlas):
    """Two-sided Besag-Clifford: the smaller side's hits over the draws it took, doubled."""
    for layer in atlas.layers:
        for column in range(2):
            value = layer.curve.accuracy["l1"][0, column]
            draws = layer.curve.accuracy["random"][:, column]
            sides = []
            for hits in (draws >= value, draws <= value):
                reached = np.flatnonzero(np.cumsum(hits) >= SEQUENTIAL_HITS)
                sides.append(SEQUENTIAL_HITS / (reached[0] + 1) if len(reached) else (hits.sum() + 1) / (len(draws) + 1))
            assert layer.group_p["l1"][column].p == pytest.approx(min(1.0, 2 * min(sides)))
            most = 1000 if layer.result.method == "pooled" else 199
            assert sequential_rank_p(value, draws, h=SEQUENTIAL_HITS, max_draws=most).p == layer.group_p["l1"][column].p


def test_a_layer_where_ties_decide_the_kept_set_is_flagged(atlas, tmp_path):
    """Exact ties (isolated neurons' centrality 0, a constant score) straddling the cut: a layer whose kept set they
    decide by more than TIED_FLAG is named in the sentence and marked in the report (the averaging over tie-breaks
    itself: tests/test_ablation.py)."""
    planted = atlas.layer("planted.0")
    assert all(atlas.tied(layer, "l1", 0.5) == 0.0 for layer in atlas.layers)  # distinct norms: no tie
    tied = {**planted.curve.tied, "eigenvector": np.array([[0.0, 0.75]])}
    flagged = replace(atlas, layers=[replace(planted, curve=replace(planted.curve, tied=tied)) if layer is planted
                                     else layer for layer in atlas.layers])
    assert flagged.tied(flagged.layer("planted.0"), "eigenvector", 0.25) == 0.75 > TIED_FLAG
    assert "in 1 layer ties decided more than 25% of eigenvector's kept set" in atlas_sentences(flagged)[1]
    assert "ties decided" not in atlas_sentences(atlas)[1] or any(
        atlas.tied(layer, "eigenvector", 0.5) > TIED_FLAG for layer in atlas.layers)
    text = write_atlas_report(flagged, tmp_path, command="cmd", elapsed_s=1, device="cpu")["md"].read_text()
    assert "75% †" in text


def test_a_planted_rho_its_ceiling_and_the_layers_power_are_recovered():
    """Per-image effects of 170 neurons whose means have reliability 0.5, and scores that correlate 0.6 with the true
    effects: the layer's numbers are rho about 0.6 x sqrt(0.5), the ceiling sqrt(0.5) and the power of 170 neurons."""
    rng = np.random.default_rng(0)
    n, images = 170, 548
    true = rng.standard_normal(n)
    per_image = true[:, None] + math.sqrt(images) * rng.standard_normal((n, images))  # reliability 0.5
    effects = per_image.mean(1)
    result = AblationResult("planted", "forward", 300, np.arange(n), effects, -effects, 1.0, 0.8, images, 3, per_image)
    scores = np.zeros((1, 300))
    scores[0, :n] = 0.6 * true + 0.8 * rng.standard_normal(n)
    reliability, correlations, p = single_neuron_statistics(result, {"planted": scores}, SETTINGS, family_size=24,
                                                            seed=0)
    assert reliability.full == pytest.approx(0.5, abs=0.08) and reliability.ceiling == pytest.approx(0.71, abs=0.06)
    rho = correlations["planted"]
    assert rho.spearman == pytest.approx(0.6 * math.sqrt(0.5), abs=0.1) and rho.ci_low < rho.spearman < rho.ci_high
    assert p["planted"].p < 0.05 / 24 and p["planted"].draws in (999, 199_999)
    assert minimum_detectable_rho(n, 0.05 / 24) == pytest.approx(0.30, abs=0.01)


def test_every_layer_reports_its_numbers_for_every_criterion(atlas):
    for layer in atlas.layers:
        assert set(layer.correlations) == set(layer.rho_p) == set(layer.curve.accuracy) == set(CRITERIA)
        draws, most = layer.random_draws, (1000 if layer.result.method == "pooled" else 199)
        assert 2 * SEQUENTIAL_HITS - 1 <= draws <= most and layer.redundancy["random"].shape == (min(draws, 199), 2)
        assert math.isnan(layer.rho_p["random"].p) and all(math.isnan(p.p) for p in layer.group_p["random"])
        assert layer.curve.kept.tolist() == [round(layer.neurons * 0.5), round(layer.neurons * 0.25)]
        assert layer.result.n_images == 30 and layer.result.heads == 2 and layer.key  # every validation image
        assert not math.isnan(layer.reliability.full) and layer.reliability.splits == 50
        assert all(not math.isnan(c.z_variance) for n, c in layer.correlations.items() if n != "random")


# ----------------------------------------------------------------------------- the tests on known numbers


def test_holm_against_a_hand_computation():
    # m = 4 defined p-values; sorted 0.01, 0.02, 0.03, 0.2 -> 4 x 0.01, 3 x 0.02, max(0.06, 2 x 0.03), 1 x 0.2.
    adjusted = holm([0.03, 0.2, math.nan, 0.01, 0.02])
    assert adjusted[[0, 1, 3, 4]] == pytest.approx([0.06, 0.2, 0.04, 0.06]) and math.isnan(adjusted[2])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1, and monotone
    assert holm([]).shape == (0,)


def test_the_primary_tests_pool_every_layer_and_are_corrected_together(atlas):
    pooled = pooled_tests([atlas, atlas])
    assert pooled.layers == 8 and pooled.rho.k == 8 and len(pooled.group) == 2
    assert pooled.adjusted == pytest.approx(list(holm([pooled.rho.p] + [g.p for g in pooled.group])))
    single = pooled_tests([atlas])
    assert single.rho.ci_high - single.rho.ci_low > pooled.rho.ci_high - pooled.rho.ci_low  # twice the layers
    assert atlas_sentences([atlas, atlas])[0].startswith("Pooled over the 8 layers of planted and planted")


def test_kept_set_geometry_on_a_hand_example():
    s = torch.tensor([[1.0, 0.5, 0.0, 0.2], [0.5, 1.0, 0.25, 0.0], [0.0, 0.25, 1.0, -0.5], [0.2, 0.0, -0.5, 1.0]])
    keep = torch.tensor([True, False, True, True])
    geometry = kept_set_geometry(s, keep)
    assert geometry.redundancy == pytest.approx((0.0 + 0.2 - 0.5) / 3)  # pairs (0,2), (0,3), (2,3)
    assert geometry.coverage == pytest.approx(0.5)  # neuron 1's best kept twin is neuron 0
    assert math.isnan(kept_set_geometry(s, torch.tensor([True, False, False, False])).redundancy)
    assert math.isnan(kept_set_geometry(s, torch.ones(4, dtype=torch.bool)).coverage)
    averaged = group_geometry([s, torch.eye(4)], keep)
    assert averaged.redundancy == pytest.approx(geometry.redundancy / 2)
    with pytest.raises(ConfigError, match="n booleans"):
        kept_set_geometry(s, torch.ones(3, dtype=torch.bool))


def test_the_curves_of_every_kept_set_size_equal_each_sets_own_geometry():
    """group_curves against group_geometry for every size: tied scores (kept as kept_indices keeps them), a
    group of two matrices (one not symmetric), and the sizes where a figure is undefined."""
    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 9, 50):
        a = torch.from_numpy(rng.normal(size=(n, n)).astype(np.float32))
        similarities = [(a + a.T) / 2, torch.from_numpy(rng.normal(size=(n, n)).astype(np.float32))]
        scores = torch.from_numpy(rng.integers(0, 4, n).astype(np.float64))  # many ties
        curves = group_curves(similarities, scores)
        assert curves.redundancy.shape == curves.coverage.shape == (n + 1,)
        for size in range(n + 1):
            keep = torch.zeros(n, dtype=torch.bool)
            keep[kept_indices(scores, size)] = True
            expected = group_geometry(similarities, keep)
            assert curves.redundancy[size] == pytest.approx(expected.redundancy, abs=1e-5, nan_ok=True), (n, size)
            assert curves.coverage[size] == pytest.approx(expected.coverage, abs=1e-5, nan_ok=True), (n, size)
    with pytest.raises(ConfigError, match="n x n"):
        group_curves([torch.eye(3)], torch.zeros(4))


# ----------------------------------------------------------------------------- shared work, records, JSON, report


def test_block_inputs_equal_each_cuts_own_prefix_and_go_forward_only(config):
    model = PlantedNet().eval()
    dataset = load_dataset("folder", config.dataset_root, val_fraction=0.25, test_fraction=0.25).val
    blocks = BlockInputs(model, PLANTED, dataset, 32, torch.device("cpu"))
    transformed = dataset.with_transform(build_transform(32, PLANTED.mean, PLANTED.std, train=False))
    images = torch.stack([transformed[i][0] for i in range(len(transformed))])
    for cut in ("stem.0", "mid", "planted", "head"):
        prefix = cut_model(model, replace(PLANTED, suffix_start=cut))[0]
        with torch.no_grad():
            assert torch.allclose(blocks.at(cut)[0], prefix(images), atol=1e-6)
    assert blocks.pooled()[0].shape == (len(dataset), 16)
    with pytest.raises(ValueError, match="network order"):
        blocks.at("mid")


def test_a_second_run_reads_every_layer_back_and_a_damaged_record_is_measured_again(atlas, config, records, cache):
    messages = []
    again = run_atlas(config, SETTINGS, records=records, feature_cache=cache,
                      progress=lambda done, total, message: messages.append(message))
    assert again.reused == [layer.layer for layer in atlas.layers] and "Measuring 0 of 4 layers" in messages
    assert again.to_dict()["tests"] == atlas.to_dict()["tests"]
    damaged = records.folder / "layers" / f"{atlas.layer('mid.0').key}.json"
    damaged.write_text("{not json")
    third = run_atlas(config, SETTINGS, records=records, feature_cache=cache)
    assert third.reused == ["stem.0", "planted.0", "head.0"]
    assert np.array_equal(third.layer("mid.0").result.delta_loss, atlas.layer("mid.0").result.delta_loss)
    latest = records.latest(config, SETTINGS)
    assert latest is not None and latest.reused == third.reused
    [listed] = records.runs("planted")
    assert listed.layers == 4 and records.read(listed).head == atlas.head


def test_a_visitor_sees_shared_runs_and_their_own_and_reuses_no_one_elses_layers(config, cache, tmp_path):
    """Owner None is the command line (shared); an app visitor's run is theirs: listed to them only, and its
    layers reused by their own later runs, never by another visitor's or the command line's."""
    records, settings = AtlasRecords(tmp_path), replace(SETTINGS, layers=("head.0",))
    config = replace(config, epochs=1)  # any head will do
    runs = {owner: run_atlas(config, settings, records=records, feature_cache=cache, access=Access(owner=owner))
            for owner in ("alice", "bob", None)}
    assert [runs[owner].reused for owner in runs] == [[], [], []], "nobody reuses another's layer"
    assert run_atlas(config, settings, records=records, feature_cache=cache,
                     access=Access(owner="alice")).reused == ["head.0"]
    assert {run.owner for run in runs.values()} == {"alice", "bob", None}

    def listed(owner):
        return sorted(str(entry.owner) for entry in records.runs("planted", Access(owner=owner)))

    assert listed("alice") == ["None", "alice"] and listed("bob") == ["None", "bob"]
    assert listed("carol") == ["None"] and listed(None) == ["None", "alice", "bob"]
    assert [records.read(entry).owner for entry in records.runs(access=Access(owner="bob"))] == [None, "bob"]  # newest first
    assert records.latest(config, settings, owner="bob").owner == "bob" and records.latest(config, settings).owner is None
    files = [path.name for path in tmp_path.rglob("*.json")]
    assert len(files) == 6 and not any("alice" in name or "bob" in name for name in files)  # no id in a name

    # A record whose JSON names another owner than its file's is not listed to the file's owner.
    [alices] = [entry for entry in records.runs(access=Access(owner="alice")) if entry.owner == "alice"]
    values = json.loads(alices.path.read_text())
    alices.path.write_text(json.dumps({**values, "owner": "carol"}))
    assert listed("alice") == ["None"] and records.read(alices) is None


def test_the_json_form_round_trips(atlas):
    values = json.loads(json.dumps(atlas.to_dict()))
    back = AtlasResult.from_dict(values)
    assert back.to_dict() == atlas.to_dict()
    assert values["tests"]["eigenvector"][-1]["verdicts"][2] == "worse"
    assert back.layer("planted.0").result.per_image is None  # the per-image effects stay in memory
    assert back.layer("planted.0").reliability == atlas.layer("planted.0").reliability


def test_the_report_has_one_csv_row_per_layer_and_criterion(atlas, tmp_path):
    paths = write_atlas_report(atlas, tmp_path, command="cmd", elapsed_s=60, device="cpu")
    table = pd.read_csv(paths["csv"])
    assert len(table) == 4 * len(CRITERIA)
    assert {"backbone", "reliability", "ceiling", "mde_rho", "tied_keep0.25", "rho_p_mc_low", "rho_permutations",
            "rho_p_holm", "acc_vs_random_keep0.5", "group_p_keep0.5"} <= set(table.columns)
    planted = table[(table.layer == "planted.0") & (table.criterion == "eigenvector")].iloc[0]
    assert (planted.rho_verdict, planted["group_verdict_keep0.5"]) == ("worse", "worse")
    assert planted.mde_rho == pytest.approx(minimum_detectable_rho(24, 0.05 / 4))
    assert planted.reliability == pytest.approx(atlas.layer("planted.0").reliability.full)
    text = paths["md"].read_text()
    assert "Do not edit by hand" in text and f"**Finding:** {atlas_sentences(atlas)[0]}" in text
    assert text.index("## The primary tests") < text.index("## What each layer could detect")  # the pooled test first
    assert paths["planted"].stat().st_size > 20_000


def test_stop_ends_the_run_and_keeps_the_finished_layers(config, cache, tmp_path):
    stop, records = threading.Event(), AtlasRecords(tmp_path)

    def stop_after_the_first_layer(done, total, message):
        if message.startswith("Measured"):
            stop.set()

    with pytest.raises(StopRequested):
        run_atlas(config, SETTINGS, records=records, progress=stop_after_the_first_layer, stop=stop, feature_cache=cache)
    assert len(list((tmp_path / "layers").glob("*.json"))) == 1
    assert run_atlas(config, SETTINGS, records=records, feature_cache=cache).reused == ["stem.0"]


def test_impossible_settings_are_refused_before_any_training(config):
    cache = FeatureCache()
    for settings, message in [(replace(SETTINGS, layers=("nope",)), "no layer named"),
                              (replace(SETTINGS, layers=("classifier",)), "cannot be pruned"),
                              (replace(SETTINGS, layers=("planted.0",), sample_size=30), "larger than layer planted.0"),
                              (replace(SETTINGS, seeds=1), "at least 2 random kept sets"),
                              (replace(SETTINGS, criteria=("l1", "random")), "eigenvector"),
                              (replace(SETTINGS, keep_ratios=(0.0,)), "keep ratio")]:
        with pytest.raises(ConfigError, match=message):
            run_atlas(config, settings, feature_cache=cache)
    assert len(cache) == 0


# ----------------------------------------------------------------------------- the command line


@pytest.mark.parametrize("arguments, message", [
    (["--layers", "nope"], "The model has no layer named 'nope'"),
    (["--layers", "blocks.0.project.1", "--sample", "17"], "larger than layer blocks.0.project.1, which has 16"),
    (["--out", "FILE"], "cannot be written"),
])
def test_command_line_bad_input_is_one_line(arguments, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path / "home"))
    (tmp_path / "FILE").write_text("a file, not a folder")
    arguments = [str(tmp_path / "FILE") if argument == "FILE" else argument for argument in arguments]
    assert main(["experiment", "atlas", "--quick", *arguments]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert captured.out == "" and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_quick_command_line_json_writes_the_report_outside_docs(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path / "home"))
    assert main(["experiment", "atlas", "--quick", "--json", "--dataset", "folder", "--root", str(folder),
                 "--image-size", "32", "--layers", "head.1", "--val-images", "12", "--seeds", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    [atlas] = report["atlases"]
    assert [layer["layer"] for layer in atlas["layers"]] == ["head.1"]
    assert atlas["settings"]["val_images"] == 12 and report["sentences"][0].startswith("Fewer than 2 layers")
    out = tmp_path / "home" / "quick-reports"
    assert (out / "atlas.md").read_text().startswith("# Does centrality predict importance, layer by layer?")
    assert len((out / "atlas.csv").read_text().splitlines()) == 1 + 8


def test_a_local_map_starts_no_task_once_stop_is_set():
    stop, calls = threading.Event(), []
    tasks = LocalExecutor("cpu", threads=1).map(lambda n: calls.append(n) or stop.set(), iter([(1,), (2,)]), stop=stop)
    assert next(tasks)[0] == 0
    with pytest.raises(StopRequested):
        next(tasks)
    assert calls == [1]


# ----------------------------------------------------------------------------- Ray


@pytest.mark.ray
def test_ray_gives_the_numbers_of_this_process_at_equal_threads(folder, tmp_path, monkeypatch):
    """Each layer a Ray task on a local Ray (1 CPU per task, 2 at once), against this process on 1 thread."""
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config = FinetuneConfig(dataset="folder", dataset_root=str(folder), image_size=32, epochs=2, batch_size=16,
                            val_fraction=0.25, test_fraction=0.25, device="cpu")
    settings = AtlasSettings(layers=("blocks.15.project.1", "head.1"), sample_size=6, val_images=12, heads=2, seeds=3,
                             resamples=100, permutations=99, splits=20)
    local = run_atlas(config, settings, executor=LocalExecutor("cpu", threads=1), feature_cache=FeatureCache())
    with RayExecutor(None, cpus_per_run=1, unit="task") as executor:
        on_ray = run_atlas(config, settings, executor=executor)
        assert sorted(executor.map(abs, iter([(-1,), (-2,), (3,)]))) == [(0, 1), (1, 2), (2, 3)]
        stop, started = threading.Event(), time.perf_counter()
        tasks = executor.map(time.sleep, iter([(30,), (30,), (30,)]), stop=stop)
        threading.Timer(1.0, stop.set).start()
        with pytest.raises(StopRequested, match="cancelled"):
            next(tasks)
        assert time.perf_counter() - started < 15  # cancelled, not waited for
    assert on_ray.head == local.head
    for ours, theirs in zip(local.layers, on_ray.layers):
        assert np.array_equal(ours.result.delta_loss, theirs.result.delta_loss)
        assert all(np.array_equal(ours.curve.accuracy[n], theirs.curve.accuracy[n]) for n in ours.curve.accuracy)
    assert on_ray.to_dict()["tests"] == local.to_dict()["tests"]
    assert atlas_sentences(on_ray) == atlas_sentences(local)
