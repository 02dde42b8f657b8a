"""The atlas's settings and their defaults, written once (the command line, the bench and the app read them here).

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
from ..ranges import KEEP, SEEDS, TAU, Range, choose
from .significance import PERMUTATIONS

__all__ = ["AtlasSettings", "DEFAULT_SAMPLE", "VAL_IMAGES", "QUICK_LAYERS"]

DEFAULT_SAMPLE = 48  # neurons measured per layer when no sample size is given (fewer: all of them)
VAL_IMAGES = Range(1, 10**7, integer=True)
QUICK_LAYERS = 4  # --quick: this many layers, evenly spread from the first to the last


@dataclass(frozen=True)
class AtlasSettings:
    """What the atlas measures in each layer.

    ``sample_size`` None: up to DEFAULT_SAMPLE neurons of each layer (all of a smaller layer); a number:
    exactly that many from every chosen layer (ConfigError for a layer with fewer). ``layers`` None:
    every prunable layer; ``quick_layers`` > 0: that many of them, evenly spread."""

    sample_size: int | None = None
    val_images: int = 128  # a seeded subset of the validation split (all of a smaller one)
    seeds: int = 8  # of the random criterion: its band and the reference of the group test
    keep_ratios: tuple[float, ...] = (0.5, 0.25)
    tau: float = DEFAULT_TAU
    resamples: int = 1000  # bootstrap resamples of the Spearman interval
    permutations: int = 9999  # of the rho test
    criteria: tuple[str, ...] = tuple(CRITERIA)
    layers: tuple[str, ...] | None = None
    quick_layers: int = 0

    @classmethod
    def quick(cls, **changes) -> AtlasSettings:
        """Minutes on a CPU, for tests and for checking the set-up: 4 layers, 16 neurons, 32 images, 4 seeds."""
        return cls(**{"sample_size": 16, "val_images": 32, "seeds": 4, "resamples": 200, "permutations": 999,
                      "quick_layers": QUICK_LAYERS, **changes})

    def validate(self) -> AtlasSettings:
        """``self`` when every value is possible, else ConfigError naming the first that is not."""
        if self.sample_size is not None:
            SAMPLE_SIZES.check(self.sample_size, "sample size")
        VAL_IMAGES.check(self.val_images, "validation images")
        SEEDS.check(self.seeds, "seeds")
        if self.seeds < 2:
            raise ConfigError("The atlas needs at least 2 seeds of the random criterion (its spread is the "
                              "reference of the group test); use --seeds 2 or more.")
        if not self.keep_ratios:
            raise ConfigError("Choose at least one keep ratio.")
        for ratio in self.keep_ratios:
            KEEP.check(ratio, "keep ratio")
        TAU.check(self.tau, "tau")
        RESAMPLES.check(self.resamples, "bootstrap resamples")
        PERMUTATIONS.check(self.permutations, "permutations")
        for name in self.criteria:
            choose(name, CRITERIA, "criterion")
        if not {"eigenvector", "random"} <= set(self.criteria):
            raise ConfigError("The atlas compares eigenvector centrality with random pruning: keep both criteria.")
        if self.layers is not None and not self.layers:
            raise ConfigError("Name at least one layer, or all.")
        Range(0, 10**4, integer=True).check(self.quick_layers, "quick layers")
        return self

    def sample_for(self, neurons: int) -> int:
        """Neurons measured in a layer of ``neurons`` by forward passes."""
        return min(neurons, DEFAULT_SAMPLE) if self.sample_size is None else self.sample_size

    def identity(self) -> dict:
        """What a layer's numbers depend on (for its key): everything but the choice of layers."""
        values = asdict(self)
        for name in ("layers", "quick_layers"):
            values.pop(name)
        return values
