"""The primary tests, stated before the cells: is a criterion better than random across all layers?

A layer's own tests see only large effects (``AtlasResult.minimum_detectable_rho``); across every layer of one
backbone, or of several, a small consistent effect becomes visible. For a criterion (eigenvector centrality for
the finding), the primary family is:

1. its Spearman rho with single neurons' ablation effects, pooled over the layers by a random-effects
   meta-analysis on Fisher's z (each layer weighted by the inverse of its rho's variance under the bootstrap that
   resamples images and neurons, plus the between-layer variance; ``stats.random_effects_meta``);
2. for each keep ratio, its kept sets' validation accuracy minus random kept sets' mean, over the layers
   (Wilcoxon's signed-rank test; ``stats.paired_differences``).

Holm's correction over those 1 + (keep ratios) tests controls the family's error at 5%. The layers of one
network share a head and images, so they are not independent experiments; the random-effects variance absorbs
part of that, and the per-layer cells are secondary.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..stats import Meta, Paired, holm, paired_differences, random_effects_meta
from .result import AtlasResult
from .significance import ALPHA

__all__ = ["PooledTests", "pooled_tests"]


@dataclass(frozen=True)
class PooledTests:
    """A criterion's primary tests over the layers of one or more atlases: the pooled rho, the paired accuracy
    differences at each keep ratio, Holm's adjusted p-values of the family (rho first, then each ratio) and the
    backbones and layers pooled."""

    criterion: str
    rho: Meta
    group: list[Paired]
    keep_ratios: tuple[float, ...]
    adjusted: list[float]
    backbones: list[str]
    layers: int

    def significant(self, index: int) -> bool:
        """Whether test ``index`` of the family (0: rho; 1..: the keep ratios) survives Holm at 5%."""
        return bool(self.adjusted[index] < ALPHA)


def pooled_tests(results: list[AtlasResult], criterion: str = "eigenvector") -> PooledTests:
    """The primary family of ``criterion`` over every layer of ``results`` (one atlas, or one per backbone; their
    keep ratios must agree). Example: ``pooled_tests([lite0, lite1, lite2]).rho.rho`` is eigenvector centrality's
    pooled rank correlation with single neurons' effects across the three backbones."""
    keep_ratios = tuple(results[0].settings.keep_ratios)
    layers = [layer for result in results for layer in result.layers]
    rhos = [layer.correlations[criterion].spearman for layer in layers]
    variances = [layer.correlations[criterion].z_variance for layer in layers]
    rho = random_effects_meta(rhos, variances, alpha=ALPHA)
    group = []
    for column in range(len(keep_ratios)):
        differences = [layer.curve.accuracy[criterion][:, column].mean()
                       - np.nanmean(layer.curve.accuracy["random"][:, column]) for layer in layers]
        group.append(paired_differences(np.array(differences) * 100))  # percentage points
    adjusted = [float(p) for p in holm([rho.p] + [test.p for test in group])]
    return PooledTests(criterion, rho, group, keep_ratios, adjusted, [r.backbone for r in results], len(layers))
