"""``run_atlas``: one head trained once, then every chosen layer measured as one task, in network order.

The driver trains the head (one task where the executor runs its work), carries the validation images
through the network once (``BlockInputs``: each block's inputs computed from the previous block's), and
hands each layer's task its block's inputs, its group and its criteria's scores. Each layer's result is
recorded under its key as it ends (``AtlasRecords``), so a run killed midway resumes from its finished
layers; with a Ray executor the layers run as Ray tasks, as many at once as the cluster holds.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
from torch import nn

from ..ablation import (Heads, TrainedBaseline, consumers, prunable_group, rest_cut, scores_by_criterion,
                        train_baseline, train_heads)
from ..access import COMMAND_LINE, Access
from ..data import ImageListDataset
from ..device import resolve_device
from ..errors import ConfigError
from ..experiment.executors import Executor, LocalExecutor, with_threads
from ..features import FeatureCache
from ..layers import has_neurons
from ..progress import ProgressCallback, check_stop, report
from ..pruning import GroupEffect, PrunableGroup, PruningGraph
from ..registry import BackboneSpec, get_spec, get_submodule, load_backbone
from ..schema import FinetuneConfig
from .blocks import BlockInputs, chain_steps
from .layer import LayerAtlas, LayerTask
from .measure import measure_layer
from .records import AtlasRecords, layer_key
from .result import AtlasResult
from .settings import AtlasSettings

__all__ = ["run_atlas", "PlannedLayer", "plan_layers", "validation_subset", "head_fingerprint"]


def is_pooled(model: nn.Module, spec: BackboneSpec, group: PrunableGroup) -> bool:
    """Whether the classifier is the group's only consumer: then every neuron is one operation on the
    pooled features (``PooledAblator``), else a forward pass each (``ForwardAblator``)."""
    return consumers(model, group) == [GroupEffect(spec.classifier, "in", 1)]


@dataclass(frozen=True)
class PlannedLayer:
    """A layer the atlas measures: its group, where the rest of the network starts (None: the classifier
    reads it, through pooling), and how it is shown."""

    layer: str
    group: PrunableGroup
    cut: str | None
    depth: int  # 1-based position among every Conv2d/Linear layer
    kind: str


def _kind(model: nn.Module, layer: str, group: PrunableGroup) -> str:
    """"Conv2d 1x1", "Linear", "Conv2d 1x1, residual stream of 3 layers"."""
    module = get_submodule(model, layer)
    kind = "Linear" if isinstance(module, nn.Linear) else f"Conv2d {module.kernel_size[0]}x{module.kernel_size[1]}"
    return kind + (f", residual stream of {len(group.layers)} layers" if len(group.layers) > 1 else "")


def _chosen(graph: PruningGraph, model: nn.Module, spec: BackboneSpec, settings: AtlasSettings,
            order: dict[str, int]) -> list[tuple[str, PrunableGroup]]:
    """(name, group) of the layers to measure; a group of coupled layers (a residual stream) is named by its
    first layer in the network unless a layer was named."""
    if settings.layers is None:
        chosen = [(min(group.layers, key=order.__getitem__), group) for group in graph.groups]
        if settings.quick_layers and settings.quick_layers < len(chosen):
            picks = np.unique(np.linspace(0, len(chosen) - 1, settings.quick_layers).round().astype(int))
            chosen = [chosen[i] for i in picks]
        return chosen
    groups = {}
    for layer in settings.layers:
        group = prunable_group(model, spec, layer, graph)[1]  # ConfigError: no such layer, depthwise, not prunable
        groups.setdefault(group.index, (layer, group))
    return list(groups.values())


def plan_layers(model: nn.Module, spec: BackboneSpec, settings: AtlasSettings,
                graph: PruningGraph | None = None) -> list[PlannedLayer]:
    """The layers ``settings`` choose, in the order their blocks come in the network (so the block inputs
    are carried forward only). ConfigError for a layer that cannot be measured, or a sample size larger
    than a layer measured by forward passes."""
    graph = graph or PruningGraph(model, spec)
    order = {name: index for index, (name, module) in enumerate(model.named_modules()) if has_neurons(module)}
    depth = {name: position + 1 for position, name in enumerate(order)}
    planned = []
    for layer, group in _chosen(graph, model, spec, settings, order):
        pooled = is_pooled(model, spec, group)
        if not pooled and settings.sample_size is not None and settings.sample_size > group.channels:
            raise ConfigError(f"The sample size {settings.sample_size} is larger than layer {layer}, which has "
                              f"{group.channels} neurons: choose at most {group.channels}, or leave the sample size "
                              "out (each layer's neurons up to the default, all of a smaller layer).")
        planned.append(PlannedLayer(layer, group, None if pooled else rest_cut(model, group), depth[layer],
                                    _kind(model, layer, group)))
    steps = {cut: len(chain_steps(model, spec, cut)) for cut in {p.cut for p in planned if p.cut is not None}}
    return sorted(planned, key=lambda p: (p.cut is None, steps.get(p.cut, 0), order[p.layer]))


def validation_subset(dataset: ImageListDataset, count: int | None, seed: int) -> ImageListDataset:
    """``count`` images of the validation split drawn with ``seed`` (in split order; all when fewer, or None)."""
    if count is None or count >= len(dataset):
        return dataset
    chosen = np.sort(np.random.default_rng(seed).choice(len(dataset), count, replace=False))
    return ImageListDataset([dataset.samples[i] for i in chosen], dataset.classes, dataset.transform)


def head_fingerprint(heads: Heads) -> str:
    """sha256 (first 16 hex digits) of the trained heads' weights: other heads, another key."""
    digest = hashlib.sha256()
    for tensor in (heads.weight, heads.bias):
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:16]


def _train(config: FinetuneConfig, executor: Executor, in_process: bool, progress, stop, feature_cache,
           access: Access) -> TrainedBaseline:
    """The head, trained where the executor runs its work (progress and the cache only in this process; a stop
    cancels a remote task)."""
    here = {"progress": progress, "feature_cache": feature_cache} if in_process else {}
    return executor.call(train_baseline, config, stop=stop, access=access, **here)


def _tasks(todo: list[tuple[int, PlannedLayer, str]], trained: TrainedBaseline, heads: Heads, graph: PruningGraph,
           settings: AtlasSettings, family_size: int, threads: int | None,
           stop: threading.Event | None) -> Iterator[tuple[LayerTask]]:
    """Each layer's task, its block inputs computed when the task is about to start (on ``threads``)."""
    config = trained.config
    subset = validation_subset(trained.datasets["val"], settings.val_images, config.seed)
    blocks = BlockInputs(trained.model, trained.spec, subset, config.image_size or trained.spec.input_size,
                         resolve_device(config.device), stop=stop)
    for position, planned, key in todo:
        check_stop(stop)
        features = with_threads(threads, blocks.pooled if planned.cut is None else partial(blocks.at, planned.cut))
        scores = scores_by_criterion(graph, planned.group, settings.criteria, tau=settings.tau,
                                     seeds=settings.draws_for(planned.cut is None))
        yield (LayerTask(planned.layer, position, planned.depth, planned.kind, planned.group, config.backbone,
                         config.device, planned.cut, features, heads, scores, settings, config.seed, key,
                         family_size),)


def _recorded(records: AtlasRecords | None, keys: list[str], owner: str | None) -> dict[int, LayerAtlas]:
    """Position -> the layer recorded under its key, by ``owner`` or the command line."""
    found = {index: records.layer(key, owner) for index, key in enumerate(keys)} if records is not None else {}
    return {index: layer for index, layer in found.items() if layer is not None}


def run_atlas(config: FinetuneConfig, settings: AtlasSettings | None = None, *, executor: Executor | None = None,
              records: AtlasRecords | None = None, rerun: bool = False, progress: ProgressCallback | None = None,
              stop: threading.Event | None = None, feature_cache: FeatureCache | None = None,
              access: Access = COMMAND_LINE) -> AtlasResult:
    """Train the head once (``config``: its backbone, dataset, split and seed), then measure every layer
    ``settings`` choose (see ``measure_layer``) on ``executor`` (default: this process). Each layer's result
    is recorded in ``records`` as it ends and, unless ``rerun``, a layer already recorded under its key is
    not measured again; the complete run is recorded as its configuration's latest. ``progress(done, total,
    message)`` counts layers (in this process, also the steps within a layer); a set ``stop`` raises
    StopRequested (finished layers stay recorded). ``access`` (``access.Access``): the head's training reads
    its dataset and downloads as it allows, and the records are ``access.owner``'s (None, the command line's:
    shared; an owner's are theirs, see ``AtlasRecords``). Every setting and layer
    is checked before any training (ConfigError)."""
    started = time.perf_counter()
    settings = (settings or AtlasSettings()).validate()
    config = replace(config, mode="baseline")
    config.validate()
    spec = get_spec(config.backbone)
    plan_layers(load_backbone(config.backbone, "random").model, spec, settings)  # the layers exist: no weights needed
    executor = executor if executor is not None else LocalExecutor(config.device)
    in_process = isinstance(executor, LocalExecutor)
    trained = _train(config, executor, in_process, progress, stop, feature_cache, access)
    graph = PruningGraph(trained.model, spec)
    planned = plan_layers(trained.model, spec, settings, graph)
    heads = Heads.of(train_heads(trained, settings.heads, progress=progress, stop=stop))
    head = head_fingerprint(heads)
    keys = [layer_key(trained.config, head, p.layer, settings) for p in planned]
    done = {} if rerun else _recorded(records, keys, access.owner)
    todo = [(index, p, key) for index, (p, key) in enumerate(zip(planned, keys)) if index not in done]
    reused = [planned[index].layer for index in sorted(done)]
    report(progress, len(done), len(planned), f"Measuring {len(todo)} of {len(planned)} layers")

    def within(step: int, steps: int, message: str) -> None:
        report(progress, len(done), len(planned), f"Layer {len(done) + 1} of {len(planned)}: {message} ({step}/{steps})")

    # A Ray task gets neither the progress callback nor the stop event: it reports when it ends.
    measure = partial(measure_layer, trained.model, **({"progress": within, "stop": stop} if in_process else {}))
    for index, layer in executor.map(measure, _tasks(todo, trained, heads, graph, settings, len(planned), executor.threads, stop),
                                     stop=stop):
        done[todo[index][0]] = layer
        if records is not None:
            records.put_layer(layer, access.owner)
        report(progress, len(done), len(planned), f"Measured {layer.layer} ({len(done)} of {len(planned)} layers)")
    network_layers = sum(has_neurons(module) for module in trained.model.modules())
    result = AtlasResult(trained.config, settings, trained.summary, head, network_layers, len(graph.groups),
                         [done[index] for index in range(len(planned))], time.perf_counter() - started,
                         executor.describe(), time.time(), reused, access.owner)
    if records is not None:
        records.put_run(result)
    return result
