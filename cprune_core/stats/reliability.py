"""How repeatable a measured quantity is, and what that allows any correlation with it to show.

A neuron's ablation effect is a mean over validation images of a per-image change in loss, so it carries the
images' noise. Measured twice on disjoint halves of the images, the effects of the same neurons agree only as
far as they are repeatable: their split-half rank correlation, corrected to the full length by Spearman-Brown,
is the effects' reliability. A criterion's scores are exact (reliability 1), so no criterion, however good,
can correlate with noisy effects beyond about sqrt(reliability): the attenuation bound of Spearman (1904).
``two_way_interval`` resamples the images as well as the neurons, so an interval carries that noise too.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..errors import ConfigError

__all__ = ["Reliability", "spearman", "split_half_reliability", "correlation_ceiling", "two_way_interval"]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho of two vectors (ties: average ranks); NaN when either is constant or has fewer than 3
    values."""
    if len(x) < 3:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.spearmanr(x, y).statistic)


def _rank_rows(values: np.ndarray) -> np.ndarray:
    """Each row's average ranks, centred and scaled to unit length (a constant row: all zeros)."""
    ranks = stats.rankdata(values, axis=-1)
    ranks -= ranks.mean(-1, keepdims=True)
    norms = np.sqrt((ranks * ranks).sum(-1, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, ranks / norms, 0.0)


def _row_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of x and y (k x n each); NaN where a row is constant."""
    rx, ry = _rank_rows(x), _rank_rows(y)
    defined = (np.abs(rx).sum(-1) > 0) & (np.abs(ry).sum(-1) > 0)
    return np.where(defined, (rx * ry).sum(-1), np.nan)


@dataclass(frozen=True)
class Reliability:
    """The split-half reliability of per-unit means over images.

    ``half``: the mean Spearman rho between the units' means on two random halves of the images (over
    ``splits`` splits; ``half_sd`` its spread); ``full``: Spearman-Brown's 2 r / (1 + r), the reliability at the
    full number of images (may be negative: no repeatable signal); ``ceiling``: sqrt(max(full, 0)), the largest
    |rho| any exactly measured score can show with these means. NaN with fewer than 3 units or 2 images.
    """

    half: float
    half_sd: float
    full: float
    ceiling: float
    splits: int
    images: int


def correlation_ceiling(reliability: float) -> float:
    """sqrt(max(reliability, 0)): the attenuation bound on |rho| between exact scores and a measure of this
    reliability (Spearman 1904). NaN stays NaN. Example: ``correlation_ceiling(0.25)`` is 0.5."""
    if math.isnan(reliability):
        return math.nan
    return math.sqrt(max(reliability, 0.0))


def split_half_reliability(per_image: np.ndarray, *, splits: int = 200, seed: int = 0) -> Reliability:
    """The reliability of the row means of ``per_image`` (units x images: e.g. each neuron's change in loss on
    each validation image) from random half-splits of the images.

    Parameters
    ----------
    per_image : n x N array; row i holds unit i's value on each of N images.
    splits : random splits of the images into halves of N // 2 and N - N // 2 (seeded).
    seed : the splits' seed.

    Returns
    -------
    Reliability : the mean half-split Spearman rho, its Spearman-Brown full-length value and the ceiling it puts
    on any correlation with the row means (see ``Reliability``). A split whose rho is undefined (a constant half)
    is left out; all undefined, or n < 3 or N < 2: NaN.

    Raises
    ------
    ConfigError : ``per_image`` is not two-dimensional, or ``splits`` < 1.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> true = rng.normal(size=(50, 1))
    >>> split_half_reliability(true + rng.normal(size=(50, 400))).full > 0.9  # 400 images average the noise away
    True
    """
    if per_image.ndim != 2 or splits < 1:
        raise ConfigError(f"split_half_reliability needs a units x images array and at least one split; got shape "
                          f"{per_image.shape} and {splits} splits.")
    n, images = per_image.shape
    if n < 3 or images < 2:
        return Reliability(math.nan, math.nan, math.nan, math.nan, splits, images)
    rng = np.random.default_rng(seed)
    first = np.argsort(rng.random((splits, images)), axis=1)[:, : images // 2]  # splits x N//2 image indices
    in_first = np.zeros((splits, images), dtype=bool)
    np.put_along_axis(in_first, first, True, axis=1)
    sums_first = in_first.astype(np.float64) @ per_image.T  # splits x n
    means_first = sums_first / in_first.sum(1, keepdims=True)
    means_second = (per_image.sum(1)[None] - sums_first) / (~in_first).sum(1, keepdims=True)
    rhos = _row_spearman(means_first, means_second)
    rhos = rhos[~np.isnan(rhos)]
    if not len(rhos):
        return Reliability(math.nan, math.nan, math.nan, math.nan, splits, images)
    half = float(rhos.mean())
    full = 2 * half / (1 + half) if half > -1 else -1.0
    return Reliability(half, float(rhos.std(ddof=1)) if len(rhos) > 1 else 0.0, full, correlation_ceiling(full),
                       splits, images)


def two_way_interval(scores: np.ndarray, per_image: np.ndarray, *, resamples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, np.ndarray]:
    """A percentile bootstrap interval of Spearman's rho between ``scores`` and the row means of ``per_image``,
    resampling the units and the images (both with replacement) in each resample.

    Parameters
    ----------
    scores : n scores, or r x n (several score rows, e.g. random seeds: each resample draws one row at random,
        so the interval pools them).
    per_image : n x N per-image values (their row means are the effects).
    resamples : bootstrap resamples (seeded).
    level : the interval's coverage.

    Returns
    -------
    (low, high, rhos): the interval's ends and the resamples' rhos (NaN where a resample's rho is undefined,
    left out of the interval; all undefined: NaN ends). Resampling units alone (the usual bootstrap) leaves out
    the images' noise, which can be most of the effects' variance.

    Raises
    ------
    ConfigError : shapes that do not match, or ``resamples`` < 1.

    Example: scores equal to the true effects give an interval near 1 when the images' noise is small.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    n, images = per_image.shape
    if scores.shape[1] != n or resamples < 1:
        raise ConfigError(f"two_way_interval needs one score per unit ({n}) and at least one resample; got "
                          f"{scores.shape[1]} scores and {resamples} resamples.")
    rng = np.random.default_rng(seed)
    units = rng.integers(0, n, size=(resamples, n))
    weights = rng.multinomial(images, np.full(images, 1.0 / images), size=resamples) / images  # resamples x N
    effects = per_image @ weights.T  # n x resamples: each unit's mean under each image resample
    resampled_effects = np.take_along_axis(effects.T, units, axis=1)  # resamples x n
    rows = rng.integers(0, len(scores), size=resamples)
    resampled_scores = np.take_along_axis(scores[rows], units, axis=1)
    rhos = _row_spearman(resampled_scores, resampled_effects)
    defined = rhos[~np.isnan(rhos)]
    if not len(defined):
        return math.nan, math.nan, rhos
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(defined, [tail, 100 - tail])
    return float(low), float(high), rhos
