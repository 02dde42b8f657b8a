"""Monte Carlo p-values with their Monte Carlo error, and Holm's correction.

A p-value found by drawing (permutations, random kept sets) is an estimate: another seed gives another value.
``PValue`` carries the draws it came from and a 99% Monte Carlo interval for the p-value an infinite number of
draws would give, so a reader (and the code) can see whether another seed could move it across a threshold.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..errors import ConfigError
from .reliability import _rank_rows

__all__ = ["PValue", "monte_carlo_p", "rank_correlation_p", "sequential_rank_p", "needs_more_draws", "holm",
           "MC_LEVEL"]

MC_LEVEL = 0.99  # coverage of the Monte Carlo intervals
_CHUNK = 2000  # permutations at once


@dataclass(frozen=True)
class PValue:
    """A Monte Carlo p-value: ``p`` from ``draws`` draws, of which ``exceedances`` were at least as extreme, and
    a 99% interval [``low``, ``high``] for the p-value with unlimited draws (Clopper-Pearson on the exceedance
    rate). ``method`` names the test. NaN where the test is undefined."""

    p: float
    draws: int
    exceedances: int
    low: float
    high: float
    method: str

    @classmethod
    def undefined(cls, method: str) -> PValue:
        return cls(math.nan, 0, 0, math.nan, math.nan, method)

    def straddles(self, threshold: float) -> bool:
        """Whether another seed could put p on the other side of ``threshold`` (its interval contains it)."""
        return not math.isnan(self.p) and self.low <= threshold <= self.high

    def text(self) -> str:
        """"p 0.0019 (99% MC interval 0.0009-0.0035, 9,999 permutations)"."""
        if math.isnan(self.p):
            return "p undefined"
        return f"p {self.p:.2g} (99% MC interval {self.low:.2g}-{self.high:.2g}, {self.draws:,} {self.method})"


def _clopper_pearson(successes: int, trials: int, level: float = MC_LEVEL) -> tuple[float, float]:
    tail = (1 - level) / 2
    low = 0.0 if successes == 0 else float(stats.beta.ppf(tail, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(stats.beta.ppf(1 - tail, successes + 1, trials - successes))
    return low, high


def monte_carlo_p(exceedances: int, draws: int, method: str = "permutations") -> PValue:
    """(1 + exceedances) / (1 + draws), the Monte Carlo p-value that is exact in size (Davison and Hinkley 1997,
    eq. 4.11), with the 99% Clopper-Pearson interval of the exceedance rate as its Monte Carlo error.

    Example: ``monte_carlo_p(18, 9999).p`` is 0.0019; its interval spans about 0.0009-0.0035."""
    if draws < 1 or not 0 <= exceedances <= draws:
        raise ConfigError(f"A Monte Carlo p-value needs 0 <= exceedances <= draws >= 1; got {exceedances} of {draws}.")
    low, high = _clopper_pearson(exceedances, draws)
    return PValue((1 + exceedances) / (1 + draws), draws, exceedances, low, high, method)


def _count_as_large(observed: np.ndarray, ranks: np.ndarray, target: np.ndarray, permutations: int,
                    rng: np.random.Generator, remove: np.ndarray | None = None) -> np.ndarray:
    """How often |rho| of each score row with the permuted target is >= its observed |rho| (rows and target: centred
    ranks of unit length, so a product is a rho). ``remove`` (a centred unit vector, e.g. a covariate's ranks): taken
    out of each permuted target, which is then scaled to unit length again (Freedman and Lane's partial test)."""
    n = len(target)
    tolerance = 1e-9 * np.maximum(observed, 1e-12)
    count = np.zeros(len(ranks), dtype=np.int64)
    for start in range(0, permutations, _CHUNK):
        size = min(_CHUNK, permutations - start)
        permuted = target[rng.permuted(np.tile(np.arange(n), (size, 1)), axis=1)]  # size x n
        if remove is not None:
            permuted -= np.outer(permuted @ remove, remove)
            norms = np.sqrt((permuted * permuted).sum(1, keepdims=True))
            with np.errstate(invalid="ignore", divide="ignore"):
                permuted = np.where(norms > 0, permuted / norms, 0.0)
        count += (np.abs(permuted @ ranks.T) >= observed - tolerance).sum(0)
    return count


def rank_correlation_p(scores: np.ndarray, effects: np.ndarray, *, permutations: int = 9999, seed: int = 0,
                       refine: tuple[float, float] | None = None, max_permutations: int = 999_999) -> list[PValue]:
    """Two-sided permutation p-values of each score row's Spearman rho with ``effects`` against 0: the effects are
    permuted among the units (what a score with no information would see), the same permutations for every row.

    Parameters
    ----------
    scores : k x n score rows (one per criterion), or n scores.
    effects : n measured effects.
    permutations : the first round's permutations (seeded).
    refine : (low, high), e.g. (alpha / m, alpha): a row whose p-value's 99% Monte Carlo interval overlaps this
        range, where a corrected threshold may lie, is tested again with ``max_permutations`` (a fresh seed), so
        the Monte Carlo error cannot decide the verdict. None: no second round.
    max_permutations : the second round's permutations.

    Returns
    -------
    One ``PValue`` per row: (1 + #{|rho*| >= |rho|}) / (1 + permutations), its Monte Carlo interval, and the
    permutations used. Undefined (NaN) for a constant row, constant effects or fewer than 3 units.

    Raises
    ------
    ConfigError : a score row that is not n long, or fewer than 1 permutation.

    Example: scores equal to the effects over 20 units give p = 1 / (1 + permutations) before refinement.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    effects = np.asarray(effects, dtype=np.float64)
    if scores.shape[1] != len(effects) or permutations < 1 or max_permutations < 1:
        raise ConfigError(f"rank_correlation_p needs score rows as long as the effects ({len(effects)}) and at least "
                          f"one permutation; got rows of {scores.shape[1]}.")
    method = "permutations"
    if len(effects) < 3:
        return [PValue.undefined(method)] * len(scores)
    target = _rank_rows(effects[None])[0]
    ranks = _rank_rows(scores)
    defined = (np.abs(ranks).sum(1) > 0) & (np.abs(target).sum() > 0)
    observed = np.abs(ranks @ target)
    counts = _count_as_large(observed, ranks, target, permutations, np.random.default_rng(seed))
    results = [monte_carlo_p(int(c), permutations, method) if ok else PValue.undefined(method)
               for c, ok in zip(counts, defined)]
    if refine is None:
        return results
    low, high = refine
    again = [i for i, p in enumerate(results) if not math.isnan(p.p) and p.low <= high and p.high >= low]
    if again:
        more = _count_as_large(observed[again], ranks[again], target, max_permutations,
                               np.random.default_rng([seed, 1]))
        for index, count in zip(again, more):
            results[index] = monte_carlo_p(int(count), max_permutations, method)
    return results


def _side_p(hits: np.ndarray, h: int, max_draws: int, method: str) -> PValue:
    """Besag and Clifford's sequential p-value of one side: h / L where the h-th hit came at draw L, else
    (1 + hits) / (1 + draws) when the draws reached ``max_draws`` first."""
    cumulative = np.cumsum(hits)
    reached = np.flatnonzero(cumulative >= h)
    if len(reached):
        draws = int(reached[0]) + 1
        low, high = _clopper_pearson(h, draws)
        return PValue(h / draws, draws, h, low, high, method)
    if len(hits) < max_draws:
        raise ConfigError(f"A sequential p-value needs {h} hits or {max_draws} draws; got {int(cumulative[-1]) if len(hits) else 0} "
                          f"hits in {len(hits)} draws.")
    return monte_carlo_p(int(hits.sum()), len(hits), method)


def needs_more_draws(value: float, draws: Sequence[float], h: int) -> bool:
    """Whether ``sequential_rank_p`` of ``value`` needs more draws: fewer than ``h`` draws lie at or above it, or
    fewer than ``h`` at or below it."""
    draws = np.asarray(draws, dtype=float)
    return min(int((draws >= value).sum()), int((draws <= value).sum())) < h


def sequential_rank_p(value: float, draws: Sequence[float], *, h: int = 10, max_draws: int = 100,
                      method: str = "random kept sets") -> PValue:
    """Two-sided rank p-value of ``value`` against draws from the null distribution (e.g. the accuracy of a
    criterion's kept set against random kept sets'), by Besag and Clifford's (1991) sequential Monte Carlo test.

    Parameters
    ----------
    value : the observed statistic.
    draws : the null draws in the order they were drawn. Drawing stops once both sides hold ``h`` draws at least
        as extreme as ``value`` (``needs_more_draws`` is False), or at ``max_draws``.
    h : the hits that end a side.
    max_draws : the most draws.

    Returns
    -------
    PValue : twice the smaller side's p-value (capped at 1), each side h / L when its h-th hit came at draw L,
    else (1 + hits) / (1 + max_draws): valid at any stopping point of this rule, with no normal approximation. A
    draw equal to ``value`` counts on both sides. The smallest possible p is 2 / (max_draws + 1). NaN for a NaN
    value or draw.

    Raises
    ------
    ConfigError : draws that stop before either rule says (a side short of h hits and fewer than ``max_draws``).

    Example: a value above 100 random draws gives p = 2 / 101, about 0.02.
    """
    draws = np.asarray(draws, dtype=float)
    if math.isnan(value) or np.isnan(draws).any() or not len(draws):
        return PValue.undefined(method)
    upper = _side_p(draws >= value, h, max_draws, method)
    lower = _side_p(draws <= value, h, max_draws, method)
    side = upper if upper.p <= lower.p else lower
    return PValue(min(1.0, 2 * side.p), side.draws, side.exceedances, min(1.0, 2 * side.low), min(1.0, 2 * side.high),
                  method)


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
