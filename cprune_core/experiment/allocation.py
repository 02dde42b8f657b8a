"""How much to prune each layer: per-layer ratios at the same total MACs (``experiment allocation``).

The whole network is pruned (every prunable group; the classifier's inputs follow the last group) to the same
total MACs by three rules, then fine-tuned end to end (``train_scope="all"``), on the same split per seed:

- ``uniform``: every group loses the same fraction of its neurons;
- ``alpha``: AlphaPruning's allocation (Lu et al., "AlphaPruning: Using Heavy-Tailed Self Regularization Theory
  for Improved Layer-wise Pruning of Large Language Models", NeurIPS 2024; their ``ww_sparsity`` and
  ``prune_*_ww``): each layer's metric s mapped linearly onto [1 - eps, 1 + eps], ((s - min) / (max - min)) 2 eps
  + 1 - eps, and every layer's pruning ratio that value times one common scale. The metric is their image
  classifiers' default, alpha_mid (xmin at the median eigenvalue; ``spectral``), eps their image classifiers'
  0.2; a residual stream's coupled layers, which keep the same neurons, get the mean of their alphas (as
  AlphaPruning's ``block_wise`` mapping gives a block's layers their mean);
- ``tolerance``: the same map of each group's measured tolerance (the atlas's accuracy with half the group's
  neurons removed at random, minus the unpruned model's: ``tolerance.tolerance_rows``), so that the layers that
  lose least are pruned most.

A group whose metric is undefined (an alpha_mid of fewer than 10 eigenvalues; a layer the atlas did not measure)
gets the middle ratio 1. Where AlphaPruning scales to a total of unstructured weights, the scale here is set so
that the network's MACs per image (``cost.CostModel``: every Conv2d and Linear of the fine-tuned network, the new
classifier included, at the run's image size) are the target: the full network's MACs minus ``removed`` times
the prunable MACs (the MACs of every layer whose channels some group removes: the pruned layers, their depthwise
followers and the layers that read them). Counts are whole neurons, so ``allocate`` ends at the largest MACs at
or below the target that adding single neurons reaches: no group can keep one more without passing it.
Within each group the neurons kept are ranked by a criterion (eigenvector centrality, or random).
"""
from __future__ import annotations

import hashlib
import json
import math
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from ..atlas import AtlasResult
from ..cost import CostModel
from ..criteria import DEFAULT_TAU
from ..data import load_dataset
from ..engine import Finetuner
from ..errors import ConfigError, StopRequested
from ..model_source import BackboneSource
from ..pruning import PruningGraph
from ..registry import get_spec, load_backbone, replace_classifier
from ..schema import FinetuneConfig, MetricEvent, RunSummary
from ..spectral import layer_spectrum
from ..store import RunStore
from .executors import Executor, LocalExecutor
from .settings import REMOVED_RANGE, RULES, WITHIN, Regime
from .tolerance import tolerance_rows

__all__ = ["EPSILON", "Allocation", "network_cost", "prunable_macs",
           "alphapruning_ratios", "allocate", "alpha_scores", "tolerance_scores", "PlannedAllocation",
           "plan_allocations", "allocation_key", "run_planned", "allocation_row", "run_allocations"]

EPSILON = 0.2  # AlphaPruning's image classifiers' default
TOLERANCE_KEEP = 0.5  # the atlas's keep ratio whose random accuracy is a group's tolerance
_BISECTIONS = 60


def network_cost(backbone: str, classes: int, image_size: int, weights: str = "pretrained") -> CostModel:
    """The cost model of the network a run fine-tunes: ``backbone`` with a ``classes``-way classifier, traced at
    ``image_size`` (its MACs are what the run's summary reports)."""
    spec = get_spec(backbone)
    model = load_backbone(backbone, weights).model
    replace_classifier(model, spec, classes)
    return CostModel(model, PruningGraph(model, replace(spec, input_size=image_size)), image_size)


def prunable_macs(cost: CostModel) -> int:
    """MACs of the layers whose channels some group removes (the pruned layers, their depthwise followers and
    the layers that read them), in the unpruned network."""
    touched = {effect.module for group in cost.graph.groups for effect in group.effects}
    return sum(cost.layer_estimate(name, shape.out_channels).macs for name, shape in cost.shapes.items()
               if name in touched)


def alphapruning_ratios(scores: Sequence[float], epsilon: float = EPSILON) -> np.ndarray:
    """AlphaPruning's linear map of per-layer metrics onto relative pruning ratios in [1 - epsilon, 1 + epsilon]:
    ((s - min) / (max - min)) 2 epsilon + 1 - epsilon, the largest metric pruned most. An undefined (NaN) metric
    gets 1, the middle; all metrics equal (or none defined): 1 everywhere.

    Example: ``alphapruning_ratios([2.0, 3.0, 4.0], 0.2)`` is [0.8, 1.0, 1.2]."""
    values = np.asarray(scores, dtype=float)
    defined = values[~np.isnan(values)]
    if len(defined) == 0 or defined.max() == defined.min():
        return np.ones(len(values))
    ratios = (values - defined.min()) / (defined.max() - defined.min()) * 2 * epsilon + 1 - epsilon
    return np.where(np.isnan(ratios), 1.0, ratios)


@dataclass(frozen=True)
class Allocation:
    """Neurons kept per group and the MACs that gives, against the stated target."""

    counts: dict[int, int]  # group index -> neurons kept
    macs: int  # the network's MACs with these counts
    target: int  # the stated total: full - removed x prunable
    full: int
    prunable: int

    @property
    def shortfall(self) -> float:
        """How far below the target the counts land, as a share of the target (0 <= shortfall)."""
        return (self.target - self.macs) / self.target


def _counts(channels: np.ndarray, ratios: np.ndarray, scale: float) -> dict[int, int]:
    kept = np.clip(channels - np.round(scale * ratios * channels), 1, channels).astype(int)
    return {index: int(count) for index, count in enumerate(kept)}


def allocate(cost: CostModel, removed: float, ratios: Sequence[float] | None = None) -> Allocation:
    """Neurons kept in each group of ``cost.graph`` so that the network's MACs meet the target of removing
    ``removed`` of the prunable MACs, each group's pruning ratio proportional to its entry of ``ratios``.

    Parameters
    ----------
    cost : the network's cost model (``network_cost``).
    removed : the share of the prunable MACs (``prunable_macs``) to remove, in (0, 1).
    ratios : one relative pruning ratio per group (``alphapruning_ratios``); None: uniform.

    Returns
    -------
    Allocation : group i keeps about n_i (1 - c ratio_i) neurons (at least 1), the common scale c the smallest
    whose MACs do not exceed the target (bisection), then single neurons added back, to the groups furthest below
    their share first, while the MACs stay at or below the target: at the end no group can keep one more.

    Raises
    ------
    ConfigError : ``removed`` outside (0, 1), ratios of the wrong length or not positive, or a target that even one
    neuron per group cannot reach.

    Example: ``allocate(cost, 0.5).macs`` is at most ``full - 0.5 * prunable`` and within one neuron's MACs of it.
    """
    REMOVED_RANGE.check(removed, "removed share of the prunable MACs")
    groups = cost.graph.groups
    ratios = np.ones(len(groups)) if ratios is None else np.asarray(ratios, dtype=float)
    if ratios.shape != (len(groups),) or not (ratios > 0).all():
        raise ConfigError(f"allocate needs one positive ratio per group ({len(groups)}), got {ratios.shape[0]}.")
    channels = np.array([group.channels for group in groups])
    full, prunable = cost.base.macs, prunable_macs(cost)
    target = int(math.floor(full - removed * prunable))

    def macs(counts: dict[int, int]) -> int:
        return cost.estimate(counts).macs

    low, high = 0.0, 1.0 / ratios.min()
    if macs(_counts(channels, ratios, high)) > target:
        raise ConfigError(f"Removing {removed:g} of the prunable MACs is out of reach: one neuron per group leaves "
                          f"{macs(_counts(channels, ratios, high)):,} MACs, above the target {target:,}.")
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        low, high = (low, middle) if macs(_counts(channels, ratios, middle)) <= target else (middle, high)
    counts = _counts(channels, ratios, high)
    share = channels * (1 - high * ratios)  # each group's kept neurons before rounding
    while True:
        for index in sorted((i for i in counts if counts[i] < channels[i]), key=lambda i: counts[i] - share[i]):
            if macs({**counts, index: counts[index] + 1}) <= target:
                counts[index] += 1
                break
        else:
            return Allocation(counts, macs(counts), target, full, prunable)


def alpha_scores(source: BackboneSource, graph: PruningGraph) -> list[float]:
    """Each group's alpha_mid (``spectral``), the mean over its layers (NaN where no layer has one)."""
    scores = []
    for group in graph.groups:
        values = [layer_spectrum(source, layer).fit_mid.alpha for layer in group.layers]
        scores.append(float(np.nanmean(values)) if not np.isnan(values).all() else math.nan)
    return scores


def tolerance_scores(atlas: AtlasResult | None, graph: PruningGraph) -> list[float]:
    """Each group's tolerance measured by ``atlas`` (accuracy keeping a random half minus the unpruned accuracy);
    NaN for a group it did not measure, or for every group when there is no atlas."""
    scores = [math.nan] * len(graph.groups)
    for row in tolerance_rows(atlas) if atlas is not None else []:
        scores[graph.group_for(row["layer"]).index] = row[f"random_keep{TOLERANCE_KEEP:g}"]
    return scores


@dataclass(frozen=True)
class PlannedAllocation:
    """One run: the unpruned network fine-tuned (``rule`` "unpruned"), or the network pruned by ``rule`` to remove
    ``removed`` of its prunable MACs, ranking neurons within each group by ``config.criterion``."""

    regime: Regime
    rule: str
    removed: float  # 0 for the unpruned network
    config: FinetuneConfig
    counts: tuple[tuple[str, int], ...]  # group (its first layer) -> neurons kept; empty when unpruned
    planned_macs: int
    target_macs: int
    classes: int  # of the regime's dataset: 1 / classes is chance


def plan_allocations(backbones: Sequence[str], regimes: Sequence[Regime], seeds: Sequence[int],
                     removed: Sequence[float], base: FinetuneConfig, atlases: dict[str, AtlasResult | None],
                     rules: Sequence[str] = RULES, within: Sequence[str] = WITHIN) -> list[PlannedAllocation]:
    """Every run of the experiment: per backbone, regime and seed the unpruned network, then each removed share x
    rule x criterion within layers. The allocations are computed once per backbone and regime (they do not depend
    on the seed). ConfigError for an impossible setting, before any run."""
    plan = []
    for backbone in backbones:
        source = BackboneSource.load(backbone, base.weights, base.checkpoint)
        for regime in regimes:
            classes = len(load_dataset(regime.dataset, regime.root, download=False).classes)
            cost = network_cost(backbone, classes, base.image_size or get_spec(backbone).input_size, base.weights)
            scores = {"uniform": None, "alpha": alphapruning_ratios(alpha_scores(source, cost.graph)),
                      "tolerance": alphapruning_ratios(tolerance_scores(atlases.get(backbone), cost.graph))}
            allocations = {(share, rule): allocate(cost, share, scores[rule]) for share in removed for rule in rules}
            for seed in seeds:
                common = replace(base, backbone=backbone, dataset=regime.dataset, dataset_root=regime.root,
                                 train_per_class=regime.train_per_class, seed=seed, train_scope="all", tau=DEFAULT_TAU)
                plan.append(PlannedAllocation(regime, "unpruned", 0.0, replace(common, mode="finetune"), (),
                                              cost.base.macs, cost.base.macs, classes))
                for (share, rule), allocation in allocations.items():
                    counts = tuple((cost.graph.groups[index].root, count) for index, count in allocation.counts.items())
                    for criterion in within:
                        config = replace(common, mode="pruned", layers=["all"], criterion=criterion)
                        plan.append(PlannedAllocation(regime, rule, share, config.validate(), counts, allocation.macs,
                                                      allocation.target, classes))
    return plan


def allocation_key(planned: PlannedAllocation) -> str:
    """sha256 of everything that defines the run (its configuration, regime, rule, share and counts)."""
    identity = {"config": planned.config.to_dict(), "regime": planned.regime.__dict__, "rule": planned.rule,
                "removed": planned.removed, "counts": planned.counts, "experiment": "allocation"}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def run_planned(planned: PlannedAllocation, stop: threading.Event | None = None
                ) -> tuple[RunSummary, list[MetricEvent], str]:
    """One planned run to its end, not recorded: (summary, history, the machine that ran it). Runs in this process
    or as a Ray task (``Executor.map``); ``stop`` ends it within a batch ("stopped")."""
    job = Finetuner(planned.config, keep_counts=dict(planned.counts) or None)
    for _ in job.events(stop):
        pass
    result = job.result()
    return result.summary, result.history, socket.gethostname()


def allocation_row(planned: PlannedAllocation, summary: RunSummary, key: str, *, from_store: bool = False) -> dict:
    """The report's row of one run: what was planned (the target and planned MACs) and what came out (the MACs
    the run measured on its pruned network, accuracies, status)."""
    config = planned.config
    return {"backbone": config.backbone, "regime": planned.regime.label, "seed": config.seed, "rule": planned.rule,
            "removed": planned.removed, "criterion": config.criterion if planned.counts else "none",
            "target_macs": planned.target_macs, "planned_macs": planned.planned_macs, "macs": summary.macs,
            "params": summary.params, "test_acc": summary.test_acc, "val_acc": summary.val_acc,
            "duration_s": summary.duration_s, "status": str(summary.status), "message": summary.message,
            "classes": planned.classes, "run_key": key, "from_store": from_store}


def run_allocations(plan: list[PlannedAllocation], store: RunStore | None = None, executor: Executor | None = None,
                    *, rerun: bool = False, stop: threading.Event | None = None,
                    on_progress: Callable[[int, int, dict | None], None] | None = None) -> list[dict]:
    """Run the plan on ``executor`` (default: this process; a RayExecutor is entered by the caller, each run one
    task) and return the rows of the runs that ended, in plan order.

    Each run is recorded in ``store`` (None: not recorded) as it ends, under ``allocation_key``; a planned run whose
    key already finished there is not run again (``rerun``: it is), its row read back, so a killed experiment
    resumes. ``stop`` set: the runs in flight stop (locally within a batch, on Ray cancelled) and no other starts;
    the rows so far are returned. ``on_progress(done, total, row)``: once before the first run (row None), then as
    each ends (done counts the runs read from the store).
    """
    for planned in plan:
        planned.config.validate()
    executor = executor if executor is not None else LocalExecutor()
    keys = [allocation_key(planned) for planned in plan]
    stored = store.finished_runs(keys) if store is not None and not rerun else {}
    rows: list[dict | None] = [allocation_row(planned, stored[key], key, from_store=True) if key in stored else None
                               for planned, key in zip(plan, keys)]
    todo = [index for index, row in enumerate(rows) if row is None]
    if on_progress is not None:
        on_progress(len(plan) - len(todo), len(plan), None)
    # A Ray task gets no stop event (it cannot travel): the executor cancels it.
    function = partial(run_planned, stop=stop) if isinstance(executor, LocalExecutor) else run_planned
    try:
        for index, (summary, history, host) in executor.map(function, ((plan[i],) for i in todo), stop=stop):
            position = todo[index]
            if store is not None:
                store.record_run(plan[position].config.to_dict(), summary, history, kind="experiment",
                                 run_key=keys[position], host=host)
            rows[position] = allocation_row(plan[position], summary, keys[position])
            if on_progress is not None:
                on_progress(sum(row is not None for row in rows), len(plan), rows[position])
    except StopRequested:
        if stop is None or not stop.is_set():
            raise
    return [row for row in rows if row is not None]
