"""Per-neuron ablation effects, the criteria's scores, their rank correlation with the effects, and the
zero-shot pruning curve."""
from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from ..criteria import CRITERIA, RandomScores, make_criterion
from ..errors import ConfigError
from ..progress import ProgressCallback, check_stop, report
from ..pruning import PrunableGroup, PruningGraph, keep_count, kept_indices
from ..ranges import KEEP, SEEDS, choose
from .ablators import LayerAblator
from .config import RESAMPLES, SAMPLE_SIZES, AnalysisConfig

__all__ = ["sample_neurons", "AblationResult", "ablation_effects", "scores_by_criterion", "Correlation",
           "criterion_correlations", "ZeroShotCurve", "zero_shot_curve"]


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
    """Each measured neuron's ablation effect on the validation split (no retraining)."""

    layer: str
    method: str  # "pooled": one operation on the cached pooled features; "forward": a forward pass each
    n_neurons: int  # neurons of the layer
    neurons: np.ndarray  # indices of the measured neurons (sorted): all of them, or a sample
    delta_loss: np.ndarray  # validation loss with the neuron removed minus the full model's: the importance
    delta_acc: np.ndarray  # validation accuracy with the neuron removed minus the full model's
    full_loss: float
    full_acc: float
    n_images: int  # validation images

    @property
    def sampled(self) -> bool:
        return len(self.neurons) < self.n_neurons


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
    full_loss, full_acc = ablator.full()
    losses, accuracies = ablator.remove_each(neurons.tolist(), progress=progress, stop=stop)
    return AblationResult(ablator.layer, ablator.method, ablator.n_neurons, neurons, losses - full_loss,
                          accuracies - full_acc, full_loss, full_acc, ablator.n_images)


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

    For ``random``, ``spearman`` is the mean over seeds and the interval pools the seeds' bootstrap
    resamples. NaN where undefined: constant scores or effects, or fewer than 3 measured neurons.
    """

    criterion: str
    spearman: float
    ci_low: float  # 95% bootstrap percentile interval over resampled neurons
    ci_high: float
    per_seed: list[float]  # rho per scores row (one per seed for random)


def _centred_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks within each row (ties: average rank, as spearmanr), minus the row's mean rank."""
    ranks = stats.rankdata(values, axis=1)
    return ranks - ranks.mean(1, keepdims=True)


def _rank_correlation(x_ranks: np.ndarray, y_ranks: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair of centred ranks: Spearman's rho, NaN where a row is constant."""
    denominator = np.sqrt((x_ranks * x_ranks).sum(1) * (y_ranks * y_ranks).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (x_ranks * y_ranks).sum(1) / denominator, np.nan)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.spearmanr(x, y).statistic)


def criterion_correlations(result: AblationResult, scores: dict[str, np.ndarray], *,
                           resamples: int = AnalysisConfig.resamples, seed: int = 0) -> dict[str, Correlation]:
    """Each criterion's Spearman rho with the importance of the measured neurons, with a 95% bootstrap
    interval: the neurons are resampled with replacement ``resamples`` times (seeded, the same
    resamples for every criterion). Undefined (NaN) for fewer than 3 neurons, or constant scores or
    effects; a resample whose rho is undefined is left out of the interval. ConfigError for resamples
    outside ``RESAMPLES``."""
    RESAMPLES.check(resamples, "bootstrap resamples")
    importance = result.delta_loss
    n = len(importance)
    if n < 3:
        return {name: Correlation(name, math.nan, math.nan, math.nan, [math.nan] * len(rows))
                for name, rows in scores.items()}
    resampled = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    importance_ranks = _centred_ranks(importance[resampled])
    correlations = {}
    for name, rows in scores.items():
        measured = rows[:, result.neurons]
        per_seed = [_spearman(row, importance) for row in measured]
        boot = np.concatenate([_rank_correlation(_centred_ranks(row[resampled]), importance_ranks) for row in measured])
        defined = boot[~np.isnan(boot)]
        low, high = np.percentile(defined, [2.5, 97.5]) if len(defined) else (math.nan, math.nan)
        rho = float(np.mean(per_seed)) if not np.isnan(per_seed).any() else math.nan
        correlations[name] = Correlation(name, rho, float(low), float(high), per_seed)
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

    def band(self, criterion: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean, min and max accuracy over the criterion's runs (seeds) at each keep ratio."""
        rows = self.accuracy[criterion]
        return rows.mean(0), rows.min(0), rows.max(0)


def zero_shot_curve(ablator: LayerAblator, scores: dict[str, np.ndarray],
                    keep_ratios: Sequence[float] = AnalysisConfig.keep_ratios, *, progress: ProgressCallback | None = None,
                    stop: threading.Event | None = None) -> ZeroShotCurve:
    """Accuracy with only the kept neurons, ``kept_indices(scores, keep_count(n, ratio))``, per
    criterion run and ratio; a kept set two runs share is evaluated once. ConfigError for a ratio
    outside (0, 1]; StopRequested when ``stop`` is set. At ratio 1 every criterion scores the full
    model's accuracy."""
    ratios = np.array([KEEP.check(ratio, "keep ratio") for ratio in keep_ratios], dtype=float)
    counts = np.array([keep_count(ablator.n_neurons, ratio) for ratio in ratios])
    measured: dict[bytes, tuple[float, float]] = {}
    total = sum(len(rows) for rows in scores.values()) * len(ratios)
    accuracy, loss = {}, {}
    done = 0
    for name, rows in scores.items():
        accuracy[name], loss[name] = np.empty((len(rows), len(ratios))), np.empty((len(rows), len(ratios)))
        for run, row in enumerate(rows):
            for column, count in enumerate(counts):
                check_stop(stop)
                keep = torch.zeros(ablator.n_neurons, dtype=torch.bool)
                keep[kept_indices(torch.from_numpy(row), int(count))] = True
                key = keep.numpy().tobytes()
                if key not in measured:
                    measured[key] = ablator.evaluate(keep)
                loss[name][run, column], accuracy[name][run, column] = measured[key]
                done += 1
                report(progress, done, total, "Zero-shot pruning curve")
    return ZeroShotCurve(ratios, counts, accuracy, loss, ablator.full()[1])


