"""The atlas's finding in words, generated from its numbers: how many layers show eigenvector centrality
doing better than random, worse, or neither (after Holm's correction), and what its kept sets look like."""
from __future__ import annotations

import math

import numpy as np

from ..ablation import AblationResult, criterion_correlations
from .result import AtlasResult, Family
from .significance import ALPHA

__all__ = ["atlas_sentences", "finding_sentence", "why_sentence", "geometry_gaps"]


def _layers(count: int) -> str:
    return "no layer" if count == 0 else f"{count} layer{'s' * (count != 1)}"


def _counts(family: Family, above: str, below: str) -> str:
    """"above random's in 2 layers, below in 1 and neither in 20", or "neither above random's nor below in any
    layer" (and the untested layers, where any)."""
    better, worse, neither, untested = (family.count(v) for v in ("better", "worse", "neither", "untested"))
    if better == worse == 0:
        text = f"neither {above} nor {below} in any layer"
    else:
        text = f"{above} in {_layers(better)}, {below} in {_layers(worse)} and neither in {_layers(neither)}"
    return text + (f" ({_layers(untested)} untestable: no spread among random's seeds, or constant effects)"
                   if untested else "")


def finding_sentence(result: AtlasResult) -> str:
    """How many layers show eigenvector centrality better than random, worse, or neither: group ablation at
    each keep ratio and Spearman's rho, each test per layer, Holm-corrected over the layers."""
    total = len(result.layers)
    if total == 0:
        return "No layer was measured."
    settings, config = result.settings, result.config
    groups = [result.family("eigenvector", "group", keep) for keep in settings.keep_ratios]
    rho = result.family("eigenvector", "rho")
    significant = sum(f.count("better") + f.count("worse") for f in groups + [rho])
    scope = f"all {total}" if total == result.prunable_layers else f"{total} of the {result.prunable_layers}"
    opening = f"Across {scope} prunable layers of {config.backbone}"
    if significant == 0:
        opening += (", there is no evidence in any layer that eigenvector centrality picks the neurons that matter "
                    "better or worse than random")
    first, above = groups[0], "above random pruning's"
    parts = [f"{opening}: keeping {first.keep:.0%} of a layer's neurons by eigenvector centrality (no retraining) "
             f"gave validation accuracy {_counts(first, above, 'below it')}"]
    parts += [f"at {f.keep:.0%}, {_counts(f, 'above', 'below')}" for f in groups[1:]]
    parts.append(f"its Spearman rho with single neurons' ablation effect was {_counts(rho, 'above 0', 'below 0')}")
    how = (f"per layer, accuracy tested against {settings.seeds} random seeds' as a new draw and rho by "
           f"{settings.permutations:,} permutations; Holm-corrected over layers at {ALPHA:.0%}")
    return "; ".join(parts) + f" ({how})."


def geometry_gaps(result: AtlasResult, criterion: str = "eigenvector", column: int = 0) -> dict[str, np.ndarray]:
    """Per layer, at the ``column``-th keep ratio: the criterion's redundancy, coverage and accuracy minus
    random's mean, and whether its redundancy lies above every random seed's ("above_range")."""
    gaps = {"redundancy": [], "coverage": [], "accuracy": [], "above_range": [], "below_coverage_range": []}
    for layer in result.layers:
        for name, values in (("redundancy", layer.redundancy), ("coverage", layer.coverage),
                             ("accuracy", layer.curve.accuracy)):
            gaps[name].append(values[criterion][0, column] - values["random"][:, column].mean())
        gaps["above_range"].append(layer.redundancy[criterion][0, column] > layer.redundancy["random"][:, column].max())
        gaps["below_coverage_range"].append(layer.coverage[criterion][0, column] < layer.coverage["random"][:, column].min())
    return {name: np.array(values) for name, values in gaps.items()}


def _across_layers(x: np.ndarray, y: np.ndarray, resamples: int, seed: int):
    """Spearman's rho of x and y over the layers with its bootstrap interval: the ablation package's
    statistics, with layers as the units (x as the scores, y as the effects)."""
    n = len(x)
    units = AblationResult("layers", "across", n, np.arange(n), y, y, math.nan, math.nan, 0)
    return criterion_correlations(units, {"x": x[None]}, resamples=resamples, seed=seed)["x"]


def why_sentence(result: AtlasResult) -> str:
    """What eigenvector's kept sets look like against random's, at the first keep ratio, and whether that goes
    with the accuracy they keep across layers."""
    if not result.layers:
        return ""
    keep = result.settings.keep_ratios[0]
    gaps = geometry_gaps(result)
    defined = ~np.isnan(gaps["redundancy"]) & ~np.isnan(gaps["accuracy"])
    text = (f"Why: at keep {keep:g}, eigenvector's kept neurons are more alike than every random seed's (higher "
            f"mean pairwise cosine similarity) in {int(gaps['above_range'].sum())} of {len(result.layers)} layers, and "
            f"cover the removed neurons worse than every seed's (lower best similarity to a kept one) in "
            f"{int(gaps['below_coverage_range'].sum())}")
    if defined.sum() >= 5:
        c = _across_layers(gaps["redundancy"][defined], gaps["accuracy"][defined], result.settings.resamples,
                           result.config.seed)
        if not math.isnan(c.spearman):
            meaning = ("includes 0: no evidence that the extra redundancy is what costs accuracy"
                       if c.ci_low <= 0 <= c.ci_high else
                       "excludes 0: layers where its kept set is more redundant lose more accuracy" if c.ci_high < 0
                       else "excludes 0: layers where its kept set is more redundant keep more accuracy")
            text += (f"; across layers, its redundancy above random's and its accuracy above random's have Spearman rho "
                     f"{c.spearman:+.2f}, 95% CI [{c.ci_low:+.2f}, {c.ci_high:+.2f}], which {meaning}")
    return text + "."


def atlas_sentences(result: AtlasResult) -> tuple[str, str]:
    """(the finding, why) for the report, the README and the app."""
    return finding_sentence(result), why_sentence(result)
