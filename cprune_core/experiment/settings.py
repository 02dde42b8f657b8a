"""The experiments' settings apart from their work: the dataset regimes and the paper table's grid, the allocation's
rules and shares, the tolerance test's predictors. No torch, pandas or scipy here: the command line's ``--help``
and the app read these names and defaults at once, and the modules that run the experiments import them.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ablation.config import AnalysisConfig
from ..paths import SAMPLE_FLOWERS, SHARED_FLOWERS
from ..ranges import Range

__all__ = ["Regime", "REGIMES", "offline_regimes", "quick_regimes", "download_regimes", "COMPARED_CRITERIA",
           "KEEP_RATIOS", "TAU_SWEEP", "TAU_SWEEP_KEEP", "FEW_SHOT", "DEFAULT_BACKBONES", "DEFAULT_EPOCHS",
           "DEFAULT_IMAGE_SIZE", "QUICK_SEEDS", "QUICK_EPOCHS", "QUICK_ANALYSIS", "RULES", "WITHIN", "REMOVED", "REMOVED_RANGE",
           "QUICK_ALLOCATION", "PREDICTORS", "FULL_BACKBONES"]

# The paper table's grid (grid.py)
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
DEFAULT_EPOCHS = 8
DEFAULT_IMAGE_SIZE = 128
QUICK_SEEDS = 2  # --quick: of the grid, and of the importance analysis's random criterion
QUICK_EPOCHS = 3
QUICK_ANALYSIS = AnalysisConfig(seeds=QUICK_SEEDS, resamples=200)  # experiment importance --quick's analysis

# The allocation experiment (allocation.py)
RULES = ("uniform", "alpha", "tolerance")
WITHIN = ("eigenvector", "random")
REMOVED = (0.5, 0.7)  # of the prunable MACs
REMOVED_RANGE = Range(0.0, 1.0, low_open=True, high_open=True)

# experiment allocation --quick: minutes on a CPU (two seeds, so the paired intervals exist).
QUICK_ALLOCATION = {"regimes": ["flowers-sample"], "seeds": 2, "epochs": 1, "image_size": 64, "removed": [0.5]}

# The tolerance test (tolerance.py): the per-layer figures tested as predictors of what a layer can lose, by default
# over the atlas's three backbones (and the allocation's backbone: the first).
FULL_BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
PREDICTORS = {"alpha": "alpha (ESD tail exponent)", "stable_rank": "stable rank", "gini": "centrality Gini",
              "top10_share": "centrality top-10% share"}
