"""Fine-tuning speed on the CPU: cached head epochs and the offline default end to end.

Run: .venv/bin/python bench/bench_finetune.py [--skip-head] [--skip-default]
Targets (2-core CPU): one head-only epoch on cached features of ~3,000 images under 1 s; the
offline default (efficientnet_lite0 on flowers-sample, baseline then pruned) under 3 minutes.
The GPU figures (the engine's throughput against a plain PyTorch loop among them) come from
bench/gpu_check.py.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from cprune_core.engine import Finetuner
from cprune_core.features import FeatureCache
from cprune_core.paths import SHARED_FLOWERS
from cprune_core.schema import FinetuneConfig, RunSummary


def run_collecting(config: FinetuneConfig, cache: FeatureCache) -> tuple[RunSummary, list]:
    job = Finetuner(config, cache)
    epoch_times, last = [], None
    for event in job.events():
        if event.kind == "start":
            last = time.perf_counter()
        elif event.kind == "epoch":
            now = time.perf_counter()
            epoch_times.append(now - last)
            last = now
    return job.summary, epoch_times


def bench_cached_head_epochs() -> None:
    """Epoch time of head-only (baseline) and suffix (pruned) training on cached features."""
    print(f"== Cached-feature epochs: flowers128 ({SHARED_FLOWERS}), about 3,000 training images")
    if not SHARED_FLOWERS.is_dir():
        print("   flowers128 not found: skipped")
        return
    # Image size 96 keeps the one-off feature pass short; epoch time depends only on the feature size.
    config = FinetuneConfig(dataset="folder", dataset_root=str(SHARED_FLOWERS), image_size=96, epochs=3,
                            val_fraction=0.09, test_fraction=0.09, device="cpu", log_every=1000)
    cache = FeatureCache()
    started = time.perf_counter()
    final, epochs = run_collecting(replace(config, mode="baseline"), cache)
    print(f"   baseline: {final.n_images['train']} train images, first run {time.perf_counter() - started:.1f} s "
          f"(feature pass included), test acc {final.test_acc:.3f}")
    print(f"   head-only epoch (batch 32, validation included): {', '.join(f'{t:.3f}' for t in epochs)} s "
          f"-> {'OK' if max(epochs) < 1.0 else 'SLOW'} (target < 1 s)")
    started = time.perf_counter()
    final, epochs = run_collecting(replace(config, mode="pruned"), cache)
    print(f"   pruned (head.1 keep 0.5, suffix trained on cached 320x3x3 features): "
          f"run {time.perf_counter() - started:.1f} s, epochs {', '.join(f'{t:.3f}' for t in epochs)} s, test acc {final.test_acc:.3f}")


def bench_offline_default() -> None:
    """The app's offline default, baseline then pruned, from a cold feature cache."""
    print("== Offline default end to end: efficientnet_lite0, flowers-sample, 224 px, 5 epochs, CPU")
    cache = FeatureCache()
    total_start = time.perf_counter()
    for mode in ("baseline", "pruned"):
        started = time.perf_counter()
        final, _ = run_collecting(FinetuneConfig(mode=mode, device="cpu"), cache)
        print(f"   {mode:8s}: {time.perf_counter() - started:5.1f} s, test acc {final.test_acc:.3f}, "
              f"val acc {final.val_acc:.3f}, params {final.params:,}, MACs {final.macs:,}, "
              f"latency {final.latency_ms:.1f} ms")
    total = time.perf_counter() - total_start
    print(f"   both: {total:.1f} s -> {'OK' if total < 180 else 'SLOW'} (target < 180 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-head", action="store_true", help="Skip the cached-feature epoch benchmark.")
    parser.add_argument("--skip-default", action="store_true", help="Skip the offline default end-to-end run.")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if not args.skip_head:
        bench_cached_head_epochs()
    if not args.skip_default:
        bench_offline_default()


if __name__ == "__main__":
    main()
