"""The allocation experiment's report: allocation.md (generated), allocation.csv (every run) and allocation.png.

``summarise`` gives each setting's test accuracy over seeds; ``comparisons`` the paired differences over seeds
(each rule against uniform at the same MACs and criterion; eigenvector against random within layers at the same
rule), each a mean with a 95% t-interval over seeds (``paper_table_report.paired_interval``), its paired t-test
with Holm's correction over the comparisons of its kind (the two families), and the smallest difference that
test could detect (80% power at Holm's first step, from the differences' own spread): an interval that holds 0 is
"could not tell", with the size the seeds could have seen.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from scipy import stats

from ..figures import finish_panel, pyplot, save_figure
from ..paths import atomic_write
from ..stats import holm, minimum_detectable_difference
from .allocation import EPSILON
from .paper_table_report import paired_interval

__all__ = ["summarise", "chance_sentence", "comparisons", "allocation_sentence", "plot_allocations",
           "write_allocation_report"]

SETTING = ["backbone", "regime", "removed", "criterion", "rule"]
ALPHA, POWER = 0.05, 0.8  # each family's error rate (Holm), and the power the detectable difference is stated at
COMPARED = ["kind", "backbone", "regime", "removed", "comparison", "held", "seeds", "difference", "low", "high", "sd",
            "p", "p_holm", "detectable"]
DODGE_POINTS = 0.6  # percentage points of MACs removed between two settings' points in the plot


def _finished(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    return frame[frame["status"] == "finished"].copy() if len(frame) else frame


def summarise(rows: list[dict]) -> pd.DataFrame:
    """One line per setting: seeds, test accuracy mean and std, the target, planned and measured MACs, chance
    (1 / the classes) and whether the setting is shown above it (the 95% t-interval of its mean over seeds lies
    above chance: a setting not shown so may have learned nothing, and its differences say nothing of the rules)."""
    frame = _finished(rows)
    if frame.empty:
        return pd.DataFrame(columns=[*SETTING, "seeds", "test_acc_mean", "test_acc_std", "target_macs", "macs",
                                     "chance", "above_chance"])
    summary = (frame.groupby(SETTING, sort=False)
               .agg(seeds=("seed", "nunique"), test_acc_mean=("test_acc", "mean"), test_acc_std=("test_acc", "std"),
                    target_macs=("target_macs", "first"), planned_macs=("planned_macs", "first"),
                    macs=("macs", "mean"), classes=("classes", "first"))
               .reset_index())
    summary["chance"] = 1 / summary["classes"]
    low = [paired_interval(runs["test_acc"])[1] for _, runs in frame.groupby(SETTING, sort=False)]
    summary["above_chance"] = [not math.isnan(bound) and bound > chance for bound, chance in zip(low, summary["chance"])]
    return summary


def chance_sentence(summary: pd.DataFrame) -> str:
    """Which pruned settings are not shown above chance, said first: their rule comparisons compare networks that may
    have learned nothing. Empty when every setting is shown above it."""
    pruned = summary[summary["rule"] != "unpruned"]
    below = pruned[~pruned["above_chance"]]
    if below.empty:
        return ""
    chance = ", ".join(f"{100 * value:.0f}%" for value in sorted(below["chance"].unique()))
    every = len(below) == len(pruned)
    return (f"{'Every one' if every else f'{len(below)}'} of the {len(pruned)} pruned settings "
            f"{'is' if every else 'are'} not shown above chance ({chance}: the 95% t-interval of a setting's mean test "
            "accuracy over seeds reaches it): those networks did not recover from pruning in this regime, and the "
            "rules' differences among them say nothing about allocation.")


def _paired(first: pd.DataFrame, second: pd.DataFrame) -> tuple[int, float, float, float, float, float]:
    """(seeds, mean, low, high, sd, p) of ``first``'s test accuracy minus ``second``'s on the seeds both have: the
    95% t-interval and the two-sided paired t-test's p (NaN with fewer than two seeds, or differences all equal)."""
    a, b = first.set_index("seed")["test_acc"], second.set_index("seed")["test_acc"]
    differences = (a - b.reindex(a.index)).dropna()
    mean, low, high = paired_interval(differences)
    sd = float(differences.std(ddof=1)) if len(differences) > 1 else math.nan
    p = float(stats.ttest_1samp(differences, 0.0).pvalue) if len(differences) > 1 and sd > 0 else math.nan
    return len(differences), mean, low, high, sd, p


def comparisons(rows: list[dict]) -> pd.DataFrame:
    """The paired differences in test accuracy over seeds: every rule minus uniform (same MACs share, same
    criterion within layers: kind "rule"), and eigenvector minus random (same rule and share: kind "within").
    Each kind is one Holm family (``p_holm``); ``detectable`` is the smallest mean difference its t-test detects
    with 80% power at Holm's first step (0.05 / the family's tested comparisons), given the differences' sd."""
    frame, found = _finished(rows), []
    if frame.empty:
        return pd.DataFrame(columns=COMPARED)
    pruned = frame[frame["rule"] != "unpruned"]
    for (backbone, regime, removed), block in pruned.groupby(["backbone", "regime", "removed"], sort=False):
        for criterion, runs in block.groupby("criterion", sort=False):
            uniform = runs[runs["rule"] == "uniform"]
            for rule in (rule for rule in runs["rule"].unique() if rule != "uniform"):
                found.append(("rule", backbone, regime, removed, f"{rule} - uniform", criterion,
                              *_paired(runs[runs["rule"] == rule], uniform)))
        for rule, runs in block.groupby("rule", sort=False):
            found.append(("within", backbone, regime, removed, "eigenvector - random", rule,
                          *_paired(runs[runs["criterion"] == "eigenvector"], runs[runs["criterion"] == "random"])))
    compared = pd.DataFrame(found, columns=COMPARED[:-2])
    compared["p_holm"], compared["detectable"] = math.nan, math.nan
    for _, family in compared.groupby("kind", sort=False):
        compared.loc[family.index, "p_holm"] = holm(family["p"].to_numpy())
        level = ALPHA / max(int(family["p"].notna().sum()), 1)
        compared.loc[family.index, "detectable"] = [minimum_detectable_difference(line.sd, line.seeds, level, POWER)
                                                    for line in family.itertuples()]
    return compared


def _difference(line) -> str:
    """"+1.2 points [-0.5, +2.9], Holm p 0.41: could not tell (at their observed spread, these seeds detect a
    difference of 3.1 points with 80% power)", or the side of 0 a difference lies on where Holm's p is below 0.05.
    The interval is the unadjusted 95% t-interval: the verdict is Holm's, so an interval that excludes 0 can still
    read "could not tell"."""
    text = f"{100 * line.difference:+.1f} points"
    if math.isnan(line.low):
        return f"{text} ({line.seeds} seed{'s' * (line.seeds != 1)}: no interval)"
    text += f" [{100 * line.low:+.1f}, {100 * line.high:+.1f}]"
    if math.isnan(line.p_holm):
        return f"{text}: every seed gave the same difference"
    first, second = line.comparison.split(" - ")
    if line.p_holm < ALPHA:
        return f"{text}, Holm p {line.p_holm:.2g}: {first} {'above' if line.difference > 0 else 'below'} {second}"
    return (f"{text}, Holm p {line.p_holm:.2g}: could not tell (at their observed spread, these seeds detect a "
            f"difference of {100 * line.detectable:.1f} points with {POWER:.0%} power)")


def allocation_sentence(compared: pd.DataFrame) -> str:
    """What the rules did against uniform at the same MACs, with eigenvector centrality within layers (the paper's
    criterion), whichever way it went, with what the seeds could detect."""
    lines = compared[(compared["kind"] == "rule") & (compared["held"] == "eigenvector")]
    if lines.empty:
        return "No rule could be compared with uniform (no pair of finished runs)."
    said = [f"at {line.removed:.0%} of the MACs removed on {line.backbone}, {line.regime}, "
            f"{line.comparison.split(' - ')[0]}'s ratios gave {_difference(line)}" for line in lines.itertuples()]
    return ("Test accuracy after fine-tuning, each rule minus uniform on the same seeds (mean, unadjusted 95% "
            "t-interval over seeds, and the paired t-test with Holm's correction over every rule-against-uniform "
            "comparison, which gives the verdict), "
            "eigenvector centrality ranking the neurons within each layer: " + "; ".join(said) + ".")


def plot_allocations(summary: pd.DataFrame, path: Path) -> None:
    """Test accuracy against the share of MACs removed, a line per rule and criterion, a panel per backbone and
    regime; the unpruned network as a dotted line. The series stand DODGE_POINTS apart sideways around each share
    removed, so that no error bar hides another (with one share they would all stand on one vertical line)."""
    plt = pyplot()

    panels = list(summary.groupby(["backbone", "regime"], sort=False))
    figure, axes = plt.subplots(1, max(len(panels), 1), figsize=(6 * max(len(panels), 1), 4.5), squeeze=False)
    for axis, ((backbone, regime), frame) in zip(axes[0], panels):
        pruned = frame[frame["rule"] != "unpruned"]
        series = list(pruned.groupby(["rule", "criterion"], sort=False))
        for index, ((rule, criterion), lines) in enumerate(series):
            lines = lines.sort_values("removed")
            dodge = (index - (len(series) - 1) / 2) * DODGE_POINTS
            axis.errorbar(100 * lines["removed"] + dodge, 100 * lines["test_acc_mean"],
                          yerr=100 * lines["test_acc_std"].fillna(0), marker="o", capsize=3,
                          linestyle="-" if criterion == "eigenvector" else "--", label=f"{rule}, {criterion}")
        unpruned = frame[frame["rule"] == "unpruned"]["test_acc_mean"]
        if len(unpruned):
            axis.axhline(100 * unpruned.iloc[0], color="#444", linestyle=":", label="unpruned")
        axis.set_xticks(sorted(100 * pruned["removed"].unique()))
        finish_panel(axis, "MACs removed (% of the prunable MACs; the settings set apart sideways)",
                     "test accuracy (%) after fine-tuning", f"{backbone} - {regime}")
    save_figure(figure, path)


def _tables(summary: pd.DataFrame, compared: pd.DataFrame) -> list[str]:
    lines = ["| backbone | regime | MACs removed | within layers | rule | seeds | test acc % (mean +- std) | "
             "target MACs (M) | MACs (M) |", "|---|---|---|---|---|---|---|---|---|"]
    for line in summary.itertuples():
        lines.append(f"| {line.backbone} | {line.regime} | {line.removed:.0%} | {line.criterion} | {line.rule} | "
                     f"{line.seeds} | {100 * line.test_acc_mean:.1f} +- {100 * (line.test_acc_std or 0):.1f} | "
                     f"{line.target_macs / 1e6:.2f} | {line.macs / 1e6:.2f} |")
    lines += ["", "Paired differences over seeds (points of test accuracy, unadjusted 95% t-interval; the verdict is "
                  "a two-sided paired t-test's, Holm-corrected within each family: every rule against uniform is one family, every eigenvector "
                  "against random the other; \"detect\" is the smallest difference the test finds with 80% power at "
                  "Holm's first step, given the differences' spread):", "",
              "| backbone | regime | MACs removed | comparison | held | seeds | difference [95% CI], verdict |",
              "|---|---|---|---|---|---|---|"]
    for line in compared.itertuples():
        lines.append(f"| {line.backbone} | {line.regime} | {line.removed:.0%} | {line.comparison} | {line.held} | "
                     f"{line.seeds} | {_difference(line)} |")
    return lines


def write_allocation_report(rows: list[dict], out_dir: Path, *, command: str, elapsed_s: float, device: str,
                            epochs: int, stopped: int = 0, stem: str = "allocation") -> dict[str, Path]:
    """<stem>.md (generated), <stem>.csv (every run) and <stem>.png in ``out_dir``; ``stopped``: planned runs an
    interruption left undone (said in the report)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / f"{stem}.md", "csv": out_dir / f"{stem}.csv", "png": out_dir / f"{stem}.png"}
    frame = pd.DataFrame(rows)
    atomic_write(paths["csv"], lambda temporary: frame.to_csv(temporary, index=False, float_format="%.6g"))
    summary, compared = summarise(rows), comparisons(rows)
    plot_allocations(summary, paths["png"])
    finished = _finished(rows)
    pruned = finished[finished["rule"] != "unpruned"]
    exact = int((pruned["macs"] == pruned["planned_macs"]).sum())
    earlier = int(frame["from_store"].eq(True).sum()) if "from_store" in frame else 0
    at_chance = chance_sentence(summary)
    text = ["# How much to prune each layer: ratios by alpha, by measured tolerance, or uniform, at the same MACs", "",
            f"Generated by `{command}` in {elapsed_s / 60:.1f} minutes on {device}. Do not edit by hand. "
            f"{len(finished)} of {len(rows)} runs finished" + (f", {earlier} of them by an earlier command (read "
                                                               "back from the run store)" if earlier else "")
            + (f"; {stopped} planned runs were stopped before they ran" if stopped else "") + ".", "",
            *([f"**At chance:** {at_chance}", ""] if at_chance else []),
            f"**Finding:** {allocation_sentence(compared)}", "",
            "How it is run: the whole network is pruned (every prunable group) to the same total MACs per image (the "
            "full network's minus the stated share of the MACs of every layer pruning changes; for EfficientNet-Lite "
            "that is every Conv2d and Linear) by three rules: the same ratio in every layer; AlphaPruning's "
            f"allocation (Lu et al., NeurIPS 2024: each layer's alpha_mid mapped linearly onto [1 - {EPSILON:g}, "
            f"1 + {EPSILON:g}], a larger alpha pruned more, one common scale); the same map of each layer's "
            "measured tolerance (the atlas's accuracy with a random half of the layer removed), the more tolerant "
            "pruned more. The neurons kept within each layer are ranked by eigenvector centrality or at random. Then "
            f"the whole network is fine-tuned ({epochs} epoch{'s' * (epochs != 1)}, augmented images) on the same split per seed. "
            f"Measured MACs equal the planned ones in {exact} of {len(pruned)} pruned runs; each allocation lands at "
            "or below its target, close enough that no layer could keep one more neuron without passing it "
            "(docs/science.md).", "",
            f"![accuracy against MACs removed]({paths['png'].name})", "", *_tables(summary, compared), "",
            f"Every run: [{paths['csv'].name}]({paths['csv'].name})."]
    atomic_write(paths["md"], lambda temporary: Path(temporary).write_text("\n".join(text) + "\n"))
    return paths
