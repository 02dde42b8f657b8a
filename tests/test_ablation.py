"""Does centrality predict importance? Exactness against structural pruning, the statistics on known
numbers, the sentence, and the command line (tiny data the tests write, 32 px images)."""
from __future__ import annotations

import json
import math
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from tiny_data import make_tiny_folder

from cprune_core.ablation import (AblationResult, Correlation, ForwardAblator, Heads, PooledAblator, ZeroShotCurve,
                                  ablation_effects, analyse_importance, criterion_correlations, inference_copy,
                                  layer_ablator, prunable_group, rest_features, sample_neurons, scores_by_criterion,
                                  summary_sentence, train_baseline, train_heads, zero_shot_curve)
from cprune_core.cli import main
from cprune_core.data import build_transform
from cprune_core.errors import ConfigError, StopRequested
from cprune_core.experiment.importance_report import dataset_label, importance_config
from cprune_core.features import FeatureCache
from cprune_core.criteria import CRITERIA, Criterion, make_criterion
from cprune_core.paths import SHARED_FLOWERS
from cprune_core.pruning import keep_count, prune_model
from cprune_core.schema import FinetuneConfig
from cprune_core.stats import Reliability

SIZE = 32  # the smallest input EfficientNet-Lite0 takes: keeps every forward pass cheap


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> FinetuneConfig:
    folder = make_tiny_folder(tmp_path_factory.mktemp("tiny") / "colours", per_class=12)
    return FinetuneConfig(dataset="folder", dataset_root=str(folder), image_size=SIZE, epochs=3, batch_size=8,
                          val_fraction=0.25, test_fraction=0.25, lr=3e-3)


@pytest.fixture(scope="module")
def trained(config):
    return train_baseline(config, feature_cache=FeatureCache())


class RemoveOnly(Criterion):
    """Scores every neuron 1 but ``neurons`` 0: keeping n - len(neurons) removes exactly those."""

    name = "remove-only"

    def __init__(self, neurons):
        self.neurons = list(neurons)

    def __call__(self, vectors):
        scores = torch.ones(vectors.shape[0])
        scores[self.neurons] = 0.0
        return scores


def val_loss_and_accuracy(model, trained) -> tuple[float, float]:
    """The model run on the validation images themselves, end to end."""
    dataset = trained.datasets["val"].with_transform(build_transform(SIZE, trained.spec.mean, trained.spec.std,
                                                                     train=False))
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    with torch.no_grad():
        logits = model.eval()(torch.stack(images))
    labels = torch.tensor(labels)
    return F.cross_entropy(logits, labels).item(), (logits.argmax(1) == labels).float().mean().item()


def structurally_pruned(trained, layer: str, removed: list[int]):
    n = prunable_group(trained.model, trained.spec, layer)[1].channels
    return prune_model(trained.model, trained.spec, RemoveOnly(removed), {layer: n - len(removed)}, [layer]).model


def ablator_for(trained, layer: str):
    graph, group = prunable_group(trained.model, trained.spec, layer)
    return layer_ablator(trained, graph, group, layer, feature_cache=FeatureCache())


# ----------------------------------------------------------------------------- exactness


def test_head_layer_effects_equal_structural_pruning_of_that_one_neuron(trained):
    ablator = ablator_for(trained, "head.1")
    assert isinstance(ablator, PooledAblator) and ablator.n_neurons == 1280
    full_loss, full_acc = val_loss_and_accuracy(trained.model, trained)
    assert (ablator.full().loss, ablator.full().accuracy) == pytest.approx((full_loss, full_acc), abs=1e-5)
    # At 32 px many pooled features are 0 on every image: measure the most active neurons.
    neurons = sorted(trained.pooled["val"][0].abs().sum(0).argsort(descending=True)[:3].tolist())
    result = ablation_effects(ablator, neurons)
    assert result.neurons.tolist() == neurons
    for index, neuron in enumerate(neurons):
        loss, accuracy = val_loss_and_accuracy(structurally_pruned(trained, "head.1", [neuron]), trained)
        assert result.full_loss + result.delta_loss[index] == pytest.approx(loss, abs=1e-5)
        assert result.full_acc + result.delta_acc[index] == pytest.approx(accuracy, abs=1e-6)
    assert np.abs(result.delta_loss).max() > 0  # the comparison is not between two unchanged models


@pytest.mark.parametrize("layer", ["blocks.15.expand.1",  # followed by a depthwise conv and its BatchNorm
                                   "blocks.14.project.1"])  # a residual stream: four coupled layers
def test_other_layers_effects_equal_structural_pruning(trained, layer):
    ablator = ablator_for(trained, layer)
    assert isinstance(ablator, ForwardAblator)
    full = ablator.full()
    assert (full.loss, full.accuracy) == pytest.approx(val_loss_and_accuracy(trained.model, trained), abs=1e-5)
    result = ablation_effects(ablator, [0, 5])
    for index, neuron in enumerate([0, 5]):
        loss, accuracy = val_loss_and_accuracy(structurally_pruned(trained, layer, [neuron]), trained)
        assert result.full_loss + result.delta_loss[index] == pytest.approx(loss, abs=1e-5)
        assert result.full_acc + result.delta_acc[index] == pytest.approx(accuracy, abs=1e-6)
    assert np.abs(result.delta_loss).max() > 0


def test_zero_shot_curve_keeps_what_pruning_keeps(trained):
    """A point of the curve equals pruning for real with that criterion and ratio, with the trained head."""
    graph, group = prunable_group(trained.model, trained.spec, "head.1")
    ablator = layer_ablator(trained, graph, group)
    scores = scores_by_criterion(graph, group, ["eigenvector", "l1"])
    curve = zero_shot_curve(ablator, scores, [0.1, 1.0])
    assert curve.kept.tolist() == [keep_count(1280, 0.1), 1280]
    for name in ("eigenvector", "l1"):
        pruned = prune_model(trained.model, trained.spec, make_criterion(name), 0.1, ["head.1"]).model
        loss, accuracy = val_loss_and_accuracy(pruned, trained)
        assert curve.accuracy[name][0, 0] == pytest.approx(accuracy, abs=1e-6)
        assert curve.loss[name][0, 0] == pytest.approx(loss, abs=1e-5)
        assert curve.accuracy[name][0, 1] == pytest.approx(curve.full_acc)


# ----------------------------------------------------------------------------- awkward cases


def test_a_neuron_nothing_reads_has_no_effect(trained):
    pooled, labels = trained.pooled["val"]
    alive = int(pooled.abs().sum(0).argmax())
    dead = pooled.clone()
    dead[:, alive + 1] = 0.0  # a neuron that never fires on a validation image
    graph, group = prunable_group(trained.model, trained.spec, "head.1")
    ablator = PooledAblator("head.1", group, dead, labels, Heads.of([trained.model.classifier]))
    result = ablation_effects(ablator, [alive, alive + 1])
    assert result.delta_loss[1] == 0.0 and result.delta_acc[1] == 0.0
    assert result.delta_loss[0] != 0.0


def test_every_criterion_is_scored_and_random_is_a_band_over_seeds(trained):
    graph, group = prunable_group(trained.model, trained.spec, "head.1")
    ablator = layer_ablator(trained, graph, group)
    result = ablation_effects(ablator)
    scores = scores_by_criterion(graph, group, seeds=3)
    correlations = criterion_correlations(result, scores, resamples=200)
    curve = zero_shot_curve(ablator, scores, [0.05, 0.5, 1.0])
    assert set(scores) == set(correlations) == set(curve.accuracy) == set(CRITERIA)
    assert all(rows.shape == (1, 1280) for name, rows in scores.items() if name != "random")
    assert scores["random"].shape == (3, 1280) and not np.allclose(scores["random"][0], scores["random"][1])
    assert len(correlations["random"].per_seed) == 3
    assert correlations["random"].spearman == pytest.approx(np.mean(correlations["random"].per_seed))
    assert correlations["eigenvector"].spearman == pytest.approx(-correlations["inverse-eigenvector"].spearman)
    mean, low, high = curve.band("random")
    assert curve.accuracy["random"].shape == curve.loss["random"].shape == (3, 3)
    assert (low <= mean).all() and (mean <= high).all()
    assert np.ptp(curve.loss["random"][:, 0]) > 0  # seeds keep different neurons
    assert mean[-1] == low[-1] == high[-1] == curve.full_acc  # keeping everything removes nothing


def test_another_layer_is_measured_on_a_sample_with_progress_and_says_so(trained):
    ablator = ablator_for(trained, "blocks.15.expand.1")
    neurons = sample_neurons(ablator.n_neurons, 4, seed=0)
    assert neurons.tolist() == sample_neurons(ablator.n_neurons, 4, seed=0).tolist() and len(set(neurons)) == 4
    calls = []
    result = ablation_effects(ablator, neurons, progress=lambda done, total, message: calls.append((done, total, message)))
    assert result.sampled and len(result.neurons) == 4 and result.n_neurons == 1152
    assert [(done, total) for done, total, _ in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert "a sample of 4 of the 1,152" in calls[0][2]
    curve = ZeroShotCurve(np.array([0.1]), np.array([115]), {}, {}, result.full_acc)
    assert "Of a sample of 4 of the 1,152 neurons of blocks.15.expand.1" in summary_sentence(result, {}, curve)


def test_stop_ends_the_analysis(trained):
    stop = threading.Event()
    stop.set()
    with pytest.raises(StopRequested):
        ablation_effects(ablator_for(trained, "blocks.15.expand.1"), [0, 1], stop=stop)


def test_bad_input_is_refused_before_any_training(config):
    cache = FeatureCache()  # stays empty: no feature was computed
    cases = {"nope": "no layer named", "head.2": "cannot be pruned", "blocks.15.depthwise.1": "depthwise"}
    for layer, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            analyse_importance(config, layer, feature_cache=cache)
    for settings, message in [({"seeds": 0}, "seeds"), ({"sample_size": 0}, "sample size"),
                              ({"criteria": ["centrality"]}, "Unknown criterion"), ({"criteria": []}, "at least one"),
                              ({"tau": 1.0}, "tau"), ({"keep_ratios": [0.0]}, "keep ratio")]:
        with pytest.raises(ConfigError, match=message):
            analyse_importance(config, feature_cache=cache, **settings)
    assert len(cache) == 0
    with pytest.raises(ConfigError, match="validation split"):
        train_baseline(replace(config, val_fraction=0.0), feature_cache=FeatureCache())


# ----------------------------------------------------------------------------- statistics on known numbers


def known_result(delta_loss) -> AblationResult:
    delta_loss = np.asarray(delta_loss, dtype=float)
    n = len(delta_loss)
    return AblationResult("layer", "pooled", n, np.arange(n), delta_loss, -delta_loss / 10, 1.0, 0.8, 100)


def test_spearman_and_its_bootstrap_interval_on_known_numbers():
    rng = np.random.default_rng(1)
    importance = rng.normal(size=200)
    result = known_result(importance)
    noisy = importance + rng.normal(scale=1.0, size=200)
    scores = {"same": importance[None], "reversed": -importance[None], "noisy": noisy[None],
              "constant": np.ones((1, 200))}
    correlations = criterion_correlations(result, scores, resamples=500)
    assert (correlations["same"].spearman, correlations["same"].ci_low, correlations["same"].ci_high) == \
        pytest.approx((1.0, 1.0, 1.0))
    assert correlations["reversed"].spearman == pytest.approx(-1.0)
    noisy_rho = correlations["noisy"]
    assert noisy_rho.spearman == pytest.approx(stats.spearmanr(noisy, importance).statistic)
    assert noisy_rho.ci_low < noisy_rho.spearman < noisy_rho.ci_high and noisy_rho.ci_high - noisy_rho.ci_low < 0.3
    assert math.isnan(correlations["constant"].spearman) and math.isnan(correlations["constant"].ci_low)
    again = criterion_correlations(result, scores, resamples=500)
    assert again["noisy"].ci_low == noisy_rho.ci_low  # seeded
    too_few = criterion_correlations(known_result([0.1, 0.2]), {"same": np.array([[1.0, 2.0]])})
    assert math.isnan(too_few["same"].spearman)


def test_vectorised_bootstrap_rho_equals_scipy_row_by_row():
    from cprune_core.stats.reliability import _row_spearman

    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 5, size=(20, 30)).astype(float), rng.normal(size=(20, 30))  # ties, as resamples have
    expected = [stats.spearmanr(a, b).statistic for a, b in zip(x, y)]
    assert _row_spearman(x, y) == pytest.approx(expected)


# ----------------------------------------------------------------------------- several heads, per image, ties


def test_effects_are_per_image_and_averaged_over_heads_trained_from_other_seeds(trained):
    heads = train_heads(trained, 3)
    assert heads[0] is trained.model.classifier and len(heads) == 3
    assert not torch.equal(heads[1].weight, heads[2].weight)  # other seeds, other heads
    graph, group = prunable_group(trained.model, trained.spec, "head.1")
    neurons = sorted(trained.pooled["val"][0].abs().sum(0).argsort(descending=True)[:4].tolist())
    each = [ablation_effects(layer_ablator(trained, graph, group, heads=Heads.of([head])), neurons) for head in heads]
    together = ablation_effects(layer_ablator(trained, graph, group, heads=Heads.of(heads)), neurons)
    assert together.heads == 3 and together.per_image.shape == (4, together.n_images)
    assert together.delta_loss == pytest.approx(np.mean([r.delta_loss for r in each], axis=0), abs=1e-9)
    assert together.per_image.mean(1) == pytest.approx(together.delta_loss)


def test_the_fast_copy_computes_what_the_network_computes(trained):
    """BatchNorm folded into its convolution, channels-last: the same function (and the consumer found in it)."""
    rest = rest_features(trained.model, trained.spec, "blocks.14")
    original = rest[0].depthwise[1]
    fast, (copied,) = inference_copy(rest, [original])
    assert copied is fast[0].depthwise[1] and copied is not original
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    x = torch.randn(6, *trained.model.blocks[13](trained.model.blocks[:13](
        trained.model.stem(torch.randn(1, 3, SIZE, SIZE)))).shape[1:])
    with torch.no_grad():
        assert fast(x) == pytest.approx(rest.eval()(x), abs=1e-4)


def test_a_tie_at_the_cut_is_broken_several_ways_and_averaged(trained):
    graph, group = prunable_group(trained.model, trained.spec, "head.1")
    ablator = layer_ablator(trained, graph, group)
    scores = np.zeros((1, 1280))
    scores[0, :100] = 1.0  # 100 neurons ahead, then 1,180 tied
    curve = zero_shot_curve(ablator, {"tied": scores}, [0.5], tie_draws=4)
    assert curve.tied["tied"][0, 0] == pytest.approx((640 - 100) / 640)
    draws = []
    for tie_seed in range(4):
        keep = torch.zeros(1280, dtype=torch.bool)
        from cprune_core.pruning import kept_indices
        keep[kept_indices(torch.from_numpy(scores[0]), 640, tie_seed)] = True
        draws.append(ablator.evaluate(keep).accuracy)
    assert curve.accuracy["tied"][0, 0] == pytest.approx(np.mean(draws))
    untied = zero_shot_curve(ablator, {"l1": np.arange(1280.0)[None]}, [0.5])
    assert untied.tied["l1"][0, 0] == 0.0


def synthetic(eigen_rho, eigen_ci, best_rho, eigen_acc, random_acc):
    """Correlations and a zero-shot curve made up for the sentence: random_acc is seeds x ratios."""
    correlations = {"eigenvector": Correlation("eigenvector", eigen_rho, *eigen_ci, [eigen_rho]),
                    "l1": Correlation("l1", best_rho, best_rho - 0.1, best_rho + 0.1, [best_rho]),
                    "random": Correlation("random", 0.9, 0.8, 1.0, [0.9, 0.9])}  # never named the best
    ratios = np.array([0.05, 0.1, 0.2, 0.5])
    accuracy = {"eigenvector": np.array([eigen_acc]), "l1": np.array([[0.5] * 4]), "random": np.array(random_acc)}
    return correlations, ZeroShotCurve(ratios, np.array([5, 10, 20, 50]), accuracy, accuracy, 0.8)


def test_the_sentence_follows_the_numbers():
    result = known_result([0.02, -0.01, 0.0, 0.05])
    random_band = [[0.3, 0.4, 0.5, 0.7], [0.4, 0.5, 0.6, 0.7]]
    good = summary_sentence(result, *synthetic(0.6, (0.4, 0.8), 0.2, [0.6, 0.7, 0.8, 0.1], random_band))
    assert good.startswith("Of all 4 neurons of layer, 2 raise the validation loss when removed alone "
                           "(largest rise 0.0500")
    assert "correlate best with that effect is eigenvector (rho +0.60, 95% CI [+0.40, +0.80])" in good
    assert "its interval excludes 0: more central neurons matter more" in good
    assert ("above random pruning's range over 2 seeds at keep 0.05 to 0.2, below it at keep 0.5 (largest gap: "
            "10.0% vs 70.0-70.0% at keep 0.5)") in good
    null = summary_sentence(result, *synthetic(0.02, (-0.05, 0.09), 0.3, [0.35, 0.45, 0.55, 0.7], random_band),
                            Reliability(0.2, 0.05, 0.33, 0.58, 50, 100), 0.4)
    assert "correlate best with that effect is l1 (rho +0.30" in null
    assert "split-half reliability is 0.33 (Spearman-Brown), so no criterion could show |rho| above 0.58" in null
    assert ("eigenvector centrality has rho +0.02, 95% CI [-0.05, +0.09], which includes 0: the data could not tell "
            "whether centrality tells which neurons matter (a |rho| below 0.40 would likely go unseen)") in null
    assert "within random pruning's range over 2 seeds at keep 0.05 to 0.5" in null
    bad = summary_sentence(result, *synthetic(-0.4, (-0.5, -0.3), 0.3, [0.1, 0.45, 0.1, 0.1], random_band))
    assert "which excludes 0: more central neurons matter less" in bad
    assert ("below random pruning's range over 2 seeds at keep 0.05, within it at keep 0.1, below it at keep 0.2 to "
            "0.5") in bad
    assert len({good, null, bad}) == 3 and all(s.count(".") >= 1 and s.endswith(".") for s in (good, null, bad))


# ----------------------------------------------------------------------------- command line


def test_quick_command_line_json_has_every_criterion_and_writes_the_report(config, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path / "home"))
    data = ["--dataset", "folder", "--root", config.dataset_root, "--image-size", str(SIZE)]  # tiny, for speed
    assert main(["experiment", "importance", "--quick", "--json", "--out", str(tmp_path), *data]) == 0
    report = json.loads(capsys.readouterr().out)  # nothing but the JSON on stdout
    assert set(report["criteria"]) == set(CRITERIA)
    assert all(-1 <= c["ci_low"] <= c["spearman"] <= c["ci_high"] <= 1 for name, c in report["criteria"].items()
               if name != "random")
    assert len(report["criteria"]["random"]["per_seed"]) == report["seeds"] == 2 and report["resamples"] == 200
    assert (report["backbone"], report["dataset"], report["layer"], report["method"]) == \
        ("efficientnet_lite0", "colours (folder)", "head.1", "pooled")
    assert report["neurons_measured"] == report["neurons"] == 1280 and not report["sampled"]
    assert report["sentence"].startswith("Of all 1,280 neurons of head.1")
    assert set(report["zero_shot"]["criteria"]) == set(CRITERIA) and "min" in report["zero_shot"]["criteria"]["random"]
    markdown = (tmp_path / "importance.md").read_text().splitlines()
    assert markdown[0] == "# Does centrality predict importance?"
    assert markdown[2].startswith("Generated by `python -m cprune_core experiment importance --quick --dataset folder")
    assert f"**Finding:** {report['sentence']}" in markdown
    table = np.genfromtxt(tmp_path / "importance.csv", delimiter=",", names=True)
    assert len(table) == 1280 and {"delta_val_loss", "delta_val_acc", "score_eigenvector"} <= set(table.dtype.names)
    assert (tmp_path / "importance.png").stat().st_size > 20_000


def test_quick_reads_the_embedded_sample_and_the_default_the_shared_flowers():
    assert (importance_config(quick=True).dataset, importance_config(quick=True).dataset_root) == ("flowers-sample", None)
    default = importance_config()
    assert (default.dataset, default.dataset_root, default.image_size) == ("tf-flowers", str(SHARED_FLOWERS), 128)
    assert dataset_label(default) == "flowers128 (tf-flowers)"


@pytest.mark.parametrize("arguments, message", [
    (["--layer", "nope"], "The model has no layer named 'nope'"),
    (["--layer", "classifier"], "cannot be pruned on its own"),
    (["--seeds", "0"], "seeds must be in [1, 1000]"),
])
def test_command_line_bad_input_is_one_line(arguments, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path / "home"))
    assert main(["experiment", "importance", "--quick", "--out", str(tmp_path), *arguments]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "importance.md").exists()
