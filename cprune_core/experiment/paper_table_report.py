"""The paper table's report: statistics over seeds, the verdict, the Markdown page, CSV and plot.

``summarise`` gives mean +- std over seeds and the paired difference to the conventional
baseline with a 95% t-interval over seeds; ``write_report`` writes <stem>.md (generated),
<stem>.csv (every run) and <stem>.png (accuracy against MACs).
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from scipy import stats

from ..criteria import DEFAULT_TAU
from ..figures import finish_panel, pyplot, save_figure
from ..paths import atomic_write
from ..schema import FinetuneConfig
from ..stats import minimum_detectable_difference

__all__ = ["summarise", "paired_interval", "verdict", "markdown_table", "plot_accuracy_vs_macs", "write_report"]


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
            "diff_sd": paired.std(ddof=1), "diff_seeds": int(paired.notna().sum()),
            "params": group["params"].mean(), "macs": group["macs"].mean(), "latency_ms": group["latency_ms"].mean(),
        })
    summary = pd.DataFrame(lines)
    if not summary.empty:
        summary["tau"] = summary["tau"].where(summary["tau"] >= 0)
    return summary


def verdict(summary: pd.DataFrame, regime: str, backbone: str) -> str:
    """One sentence: did eigenvector pruning beat the conventional baseline here, and by how much? Where the 95%
    t-interval holds 0: "could not be told apart", with the smallest difference a paired t-test at 0.05 on the
    seeds both have detects with 80% power at the differences' observed spread
    (``stats.minimum_detectable_difference``)."""
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
        outcome = "could not be told apart from"
    interval = "" if math.isnan(low) else f", 95% CI [{100 * low:+.1f}, {100 * high:+.1f}]"
    if outcome.startswith("could not"):  # what these seeds could have seen: a null result at low power says little
        detectable = minimum_detectable_difference(best["diff_sd"], int(best["diff_seeds"]), 0.05)
        interval += ("" if math.isnan(detectable) else
                     f"; at their observed spread, a paired t-test on these seeds detects {100 * detectable:.1f} "
                     "points with 80% power")
    return (f"{backbone} on {regime}: eigenvector pruning (keep ratio {best['keep']:g} chosen on validation, "
            f"tau {best['tau']:g}) "
            f"{outcome} the conventional baseline: {100 * best['test_acc_mean']:.1f}% vs "
            f"{100 * base['test_acc_mean']:.1f}% test accuracy ({100 * diff:+.1f} points{interval}; "
            f"{best['seeds']} seeds), with {best['params'] / base['params']:.0%} of its parameters "
            f"and {best['macs'] / base['macs']:.0%} of its MACs.")


def plot_accuracy_vs_macs(summary: pd.DataFrame, path: Path) -> None:
    plt = pyplot()

    panels = list(summary.groupby(["regime", "backbone"], sort=False))
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for axis, ((regime, backbone), frame) in zip(axes[0], panels):
        for criterion, lines in frame.groupby("criterion", sort=False):
            lines = lines[(lines["tau"].isna()) | (lines["tau"] == DEFAULT_TAU)].sort_values("macs")
            style = dict(marker="o") if len(lines) > 1 else dict(marker="*", markersize=14, linestyle="none")
            axis.errorbar(lines["macs"] / 1e6, 100 * lines["test_acc_mean"], yerr=100 * lines["test_acc_std"].fillna(0),
                          label=criterion, capsize=3, **style)
        finish_panel(axis, "MACs per image (millions)", "test accuracy (%)", f"{backbone} - {regime}")
    save_figure(figure, path)


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
                 base: FinetuneConfig, stem: str = "results", stopped: int = 0) -> dict[str, Path]:
    """docs/<stem>.md (generated), <stem>.csv (every run) and <stem>.png (accuracy vs MACs). ``stopped``: how
    many planned runs did not finish because the command was stopped (Ctrl-C), said at the top."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / f"{stem}.md", "csv": out_dir / f"{stem}.csv", "png": out_dir / f"{stem}.png"}
    frame = pd.DataFrame(rows)
    atomic_write(paths["csv"], lambda temporary: frame.to_csv(temporary, index=False))
    summary = summarise(rows)
    failed = frame[frame["status"] != "finished"]
    pairs = summary[["regime", "backbone"]].drop_duplicates().itertuples(index=False) if not summary.empty else []
    verdicts = [verdict(summary, regime, backbone) for regime, backbone in pairs]
    if not summary.empty:
        plot_accuracy_vs_macs(summary, paths["png"])
    seeds = sorted(frame["seed"].unique().tolist())
    from_store = int(frame["from_store"].eq(True).sum())
    retried = frame[frame["retried_after"].fillna("") != ""]
    text = [
        "# Paper table: eigenvector-centrality pruning vs conventional fine-tuning",
        "",
        f"Generated by `{command}` in {elapsed_s / 60:.1f} minutes on {device}; "
        f"{len(frame)} runs ({len(failed)} not finished, {len(retried)} retried after their worker died, "
        f"{from_store} finished by an earlier command), seeds {seeds}. Do not edit by hand.",
        "",
        "**Result:** " + (" ".join(verdicts) if verdicts else "no finished runs."),
        "",
        *([f"**Stopped with Ctrl-C:** {stopped} planned runs did not finish; this report is of the others. The "
           "same command runs the rest (finished runs are skipped).", ""] if stopped else []),
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
    if len(retried):
        text += ["", "Runs retried once because the worker running them died:", ""] + [
            f"- {r.regime} {r.backbone} seed {r.seed} {r.criterion} keep {r.keep}: {r.retried_after}; then {r.status}"
            for r in retried.itertuples()]
    atomic_write(paths["md"], lambda temporary: Path(temporary).write_text("\n".join(text) + "\n"))
    return paths
