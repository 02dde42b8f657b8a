"""The paper's comparison as one reproducible experiment (``paper-table``).

For each backbone x dataset regime x seed, on the same split, it runs:
- ``conventional``: frozen pretrained backbone + new linear head;
- ``finetune``: the same trainable layers as the pruned runs, unpruned (separates the effect of
  pruning from the effect of training more layers);
- ``pruned``: prune-then-fine-tune with each criterion at each keep ratio, at the default tau,
  plus a small tau sweep for eigenvector centrality.
The layer pruned is each backbone's registry ``head_layer`` (the dense layer nearest the
classifier), so the frozen prefix's features are computed once and cached.

Results are rows of plain dicts; ``summarise`` gives mean +- std over seeds and the paired
difference to the conventional baseline with a 95% t-interval over seeds; ``write_report``
writes docs/results.md, a CSV and an accuracy-vs-MACs plot.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
from scipy import stats

from .data import SAMPLE_FLOWERS, SHARED_FLOWERS
from .engine import FinetuneConfig, MetricEvent, finetune
from .importance import DEFAULT_TAU

COMPARED_CRITERIA = ("eigenvector", "inverse-eigenvector", "l1", "fpgm", "random")
KEEP_RATIOS = (0.1, 0.25, 0.5, 0.75)
TAU_SWEEP = (0.05, 0.2, 0.3)  # eigenvector only, at TAU_SWEEP_KEEP; DEFAULT_TAU is in the main grid
TAU_SWEEP_KEEP = 0.25
FEW_SHOT = 10  # images per class: the regime of Flowers102's official training split


@dataclass(frozen=True)
class Regime:
    """A dataset and how much of its training split is used."""

    label: str
    dataset: str
    root: str | None = None
    train_per_class: int | None = None


def offline_regimes() -> list[Regime]:
    """../shared/data/flowers128 (TF Flowers, 128 px) in full and with 10 images per class."""
    root = str(SHARED_FLOWERS)
    return [Regime("flowers128-full", "tf-flowers", root), Regime(f"flowers128-{FEW_SHOT}shot", "tf-flowers", root, FEW_SHOT)]


def quick_regimes() -> list[Regime]:
    return [Regime("flowers-sample", "flowers-sample", str(SAMPLE_FLOWERS))]


def download_regimes() -> list[Regime]:
    """The paper's datasets, downloaded where the network allows."""
    return [Regime("tf-flowers", "tf-flowers"), Regime("caltech101", "caltech101"),
            Regime("oxford-flowers102", "oxford-flowers102")]


REGIMES: dict[str, Regime] = {regime.label: regime for regime in
                               offline_regimes() + quick_regimes() + download_regimes()}
DEFAULT_BACKBONES = ("efficientnet_lite0",)
DEFAULT_SEEDS = 5
DEFAULT_EPOCHS = 8
DEFAULT_IMAGE_SIZE = 128
DOCS_DIR = Path(__file__).resolve().parents[1] / "docs"


@dataclass
class Grid:
    base: FinetuneConfig
    plan: list[PlannedRun]


def paper_table_grid(quick: bool = False, backbones: Iterable[str] | None = None, regimes: Iterable[str] | None = None,
                     seeds: int | None = None, epochs: int | None = None, image_size: int = DEFAULT_IMAGE_SIZE,
                     device: str = "auto") -> Grid:
    """The runs of ``paper-table`` (``quick``: a reduced grid for tests and set-up checks)."""
    chosen = [REGIMES[name] for name in regimes] if regimes else (quick_regimes() if quick else offline_regimes())
    base = FinetuneConfig(epochs=epochs or (3 if quick else DEFAULT_EPOCHS), image_size=image_size, device=device,
                          log_every=1000)
    extra = dict(criteria=("eigenvector", "random"), keep_ratios=(0.25, 0.5), tau_sweep=()) if quick else {}
    plan = plan_runs(backbones or DEFAULT_BACKBONES, chosen, range(seeds or (2 if quick else DEFAULT_SEEDS)),
                     base=base, **extra)
    return Grid(base, plan)


def describe_device(device) -> str:
    if device.type == "cuda":
        import torch

        return f"CUDA GPU {torch.cuda.get_device_name(device)}"
    return f"{device.type.upper()} ({os.cpu_count()} cores)" if device.type == "cpu" else device.type.upper()


@dataclass(frozen=True)
class PlannedRun:
    regime: Regime
    method: str  # "conventional", "finetune" or "pruned"
    config: FinetuneConfig


def plan_runs(backbones: Iterable[str], regimes: Iterable[Regime], seeds: Iterable[int], *,
              criteria: Iterable[str] = COMPARED_CRITERIA, keep_ratios: Iterable[float] = KEEP_RATIOS,
              tau: float = DEFAULT_TAU, tau_sweep: Iterable[float] = TAU_SWEEP,
              base: FinetuneConfig | None = None) -> list[PlannedRun]:
    """Every run of the grid, ordered so that runs sharing a split (and cached features) are adjacent."""
    base = base or FinetuneConfig()
    runs = []
    for backbone in backbones:
        for regime in regimes:
            for seed in seeds:
                common = replace(base, backbone=backbone, dataset=regime.dataset, dataset_root=regime.root,
                                 train_per_class=regime.train_per_class, seed=seed, tau=tau)
                runs.append(PlannedRun(regime, "conventional", replace(common, mode="baseline")))
                runs.append(PlannedRun(regime, "finetune", replace(common, mode="finetune")))
                for criterion in criteria:
                    for keep in keep_ratios:
                        runs.append(PlannedRun(regime, "pruned", replace(common, mode="pruned", criterion=criterion, keep=keep)))
                for swept in tau_sweep:
                    if swept != tau and "eigenvector" in criteria:
                        runs.append(PlannedRun(regime, "pruned", replace(common, mode="pruned", criterion="eigenvector",
                                                                         keep=TAU_SWEEP_KEEP, tau=swept)))
    return runs


def run_plan(plan: list[PlannedRun], record: Callable | None = None,
             on_run: Callable[[int, PlannedRun, dict], None] | None = None) -> list[dict]:
    """Run every planned run; ``record(config, events)`` may wrap each event stream (the store)."""
    rows = []
    for index, planned in enumerate(plan):
        events: Iterable[MetricEvent] = finetune(planned.config)
        if record is not None:
            events = record(planned.config, events)
        final = {}
        for event in events:
            if event.kind == "end":
                final = event.final
        row = row_for(planned, final)
        rows.append(row)
        if on_run is not None:
            on_run(index, planned, row)
    return rows


def row_for(planned: PlannedRun, final: dict) -> dict:
    config = planned.config
    pruned = planned.method == "pruned"
    return {
        "regime": planned.regime.label, "backbone": config.backbone, "dataset": config.dataset,
        "seed": config.seed, "method": planned.method,
        "criterion": config.criterion if pruned else planned.method,
        "keep": config.keep if pruned else 1.0, "tau": config.tau if pruned else math.nan,
        "test_acc": final.get("test_acc"), "val_acc": final.get("val_acc"),
        "params": final.get("params"), "macs": final.get("macs"), "latency_ms": final.get("latency_ms"),
        "duration_s": final.get("duration_s"), "status": final.get("status"), "message": final.get("message", ""),
        "n_train": (final.get("n_images") or {}).get("train"), "n_test": (final.get("n_images") or {}).get("test"),
    }


GROUP_KEYS = ["regime", "backbone", "criterion", "keep", "tau"]


def paired_interval(differences: pd.Series, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean difference and its t-interval over seeds (NaN bounds with fewer than two seeds)."""
    values = differences.dropna().to_numpy(dtype=float)
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def summarise(rows: list[dict]) -> pd.DataFrame:
    """One line per (regime, backbone, criterion, keep, tau): accuracy mean and std over seeds,
    cost, and the paired difference to ``conventional`` on the same seeds."""
    frame = pd.DataFrame(rows)
    frame = frame[frame["status"] == "finished"].copy()
    frame["tau"] = frame["tau"].fillna(-1.0)  # groupby drops NaN keys; -1 marks "no graph"
    baseline = frame[frame["method"] == "conventional"].set_index(["regime", "backbone", "seed"])["test_acc"]
    lines = []
    for key, group in frame.groupby(GROUP_KEYS, sort=False):
        accuracy = group.set_index(["regime", "backbone", "seed"])["test_acc"]
        paired = accuracy - baseline.reindex(accuracy.index)
        mean_diff, low, high = paired_interval(paired)
        lines.append({
            **dict(zip(GROUP_KEYS, key)), "method": group["method"].iloc[0], "seeds": len(group),
            "test_acc_mean": group["test_acc"].mean(), "test_acc_std": group["test_acc"].std(ddof=1),
            "val_acc_mean": group["val_acc"].mean(),
            "diff_vs_conventional": mean_diff, "diff_ci_low": low, "diff_ci_high": high,
            "params": group["params"].mean(), "macs": group["macs"].mean(), "latency_ms": group["latency_ms"].mean(),
        })
    summary = pd.DataFrame(lines)
    if not summary.empty:
        summary["tau"] = summary["tau"].where(summary["tau"] >= 0)
    return summary


def verdict(summary: pd.DataFrame, regime: str, backbone: str) -> str:
    """One sentence: did eigenvector pruning beat the conventional baseline here, and by how much?"""
    eigen = summary[(summary["regime"] == regime) & (summary["backbone"] == backbone)
                    & (summary["criterion"] == "eigenvector") & (summary["tau"] == DEFAULT_TAU)]
    conventional = summary[(summary["regime"] == regime) & (summary["backbone"] == backbone)
                           & (summary["criterion"] == "conventional")]
    if eigen.empty or conventional.empty:
        return f"{backbone} on {regime}: not enough finished runs to compare."
    base = conventional.iloc[0]
    # The keep ratio is chosen on validation accuracy: choosing it on the test split would flatter pruning.
    best = eigen.sort_values("val_acc_mean", ascending=False).iloc[0]
    diff, low, high = best["diff_vs_conventional"], best["diff_ci_low"], best["diff_ci_high"]
    if not math.isnan(low) and low > 0:
        outcome = "beat"
    elif not math.isnan(high) and high < 0:
        outcome = "did NOT beat (it was worse than)"
    else:
        outcome = "did not significantly differ from"
    interval = "" if math.isnan(low) else f", 95% CI [{100 * low:+.1f}, {100 * high:+.1f}]"
    return (f"{backbone} on {regime}: eigenvector pruning (keep ratio {best['keep']:g} chosen on validation, "
            f"tau {best['tau']:g}) "
            f"{outcome} the conventional baseline: {100 * best['test_acc_mean']:.1f}% vs "
            f"{100 * base['test_acc_mean']:.1f}% test accuracy ({100 * diff:+.1f} points{interval}; "
            f"{best['seeds']} seeds), with {best['params'] / base['params']:.0%} of its parameters "
            f"and {best['macs'] / base['macs']:.0%} of its MACs.")


def plot_accuracy_vs_macs(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(summary.groupby(["regime", "backbone"], sort=False))
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for axis, ((regime, backbone), frame) in zip(axes[0], panels):
        for criterion, lines in frame.groupby("criterion", sort=False):
            lines = lines[(lines["tau"].isna()) | (lines["tau"] == DEFAULT_TAU)].sort_values("macs")
            style = dict(marker="o") if len(lines) > 1 else dict(marker="*", markersize=14, linestyle="none")
            axis.errorbar(lines["macs"] / 1e6, 100 * lines["test_acc_mean"], yerr=100 * lines["test_acc_std"].fillna(0),
                          label=criterion, capsize=3, **style)
        axis.set_xlabel("MACs per image (millions)")
        axis.set_ylabel("test accuracy (%)")
        axis.set_title(f"{backbone} - {regime}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _pct(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def markdown_table(summary: pd.DataFrame) -> str:
    header = ("| regime | backbone | method | criterion | keep | tau | seeds | test acc % (mean +- std) | "
              "diff vs conventional (points, 95% CI) | params | MACs (M) | latency ms |")
    lines = [header, "|" + "---|" * 12]
    for row in summary.itertuples():
        interval = "" if math.isnan(row.diff_ci_low) else f" [{100 * row.diff_ci_low:+.1f}, {100 * row.diff_ci_high:+.1f}]"
        diff = "" if row.criterion == "conventional" else f"{100 * row.diff_vs_conventional:+.1f}{interval}"
        std = "" if math.isnan(row.test_acc_std) else f" +- {_pct(row.test_acc_std)}"
        tau = "" if math.isnan(row.tau) else f"{row.tau:g}"
        lines.append(f"| {row.regime} | {row.backbone} | {row.method} | {row.criterion} | {row.keep:g} | {tau} | "
                     f"{row.seeds} | {_pct(row.test_acc_mean)}{std} | {diff} | {row.params:,.0f} | "
                     f"{row.macs / 1e6:,.1f} | {row.latency_ms:.1f} |")
    return "\n".join(lines)


def write_report(rows: list[dict], out_dir: Path, *, command: str, elapsed_s: float, device: str,
                 base: FinetuneConfig, stem: str = "results") -> dict[str, Path]:
    """docs/<stem>.md (generated), <stem>.csv (every run) and <stem>.png (accuracy vs MACs)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / f"{stem}.md", "csv": out_dir / f"{stem}.csv", "png": out_dir / f"{stem}.png"}
    frame = pd.DataFrame(rows)
    frame.to_csv(paths["csv"], index=False)
    summary = summarise(rows)
    failed = frame[frame["status"] != "finished"]
    pairs = summary[["regime", "backbone"]].drop_duplicates().itertuples(index=False) if not summary.empty else []
    verdicts = [verdict(summary, regime, backbone) for regime, backbone in pairs]
    if not summary.empty:
        plot_accuracy_vs_macs(summary, paths["png"])
    seeds = sorted(frame["seed"].unique().tolist())
    text = [
        "# Paper table: eigenvector-centrality pruning vs conventional fine-tuning",
        "",
        f"Generated by `{command}` in {elapsed_s / 60:.1f} minutes on {device}; "
        f"{len(frame)} runs ({len(failed)} not finished), seeds {seeds}. Do not edit by hand.",
        "",
        "**Result:** " + (" ".join(verdicts) if verdicts else "no finished runs."),
        "",
        f"Set-up: image size {base.image_size or 'registry default'}, {base.epochs} epochs, batch {base.batch_size}, "
        f"lr {base.lr:g} (new head x{base.head_lr_scale:g}), train scope '{base.train_scope}' (the pruned layer is each backbone's dense layer nearest the "
        f"classifier; its input features are cached). 'conventional' trains a new linear head on the frozen backbone; "
        f"'finetune' trains the same layers as the pruned runs, unpruned. Differences are paired by seed (same split); "
        f"intervals are 95% t-intervals over seeds. Accuracy on the held-out test split.",
        "",
        f"![accuracy vs MACs]({paths['png'].name})",
        "",
        markdown_table(summary) if not summary.empty else "",
        "",
        f"Every run, with its status: [{paths['csv'].name}]({paths['csv'].name}).",
    ]
    if len(failed):
        text += ["", "Runs that did not finish:", ""] + [f"- {r.regime} {r.backbone} {r.criterion} keep {r.keep}: {r.status}: {r.message}"
                                                          for r in failed.itertuples()]
    paths["md"].write_text("\n".join(text) + "\n")
    return paths
