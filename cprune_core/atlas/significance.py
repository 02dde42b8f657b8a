"""The atlas's tests: one p-value per layer and criterion, and Holm's correction over layers.

Two questions, two tests, each of them per layer:

- **Does the criterion rank single neurons by their effect?** A permutation test of Spearman's rho
  against 0 (``rho_permutation_p``): the measured effects are permuted among the measured neurons, which
  is exactly what a ranking with no information (a random criterion) would see. Exact up to the
  permutations drawn: the smallest p-value is 1 / (permutations + 1).
- **Does keeping the criterion's top neurons beat keeping random ones?** The criterion's validation
  accuracy after group ablation against the accuracies of the random criterion's seeds, as a new draw
  from their distribution (``prediction_p``): t = (x - mean) / (sd * sqrt(1 + 1/R)) with R - 1 degrees of
  freedom, assuming random kept sets' accuracies are roughly normal. An empirical rank among R seeds
  could never give less than 1 / (R + 1), too coarse to survive a correction over layers.

Holm's step-down correction (``holm``) controls the family-wise error over the layers of one criterion and
one test; a layer whose test is undefined (NaN) is left out of the family.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from ..ablation import AblationResult
from ..ranges import Range

__all__ = ["rho_permutation_p", "prediction_p", "holm", "verdict", "PERMUTATIONS", "ALPHA", "VERDICTS"]

PERMUTATIONS = Range(1, 10**6, integer=True)
ALPHA = 0.05  # family-wise error rate of each family (one criterion, one test, every layer)
VERDICTS = ("better", "worse", "neither", "untested")
_CHUNK = 1000  # permutations at once


def _centred_ranks(values: np.ndarray) -> np.ndarray:
    ranks = stats.rankdata(values, axis=-1)
    return ranks - ranks.mean(-1, keepdims=True)


def rho_permutation_p(result: AblationResult, scores: dict[str, np.ndarray], *, permutations: int = 9999,
                      seed: int = 0) -> dict[str, float]:
    """Two-sided permutation p-value of each criterion's Spearman rho with the measured neurons' importance
    (``result.delta_loss``): (1 + #{|rho of permuted effects| >= |rho|}) / (permutations + 1), with the same
    seeded permutations for every criterion. Criteria with several score rows (random's seeds) and undefined
    correlations (constant scores or effects, fewer than 3 neurons) get NaN.

    Example: scores equal to the effects over 20 neurons give about 1 / (permutations + 1)."""
    PERMUTATIONS.check(permutations, "permutations")
    importance = _centred_ranks(result.delta_loss)
    n = len(importance)
    single = {name: rows[0, result.neurons] for name, rows in scores.items() if len(rows) == 1}
    p_values = {name: math.nan for name in scores}
    if n < 3 or not single or not (importance ** 2).sum() > 0:
        return p_values
    names = list(single)
    ranks = _centred_ranks(np.stack([single[name] for name in names]))  # criteria x n
    defined = (ranks ** 2).sum(1) > 0
    observed = np.abs(ranks @ importance)  # rho times a positive constant per criterion
    tolerance = 1e-9 * np.maximum(observed, 1.0)
    as_large = np.zeros(len(names))
    rng = np.random.default_rng(seed)
    for start in range(0, permutations, _CHUNK):
        count = min(_CHUNK, permutations - start)
        permuted = importance[rng.permuted(np.tile(np.arange(n), (count, 1)), axis=1)]  # count x n
        as_large += (np.abs(permuted @ ranks.T) >= observed - tolerance).sum(0)
    for index, name in enumerate(names):
        if defined[index]:
            p_values[name] = float((1 + as_large[index]) / (permutations + 1))
    return p_values


def prediction_p(value: float, reference: Sequence[float]) -> float:
    """Two-sided p-value of ``value`` as one more draw from the normal distribution the ``reference``
    values (e.g. the random seeds' accuracies) come from: t = (value - mean) / (sd * sqrt(1 + 1/R)), R - 1
    degrees of freedom. NaN with fewer than 2 reference values or when they are all equal (no spread to
    judge by), or when ``value`` is NaN.

    Example: prediction_p(0.5, [0.4, 0.42, 0.38, 0.41]) is about 0.01."""
    reference = np.asarray(reference, dtype=float)
    if len(reference) < 2 or math.isnan(value) or np.isnan(reference).any():
        return math.nan
    if np.ptp(reference) == 0:  # all equal (their computed sd may still be a rounding error above 0)
        return math.nan
    spread = reference.std(ddof=1)
    t = (value - reference.mean()) / (spread * math.sqrt(1 + 1 / len(reference)))
    return float(2 * stats.t.sf(abs(t), len(reference) - 1))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the order given: sorted ascending, the i-th smallest (from 0)
    becomes max over j <= i of min(1, (m - j) p_(j)), with m the number of defined p-values. NaN stays NaN
    and is not counted in m. Rejecting where the adjusted p < alpha controls the family-wise error at alpha.

    Example: holm([0.01, 0.04, 0.03, nan]) is [0.03, 0.06, 0.06, nan]."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def verdict(adjusted_p: float, effect: float, alpha: float = ALPHA) -> str:
    """"better" or "worse" (the sign of ``effect``) where the adjusted p-value is below ``alpha``;
    "neither" where it is not; "untested" where the test was undefined (NaN)."""
    if math.isnan(adjusted_p) or math.isnan(effect):
        return "untested"
    if adjusted_p < alpha and effect != 0:
        return "better" if effect > 0 else "worse"
    return "neither"
