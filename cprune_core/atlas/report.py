"""``experiment atlas``: the atlas package's result as a report.

``write_atlas_report`` writes <stem>.md (generated), <stem>.csv (one row per layer and criterion) and <stem>.png
(a heatmap of the layers in network order by criteria: Spearman's rho, and the group-ablation accuracy against
random's at each keep ratio; cells whose test survives Holm's correction over layers are marked).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..experiment.importance_report import dataset_label
from ..paths import atomic_write
from .result import AtlasResult, Family
from .sentence import atlas_sentences
from .settings import DEFAULT_SAMPLE
from .significance import ALPHA

__all__ = ["atlas_table", "HeatmapPanel", "heatmap_criteria", "heatmap_panels", "plot_atlas", "write_atlas_report"]


def _range_columns(prefix: str, values: np.ndarray) -> dict[str, float]:
    """Mean, and min and max over seeds (equal to the mean for one run)."""
    return {prefix: float(values.mean()), f"{prefix}_min": float(values.min()), f"{prefix}_max": float(values.max())}


def atlas_table(result: AtlasResult) -> pd.DataFrame:
    """One row per layer and criterion: the layer, rho with its interval and tests, and at each keep ratio the
    group-ablation accuracy (random: mean, min and max over seeds), its difference from random's mean and its
    test, and the kept sets' redundancy and coverage."""
    families = {name: {(f.test, f.keep): f for f in result.families(name)} for name in result.criteria if name != "random"}
    rows = []
    for index, layer in enumerate(result.layers):
        base = {"position": layer.position, "layer": layer.layer, "depth": layer.depth, "kind": layer.kind,
                "neurons": layer.neurons, "coupled": " ".join(layer.coupled), "method": layer.result.method,
                "measured": len(layer.result.neurons), "val_images": layer.result.n_images,
                "full_val_acc": layer.result.full_acc, "seconds": round(layer.seconds, 1)}
        for name, c in layer.correlations.items():
            tests = families.get(name, {})
            row = {**base, "criterion": name, "rho": c.spearman, "rho_ci_low": c.ci_low, "rho_ci_high": c.ci_high,
                   "rho_p": layer.rho_p[name], "rho_p_holm": tests[("rho", None)].adjusted[index] if tests else math.nan,
                   "rho_verdict": tests[("rho", None)].verdicts[index] if tests else ""}
            for column, keep in enumerate(result.settings.keep_ratios):
                at = f"keep{keep:g}"
                accuracy = layer.curve.accuracy[name][:, column]
                row.update(_range_columns(f"acc_{at}", accuracy))
                row[f"acc_vs_random_{at}"] = accuracy.mean() - layer.curve.accuracy["random"][:, column].mean()
                row[f"group_p_{at}"] = layer.group_p[name][column]
                family = tests.get(("group", keep))
                row[f"group_p_holm_{at}"] = family.adjusted[index] if family else math.nan
                row[f"group_verdict_{at}"] = family.verdicts[index] if family else ""
                row.update(_range_columns(f"redundancy_{at}", layer.redundancy[name][:, column]))
                row.update(_range_columns(f"coverage_{at}", layer.coverage[name][:, column]))
            rows.append(row)
    return pd.DataFrame(rows)


def _heatmap(axis, values: np.ndarray, marks: np.ndarray, names: list[str], limit: float, title: str, digits: int):
    image = axis.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for (row, column), value in np.ndenumerate(values):
        if not math.isnan(value):
            axis.text(column, row, f"{value:+.{digits}f}" + ("*" if marks[row, column] else ""), ha="center",
                      va="center", fontsize=6, fontweight="bold" if marks[row, column] else "normal",
                      color="white" if abs(value) > 0.6 * limit else "black")
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    axis.set_title(title, fontsize=9)
    return image


@dataclass(frozen=True)
class HeatmapPanel:
    """One colouring of the atlas heatmap (the report's picture draws each; the app offers them as a choice):
    a value per layer (rows, in network order) and criterion (columns, ``heatmap_criteria``), its test's
    p-values before and after Holm's correction over layers (NaN: no test), and how to draw it."""

    title: str  # a line break where the picture's panel title wraps
    values: np.ndarray  # layers x criteria
    p: np.ndarray
    adjusted: np.ndarray
    verdicts: list[list[str]]  # per layer, per criterion: better, worse, neither, untested
    limit: float  # the colour scale runs from -limit to +limit
    digits: int

    @property
    def significant(self) -> np.ndarray:
        """Where the test survives the correction."""
        return np.array([[v in ("better", "worse") for v in row] for row in self.verdicts], dtype=bool)


def heatmap_criteria(result: AtlasResult) -> list[str]:
    """The heatmap's columns: every criterion but random, the reference."""
    return [name for name in result.criteria if name != "random"]


def _tested(families: list[Family], scale: float, title: str, limit: float, digits: int) -> HeatmapPanel:
    def stacked(name: str) -> np.ndarray:
        return np.stack([getattr(f, name) for f in families], axis=1)

    return HeatmapPanel(title, stacked("effects") * scale, stacked("p"), stacked("adjusted"),
                        [list(row) for row in zip(*(f.verdicts for f in families))], limit, digits)


def heatmap_panels(result: AtlasResult) -> list[HeatmapPanel]:
    """rho; accuracy against random's mean (points) at each keep ratio; and the kept sets' redundancy against
    random's at the first keep ratio (no test)."""
    names = heatmap_criteria(result)
    panels = [_tested([result.family(n, "rho") for n in names], 1.0, "Spearman rho with single-neuron\nablation effect",
                      0.5, 2)]
    panels += [_tested([result.family(n, "group", keep) for n in names], 100.0,
                       f"val accuracy minus random's mean\n(points), keep {keep:g}", 10.0, 0)
               for keep in result.settings.keep_ratios]
    redundancy = np.array([[layer.redundancy[n][0, 0] - layer.redundancy["random"][:, 0].mean() for n in names]
                           for layer in result.layers]).reshape(len(result.layers), len(names))
    untested = np.full(redundancy.shape, math.nan)
    panels.append(HeatmapPanel(f"kept neurons' redundancy minus\nrandom's, keep {result.settings.keep_ratios[0]:g} "
                               "(no test)", redundancy, untested, untested,
                               [["untested"] * len(names) for _ in result.layers], 0.1, 2))
    return panels


def plot_atlas(result: AtlasResult, path: Path) -> None:
    """The heatmap: layers (network order; depth, name, kind, neurons) by criteria (random, the reference,
    left out), one panel for rho, one per keep ratio for accuracy minus random's mean (points), and one for the
    kept sets' redundancy against random's; a star and bold type where the layer's test survives Holm's
    correction over layers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, panels = heatmap_criteria(result), heatmap_panels(result)
    rows = len(result.layers)
    figure, axes = plt.subplots(1, len(panels), figsize=(3.9 * len(panels) + 3.2, 0.32 * rows + 2.6), sharey=True)
    for axis, panel in zip(np.atleast_1d(axes), panels):
        image = _heatmap(axis, panel.values, panel.significant, names, panel.limit, panel.title, panel.digits)
        figure.colorbar(image, ax=axis, shrink=0.6, pad=0.02)
    np.atleast_1d(axes)[0].set_yticks(range(rows), [layer.label for layer in result.layers], fontsize=7)
    figure.suptitle(f"{result.config.backbone} on {dataset_label(result.config)}: does each criterion beat random, "
                    f"layer by layer? Rows: depth, layer (kind, neurons), in network order. * Holm-adjusted p < "
                    f"{ALPHA:g} over layers", fontsize=9)
    figure.tight_layout()
    atomic_write(path, lambda temporary: figure.savefig(temporary, dpi=90))
    plt.close(figure)


def _cell(value: float, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.{digits}f}"


def _layer_rows(result: AtlasResult) -> list[str]:
    """Eigenvector against random, per layer."""
    keeps = result.settings.keep_ratios
    header = ("| depth | layer | kind | neurons | measured | eigenvector rho [95% CI] (Holm p) | " +
              " | ".join(f"acc keep {k:g}: eigenvector / random mean [min, max] (Holm p)" for k in keeps) +
              f" | redundancy keep {keeps[0]:g}: eigenvector / random | coverage keep {keeps[0]:g}: eigenvector / random"
              " | minutes |")
    lines = [header, "|---" * (8 + len(keeps)) + "|"]
    rho = result.family("eigenvector", "rho")
    groups = [result.family("eigenvector", "group", k) for k in keeps]
    for index, layer in enumerate(result.layers):
        c = layer.correlations["eigenvector"]
        cells = [f"{layer.depth}", layer.layer, layer.kind, f"{layer.neurons:,}", f"{len(layer.result.neurons):,}",
                 f"{_cell(c.spearman, 2)} [{_cell(c.ci_low, 2)}, {_cell(c.ci_high, 2)}] ({rho.adjusted[index]:.2g})"]
        for column, family in enumerate(groups):
            eig, rand = layer.curve.accuracy["eigenvector"][0, column], layer.curve.accuracy["random"][:, column]
            cells.append(f"{100 * eig:.1f} / {100 * rand.mean():.1f} [{100 * rand.min():.1f}, {100 * rand.max():.1f}] "
                         f"({family.adjusted[index]:.2g})")
        for values in (layer.redundancy, layer.coverage):
            cells.append(f"{values['eigenvector'][0, 0]:.3f} / {values['random'][:, 0].mean():.3f}")
        cells.append(f"{layer.seconds / 60:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _criteria_rows(result: AtlasResult) -> list[str]:
    """Per criterion: layers better / worse / neither than random, per test."""
    keeps = result.settings.keep_ratios
    lines = ["| criterion | " + " | ".join(f"group ablation keep {k:g}" for k in keeps) + " | rho against 0 |",
             "|---" * (2 + len(keeps)) + "|"]
    for name in result.criteria:
        if name == "random":
            continue
        cells = [f"{f.count('better')} / {f.count('worse')} / {f.count('neither')}" +
                 (f" ({f.count('untested')} untested)" if f.count("untested") else "") for f in result.families(name)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _setup(result: AtlasResult, command: str, elapsed_s: float, device: str) -> list[str]:
    settings, config, baseline = result.settings, result.config, result.baseline
    images = "/".join(f"{baseline.n_images.get(split, 0):,}" for split in ("train", "val", "test"))
    sample = (f"{settings.sample_size} neurons of each layer" if settings.sample_size is not None
              else f"up to {DEFAULT_SAMPLE} neurons of each layer (all of a smaller layer)")
    val_images = result.layers[0].result.n_images if result.layers else 0
    task_minutes = sum(layer.seconds for layer in result.layers) / 60
    reused = (f" {len(result.reused)} of the {len(result.layers)} layers were read back from an earlier run's records; "
              f"measuring them all took {task_minutes:.1f} minutes of task time." if result.reused else "")
    return [f"Generated by `{command}` in {elapsed_s / 60:.1f} minutes on {device}. Do not edit by hand.{reused}",
            f"{config.backbone} ({config.weights}) on {dataset_label(config)}: {images} train/val/test images, image "
            f"size {config.image_size}; a new head trained once on the frozen backbone ({config.epochs} epochs, seed "
            f"{config.seed}'s split; validation accuracy {100 * (baseline.val_acc or 0):.1f}%). Measured per layer: "
            f"{sample} by a forward pass each (the head layer's every neuron by one operation on the pooled features), "
            f"on {val_images:,} validation images (a seeded subset); group ablation at keep "
            f"{', '.join(f'{k:g}' for k in settings.keep_ratios)} with {settings.seeds} random seeds; tau "
            f"{settings.tau:g}, {settings.resamples:,} bootstrap resamples, {settings.permutations:,} permutations."]


METHOD = (
    "How it is measured: every number comes from the trained model with part of one layer removed as structural "
    "pruning removes it (the channel disappears from every layer that reads it, a residual stream's channel from "
    "every coupled layer), with no retraining, on validation images only. Single neurons: the change in validation "
    "loss when one sampled neuron is removed alone; Spearman's rho of each criterion's scores (higher: keep) with "
    "it, a 95% percentile bootstrap interval over neurons, and a two-sided permutation test of rho against 0 (what "
    "a ranking with no information gives). Group ablation: validation accuracy keeping each criterion's top "
    "neurons; random is the mean and range over its seeds, and a criterion's accuracy is tested as one more draw "
    "from the seeds' distribution (t with seeds - 1 degrees of freedom; the empirical rank among so few seeds "
    "could never reach significance after correction). Each test's p-values are corrected with Holm's method over "
    "the layers (one family per criterion and test; family-wise error 5%). Redundancy: the mean cosine similarity "
    "of the kept neurons' weight vectors, pair by pair; coverage: the mean over removed neurons of the best "
    "similarity to a kept one (a residual stream: averaged over its coupled layers).")


def write_atlas_report(result: AtlasResult, out_dir: Path, *, command: str, elapsed_s: float, device: str,
                       stem: str = "atlas") -> dict[str, Path]:
    """<stem>.md (generated), <stem>.csv (one row per layer and criterion) and <stem>.png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / f"{stem}.md", "csv": out_dir / f"{stem}.csv", "png": out_dir / f"{stem}.png"}
    atomic_write(paths["csv"], lambda temporary: atlas_table(result).to_csv(temporary, index=False, float_format="%.6g"))
    plot_atlas(result, paths["png"])
    finding, why = atlas_sentences(result)
    widths = [layer.correlations["eigenvector"].ci_high - layer.correlations["eigenvector"].ci_low
              for layer in result.layers if layer.result.method == "forward"]
    precision = (f"Precision: eigenvector's 95% rho interval is {np.nanmedian(widths):.2f} wide in the median layer "
                 f"measured by forward passes ({np.nanmin(widths):.2f} to {np.nanmax(widths):.2f})." if widths else "")
    text = ["# Does centrality predict importance, layer by layer?", "", *_setup(result, command, elapsed_s, device),
            "", f"**Finding:** {finding}", "", f"**{why.split(':', 1)[0]}:**{why.split(':', 1)[1]}" if why else "", "",
            METHOD, "", f"![atlas heatmap]({paths['png'].name})", "",
            "## Eigenvector centrality against random pruning, layer by layer", "", *_layer_rows(result), "", precision,
            "", "## Every criterion: layers better / worse / neither than random (Holm-corrected over layers)", "",
            *_criteria_rows(result), "",
            f"Every layer and criterion, with p-values before and after correction: [{paths['csv'].name}]"
            f"({paths['csv'].name})."]
    atomic_write(paths["md"], lambda temporary: Path(temporary).write_text("\n".join(text) + "\n"))
    return paths
