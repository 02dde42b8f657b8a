"""The atlas's settings and their defaults, written once: each field's help, valid values and flag
(``options.option``), from which the settings are checked, ``experiment atlas`` derives its options and
the Layer-wise page its form (the bench reads them here too).

Why these defaults (docs/science.md, "Layer by layer: the atlas"). The single-neuron effects are the noisy part:
on 128 images their split-half reliability was near 0 in some layers, so every validation image is used and the
effects are averaged over 3 heads trained from different seeds. A layer's rho test among n neurons, after Holm
over m layers, detects |rho| >= tanh(3.9 sqrt(1.06 / (n - 3))) with 80% power: 0.54 for the earlier 48 neurons,
0.30 for 170. The group test ranks a criterion's kept set among random kept sets drawn one by one (Besag and
Clifford's sequential test: it stops once 10 random sets lie on each side of every criterion, else at 50), so its
p-value needs no normal tail. Its smallest p-value is 2 / (draws + 1): 0.039 for 50 draws, 0.020 for 100, both far
above Holm's first threshold over 24 layers (0.0021, which would take about 950 draws of the rest of the network
per keep ratio); so per layer the group test describes, and the group question is answered by the paired test
pooled over layers. 50 draws settle each layer's random mean to within about a seventh of their spread, at half
the cost of 100 (the draws are most of a layer's cost). A layer read only through pooling, where a kept set costs
one matrix product, draws up to 500. A forward ablation costs one pass of the rest of the network per removed set and
image: the sample and the random draws are nearly all of the cost (docs/benchmarks.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..ablation.config import RESAMPLES, SAMPLE_SIZES
from ..errors import ConfigError
from ..options import Settings, option
from ..ranges import CRITERION_NAMES, DEFAULT_TAU, KEEP, SEEDS, TAU, Range
from .significance import PERMUTATIONS

__all__ = ["AtlasSettings", "DEFAULT_SAMPLE", "VAL_IMAGES", "QUICK_LAYERS", "SEQUENTIAL_HITS", "POOLED_DRAWS",
           "REFINED_PERMUTATIONS"]

DEFAULT_SAMPLE = 170  # neurons measured per layer when no sample size is given (fewer: all of them)
VAL_IMAGES = Range(1, 10**7, integer=True)
ATLAS_SEEDS = Range(2, SEEDS.high, integer=True)  # the group test compares with random kept sets: 2 at least
QUICK_LAYERS = 4  # --quick: this many layers, evenly spread from the first to the last
SEQUENTIAL_HITS = 10  # random kept sets on each side of a criterion's that settle its rank (Besag and Clifford)
POOLED_DRAWS = 10  # a layer read only through pooling (one matrix product per kept set) draws up to this x seeds
REFINED_PERMUTATIONS = 199_999  # a rho whose p-value could fall on either side of a corrected threshold
# The app's limits (a visitor on a shared server): a rho needs 3 neurons; more than 1,000 images, 5 heads or 20
# random kept sets is the command line's work (each multiplies every layer's cost).
APP_SAMPLE, APP_VAL_IMAGES, APP_HEADS, APP_SEEDS = Range(3, 1000), Range(8, 1000), Range(1, 5), Range(2, 20)


@dataclass(frozen=True)
class AtlasSettings(Settings):
    """What the atlas measures in each layer.

    ``sample_size`` None: up to DEFAULT_SAMPLE neurons of each layer (all of a smaller layer); a number:
    exactly that many from every chosen layer (ConfigError for a layer with fewer). ``val_images`` None: every
    validation image. ``layers`` None: every prunable layer; ``quick_layers`` > 0: that many of them, evenly
    spread."""

    sample_size: int | None = option(
        None, "Neurons measured in every layer by a forward pass each (a seeded sample). The head layer is always "
              "measured in full.", "atlas", range=SAMPLE_SIZES, app_range=APP_SAMPLE, flag="--sample",
        label="sample size", none=f"up to {DEFAULT_SAMPLE} of each layer (all of a smaller one)")
    val_images: int | None = option(None, "Validation images the ablations run on (a seeded subset; all of a smaller "
                                          "split).", "atlas", range=VAL_IMAGES, app_range=APP_VAL_IMAGES,
                                    label="validation images", none="every validation image")
    heads: int = option(3, "Heads trained on the frozen backbone from seeds seed, seed+1, ...: every effect and "
                           "accuracy is averaged over them.", "atlas", range=Range(1, 20, integer=True),
                        app_range=APP_HEADS)
    seeds: int = option(50, "The most random kept sets per keep ratio: the reference of the group test, drawn until "
                             f"{SEQUENTIAL_HITS} lie on each side of every criterion's.", "atlas",
                        range=ATLAS_SEEDS, app_range=APP_SEEDS,
                        note="The atlas needs at least 2 random kept sets: they are the reference of the group test.")
    keep_ratios: tuple[float, ...] = option((0.5, 0.25), "Keep ratios of the group ablation (comma-separated).",
                                            "atlas", range=KEEP, label="keep ratio")
    tau: float = option(DEFAULT_TAU, "Cosine-similarity threshold of the graph criteria.", "atlas", range=TAU)
    resamples: int = option(1000, "Bootstrap resamples of each Spearman interval.", "atlas", range=RESAMPLES,
                            label="bootstrap resamples")
    permutations: int = option(9999, "Permutations of each rho's test (and 199,999 where its p-value's Monte Carlo "
                                     "interval overlaps the corrected thresholds).", "atlas", range=PERMUTATIONS)
    splits: int = option(200, "Random half-splits of the images for each layer's reliability.", "atlas",
                         range=Range(1, 10_000, integer=True), label="reliability splits")
    criteria: tuple[str, ...] = option(CRITERION_NAMES, "Criteria measured (comma-separated); eigenvector and random "
                                                        "are always among them.", "atlas", choices=CRITERION_NAMES,
                                       label="criterion")
    layers: tuple[str, ...] | None = option(None, "Layers to measure (comma-separated), or all of the prunable ones.",
                                            "atlas", label="layer", none="every prunable layer", cli_none="all")
    quick_layers: int = option(0, "When every prunable layer is chosen: measure only this many, evenly spread from "
                                  "the first to the last; 0: all of them.", "atlas",
                               range=Range(0, 10**4, integer=True), label="quick layers")

    @classmethod
    def quick(cls, **changes) -> AtlasSettings:
        """Minutes on a CPU, for tests and for checking the set-up: 4 layers, 16 neurons, 32 images, 2 heads, 8
        random kept sets."""
        return cls(**{"sample_size": 16, "val_images": 32, "heads": 2, "seeds": 8, "resamples": 200,
                      "permutations": 999, "splits": 50, "quick_layers": QUICK_LAYERS, **changes})

    def check_together(self) -> None:
        """The atlas compares eigenvector centrality with random pruning: both criteria are needed."""
        if not {"eigenvector", "random"} <= set(self.criteria):
            raise ConfigError("The atlas compares eigenvector centrality with random pruning: keep both criteria.")

    def draws_for(self, pooled: bool) -> int:
        """The most random kept sets per keep ratio: ``seeds``, and POOLED_DRAWS times as many (at most SEEDS' 1,000)
        in a layer whose kept sets cost one matrix product each (enough for a rank p-value that can pass Holm over
        every layer)."""
        return min(self.seeds * POOLED_DRAWS, int(SEEDS.high)) if pooled else self.seeds

    def sample_for(self, neurons: int) -> int:
        """Neurons measured in a layer of ``neurons`` by forward passes."""
        return min(neurons, DEFAULT_SAMPLE) if self.sample_size is None else self.sample_size

    def identity(self) -> dict:
        """What a layer's numbers depend on (for its key): everything but the choice of layers."""
        values = asdict(self)
        for name in ("layers", "quick_layers"):
            values.pop(name)
        return values
