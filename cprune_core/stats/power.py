"""The smallest effect a test could detect: what a null result can and cannot rule out."""
from __future__ import annotations

import math

from scipy import stats

__all__ = ["SPEARMAN_VARIANCE", "minimum_detectable_rho"]

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
