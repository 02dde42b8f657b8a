"""Parameter and MAC counts, exact and live, and measured latency.

``count_macs`` runs one forward pass under torch.utils.flop_counter.FlopCounterMode (which
counts convolutions and matrix products; one MAC = two FLOPs). ``CostModel`` predicts the same
two figures for any pruning plan with arithmetic only, from the layer shapes recorded once, so
a slider can update it in well under a millisecond. Tests check both agree exactly.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .layers import is_depthwise
from .pruning import PruningGraph, example_input

# PyPI's torch is a CUDA build; installed without triton (the Makefile's choice on a machine with no GPU), its flop
# counter warns on import that triton kernels will not be counted. Nothing here runs one, and the warning would be
# a stray line in every command's one-sentence error.
logging.getLogger("torch.utils.flop_counter").setLevel(logging.ERROR)
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402  (after the line above)

__all__ = ["Cost", "CostModel", "Latency", "count_params", "count_macs", "exact_cost", "compare_latency",
           "measure_latency_ms"]


@dataclass(frozen=True)
class Cost:
    """Parameters and multiply-accumulates of one forward pass of one image."""

    params: int
    macs: int


def count_params(model: nn.Module) -> int:
    """Every parameter of ``model``, trainable or frozen."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, input_size: int) -> int:
    """Multiply-accumulates of one forward pass of one ``input_size`` x ``input_size`` image, counted by
    torch's FlopCounterMode (convolutions and matrix products; BatchNorm, activations and pooling count
    0). Runs the model once, in eval mode, on its device; the model is left in the mode it came in."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, input_size, input_size, device=device))
    model.train(was_training)
    return counter.get_total_flops() // 2


def exact_cost(model: nn.Module, input_size: int) -> Cost:
    """``Cost(count_params(model), count_macs(model, input_size))``: what ``CostModel`` predicts."""
    return Cost(count_params(model), count_macs(model, input_size))


@dataclass(frozen=True)
class Latency:
    """Wall time of one forward pass over ``repeats`` passes: the median and the middle half (25th to 75th
    percentile) of the passes, in milliseconds. A timing varies with the machine's other load: two latencies
    differ only where their middle halves do not overlap (``differs_from``)."""

    median_ms: float
    low_ms: float
    high_ms: float
    repeats: int

    def differs_from(self, other: Latency) -> bool:
        """Whether the middle halves of the two timings do not overlap."""
        return self.high_ms < other.low_ms or other.high_ms < self.low_ms

    def __str__(self) -> str:
        return f"{self.median_ms:,.1f} ms (middle half {self.low_ms:,.1f}–{self.high_ms:,.1f})"


@torch.no_grad()
def compare_latency(models: list[nn.Module], input_size: int, batch_size: int = 1, repeats: int = 20,
                    warmup: int = 3) -> list[Latency]:
    """The latency of a forward pass of ``batch_size`` random images through each of ``models``, on its own
    device, over ``repeats`` passes after ``warmup``, the models taking turns pass by pass, so that a change in
    the machine's load falls on all of them alike (a GPU is synchronised around each pass). Each model is left
    in the mode it came in.

    Example: ``before, after = compare_latency([model, pruned], 224)``; ``after.differs_from(before)`` says
    whether the pruned model's timing is told apart from the original's at all."""
    timings: list[list[float]] = [[] for _ in models]
    modes = [model.training for model in models]
    inputs = []
    for model in models:
        model.eval()
        inputs.append(torch.randn(batch_size, 3, input_size, input_size, device=next(model.parameters()).device))
    try:
        for i in range(warmup + repeats):
            for model, x, times in zip(models, inputs, timings):
                elapsed = _timed_pass(model, x)
                if i >= warmup:
                    times.append(1000 * elapsed)
    finally:
        for model, mode in zip(models, modes):
            model.train(mode)
    return [Latency(*(float(v) for v in np.percentile(times, [50, 25, 75])), repeats) for times in timings]


def _timed_pass(model: nn.Module, x: torch.Tensor) -> float:
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    start = time.perf_counter()
    model(x)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - start


def measure_latency_ms(model: nn.Module, input_size: int, batch_size: int = 1, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of one forward pass of ``batch_size`` random images, in milliseconds
    (``compare_latency`` of this one model). A timing: it varies with the machine's other load, and is never
    compared exactly."""
    return compare_latency([model], input_size, batch_size, repeats, warmup)[0].median_ms


@dataclass
class _LayerShape:
    kind: str  # "conv", "linear" or "bn"
    out_channels: int
    in_channels: int
    kernel: int = 1  # kh * kw
    groups: int = 1
    positions: int = 1  # output spatial positions per image
    bias: bool = False
    depthwise: bool = False  # channels follow the producer: in == out

    def cost(self, out_channels: int, in_channels: int) -> Cost:
        if self.kind == "bn":
            return Cost(2 * out_channels, 0)
        if self.kind == "conv":
            per_filter_in = 1 if self.depthwise else in_channels // self.groups
            weights = out_channels * per_filter_in * self.kernel
            return Cost(weights + (out_channels if self.bias else 0), weights * self.positions)
        weights = out_channels * in_channels
        return Cost(weights + (out_channels if self.bias else 0), weights * self.positions)


class CostModel:
    """Live params/MACs for any plan {group index: neurons kept}, with no forward pass.

    Built once per (model, input size): one forward pass records every Conv2d, Linear and BatchNorm
    shape. ``estimate(plan)`` then equals ``exact_cost`` of the model pruned by that plan (tests check
    it on every backbone); ``estimate({})`` is the unpruned model's cost (``base``).
    """

    def __init__(self, model: nn.Module, graph: PruningGraph, input_size: int):
        self.graph = graph
        self.shapes: dict[str, _LayerShape] = {}
        hooks = []

        def record(name):
            def hook(module, inputs, output):
                positions = output[0, 0].numel() if output.ndim > 2 else 1
                if isinstance(module, nn.Conv2d):
                    self.shapes[name] = _LayerShape("conv", module.out_channels, module.in_channels,
                                                    module.kernel_size[0] * module.kernel_size[1], module.groups,
                                                    positions, module.bias is not None, is_depthwise(module))
                elif isinstance(module, nn.Linear):
                    self.shapes[name] = _LayerShape("linear", module.out_features, module.in_features,
                                                    positions=int(output[0].numel() // module.out_features),
                                                    bias=module.bias is not None)
                elif module.affine:
                    self.shapes[name] = _LayerShape("bn", module.num_features, module.num_features)
            return hook

        for name, module in model.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
                hooks.append(module.register_forward_hook(record(name)))
        try:
            with torch.no_grad():
                was_training = model.training
                model.eval()
                model(example_input(graph.spec, next(model.parameters()).device))
                model.train(was_training)
        finally:
            for hook in hooks:
                hook.remove()
        tracked = {f"{name}.{p}" for name in self.shapes for p in ("weight", "bias")}
        self.other_params = sum(p.numel() for name, p in model.named_parameters() if name not in tracked)
        self.base = self.estimate({})

    def estimate(self, plan: dict[int, int]) -> Cost:
        """Params and MACs of the whole model after keeping plan[g] neurons of group g."""
        removed_out: dict[str, int] = {}
        removed_in: dict[str, int] = {}
        for index, kept in plan.items():
            group = self.graph.groups[index]
            dropped = group.channels - kept
            for effect in group.effects:
                target = removed_out if effect.dim == "out" else removed_in
                target[effect.module] = target.get(effect.module, 0) + dropped * effect.per_channel
        params, macs = self.other_params, 0
        for name, shape in self.shapes.items():
            out_channels = shape.out_channels - removed_out.get(name, 0)
            in_channels = shape.in_channels - removed_in.get(name, 0)
            if shape.depthwise:
                in_channels = out_channels
            cost = shape.cost(out_channels, in_channels)
            params += cost.params
            macs += cost.macs
        return Cost(params, macs)

    def layer_estimate(self, layer: str, kept: int) -> Cost:
        """Params and MACs of one layer itself when ``kept`` of its neurons remain."""
        shape = self.shapes[layer]
        return shape.cost(kept, shape.in_channels)
