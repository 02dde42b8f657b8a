"""The trained baseline the ablations measure, the layer's pruning group, and the shared plumbing
(progress callbacks, stop checks, the analysis's settings and their valid ranges)."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from ..data import ImageListDataset
from ..engine import Finetuner
from ..errors import ConfigError, StopRequested, error_from
from ..features import FeatureCache, Features
from ..layers import has_neurons, is_depthwise
from ..pruning import PrunableGroup, PruningGraph
from ..ranges import SEEDS, Range
from ..registry import BackboneSpec, get_submodule
from ..schema import EventKind, FinetuneConfig, MetricEvent, RunStatus, RunSummary

__all__ = ["ProgressCallback", "TrainedBaseline", "train_baseline", "prunable_group", "check_stop", "report",
           "DEFAULT_SAMPLE_SIZE", "DEFAULT_RESAMPLES", "ZERO_SHOT_KEEP_RATIOS", "SEEDS", "SAMPLE_SIZES", "RESAMPLES"]

ProgressCallback = Callable[[int, int, str], None]  # (done, total, message); total 0 while not known

DEFAULT_SAMPLE_SIZE = 64  # neurons measured by a forward pass each (ForwardAblator)
DEFAULT_RESAMPLES = 1000  # bootstrap resamples of the neurons
ZERO_SHOT_KEEP_RATIOS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
SAMPLE_SIZES = Range(1, 10**6, integer=True)
RESAMPLES = Range(1, 100_000, integer=True)


def check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise StopRequested("Stopped.")


def report(progress: ProgressCallback | None, done: int, total: int, message: str) -> None:
    if progress is not None:
        progress(done, total, message)


# ----------------------------------------------------------------------------- the trained baseline


@dataclass
class TrainedBaseline:
    """The frozen backbone with a new head trained on it once (a baseline run of the engine)."""

    config: FinetuneConfig  # mode "baseline"
    spec: BackboneSpec
    model: nn.Module  # eval mode, on the CPU, with the trained classifier
    pooled: dict[str, Features]  # split -> (classifier inputs, labels): the engine's pooled features
    datasets: dict[str, ImageListDataset]  # split -> images
    summary: RunSummary


def train_baseline(config: FinetuneConfig, *, progress: ProgressCallback | None = None,
                   stop: threading.Event | None = None, feature_cache: FeatureCache | None = None,
                   data_roots: list[Path] | None = None) -> TrainedBaseline:
    """Train a new head on the frozen backbone with the engine (``config`` in mode "baseline"); the prefix
    features come from (and go to) the engine's feature cache, and the dataset is confined to
    ``data_roots`` when given. The run's own error when it fails, ConfigError when the validation split is
    empty, StopRequested when ``stop`` is set."""
    config = replace(config, mode="baseline")
    job = Finetuner(config, feature_cache, data_roots)

    def relay(event: MetricEvent) -> None:
        if event.kind == EventKind.PREPARE:
            report(progress, 0, 0, event.message)
        elif event.kind in (EventKind.START, EventKind.STEP, EventKind.EPOCH):
            report(progress, event.step, event.total_steps, "Training the new head")

    for _ in job.events(stop, relay):
        pass
    result = job.result()
    if result.status == RunStatus.STOPPED:
        raise StopRequested(result.summary.message)
    if result.status != RunStatus.FINISHED:
        raise error_from(result.summary.error, result.summary.message)
    if len(job.features["val"][1]) == 0:
        raise ConfigError("The ablation effect is measured on the validation split, which is empty: "
                          "use a validation fraction above 0.")
    return TrainedBaseline(config, result.spec, result.model.eval(), job.features, job.datasets, result.summary)


def prunable_group(model: nn.Module, spec: BackboneSpec, layer: str,
                   graph: PruningGraph | None = None) -> tuple[PruningGraph, PrunableGroup]:
    """The pruning graph of ``model`` (``graph`` when given: it must be ``model``'s) and the group whose
    neurons ``layer`` has. ConfigError when the model has no such layer, or the layer has no neurons of
    its own (a depthwise convolution follows its producer) or cannot be pruned (the classifier, a layer
    tied to the input or output)."""
    module = get_submodule(model, layer)
    if has_neurons(module) and is_depthwise(module):
        raise ConfigError(f"{layer} is a depthwise convolution: its channels follow the layer that feeds it. "
                          "Choose that layer instead.")
    graph = graph or PruningGraph(model, spec)
    return graph, graph.group_for(layer)


