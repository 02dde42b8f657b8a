"""The trained baseline the ablations measure, and the layer's pruning group."""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..access import COMMAND_LINE, Access
from ..data import ImageListDataset
from ..device import Precision, resolve_device
from ..engine import Finetuner, train_epochs
from ..errors import ConfigError, StopRequested, error_from
from ..features import FeatureCache, Features, TensorBatches
from ..layers import has_neurons, is_depthwise
from ..progress import ProgressCallback, report
from ..pruning import PrunableGroup, PruningGraph
from ..registry import BackboneSpec, get_submodule
from ..schema import EventKind, FinetuneConfig, MetricEvent, Progress, RunStatus, RunSummary

__all__ = ["TrainedBaseline", "train_baseline", "train_heads", "prunable_group"]


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
                   access: Access = COMMAND_LINE) -> TrainedBaseline:
    """Train a new head on the frozen backbone with the engine (``config`` in mode "baseline"); the prefix
    features come from (and go to) ``feature_cache`` (None: the engine's), and the run works for
    ``access`` (as ``engine.Finetuner``'s). ``progress`` hears the engine's steps.

    Raises the run's own error (``errors.error_from``) when it fails, ConfigError when the validation
    split is empty, StopRequested when ``stop`` is set.
    """
    config = replace(config, mode="baseline")
    job = Finetuner(config, feature_cache, access)

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


def train_heads(trained: TrainedBaseline, count: int, *, progress: ProgressCallback | None = None,
                stop: threading.Event | None = None) -> list[nn.Linear]:
    """The trained head and ``count - 1`` more, each trained as the engine trained the first (its config: epochs,
    batch size, learning rates, schedule; the same split and cached pooled features) from another seed
    (``config.seed + k`` for head k): its initialisation and its batches' order. Averaging what a removal does
    over several heads takes the head's own seed out of the measured effects. StopRequested when ``stop`` is set.

    Example: ``train_heads(trained, 3)[0]`` is the trained model's own classifier."""
    spec, config = trained.spec, trained.config
    first = get_submodule(trained.model, spec.classifier)
    heads = [first]
    classes = first.out_features
    for k in range(1, count):
        seed = config.seed + k
        torch.manual_seed(seed)
        head = nn.Linear(first.in_features, classes)
        sources = {"train": TensorBatches(*trained.pooled["train"], config.batch_size,
                                          torch.Generator().manual_seed(seed)),
                   "val": TensorBatches(*trained.pooled["val"], config.batch_size)}
        precision = Precision(resolve_device("cpu"))
        for event in train_epochs(head, head, sources, config, precision, Progress(), stop,
                                  len(trained.pooled["train"][1]), classes):
            if event.kind == EventKind.STEP:
                report(progress, event.step, event.total_steps, f"Training head {k + 1} of {count}")
        heads.append(head.eval())
    return heads


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


