"""A whole model's layer-wise table: `cprune graph --weights FOLDER --layer all` on a 1B-shaped sharded
checkpoint, in one process, on a local Ray and on a simulated two-node Ray cluster, side by side in one run.

The checkpoint is bench_weights_scale's (a Llama-shaped model in the Hugging Face layout, bf16, seeded random
values; by default 16 blocks, hidden 2,048, MLP 8,192, vocabulary 32,000: 114 matrices, about 2.4 GB), written
to a temporary folder deleted at the end. Each mode is the real command in a fresh process, timed from start to
exit, with a fresh CPRUNE_HOME (so nothing is resumed from the graph cache):

- ``local``: the layers one after another in the command's process, on every core (torch's threads);
- ``ray``: ``--executor ray --cpus-per-layer 1``: the command starts a local Ray of every core, one layer per CPU;
- ``cluster``: ``ray.cluster_utils.Cluster``, a head and a worker node of one CPU each in this process, and the
  command joins it (``--ray-address``), one layer per CPU.

Each mode's table is checked against the local one (the same layers, the same edge counts). The load average is
printed before and after: the figures are only as quiet as the machine.

    .venv/bin/python -m bench.bench_layerwise [--blocks 16] [--modes local,ray,cluster] [--tau 0.2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.bench_weights_scale import add_shape_arguments, write_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def table(folder: Path, tau: float, work: Path, flags: list[str]) -> tuple[float, pd.DataFrame]:
    """Seconds from the command's start to its exit, and the table it wrote."""
    out, home = work / "out", work / "home"
    shutil.rmtree(work, ignore_errors=True)
    out.mkdir(parents=True)
    environment = {**os.environ, "CPRUNE_HOME": str(home), "RAY_worker_niceness": "0"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cprune_core", "graph", "--weights", str(folder), "--layer", "all",
                           "--tau", str(tau), "--out", str(out), *flags], cwd=ROOT, env=environment,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(flags) or 'local'} failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return seconds, pd.read_csv(out / "layerwise.csv")


def both_alive(address: str, timeout_s: float = 60) -> None:
    """Wait until the simulated cluster's two nodes are alive (its own wait needs a connected driver)."""
    import ray

    ray.init(address=address, logging_level="ERROR")
    try:
        deadline = time.monotonic() + timeout_s
        while sum(node["Alive"] for node in ray.nodes()) < 2:
            if time.monotonic() > deadline:
                raise SystemExit(f"the simulated cluster's second node did not join within {timeout_s:.0f} s")
            time.sleep(0.1)
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shape_arguments(parser)
    parser.add_argument("--tau", type=float, default=0.2)
    parser.add_argument("--modes", default="local,ray,cluster")
    args = parser.parse_args()
    modes = args.modes.split(",")
    scratch = Path(tempfile.mkdtemp(prefix="cprune-layerwise-"))
    try:
        folder = scratch / "model"
        folder.mkdir()
        started = time.perf_counter()
        total = write_checkpoint(folder, args.blocks, args.hidden, args.mlp, args.vocab, shards=4)
        print(f"wrote {total / 1e9:.2f} GB ({args.blocks} blocks, hidden {args.hidden}, MLP {args.mlp}, vocabulary "
              f"{args.vocab}) in {time.perf_counter() - started:.0f} s; {os.cpu_count()} cores")
        print(f"load average before: {os.getloadavg()}")
        results: dict[str, tuple[float, pd.DataFrame]] = {}
        for mode in modes:
            if mode == "local":
                results[mode] = table(folder, args.tau, scratch / mode, [])
            elif mode == "ray":
                results[mode] = table(folder, args.tau, scratch / mode, ["--executor", "ray", "--cpus-per-layer", "1"])
            elif mode == "cluster":
                from ray.cluster_utils import Cluster

                cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
                cluster.add_node(num_cpus=1, wait=False)
                try:
                    both_alive(cluster.address)
                    results[mode] = table(folder, args.tau, scratch / mode, [
                        "--executor", "ray", "--ray-address", cluster.address, "--cpus-per-layer", "1"])
                finally:
                    cluster.shutdown()
            else:
                raise SystemExit(f"unknown mode {mode!r}: local, ray or cluster")
            seconds, rows = results[mode]
            print(f"{mode}: {len(rows)} layers in {seconds:.1f} s ({seconds / len(rows):.2f} s per layer)")
        print(f"load average after: {os.getloadavg()}")
        reference = results[modes[0]][1]
        for mode, (_, rows) in results.items():
            same = (list(rows["layer"]) == list(reference["layer"])
                    and list(rows["edges"]) == list(reference["edges"]))
            print(f"{mode}: the same layers and edge counts as {modes[0]}: {same}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
