"""Time of one live params/MACs update (what a slider move costs) for every backbone,
next to the exact count it must equal (prune for real + FlopCounterMode forward pass).

    .venv/bin/python bench/bench_cost.py
"""
from __future__ import annotations

import time

from cprune_core.cost import CostModel, exact_cost
from cprune_core.criteria import make_criterion
from cprune_core.pruning import PruningGraph, keep_plan, prune_model
from cprune_core.registry import BACKBONES, load_backbone

RATIOS = [i / 20 for i in range(1, 21)]


def main() -> None:
    print(f"{'backbone':<20}{'slider move (ms, worst of 20)':>32}{'prune+exact count (s)':>24}{'equal at keep 0.35':>20}")
    for name in BACKBONES:
        backbone = load_backbone(name, "pretrained" if BACKBONES[name].offline else "random")
        graph = PruningGraph(backbone.model, backbone.spec)
        costs = CostModel(backbone.model, graph, backbone.spec.input_size)
        worst = 0.0
        for ratio in RATIOS:
            start = time.perf_counter()
            estimate = costs.estimate(keep_plan(graph, None, ratio))
            worst = max(worst, time.perf_counter() - start)
        checked_ratio = 0.35
        estimate = costs.estimate(keep_plan(graph, None, checked_ratio))
        start = time.perf_counter()
        pruned = prune_model(backbone.model, backbone.spec, make_criterion("l2"), checked_ratio).model
        exact = exact_cost(pruned, backbone.spec.input_size)
        elapsed = time.perf_counter() - start
        print(f"{name:<20}{worst * 1000:>32.2f}{elapsed:>24.2f}{str(exact == estimate):>20}")


if __name__ == "__main__":
    main()
