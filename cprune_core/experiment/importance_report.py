"""``experiment importance``: does centrality predict importance? The analysis of ablation.py as a report.

``importance_config`` is the baseline run that trains the head (the paper table's set-up: image
size 128, 8 epochs, seed 0's split; on ../shared/data/flowers128, or flowers-sample for
``quick``). ``write_importance_report`` writes <stem>.md (generated), <stem>.csv (per neuron: every
criterion's score and the ablation effect) and <stem>.png (score against effect for each criterion,
and the zero-shot pruning curve); ``importance_json`` is what ``--json`` prints.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..ablation import ImportanceAnalysis
from ..figures import finish_panel, pyplot, save_figure
from ..paths import SAMPLE_FLOWERS, SHARED_FLOWERS, atomic_write
from ..registry import DEFAULT_BACKBONE
from ..schema import FinetuneConfig
from .settings import DEFAULT_EPOCHS, DEFAULT_IMAGE_SIZE, QUICK_ANALYSIS

__all__ = ["QUICK_ANALYSIS", "importance_config", "dataset_label", "neuron_table", "importance_json",
           "plot_importance", "write_importance_report"]


def importance_config(*, quick: bool = False, backbone: str = DEFAULT_BACKBONE, dataset: str | None = None,
                      root: str | None = None, image_size: int | None = DEFAULT_IMAGE_SIZE,
                      device: str = "auto") -> FinetuneConfig:
    """The baseline run that trains the head. No dataset: tf-flowers from ../shared/data/flowers128
    (``quick``: the embedded flowers-sample); a dataset without ``root``: that source's own location.
    ConfigError for an impossible value (an input size the backbone cannot take), before any work."""
    if dataset is None:
        dataset, root = ("flowers-sample", root) if quick else ("tf-flowers", root or str(SHARED_FLOWERS))
    config = FinetuneConfig(backbone=backbone, dataset=dataset, dataset_root=root, mode="baseline",
                            epochs=DEFAULT_EPOCHS, image_size=image_size, device=device, log_every=1000)
    config.validate()
    return config


def dataset_label(config: FinetuneConfig) -> str:
    """The data in words, without this machine's paths: "flowers128 (tf-flowers)", "flowers-sample"."""
    root = config.dataset_root
    if root is None or Path(root).resolve() == SAMPLE_FLOWERS.resolve():
        return config.dataset
    return f"{Path(root).name} ({config.dataset})"


def _score_columns(analysis: ImportanceAnalysis) -> dict[str, np.ndarray]:
    columns = {}
    for name, rows in analysis.scores.items():
        if len(rows) == 1:
            columns[f"score_{name}"] = rows[0]
        else:
            columns.update({f"score_{name}_seed{seed}": row for seed, row in enumerate(rows)})
    return columns


def neuron_table(analysis: ImportanceAnalysis) -> pd.DataFrame:
    """One row per neuron of the layer: every criterion's score (random: one column per seed), and the
    ablation effect (NaN for a neuron outside the measured sample)."""
    result = analysis.result
    delta_loss = np.full(result.n_neurons, math.nan)
    delta_acc = np.full(result.n_neurons, math.nan)
    delta_loss[result.neurons] = result.delta_loss
    delta_acc[result.neurons] = result.delta_acc
    return pd.DataFrame({"neuron": np.arange(result.n_neurons), **_score_columns(analysis),
                         "delta_val_loss": delta_loss, "delta_val_acc": delta_acc})


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def importance_json(analysis: ImportanceAnalysis, elapsed_s: float) -> dict:
    """What ``experiment importance --json`` prints (NaN as null)."""
    result, curve, config = analysis.result, analysis.curve, analysis.config
    zero_shot = {}
    for name in curve.accuracy:
        mean, low, high = curve.band(name)
        zero_shot[name] = {"accuracy": mean.tolist(), **({"min": low.tolist(), "max": high.tolist()}
                                                         if len(curve.accuracy[name]) > 1 else {})}
    return {
        "criteria": {name: {"spearman": _number(c.spearman), "ci_low": _number(c.ci_low),
                            "ci_high": _number(c.ci_high), "per_seed": [_number(r) for r in c.per_seed]}
                     for name, c in analysis.correlations.items()},
        "backbone": config.backbone, "dataset": dataset_label(config), "layer": analysis.layer,
        "method": result.method, "neurons": result.n_neurons, "neurons_measured": len(result.neurons),
        "sampled": result.sampled, "val_images": result.n_images, "heads": result.heads,
        "reliability": _number(analysis.reliability.full), "ceiling": _number(analysis.reliability.ceiling),
        "minimum_detectable_rho": _number(analysis.minimum_detectable_rho), "image_size": config.image_size,
        "full_val_loss": result.full_loss, "full_val_acc": result.full_acc, "seeds": analysis.seeds,
        "tau": analysis.tau, "resamples": analysis.resamples,
        "zero_shot": {"keep_ratios": curve.keep_ratios.tolist(), "kept": curve.kept.tolist(), "criteria": zero_shot},
        "sentence": analysis.sentence, "elapsed_s": round(elapsed_s, 2),
    }


def plot_importance(analysis: ImportanceAnalysis, path: Path) -> None:
    """Score against ablation effect for each criterion (random: seed 0), then the zero-shot curve
    with random as a band (min to max over seeds)."""
    plt = pyplot()

    result, curve = analysis.result, analysis.curve
    names = list(analysis.scores)
    columns = 4
    rows = math.ceil(len(names) / columns)
    figure = plt.figure(figsize=(4 * columns, 3.3 * rows + 4.2))
    grid = figure.add_gridspec(rows + 1, columns, height_ratios=[1] * rows + [1.3])
    for index, name in enumerate(names):
        axis = figure.add_subplot(grid[index // columns, index % columns])
        correlation = analysis.correlations[name]
        axis.scatter(analysis.scores[name][0][result.neurons], result.delta_loss, s=6, alpha=0.5)
        axis.axhline(0, color="grey", linewidth=0.6)
        seed = " (seed 0)" if len(analysis.scores[name]) > 1 else ""
        axis.set_title(f"{name}{seed}\nrho {correlation.spearman:+.2f} [{correlation.ci_low:+.2f}, "
                       f"{correlation.ci_high:+.2f}]", fontsize=9)
        axis.set_xlabel("score (higher: keep)", fontsize=8)
        if index % columns == 0:
            axis.set_ylabel("delta val loss when removed", fontsize=8)
        axis.tick_params(labelsize=7)
    axis = figure.add_subplot(grid[rows, :])
    for name in names:
        mean, low, high = curve.band(name)
        if len(curve.accuracy[name]) > 1:
            axis.fill_between(curve.keep_ratios, 100 * low, 100 * high, color="grey", alpha=0.3,
                              label=f"{name} (min-max over {len(curve.accuracy[name])} seeds)")
            axis.plot(curve.keep_ratios, 100 * mean, color="grey", linestyle="--")
        else:
            axis.plot(curve.keep_ratios, 100 * mean, marker="o", markersize=3, label=name)
    axis.axhline(100 * curve.full_acc, color="black", linewidth=0.6, linestyle=":", label="no neuron removed")
    finish_panel(axis, "keep ratio", "val accuracy before fine-tuning (%)", f"Zero-shot pruning of {analysis.layer}",
                 legend_columns=3)
    sample = f", a sample of {len(result.neurons)} of {result.n_neurons} neurons" if result.sampled else ""
    figure.suptitle(f"{analysis.config.backbone} {analysis.layer} on {dataset_label(analysis.config)}{sample}")
    save_figure(figure, path, dpi=100)


def _rho(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.3f}"


def _correlation_table(analysis: ImportanceAnalysis) -> list[str]:
    lines = ["| criterion | Spearman rho | 95% CI | rho per seed |", "|---|---|---|---|"]
    for name, c in sorted(analysis.correlations.items(), key=lambda item: -np.nan_to_num(item[1].spearman, nan=-2)):
        per_seed = ", ".join(_rho(r) for r in c.per_seed) if len(c.per_seed) > 1 else ""
        lines.append(f"| {name} | {_rho(c.spearman)} | [{_rho(c.ci_low)}, {_rho(c.ci_high)}] | {per_seed} |")
    return lines


def _curve_table(analysis: ImportanceAnalysis) -> list[str]:
    curve = analysis.curve
    names = list(curve.accuracy)
    lines = ["| keep ratio | neurons kept | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for column, (ratio, kept) in enumerate(zip(curve.keep_ratios, curve.kept)):
        cells = []
        for name in names:
            mean, low, high = curve.band(name)
            band = f" [{100 * low[column]:.1f}, {100 * high[column]:.1f}]" if len(curve.accuracy[name]) > 1 else ""
            cells.append(f"{100 * mean[column]:.1f}{band}")
        lines.append(f"| {ratio:g} | {kept:,} | " + " | ".join(cells) + " |")
    return lines


def write_importance_report(analysis: ImportanceAnalysis, out_dir: Path, *, command: str, elapsed_s: float,
                            device: str, stem: str = "importance") -> dict[str, Path]:
    """<stem>.md (generated), <stem>.csv (one row per neuron) and <stem>.png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / f"{stem}.md", "csv": out_dir / f"{stem}.csv", "png": out_dir / f"{stem}.png"}
    atomic_write(paths["csv"], lambda temporary: neuron_table(analysis).to_csv(temporary, index=False))
    plot_importance(analysis, paths["png"])
    result, config, baseline = analysis.result, analysis.config, analysis.baseline
    if result.method == "pooled":
        measured = (f"all {result.n_neurons:,} neurons, each by one matrix operation on the cached pooled features "
                    "(the classifier's inputs)")
    else:
        which = (f"a seeded sample of {len(result.neurons):,} of its {result.n_neurons:,} neurons"
                 if result.sampled else f"all {result.n_neurons:,} neurons")
        measured = f"{which}, each by a forward pass of the rest of the network on cached inputs"
    images = "/".join(f"{baseline.n_images.get(split, 0):,}" for split in ("train", "val", "test"))
    text = [
        "# Does centrality predict importance?",
        "",
        f"Generated by `{command}` in {elapsed_s / 60:.1f} minutes on {device}. Do not edit by hand.",
        f"{config.backbone} ({config.weights}), layer {analysis.layer}: {measured}; on "
        f"{dataset_label(config)}: {images} train/val/test images, image size {config.image_size}; "
        f"{analysis.seeds} seeds of the random criterion, tau {analysis.tau:g}, {analysis.resamples:,} bootstrap resamples.",
        "",
        f"**Finding:** {analysis.sentence}",
        "",
        f"How it is measured: a new head is trained once on the frozen backbone ({config.epochs} epochs on cached "
        f"features, seed {config.seed}'s split; validation accuracy {100 * result.full_acc:.1f}%, validation loss "
        f"{result.full_loss:.4f}). A neuron's ablation effect is the change in validation loss and accuracy when that "
        "neuron alone is removed, as structural pruning removes it (its channel disappears from every layer that reads "
        f"it), with no retraining, on every validation image and averaged over {result.heads} heads trained from seeds "
        f"{config.seed} to {config.seed + result.heads - 1}; its importance is the change in loss. The effects' split-half "
        f"reliability (the Spearman correlation of the effects on two random halves of the images, corrected to the "
        f"full number by Spearman-Brown) is {analysis.reliability.full:.2f}: no criterion's rho can exceed about its "
        f"square root, {analysis.reliability.ceiling:.2f}. With {len(result.neurons):,} neurons a two-sided test at 5% "
        f"detects |rho| >= {analysis.minimum_detectable_rho:.2f} with 80% power. Spearman's rho compares each "
        "criterion's scores (what pruning ranks by; higher: keep) with the importance; a good criterion has rho > 0 "
        "and inverse-eigenvector is eigenvector's mirror image. Intervals: 95% percentile bootstrap over neurons and "
        "images together; for random, rho is the mean over seeds and the interval pools the seeds. The zero-shot "
        "curve is the validation accuracy with only the kept neurons, before any fine-tuning (where a tie straddles "
        "the cut, the mean over 8 random tie-breaks). Only the validation split is used.",
        "",
        f"![score against ablation effect, and the zero-shot pruning curve]({paths['png'].name})",
        "",
        "## Spearman correlation of each criterion with the ablation effect",
        "",
        *_correlation_table(analysis),
        "",
        "## Zero-shot pruning: validation accuracy (%) before any fine-tuning",
        "",
        f"No neuron removed: {100 * analysis.curve.full_acc:.1f}%. Random: mean [min, max] over {analysis.seeds} seeds.",
        "",
        *_curve_table(analysis),
        "",
        f"Every neuron's scores and ablation effect: [{paths['csv'].name}]({paths['csv'].name}).",
    ]
    atomic_write(paths["md"], lambda temporary: Path(temporary).write_text("\n".join(text) + "\n"))
    return paths
