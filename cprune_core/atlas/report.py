"""``experiment atlas``: one atlas, or one per backbone, as a report.

``write_atlas_report`` writes <stem>.md (generated: the primary tests first, then what each layer could detect and
found), <stem>.csv (one row per backbone, layer and criterion, with each layer's reliability, ceiling, minimum
detectable rho and tied fractions beside every test) and <stem>-<backbone>.png (a heatmap per backbone: layers in
network order by criteria; cells whose test survives Holm's correction over layers are starred, kept sets a tie
decided by more than a quarter are marked with a dagger).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..experiment.importance_report import dataset_label
from ..figures import pyplot, save_figure
from ..paths import atomic_write
from .pooled import PooledTests, pooled_tests
from .records import write_reference
from .result import TIED_FLAG, AtlasResult, Family
from .sentence import atlas_sentences
from .settings import DEFAULT_SAMPLE, SEQUENTIAL_HITS
from .significance import ALPHA

__all__ = ["atlas_table", "HeatmapPanel", "heatmap_criteria", "heatmap_panels", "plot_atlas", "write_atlas_report",
           "pooled_rows"]


def _layer_columns(result: AtlasResult, layer) -> dict:
    r = layer.reliability
    return {"backbone": result.backbone, "position": layer.position, "layer": layer.layer, "depth": layer.depth,
            "kind": layer.kind, "neurons": layer.neurons, "coupled": " ".join(layer.coupled),
            "method": layer.result.method, "measured": layer.measured, "val_images": layer.result.n_images,
            "heads": layer.result.heads, "full_val_acc": layer.result.full_acc, "reliability_half": r.half,
            "reliability": r.full, "ceiling": r.ceiling, "mde_rho": result.minimum_detectable_rho(layer),
            "random_draws": layer.random_draws, "seconds": round(layer.seconds, 1)}


def _group_columns(result: AtlasResult, layer, index: int, name: str, families: dict) -> dict:
    row = {}
    for column, keep in enumerate(result.settings.keep_ratios):
        at = f"keep{keep:g}"
        accuracy, random = layer.curve.accuracy[name][:, column], layer.curve.accuracy["random"][:, column]
        p, family = layer.group_p[name][column], families.get(("group", keep))
        row.update({f"acc_{at}": accuracy.mean(), f"acc_vs_random_{at}": accuracy.mean() - random.mean(),
                    f"random_min_{at}": random.min(), f"random_max_{at}": random.max(),
                    f"tied_{at}": float(layer.curve.tied[name][:, column].mean()), f"group_p_{at}": p.p,
                    f"group_p_holm_{at}": family.adjusted[index] if family else math.nan,
                    f"group_verdict_{at}": family.verdicts[index] if family else "",
                    f"redundancy_{at}": layer.redundancy[name][:, column].mean(),
                    f"coverage_{at}": layer.coverage[name][:, column].mean()})
    return row


def atlas_table(results: list[AtlasResult]) -> pd.DataFrame:
    """One row per backbone, layer and criterion: the layer and what it could detect (reliability, ceiling, minimum
    detectable rho), rho with its two-way interval, permutation p-value (with its Monte Carlo interval and
    permutations) and Holm's, and at each keep ratio the group-ablation accuracy, its difference from random kept
    sets' mean, the tied fraction, the rank p-value and Holm's, the redundancy and coverage."""
    rows = []
    for result in results:
        families = {name: {(f.test, f.keep): f for f in result.families(name)} for name in result.criteria
                    if name != "random"}
        for index, layer in enumerate(result.layers):
            base = _layer_columns(result, layer)
            for name, c in layer.correlations.items():
                tests, p = families.get(name, {}), layer.rho_p[name]
                row = {**base, "criterion": name, "rho": c.spearman, "rho_ci_low": c.ci_low, "rho_ci_high": c.ci_high,
                       "rho_p": p.p, "rho_p_mc_low": p.low, "rho_p_mc_high": p.high, "rho_permutations": p.draws,
                       "rho_p_holm": tests[("rho", None)].adjusted[index] if tests else math.nan,
                       "rho_verdict": tests[("rho", None)].verdicts[index] if tests else ""}
                rows.append({**row, **_group_columns(result, layer, index, name, tests)})
    return pd.DataFrame(rows)


def _heatmap(axis, panel: HeatmapPanel, names: list[str]):
    image = axis.imshow(panel.values, cmap="RdBu", vmin=-panel.limit, vmax=panel.limit, aspect="auto")
    marks, tied = panel.significant, panel.tied > TIED_FLAG
    for (row, column), value in np.ndenumerate(panel.values):
        if not math.isnan(value):
            text = f"{value:+.{panel.digits}f}" + ("*" if marks[row, column] else "") + ("†" if tied[row, column] else "")
            axis.text(column, row, text, ha="center", va="center", fontsize=6,
                      fontweight="bold" if marks[row, column] else "normal",
                      color="white" if abs(value) > 0.6 * panel.limit else "black")
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    axis.set_title(panel.title, fontsize=9)
    return image


@dataclass(frozen=True)
class HeatmapPanel:
    """One colouring of the atlas heatmap (the report's picture draws each; the app offers them as a choice):
    a value per layer (rows, in network order) and criterion (columns, ``heatmap_criteria``), its test's
    p-values before and after Holm's correction over layers (NaN: no test), what the test could detect, the kept
    sets' tied fraction, and how to draw it."""

    title: str  # a line break where the picture's panel title wraps
    values: np.ndarray  # layers x criteria
    p: np.ndarray
    adjusted: np.ndarray
    verdicts: list[list[str]]  # per layer, per criterion: better, worse, not detected, untested
    detectable: np.ndarray  # layers x criteria: the minimum detectable |rho|, or the smallest attainable p
    tied: np.ndarray  # layers x criteria: the share of the kept set a tie decided (0 for rho)
    limit: float  # the colour scale runs from -limit to +limit
    digits: int

    @property
    def significant(self) -> np.ndarray:
        """Where the test survives the correction."""
        return np.array([[v in ("better", "worse") for v in row] for row in self.verdicts], dtype=bool)


def heatmap_criteria(result: AtlasResult) -> list[str]:
    """The heatmap's columns: every criterion but random, the reference."""
    return [name for name in result.criteria if name != "random"]


def _tested(families: list[Family], tied: np.ndarray, scale: float, title: str, limit: float, digits: int) -> HeatmapPanel:
    def stacked(name: str) -> np.ndarray:
        return np.stack([getattr(f, name) for f in families], axis=1)

    return HeatmapPanel(title, stacked("effects") * scale, stacked("p"), stacked("adjusted"),
                        [list(row) for row in zip(*(f.verdicts for f in families))], stacked("detectable"), tied,
                        limit, digits)


def heatmap_panels(result: AtlasResult) -> list[HeatmapPanel]:
    """rho; accuracy against random kept sets' mean (points) at each keep ratio; and the kept sets' redundancy
    against random's at the first keep ratio (no test)."""
    names, rows = heatmap_criteria(result), len(result.layers)
    untied = np.zeros((rows, len(names)))
    panels = [_tested([result.family(n, "rho") for n in names], untied, 1.0,
                      "Spearman rho with single-neuron\nablation effect", 0.5, 2)]
    for keep in result.settings.keep_ratios:
        tied = np.array([[result.tied(layer, n, keep) for n in names] for layer in result.layers]).reshape(rows, -1)
        panels.append(_tested([result.family(n, "group", keep) for n in names], tied, 100.0,
                              f"val accuracy minus random's mean\n(points), keep {keep:g}", 10.0, 0))
    redundancy = np.array([[layer.redundancy[n][0, 0] - layer.redundancy["random"][:, 0].mean() for n in names]
                           for layer in result.layers]).reshape(rows, len(names))
    untested = np.full(redundancy.shape, math.nan)
    panels.append(HeatmapPanel(f"kept neurons' redundancy minus\nrandom's, keep {result.settings.keep_ratios[0]:g} "
                               "(no test)", redundancy, untested, untested, [["untested"] * len(names)] * rows,
                               untested, panels[1].tied, 0.1, 2))
    return panels


def plot_atlas(result: AtlasResult, path: Path) -> None:
    """The heatmap of one atlas: layers (network order; depth, name, kind, neurons, and the effects' reliability)
    by criteria (random, the reference, left out), one panel for rho, one per keep ratio for accuracy minus random
    kept sets' mean (points), and one for the kept sets' redundancy against random's; a star where the layer's test
    survives Holm's correction over layers, a dagger where ties decided more than a quarter of the kept set."""
    plt = pyplot()

    names, panels = heatmap_criteria(result), heatmap_panels(result)
    rows = len(result.layers)
    figure, axes = plt.subplots(1, len(panels), figsize=(3.9 * len(panels) + 3.6, 0.32 * rows + 2.6), sharey=True)
    for axis, panel in zip(np.atleast_1d(axes), panels):
        figure.colorbar(_heatmap(axis, panel, names), ax=axis, shrink=0.6, pad=0.02)
    labels = [f"{layer.label}  r={layer.reliability.full:.2f}" for layer in result.layers]
    np.atleast_1d(axes)[0].set_yticks(range(rows), labels, fontsize=7)
    figure.suptitle(f"{result.backbone} on {dataset_label(result.config)}: does each criterion beat random, layer by "
                    f"layer? Rows: depth, layer (kind, neurons), r = the effects' reliability. * Holm-adjusted p < "
                    f"{ALPHA:g} over layers; † ties decided > {TIED_FLAG:.0%} of the kept set", fontsize=9)
    save_figure(figure, path, dpi=90, bbox_inches="tight")


def _number(value: float, digits: int = 2, sign: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _p(value: float) -> str:
    return "-" if math.isnan(value) else (f"{value:.2g}" if value >= 1e-4 else "< 0.0001")


def pooled_rows(pooled: PooledTests, scope: str) -> list[str]:
    """The rows of one primary family: the pooled rho, then each keep ratio's paired accuracy difference."""
    meta = pooled.rho
    rows = [f"| {scope} | {pooled.criterion}: rho with single neurons' effect (random-effects meta-analysis, "
            f"{meta.k} layers) | {_number(meta.rho)} [{_number(meta.ci_low)}, {_number(meta.ci_high)}] | "
            f"{_p(meta.p)} | {_p(pooled.adjusted[0])} | \\|rho\\| >= {_number(meta.mde, sign=False)}; I2 "
            f"{100 * meta.i2:.0f}% |"]
    for index, (keep, paired) in enumerate(zip(pooled.keep_ratios, pooled.group), start=1):
        rows.append(f"| {scope} | {pooled.criterion}: keep {keep:g}, accuracy minus random kept sets' mean, points "
                    f"(Wilcoxon signed-rank, {paired.k} layers) | {_number(paired.mean, 1)} [{_number(paired.ci_low, 1)}, "
                    f"{_number(paired.ci_high, 1)}]; above in {paired.above}, below in {paired.below} | {_p(paired.p)} | "
                    f"{_p(pooled.adjusted[index])} | |")
    return rows


POOLED_HEADER = ["| pooled over | test | estimate [95% CI] | p | Holm p (family) | detects (80% power) |",
                 "|---|---|---|---|---|---|"]


def _layer_rows(result: AtlasResult, criterion: str = "eigenvector") -> list[str]:
    """The criterion against random, per layer, beside what each layer could detect."""
    keeps = result.settings.keep_ratios
    header = ("| depth | layer | neurons | measured | reliability (ceiling) | detects rho | rho [95% CI] | p (99% MC "
              "interval, permutations) | Holm p | " + " | ".join(
                  f"keep {k:g}: acc / random mean [min, max], tied, rank p (draws), Holm p" for k in keeps) + " |")
    lines = [header, "|---" * (9 + len(keeps)) + "|"]
    rho = result.family(criterion, "rho")
    groups = [result.family(criterion, "group", k) for k in keeps]
    for index, layer in enumerate(result.layers):
        c, p, r = layer.correlations[criterion], layer.rho_p[criterion], layer.reliability
        cells = [f"{layer.depth}", layer.layer, f"{layer.neurons:,}", f"{layer.measured:,}",
                 f"{_number(r.full, sign=False)} ({_number(r.ceiling, sign=False)})",
                 f"{_number(result.minimum_detectable_rho(layer), sign=False)}",
                 f"{_number(c.spearman)} [{_number(c.ci_low)}, {_number(c.ci_high)}]",
                 f"{_p(p.p)} ({_p(p.low)}-{_p(p.high)}, {p.draws:,})", _p(rho.adjusted[index])]
        for column, family in enumerate(groups):
            accuracy, random = layer.curve.accuracy[criterion][0, column], layer.curve.accuracy["random"][:, column]
            tied = layer.curve.tied[criterion][0, column]
            flag = " †" if tied > TIED_FLAG else ""
            cells.append(f"{100 * accuracy:.1f} / {100 * random.mean():.1f} [{100 * random.min():.1f}, "
                         f"{100 * random.max():.1f}], {tied:.0%}{flag}, {_p(layer.group_p[criterion][column].p)} "
                         f"({len(random)}), {_p(family.adjusted[index])}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _criteria_rows(results: list[AtlasResult]) -> list[str]:
    """Per criterion: the same family as the primary one (Holm over its own tests), over every layer."""
    lines = POOLED_HEADER.copy()
    scope = ", ".join(r.backbone for r in results)
    for name in results[0].criteria:
        if name != "random":
            lines += pooled_rows(pooled_tests(results, name), scope)
    return lines


def _setup(results: list[AtlasResult], command: str, elapsed_s: float, device: str) -> list[str]:
    first = results[0]
    settings, config = first.settings, first.config
    sample = (f"{settings.sample_size} neurons of each layer" if settings.sample_size is not None
              else f"up to {DEFAULT_SAMPLE} neurons of each layer (all of a smaller layer)")
    images = first.layers[0].result.n_images if first.layers else 0
    heads = first.layers[0].result.heads if first.layers else settings.heads
    lines = [f"Generated by `{command}` in {elapsed_s / 60:.1f} minutes on {device}. Do not edit by hand.", ""]
    for result in results:
        baseline = result.baseline
        split = "/".join(f"{baseline.n_images.get(s, 0):,}" for s in ("train", "val", "test"))
        lines.append(f"- {result.backbone} ({result.config.weights}) on {dataset_label(result.config)}: {split} "
                     f"train/val/test images at {result.config.image_size} px; the first head's validation accuracy "
                     f"{100 * (baseline.val_acc or 0):.1f}%; {len(result.layers)} of {result.prunable_layers} prunable "
                     f"layers; {sum(layer.seconds for layer in result.layers) / 60:.1f} task-minutes"
                     + (f" ({len(result.reused)} layers read back from earlier records)" if result.reused else ""))
    lines += ["", f"Measured per layer: {sample} by a forward pass each (the head layer's every neuron by one operation "
              f"on the pooled features), on {images:,} validation images, each effect averaged over {heads} heads "
              f"trained on the frozen backbone from seeds {config.seed} to {config.seed + heads - 1} ({config.epochs} "
              f"epochs each); group ablation at keep {', '.join(f'{k:g}' for k in settings.keep_ratios)} against up "
              f"to {settings.seeds} random kept sets (drawn until {SEQUENTIAL_HITS} lie on each side of every "
              f"criterion); tau {settings.tau:g}; {settings.resamples:,} bootstrap resamples (images and neurons); "
              f"{settings.permutations:,} permutations per rho test, 199,999 where its p-value's Monte Carlo "
              f"interval overlaps the Holm thresholds; {settings.splits} half-splits for each reliability."]
    return lines


METHOD = (
    "How it is measured: every number comes from the trained model with part of one layer removed as structural "
    "pruning removes it (the channel disappears from every layer that reads it, a residual stream's channel from "
    "every coupled layer), with no retraining, on validation images only. A single neuron's effect is the change in "
    "validation loss when it alone is removed, per image and averaged over the heads. Its reliability is the "
    "Spearman correlation of the effects measured on two random halves of the images, averaged over the splits and "
    "corrected to the full number of images (Spearman-Brown); no criterion's rho can exceed about sqrt(reliability) "
    "(the ceiling). Each criterion's Spearman rho with the effects has a 95% percentile bootstrap interval that "
    "resamples images and neurons, and a two-sided permutation test against 0 (its Monte Carlo error shown as a 99% "
    "interval). A layer's test detects |rho| >= the minimum detectable rho (80% power at Holm's first-step level, "
    "alpha / m over the m layers; Fisher's z with Spearman's variance 1.06 / (n - 3)). Group ablation: validation "
    "accuracy keeping each criterion's top neurons (where a tie straddles the cut, the mean over 8 random "
    "tie-breaks), ranked among random kept sets' (Besag and Clifford's sequential Monte Carlo test; its smallest "
    "p-value is 2 / (draws + 1)). Families: the primary tests (one criterion's pooled rho and its paired accuracy "
    "differences, Holm-corrected together, over every layer of every backbone) come first; per backbone and per "
    "layer (Holm over each backbone's layers, one family per criterion and test) they are secondary. The layers of "
    "a network share a head and images: they are not independent experiments, and the pooled tests' intervals are "
    "to be read with that in mind. Redundancy: the mean cosine similarity of the kept neurons' weight vectors, pair "
    "by pair; coverage: the mean over removed neurons of the best similarity to a kept one.")


def write_atlas_report(results: list[AtlasResult] | AtlasResult, out_dir: Path, *, command: str, elapsed_s: float,
                       device: str, stem: str = "atlas") -> dict[str, Path]:
    """<stem>.md (generated), <stem>.csv (one row per backbone, layer and criterion), <stem>-<backbone>.png and
    <stem>-<backbone>.json.gz (the run, as ``AtlasRecords`` lists it: in docs/, the reference the app shows) in
    ``out_dir``, for one atlas or one per backbone (pooled together for the primary tests)."""
    results = [results] if isinstance(results, AtlasResult) else list(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / f"{stem}.md", "csv": out_dir / f"{stem}.csv"}
    atomic_write(paths["csv"], lambda temporary: atlas_table(results).to_csv(temporary, index=False, float_format="%.6g"))
    for result in results:
        paths[result.backbone] = out_dir / f"{stem}-{result.backbone}.png"
        plot_atlas(result, paths[result.backbone])
        paths[f"{result.backbone} record"] = write_reference(result, out_dir / f"{stem}-{result.backbone}.json.gz")
    finding, layers, why = atlas_sentences(results)
    text = ["# Does centrality predict importance, layer by layer?", "", *_setup(results, command, elapsed_s, device),
            "", "## The primary tests", "", f"**Finding:** {finding}", "", *POOLED_HEADER,
            *pooled_rows(pooled_tests(results), ", ".join(r.backbone for r in results))]
    if len(results) > 1:
        text += ["", "The same family within each backbone (secondary):", "", *POOLED_HEADER]
        for result in results:
            text += pooled_rows(pooled_tests([result]), result.backbone)
    text += ["", "## What each layer could detect, and found", "", layers, "",
             f"**{why.split(':', 1)[0]}:**{why.split(':', 1)[1]}" if why else "", "", METHOD]
    for result in results:
        text += ["", f"### {result.backbone}: eigenvector centrality against random, layer by layer", "",
                 f"![atlas heatmap of {result.backbone}]({paths[result.backbone].name})", "", *_layer_rows(result)]
    text += ["", "## Every criterion, pooled over every layer (secondary)", "",
             "Each criterion's rho and paired accuracy tests, Holm-corrected within the criterion (a family of its own, "
             "as the primary one): descriptive beside the primary tests, which were stated for eigenvector centrality.",
             "", *_criteria_rows(results), "",
             f"Every backbone, layer and criterion, with p-values before and after correction: "
             f"[{paths['csv'].name}]({paths['csv'].name})."]
    atomic_write(paths["md"], lambda temporary: Path(temporary).write_text("\n".join(text) + "\n"))
    return paths
