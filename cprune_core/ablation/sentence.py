"""One sentence that states what the numbers show for a layer: generated from them, never canned."""
from __future__ import annotations

import math

import numpy as np

from .statistics import AblationResult, Correlation, ZeroShotCurve

__all__ = ["summary_sentence", "SMALL_KEEP"]

SMALL_KEEP = 0.2  # the sentence compares eigenvector with random at keep ratios up to this


def _interval(correlation: Correlation) -> str:
    return f"rho {correlation.spearman:+.2f}, 95% CI [{correlation.ci_low:+.2f}, {correlation.ci_high:+.2f}]"


def _eigenvector_clause(correlation: Correlation, best: bool) -> str:
    """What eigenvector centrality's interval says; ``best``: it was just named as the best predictor."""
    if math.isnan(correlation.spearman):
        return "eigenvector centrality's correlation is undefined (constant scores or effects)"
    if correlation.ci_low > 0:
        meaning = "excludes 0: more central neurons matter more"
    elif correlation.ci_high < 0:
        meaning = "excludes 0: more central neurons matter less"
    else:
        meaning = "includes 0: no evidence that centrality tells which neurons matter"
    return f"its interval {meaning}" if best else f"eigenvector centrality has {_interval(correlation)}, which {meaning}"


def _curve_clause(curve: ZeroShotCurve) -> str:
    """Where eigenvector's zero-shot accuracy lies against random's range at the small keep ratios."""
    small = [i for i, ratio in enumerate(curve.keep_ratios) if ratio <= SMALL_KEEP + 1e-9]
    if not small:
        return ""
    eigen = curve.accuracy["eigenvector"][0]
    _, low, high = curve.band("random")
    seeds = len(curve.accuracy["random"])
    places = ["above" if eigen[i] > high[i] else "below" if eigen[i] < low[i] else "within" for i in small]
    ratios = [f"{curve.keep_ratios[i]:g}" for i in small]
    example = small[len(small) // 2]
    detail = (f"{100 * eigen[example]:.1f}% vs {100 * low[example]:.1f}-{100 * high[example]:.1f}% at keep "
              f"{curve.keep_ratios[example]:g}")
    if len(set(places)) == 1:
        span = f"at keep {ratios[0]}" if len(ratios) == 1 else f"at every keep ratio from {ratios[0]} to {ratios[-1]}"
        where = f"{places[0]} random pruning's range over {seeds} seeds {span}"
    else:
        at = {place: [ratio for p, ratio in zip(places, ratios) if p == place] for place in dict.fromkeys(places)}
        where = f"{places[0]} random pruning's range over {seeds} seeds at keep {' and '.join(at[places[0]])}, " + \
            ", ".join(f"{place} it at keep {' and '.join(ratios_at)}" for place, ratios_at in list(at.items())[1:])
    return f"before any fine-tuning, keeping the most central neurons gives validation accuracy {where} ({detail})"


def summary_sentence(result: AblationResult, correlations: dict[str, Correlation], curve: ZeroShotCurve) -> str:
    """One sentence stating what the numbers show for this layer: how much single neurons matter, the
    criterion that best predicts the ablation effect, whether eigenvector centrality's interval
    excludes 0, and where its zero-shot accuracy lies against the random band at keep ratios up to
    0.2 (each part only when the criteria it needs were computed)."""
    measured = (f"a sample of {len(result.neurons):,} of the {result.n_neurons:,} neurons" if result.sampled
                else f"all {result.n_neurons:,} neurons")
    harmful = int((result.delta_loss > 0).sum())
    parts = [f"Of {measured} of {result.layer}, {harmful:,} raise the validation loss when removed alone "
             f"(largest rise {result.delta_loss.max(initial=0.0):.4f}, median change {np.median(result.delta_loss):+.5f})"]
    ranked = sorted((c for c in correlations.values() if c.criterion != "random" and not math.isnan(c.spearman)),
                    key=lambda c: c.spearman, reverse=True)
    best = ranked[0] if ranked else None
    if best is not None:
        parts.append(f"the criterion whose scores correlate best with that effect is {best.criterion} ({_interval(best)})")
    else:
        parts.append("no criterion's correlation with that effect is defined")
    if "eigenvector" in correlations:
        parts.append(_eigenvector_clause(correlations["eigenvector"], best is not None and best.criterion == "eigenvector"))
    if {"eigenvector", "random"} <= set(curve.accuracy):
        parts.append(_curve_clause(curve))
    return "; ".join(part for part in parts if part) + "."


