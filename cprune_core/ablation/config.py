"""``AnalysisConfig``: the one source of the importance analysis's settings, their defaults and valid values.

Each field carries its help, choices and valid range (``schema.Option``, as ``FinetuneConfig``'s): the
analysis checks a config against them, ``experiment importance`` derives its options from them and the
app its widgets. The baseline run that trains the head is a ``FinetuneConfig`` of its own.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..criteria import CRITERIA, DEFAULT_TAU
from ..errors import ConfigError
from ..ranges import DEFAULT_SEEDS, KEEP, SEEDS, TAU, Range, choose
from ..schema import config_options, option

__all__ = ["AnalysisConfig", "SAMPLE_SIZES", "RESAMPLES"]

SAMPLE_SIZES = Range(1, 10**6, integer=True)
RESAMPLES = Range(1, 100_000, integer=True)


@dataclass(frozen=True)
class AnalysisConfig:
    """What ``analyse_importance`` measures and how, beyond the run that trains the head.

    Example: ``AnalysisConfig(seeds=2, resamples=200)`` is ``experiment importance --quick``'s analysis;
    ``analyse_importance(config, **settings.to_dict())`` runs it.
    """

    layer: str | None = option(None, "Layer to analyse; none: the backbone's head layer.", "analysis")
    criteria: tuple[str, ...] = option(tuple(CRITERIA), "Criteria whose scores are compared with the ablation effect "
                                                        "(comma-separated).", "analysis", choices=tuple(CRITERIA),
                                       label="criterion")
    tau: float = option(DEFAULT_TAU, "Cosine-similarity threshold of the graph criteria.", "analysis", range=TAU)
    seeds: int = option(DEFAULT_SEEDS, "Seeds of the random criterion (0..N-1): its band in the zero-shot curve.",
                        "analysis", range=SEEDS)
    sample_size: int = option(64, "Neurons measured (a seeded sample) where each needs a forward pass: any layer but "
                                  "one read only by the classifier, whose neurons are all measured at once.",
                              "analysis", range=SAMPLE_SIZES, flag="--sample")
    resamples: int = option(1000, "Bootstrap resamples of the neurons for each 95% interval.", "analysis",
                            range=RESAMPLES, label="bootstrap resamples")
    keep_ratios: tuple[float, ...] = option((0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
                                            "Keep ratios of the zero-shot pruning curve (comma-separated).",
                                            "analysis", range=KEEP, label="keep ratio")

    def validate(self) -> AnalysisConfig:
        """This config, checked: ConfigError naming the first impossible value (each item of a tuple is
        checked against the field's choices or range; at least one criterion and one keep ratio)."""
        if not self.criteria:
            raise ConfigError("Choose at least one criterion.")
        if not self.keep_ratios:
            raise ConfigError("Choose at least one keep ratio.")
        for name, opt in config_options(AnalysisConfig).items():
            value = getattr(self, name)
            for item in value if isinstance(value, (tuple, list)) else [value]:
                label = opt.label or name.replace("_", " ")
                if opt.choices is not None:
                    choose(item, opt.choices, label)
                if opt.range is not None:
                    opt.range.check(item, label)
        if self.layer is not None and not (isinstance(self.layer, str) and self.layer):
            raise ConfigError(f"layer must be a layer's name, or None for the head layer; got {self.layer!r}.")
        return self

    def to_dict(self) -> dict:
        """The settings as keyword arguments of ``analyse_importance``."""
        return asdict(self)
