"""Per-neuron ablation effects, the criteria's scores, their rank correlation with the effects, and the
zero-shot pruning curve."""
from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..criteria import CRITERIA, RandomScores, make_criterion
from ..errors import ConfigError
from ..progress import ProgressCallback, check_stop, report
from ..pruning import PrunableGroup, PruningGraph, keep_count, kept_indices, tied_fraction
from ..ranges import KEEP, SEEDS, choose
from ..stats import spearman, two_way_interval
from .ablators import LayerAblator, Outcome
from .config import RESAMPLES, SAMPLE_SIZES, AnalysisConfig

__all__ = ["sample_neurons", "AblationResult", "ablation_effects", "scores_by_criterion", "Correlation",
           "criterion_correlations", "ZeroShotCurve", "zero_shot_curve", "kept_outcome", "TIE_DRAWS"]

TIE_DRAWS = 8  # kept sets drawn, and their outcomes averaged, where a tie straddles the cut


def sample_neurons(n_neurons: int, size: int, seed: int = 0) -> np.ndarray:
    """``size`` distinct neuron indices drawn with ``seed``, sorted; all of them when ``size`` >= n.
    ConfigError for a size outside ``SAMPLE_SIZES``. Example: ``sample_neurons(10, 3, seed=0)`` is always
    the same three indices."""
    SAMPLE_SIZES.check(size, "sample size")
    if size >= n_neurons:
        return np.arange(n_neurons)
    return np.sort(np.random.default_rng(seed).choice(n_neurons, size, replace=False))


@dataclass
class AblationResult:
    """Each measured neuron's ablation effect on the validation split (no retraining), averaged over the heads."""

    layer: str
    method: str  # "pooled": one operation on the cached pooled features; "forward": a forward pass each
    n_neurons: int  # neurons of the layer
    neurons: np.ndarray  # indices of the measured neurons (sorted): all of them, or a sample
    delta_loss: np.ndarray  # validation loss with the neuron removed minus the full model's: the importance
    delta_acc: np.ndarray  # validation accuracy with the neuron removed minus the full model's
    full_loss: float
    full_acc: float
    n_images: int  # validation images
    heads: int = 1  # trained heads the effects are averaged over
    # measured neurons x images: each image's change in loss (head-averaged); delta_loss is its row mean. Kept in
    # memory for the statistics that resample images; None where only the means are known (a record read back).
    per_image: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def sampled(self) -> bool:
        return len(self.neurons) < self.n_neurons

    def image_values(self) -> np.ndarray:
        """``per_image``, or the means as one column where the per-image values are not known."""
        return self.per_image if self.per_image is not None else self.delta_loss[:, None]


def ablation_effects(ablator: LayerAblator, neurons: Sequence[int] | None = None, *,
                     progress: ProgressCallback | None = None,
                     stop: threading.Event | None = None) -> AblationResult:
    """Remove each of ``neurons`` (None: every neuron) alone and measure the change. A neuron that
    nothing downstream reads (zero pooled feature, or zero consumer weights) has effect exactly 0.
    Duplicate indices are measured once. ConfigError for an index outside 0..n-1; StopRequested when
    ``stop`` is set."""
    neurons = np.arange(ablator.n_neurons) if neurons is None else np.asarray(sorted(set(int(i) for i in neurons)))
    if len(neurons) and not (neurons[0] >= 0 and neurons[-1] < ablator.n_neurons):
        raise ConfigError(f"Neuron indices of {ablator.layer} must lie in 0..{ablator.n_neurons - 1}.")
    full = ablator.full()
    losses, correct = ablator.remove_each(neurons.tolist(), progress=progress, stop=stop)
    per_image = (losses - full.losses[None]).mean(1)  # neurons x images, averaged over heads
    delta_acc = (correct.mean((1, 2)) - full.accuracy) if len(neurons) else np.empty(0)
    return AblationResult(ablator.layer, ablator.method, ablator.n_neurons, neurons, per_image.mean(1), delta_acc,
                          full.loss, full.accuracy, ablator.n_images, ablator.heads.count, per_image)


def scores_by_criterion(graph: PruningGraph, group: PrunableGroup, criteria: Iterable[str] = AnalysisConfig.criteria, *,
                        tau: float = AnalysisConfig.tau, seeds: int = AnalysisConfig.seeds) -> dict[str, np.ndarray]:
    """Criterion -> scores (runs x neurons; higher: keep), exactly what pruning ranks the group by: one
    row for a deterministic criterion, one per seed 0..seeds-1 for ``random``. ConfigError for an
    unknown criterion, a tau outside [0, 1) or seeds outside [1, 1000]."""
    SEEDS.check(seeds, "seeds")
    scores = {}
    for name in criteria:
        choose(name, CRITERIA, "criterion")
        runs = range(seeds) if CRITERIA[name] is RandomScores else [0]
        scores[name] = np.stack([graph.group_scores(group, make_criterion(name, tau, seed)).double().numpy()
                                 for seed in runs])
    return scores


@dataclass
class Correlation:
    """Spearman's rho between a criterion's scores and the neurons' importance (delta loss).

    For ``random``, ``spearman`` is the mean over seeds and the interval pools the seeds. The interval is a
    percentile bootstrap that resamples the measured neurons and the validation images together
    (``stats.two_way_interval``), so it carries the images' noise; ``z_variance`` is the variance of
    atanh(rho) over those resamples (a layer's weight in a pooled test). NaN where undefined: constant scores or
    effects, or fewer than 3 measured neurons.
    """

    criterion: str
    spearman: float
    ci_low: float  # 95% two-way bootstrap percentile interval
    ci_high: float
    per_seed: list[float]  # rho per scores row (one per seed for random)
    z_variance: float = math.nan


def criterion_correlations(result: AblationResult, scores: dict[str, np.ndarray], *,
                           resamples: int = AnalysisConfig.resamples, seed: int = 0) -> dict[str, Correlation]:
    """Each criterion's Spearman rho with the importance of the measured neurons, with a 95% interval that
    resamples the neurons and the images (``resamples`` times, seeded, the same resamples for every criterion;
    images only where ``result.per_image`` is known). Undefined (NaN) for fewer than 3 neurons, or constant
    scores or effects; a resample whose rho is undefined is left out of the interval. ConfigError for resamples
    outside ``RESAMPLES``."""
    RESAMPLES.check(resamples, "bootstrap resamples")
    importance = result.delta_loss
    per_image = result.image_values()
    correlations = {}
    for name, rows in scores.items():
        measured = rows[:, result.neurons]
        per_seed = [spearman(row, importance) for row in measured]
        rho = float(np.mean(per_seed)) if len(importance) >= 3 and not np.isnan(per_seed).any() else math.nan
        if math.isnan(rho):
            correlations[name] = Correlation(name, math.nan, math.nan, math.nan, per_seed)
            continue
        low, high, boot = two_way_interval(measured, per_image, resamples=resamples, seed=seed)
        z = np.arctanh(np.clip(boot[~np.isnan(boot)], -0.999999, 0.999999))
        correlations[name] = Correlation(name, rho, low, high, per_seed, float(z.var(ddof=1)) if len(z) > 1 else math.nan)
    return correlations


@dataclass
class ZeroShotCurve:
    """Validation accuracy and loss at each keep ratio before any fine-tuning: the trained head on the
    neurons each criterion keeps, exactly as pruning keeps them."""

    keep_ratios: np.ndarray  # r
    kept: np.ndarray  # r: neurons kept at each ratio (keep_count)
    accuracy: dict[str, np.ndarray]  # criterion -> runs x r (one row per seed for random)
    loss: dict[str, np.ndarray]
    full_acc: float
    tied: dict[str, np.ndarray] = field(default_factory=dict)  # criterion -> runs x r: the kept set's tied fraction

    def band(self, criterion: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean, min and max accuracy over the criterion's runs (seeds) at each keep ratio."""
        rows = self.accuracy[criterion]
        return rows.mean(0), rows.min(0), rows.max(0)


def kept_outcome(ablator: LayerAblator, row: np.ndarray, count: int, measured: dict[bytes, Outcome],
                 tie_draws: int = TIE_DRAWS) -> tuple[float, float, float]:
    """(accuracy, loss, tied fraction) of keeping the ``count`` best-scored neurons of ``row``: where a tie
    straddles the cut (``pruning.tied_fraction`` > 0), the mean over ``tie_draws`` kept sets whose ties are broken
    by tie seeds 0..tie_draws-1, never one arbitrary order. ``measured`` caches outcomes by kept set."""
    tied = tied_fraction(row, count)
    accuracies, losses = [], []
    for tie_seed in range(tie_draws if tied > 0 else 1):
        keep = torch.zeros(ablator.n_neurons, dtype=torch.bool)
        keep[kept_indices(torch.from_numpy(row), count, tie_seed)] = True
        key = keep.numpy().tobytes()
        if key not in measured:
            measured[key] = ablator.evaluate(keep)
        accuracies.append(measured[key].accuracy)
        losses.append(measured[key].loss)
    return float(np.mean(accuracies)), float(np.mean(losses)), tied


def zero_shot_curve(ablator: LayerAblator, scores: dict[str, np.ndarray],
                    keep_ratios: Sequence[float] = AnalysisConfig.keep_ratios, *, progress: ProgressCallback | None = None,
                    stop: threading.Event | None = None, tie_draws: int = TIE_DRAWS) -> ZeroShotCurve:
    """Accuracy with only the kept neurons, ``kept_indices(scores, keep_count(n, ratio))``, per criterion run
    and ratio (``kept_outcome``: averaged over ``tie_draws`` tie-breaks where a tie straddles the cut); a kept set
    two runs share is evaluated once. ConfigError for a ratio outside (0, 1]; StopRequested when ``stop`` is set.
    At ratio 1 every criterion scores the full model's accuracy."""
    ratios = np.array([KEEP.check(ratio, "keep ratio") for ratio in keep_ratios], dtype=float)
    counts = np.array([keep_count(ablator.n_neurons, ratio) for ratio in ratios])
    measured: dict[bytes, Outcome] = {}
    total = sum(len(rows) for rows in scores.values()) * len(ratios)
    accuracy, loss, tied = {}, {}, {}
    done = 0
    for name, rows in scores.items():
        shape = (len(rows), len(ratios))
        accuracy[name], loss[name], tied[name] = np.empty(shape), np.empty(shape), np.empty(shape)
        for run, row in enumerate(rows):
            for column, count in enumerate(counts):
                check_stop(stop)
                accuracy[name][run, column], loss[name][run, column], tied[name][run, column] = kept_outcome(
                    ablator, row, int(count), measured, tie_draws)
                done += 1
                report(progress, done, total, "Zero-shot pruning curve")
    return ZeroShotCurve(ratios, counts, accuracy, loss, ablator.full().accuracy, tied)
