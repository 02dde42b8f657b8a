"""The tolerance report: tolerance.md (generated), tolerance.csv (every layer) and tolerance.png."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..atlas import AtlasResult
from ..figures import finish_panel, pyplot, save_figure
from ..paths import atomic_write
from ..stats import correlation_ceiling
from .settings import PREDICTORS
from .tolerance import ALPHA, RESAMPLES, Association, detectable_rho, tolerance_reliability

__all__ = ["tolerance_sentence", "beyond_width_sentence", "plot_tolerance", "write_tolerance_report"]

TOLERANCE_WORDS = {"random": "keeping random neurons", "best": "keeping the best criterion's"}


def _tolerance_label(column: str) -> str:
    """"random_keep0.5" -> "keeping random neurons, half removed"."""
    kind, keep = column.split("_keep")
    return f"{TOLERANCE_WORDS[kind]}, {1 - float(keep):.0%} removed"


def _test(a: Association) -> str:
    return (f"{PREDICTORS.get(a.predictor, a.predictor)} with the accuracy change {_tolerance_label(a.tolerance)}: "
            f"rho {a.rho:+.2f} [{a.low:+.2f}, {a.high:+.2f}], Holm p {a.adjusted:.2g}, {a.n} layers")


def _strongest(found: list[Association]) -> str:
    """The test with the largest |rho|, as words; what to say where no rho is defined (too few layers)."""
    defined = [a for a in found if not math.isnan(a.rho)]
    if not defined:
        return "no rho is defined (too few layers, or a constant column)"
    return _test(max(defined, key=lambda a: abs(a.rho)))


def tolerance_sentence(found: list[Association], backbones: list[str]) -> str:
    """What the family of tests shows, in one paragraph, whichever way it goes."""
    n = max(a.n for a in found)
    power = (f"With {n} layers, the family's first test detects |rho| >= {detectable_rho(n, len(found)):.2f} with "
             f"80% power.")
    where = f"Across the {n} layers of {', '.join(backbones)} (the atlas's measurements, no retraining)"
    passed = [a for a in found if a.significant]
    if not passed:
        return (f"{where}, no per-layer figure's rank correlation with what a layer loses survives Holm's correction "
                f"over the {len(found)} tests at {ALPHA:.0%}; the strongest: {_strongest(found)}. {power}")
    said = "; ".join(f"{_test(a)} (layers with a larger {PREDICTORS[a.predictor].split(' (')[0]} lose "
                     f"{'less' if a.rho > 0 else 'more'})" for a in passed)
    return f"{where}, {len(passed)} of the {len(found)} tests survive Holm's correction at {ALPHA:.0%}: {said}. {power}"


def beyond_width_sentence(found: list[Association]) -> str:
    """What the second family shows: each predictor with a tolerance, the layer's width held fixed (partial
    Spearman rho), whichever way it goes. Its detectable rho counts one layer fewer: the width held fixed costs a
    degree of freedom."""
    n = max(a.n for a in found)
    power = f"with {n} layers its first test detects |rho| >= {detectable_rho(n - 1, len(found)):.2f} with 80% power"
    passed = [a for a in found if a.significant]
    where = (f"With each layer's width held fixed (partial Spearman rho given its neurons; a second family of "
             f"{len(found)} tests, Holm-corrected at {ALPHA:.0%}; {power})")
    if not passed:
        return f"{where}, no figure predicts what a layer loses beyond its width; the strongest: {_strongest(found)}."
    said = "; ".join(_test(a) for a in passed)
    return f"{where}, {len(passed)} of the {len(found)} tests survive: {said}."


def reliability_sentence(table: pd.DataFrame, keep_ratios) -> str:
    """How repeatable the layers' random tolerances are over their random kept sets, at each keep ratio
    (``tolerance.tolerance_reliability``), and a lower bound with the validation images' sampling counted at its
    largest (an accuracy on N images has a binomial standard error of at most 0.5 / sqrt(N))."""
    images_variance = 0.25 / table["images"].astype(float)
    parts, bounds = [], []
    for keep in keep_ratios:
        means, errors = table[f"random_keep{keep:g}"], table[f"random_se_keep{keep:g}"]
        value = tolerance_reliability(means, errors)
        bound = tolerance_reliability(means, (errors ** 2 + images_variance) ** 0.5)
        parts.append(f"not measurable keeping {keep:g} (fewer than 3 layers, a layer with one set, or no spread)"
                     if math.isnan(value) else
                     f"{value:.3f} keeping {keep:g} (a ceiling of {correlation_ceiling(value):.2f} on any rho with it)")
        bounds.append(f"{bound:.3f} keeping {keep:g}")
    images = table["images"]
    counted = f"{images.min()}" if images.min() == images.max() else f"{images.min()}-{images.max()}"
    return (f"A layer's random tolerance is the mean over its random kept sets; over the {len(table)} layers, the share "
            "of its spread that is the layers' and not their sets' (1 - mean squared standard error / variance across "
            f"layers) is {' and '.join(parts)}. The validation images ({counted} per atlas) are the same for every set, "
            "so their sampling is not in that figure; counted at its largest (a binomial standard error of "
            f"0.5 / sqrt(images) added to every layer's), the reliability is still at least {' and '.join(bounds)}. "
            "The best criterion's tolerance is one kept set per criterion, chosen after the fact: there is no second "
            "draw to measure its repeatability.")


def plot_tolerance(table: pd.DataFrame, found: list[Association], tolerance: str, path: Path) -> None:
    """One panel per predictor: each layer's accuracy change at ``tolerance`` against the predictor, a colour per
    backbone, the test's rho and Holm p in the title."""
    plt = pyplot()

    figure, axes = plt.subplots(1, len(PREDICTORS), figsize=(4.2 * len(PREDICTORS), 3.8), squeeze=False)
    tests = {(a.predictor, a.tolerance): a for a in found}
    for axis, predictor in zip(axes[0], PREDICTORS):
        for backbone, rows in table.groupby("backbone", sort=False):
            axis.scatter(rows[predictor], 100 * rows[tolerance], s=18, label=backbone, alpha=0.8)
        test = tests[(predictor, tolerance)]
        finish_panel(axis, PREDICTORS[predictor], None, f"rho {test.rho:+.2f}, Holm p {test.adjusted:.2g}",
                     legend=False, title_size=10)
    axes[0][0].set_ylabel(f"accuracy change (points)\n{_tolerance_label(tolerance)}")
    axes[0][-1].legend(fontsize=8)
    save_figure(figure, path)


def _rows(found: list[Association]) -> list[str]:
    rho = "partial Spearman rho" if any(a.given for a in found) else "Spearman rho"
    lines = [f"| predictor | accuracy change | layers | {rho} [95% CI] | p | Holm p |", "|---|---|---|---|---|---|"]
    for a in found:
        lines.append(f"| {PREDICTORS.get(a.predictor, a.predictor)} | {_tolerance_label(a.tolerance)} | {a.n} | "
                     f"{a.rho:+.2f} [{a.low:+.2f}, {a.high:+.2f}] | {a.p:.2g} | "
                     + ("reference" if math.isnan(a.adjusted) else f"{a.adjusted:.2g}{'*' if a.significant else ''}")
                     + " |")
    return lines


def write_tolerance_report(table: pd.DataFrame, found: list[Association], reference: list[Association],
                           beyond_width: list[Association], atlases: list[AtlasResult], out_dir: Path, *,
                           command: str, elapsed_s: float, stem: str = "tolerance") -> dict[str, Path]:
    """<stem>.md, <stem>.csv (one row per layer: its tolerances and predictors) and <stem>.png in ``out_dir``.
    ``reference``: tests outside the family (the layer's width), shown with their own p-values; ``beyond_width``:
    the second family (the same tests, width held fixed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / f"{stem}.md", "csv": out_dir / f"{stem}.csv", "png": out_dir / f"{stem}.png"}
    atomic_write(paths["csv"], lambda temporary: table.to_csv(temporary, index=False, float_format="%.6g"))
    primary = found[0].tolerance if found else "random_keep0.5"
    plot_tolerance(table, found, primary, paths["png"])
    backbones = list(dict.fromkeys(table["backbone"]))
    runs = [f"{a.backbone}: {len(a.layers)} of its {a.prunable_layers} prunable groups, {a.config.dataset} "
            f"(validation accuracy {a.baseline.val_acc:.1%}), keep ratios {', '.join(f'{k:g}' for k in a.settings.keep_ratios)}, "
            f"{a.settings.seeds} random kept sets at most" for a in atlases]
    text = ["# Does a per-layer figure predict how much a layer can lose?", "",
            f"Generated by `{command}` in {elapsed_s / 60:.1f} minutes. Do not edit by hand. The atlases read: "
            + "; ".join(runs) + ".", "", f"**Finding:** {tolerance_sentence(found, backbones)}", "",
            f"**Beyond width:** {beyond_width_sentence(beyond_width)}", "",
            "How it is measured: a layer's tolerance is the validation accuracy of the trained model with part of the "
            "layer removed as structural pruning removes it (a residual stream's coupled layers together), no "
            "retraining, minus the unpruned model's, keeping random neurons (the mean over the atlas's random kept "
            "sets) or the best criterion's (the criterion with the highest accuracy in that layer, chosen after the "
            "fact). The predictors come from the weights alone: alpha, the power-law exponent of the tail of the "
            "eigenvalues of WᵀW (Clauset-Shalizi-Newman fit, WeightWatcher's conventions; docs/science.md), the "
            "stable rank, and eigenvector centrality's Gini coefficient and top-10% share at the atlas's tau; a "
            "group's value is its layers' mean. Each test is Spearman's rho over every layer of every backbone "
            f"together, a 95% percentile bootstrap interval over layers ({RESAMPLES:,} resamples), a two-sided "
            f"permutation p-value, and Holm's correction over the family of {len(found)} tests (family-wise error "
            f"{ALPHA:.0%}; * marks a test that survives it). The layer's width (its neurons) is shown as a reference, "
            "outside the family: a figure that predicts no better than width adds nothing.", "",
            f"**How repeatable:** {reliability_sentence(table, atlases[0].settings.keep_ratios)}", "",
            f"![tolerance against each predictor]({paths['png'].name})", "", "## The family of tests", "",
            *_rows(found), "", "## Reference: the layer's width", "", *_rows(reference), "",
            "## Beyond width: the same tests with the layer's width held fixed", "",
            "Each test is the partial Spearman rho of a predictor with a tolerance given the layer's neurons (both "
            "ranked, each regressed on the width's ranks, the residuals correlated), its 95% percentile bootstrap "
            "interval over layers, a permutation p-value (Freedman and Lane 1983: the tolerance's residuals "
            "permuted, regressed on the width again, correlated with the predictor's), and Holm's "
            f"correction over these {len(beyond_width)} tests, a family of their own.", "",
            *_rows(beyond_width), "",
            f"Every layer, its tolerances and predictors: [{paths['csv'].name}]({paths['csv'].name})."]
    atomic_write(paths["md"], lambda temporary: Path(temporary).write_text("\n".join(text) + "\n"))
    return paths
