"""The runs of the paper's comparison (``paper-table``): what is planned, and running the plan.

For each backbone x dataset regime x seed, on the same split, it runs:
- ``conventional``: frozen pretrained backbone + new linear head;
- ``finetune``: the same trainable layers as the pruned runs, unpruned (separates the effect of
  pruning from the effect of training more layers);
- ``pruned``: prune-then-fine-tune with each criterion at each keep ratio, at the default tau,
  plus a small tau sweep for eigenvector centrality.
The layer pruned is each backbone's registry ``head_layer`` (the dense layer nearest the
classifier), so the frozen prefix's features are computed once and cached.

Each finished run becomes one row (a plain dict) for the report (report.py).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from ..importance import DEFAULT_TAU
from ..paths import SAMPLE_FLOWERS, SHARED_FLOWERS
from ..ranges import Range
from ..runs import run_and_record
from ..schema import FinetuneConfig, RunSummary
from ..store import RunStore

__all__ = ["Regime", "REGIMES", "PlannedRun", "Grid", "plan_runs", "paper_table_grid", "run_plan", "row_for",
           "COMPARED_CRITERIA", "KEEP_RATIOS", "TAU_SWEEP", "DEFAULT_IMAGE_SIZE"]

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
DEFAULT_SEEDS = 5
DEFAULT_EPOCHS = 8
DEFAULT_IMAGE_SIZE = 128
SEEDS = Range(1, 1000, integer=True)  # how many seeds a grid runs (0..N-1)


@dataclass
class Grid:
    base: FinetuneConfig
    plan: list[PlannedRun]


def paper_table_grid(quick: bool = False, backbones: Iterable[str] | None = None, regimes: Iterable[str] | None = None,
                     seeds: int | None = None, epochs: int | None = None, image_size: int = DEFAULT_IMAGE_SIZE,
                     device: str = "auto") -> Grid:
    """The runs of ``paper-table`` (``quick``: a reduced grid for tests and set-up checks)."""
    chosen = [REGIMES[name] for name in regimes] if regimes else (quick_regimes() if quick else offline_regimes())
    seeds = seeds if seeds is not None else (2 if quick else DEFAULT_SEEDS)
    SEEDS.check(seeds, "seeds")
    base = FinetuneConfig(epochs=epochs if epochs is not None else (3 if quick else DEFAULT_EPOCHS),
                          image_size=image_size, device=device, log_every=1000)
    base.validate()  # an impossible value is refused before the first run
    extra = dict(criteria=("eigenvector", "random"), keep_ratios=(0.25, 0.5), tau_sweep=()) if quick else {}
    plan = plan_runs(backbones or DEFAULT_BACKBONES, chosen, range(seeds), base=base, **extra)
    return Grid(base, plan)


@dataclass(frozen=True)
class PlannedRun:
    regime: Regime
    method: str  # "conventional", "finetune" or "pruned"
    config: FinetuneConfig


def plan_runs(backbones: Iterable[str], regimes: Iterable[Regime], seeds: Iterable[int], *,
              criteria: Iterable[str] = COMPARED_CRITERIA, keep_ratios: Iterable[float] = KEEP_RATIOS,
              tau: float = DEFAULT_TAU, tau_sweep: Iterable[float] = TAU_SWEEP,
              base: FinetuneConfig | None = None) -> list[PlannedRun]:
    """Every run of the grid, ordered so that runs sharing a split (and cached features) are adjacent."""
    base = base or FinetuneConfig()
    runs = []
    for backbone in backbones:
        for regime in regimes:
            for seed in seeds:
                common = replace(base, backbone=backbone, dataset=regime.dataset, dataset_root=regime.root,
                                 train_per_class=regime.train_per_class, seed=seed, tau=tau)
                runs.append(PlannedRun(regime, "conventional", replace(common, mode="baseline")))
                runs.append(PlannedRun(regime, "finetune", replace(common, mode="finetune")))
                for criterion in criteria:
                    for keep in keep_ratios:
                        runs.append(PlannedRun(regime, "pruned", replace(common, mode="pruned", criterion=criterion, keep=keep)))
                for swept in tau_sweep:
                    if swept != tau and "eigenvector" in criteria:
                        runs.append(PlannedRun(regime, "pruned", replace(common, mode="pruned", criterion="eigenvector",
                                                                         keep=TAU_SWEEP_KEEP, tau=swept)))
    return runs


def run_plan(plan: list[PlannedRun], store: RunStore | None = None,
             on_run: Callable[[int, PlannedRun, dict], None] | None = None) -> list[dict]:
    """Run every planned run in turn, recording each in ``store`` (None: not recorded)."""
    rows = []
    for index, planned in enumerate(plan):
        result = run_and_record(planned.config, store, kind="experiment")
        row = row_for(planned, result.summary)
        rows.append(row)
        if on_run is not None:
            on_run(index, planned, row)
    return rows


def row_for(planned: PlannedRun, summary: RunSummary) -> dict:
    config = planned.config
    pruned = planned.method == "pruned"
    return {
        "regime": planned.regime.label, "backbone": config.backbone, "dataset": config.dataset,
        "seed": config.seed, "method": planned.method,
        "criterion": config.criterion if pruned else planned.method,
        "keep": config.keep if pruned else 1.0, "tau": config.tau if pruned else math.nan,
        "test_acc": summary.test_acc, "val_acc": summary.val_acc,
        "params": summary.params, "macs": summary.macs, "latency_ms": summary.latency_ms,
        "duration_s": summary.duration_s, "status": str(summary.status), "message": summary.message,
        "n_train": summary.n_images.get("train"), "n_test": summary.n_images.get("test"),
    }


