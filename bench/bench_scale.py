"""Large layers to their graph and scores: the blockwise path (``cprune graph --layer``'s) against the dense one.

Writes synthetic layers as bf16 safetensors files in a temporary folder (deleted at the end): n neurons x d inputs
with planted structure, so that edges exist at a useful tau: each neuron is a ``strength`` times its cluster's
centre plus Gaussian noise, clusters of about ``--cluster`` neurons, each cluster's strength its own (so its
within-cluster cosine similarity, strength^2 / (strength^2 + 1), lies between about 0.15 and 0.45); neurons of
different clusters are about +-1/sqrt(d) alike. Then, each case in a fresh process (peak resident memory from
``resource.getrusage``, minus the process's memory before the work; wall time of the work alone):

- ``blockwise``: what ``cprune graph --weights FILE --layer L --tau T`` computes (``layer_report``: the layer read a
  block of rows at a time, its graph in the default budget, every criterion's score, the weight-PCA layout);
- ``dense``: today's path before the blockwise one: the whole layer read, its n x n cosine similarity,
  ``threshold_adjacency``, every criterion on the dense adjacency (FPGM by ``torch.cdist`` of the whole layer),
  the summary and the layout (only where its n x n float32 matrices fit: ``--dense-max``);
- ``payload``: what the app computes for a large layer's canvas (``scan_layer`` with the slider's tau steps: the
  2,000,000 strongest edges above 0 and each step's exact count, the layout, ``payload_from_edges``).

The machine is shared: run niced, on one torch thread (OMP_NUM_THREADS=1) unless ``--threads``; the load average
is printed before and after.

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python bench/bench_scale.py [--cases 11008x4096,14336x4096] [--tau 0.2]
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

PROBE = r'''
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(int(sys.argv[4]))
from cprune_core.criteria import CRITERIA, RANKING_MAX_ITER
from cprune_core.model_source import FileSource

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

path, case, tau = sys.argv[1], sys.argv[2], float(sys.argv[3])
source = FileSource.open(path)
layer = source.layers[0].name
before = peak_mb()
started = time.perf_counter()
if case == "blockwise":
    from cprune_core.layer_report import layer_report
    report = layer_report(source, layer, tau)
    result = {"edges": report.summary.edges, "components": report.summary.components,
              "notes": list(report.notes)}
elif case == "dense":
    from cprune_core.graph import adjacency_of, layout_2d, summarize
    from cprune_core.layer_view import layer_scores
    vectors = source.weight_vectors(layer)
    adjacency = adjacency_of(vectors, tau)
    scores, notes = layer_scores(vectors, list(CRITERIA), tau, adjacency)
    summary, positions = summarize(adjacency), layout_2d(vectors)
    result = {"edges": summary.edges, "components": summary.components, "notes": list(notes)}
else:
    from cprune_core.graph_view import payload_from_edges
    from cprune_core.layer_view import scan_layer
    taus = [round(0.01 * k, 2) for k in range(100)]
    scan = scan_layer(source, layer, taus=taus, layout=True)
    payload = payload_from_edges(scan.strongest, scan.positions, scan.norms, taus, max_iter=RANKING_MAX_ITER,
                                 counts=scan.counts)
    result = {"edges_sent": len(payload.weights), "edges_above_0": int(scan.counts[0]),
              "edges_above_tau": int(scan.counts[round(tau * 100)]), "megabytes": len(payload.encoded) / 1e6}
result.update(seconds=time.perf_counter() - started, peak_mb=peak_mb(), before_mb=before)
print(json.dumps(result))
'''


def write_layer(path: Path, neurons: int, length: int, cluster: int, seed: int = 0) -> None:
    """One bf16 tensor "layer.weight" (neurons x length) with planted clusters, written a block of rows at a time."""
    generator = torch.Generator().manual_seed(seed)
    clusters = max(1, neurons // cluster)
    centres = torch.randn(clusters, length, generator=generator)
    strengths = 0.42 + 0.5 * torch.rand(clusters, generator=generator)  # within-cluster cosine about 0.15 to 0.45
    labels = torch.randint(clusters, (neurons,), generator=generator)
    header = json.dumps({"layer.weight": {"dtype": "BF16", "shape": [neurons, length],
                                          "data_offsets": [0, 2 * neurons * length]}}).encode()
    with path.open("wb") as file:
        file.write(struct.pack("<Q", len(header)) + header)
        for start in range(0, neurons, 2048):
            rows = labels[start:start + 2048]
            block = strengths[rows, None] * centres[rows] + torch.randn(len(rows), length, generator=generator)
            file.write(block.to(torch.bfloat16).view(torch.uint8).numpy().tobytes())


def probe(path: Path, case: str, tau: float, threads: int) -> dict:
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE, str(path), case, str(tau), str(threads)], capture_output=True,
                          text=True, env=environment)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="11008x4096,14336x4096", help="NEURONSxINPUTS, comma-separated")
    parser.add_argument("--tau", type=float, default=0.2)
    parser.add_argument("--cluster", type=int, default=200, help="neurons per planted cluster")
    parser.add_argument("--dense-max", type=int, default=14_336, help="the largest layer the dense path is run on")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=("blockwise", "dense", "payload"), nargs="+",
                        default=["blockwise", "dense", "payload"])
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} cores; torch threads per case: {args.threads}")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        for case in args.cases.split(","):
            neurons, length = map(int, case.split("x"))
            path = Path(folder) / f"layer-{case}.safetensors"
            started = time.perf_counter()
            write_layer(path, neurons, length, args.cluster)
            print(f"{neurons:,} x {length:,} bf16 ({path.stat().st_size / 1e6:.0f} MB, written in "
                  f"{time.perf_counter() - started:.0f} s), tau {args.tau}:")
            for kind in args.only:
                if kind == "dense" and neurons > args.dense_max:
                    print(f"  dense: not run (its n x n matrices: {3 * 4 * neurons ** 2 / 2**30:.1f} GiB)")
                    continue
                found = probe(path, kind, args.tau, args.threads)
                if "error" in found:
                    print(f"  {kind}: {found['error']}")
                    continue
                seconds, peak, before = found.pop("seconds"), found.pop("peak_mb"), found.pop("before_mb")
                print(f"  {kind}: {seconds:.1f} s, peak resident {peak:,.0f} MB ({peak - before:,.0f} MB above the "
                      f"process before the work), {json.dumps(found)}")
            path.unlink()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
