"""The atlas's settings and their defaults, written once: each field's help, valid values and flag
(``options.option``), from which the settings are checked, ``experiment atlas`` derives its options and
the Layer-wise page its form (the bench reads them here too).

Why these defaults (EfficientNet-Lite0 on flowers128 at 128 px, in under 45 minutes on a 2-core CPU;
README "Does centrality predict importance, layer by layer?"): a forward ablation costs one pass of the
rest of the network per removed set and validation image, so a layer costs (sample + keep ratios x
(7 criteria + seeds) + 1) x images passes of its rest. 48 neurons per layer give Spearman intervals about
+-0.29 around 0 (1.96 / sqrt(45)); 128 validation images resolve accuracy to 0.8 points; 8 random seeds
give the t-test of a new draw 7 degrees of freedom. The head layer is measured in full whatever the
sample (one matrix operation on the pooled features).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..ablation import RESAMPLES, SAMPLE_SIZES
from ..criteria import CRITERIA, DEFAULT_TAU
from ..errors import ConfigError
from ..options import Settings, option
from ..ranges import KEEP, SEEDS, TAU, Range
from .significance import PERMUTATIONS

__all__ = ["AtlasSettings", "DEFAULT_SAMPLE", "VAL_IMAGES", "QUICK_LAYERS"]

DEFAULT_SAMPLE = 48  # neurons measured per layer when no sample size is given (fewer: all of them)
VAL_IMAGES = Range(1, 10**7, integer=True)
ATLAS_SEEDS = Range(2, SEEDS.high, integer=True)  # the group test compares with random's spread: 2 seeds at least
QUICK_LAYERS = 4  # --quick: this many layers, evenly spread from the first to the last
# The app's limits (a visitor on a shared server): a rho needs 3 neurons; more than 1,000 images or 20 seeds is
# the command line's work (each multiplies every layer's cost).
APP_SAMPLE, APP_VAL_IMAGES, APP_SEEDS = Range(3, 1000), Range(8, 1000), Range(2, 20)


@dataclass(frozen=True)
class AtlasSettings(Settings):
    """What the atlas measures in each layer.

    ``sample_size`` None: up to DEFAULT_SAMPLE neurons of each layer (all of a smaller layer); a number:
    exactly that many from every chosen layer (ConfigError for a layer with fewer). ``layers`` None:
    every prunable layer; ``quick_layers`` > 0: that many of them, evenly spread."""

    sample_size: int | None = option(
        None, "Neurons measured in every layer by a forward pass each (a seeded sample). The head layer is always "
              "measured in full.", "atlas", range=SAMPLE_SIZES, app_range=APP_SAMPLE, flag="--sample",
        label="sample size", none=f"up to {DEFAULT_SAMPLE} of each layer (all of a smaller one)")
    val_images: int = option(128, "Validation images the ablations run on (a seeded subset; all of a smaller split).",
                             "atlas", range=VAL_IMAGES, app_range=APP_VAL_IMAGES, label="validation images")
    seeds: int = option(8, "Seeds of the random criterion: its band, and the reference of the group test.", "atlas",
                        range=ATLAS_SEEDS, app_range=APP_SEEDS,
                        note="The atlas needs at least 2 seeds of the random criterion: their spread is the "
                             "reference of the group test.")
    keep_ratios: tuple[float, ...] = option((0.5, 0.25), "Keep ratios of the group ablation (comma-separated).",
                                            "atlas", range=KEEP, label="keep ratio")
    tau: float = option(DEFAULT_TAU, "Cosine-similarity threshold of the graph criteria.", "atlas", range=TAU)
    resamples: int = option(1000, "Bootstrap resamples of each Spearman interval.", "atlas", range=RESAMPLES,
                            label="bootstrap resamples")
    permutations: int = option(9999, "Permutations of each rho's test.", "atlas", range=PERMUTATIONS)
    criteria: tuple[str, ...] = option(tuple(CRITERIA), "Criteria measured (comma-separated); eigenvector and random "
                                                        "are always among them.", "atlas", choices=CRITERIA,
                                       label="criterion")
    layers: tuple[str, ...] | None = option(None, "Layers to measure (comma-separated), or all of the prunable ones.",
                                            "atlas", label="layer", none="every prunable layer", cli_none="all")
    quick_layers: int = option(0, "When every prunable layer is chosen: measure only this many, evenly spread from "
                                  "the first to the last; 0: all of them.", "atlas",
                               range=Range(0, 10**4, integer=True), label="quick layers")

    @classmethod
    def quick(cls, **changes) -> AtlasSettings:
        """Minutes on a CPU, for tests and for checking the set-up: 4 layers, 16 neurons, 32 images, 4 seeds."""
        return cls(**{"sample_size": 16, "val_images": 32, "seeds": 4, "resamples": 200, "permutations": 999,
                      "quick_layers": QUICK_LAYERS, **changes})

    def check_together(self) -> None:
        """The atlas compares eigenvector centrality with random pruning: both criteria are needed."""
        if not {"eigenvector", "random"} <= set(self.criteria):
            raise ConfigError("The atlas compares eigenvector centrality with random pruning: keep both criteria.")

    def sample_for(self, neurons: int) -> int:
        """Neurons measured in a layer of ``neurons`` by forward passes."""
        return min(neurons, DEFAULT_SAMPLE) if self.sample_size is None else self.sample_size

    def identity(self) -> dict:
        """What a layer's numbers depend on (for its key): everything but the choice of layers."""
        values = asdict(self)
        for name in ("layers", "quick_layers"):
            values.pop(name)
        return values
