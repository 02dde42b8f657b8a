"""``AnalysisConfig``: the one source of the importance analysis's settings, their defaults and valid values.

Each field carries its help, choices and valid range (``options.option``, as ``FinetuneConfig``'s): the
analysis checks a config against them, ``experiment importance`` derives its options from them and the
app its widgets. The baseline run that trains the head is a ``FinetuneConfig`` of its own.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..options import Settings, option
from ..ranges import CRITERION_NAMES, DEFAULT_SEEDS, DEFAULT_TAU, KEEP, SEEDS, TAU, Range

__all__ = ["AnalysisConfig", "SAMPLE_SIZES", "RESAMPLES"]

SAMPLE_SIZES = Range(1, 10**6, integer=True)
RESAMPLES = Range(1, 100_000, integer=True)


@dataclass(frozen=True)
class AnalysisConfig(Settings):
    """What ``analyse_importance`` measures and how, beyond the run that trains the head.

    ``validate`` checks each field (each item of a tuple against the field's choices or range; at least one
    criterion and one keep ratio). Example: ``AnalysisConfig(seeds=2, resamples=200)`` is ``experiment
    importance --quick``'s analysis; ``analyse_importance(config, **settings.to_dict())`` runs it.
    """

    layer: str | None = option(None, "Layer to analyse; none: the backbone's head layer.", "analysis",
                               none="the backbone's head layer")
    criteria: tuple[str, ...] = option(CRITERION_NAMES, "Criteria whose scores are compared with the ablation effect "
                                                        "(comma-separated).", "analysis", choices=CRITERION_NAMES,
                                       label="criterion")
    tau: float = option(DEFAULT_TAU, "Cosine-similarity threshold of the graph criteria.", "analysis", range=TAU)
    seeds: int = option(DEFAULT_SEEDS, "Seeds of the random criterion (0..N-1): its band in the zero-shot curve.",
                        "analysis", range=SEEDS, app_range=Range(1, 20))
    heads: int = option(3, "Heads trained on the frozen backbone from seeds seed, seed+1, ...: each effect is averaged "
                           "over them.", "analysis", range=Range(1, 20, integer=True), app_range=Range(1, 5))
    sample_size: int = option(64, "Neurons measured (a seeded sample) where each needs a forward pass: any layer but "
                                  "one read only by the classifier, whose neurons are all measured at once.",
                              "analysis", range=SAMPLE_SIZES, flag="--sample", label="sample size")
    resamples: int = option(1000, "Bootstrap resamples (of the neurons and the images) for each 95% interval.",
                            "analysis", range=RESAMPLES, label="bootstrap resamples")
    keep_ratios: tuple[float, ...] = option((0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
                                            "Keep ratios of the zero-shot pruning curve (comma-separated).",
                                            "analysis", range=KEEP, label="keep ratio")
