"""Fixtures for the canvas's JavaScript tests (tests/js/*.test.mjs): payloads written by the core's
``build_payload`` and what the core computes of each graph, so that the browser's analysis is checked against
the core's in milliseconds.

Run by tests/test_graph_canvas.py, or alone (then run the node tests on what it wrote)::

    PYTHONPATH=$PWD .venv/bin/python tests/js/make_fixtures.py /tmp/canvas-fixtures
    CPRUNE_CANVAS_FIXTURES=/tmp/canvas-fixtures node --test tests/js/

Per layer ``NAME``: ``NAME.payload`` (the payload's bytes) and ``NAME.json``: n, and per tau step where the
payload holds every edge, the core's edges, components, largest component and isolated nodes
(``graph.summarize``); at a few of them (``centrality``) each node's degree, and the eigenvector centrality
with its step count and whether it converged (``centrality.eigenvector_centrality``). Also ``bundle.mjs``,
the canvas's modules joined as the app joins them (ui/graph_canvas.py).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from cprune_core.centrality import POWER_TOLERANCE, eigenvector_centrality
from cprune_core.criteria import RANKING_MAX_ITER
from cprune_core.graph import cosine_similarity, layout_2d, summarize, threshold_adjacency
from cprune_core.graph_view import build_payload
from cprune_core.layers import weight_vectors
from cprune_core.registry import Backbone, load_backbone
from ui.graph_canvas import ASSETS, MODULES, bundle

ENVIRONMENT = "CPRUNE_CANVAS_FIXTURES"  # the folder the node tests read
TAUS = [round(0.01 * k, 2) for k in range(100)]  # the app's tau steps (ui/cache.TAU_STEPS)
CENTRALITY_TAUS = (0.0, 0.1, 0.2, 0.4)


def core_centrality(adjacency: torch.Tensor, max_iter: int) -> tuple[torch.Tensor, bool, int]:
    """(scores, converged, steps) of the core's eigenvector centrality (the last iterate past ``max_iter``)."""
    result = eigenvector_centrality(adjacency, max_iter=max_iter, tol=POWER_TOLERANCE)
    return result.scores, result.converged, result.iterations


def layers(backbone: Backbone) -> dict[str, tuple[torch.Tensor, int]]:
    """The layers (weight vectors, the power iteration's step budget) the fixtures are made of."""
    generator = torch.Generator().manual_seed(0)
    sizes = (40, 25, 12, 6, 2, 1)  # several components: disjoint blocks of coordinates share no similarity
    blocks = torch.zeros(sum(sizes), 6 * len(sizes))
    start = 0
    for block, size in enumerate(sizes):
        centre = torch.randn(6, generator=generator)
        blocks[start:start + size, 6 * block:6 * block + 6] = centre + 0.9 * torch.randn(size, 6, generator=generator)
        start += size
    random = torch.randn(300, 40, generator=generator)
    return {
        "lite0_head": (weight_vectors(backbone.model.get_submodule("head.1"), "head.1"), RANKING_MAX_ITER),
        "random": (random, RANKING_MAX_ITER),
        "random_budget": (random, 6),  # stops at its budget before converging, at most taus
        "edgeless": (torch.eye(40), RANKING_MAX_ITER),  # orthogonal: no similarity above 0
        "components": (blocks, RANKING_MAX_ITER),
    }


def expected(similarity: torch.Tensor, counts: np.ndarray, held: int, max_iter: int) -> list[dict]:
    """The core's numbers at each tau step whose edges the payload holds (see the module's docstring)."""
    steps = []
    for step, tau in enumerate(TAUS):
        if counts[step] > held:
            continue
        adjacency = threshold_adjacency(similarity, tau)
        summary = summarize(adjacency)
        found = {"step": step, "tau": tau, "edges": summary.edges, "components": summary.components,
                 "largest": summary.largest_component, "isolated": summary.isolated}
        if tau in CENTRALITY_TAUS:
            scores, converged, iterations = core_centrality(adjacency, max_iter)
            found |= {"degree": (adjacency > 0).sum(1).tolist(), "centrality": scores.double().tolist(),
                      "converged": converged, "iterations": iterations}
        steps.append(found)
    return steps


def write_fixtures(folder: Path, backbone: Backbone | None = None) -> list[str]:
    """Write the fixtures into ``folder``; the names of the layers written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = layers(backbone or load_backbone("efficientnet_lite0"))
    for name, (vectors, max_iter) in written.items():
        similarity = cosine_similarity(vectors)
        payload = build_payload(similarity, layout_2d(vectors), vectors.norm(dim=1).numpy(), TAUS, max_iter=max_iter)
        (folder / f"{name}.payload").write_bytes(payload.encoded)
        steps = expected(similarity, payload.counts, len(payload.weights), max_iter)
        (folder / f"{name}.json").write_text(json.dumps({"n": similarity.shape[0], "steps": steps}))
    (folder / "bundle.mjs").write_text(bundle(ASSETS, MODULES))
    return list(written)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {sys.argv[0]} FOLDER  (then: {ENVIRONMENT}=FOLDER node --test tests/js/)")
    print("wrote", ", ".join(write_fixtures(Path(sys.argv[1]))))
