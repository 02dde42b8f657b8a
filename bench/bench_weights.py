"""Speed of weights files: listing the layers of a 500 MB safetensors file, and a 3,072-neuron layer's graph.

Writes a transformer-like safetensors file of about 500 MB (blocks of 2,304 x 768, 768 x 768, 3,072 x 768
and 768 x 3,072 float32 weights, random values) in a temporary folder, deleted at the end, then times, one
after the other in one run:

1. listing its layers from the header alone: ``open_weights_file`` (target < 1 s), and ``FileSource.open``,
   which also tells which registry backbone the file fits; beside them, the safetensors package listing
   names and shapes, and reading every tensor (what a reader without the header would do);
2. one 3,072-neuron layer (3,072 x 768) read from the file, then what the explorer computes when it is
   chosen: similarity, adjacency, eigenvector centrality, summary, the suggested tau (about ten edges per
   neuron), both layouts (force-directed at that tau, weight PCA) and the canvas's payload (every edge above
   the slider's lowest tau, strongest first, and each tau step's count). The browser's side of "drawn < 3 s
   after it is chosen" is measured by bench_app.py.

    .venv/bin/python bench/bench_weights.py [--megabytes 500]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from cprune_core.criteria import RANKING_MAX_ITER, make_criterion
from cprune_core.graph import (cosine_similarity, force_layout, layout_2d, summarize, tau_for_mean_degree,
                               threshold_adjacency)
from cprune_core.graph_view import build_payload
from cprune_core.model_source import FileSource
from cprune_core.weights import open_weights_file

BLOCK = {"attn.qkv": (2304, 768), "attn.proj": (768, 768), "mlp.fc": (3072, 768), "mlp.proj": (768, 3072)}
BLOCK_BYTES = sum(rows * cols * 4 for rows, cols in BLOCK.values())


def write_file(path: Path, megabytes: int) -> int:
    """A safetensors file of about ``megabytes`` MB of float32 blocks; returns the number of blocks."""
    generator = torch.Generator().manual_seed(0)
    blocks = max(1, round(megabytes * 1e6 / BLOCK_BYTES))
    state = {}
    for block in range(blocks):
        for name, shape in BLOCK.items():
            state[f"h.{block}.{name}.weight"] = torch.randn(*shape, generator=generator) * 0.02
            state[f"h.{block}.{name}.bias"] = torch.zeros(shape[0])
        state[f"h.{block}.ln.weight"] = torch.ones(768)
    save_file(state, str(path))
    return blocks


def timed(work):
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


def list_layers(path: Path) -> None:
    weights, t_open = timed(lambda: open_weights_file(path))
    source, t_source = timed(lambda: FileSource.open(path))
    _, t_source_again = timed(lambda: FileSource.open(path))

    def package_listing():
        with safe_open(str(path), "pt") as file:
            return {name: file.get_slice(name).get_shape() for name in file.keys()}  # noqa: SIM118 (no __iter__)

    _, t_package = timed(package_listing)
    # load_file maps the file; cloning reads every value into memory (here from the page cache: just written).
    _, t_read_all = timed(lambda: {name: tensor.clone() for name, tensor in load_file(str(path)).items()})
    print(f"list layers, open_weights_file (header only): {t_open:.3f} s, {len(weights.layers)} layers "
          f"(target < 1 s)")
    print(f"list layers + which backbone it fits, FileSource.open: {t_source:.3f} s first "
          f"(builds, on the meta device, the backbones whose classifier the file names), {t_source_again:.3f} s "
          f"after; fits: {source.fits or 'none'}")
    print(f"for comparison, the safetensors package listing names and shapes: {t_package:.3f} s; reading every "
          f"value into memory (load_file + clone, from the page cache): {t_read_all:.2f} s")


def layer_graph(path: Path) -> None:
    source = FileSource.open(path)
    vectors, t_read = timed(lambda: source.weight_vectors("h.0.mlp.fc"))
    similarity, t_similarity = timed(lambda: cosine_similarity(vectors))
    tau, t_tau = timed(lambda: tau_for_mean_degree(similarity, 10))
    adjacency, t_adjacency = timed(lambda: threshold_adjacency(similarity, tau))
    _, t_centrality = timed(lambda: make_criterion("eigenvector").from_adjacency(adjacency))
    summary, t_summary = timed(lambda: summarize(adjacency))
    force, t_force = timed(lambda: force_layout(adjacency))
    _, t_pca = timed(lambda: layout_2d(vectors))
    taus = [round(0.01 * step, 2) for step in range(100)]  # the explorer's slider: 0.00 to 0.99
    payload, t_payload = timed(lambda: build_payload(similarity, force, vectors.norm(dim=1).numpy(), taus,
                                                     max_iter=RANKING_MAX_ITER))
    total = (t_read + t_similarity + t_tau + t_adjacency + t_centrality + t_summary + t_force + t_pca
             + t_payload)
    print(f"layer h.0.mlp.fc {tuple(vectors.shape)} at the suggested tau {tau:g}: {summary.edges:,} edges, "
          f"{summary.components} components")
    print(f"  read {t_read:.3f} s, similarity {t_similarity:.3f} s, suggested tau {t_tau:.3f} s, adjacency "
          f"{t_adjacency:.3f} s, eigenvector centrality {t_centrality:.3f} s, summary {t_summary:.3f} s, "
          f"force layout {t_force:.3f} s, PCA layout {t_pca:.3f} s, the canvas's payload {t_payload:.3f} s "
          f"({len(payload.weights):,} edges, {len(payload.encoded) / 1e6:.1f} MB)")
    print(f"  total {total:.2f} s, of which the force layout {t_force:.2f} s (the app's target, measured in a "
          "browser by bench_app.py: drawn < 3 s after it is chosen)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=500, help="size of the file to write")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory(prefix="bench-weights-") as folder:
        path = Path(folder) / "stack.safetensors"
        blocks, t_write = timed(lambda: write_file(path, args.megabytes))
        print(f"wrote {path.name}: {path.stat().st_size / 1e6:.0f} MB, {blocks} blocks, in {t_write:.1f} s")
        list_layers(path)
        layer_graph(path)
    print(f"deleted {folder}")


if __name__ == "__main__":
    main()
