"""How fast the Prune page's redundancy and coverage follow its sliders, on EfficientNet-Lite0's head.1 (1,280 neurons).

Side by side, in one run, for the 7 criteria and random's 8 seeds (15 kept sets):
- the design the page uses: ``group_curves`` once per ranking (every kept-set size at once), after which a
  moved keep ratio only reads two arrays; moving tau recomputes the 4 graph criteria's curves only;
- the plain one: ``kept_set_geometry`` of the 15 kept sets at every keep ratio the slider reaches.
Then the Prune page itself (AppTest, in this process): the script run after the keep slider moves, and after
tau moves, median of several moves (the page's other work included: costs, histogram, overlaps, graph).

    .venv/bin/python -m bench.bench_kept_geometry [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from cprune_core import CRITERIA, keep_count, load_backbone
from cprune_core.ablation import scores_by_criterion
from cprune_core.geometry import group_curves, group_similarities, kept_set_geometry
from cprune_core.kept_sets import GEOMETRY_SEEDS
from cprune_core.pruning import PruningGraph, kept_indices

LAYER, TAU = "head.1", 0.1
KEEPS = np.round(np.arange(0.05, 0.951, 0.05), 2)


def seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def core(repeats: int) -> None:
    loaded = load_backbone("efficientnet_lite0")
    graph = PruningGraph(loaded.model, loaded.spec)
    group = graph.group_for(LAYER)
    [similarity] = group_similarities(loaded.model, group)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scores = scores_by_criterion(graph, group, list(CRITERIA), tau=TAU, seeds=GEOMETRY_SEEDS)
    rankings = [torch.from_numpy(row) for rows in scores.values() for row in rows]
    graph_rankings = [torch.from_numpy(scores[name][0]) for name in CRITERIA if CRITERIA[name].uses_graph]
    n = group.channels

    def curves_all() -> list:
        return [group_curves([similarity], ranking) for ranking in rankings]

    def per_keep(keep: float) -> None:
        for ranking in rankings:
            mask = torch.zeros(n, dtype=torch.bool)
            mask[kept_indices(ranking, keep_count(n, keep))] = True
            kept_set_geometry(similarity, mask)

    curves = curves_all()
    count = keep_count(n, 0.5)
    read = [statistics.median(seconds(lambda: [(c.redundancy[count], c.coverage[count]) for c in curves])
                              for _ in range(repeats))]
    first = [seconds(curves_all) for _ in range(repeats)]
    on_tau = [seconds(lambda: [group_curves([similarity], r) for r in graph_rankings]) for _ in range(repeats)]
    plain = [seconds(lambda keep=keep: per_keep(keep)) for keep in KEEPS[::3] for _ in range(max(1, repeats // 2))]
    print(f"{LAYER}: {n:,} neurons, {len(rankings)} kept sets (7 criteria, random's {GEOMETRY_SEEDS} seeds); "
          f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}")
    print(f"  group_curves of all {len(rankings)} rankings (a layer's first view): median {1e3 * statistics.median(first):.0f} ms")
    print(f"  group_curves of the {len(graph_rankings)} graph criteria (tau moved): median "
          f"{1e3 * statistics.median(on_tau):.0f} ms")
    print(f"  keep ratio moved, curves read: {1e6 * read[0]:.0f} µs")
    print(f"  plain: kept_set_geometry of the {len(rankings)} kept sets at one keep ratio: median "
          f"{1e3 * statistics.median(plain):.0f} ms (max {1e3 * max(plain):.0f} ms), at every move")


def page(repeats: int) -> None:
    from streamlit.testing.v1 import AppTest

    os.environ["CPRUNE_HOME"] = tempfile.mkdtemp()
    app = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=600)
    app.query_params.update(layer=LAYER)
    app.run()
    app.switch_page("pages/prune.py").run()
    assert not app.exception, app.exception
    moves = {"keep": [], "tau": []}
    for index in range(repeats):
        keep = float(KEEPS[(4 + index) % len(KEEPS)])
        moves["keep"].append(seconds(lambda keep=keep: app.slider(key="widget_keep").set_value(keep).run()))
        tau = round(0.12 + 0.01 * index, 2)
        moves["tau"].append(seconds(lambda tau=tau: app.slider(key="widget_tau").set_value(tau).run()))
        assert not app.exception, app.exception
    for name, times in moves.items():
        print(f"  Prune page, {name} slider moved: script run median {1e3 * statistics.median(times):.0f} ms "
              f"(max {1e3 * max(times):.0f} ms, {repeats} moves)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    core(args.repeats)
    page(args.repeats)


if __name__ == "__main__":
    main()
