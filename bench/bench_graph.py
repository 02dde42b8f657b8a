"""Speed of similarity + adjacency + eigenvector centrality on VGG16 classifier.0.

4,096 neurons x 25,088 inputs, side by side with networkx.eigenvector_centrality_numpy on the
same adjacency, in one run. Pretrained VGG16 weights are used when torchvision can load them;
offline the layer is randomly initialised (same shape, same work) and tau is lowered so the
graph still has edges (random 25,088-d vectors have cosine similarities of about +-0.006).

    .venv/bin/python bench/bench_graph.py [--tau 0.01]
"""
from __future__ import annotations

import argparse
import time

import networkx as nx
import numpy as np
import torch

from cprune_core.centrality import eigenvector_centrality
from cprune_core.errors import WeightsUnavailableError
from cprune_core.graph import cosine_similarity, summarize, threshold_adjacency, to_networkx
from cprune_core.layers import weight_vectors
from cprune_core.registry import load_backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tau", type=float, default=None, help="default: 0.1 pretrained, 0.01 random init")
    parser.add_argument("--top-k", type=int, default=2048)
    args = parser.parse_args()
    try:
        backbone = load_backbone("vgg16")
    except WeightsUnavailableError:
        backbone = load_backbone("vgg16", "random")
    tau = args.tau if args.tau is not None else (0.1 if backbone.pretrained else 0.01)
    layer = backbone.model.get_submodule("classifier.0")
    print(f"VGG16 classifier.0 {tuple(layer.weight.shape)}, weights: {backbone.weights_status}, tau={tau}, "
          f"torch threads: {torch.get_num_threads()}")

    start = time.perf_counter()
    vectors = weight_vectors(layer, "classifier.0")
    similarity = cosine_similarity(vectors)
    t_similarity = time.perf_counter() - start
    adjacency = threshold_adjacency(similarity, tau, inplace=True)  # one 64 MiB matrix, no copy
    t_adjacency = time.perf_counter() - start - t_similarity
    start_centrality = time.perf_counter()
    ours = eigenvector_centrality(adjacency).scores
    t_centrality = time.perf_counter() - start_centrality
    t_total = time.perf_counter() - start
    summary = summarize(adjacency)
    print(f"graph: {summary.edges:,} edges, density {summary.density:.4f}, {summary.components} components, "
          f"{summary.isolated} isolated; matrix {adjacency.numel() * adjacency.element_size() / 2**20:.0f} MiB")

    graph = to_networkx(adjacency)
    start = time.perf_counter()
    reference = nx.eigenvector_centrality_numpy(graph, weight="weight")
    t_networkx = time.perf_counter() - start
    reference = np.array([reference[i] for i in range(len(reference))])
    same_top = set(np.argsort(-ours.numpy())[: args.top_k]) == set(np.argsort(-reference)[: args.top_k])

    print(f"similarity {t_similarity:.2f} s + adjacency {t_adjacency:.2f} s + centrality {t_centrality:.3f} s "
          f"= {t_total:.2f} s (target <= 10 s)")
    print(f"networkx.eigenvector_centrality_numpy on the same adjacency: {t_networkx:.2f} s")
    print(f"centrality speed-up vs networkx: {t_networkx / t_centrality:.0f}x (target >= 20x); "
          f"whole pipeline vs networkx centrality alone: {t_networkx / t_total:.2f}x; same top-{args.top_k} set: {same_top}")


if __name__ == "__main__":
    main()
