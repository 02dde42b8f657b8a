"""Structural pruning with torch-pruning's dependency graph (DepGraph).

A *group* is the set of channels that must be removed together: a layer's output
channels, the BatchNorm after it, the depthwise conv that follows, the next layer's input
channels, and for residual networks every layer added to the same residual stream. Scores
come from our criteria (criteria.py) through torch-pruning's Importance interface, always
computed on the unpruned weights, so the kept set is exactly what the graph views show.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from .errors import ConfigError
from .criteria import Criterion, GroupImportance
from .layers import has_neurons, is_depthwise
from .ranges import KEEP
from .cut import cut_model
from .registry import BackboneSpec, get_submodule

__all__ = ["PruningGraph", "PrunableGroup", "GroupEffect", "PruneResult", "keep_count", "ranking", "kept_indices",
           "tied_fraction", "TIE_SEED", "keep_plan",
           "select_groups", "layers_to_prune", "prune_model", "apply_kept", "example_input", "TRACE_SIZE", "LayerInfo",
           "list_layers"]


def keep_count(channels: int, keep_ratio: float) -> int:
    """Neurons kept at ``keep_ratio``: round(n * ratio), at least 1, at most n (ConfigError for a ratio
    outside (0, 1]). Example: ``keep_count(1280, 0.1)`` is 128; ``keep_count(3, 0.01)`` is 1."""
    KEEP.check(keep_ratio, "keep ratio")
    return min(channels, max(1, round(channels * keep_ratio)))


TIE_SEED = 0  # the seed of the random order that breaks ties between equal scores


def ranking(scores: torch.Tensor, tie_seed: int = TIE_SEED) -> torch.Tensor:
    """Neuron indices, best score first; equal scores in a random order drawn with ``tie_seed``, never by index.

    Ties are common: eigenvector centrality gives every isolated neuron exactly 0 and a graph with no edge the
    same score everywhere, so ordering ties by index would keep "the first neurons" and make a criterion look
    like another. ``tied_fraction`` says how much of a kept set the tie-break decides. Example:
    ``ranking(torch.tensor([0.1, 0.9, 0.5])).tolist()`` is ``[1, 2, 0]``."""
    scores = scores.detach().cpu()
    shuffled = torch.randperm(len(scores), generator=torch.Generator().manual_seed(tie_seed))
    return shuffled[torch.argsort(scores[shuffled], descending=True, stable=True)]


def kept_indices(scores: torch.Tensor, count: int, tie_seed: int = TIE_SEED) -> list[int]:
    """Sorted indices of the ``count`` best-scored neurons (``ranking``: ties broken by a random order drawn with
    ``tie_seed``). Example: ``kept_indices(torch.tensor([0.1, 0.9, 0.5]), 2)`` is ``[1, 2]``."""
    return sorted(ranking(scores, tie_seed)[:count].tolist())


def tied_fraction(scores: torch.Tensor | np.ndarray, count: int) -> float:
    """The share of the ``count`` kept neurons that a tie decides: kept neurons whose score equals the lowest kept
    score, where more neurons share that score than are kept (so the tie-break chose among them); 0 when the kept
    set does not depend on how ties are broken. Example: scores [3, 1, 1, 1] keeping 2 give 0.5."""
    values = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if count <= 0 or count >= len(values):
        return 0.0
    boundary = values[count - 1]
    if values[count] != boundary:
        return 0.0
    return float((values[:count] == boundary).sum() / count)


# The image a dependency graph is traced with. Which channels depend on which does not depend on the image's size
# in a network whose head pools adaptively (every registry backbone: VGG16's flatten still meets 7 x 7 x 512), so a
# small one serves: VGG16 traced in a tenth of the multiply-adds of 224 px (tests/test_pruning.py checks every
# registry backbone's groups are the same at both sizes).
TRACE_SIZE = 64


def example_input(spec: BackboneSpec, device: torch.device | str = "cpu", size: int | None = None) -> torch.Tensor:
    """One all-zero image, ``size`` pixels square (default: the backbone's input size, at which the cost model
    measures each layer's output)."""
    side = size or spec.input_size
    return torch.zeros(1, 3, side, side, device=device)


@dataclass(frozen=True)
class GroupEffect:
    """What removing one channel of a group does to one module."""

    module: str
    dim: str  # "out" (output channels/features, BatchNorm channels) or "in"
    per_channel: int  # entries removed per group channel (e.g. 49 after a 7x7 flatten)


@dataclass
class PrunableGroup:
    """Channels that are removed together (torch-pruning's group), described by module names."""

    index: int
    layers: list[str]  # Conv2d/Linear layers whose neurons the group removes (scored by the criterion)
    channels: int
    followers: list[str] = field(default_factory=list)  # depthwise convs that follow their producer
    effects: list[GroupEffect] = field(default_factory=list)

    @property
    def root(self) -> str:
        """The group's first layer: the one it is named by."""
        return self.layers[0]


class PruningGraph:
    """torch-pruning's DependencyGraph of a model, with the classifier protected.

    ``groups`` lists every prunable group in the model's definition order; ``group_for(layer)`` finds
    a layer's group (ConfigError for the classifier, a layer without neurons, or one whose channels
    are tied to the network's input or output); ``group_scores`` gives what pruning ranks a group by.
    Tracing runs the model once on a TRACE_SIZE image; the model is not changed until ``prune_group``.
    """

    def __init__(self, model: nn.Module, spec: BackboneSpec):
        self.model = model
        self.spec = spec
        self.names = {module: name for name, module in model.named_modules()}
        device = next(model.parameters()).device
        self.dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_input(spec, device, TRACE_SIZE),
                                                        verbose=False)
        classifier = get_submodule(model, spec.classifier)
        self.groups: list[PrunableGroup] = []
        for tp_group in self.dg.get_all_groups(ignored_layers=[classifier], root_module_types=(nn.Conv2d, nn.Linear)):
            self.groups.append(self._describe(tp_group))
        order = {name: i for i, name in enumerate(self.names.values())}
        self.groups.sort(key=lambda g: order[g.root])  # forward (definition) order, for people
        for index, group in enumerate(self.groups):
            group.index = index
        self.group_of: dict[str, int] = {name: g.index for g in self.groups for name in g.layers + g.followers}

    def _describe(self, tp_group) -> PrunableGroup:
        channels = len(tp_group[0].idxs)
        layers, followers, effects = [], [], []
        for dep, idxs in tp_group:
            module = dep.target.module
            name = self.names.get(module)
            if name is None:
                continue
            is_out = self.dg.is_out_channel_pruning_fn(dep.handler)
            if has_neurons(module) and is_out:
                (followers if is_depthwise(module) else layers).append(name)
            if has_neurons(module) or isinstance(module, nn.BatchNorm2d):
                dim = "out" if is_out or isinstance(module, nn.BatchNorm2d) or is_depthwise(module) else "in"
                effect = GroupEffect(name, dim, len(idxs) // channels)
                if effect not in effects:
                    effects.append(effect)
        return PrunableGroup(-1, layers, channels, followers, effects)

    def group_for(self, layer: str) -> PrunableGroup:
        """The group whose channels ``layer`` has (a depthwise follower's: its producer's group)."""
        try:
            return self.groups[self.group_of[layer]]
        except KeyError:
            if layer not in self.names.values():
                raise ConfigError(f"The model has no layer named {layer!r}; the layers are listed by "
                                  f"`cprune graph --backbone {self.spec.name}`.") from None
            raise ConfigError(
                f"Layer {layer!r} cannot be pruned on its own: it is the classifier, not a Conv2d/Linear, "
                "or its channels are tied to the network's input or output."
            ) from None

    def tp_group(self, group: PrunableGroup, indices: list[int]):
        """torch-pruning's group for removing ``indices`` of ``group``'s channels."""
        root = get_submodule(self.model, group.root)
        handler = tp.prune_linear_out_channels if isinstance(root, nn.Linear) else tp.prune_conv_out_channels
        return self.dg.get_pruning_group(root, handler, idxs=indices)

    def group_scores(self, group: PrunableGroup, criterion: Criterion) -> torch.Tensor:
        """One score per channel of ``group`` (on the CPU): what pruning ranks the group's channels by."""
        importance = GroupImportance(criterion, self.names)
        return importance(self.tp_group(group, list(range(group.channels)))).cpu()

    def prune_group(self, group: PrunableGroup, remove: list[int]) -> None:
        """Remove channels ``remove`` of ``group`` from every module of the group, in place. ConfigError
        when that would leave a layer with no channel."""
        if not remove:
            return
        tp_group = self.tp_group(group, remove)
        if not self.dg.check_pruning_group(tp_group):
            raise ConfigError(f"Pruning {len(remove)} of {group.channels} channels of {group.root} would empty a layer.")
        tp_group.prune()


@dataclass
class PruneResult:
    """A pruned model and which neurons of each pruned layer it kept."""

    model: nn.Module
    kept: dict[str, list[int]]  # layer name -> original indices of the kept neurons (sorted)
    channels: dict[str, int]  # layer name -> neurons before pruning


def select_groups(graph: PruningGraph, layers: list[str] | None) -> list[PrunableGroup]:
    """The groups holding ``layers`` (each once), or every prunable group when None."""
    if layers is None:
        return list(graph.groups)
    chosen: dict[int, PrunableGroup] = {}
    for layer in layers:
        group = graph.group_for(layer)
        chosen.setdefault(group.index, group)
    return list(chosen.values())


def keep_plan(graph: PruningGraph, layers: list[str] | None, keep: float | dict[str, int]) -> dict[int, int]:
    """Group index -> neurons kept, from one keep ratio or from counts per layer (a group holding several
    of the counted layers keeps the largest count). ConfigError for a ratio outside (0, 1], a count
    outside 1..n, or a layer that cannot be pruned."""
    plan = {}
    for group in select_groups(graph, layers):
        if isinstance(keep, dict):
            counts = [keep[name] for name in group.layers if name in keep]
            if not counts:
                continue
            count = max(counts)
            if not 1 <= count <= group.channels:
                raise ConfigError(f"Keep count {count} for {group.root} must be between 1 and {group.channels}.")
        else:
            count = keep_count(group.channels, keep)
        plan[group.index] = count
    return plan


def prune_model(
    model: nn.Module,
    spec: BackboneSpec,
    criterion: Criterion,
    keep: float | dict[str, int],
    layers: list[str] | None = None,
    inplace: bool = False,
) -> PruneResult:
    """Remove the lowest-scored neurons of ``layers`` (all prunable layers when None).

    Parameters
    ----------
    model, spec : the model and its registry entry (the classifier named there is never pruned).
    criterion : what ranks each group's channels (``make_criterion``); every group is scored on the
        unpruned weights, before any channel is removed.
    keep : a ratio in (0, 1] applied to every selected layer (``keep_count``), or a count per layer name.
    layers : the layers to prune; layers coupled by a residual add are pruned together, once, and a
        depthwise convolution stands for the layer that feeds it.
    inplace : prune ``model`` itself rather than a copy.

    Returns
    -------
    PruneResult : the model, shrunk for real (smaller weight tensors) and still running, with the kept
    indices and the former neuron count of every pruned layer (coupled layers share their indices).

    Raises
    ------
    ConfigError : for a layer that cannot be pruned (the classifier, one tied to the input or output, an
        unknown name), a ratio outside (0, 1] or a count outside 1..n.
    NonFiniteWeightsError : for NaN or Inf weights in a scored layer.

    Example: ``prune_model(model, spec, make_criterion("eigenvector"), 0.5, ["head.1"]).kept["head.1"]``
    lists the 640 kept neurons of EfficientNet-Lite0's head layer.
    """
    if not inplace:
        model = copy.deepcopy(model)
    graph = PruningGraph(model, spec)
    plan = keep_plan(graph, layers, keep)
    # Score every group on the unpruned weights first.
    scores = {index: graph.group_scores(graph.groups[index], criterion) for index in plan}
    kept, channels = {}, {}
    for index, count in plan.items():
        group = graph.groups[index]
        keep_idx = kept_indices(scores[index], count)
        graph.prune_group(group, sorted(set(range(group.channels)) - set(keep_idx)))
        for name in group.layers:
            kept[name], channels[name] = keep_idx, group.channels
    return PruneResult(model, kept, channels)


def apply_kept(model: nn.Module, spec: BackboneSpec, kept: dict[str, list[int]]) -> nn.Module:
    """Re-apply saved kept indices (``PruneResult.kept``) to a fresh, unpruned model of the same backbone,
    in place, and return it. ConfigError when an index exceeds a layer's neurons (another backbone) or a
    layer cannot be pruned."""
    graph = PruningGraph(model, spec)
    done = set()
    for name, keep_idx in kept.items():
        group = graph.group_for(name)
        if group.index in done:
            continue
        done.add(group.index)
        if max(keep_idx, default=-1) >= group.channels:
            raise ConfigError(f"Saved indices for {name} exceed its {group.channels} neurons: wrong backbone?")
        graph.prune_group(group, sorted(set(range(group.channels)) - set(keep_idx)))
    return model


@dataclass(frozen=True)
class LayerInfo:
    """One Linear or Conv2d layer, as the layer table shows it."""

    name: str
    kind: str  # "Linear", "Conv2d" or "Conv2d (depthwise)"
    neurons: int  # output units or output filters
    vector_length: int  # length of each neuron's incoming weight vector
    params: int
    prunable: bool
    note: str  # why not prunable, or what it is coupled with

    def as_row(self) -> dict:
        return asdict(self)


def list_layers(model: nn.Module, graph: PruningGraph) -> list[LayerInfo]:
    """Every Linear/Conv2d layer in definition order, with its pruning status in ``graph``."""
    rows = []
    for name, module in model.named_modules():
        if not has_neurons(module):
            continue
        depthwise = is_depthwise(module)
        kind = "Linear" if isinstance(module, nn.Linear) else ("Conv2d (depthwise)" if depthwise else "Conv2d")
        params = sum(p.numel() for p in module.parameters())
        group = graph.groups[graph.group_of[name]] if name in graph.group_of else None
        if name == graph.spec.classifier:
            prunable, note = False, "final classifier: replaced for fine-tuning"
        elif group is None:
            prunable, note = False, "channels tied to the network's input or output"
        elif depthwise:
            prunable, note = False, f"follows its producer {group.root}"
        else:
            prunable = True
            partners = [other for other in group.layers if other != name]
            note = f"coupled with {len(partners)} layer(s) by a residual add: {', '.join(partners[:3])}" if partners else ""
        rows.append(LayerInfo(name, kind, module.weight.shape[0], module.weight[0].numel(), params, prunable, note))
    return rows


def layers_to_prune(model: nn.Module, spec: BackboneSpec, layers: list[str] | None, frozen_prefix: bool) -> list[str]:
    """The layers a run prunes: ``layers`` (None: the registry's head layer; ["all"]: every prunable
    layer in the trained scope), checked to leave a frozen prefix untouched. ConfigError otherwise."""
    layers = layers or [spec.head_layer]
    graph = PruningGraph(model, spec)
    prefix_modules = {id(m) for m in cut_model(model, spec)[0].modules()} if frozen_prefix else set()

    def touches_prefix(group) -> bool:
        return any(id(get_submodule(model, effect.module)) in prefix_modules for effect in group.effects)

    if layers == ["all"]:
        groups = [g for g in graph.groups if not touches_prefix(g)]
        if not groups:
            raise ConfigError(f"{spec.name} has no prunable layer in its trainable suffix; use train_scope='all'.")
        return [g.root for g in groups]
    for group in select_groups(graph, layers):
        if touches_prefix(group):
            raise ConfigError(
                f"Pruning {group.root} changes the frozen prefix (it ends before {spec.suffix_start}); "
                "use train_scope='all' to prune it, or choose a layer in the suffix.")
    return layers
