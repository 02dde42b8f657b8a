import time

import pytest
import torch
from torch import nn

from cprune_core.cost import CostModel, Latency, compare_latency, exact_cost, measure_latency_ms
from cprune_core.criteria import make_criterion
from cprune_core.pruning import PruningGraph, keep_plan, prune_model
from cprune_core.registry import BACKBONES, load_backbone


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name == "vgg16" else name
                                  for name in sorted(BACKBONES)])  # VGG16: 138 M parameters
def test_live_estimate_equals_the_exact_count(name):
    backbone = load_backbone(name, "random")
    model, spec = backbone.model, backbone.spec
    graph = PruningGraph(model, spec)
    costs = CostModel(model, graph, spec.input_size)
    assert costs.base == exact_cost(model, spec.input_size)
    for layers, keep in [(None, 0.25), (None, 0.6), ([spec.head_layer], 0.1)]:
        estimate = costs.estimate(keep_plan(graph, layers, keep))
        pruned = prune_model(model, spec, make_criterion("random"), keep, layers).model
        assert estimate == exact_cost(pruned, spec.input_size), (layers, keep)


def test_known_figures_of_the_offline_default(lite0):
    cost = exact_cost(lite0.model, 224)
    assert cost.params == 4_652_008  # EfficientNet-Lite0 as published: 4.65 M parameters
    assert 380e6 < cost.macs < 410e6  # about 0.4 G MACs at 224


def test_layer_estimate_and_latency(lite0):
    graph = PruningGraph(lite0.model, lite0.spec)
    costs = CostModel(lite0.model, graph, 224)
    full = costs.layer_estimate("head.1", 1280)
    assert full.params == 1280 * 320 and full.macs == 1280 * 320 * 7 * 7
    assert costs.layer_estimate("head.1", 640).macs == full.macs // 2
    assert measure_latency_ms(lite0.model, 96, repeats=3, warmup=1) > 0


def test_compare_latency_times_the_models_in_turns_and_reports_the_middle_half():
    """A model that sleeps 20 ms against one that sleeps 1 ms: each latency's median lies within its middle half,
    the two are told apart, and a timing is never told apart from itself."""
    class Sleeper(nn.Module):
        def __init__(self, seconds: float):
            super().__init__()
            self.seconds, self.weight = seconds, nn.Parameter(torch.zeros(1))

        def forward(self, x):
            time.sleep(self.seconds)
            return x

    slow, fast = Sleeper(0.02), Sleeper(0.001)
    slow.train()
    fast.eval()
    before, after = compare_latency([slow, fast], 8, repeats=5, warmup=1)
    assert slow.training and not fast.training  # each left in the mode it came in
    assert before.repeats == after.repeats == 5
    for latency in (before, after):
        assert latency.low_ms <= latency.median_ms <= latency.high_ms
    assert before.median_ms >= 20 and after.median_ms < before.median_ms
    assert after.differs_from(before) and not before.differs_from(before)
    assert str(Latency(12.34, 11.0, 13.5, 20)) == "12.3 ms (middle half 11.0–13.5)"
