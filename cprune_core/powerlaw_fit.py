"""The power-law tail of an empirical spectral density: Clauset, Shalizi and Newman (2009), as WeightWatcher fits it.

For each candidate xmin (every distinct eigenvalue that leaves at least ``MIN_TAIL`` eigenvalues at or above it),
the maximum-likelihood exponent of a continuous power law p(x) ∝ x^-alpha on the tail x >= xmin is
alpha = 1 + n / sum(log(x_i / xmin)); xmin is the candidate whose tail is closest to its fit in Kolmogorov-Smirnov
distance (the largest gap between the tail's empirical CDF and the fitted one). That is WeightWatcher's default
fit (its ``WW_powerlaw.WWFit``) and the ``powerlaw`` package's (tests/test_spectral.py checks it against that
package); two differences, both stated: the KS distance is the two-sided supremum (WeightWatcher compares the
fitted CDF with the empirical CDF's lower steps only), and the tail has at least ``MIN_TAIL`` eigenvalues
(WeightWatcher allows 2, where a tiny tail's fit is noise). ``xmin="median"``: AlphaPruning's ``alpha_mid`` (Lu
et al., NeurIPS 2024, their image classifiers' metric): xmin fixed at the median eigenvalue, no search.

Goodness of fit: the KS distance, and Vuong's normalised log-likelihood ratio of the power law against an
exponential fitted to the same tail (Clauset et al. 2009, section 5; ``powerlaw``'s ``distribution_compare``):
positive favours the power law, and its two-sided p-value says whether the sign can be trusted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import erfc

from .errors import ConfigError

__all__ = ["MIN_TAIL", "XMIN_RULES", "PowerLawFit", "fit_power_law"]

MIN_TAIL = 10  # eigenvalues at or above xmin: WeightWatcher's min_evals (it skips layers with fewer)
XMIN_RULES = ("ks", "median")
_CHUNK = 2**22  # entries of one block of the candidate x tail comparison (32 MiB of float64)


@dataclass(frozen=True)
class PowerLawFit:
    """A power law fitted to an ESD's tail: alpha NaN (and every figure NaN) when there is no fit, ``note`` says why."""

    alpha: float
    xmin: float
    ks: float  # Kolmogorov-Smirnov distance of the tail to the fitted power law
    tail: int  # eigenvalues at or above xmin
    sigma: float  # the MLE's standard error, (alpha - 1) / sqrt(tail)
    vs_exponential: float  # Vuong's normalised log-likelihood ratio, power law against exponential
    vs_exponential_p: float  # its two-sided p-value
    note: str = ""

    @classmethod
    def undefined(cls, note: str) -> PowerLawFit:
        return cls(math.nan, math.nan, math.nan, 0, math.nan, math.nan, math.nan, note)

    @property
    def fitted(self) -> bool:
        return not math.isnan(self.alpha)


def _ks_distances(log_x: np.ndarray, starts: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """The two-sided KS distance of each candidate tail (from index ``starts[k]`` on, sorted ``log_x``) to its
    fitted power law with exponent ``alphas[k]``; computed in blocks so memory stays bounded."""
    total = len(log_x)
    distances = np.full(len(starts), math.nan)
    block = max(1, _CHUNK // total)
    positions = np.arange(total)
    for first in range(0, len(starts), block):
        start = starts[first:first + block, None]
        alpha = alphas[first:first + block, None]
        tail = total - start
        rank = positions[None, :] - start  # 0 at xmin
        inside = rank >= 0
        with np.errstate(over="ignore", invalid="ignore"):
            fitted = 1 - np.exp((1 - alpha) * (log_x[None, :] - log_x[start]))
            gap = np.maximum(fitted - rank / tail, (rank + 1) / tail - fitted)
        distances[first:first + block] = np.where(inside, gap, -np.inf).max(1)
    return distances


def _vs_exponential(tail: np.ndarray, alpha: float, xmin: float) -> tuple[float, float]:
    """Vuong's normalised log-likelihood ratio of the power law against the maximum-likelihood exponential on the
    same tail (rate 1 / mean(x - xmin)), and its two-sided p-value; NaN where the exponential is degenerate."""
    excess = tail - xmin
    if excess.mean() <= 0:
        return math.nan, math.nan
    rate = 1 / excess.mean()
    power = math.log(alpha - 1) - math.log(xmin) - alpha * np.log(tail / xmin)
    exponential = math.log(rate) - rate * excess
    difference = power - exponential
    spread = difference.std()
    if spread == 0:
        return math.nan, math.nan
    normalised = float(difference.sum() / (math.sqrt(len(tail)) * spread))
    return normalised, float(erfc(abs(normalised) / math.sqrt(2)))


def fit_power_law(eigenvalues, *, xmin: str = "ks", min_tail: int = MIN_TAIL) -> PowerLawFit:
    """Fit a power law to the upper tail of ``eigenvalues`` (see the module docstring for the method).

    Parameters
    ----------
    eigenvalues : the ESD, in any order. Values <= 0 are left out (a zero eigenvalue is lost rank, not part of
        any tail).
    xmin : "ks": the candidate minimising the KS distance (Clauset et al.; WeightWatcher's alpha); "median": the
        median positive eigenvalue (AlphaPruning's alpha_mid).
    min_tail : the fewest eigenvalues a tail may have.

    Returns
    -------
    PowerLawFit : alpha, xmin, KS distance, tail size, standard error, the comparison with an exponential. No
    fit (alpha NaN, ``note`` says why) for: fewer than ``min_tail`` positive eigenvalues (a layer of rank 2, or
    all zero), a median rule whose upper half holds fewer than ``min_tail``, or tails whose eigenvalues are all
    equal (an orthogonal matrix: no tail to fit).

    Raises
    ------
    ConfigError : NaN or infinite eigenvalues, an unknown ``xmin`` rule, or ``min_tail`` below 2.

    Example: eigenvalues drawn from a Pareto law of exponent 3 above 1 give alpha near 3 and xmin near 1.
    """
    values = np.asarray(eigenvalues, dtype=np.float64).ravel()
    if not np.isfinite(values).all():
        raise ConfigError("fit_power_law needs finite eigenvalues; got NaN or infinity.")
    if xmin not in XMIN_RULES or min_tail < 2:
        raise ConfigError(f"fit_power_law's xmin rule is one of {', '.join(XMIN_RULES)} and min_tail at least 2; "
                          f"got {xmin!r} and {min_tail}.")
    x = np.sort(values[values > 0])
    if len(x) < min_tail:
        what = "every eigenvalue is 0" if len(x) == 0 else f"only {len(x)} eigenvalues are above 0 (rank {len(x)})"
        return PowerLawFit.undefined(f"no power-law fit: {what}, and a fit needs a tail of at least {min_tail}")
    log_x = np.log(x)
    if xmin == "median":
        starts = np.array([len(x) // 2])
        if len(x) - starts[0] < min_tail:
            return PowerLawFit.undefined(f"no power-law fit: the upper half holds {len(x) - starts[0]} eigenvalues, "
                                         f"fewer than {min_tail}")
    else:
        distinct = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])  # a tail holds every value at or above its xmin
        starts = distinct[len(x) - distinct >= min_tail]
    suffix = np.cumsum(log_x[::-1])[::-1]
    sizes = len(x) - starts
    spread = suffix[starts] - sizes * log_x[starts]
    valid = spread > 1e-12 * sizes
    if not valid.any():
        return PowerLawFit.undefined("no power-law fit: the eigenvalues of every candidate tail are all equal")
    starts, sizes = starts[valid], sizes[valid]
    alphas = 1 + sizes / spread[valid]
    distances = _ks_distances(log_x, starts, alphas)
    best = int(np.argmin(distances))  # ties: the smallest xmin, the largest tail
    alpha, low, size = float(alphas[best]), float(x[starts[best]]), int(sizes[best])
    ratio, p = _vs_exponential(x[starts[best]:], alpha, low)
    return PowerLawFit(alpha, low, float(distances[best]), size, (alpha - 1) / math.sqrt(size), ratio, p)
