"""``measure_layer``: everything the atlas measures in one layer, as one task on cached inputs.

In one layer, with the trained heads and no retraining: each sampled neuron's ablation effect on every image,
the effects' split-half reliability, each criterion's Spearman rho with them (an interval that resamples images
and neurons, a permutation p-value with its Monte Carlo error); group ablation at each keep ratio for every
criterion (ties at the cut broken several ways and averaged) ranked among random kept sets drawn until each
rank is settled; and the redundancy and coverage of every kept set.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import replace

import numpy as np
import torch

from ..ablation import (TIE_DRAWS, AblationResult, Correlation, ForwardAblator, LayerAblator, Outcome, PooledAblator,
                        ZeroShotCurve, ablation_effects, consumers, criterion_correlations, kept_outcome,
                        rest_features, sample_neurons, zero_shot_curve)
from ..device import resolve_device
from ..progress import ProgressCallback, check_stop, report
from ..pruning import kept_indices
from ..registry import get_spec
from ..stats import PValue, Reliability, rank_correlation_p, sequential_rank_p, split_half_reliability
from ..stats.pvalues import needs_more_draws
from ..geometry import group_geometry, group_similarities
from .layer import LayerAtlas, LayerTask
from .settings import REFINED_PERMUTATIONS, SEQUENTIAL_HITS, AtlasSettings
from .significance import ALPHA

__all__ = ["measure_layer", "single_neuron_statistics"]


def _ablator(model: torch.nn.Module, task: LayerTask) -> LayerAblator:
    """The layer's ablator on the task's inputs (see ``ablation.layer_ablator``, which computes its own)."""
    inputs, labels = task.features
    if task.cut is None:
        return PooledAblator(task.layer, task.group, inputs, labels, task.heads)
    device = resolve_device(task.device)
    model.to(device)
    readers = [(model.get_submodule(effect.module), effect.per_channel) for effect in consumers(model, task.group)]
    return ForwardAblator(task.layer, task.group, rest_features(model, get_spec(task.backbone), task.cut), inputs,
                          labels, readers, task.heads, device)


def single_neuron_statistics(result: AblationResult, scores: dict[str, np.ndarray], settings: AtlasSettings, *,
                             family_size: int, seed: int) -> tuple[Reliability, dict[str, Correlation], dict[str, PValue]]:
    """What the single-neuron effects of ``result`` (per image) say about each criterion's ``scores``.

    Returns the effects' split-half reliability (``settings.splits`` splits), each criterion's rho with its
    interval over images and neurons (``settings.resamples``), and each deterministic criterion's permutation
    p-value (``settings.permutations``; REFINED_PERMUTATIONS where its Monte Carlo interval overlaps the Holm
    thresholds of a family of ``family_size`` layers, alpha / m to alpha; undefined for random's several rows)."""
    reliability = split_half_reliability(result.image_values(), splits=settings.splits, seed=seed)
    correlations = criterion_correlations(result, scores, resamples=settings.resamples, seed=seed)
    single = {name: rows[0, result.neurons] for name, rows in scores.items() if len(rows) == 1}
    p_values = {name: PValue.undefined("permutations") for name in scores}
    if single:
        found = rank_correlation_p(np.stack(list(single.values())), result.delta_loss,
                                   permutations=settings.permutations, seed=seed,
                                   refine=(ALPHA / max(family_size, 1), ALPHA),
                                   max_permutations=max(REFINED_PERMUTATIONS, settings.permutations))
        p_values.update(zip(single, found))
    return reliability, correlations, p_values


def _random_draws(ablator: LayerAblator, task: LayerTask, counts: np.ndarray, criteria: ZeroShotCurve,
                  measured: dict[bytes, Outcome], progress, stop) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random kept sets, one seed at a time, each at every keep ratio, until SEQUENTIAL_HITS of them lie on each
    side of every criterion's accuracy at every ratio (or every seed is drawn): accuracy, loss and tied fraction,
    drawn seeds x ratios."""
    rows = task.scores["random"]
    targets = [(values[0, column], column) for values in criteria.accuracy.values() for column in range(len(counts))
               if not math.isnan(values[0, column])]
    drawn: list[list[tuple[float, float, float]]] = []
    for seed, row in enumerate(rows):
        check_stop(stop)
        drawn.append([kept_outcome(ablator, row, int(count), measured) for count in counts])
        report(progress, seed + 1, len(rows), f"Random kept sets of {task.layer} (until every rank is settled)")
        accuracy = np.array([[a for a, _, _ in draw] for draw in drawn])
        if not any(needs_more_draws(value, accuracy[:, column], SEQUENTIAL_HITS) for value, column in targets):
            break
    values = np.array(drawn)  # seeds x ratios x (accuracy, loss, tied)
    return values[..., 0], values[..., 1], values[..., 2]


def _group(ablator: LayerAblator, task: LayerTask, progress, stop) -> tuple[ZeroShotCurve, dict[str, list[PValue]]]:
    """Group ablation: every criterion's kept sets, ranked among random kept sets (``sequential_rank_p``)."""
    settings = task.settings
    named = {name: rows for name, rows in task.scores.items() if name != "random"}
    curve = zero_shot_curve(ablator, named, settings.keep_ratios, stop=stop, tie_draws=TIE_DRAWS)
    measured: dict[bytes, Outcome] = {}
    accuracy, loss, tied = _random_draws(ablator, task, curve.kept, curve, measured, progress, stop)
    curve = replace(curve, accuracy={**curve.accuracy, "random": accuracy}, loss={**curve.loss, "random": loss},
                    tied={**curve.tied, "random": tied})
    group_p = {name: [sequential_rank_p(float(values[0, column]), accuracy[:, column], h=SEQUENTIAL_HITS,
                                        max_draws=len(task.scores["random"]))
                      for column in range(len(curve.keep_ratios))] for name, values in curve.accuracy.items()
               if name != "random"}
    group_p["random"] = [PValue.undefined("random kept sets")] * len(curve.keep_ratios)
    return curve, group_p


def _geometry(model: torch.nn.Module, task: LayerTask, curve: ZeroShotCurve) -> tuple[dict, dict]:
    """Redundancy and coverage of every kept set of the curve (criterion run x keep ratio; ties broken by the first
    tie seed; random: the drawn seeds, at most ``settings.seeds`` of them)."""
    similarities = group_similarities(model, task.group)
    redundancy, coverage = {}, {}
    for name, rows in task.scores.items():
        rows = rows[:min(len(curve.accuracy[name]), task.settings.seeds)]
        shape = (len(rows), len(curve.kept))
        redundancy[name], coverage[name] = np.empty(shape), np.empty(shape)
        for run, row in enumerate(rows):
            for column, count in enumerate(curve.kept):
                keep = torch.zeros(len(row), dtype=torch.bool)
                keep[kept_indices(torch.from_numpy(row), int(count))] = True
                geometry = group_geometry(similarities, keep)
                redundancy[name][run, column], coverage[name][run, column] = geometry.redundancy, geometry.coverage
    return redundancy, coverage


def measure_layer(model: torch.nn.Module, task: LayerTask, *, progress: ProgressCallback | None = None,
                  stop: threading.Event | None = None) -> LayerAtlas:
    """Measure one layer of ``model`` (eval mode; the heads are the task's; see the module docstring).
    ``progress`` and ``stop`` as in the ablation package. The model is left as it was (hooks removed)."""
    started = time.perf_counter()
    settings = task.settings
    # Ray hands numpy arrays over read-only; torch.from_numpy (in the kept sets) warns about those.
    task = replace(task, scores={name: np.array(rows) for name, rows in task.scores.items()})
    ablator = _ablator(model, task)
    neurons = None if ablator.exhaustive else sample_neurons(ablator.n_neurons, settings.sample_for(ablator.n_neurons),
                                                             task.seed)
    result = ablation_effects(ablator, neurons, progress=progress, stop=stop)
    reliability, correlations, rho_p = single_neuron_statistics(result, task.scores, settings,
                                                                family_size=task.family_size, seed=task.seed)
    curve, group_p = _group(ablator, task, progress, stop)
    redundancy, coverage = _geometry(model, task, curve)
    coupled = [name for name in task.group.layers if name != task.layer]
    return LayerAtlas(task.layer, task.position, task.depth, task.kind, coupled, result, reliability, correlations,
                      rho_p, curve, group_p, redundancy, coverage, time.perf_counter() - started, task.key)

