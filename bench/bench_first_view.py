"""A 4,096-neuron layer's first view in the explorer, the core's part, step by step (issue 25: < 8 s in all).

VGG16 `classifier.0` (4,096 x 25,088) with random init, as the explorer computes it with nothing cached: the model
built (torchvision's import included: the app's start does not import it), its pruning graph traced, the blockwise
scan at the slider's tau steps (the rows read and checked, every pair compared, the weight-PCA layout), the force
layout at the suggested tau and the canvas payload. Then, side by side in the same process, the two choices this
path depends on against what they replaced: blocks of at most a sixteenth of the layer against the budget's tallest
blocks (which also multiply most of the triangle below their diagonal), and a force layout whose edges pull as a
sample of FORCE_EDGE_SAMPLE per step against every edge every step.

    .venv/bin/python -m bench.bench_first_view
"""
from __future__ import annotations

import os
import time

import numpy as np
import torch

from cprune_core import blockwise, graph
from cprune_core.criteria import RANKING_MAX_ITER
from cprune_core.graph_view import payload_from_edges
from cprune_core.layer_view import TAU_STEPS, graph_above, scan_layer, suggested_tau
from cprune_core.model_source import BackboneSource
from cprune_core.registry import load_backbone

LAYER = "classifier.0"


def timed(work):
    begun = time.perf_counter()
    value = work()
    return value, time.perf_counter() - begun


def main() -> None:
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; torch threads "
          f"{torch.get_num_threads()}")
    backbone, model_s = timed(lambda: load_backbone("vgg16", "random"))
    source, trace_s = timed(lambda: BackboneSource(backbone))
    scan, scan_s = timed(lambda: scan_layer(source, LAYER, taus=TAU_STEPS, layout=True))
    tau = suggested_tau(TAU_STEPS, scan.counts, scan.neurons)
    edges, above_s = timed(lambda: graph_above(scan, TAU_STEPS, source, LAYER, tau))
    positions, force_s = timed(lambda: graph.force_layout(edges))
    _, payload_s = timed(lambda: payload_from_edges(scan.strongest, positions, scan.norms, TAU_STEPS,
                                                    max_iter=RANKING_MAX_ITER, counts=scan.counts))
    total = model_s + trace_s + scan_s + above_s + force_s + payload_s
    print(f"VGG16 {LAYER}, random init, nothing cached: model {model_s:.2f} s, pruning graph {trace_s:.2f} s, scan "
          f"{scan_s:.2f} s, edges at the suggested tau {tau:g} ({len(edges.rows):,}) {above_s:.2f} s, force layout "
          f"{force_s:.2f} s, payload {payload_s:.2f} s: {total:.2f} s in the core")

    normalised = graph.normalise_rows(source.weight_vectors(LAYER))
    counts = blockwise.StrongestEdges(scan.neurons, TAU_STEPS, 500_000)
    _, short_s = timed(lambda: blockwise.scan_pairs(normalised, [counts]))
    tallest = blockwise.MIN_BLOCK_ROWS
    blockwise.MIN_BLOCK_ROWS = scan.neurons  # the budget's own height: 2,730 rows here
    counts_tall = blockwise.StrongestEdges(scan.neurons, TAU_STEPS, 500_000)
    _, tall_s = timed(lambda: blockwise.scan_pairs(normalised, [counts_tall]))
    blockwise.MIN_BLOCK_ROWS = tallest
    assert np.array_equal(counts.counts, counts_tall.counts)
    print(f"every pair compared: blocks of at most {max(tallest, -(-scan.neurons // 16)):,} rows {short_s:.2f} s, "
          f"the budget's {blockwise.GraphBudget().rows_per_block(scan.neurons):,} rows {tall_s:.2f} s "
          f"({tall_s / short_s:.2f}x); the same edge counts")

    sample = graph.FORCE_EDGE_SAMPLE
    graph.FORCE_EDGE_SAMPLE = len(edges.rows) + 1
    _, every_s = timed(lambda: graph.force_layout(edges))
    graph.FORCE_EDGE_SAMPLE = sample
    print(f"force layout, {len(edges.rows):,} edges: {sample:,} pulling per step {force_s:.2f} s, every edge "
          f"{every_s:.2f} s ({every_s / force_s:.2f}x)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
