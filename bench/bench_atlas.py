"""Cost of `experiment atlas` on this machine: the quick atlas and the whole one, each the real command in a
fresh process with empty caches (a fresh CPRUNE_HOME: no features on disk, no recorded layers), timed from
start to exit, with the load average before and after (other people's jobs share the machine).

Targets: the whole atlas of EfficientNet-Lite0 on ../shared/data/flowers128 at 128 px under 45 minutes with
the defaults; `--quick` (flowers-sample, 4 layers) under 3 minutes. Per layer, the seconds each task took
(from the command's JSON). Then, side by side on the same images, the work the atlas shares: the block inputs
carried once through the network (BlockInputs) against a fresh prefix pass for every layer.

    .venv/bin/python -m bench.bench_atlas [--only quick|full|sharing] [--out DIR] [--ray]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from cprune_core.atlas import AtlasSettings, BlockInputs, plan_layers, validation_subset
from cprune_core.data import load_dataset
from cprune_core.paths import SHARED_FLOWERS
from cprune_core.registry import get_spec, load_backbone

ROOT = Path(__file__).resolve().parents[1]

TARGETS = {"quick": 3 * 60, "full": 45 * 60}


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_command(name: str, arguments: list[str]) -> dict:
    """The command in a fresh process with a fresh CPRUNE_HOME: wall seconds and its JSON."""
    with tempfile.TemporaryDirectory() as home:
        environment = {**os.environ, "CPRUNE_HOME": home}
        command = [sys.executable, "-m", "cprune_core", "experiment", "atlas", *arguments, "--json"]
        progress = Path(tempfile.gettempdir()) / f"bench_atlas_{name}.log"
        print(f"{name}: {' '.join(command[1:])}  (load average before: {load()}; progress in {progress})", flush=True)
        started, cpu_before = time.perf_counter(), _children_cpu_s()
        with progress.open("w") as log:
            finished = subprocess.run(command, env=environment, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)
        seconds, cpu = time.perf_counter() - started, _children_cpu_s() - cpu_before
    if finished.returncode != 0:
        print(progress.read_text()[-3000:])
        raise SystemExit(f"{name}: exit code {finished.returncode}")
    report = json.loads(finished.stdout)
    layers = report["layers"]
    measured = sum(layer["seconds"] for layer in layers)
    cpu_note = ("" if "ray" in arguments else f"; the command's CPU time {cpu / 60:.1f} min (user + system), "
                f"{cpu / seconds:.2f} of the machine's cores on average")  # Ray's workers are not its children
    print(f"{name}: {seconds / 60:.1f} min wall (load average after: {load()}) -> "
          f"{'OK' if seconds < TARGETS[name] else 'SLOW'} (target < {TARGETS[name] / 60:.0f} min){cpu_note}")
    if "ray" in arguments:  # several tasks at once: their times overlap
        print(f"   layers measured: {measured / 60:.1f} min of task time in {len(layers)} tasks, several at once")
    else:
        print(f"   layers measured: {measured / 60:.1f} min in {len(layers)} tasks; the rest (head training with its "
              f"frozen features, block inputs, scores, report): {(seconds - measured) / 60:.1f} min")
    for layer in layers:
        print(f"   {layer['depth']:>3} {layer['layer']:<22} {layer['result']['n_neurons']:>5} neurons, "
              f"{len(layer['result']['neurons']):>4} measured on {layer['result']['n_images']} images: "
              f"{layer['seconds']:6.1f} s")
    print(f"   finding: {report['sentences'][0]}")
    return report


def sharing(val_images: int) -> None:
    """Block inputs for every layer of the atlas: carried once through the chain, against a fresh prefix pass
    from the images for each layer (what each ForwardAblator would otherwise compute)."""
    spec = get_spec("efficientnet_lite0")
    model = load_backbone("efficientnet_lite0").model.eval()
    root = SHARED_FLOWERS if SHARED_FLOWERS.is_dir() else None
    dataset = load_dataset("tf-flowers" if root else "flowers-sample", root).val
    images = validation_subset(dataset, val_images, 0)
    cuts = [planned.cut for planned in plan_layers(model, spec, AtlasSettings()) if planned.cut is not None]
    device = torch.device("cpu")
    started = time.perf_counter()
    blocks = BlockInputs(model, spec, images, 128, device)
    for cut in cuts:
        blocks.at(cut)
    shared = time.perf_counter() - started
    started = time.perf_counter()
    for cut in dict.fromkeys(cuts):  # each distinct cut once (as the feature cache would): from the images each time
        BlockInputs(model, spec, images, 128, device).at(cut)
    fresh = time.perf_counter() - started
    print(f"sharing: block inputs of {len(cuts)} layers ({len(set(cuts))} distinct cuts) on {len(images)} images at "
          f"128 px: carried once {shared:.1f} s, a fresh prefix per cut {fresh:.1f} s ({fresh / shared:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("quick", "full", "sharing"))
    parser.add_argument("--out", help="Folder for the whole atlas's report (default: a temporary folder).")
    parser.add_argument("--ray", action="store_true",
                        help="Run the commands with --executor ray --cpus-per-task 1 (a local Ray: one layer per core, "
                             "each on one thread) instead of in the command's process on every core.")
    args = parser.parse_args()
    executor = ["--executor", "ray", "--cpus-per-task", "1"] if args.ray else []
    print(f"bench_atlas: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.only in (None, "sharing"):
        sharing(128)
    if args.only in (None, "quick"):
        with tempfile.TemporaryDirectory() as out:
            timed_command("quick", ["--quick", "--out", out, *executor])
    if args.only in (None, "full"):
        if not SHARED_FLOWERS.is_dir():
            print(f"full: flowers128 not found at {SHARED_FLOWERS}: skipped")
            return
        with tempfile.TemporaryDirectory() as out:
            timed_command("full", ["--out", args.out or out, *executor])


if __name__ == "__main__":
    main()
