"""Measuring the trained model with some of one layer's neurons removed, exactly as pruning removes them.

Every measurement is per validation image and per trained head (``Heads``: the head trained once, and the heads
trained again with other seeds on the same features), so what a neuron's removal does can be averaged over heads
and resampled over images (``cprune_core.stats``).
"""
from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from ..cut import cut_model
from ..device import Precision, resolve_device
from ..errors import ConfigError
from ..features import FEATURE_BATCH_SIZE, FeatureCache, prefix_features
from ..progress import ProgressCallback, Steps, check_stop, report
from ..pruning import GroupEffect, PrunableGroup, PruningGraph
from ..registry import BackboneSpec, get_submodule
from .baseline import TrainedBaseline

__all__ = ["Heads", "Outcome", "LayerAblator", "PooledAblator", "ForwardAblator", "layer_ablator", "per_image_outcome",
           "consumers", "rest_cut", "rest_features", "inference_copy"]

_LOGIT_BUDGET = 2**24  # floats of ablated logits held at once (64 MiB)


@dataclass(frozen=True)
class Heads:
    """K linear classifiers over the same features: ``weight`` K x C x d, ``bias`` K x C (float32, CPU)."""

    weight: torch.Tensor
    bias: torch.Tensor

    @classmethod
    def of(cls, linears: Sequence[nn.Linear]) -> Heads:
        return cls(torch.stack([head.weight.detach().float().cpu() for head in linears]),
                   torch.stack([head.bias.detach().float().cpu() for head in linears]))

    @property
    def count(self) -> int:
        return len(self.weight)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """K x N x C logits of N feature rows (N x d)."""
        return torch.einsum("nd,kcd->knc", features.float(), self.weight) + self.bias[:, None, :]


@dataclass(frozen=True)
class Outcome:
    """Each head's cross-entropy and correctness on each validation image (K x N each)."""

    losses: np.ndarray
    correct: np.ndarray

    @property
    def loss(self) -> float:
        """The mean validation loss over heads and images."""
        return float(self.losses.mean())

    @property
    def accuracy(self) -> float:
        """The mean validation accuracy over heads and images."""
        return float(self.correct.mean())


def per_image_outcome(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image cross-entropy and correctness of logits ... x N x C against N labels: two ... x N tensors."""
    flat = logits.reshape(-1, logits.shape[-1]).float()
    repeated = labels.repeat(flat.shape[0] // len(labels))  # row-major: image index varies fastest
    losses = F.cross_entropy(flat, repeated, reduction="none")
    return losses.reshape(logits.shape[:-1]), (flat.argmax(1) == repeated).reshape(logits.shape[:-1])


class LayerAblator:
    """The trained model's validation loss and accuracy with any set of one layer's neurons removed.

    ``evaluate(keep)`` takes a boolean mask of the ``n_neurons`` neurons (True: kept) and gives the ``Outcome``
    per head and image; ``remove_each(neurons)`` removes each listed neuron alone (per-image losses and
    correctness, neurons x K x N). ``exhaustive`` says whether measuring every neuron is cheap (one operation) or
    a forward pass each.
    """

    method: str = ""  # "pooled" or "forward"
    exhaustive: bool = False

    def __init__(self, layer: str, group: PrunableGroup, labels: torch.Tensor, heads: Heads):
        self.layer, self.group, self.labels, self.heads = layer, group, labels, heads
        self.n_images = len(labels)
        self.n_neurons = group.channels
        self._full: Outcome | None = None

    def evaluate(self, keep: torch.Tensor) -> Outcome:
        raise NotImplementedError

    def remove_each(self, neurons: Sequence[int], *, progress: ProgressCallback | None = None,
                    stop: threading.Event | None = None) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def full(self) -> Outcome:
        """Every neuron kept (measured once: a forward pass over the validation split)."""
        if self._full is None:
            self._full = self.evaluate(torch.ones(self.n_neurons, dtype=torch.bool))
        return self._full

    def _outcome(self, logits: torch.Tensor) -> Outcome:
        losses, correct = per_image_outcome(logits, self.labels)
        return Outcome(losses.numpy().astype(np.float64), correct.numpy())

    def _check_mask(self, keep: torch.Tensor) -> torch.Tensor:
        if keep.shape != (self.n_neurons,) or keep.dtype != torch.bool:
            raise ConfigError(f"A keep mask of {self.layer} is {self.n_neurons} booleans, got {keep.dtype} "
                              f"{tuple(keep.shape)}.")
        return keep


class PooledAblator(LayerAblator):
    """Exact, for a layer whose only consumer is the classifier: the classifier input column j is
    neuron j's pooled feature, so removing j takes ``P[:, j] * W[:, j]`` off every image's logits."""

    method = "pooled"
    exhaustive = True

    def __init__(self, layer: str, group: PrunableGroup, pooled: torch.Tensor, labels: torch.Tensor, heads: Heads):
        super().__init__(layer, group, labels, heads)
        self.pooled = pooled.float()
        self.logits = heads.logits(self.pooled)  # K x N x C

    def evaluate(self, keep: torch.Tensor) -> Outcome:
        keep = self._check_mask(keep)
        return self._outcome(self.heads.logits(self.pooled * keep))

    def remove_each(self, neurons: Sequence[int], *, progress: ProgressCallback | None = None,
                    stop: threading.Event | None = None) -> tuple[np.ndarray, np.ndarray]:
        neurons = torch.as_tensor(list(neurons), dtype=torch.long)
        heads, n_images, n_classes = self.logits.shape
        chunk = max(1, _LOGIT_BUDGET // (heads * n_images * n_classes))
        losses, correct = [], []
        for start in range(0, len(neurons), chunk):
            check_stop(stop)
            part = neurons[start:start + chunk]
            # k x K x N x C: the logits with each neuron of the chunk removed in turn.
            removed = self.pooled[:, part].T[:, None, :, None] * self.heads.weight[:, :, part].permute(2, 0, 1)[:, :, None, :]
            chunk_losses, chunk_correct = per_image_outcome(self.logits[None] - removed, self.labels)
            losses.append(chunk_losses.numpy().astype(np.float64))
            correct.append(chunk_correct.numpy())
            report(progress, min(start + chunk, len(neurons)), len(neurons), f"Removing each neuron of {self.layer}")
        if not losses:
            return np.empty((0, heads, n_images)), np.empty((0, heads, n_images), dtype=bool)
        return np.concatenate(losses), np.concatenate(correct)


def inference_copy(module: nn.Module, keep: Sequence[nn.Module]) -> tuple[nn.Module, list[nn.Module]]:
    """A copy of ``module`` for fast evaluation, and the copies of the modules ``keep`` lists.

    Each Conv2d directly followed by a BatchNorm2d in an ``nn.Sequential`` absorbs it (its weights and bias
    become the composition's; the BatchNorm becomes an Identity): the same function in eval mode, one pass over
    the activations fewer. The copy is laid out channels-last (oneDNN's fast path on CPUs). Zeroing a
    convolution's input channel is unchanged by folding its own BatchNorm into it, so masks at consumers' inputs
    mean the same in the copy."""
    memo: dict[int, object] = {}
    fast = copy.deepcopy(module, memo).eval()
    for sequential in fast.modules():
        if not isinstance(sequential, nn.Sequential):
            continue
        for index in range(len(sequential) - 1):
            conv, norm = sequential[index], sequential[index + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats:
                weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var,
                                                    norm.eps, norm.weight, norm.bias)
                conv.weight, conv.bias = weight, bias
                sequential[index + 1] = nn.Identity()
    return fast.to(memory_format=torch.channels_last), [memo[id(kept)] for kept in keep]


class ForwardAblator(LayerAblator):
    """Exact for any prunable layer: the rest of the network (``features``: from the cut to the classifier's
    inputs, ``rest_features``) runs on cached inputs, with the removed channels zeroed at the inputs of their
    consumers (the layers that read them); every head then reads the classifier's inputs."""

    method = "forward"
    exhaustive = False

    def __init__(self, layer: str, group: PrunableGroup, features: nn.Module, inputs: torch.Tensor,
                 labels: torch.Tensor, consumers: list[tuple[nn.Module, int]], heads: Heads, device: torch.device):
        super().__init__(layer, group, labels, heads)
        modules = [module for module, _ in consumers]
        self.features, copies = inference_copy(features, modules)
        self.features.to(device)
        self.consumers = [(copied, per_channel) for copied, (_, per_channel) in zip(copies, consumers)]
        self.inputs, self.device = inputs, device

    def _features(self, mask: torch.Tensor) -> torch.Tensor:
        hooks = [module.register_forward_pre_hook(self._zeroing_hook(mask, per_channel))
                 for module, per_channel in self.consumers]
        try:
            with torch.inference_mode():
                return torch.cat([self.features(batch.to(self.device).contiguous(memory_format=torch.channels_last)
                                                if batch.ndim == 4 else batch.to(self.device)).float().cpu()
                                  for batch in self.inputs.split(FEATURE_BATCH_SIZE)])
        finally:
            for hook in hooks:
                hook.remove()

    def evaluate(self, keep: torch.Tensor) -> Outcome:
        mask = self._check_mask(keep).float().to(self.device)
        return self._outcome(self.heads.logits(self._features(mask)))

    @staticmethod
    def _zeroing_hook(mask: torch.Tensor, per_channel: int):
        def hook(module: nn.Module, args: tuple):
            x = args[0]
            if isinstance(module, nn.Conv2d):
                return (x * mask.view(1, -1, 1, 1),) + args[1:]
            return (x * mask.repeat_interleave(per_channel),) + args[1:]  # a Linear's flattened input

        return hook

    def remove_each(self, neurons: Sequence[int], *, progress: ProgressCallback | None = None,
                    stop: threading.Event | None = None) -> tuple[np.ndarray, np.ndarray]:
        neurons = list(neurons)
        which = f"a sample of {len(neurons):,} of the {self.n_neurons:,}" if len(neurons) < self.n_neurons else "all"
        message = f"Removing each neuron of {self.layer} ({which} neurons; a forward pass each)"
        losses = np.empty((len(neurons), self.heads.count, self.n_images))
        correct = np.empty((len(neurons), self.heads.count, self.n_images), dtype=bool)
        for i, neuron in enumerate(neurons):
            check_stop(stop)
            keep = torch.ones(self.n_neurons, dtype=torch.bool)
            keep[neuron] = False
            outcome = self.evaluate(keep)
            losses[i], correct[i] = outcome.losses, outcome.correct
            report(progress, i + 1, len(neurons), message)
        return losses, correct


def rest_cut(model: nn.Module, group: PrunableGroup) -> str:
    """Where the rest of the network starts for ``group``: at its first module when every container
    above that is an ``nn.Sequential``, else at the outermost container above it that is not one
    (the children of a block with a skip connection are not a chain, so no cut falls among them)."""
    order = {name: index for index, (name, _) in enumerate(model.named_modules())}
    first = min((effect.module for effect in group.effects), key=order.__getitem__)
    parts = first.split(".")
    depth = 1
    while depth < len(parts) and isinstance(model.get_submodule(".".join(parts[:depth])), nn.Sequential):
        depth += 1
    return ".".join(parts[:depth])


def consumers(model: nn.Module, group: PrunableGroup) -> list[GroupEffect]:
    """The layers that read the group's channels; ConfigError when one reads other channels too (a
    concatenation), which zeroing by channel index would get wrong."""
    consumers = [effect for effect in group.effects if effect.dim == "in"]
    for effect in consumers:
        module = model.get_submodule(effect.module)
        inputs = module.in_channels if isinstance(module, nn.Conv2d) else module.in_features
        if inputs != group.channels * effect.per_channel:
            raise ConfigError(f"{effect.module} reads {inputs} inputs, not only the {group.channels} channels of "
                              f"{group.root}: ablating this layer is not supported.")
    return consumers


def rest_features(model: nn.Module, spec: BackboneSpec, cut: str) -> nn.Sequential:
    """The modules from ``cut`` to the classifier's inputs (the rest of the network without its classifier)."""
    rest = cut_model(model, replace(spec, suffix_start=cut))[1]
    if rest[-1] is not get_submodule(model, spec.classifier):
        raise ConfigError(f"The network after {cut} does not end with its classifier {spec.classifier}.")
    return nn.Sequential(*list(rest)[:-1])


def layer_ablator(trained: TrainedBaseline, graph: PruningGraph, group: PrunableGroup, layer: str | None = None, *,
                  heads: Heads | None = None, progress: ProgressCallback | None = None,
                  stop: threading.Event | None = None, feature_cache: FeatureCache | None = None) -> LayerAblator:
    """The ablator of ``group`` (of ``layer``, for messages) on the trained baseline's validation split, with
    ``heads`` (None: the trained head alone): a ``PooledAblator`` when the classifier is the group's only
    consumer, else a ``ForwardAblator`` (whose rest-of-network inputs are computed once, through
    ``feature_cache``, None: the engine's; it moves the model to the config's device). ConfigError when a
    consumer of the group also reads other channels (a concatenation: zeroing by channel index would be wrong);
    StopRequested when ``stop`` is set while the inputs are computed."""
    layer = layer or group.root
    spec, config, model = trained.spec, trained.config, trained.model
    heads = heads or Heads.of([get_submodule(model, spec.classifier)])
    readers = consumers(model, group)
    if readers == [GroupEffect(spec.classifier, "in", 1)]:
        pooled, labels = trained.pooled["val"]
        return PooledAblator(layer, group, pooled, labels, heads)
    cut = rest_cut(model, group)
    device = resolve_device(config.device)
    model.to(device)
    prefix = cut_model(model, replace(spec, suffix_start=cut))[0]
    steps = Steps(prefix_features(prefix, trained.datasets["val"], config, spec, split="val", precision=Precision(device),
                                  stop=stop, cut=cut, cache=feature_cache))
    for done, images in steps:
        report(progress, done, images, f"Computing the inputs of {cut} on the validation split (images)")
    inputs, labels = steps.result
    return ForwardAblator(layer, group, rest_features(model, spec, cut), inputs, labels,
                          [(model.get_submodule(e.module), e.per_channel) for e in readers], heads, device)


