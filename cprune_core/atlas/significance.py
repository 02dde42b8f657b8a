"""The atlas's tests: what each one asks, its family for Holm's correction, and the verdicts.

Per layer, two questions, each with an exact Monte Carlo test (``cprune_core.stats``):

- **Does the criterion rank single neurons by their effect?** A permutation test of Spearman's rho against 0:
  the measured effects are permuted among the measured neurons, which is exactly what a ranking with no
  information sees. 9,999 permutations, and 199,999 where the p-value's 99% Monte Carlo interval overlaps the
  range of Holm's thresholds (alpha / m to alpha), so the Monte Carlo error cannot decide a verdict.
- **Does keeping the criterion's top neurons beat keeping random ones?** The rank of the criterion's group-
  ablation accuracy among random kept sets' (Besag and Clifford's sequential test: the draws stop once 10 lie on
  each side of every criterion, else at ``settings.seeds``). No normal tail is extrapolated: the smallest
  p-value is 2 / (seeds + 1), about 0.02 for 100 draws, which Holm's first threshold over 24 layers (0.0021) is
  below: with these draws no single layer's group test can be significant after the correction, and the
  question is answered by the pooled test across layers.

Families (each at a family-wise error of 5%): per backbone, criterion and test, the layers (Holm); the primary
tests, pooled across layers, form a family of their own (``pooled.py``).
"""
from __future__ import annotations

import math

from ..ranges import Range

__all__ = ["PERMUTATIONS", "ALPHA", "VERDICTS", "verdict"]

PERMUTATIONS = Range(1, 10**6, integer=True)
ALPHA = 0.05  # family-wise error rate of each family
VERDICTS = ("better", "worse", "not detected", "untested")


def verdict(adjusted_p: float, effect: float, alpha: float = ALPHA) -> str:
    """"better" or "worse" (the sign of ``effect``) where the adjusted p-value is below ``alpha``; "not detected"
    where it is not (the test could not tell: how small an effect it could have seen is the layer's minimum
    detectable effect); "untested" where the test was undefined (NaN)."""
    if math.isnan(adjusted_p) or math.isnan(effect):
        return "untested"
    if adjusted_p < alpha and effect != 0:
        return "better" if effect > 0 else "worse"
    return "not detected"
