"""The runs of the paper's comparison (``paper-table``): what is planned, and running the plan.

For each backbone x dataset regime x seed, on the same split, it runs:
- ``conventional``: frozen pretrained backbone + new linear head;
- ``finetune``: the same trainable layers as the pruned runs, unpruned (separates the effect of
  pruning from the effect of training more layers);
- ``pruned``: prune-then-fine-tune with each criterion at each keep ratio, at the default tau,
  plus a small tau sweep for eigenvector centrality.
The layer pruned is each backbone's registry ``head_layer`` (the dense layer nearest the
classifier), so the frozen prefix's features are computed once and cached.

Each finished run becomes one row (a plain dict) for the report (report.py). ``run_plan`` is
the driver: it runs the plan on an executor (executors.py: in this process, or on a Ray
cluster), records each run in the store as it ends, and skips runs whose key (``run_key``, a
hash of the whole configuration) already finished in the store, so a grid resumes where it was
killed.
"""
from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace

from ..criteria import DEFAULT_TAU
from ..ranges import DEFAULT_SEEDS, SEEDS
from ..schema import FinetuneConfig, RunStatus, RunSummary
from ..store import RunStore
from .executors import Executor, LocalExecutor
from .settings import (COMPARED_CRITERIA, DEFAULT_BACKBONES, DEFAULT_EPOCHS, DEFAULT_IMAGE_SIZE, KEEP_RATIOS,
                       QUICK_EPOCHS, QUICK_SEEDS, REGIMES, TAU_SWEEP, TAU_SWEEP_KEEP, Regime, offline_regimes,
                       quick_regimes)

__all__ = ["PlannedRun", "Grid", "plan_runs", "paper_table_grid", "run_key", "GridProgress", "leaders_first",
           "run_plan", "row_for"]



@dataclass
class Grid:
    base: FinetuneConfig
    plan: list[PlannedRun]


def paper_table_grid(quick: bool = False, backbones: Iterable[str] | None = None, regimes: Iterable[str] | None = None,
                     seeds: int | None = None, epochs: int | None = None, image_size: int = DEFAULT_IMAGE_SIZE,
                     device: str = "auto", train_scope: str = "suffix") -> Grid:
    """The runs of ``paper-table`` (``quick``: a reduced grid for tests and set-up checks)."""
    chosen = [REGIMES[name] for name in regimes] if regimes else (quick_regimes() if quick else offline_regimes())
    seeds = seeds if seeds is not None else (QUICK_SEEDS if quick else DEFAULT_SEEDS)
    SEEDS.check(seeds, "seeds")
    base = FinetuneConfig(epochs=epochs if epochs is not None else (QUICK_EPOCHS if quick else DEFAULT_EPOCHS),
                          image_size=image_size, device=device, train_scope=train_scope, log_every=1000)
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


def run_key(planned: PlannedRun) -> str:
    """sha256 of the planned run's whole configuration (seed included), regime and method: the same
    planned run has the same key in every command and on every machine; any other setting, another key."""
    identity = {"config": planned.config.to_dict(), "regime": asdict(planned.regime), "method": planned.method}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


@dataclass
class GridProgress:
    """Where a grid stands, for a progress display. ``running``: runs in flight, at most as many as the
    executor runs at once (a cluster queues the rest, counted in ``left``)."""

    total: int
    from_store: int = 0  # finished by an earlier command: not run again
    done: int = 0  # finished now
    failed: int = 0  # ended otherwise (failed, stopped), reason in the row's message
    retried: int = 0  # of done and failed: run twice, because the first worker died
    running: int = 0

    @property
    def left(self) -> int:
        return self.total - self.from_store - self.done - self.failed - self.running

    def eta_s(self, elapsed_s: float) -> float | None:
        """Seconds until the last run ends at this command's pace so far (None before any run ended)."""
        ended = self.done + self.failed
        return elapsed_s * (self.running + self.left) / ended if ended else None


def leaders_first(plan: list[PlannedRun]) -> list[int]:
    """Indices of the plan with the first run of each block (the runs of one backbone, regime and seed,
    which share their frozen features) first, then the others in plan order: runs that start together
    then compute different features, which the runs after them find in the cache."""
    leaders, followers, blocks = [], [], set()
    for index, planned in enumerate(plan):
        block = (planned.config.backbone, planned.regime.label, planned.config.seed)
        (followers if block in blocks else leaders).append(index)
        blocks.add(block)
    return leaders + followers


def run_plan(plan: list[PlannedRun], store: RunStore | None = None,
             on_progress: Callable[[GridProgress, dict | None], None] | None = None, *,
             executor: Executor | None = None, rerun: bool = False,
             stop: threading.Event | None = None) -> list[dict]:
    """Run the plan on ``executor`` (default a LocalExecutor: one run after another in this process; a
    RayExecutor is entered by the caller) and return one row per planned run, in plan order. An executor
    that runs several at once gets them leaders first (``leaders_first``).

    ``stop`` set midway (Ctrl-C): the runs in flight stop (locally, within a batch, and end "stopped";
    on Ray, cancelled), no other run starts, and the rows are those of the runs that ended and those
    from the store, in plan order; the same command later runs the rest.

    Each run is recorded in ``store`` (None: not recorded) as it ends, with its whole history, in one
    transaction: a driver killed midway loses only the runs in flight. A planned run whose key already
    has a finished run in ``store`` is not run again (``rerun``: it is); its row comes from the store.
    ``on_progress(progress, row)`` is called once before the first run (row None), then as each run ends.
    """
    for planned in plan:  # an impossible setting stops the grid before any run, not after hours of them
        planned.config.validate()
    executor = executor if executor is not None else LocalExecutor()
    keys = [run_key(planned) for planned in plan]
    stored = store.finished_runs(keys) if store is not None and not rerun else {}
    rows: list[dict | None] = [row_for(planned, stored[key], key, from_store=True) if key in stored else None
                               for planned, key in zip(plan, keys)]
    order = leaders_first(plan) if executor.slots > 1 else range(len(plan))
    jobs = [(index, plan[index].config) for index in order if rows[index] is None]
    progress = GridProgress(len(plan), from_store=len(plan) - len(jobs), running=min(len(jobs), executor.slots))
    if on_progress is not None:
        on_progress(progress, None)
    for outcome in executor.run(jobs, stop):
        planned = plan[outcome.index]
        if store is not None:
            store.record_run(planned.config.to_dict(), outcome.summary, outcome.history, kind="experiment",
                             run_key=keys[outcome.index], host=outcome.host)
        rows[outcome.index] = row = row_for(planned, outcome.summary, keys[outcome.index],
                                            retried_after=outcome.retried_after)
        finished = outcome.summary.status == RunStatus.FINISHED
        progress.done += finished
        progress.failed += not finished
        progress.retried += bool(outcome.retried_after)
        progress.running = min(len(jobs) - progress.done - progress.failed, executor.slots)
        if on_progress is not None:
            on_progress(progress, row)
    return [row for row in rows if row is not None]


def row_for(planned: PlannedRun, summary: RunSummary, key: str, *, from_store: bool = False,
            retried_after: str = "") -> dict:
    """The report's row of one run (``key``: its run_key): what was planned, what came out, and how
    (``from_store``: finished by an earlier command; ``retried_after``: why a first attempt was lost)."""
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
        "run_key": key, "from_store": from_store, "retried_after": retried_after,
    }


