"""The smallest effect a test could detect: what a null result can and cannot rule out."""
from __future__ import annotations

import math

from scipy import optimize, stats

__all__ = ["SPEARMAN_VARIANCE", "minimum_detectable_rho", "minimum_detectable_difference"]

SPEARMAN_VARIANCE = 1.06  # var(atanh(rho_s)) is about 1.06 / (n - 3) (Fieller, Hartley and Pearson 1957)


def minimum_detectable_rho(n: int, alpha: float, power: float = 0.8) -> float:
    """The smallest |Spearman rho| that a two-sided test at level ``alpha`` detects with probability ``power``
    among ``n`` units: tanh((z_(1 - alpha/2) + z_power) * sqrt(1.06 / (n - 3))) (Fisher's z, with Fieller,
    Hartley and Pearson's variance for Spearman's rho).

    Parameters
    ----------
    n : the units correlated (measured neurons).
    alpha : the test's level after correction (e.g. Holm's first step over m layers: alpha / m, the level a
        family's most significant test must pass).
    power : the probability of detection.

    Returns
    -------
    The minimum detectable |rho| in (0, 1); NaN for n <= 3 (no test) or alpha or power outside (0, 1).

    Example: ``minimum_detectable_rho(48, 0.05 / 24)`` is about 0.54 (the atlas's earlier 48 neurons per layer);
    ``minimum_detectable_rho(170, 0.05 / 24)`` about 0.29.
    """
    if n <= 3 or not 0 < alpha < 1 or not 0 < power < 1:
        return math.nan
    z = stats.norm.isf(alpha / 2) + stats.norm.ppf(power)
    return math.tanh(z * math.sqrt(SPEARMAN_VARIANCE / (n - 3)))


def minimum_detectable_difference(sd: float, n: int, alpha: float, power: float = 0.8) -> float:
    """The smallest true mean difference that a two-sided paired (one-sample) t-test at level ``alpha`` detects
    with probability ``power`` over ``n`` pairs whose differences have standard deviation ``sd``: the delta at
    which P(|T| > t_(1 - alpha/2, n - 1)) = power, T noncentral t with n - 1 degrees of freedom and noncentrality
    delta sqrt(n) / sd (exact, not the normal approximation, which few pairs make optimistic).

    Parameters
    ----------
    sd : the standard deviation of the paired differences (as measured: a plan to read a result by).
    n : the pairs (e.g. seeds run under both settings).
    alpha : the test's level after correction (Holm's first step over m comparisons: alpha / m).
    power : the probability of detection.

    Returns
    -------
    The minimum detectable difference, in the units of ``sd``; NaN for n < 2 (no test), a non-finite or
    negative ``sd``, alpha or power outside (0, 1), or power <= alpha (no difference is needed for that: the
    test rejects that often with none); 0 for ``sd`` 0.

    Example: ``minimum_detectable_difference(1.0, 5, 0.05)`` is about 1.68 (five seeds detect a mean difference of
    about 1.7 standard deviations of the differences).
    """
    if n < 2 or not math.isfinite(sd) or sd < 0 or not 0 < alpha < power < 1:
        return math.nan
    if sd == 0:
        return 0.0
    critical = stats.t.isf(alpha / 2, n - 1)

    def shortfall(effect: float) -> float:  # effect in SDs of the differences
        noncentrality = effect * math.sqrt(n)
        # The wrong-sign tail as the upper tail of -delta: scipy's nct.cdf gives NaN far in that tail.
        return stats.nct.sf(critical, n - 1, noncentrality) + stats.nct.sf(critical, n - 1, -noncentrality) - power

    high = 1.0
    while shortfall(high) < 0:
        high *= 2
    return sd * optimize.brentq(shortfall, 0.0, high, xtol=1e-10)
