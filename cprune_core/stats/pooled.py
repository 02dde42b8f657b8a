"""Tests across layers: does a criterion predict importance, or beat random pruning, on the whole?

Each layer's test alone can see only large effects; pooled over every layer, a small consistent effect becomes
visible. ``random_effects_meta`` pools the layers' rank correlations on Fisher's z scale, letting the true
correlation differ between layers (DerSimonian and Laird 1986); ``paired_differences`` tests whether a
criterion's kept sets beat random ones' mean across layers (Wilcoxon's signed-rank test, with a bootstrap
interval of the mean difference over layers). Layers of one network share a head and images, so they are not
independent experiments; the random-effects variance absorbs part of that, and the reports say so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .power import SPEARMAN_VARIANCE

__all__ = ["Meta", "random_effects_meta", "Paired", "paired_differences"]


@dataclass(frozen=True)
class Meta:
    """A random-effects pooled correlation: ``rho`` with its 95% interval and two-sided p (normal, on Fisher's
    z), the between-layer variance ``tau2`` (z scale), I-squared (the share of variation that is between layers),
    the layers pooled and the smallest pooled |rho| the test detects with 80% power at ``alpha``."""

    rho: float
    ci_low: float
    ci_high: float
    p: float
    tau2: float
    i2: float
    k: int
    mde: float
    alpha: float


def random_effects_meta(rhos, variances=None, ns=None, *, alpha: float = 0.05) -> Meta:
    """Pool per-layer Spearman correlations by a DerSimonian-Laird random-effects meta-analysis on Fisher's z.

    Parameters
    ----------
    rhos : each layer's rho (NaN: left out).
    variances : each layer's variance of atanh(rho) (e.g. from a bootstrap that resamples images and neurons);
        None: Fieller's 1.06 / (n - 3) from ``ns``.
    ns : the units behind each rho (used when ``variances`` is None; a layer with n <= 3 is left out).
    alpha : the level of the pooled test (for ``mde``).

    Returns
    -------
    Meta : the pooled rho (tanh of the weighted mean z, weights 1 / (v + tau2)), its 95% interval, two-sided p,
    tau2, I-squared, k and the minimum detectable pooled |rho| at 80% power. With fewer than 2 layers: NaN.

    Example: ten layers of rho -0.2 from 100 neurons each pool to -0.2 with an interval that excludes 0.
    """
    rhos = np.asarray(rhos, dtype=float)
    if variances is None:
        ns = np.asarray(ns, dtype=float)
        variances = np.where(ns > 3, SPEARMAN_VARIANCE / np.maximum(ns - 3, 1e-9), np.nan)
    variances = np.asarray(variances, dtype=float)
    usable = ~np.isnan(rhos) & ~np.isnan(variances) & (variances > 0) & (np.abs(rhos) < 1)
    k = int(usable.sum())
    if k < 2:
        return Meta(*([math.nan] * 6), k, math.nan, alpha)
    z, v = np.arctanh(rhos[usable]), variances[usable]
    w = 1 / v
    fixed = (w * z).sum() / w.sum()
    q = float((w * (z - fixed) ** 2).sum())
    c = w.sum() - (w * w).sum() / w.sum()
    tau2 = max(0.0, (q - (k - 1)) / c) if c > 0 else 0.0
    weights = 1 / (v + tau2)
    pooled = float((weights * z).sum() / weights.sum())
    se = float(math.sqrt(1 / weights.sum()))
    half = stats.norm.isf(0.025) * se
    p = float(2 * stats.norm.sf(abs(pooled) / se))
    i2 = max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0
    mde = math.tanh((stats.norm.isf(alpha / 2) + stats.norm.ppf(0.8)) * se)
    return Meta(math.tanh(pooled), math.tanh(pooled - half), math.tanh(pooled + half), p, tau2, i2, k, mde, alpha)


@dataclass(frozen=True)
class Paired:
    """Differences over layers (criterion minus random's mean): their mean with a 95% bootstrap interval over
    layers, the median, how many are above and below 0, and Wilcoxon's signed-rank p (two-sided)."""

    mean: float
    ci_low: float
    ci_high: float
    median: float
    above: int
    below: int
    p: float
    k: int


def paired_differences(differences, *, resamples: int = 10_000, seed: int = 0) -> Paired:
    """Test whether per-layer differences are centred on 0.

    Parameters
    ----------
    differences : one difference per layer (NaN: left out), e.g. accuracy with a criterion's kept set minus the
        mean of random kept sets'.
    resamples, seed : the bootstrap of the mean over layers.

    Returns
    -------
    Paired : mean, 95% percentile interval, median, counts above and below 0, Wilcoxon signed-rank p (zeros
    dropped, as Wilcoxon; exact for small samples without ties, else the normal approximation, as scipy chooses),
    and k. Fewer than 2 usable layers, or all differences 0: p NaN.

    Example: 24 layers all 5 points above random give p far below 0.05.
    """
    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d)]
    k = len(d)
    if k < 2:
        return Paired(*(math.nan,) * 4, int((d > 0).sum()), int((d < 0).sum()), math.nan, k)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, k, size=(resamples, k))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    p = math.nan if not (d != 0).any() else float(stats.wilcoxon(d).pvalue)
    return Paired(float(d.mean()), float(low), float(high), float(np.median(d)), int((d > 0).sum()),
                  int((d < 0).sum()), p, k)
