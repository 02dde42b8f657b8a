"""One sentence that states what the numbers show for a layer: generated from them, never canned."""
from __future__ import annotations

import math

import numpy as np

from ..stats import Reliability
from .statistics import AblationResult, Correlation, ZeroShotCurve

__all__ = ["summary_sentence"]


def _interval(correlation: Correlation) -> str:
    return f"rho {correlation.spearman:+.2f}, 95% CI [{correlation.ci_low:+.2f}, {correlation.ci_high:+.2f}]"


def _eigenvector_clause(correlation: Correlation, best: bool, detectable: float) -> str:
    """What eigenvector centrality's interval says; ``best``: it was just named as the best predictor."""
    if math.isnan(correlation.spearman):
        return "eigenvector centrality's correlation is undefined (constant scores or effects)"
    if correlation.ci_low > 0:
        meaning = "excludes 0: more central neurons matter more"
    elif correlation.ci_high < 0:
        meaning = "excludes 0: more central neurons matter less"
    else:
        power = f" below {detectable:.2f}" if not math.isnan(detectable) else ""
        meaning = f"includes 0: the data could not tell whether centrality tells which neurons matter (a |rho|{power} " \
                  "would likely go unseen)"
    return f"its interval {meaning}" if best else f"eigenvector centrality has {_interval(correlation)}, which {meaning}"


def _runs(places: list[str], ratios: list[str]) -> list[tuple[str, list[str]]]:
    """Consecutive keep ratios grouped by where eigenvector lies: [("below", ["0.05", "0.1"]), ("within", ...)]."""
    runs: list[tuple[str, list[str]]] = []
    for place, ratio in zip(places, ratios):
        if runs and runs[-1][0] == place:
            runs[-1][1].append(ratio)
        else:
            runs.append((place, [ratio]))
    return runs


def _span(ratios: list[str]) -> str:
    return f"keep {ratios[0]}" if len(ratios) == 1 else f"keep {ratios[0]} to {ratios[-1]}"


def _curve_clause(curve: ZeroShotCurve) -> str:
    """Where eigenvector's zero-shot accuracy lies against random's range at every keep ratio below 1 (at 1 every
    criterion keeps everything), the ratios grouped into runs, with the largest gap as an example."""
    shown = [i for i, ratio in enumerate(curve.keep_ratios) if ratio < 1 - 1e-9]
    if not shown:
        return ""
    eigen = curve.accuracy["eigenvector"][0]
    mean, low, high = curve.band("random")
    seeds = len(curve.accuracy["random"])
    places = ["above" if eigen[i] > high[i] else "below" if eigen[i] < low[i] else "within" for i in shown]
    ratios = [f"{curve.keep_ratios[i]:g}" for i in shown]
    band = f"random pruning's range over {seeds} seeds"
    where = ", ".join(f"{place} {band if n == 0 else 'it'} at {_span(span)}"
                      for n, (place, span) in enumerate(_runs(places, ratios)))
    example = max(shown, key=lambda i: abs(eigen[i] - mean[i]))
    detail = (f"largest gap: {100 * eigen[example]:.1f}% vs {100 * low[example]:.1f}-{100 * high[example]:.1f}% at "
              f"keep {curve.keep_ratios[example]:g}")
    return f"before any fine-tuning, keeping the most central neurons gives validation accuracy {where} ({detail})"


def summary_sentence(result: AblationResult, correlations: dict[str, Correlation], curve: ZeroShotCurve,
                     reliability: Reliability | None = None, detectable: float = math.nan) -> str:
    """One sentence stating what the numbers show for this layer: how much single neurons matter (and on how many
    images and heads), how repeatable those effects are and the ceiling that puts on any rho, the criterion that
    best predicts the effect, whether eigenvector centrality's interval excludes 0 (and, where it does not, the
    smallest rho the test could have seen), and where its zero-shot accuracy lies against random's band at every
    keep ratio below 1 (each part only when the numbers it needs were computed)."""
    measured = (f"a sample of {len(result.neurons):,} of the {result.n_neurons:,} neurons" if result.sampled
                else f"all {result.n_neurons:,} neurons")
    harmful = int((result.delta_loss > 0).sum())
    heads = f", averaged over {result.heads} heads" if result.heads > 1 else ""
    parts = [f"Of {measured} of {result.layer}, {harmful:,} raise the validation loss when removed alone "
             f"(largest rise {result.delta_loss.max(initial=0.0):.4f}, median change {np.median(result.delta_loss):+.5f}; "
             f"{result.n_images:,} validation images{heads})"]
    if reliability is not None and not math.isnan(reliability.full):
        parts.append(f"those effects' split-half reliability is {reliability.full:.2f} (Spearman-Brown), so no "
                     f"criterion could show |rho| above {reliability.ceiling:.2f}")
    ranked = sorted((c for c in correlations.values() if c.criterion != "random" and not math.isnan(c.spearman)),
                    key=lambda c: c.spearman, reverse=True)
    best = ranked[0] if ranked else None
    if best is not None:
        parts.append(f"the criterion whose scores correlate best with that effect is {best.criterion} ({_interval(best)})")
    else:
        parts.append("no criterion's correlation with that effect is defined")
    if "eigenvector" in correlations:
        parts.append(_eigenvector_clause(correlations["eigenvector"], best is not None and best.criterion == "eigenvector",
                                         detectable))
    if {"eigenvector", "random"} <= set(curve.accuracy):
        parts.append(_curve_clause(curve))
    return "; ".join(part for part in parts if part) + "."
