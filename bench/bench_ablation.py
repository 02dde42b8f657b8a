"""Speed of the ablation analysis of efficientnet_lite0 head.1 on flowers128, once features are cached.

The first ``analyse_importance`` call computes the prefix features (untimed, shown for reference);
the second, on the same feature cache, is timed as a whole and step by step: training the head on
the cached features, then the analysis proper (every neuron's exact ablation effect, every
criterion's scores with 5 random seeds, Spearman rho with 1,000 bootstrap resamples, the zero-shot
curve at 11 keep ratios, the sentence). Target: the analysis under 10 s.

    .venv/bin/python bench/bench_ablation.py [--image-size 128]
"""
from __future__ import annotations

import argparse
import time

import torch

from cprune_core import ablation
from cprune_core.experiment.importance_report import importance_config
from cprune_core.features import FeatureCache
from cprune_core.paths import SHARED_FLOWERS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=128)
    args = parser.parse_args()
    if not SHARED_FLOWERS.is_dir():
        print(f"flowers128 not found at {SHARED_FLOWERS}: skipped")
        return
    config = importance_config(image_size=args.image_size, device="cpu")
    cache = FeatureCache()
    print(f"efficientnet_lite0 head.1 on flowers128 ({args.image_size} px), torch threads: {torch.get_num_threads()}")
    started = time.perf_counter()
    first = ablation.analyse_importance(config, feature_cache=cache)
    print(f"first call (prefix features computed): {time.perf_counter() - started:.1f} s, "
          f"{first.result.n_images} validation images")

    timings = {}
    started = time.perf_counter()
    whole = ablation.analyse_importance(config, feature_cache=cache)
    timings["analyse_importance, features cached (checks, head training, analysis)"] = time.perf_counter() - started
    assert whole.sentence == first.sentence  # the same seeds give the same numbers

    started = time.perf_counter()
    trained = ablation.train_baseline(config, feature_cache=cache)
    timings["train the head on cached features (8 epochs)"] = time.perf_counter() - started
    steps = {}
    analysis_started = time.perf_counter()

    def step(name, function, *args, **kwargs):
        begun = time.perf_counter()
        value = function(*args, **kwargs)
        steps[name] = time.perf_counter() - begun
        return value

    graph, group = step("pruning graph", ablation.prunable_group, trained.model, trained.spec, trained.spec.head_layer)
    ablator = step("ablator", ablation.layer_ablator, trained, graph, group, feature_cache=cache)
    result = step("every neuron's ablation effect", ablation.ablation_effects, ablator)
    scores = step("scores of every criterion (5 random seeds)", ablation.scores_by_criterion, graph, group, seeds=5)
    correlations = step("Spearman rho + 1,000 bootstrap resamples", ablation.criterion_correlations, result, scores)
    curve = step("zero-shot curve (11 keep ratios)", ablation.zero_shot_curve, ablator, scores)
    step("sentence", ablation.summary_sentence, result, correlations, curve)
    analysis = time.perf_counter() - analysis_started
    for name, seconds in steps.items():
        print(f"   {name}: {seconds:.2f} s")
    for name, seconds in timings.items():
        print(f"{name}: {seconds:.1f} s")
    print(f"ablation analysis of head.1 ({result.n_neurons} neurons, {result.n_images} validation images), "
          f"features cached and head trained: {analysis:.2f} s -> {'OK' if analysis < 10 else 'SLOW'} (target < 10 s)")


if __name__ == "__main__":
    main()
