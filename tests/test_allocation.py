"""Per-layer pruning ratios (cprune_core/experiment/allocation.py) and whether a per-layer figure predicts what a
layer can lose (tolerance.py): the allocation gives the stated total MACs (and the pruned network measures them),
AlphaPruning's map, the statistics on planted numbers, the atlas read as tolerances, both commands end to end."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats

from cprune_core.ablation import AblationResult, ZeroShotCurve
from cprune_core.atlas import AtlasRecords, AtlasResult, AtlasSettings, LayerAtlas
from cprune_core.cli import main
from cprune_core.cost import count_macs
from cprune_core.criteria import make_criterion
from cprune_core.errors import ConfigError
from cprune_core.experiment.allocation import (alphapruning_ratios, allocate, network_cost, prunable_macs,
                                               tolerance_scores)
from cprune_core.experiment import tolerance_report
from cprune_core.experiment.allocation_report import allocation_sentence, chance_sentence, comparisons, summarise
from cprune_core.experiment.tolerance import (associations, spearman_interval, tolerance_columns, tolerance_reliability,
                                              tolerance_rows)
from cprune_core.pruning import prune_model
from cprune_core.registry import get_spec, load_backbone, replace_classifier
from cprune_core.schema import FinetuneConfig, RunStatus, RunSummary
from cprune_core.stats import Reliability, holm, minimum_detectable_difference

BACKBONE = "efficientnet_lite0"


@pytest.fixture(scope="module")
def cost():
    return network_cost(BACKBONE, 5, 64)


def test_alphapruning_maps_metrics_linearly_onto_one_plus_or_minus_epsilon():
    assert np.allclose(alphapruning_ratios([2.0, 3.0, 4.0], 0.2), [0.8, 1.0, 1.2])
    assert np.allclose(alphapruning_ratios([5.0, math.nan, 3.0, 4.0], 0.3), [1.3, 1.0, 0.7, 1.0])
    assert np.array_equal(alphapruning_ratios([2.0, 2.0]), [1.0, 1.0]) and len(alphapruning_ratios([])) == 0


@pytest.mark.parametrize("removed", [0.5, 0.7])
@pytest.mark.parametrize("rule", ["uniform", "spread"])
def test_the_allocation_gives_the_stated_total_macs(cost, removed, rule):
    groups = cost.graph.groups
    ratios = None if rule == "uniform" else alphapruning_ratios(np.random.default_rng(1).uniform(2, 6, len(groups)))
    allocation = allocate(cost, removed, ratios)
    assert allocation.full == cost.base.macs and allocation.prunable == prunable_macs(cost) > 0
    assert allocation.target == math.floor(allocation.full - removed * allocation.prunable)
    assert allocation.macs == cost.estimate(allocation.counts).macs <= allocation.target
    for index, count in allocation.counts.items():  # the nearest achievable: not one neuron more fits anywhere
        assert 1 <= count <= groups[index].channels
        if count < groups[index].channels:
            assert cost.estimate({**allocation.counts, index: count + 1}).macs > allocation.target
    assert 0 <= allocation.shortfall < 1e-3
    if ratios is not None:  # AlphaPruning's proportions survive the rounding in the wider groups
        removed_share = np.array([1 - allocation.counts[i] / g.channels for i, g in enumerate(groups)])
        wide = np.array([g.channels >= 96 for g in groups])
        scale = np.median(removed_share[wide] / ratios[wide])
        assert np.allclose(removed_share[wide], scale * ratios[wide], atol=3 / 96)


def test_the_pruned_network_measures_the_planned_macs(cost):
    allocation = allocate(cost, 0.7, alphapruning_ratios(np.linspace(2, 5, len(cost.graph.groups))))
    spec = get_spec(BACKBONE)
    counts = {cost.graph.groups[index].root: count for index, count in allocation.counts.items()}
    pruned = prune_model(load_backbone(BACKBONE).model, spec, make_criterion("eigenvector"), counts).model
    replace_classifier(pruned, spec, 5)
    assert count_macs(pruned, 64) == allocation.macs, "the cost model's MACs are the pruned network's, exactly"


def test_impossible_shares_are_refused_in_one_sentence(cost):
    floor = cost.estimate({index: 1 for index in range(len(cost.graph.groups))}).macs
    beyond = (cost.base.macs - floor) / prunable_macs(cost) + 1e-4
    with pytest.raises(ConfigError, match="out of reach: one neuron per group leaves"):
        allocate(cost, beyond)
    for share in (0.0, 1.0, math.nan):
        with pytest.raises(ConfigError, match="removed share"):
            allocate(cost, share)
    with pytest.raises(ConfigError, match="one positive ratio per group"):
        allocate(cost, 0.5, [1.0, 2.0])


# The tolerance statistics on planted numbers ---------------------------------------------------------------------

def test_a_planted_predictor_is_found_and_an_unrelated_one_is_not():
    rng = np.random.default_rng(0)
    n = 60
    alpha = rng.uniform(2, 6, n)
    table = pd.DataFrame({"alpha": alpha, "noise": rng.normal(size=n),
                          "random_keep0.5": -0.4 + 0.05 * alpha + rng.normal(0, 0.02, n),
                          "best_keep0.5": rng.normal(size=n)})
    table.loc[3, "alpha"] = math.nan  # a layer with no fit is left out of its tests only
    found = {(a.predictor, a.tolerance): a for a in associations(table, ["alpha", "noise"],
                                                                   ["random_keep0.5", "best_keep0.5"],
                                                                   resamples=2000, permutations=999)}
    planted = found[("alpha", "random_keep0.5")]
    assert planted.n == n - 1 and found[("noise", "random_keep0.5")].n == n
    assert planted.rho > 0.8 and planted.low > 0.6 and planted.significant
    assert planted.adjusted == pytest.approx(min(1, 4 * planted.p)), "Holm's first step: m p"
    assert not any(a.significant for key, a in found.items() if key != ("alpha", "random_keep0.5"))
    assert all(a.adjusted >= a.p for a in found.values())


def test_a_predictor_that_only_tracks_width_is_found_plainly_and_not_beyond_width():
    rng = np.random.default_rng(1)
    n = 80
    neurons = rng.integers(16, 1280, n).astype(float)
    table = pd.DataFrame({"neurons": neurons,
                          "gini": -np.log(neurons) + 0.2 * rng.normal(size=n),  # narrower layers, more concentrated
                          "alpha": rng.normal(size=n)})
    table["random_keep0.5"] = 0.02 * np.log(neurons) + 0.005 * rng.normal(size=n)  # wider layers lose less
    table["extra"] = table["random_keep0.5"] + 0.01 * table["alpha"]  # alpha adds something beyond width here
    plain = {a.predictor: a for a in associations(table, ["gini"], ["random_keep0.5"], resamples=1000,
                                                  permutations=999)}
    beyond = {(a.predictor, a.tolerance): a for a in associations(table, ["gini", "alpha"], ["random_keep0.5", "extra"],
                                                                  given="neurons", resamples=1000, permutations=999)}
    assert plain["gini"].rho < -0.7 and plain["gini"].significant
    assert abs(beyond[("gini", "random_keep0.5")].rho) < 0.3 and not beyond[("gini", "random_keep0.5")].significant
    assert beyond[("alpha", "extra")].rho > 0.5 and beyond[("alpha", "extra")].significant
    assert {a.given for a in beyond.values()} == {"neurons"}


def test_the_sentences_say_so_where_too_few_layers_give_no_rho():
    table = pd.DataFrame({"neurons": [16.0, 32.0, 64.0], "gini": [0.3, 0.2, 0.1], "random_keep0.5": [-0.3, -0.2, -0.1]})
    partial = associations(table, ["gini"], ["random_keep0.5"], given="neurons", resamples=100, permutations=99)
    assert math.isnan(partial[0].rho)  # three layers: nothing left once width is held fixed
    assert "no rho is defined" in tolerance_report.beyond_width_sentence(partial)


def test_the_bootstrap_interval_covers_a_known_rho_and_needs_three_layers():
    rng = np.random.default_rng(5)
    x = rng.normal(size=200)
    low, high = spearman_interval(x, x + rng.normal(size=200), resamples=2000)
    assert low < 6 / np.pi * np.arcsin(1 / (2 * np.sqrt(2))) < high  # Spearman's rho of a correlation-0.71 normal
    assert all(math.isnan(v) for v in spearman_interval([1.0, 2.0], [2.0, 1.0]))
    constant = associations(pd.DataFrame({"a": [1.0] * 5, "t": np.arange(5.0)}), ["a"], ["t"], resamples=100,
                            permutations=99)[0]
    assert math.isnan(constant.rho) and math.isnan(constant.p) and math.isnan(constant.adjusted)


def test_tolerance_reliability_recovers_a_planted_share_of_true_spread():
    """80 layers whose true tolerances spread with sd 0.1, each the mean of 50 random sets of sd 0.2: the true
    reliability is 0.01 / (0.01 + 0.2**2 / 50) = 0.926."""
    rng = np.random.default_rng(0)
    true = rng.normal(-0.2, 0.1, size=80)
    draws = true[:, None] + rng.normal(0, 0.2, size=(80, 50))
    value = tolerance_reliability(draws.mean(1), draws.std(1, ddof=1) / np.sqrt(50))
    assert value == pytest.approx(0.01 / (0.01 + 0.2 ** 2 / 50), abs=0.04)
    noise_only = rng.normal(0, 0.2, size=(80, 50))  # layers alike: their spread is the draws' alone
    assert abs(tolerance_reliability(noise_only.mean(1), noise_only.std(1, ddof=1) / np.sqrt(50))) < 0.4


def test_tolerance_reliability_is_undefined_where_it_cannot_be_measured():
    assert math.isnan(tolerance_reliability([-0.1, -0.2], [0.01, 0.01]))  # fewer than 3 layers
    assert math.isnan(tolerance_reliability([-0.1, -0.2, -0.3], [0.01, math.nan, 0.01]))  # a layer with one set
    assert math.isnan(tolerance_reliability([-0.1, -0.1, -0.1], [0.01, 0.01, 0.01]))  # no spread
    assert tolerance_reliability([-0.1, -0.2, -0.3], [0.0, 0.0, 0.0]) == 1.0
    with pytest.raises(ConfigError, match="one standard error per layer"):
        tolerance_reliability([-0.1, -0.2, -0.3], [0.01, 0.01])


def planted_atlas(backbone: str, layers: dict[str, tuple[list[str], float, list[float], dict[str, float]]],
                  keep_ratios=(0.5, 0.25)) -> AtlasResult:
    """An atlas whose layers were "measured" as given: name -> (coupled layers, full accuracy, random accuracies at
    each keep ratio (one draw), criterion -> accuracy at every keep ratio)."""
    measured = []
    for position, (name, (coupled, full, random, criteria)) in enumerate(layers.items()):
        ratios = np.array(keep_ratios)
        accuracy = {"random": np.array([random, random]), **{c: np.full((1, len(ratios)), v) for c, v in criteria.items()}}
        curve = ZeroShotCurve(ratios, np.array([8, 4]), accuracy, {k: v * 0 for k, v in accuracy.items()}, full)
        result = AblationResult(name, "forward", 16, np.arange(4), np.zeros(4), np.zeros(4), 1.0, full, 32)
        measured.append(LayerAtlas(name, position, position + 1, "Conv2d 1x1", coupled, result,
                                   Reliability(*[math.nan] * 4, 1, 32), {}, {}, curve, {}, {}, {}, 0.0, f"k{position}"))
    config = FinetuneConfig(backbone=backbone, dataset="flowers-sample", mode="baseline")
    summary = RunSummary(RunStatus.FINISHED, "Finished.", val_acc=0.7)
    return AtlasResult(config, AtlasSettings.quick(keep_ratios=keep_ratios), summary, "head", 50, 24, measured,
                       created=1.0)


def test_the_atlas_is_read_as_tolerances(cost):
    atlas = planted_atlas(BACKBONE, {"stem.1": ([], 0.8, [0.3, 0.2], {"eigenvector": 0.5, "l1": 0.6}),
                                     "head.1": ([], 0.8, [0.7, 0.6], {"eigenvector": 0.75, "l1": 0.7})})
    rows = {row["layer"]: row for row in tolerance_rows(atlas)}
    assert list(rows["stem.1"]) >= ["backbone", "layer", "group"]
    assert rows["stem.1"]["random_keep0.5"] == pytest.approx(-0.5) and rows["head.1"]["random_keep0.25"] == pytest.approx(-0.2)
    assert rows["stem.1"]["best_keep0.5"] == pytest.approx(-0.2) and rows["stem.1"]["best_criterion_keep0.5"] == "l1"
    assert rows["head.1"]["best_criterion_keep0.5"] == "eigenvector"
    assert rows["stem.1"]["random_se_keep0.5"] == 0.0  # two identical random sets: no sampling error
    assert tolerance_columns((0.5, 0.25)) == ["random_keep0.5", "best_keep0.5", "random_keep0.25", "best_keep0.25"]
    scores = tolerance_scores(atlas, cost.graph)
    head = cost.graph.group_for("head.1").index
    assert scores[head] == pytest.approx(-0.1) and sum(not math.isnan(s) for s in scores) == 2
    assert all(math.isnan(s) for s in tolerance_scores(None, cost.graph))


# Both commands, end to end ------------------------------------------------------------------------------------------

@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh CPRUNE_HOME (conftest hides the reference atlas): only what the test records is read."""
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path / "home"))
    return tmp_path


def test_experiment_tolerance_reads_the_recorded_atlas_and_writes_its_report(home, capsys):
    layers = {"stem.1": ([], 0.8, [0.3, 0.2], {"eigenvector": 0.5}), "blocks.1.expand.1": ([], 0.8, [0.4, 0.3], {"eigenvector": 0.5}),
              "blocks.2.expand.1": ([], 0.8, [0.5, 0.3], {"eigenvector": 0.6}), "head.1": ([], 0.8, [0.7, 0.6], {"eigenvector": 0.75})}
    AtlasRecords().put_run(planted_atlas(BACKBONE, layers))
    assert main(["experiment", "tolerance", "--quick", "--out", str(home / "report")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Across the 4 layers of efficientnet_lite0") and "16 tests" in out
    table = pd.read_csv(home / "report" / "tolerance.csv").set_index("layer")
    assert list(table.index) == list(layers) and table.loc["head.1", "random_keep0.5"] == pytest.approx(-0.1)
    assert table["alpha"].notna().all() and table["gini"].between(0, 1).all()
    report = (home / "report" / "tolerance.md").read_text()
    assert "Generated by `python -m cprune_core experiment tolerance --quick`" in report and "Holm" in report
    assert "With each layer's width held fixed" in out and "**Beyond width:** With each layer's width" in report
    assert "**How repeatable:** A layer's random tolerance is the mean over its random kept sets; over the 4 layers" in report
    assert "is 1.000 keeping 0.5 (a ceiling of 1.00 on any rho with it) and 1.000 keeping 0.25" in report
    # 32 images: at most 0.25 / 32 of error variance per layer, against the tolerances' variance of 0.0292 (keep 0.5)
    assert f"still at least {1 - (0.25 / 32) / np.var([-0.5, -0.4, -0.3, -0.1], ddof=1):.3f} keeping 0.5" in report


@pytest.mark.slow
def test_experiment_allocation_quick_runs_for_real_and_measures_the_planned_macs(home, capsys):
    code = main(["experiment", "allocation", "--quick", "--seeds", "1", "--image-size", "32", "--out",
                 str(home / "report")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "no atlas of efficientnet_lite0 is recorded" in captured.err.lower(), "the tolerance rule says what it lacks"
    runs = pd.read_csv(home / "report" / "allocation.csv")
    assert len(runs) == 7 and (runs["status"] == "finished").all()
    pruned = runs[runs["rule"] != "unpruned"]
    assert set(pruned["rule"]) == {"uniform", "alpha", "tolerance"} and set(pruned["criterion"]) == {"eigenvector", "random"}
    assert (pruned["macs"] == pruned["planned_macs"]).all() and (pruned["macs"] <= pruned["target_macs"]).all()
    assert (pruned["target_macs"] == math.floor(runs.loc[runs["rule"] == "unpruned", "macs"].iloc[0] * 0.5)).all()
    assert "**Finding:**" in (home / "report" / "allocation.md").read_text()
    assert main(["experiment", "allocation", "--quick", "--seeds", "1", "--image-size", "32", "--out",
                 str(home / "report")]) == 0
    assert pd.read_csv(home / "report" / "allocation.csv")["from_store"].all(), "a second command resumes"
    torch.manual_seed(0)


def planted_runs(seeds: int = 5) -> list[dict]:
    """Finished runs of one backbone at half the MACs removed: alpha's ratios 5 points above uniform's on every
    seed (give or take 1), tolerance's the same as uniform's (give or take 1), eigenvector equal to random."""
    rng = np.random.default_rng(0)
    shift = {"uniform": 0.0, "alpha": 0.05, "tolerance": 0.0}
    rows = []
    for seed in range(seeds):
        base = 0.6 + 0.05 * rng.standard_normal()
        rows.append(dict(backbone="b", regime="r", removed=0.0, criterion="none", rule="unpruned", seed=seed,
                         status="finished", test_acc=base + 0.1, target_macs=2e6, planned_macs=2e6, macs=2e6,
                         classes=5))
        for rule, criterion in ((rule, criterion) for rule in shift for criterion in ("eigenvector", "random")):
            rows.append(dict(backbone="b", regime="r", removed=0.5, criterion=criterion, rule=rule, seed=seed,
                             status="finished", test_acc=base + shift[rule] + 0.01 * rng.standard_normal(),
                             target_macs=1e6, planned_macs=1e6, macs=1e6, classes=5))
    return rows


def test_each_comparison_has_its_paired_t_test_holm_within_its_family_and_what_it_could_detect():
    rows = planted_runs()
    compared = comparisons(rows)
    assert sorted(compared.groupby("kind").size().items()) == [("rule", 4), ("within", 3)]
    frame = pd.DataFrame(rows).set_index(["rule", "criterion", "seed"]).sort_index()["test_acc"]
    line = compared[(compared["comparison"] == "alpha - uniform") & (compared["held"] == "eigenvector")].iloc[0]
    differences = (frame.loc["alpha", "eigenvector"] - frame.loc["uniform", "eigenvector"]).to_numpy()
    assert line.difference == pytest.approx(differences.mean())
    assert line.p == pytest.approx(scipy_stats.ttest_1samp(differences, 0.0).pvalue)
    rules = compared[compared["kind"] == "rule"]
    assert np.allclose(rules["p_holm"], holm(rules["p"].to_numpy()))
    assert line.detectable == pytest.approx(minimum_detectable_difference(differences.std(ddof=1), 5, 0.05 / 4))
    sentence = allocation_sentence(compared)
    assert "alpha's ratios gave +5." in sentence and "alpha above uniform" in sentence
    tolerance = sentence.split("tolerance's ratios gave")[1]
    assert "could not tell" in tolerance and "points with 80% power" in tolerance


def test_pruned_settings_not_shown_above_chance_are_said_first():
    rows = planted_runs()
    assert chance_sentence(summarise(rows)) == "", "0.6 on 5 classes: every setting above chance's 20%"
    for row in rows:
        if row["rule"] == "alpha":
            row["test_acc"] = 0.2 + (0.02 if row["seed"] % 2 else -0.02)  # chance, give or take a seed
    summary = summarise(rows)
    assert list(summary.loc[summary["rule"] == "alpha", "above_chance"]) == [False, False]
    assert chance_sentence(summary).startswith("2 of the 6 pruned settings are not shown above chance (20%")


def test_one_seed_gives_no_test_and_says_so():
    compared = comparisons(planted_runs(seeds=1))
    assert compared["p"].isna().all() and compared["detectable"].isna().all()
    assert "1 seed: no interval" in allocation_sentence(compared)
