"""Statistics for findings that say what their data can detect.

Plain functions on arrays, each a contract (networkx style), used by the importance analysis and the atlas:

- ``reliability``: how repeatable a measured quantity is (split-half reliability over images with the
  Spearman-Brown correction), the ceiling that puts on any correlation with it, and intervals that resample
  the images as well as the units (``two_way_interval``);
- ``power``: the smallest correlation, or paired mean difference, a test could detect (``minimum_detectable_rho``,
  ``minimum_detectable_difference``);
- ``pvalues``: Monte Carlo p-values that carry their Monte Carlo error (``PValue``), the permutation test of
  a rank correlation with more permutations where p lies near its corrected threshold, the sequential rank
  test against random draws (Besag and Clifford 1991), Holm's correction;
- ``partial``: a rank correlation with a third variable held fixed (``partial_spearman``, its permutation test
  and bootstrap interval): whether a figure predicts beyond, say, a layer's width;
- ``pooled``: the tests across layers: a random-effects meta-analysis of rank correlations
  (DerSimonian and Laird 1986) and a paired test of differences (Wilcoxon signed-rank).
"""
from .partial import partial_spearman, partial_spearman_interval, partial_spearman_p
from .pooled import Meta, Paired, paired_differences, random_effects_meta
from .power import SPEARMAN_VARIANCE, minimum_detectable_difference, minimum_detectable_rho
from .pvalues import PValue, holm, monte_carlo_p, rank_correlation_p, sequential_rank_p
from .reliability import Reliability, correlation_ceiling, spearman, split_half_reliability, two_way_interval

__all__ = ["Reliability", "split_half_reliability", "correlation_ceiling", "spearman", "two_way_interval",
           "SPEARMAN_VARIANCE", "minimum_detectable_rho", "minimum_detectable_difference", "PValue", "monte_carlo_p",
           "rank_correlation_p", "sequential_rank_p", "holm", "partial_spearman", "partial_spearman_p",
           "partial_spearman_interval", "Meta", "random_effects_meta", "Paired", "paired_differences"]
