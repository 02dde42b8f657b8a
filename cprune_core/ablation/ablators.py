"""Measuring the trained model with some of one layer's neurons removed, exactly as pruning removes them."""
from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..cut import cut_model
from ..device import Precision, resolve_device
from ..errors import ConfigError
from ..features import FEATURE_BATCH_SIZE, FeatureCache, prefix_features
from ..progress import ProgressCallback, Steps, check_stop, report
from ..pruning import GroupEffect, PrunableGroup, PruningGraph
from ..registry import get_submodule
from .baseline import TrainedBaseline

__all__ = ["LayerAblator", "PooledAblator", "ForwardAblator", "layer_ablator", "loss_and_accuracy", "consumers", "rest_cut"]

_LOGIT_BUDGET = 2**24  # floats of ablated logits held at once (64 MiB)


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and accuracy over the images (logits ... x N x C, labels N)."""
    flat = logits.reshape(-1, logits.shape[-1]).float()
    repeated = labels.repeat(flat.shape[0] // len(labels))  # row-major: image index varies fastest
    losses = F.cross_entropy(flat, repeated, reduction="none")
    hits = (flat.argmax(1) == repeated).float()
    return losses.reshape(logits.shape[:-1]).mean(-1), hits.reshape(logits.shape[:-1]).mean(-1)


class LayerAblator:
    """The trained model's validation loss and accuracy with any set of one layer's neurons removed.

    ``evaluate(keep)`` takes a boolean mask of the ``n_neurons`` neurons (True: kept);
    ``remove_each(neurons)`` removes each listed neuron alone. ``exhaustive`` says whether measuring
    every neuron is cheap (one operation) or a forward pass each.
    """

    method: str = ""  # "pooled" or "forward"
    exhaustive: bool = False

    def __init__(self, layer: str, group: PrunableGroup, n_images: int):
        self.layer, self.group, self.n_images = layer, group, n_images
        self.n_neurons = group.channels
        self._full: tuple[float, float] | None = None

    def evaluate(self, keep: torch.Tensor) -> tuple[float, float]:
        raise NotImplementedError

    def remove_each(self, neurons: Sequence[int], *, progress: ProgressCallback | None = None,
                    stop: threading.Event | None = None) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def full(self) -> tuple[float, float]:
        """Loss and accuracy with every neuron kept (measured once: a forward pass over the validation split)."""
        if self._full is None:
            self._full = self.evaluate(torch.ones(self.n_neurons, dtype=torch.bool))
        return self._full

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

    def __init__(self, layer: str, group: PrunableGroup, pooled: torch.Tensor, labels: torch.Tensor,
                 classifier: nn.Linear):
        super().__init__(layer, group, len(labels))
        self.pooled, self.labels = pooled.float(), labels
        self.weight = classifier.weight.detach().float().cpu()  # C x n
        self.bias = classifier.bias.detach().float().cpu()
        self.logits = self.pooled @ self.weight.T + self.bias

    def evaluate(self, keep: torch.Tensor) -> tuple[float, float]:
        keep = self._check_mask(keep)
        loss, accuracy = loss_and_accuracy((self.pooled * keep) @ self.weight.T + self.bias, self.labels)
        return float(loss), float(accuracy)

    def remove_each(self, neurons: Sequence[int], *, progress: ProgressCallback | None = None,
                    stop: threading.Event | None = None) -> tuple[np.ndarray, np.ndarray]:
        neurons = torch.as_tensor(list(neurons), dtype=torch.long)
        n_images, n_classes = self.logits.shape
        chunk = max(1, _LOGIT_BUDGET // (n_images * n_classes))
        losses, accuracies = [], []
        for start in range(0, len(neurons), chunk):
            check_stop(stop)
            part = neurons[start:start + chunk]
            # k x N x C: the logits with each neuron of the chunk removed in turn.
            ablated = self.logits[None] - self.pooled[:, part].T[:, :, None] * self.weight[:, part].T[:, None, :]
            loss, accuracy = loss_and_accuracy(ablated, self.labels)
            losses.append(loss)
            accuracies.append(accuracy)
            report(progress, min(start + chunk, len(neurons)), len(neurons), f"Removing each neuron of {self.layer}")
        if not losses:
            return np.empty(0), np.empty(0)
        return torch.cat(losses).numpy().astype(float), torch.cat(accuracies).numpy().astype(float)


class ForwardAblator(LayerAblator):
    """Exact for any prunable layer: the rest of the network runs on cached inputs, with the removed
    channels zeroed at the inputs of their consumers (the layers that read them)."""

    method = "forward"
    exhaustive = False

    def __init__(self, layer: str, group: PrunableGroup, rest: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                 consumers: list[tuple[nn.Module, int]], device: torch.device):
        super().__init__(layer, group, len(labels))
        self.rest, self.inputs, self.labels, self.device = rest.eval(), inputs, labels, device
        self.consumers = consumers  # (module, input entries per channel: > 1 after a flatten)

    def evaluate(self, keep: torch.Tensor) -> tuple[float, float]:
        mask = self._check_mask(keep).float().to(self.device)
        hooks = [module.register_forward_pre_hook(self._zeroing_hook(mask, per_channel))
                 for module, per_channel in self.consumers]
        try:
            with torch.no_grad():
                logits = torch.cat([self.rest(self.inputs[start:start + FEATURE_BATCH_SIZE].to(self.device)).float().cpu()
                                    for start in range(0, len(self.inputs), FEATURE_BATCH_SIZE)])
        finally:
            for hook in hooks:
                hook.remove()
        loss, accuracy = loss_and_accuracy(logits, self.labels)
        return float(loss), float(accuracy)

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
        losses, accuracies = np.empty(len(neurons)), np.empty(len(neurons))
        for i, neuron in enumerate(neurons):
            check_stop(stop)
            keep = torch.ones(self.n_neurons, dtype=torch.bool)
            keep[neuron] = False
            losses[i], accuracies[i] = self.evaluate(keep)
            report(progress, i + 1, len(neurons), message)
        return losses, accuracies


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


def layer_ablator(trained: TrainedBaseline, graph: PruningGraph, group: PrunableGroup, layer: str | None = None, *,
                  progress: ProgressCallback | None = None, stop: threading.Event | None = None,
                  feature_cache: FeatureCache | None = None) -> LayerAblator:
    """The ablator of ``group`` (of ``layer``, for messages) on the trained baseline's validation split:
    a ``PooledAblator`` when the classifier is the group's only consumer, else a ``ForwardAblator``
    (whose rest-of-network inputs are computed once, through ``feature_cache``, None: the engine's; it
    moves the model to the config's device). ConfigError when a consumer of the group also reads other
    channels (a concatenation: zeroing by channel index would be wrong); StopRequested when ``stop`` is
    set while the inputs are computed."""
    layer = layer or group.root
    spec, config, model = trained.spec, trained.config, trained.model
    readers = consumers(model, group)
    if readers == [GroupEffect(spec.classifier, "in", 1)]:
        pooled, labels = trained.pooled["val"]
        return PooledAblator(layer, group, pooled, labels, get_submodule(model, spec.classifier))
    cut = rest_cut(model, group)
    device = resolve_device(config.device)
    model.to(device)
    prefix, rest = cut_model(model, replace(spec, suffix_start=cut))
    steps = Steps(prefix_features(prefix, trained.datasets["val"], config, spec, split="val", precision=Precision(device),
                                  stop=stop, cut=cut, cache=feature_cache))
    for batch, batches in steps:
        report(progress, batch, batches, f"Computing the inputs of {cut} on the validation split")
    inputs, labels = steps.result
    return ForwardAblator(layer, group, rest, inputs, labels,
                          [(model.get_submodule(e.module), e.per_channel) for e in readers], device)


