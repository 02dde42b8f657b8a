"""The atlas's finding in words, generated from its numbers: the primary tests pooled over layers first, then what
each layer's own tests could and could not detect, then what the kept sets look like."""
from __future__ import annotations

import math

import numpy as np

from ..ablation import AblationResult, criterion_correlations
from .pooled import PooledTests, pooled_tests
from .result import TIED_FLAG, AtlasResult
from .significance import ALPHA

__all__ = ["atlas_sentences", "pooled_sentence", "layers_sentence", "why_sentence", "geometry_gaps"]


def _layers(count: int) -> str:
    return "no layer" if count == 0 else f"{count} layer{'s' * (count != 1)}"


def _scope(results: list[AtlasResult], layers: int) -> str:
    names = [r.backbone for r in results]
    backbones = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
    return f"the {layers} layers of {backbones}"


def _holm(p: float) -> str:
    return f"Holm p {p:.2g}" if p >= 1e-4 else "Holm p < 0.0001"


def pooled_sentence(pooled: PooledTests, results: list[AtlasResult]) -> str:
    """The primary family of ``pooled.criterion``: its pooled rho and, at each keep ratio, its kept sets' accuracy
    against random kept sets', with Holm's p over the family and what the pooled rho test could detect."""
    meta, name = pooled.rho, pooled.criterion
    if meta.k < 2:
        return f"Fewer than 2 layers had a defined rho for {name}: nothing is pooled."
    verdict = "differs from 0" if pooled.significant(0) else "could not be told from 0"
    parts = [f"Pooled over {_scope(results, pooled.layers)} (the primary tests, Holm-corrected together), {name}'s "
             f"Spearman rho with single neurons' ablation effect is {meta.rho:+.2f}, 95% CI [{meta.ci_low:+.2f}, "
             f"{meta.ci_high:+.2f}] (random-effects meta-analysis, {_holm(pooled.adjusted[0])}: it {verdict}; the test "
             f"detects |rho| >= {meta.mde:.2f} with 80% power; between-layer I2 {100 * meta.i2:.0f}%)"]
    for index, (keep, paired) in enumerate(zip(pooled.keep_ratios, pooled.group), start=1):
        if math.isnan(paired.mean):
            continue
        side = "above" if paired.mean > 0 else "below"
        told = "" if pooled.significant(index) else "; could not be told from 0"
        parts.append(f"keeping {keep:.0%} of a layer's neurons by {name} (no retraining) gives validation accuracy "
                     f"{abs(paired.mean):.1f} points {side} random kept sets' mean on average, 95% CI "
                     f"[{paired.ci_low:+.1f}, {paired.ci_high:+.1f}] (above in {paired.above}, below in {paired.below}; "
                     f"Wilcoxon signed-rank, {_holm(pooled.adjusted[index])}{told})")
    return "; ".join(parts) + "."


def layers_sentence(results: list[AtlasResult], criterion: str = "eigenvector") -> str:
    """What the layers' own tests could detect, and what they found: the effects' reliability and the ceiling it
    puts on rho, the minimum detectable rho, the Holm verdicts, the group test's smallest attainable p, and the
    layers where ties decided a kept set."""
    layers = [(result, layer) for result in results for layer in result.layers]
    if not layers:
        return "No layer was measured."
    reliability = np.array([layer.reliability.full for _, layer in layers])
    ceiling = np.array([layer.reliability.ceiling for _, layer in layers])
    mde = np.array([result.minimum_detectable_rho(layer) for result, layer in layers])
    blind = int(np.sum(ceiling < mde))
    rho = [result.family(criterion, "rho") for result in results]
    better, worse = sum(f.count("better") for f in rho), sum(f.count("worse") for f in rho)
    groups = [result.family(criterion, "group") for result in results]
    floor = float(np.nanmin([p for f in groups for p in f.detectable]))
    holm_first = ALPHA / max(len(result.layers) for result in results)
    tied = sum(any(result.tied(layer, criterion, keep) > TIED_FLAG for keep in result.settings.keep_ratios)
               for result, layer in layers)
    text = (f"Layer by layer (secondary tests, Holm over each backbone's layers): the single-neuron effects' split-half "
            f"reliability (Spearman-Brown) has median {np.nanmedian(reliability):.2f} (from {np.nanmin(reliability):.2f} "
            f"to {np.nanmax(reliability):.2f}), which caps any criterion's |rho| at {np.nanmedian(ceiling):.2f} in the "
            f"median layer; each layer's rho test detects |rho| >= {np.nanmedian(mde):.2f} (median; "
            f"{np.nanmin(mde):.2f} to {np.nanmax(mde):.2f}) with 80% power, so in {_layers(blind)} even a perfect "
            f"criterion could not have passed; {criterion}'s rho was above 0 in {_layers(better)} and below in "
            f"{_layers(worse)}, and the other layers could not tell")
    if floor > holm_first:
        text += (f"; the group test's smallest attainable p ({floor:.3f}, from its random kept sets) lies above Holm's "
                 f"first threshold ({holm_first:.4f}), so no single layer's group test could be significant")
    if tied:
        text += (f"; in {_layers(tied)} ties decided more than {TIED_FLAG:.0%} of {criterion}'s kept set (broken "
                 "several ways at random and averaged)")
    return text + "."


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


def why_sentence(results: list[AtlasResult]) -> str:
    """What eigenvector's kept sets look like against random's, at the first keep ratio, and whether that goes
    with the accuracy they keep across layers."""
    layers = sum(len(result.layers) for result in results)
    if not layers:
        return ""
    keep = results[0].settings.keep_ratios[0]
    each = [geometry_gaps(result) for result in results]
    gaps = {name: np.concatenate([g[name] for g in each]) for name in each[0]}
    defined = ~np.isnan(gaps["redundancy"]) & ~np.isnan(gaps["accuracy"])
    text = (f"Why: at keep {keep:g}, eigenvector's kept neurons are more alike than every random kept set's (higher "
            f"mean pairwise cosine similarity) in {int(gaps['above_range'].sum())} of {layers} layers, and cover the "
            f"removed neurons worse than every random kept set's (lower best similarity to a kept one) in "
            f"{int(gaps['below_coverage_range'].sum())}")
    if defined.sum() >= 5:
        c = _across_layers(gaps["redundancy"][defined], gaps["accuracy"][defined], results[0].settings.resamples,
                           results[0].config.seed)
        if not math.isnan(c.spearman):
            meaning = ("includes 0: it could not tell whether the extra redundancy is what costs accuracy"
                       if c.ci_low <= 0 <= c.ci_high else
                       "excludes 0: layers where its kept set is more redundant lose more accuracy" if c.ci_high < 0
                       else "excludes 0: layers where its kept set is more redundant keep more accuracy")
            text += (f"; across layers, its redundancy above random's and its accuracy above random's have Spearman rho "
                     f"{c.spearman:+.2f}, 95% CI [{c.ci_low:+.2f}, {c.ci_high:+.2f}], which {meaning}")
    return text + "."


def atlas_sentences(results: list[AtlasResult] | AtlasResult) -> tuple[str, str, str]:
    """(the primary finding, what the layers could detect, why) for the report, the guides and the app: for one
    atlas, or pooled over several (one per backbone)."""
    results = [results] if isinstance(results, AtlasResult) else list(results)
    if not any(result.layers for result in results):
        return "No layer was measured.", "", ""
    return pooled_sentence(pooled_tests(results), results), layers_sentence(results), why_sentence(results)
