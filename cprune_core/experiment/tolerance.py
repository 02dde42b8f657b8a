"""Does a per-layer figure predict how much a layer can lose? (``experiment tolerance``)

A layer's tolerance is measured by the atlas (``cprune_core.atlas``), with no retraining: the validation accuracy
of the trained model with part of the layer removed as structural pruning removes it, minus the unpruned model's,
at each of the atlas's keep ratios (0.5 and 0.25: half and three quarters of the neurons removed), keeping random
neurons (the mean over the atlas's random kept sets) and keeping the best criterion's (the criterion with the
highest accuracy in that layer, chosen after the fact). A layer of the atlas is a pruning group: a residual
stream's coupled layers are removed together, and a per-layer figure is their mean.

The candidate predictors, all from the weights alone: the ESD's tail exponent alpha (``spectral``; AlphaPruning
prunes layers with a larger alpha more), the stable rank, and how concentrated eigenvector centrality is (Gini,
top-10% share: the layer-wise table at the atlas's tau). The family of tests: every predictor against every
tolerance (4 x 4), each Spearman's rho over every layer of every backbone together, a 95% percentile bootstrap
interval resampling layers, a two-sided permutation p-value, Holm-corrected over the 16. A second family asks the
same 16 questions with the layer's width held fixed (partial Spearman rho given its neurons): a wider layer loses
less, and a figure that tracks width would otherwise seem to predict tolerance.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from ..atlas import AtlasRecords, AtlasResult
from ..errors import ConfigError
from ..layer_report import layerwise_rows
from ..model_source import BackboneSource
from ..stats import (holm, minimum_detectable_rho, partial_spearman, partial_spearman_interval, partial_spearman_p,
                     rank_correlation_p, spearman)
from .settings import PREDICTORS

__all__ = ["RESAMPLES", "PERMUTATIONS", "ALPHA", "Association", "tolerance_columns", "tolerance_rows",
           "tolerance_reliability",
           "predictor_rows", "tolerance_table", "choose_atlas", "spearman_interval", "associations",
           "detectable_rho"]

RESAMPLES = 10_000
PERMUTATIONS = 9_999
ALPHA = 0.05  # family-wise error rate of the Holm-corrected family


def tolerance_columns(keep_ratios) -> list[str]:
    """The tolerance columns of a table at these keep ratios: random's and the best criterion's at each."""
    return [f"{kind}_keep{keep:g}" for keep in keep_ratios for kind in ("random", "best")]


def tolerance_rows(result: AtlasResult) -> list[dict]:
    """One row per layer of the atlas ``result``: backbone, layer, the group's layers, depth, neurons, the unpruned
    validation accuracy and its number of validation images, and for each keep ratio the accuracy minus it keeping random neurons (mean over the random
    kept sets, with that mean's standard error over them: NaN from a single set) and keeping the best criterion's
    (with that criterion's name)."""
    rows = []
    for layer in result.layers:
        curve = layer.curve
        row = {"backbone": result.backbone, "layer": layer.layer, "group": " ".join([layer.layer, *layer.coupled]),
               "depth": layer.depth, "neurons": layer.neurons, "full_acc": curve.full_acc,
               "images": layer.result.n_images}
        for column, keep in enumerate(curve.keep_ratios):
            others = {name: float(np.mean(rows_[:, column])) for name, rows_ in curve.accuracy.items()
                      if name != "random"}
            best = max(others, key=others.get)
            draws = curve.accuracy["random"][:, column]
            row[f"random_keep{keep:g}"] = float(draws.mean()) - curve.full_acc
            row[f"random_se_keep{keep:g}"] = float(draws.std(ddof=1) / math.sqrt(len(draws))) if len(draws) > 1 else math.nan
            row[f"best_keep{keep:g}"] = others[best] - curve.full_acc
            row[f"best_criterion_keep{keep:g}"] = best
        rows.append(row)
    return rows


def tolerance_reliability(means: Sequence[float], standard_errors: Sequence[float]) -> float:
    """How much of the spread of the layers' random tolerances is the layers' and not their random kept sets':
    1 - mean(SE^2) / var(means), the reliability of a mean measured with known sampling error (classical test
    theory: true variance over observed variance; Spearman's attenuation ceiling on any correlation with it is its
    square root).

    Parameters
    ----------
    means : each layer's tolerance, the mean over its random kept sets (``tolerance_rows``' ``random_keep*``).
    standard_errors : each layer's standard error of that mean over its sets (``random_se_keep*``).

    Returns
    -------
    float in (-inf, 1]: 1 when the draws add no noise; at or below 0 when the layers' differences are no larger than
    the draws' noise. NaN with fewer than 3 layers, any standard error undefined (one set), or no spread at all.
    What it leaves out: every set is measured on the same validation images, so their sampling is not in it.

    Raises
    ------
    ConfigError : the two sequences differ in length.

    Example
    -------
    >>> round(tolerance_reliability([-0.1, -0.2, -0.3, -0.4], [0.01, 0.01, 0.01, 0.01]), 4)
    0.9994
    """
    means, errors = np.asarray(means, dtype=float), np.asarray(standard_errors, dtype=float)
    if means.shape != errors.shape:
        raise ConfigError(f"tolerance_reliability needs one standard error per layer; got {means.size} tolerances and "
                          f"{errors.size} standard errors.")
    if means.size < 3 or np.isnan(errors).any() or np.isnan(means).any() or np.ptp(means) == 0:
        return math.nan
    return 1.0 - float(np.mean(errors ** 2)) / float(means.var(ddof=1))


def predictor_rows(source: BackboneSource, groups: list[list[str]], tau: float) -> list[dict]:
    """Each group's predictors (PREDICTORS): the mean over its layers of their layer-wise table figures at ``tau``
    (NaN where every layer's figure is undefined)."""
    table = pd.DataFrame(layerwise_rows(source, tau)).set_index("layer")
    rows = []
    for group in groups:
        values = table.loc[group, list(PREDICTORS)].astype(float)
        rows.append({name: float(values[name].mean()) if values[name].notna().any() else math.nan
                     for name in PREDICTORS})
    return rows


def choose_atlas(backbone: str, records: AtlasRecords | None = None) -> AtlasResult:
    """The atlas of ``backbone`` to read: of the recorded and reference runs (``AtlasRecords.runs``), the one
    covering the most layers, a reference run first among equals, then the newest. ConfigError when there is none."""
    records = records or AtlasRecords()
    runs = records.runs(backbone)
    if runs:
        chosen = max(runs, key=lambda entry: (entry.layers, entry.reference, entry.created))
        result = records.read(chosen)
        if result is not None:
            return result
    raise ConfigError(f"No atlas of {backbone} is recorded: measure one first with `python -m cprune_core experiment "
                      f"atlas --backbones {backbone}` (add --quick for a small one).")


def tolerance_table(results: list[AtlasResult]) -> pd.DataFrame:
    """Every layer of every atlas: its tolerances (``tolerance_rows``) and predictors (``predictor_rows``, from the
    atlas's backbone and weights at its tau)."""
    frames = []
    for result in results:
        rows = tolerance_rows(result)
        config = result.config
        source = BackboneSource.load(config.backbone, config.weights, config.checkpoint)
        predictors = predictor_rows(source, [row["group"].split() for row in rows], result.settings.tau)
        frames.append(pd.DataFrame([{**row, **values} for row, values in zip(rows, predictors)]))
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class Association:
    """One test of the family: Spearman's rho of a predictor with a tolerance over ``n`` layers (with ``given``, a
    column held fixed: the partial rho), its bootstrap interval, its permutation p-value and Holm's adjusted
    p-value."""

    predictor: str
    tolerance: str
    n: int
    rho: float
    low: float
    high: float
    p: float
    adjusted: float
    given: str | None = None

    @property
    def significant(self) -> bool:
        return self.adjusted < ALPHA


def spearman_interval(x: np.ndarray, y: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float]:
    """The percentile bootstrap interval of Spearman's rho, resampling the paired units with replacement; a
    resample with a constant side is left out. (NaN, NaN) for fewer than 3 units."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        return math.nan, math.nan
    picks = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    rx, ry = scipy_stats.rankdata(x[picks], axis=1), scipy_stats.rankdata(y[picks], axis=1)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    scale = np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    rhos = (rx * ry).sum(1)[scale > 0] / scale[scale > 0]
    if len(rhos) == 0:
        return math.nan, math.nan
    low, high = np.percentile(rhos, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def associations(table: pd.DataFrame, predictors, tolerances, *, given: str | None = None,
                 resamples: int = RESAMPLES, permutations: int = PERMUTATIONS, seed: int = 0) -> list[Association]:
    """The family of tests: each predictor column of ``table`` against each tolerance column.

    Parameters
    ----------
    table : one row per layer (NaN: the layer is left out of the tests that need that value).
    predictors, tolerances : column names.
    given : a column held fixed (e.g. "neurons"): each test is then the partial Spearman rho given it
        (``stats.partial_spearman``): what a predictor says about a tolerance beyond what that column says.
    resamples, permutations, seed : of the bootstrap intervals and the permutation tests.

    Returns
    -------
    One ``Association`` per pair, predictors outer: rho over the layers where its values are defined, its
    percentile interval, the two-sided permutation p-value (``stats.rank_correlation_p`` or
    ``stats.partial_spearman_p``, refined where it lies near a Holm threshold) and Holm's adjusted p-value over the
    whole family (an undefined p: too few layers or a constant column, is not counted).

    Example: a tolerance equal to a predictor plus small noise over 40 layers gives rho near 1 and an adjusted p
    near 1 / (permutations + 1) times the family's size.
    """
    found, family = [], len(predictors) * len(tolerances)
    for predictor in predictors:
        for tolerance in tolerances:
            columns = [predictor, tolerance, *([given] if given else [])]
            pair = table[columns].astype(float).dropna()
            x, y = pair[predictor].to_numpy(), pair[tolerance].to_numpy()
            # A p-value whose Monte Carlo interval straddles a Holm threshold is drawn again with more permutations.
            refine = (ALPHA / family, ALPHA)
            if given is None:
                rho = spearman(x, y)
                low, high = spearman_interval(x, y, resamples=resamples, seed=seed)
                p = rank_correlation_p(x, y, permutations=permutations, seed=seed, refine=refine)[0].p
            else:
                z = pair[given].to_numpy()
                rho = partial_spearman(x, y, z)
                low, high = partial_spearman_interval(x, y, z, resamples=resamples, seed=seed)
                p = partial_spearman_p(x, y, z, permutations=permutations, seed=seed, refine=refine).p
            found.append(Association(predictor, tolerance, len(x), rho, low, high, p, math.nan, given))
    adjusted = holm([association.p for association in found])
    return [Association(**{**a.__dict__, "adjusted": float(value)}) for a, value in zip(found, adjusted)]


def detectable_rho(n: int, family: int) -> float:
    """The smallest |rho| the family's most significant test detects with 80% power among ``n`` layers (Holm's
    first step: level ALPHA / family)."""
    return minimum_detectable_rho(n, ALPHA / family)
