"""Fine-tuning speed: cached head epochs, the offline default end to end, and CUDA throughput.

Run: .venv/bin/python bench/bench_finetune.py [--skip-head] [--skip-default]
Targets (2-core CPU): one head-only epoch on cached features of ~3,000 images under 1 s; the
offline default (efficientnet_lite0 on flowers-sample, baseline then pruned) under 3 minutes.
With a CUDA GPU, the engine's training throughput is compared with a plain PyTorch loop on
the same data (target: at least 85% of it).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch
from torch import nn
from torch.utils.data import DataLoader

from cprune_core.data import build_transform, collate_skip_bad, load_dataset
from cprune_core.engine import Finetuner
from cprune_core.features import FeatureCache
from cprune_core.paths import SHARED_FLOWERS
from cprune_core.registry import get_spec, load_backbone, replace_classifier
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


def plain_loop_images_per_s(config: FinetuneConfig, epochs: int) -> float:
    """The same training (whole network, AMP, channels_last) written as a plain PyTorch loop."""
    spec = get_spec(config.backbone)
    splits = load_dataset(config.dataset, config.dataset_root, seed=config.seed, val_fraction=config.val_fraction,
                          test_fraction=config.test_fraction)
    size = config.image_size or spec.input_size
    loader = DataLoader(splits.train.with_transform(build_transform(size, spec.mean, spec.std, train=True)),
                        batch_size=config.batch_size, shuffle=True, num_workers=8, pin_memory=True,
                        collate_fn=collate_skip_bad)
    model = load_backbone(config.backbone).model
    replace_classifier(model, spec, len(splits.classes))
    model = model.cuda().to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    seen, timed = 0, 0.0
    for epoch in range(epochs):
        torch.cuda.synchronize()
        start = time.perf_counter()
        count = 0
        for images, labels in loader:
            images = images.cuda(non_blocking=True).contiguous(memory_format=torch.channels_last)
            labels = labels.cuda(non_blocking=True)
            with torch.autocast("cuda", dtype=dtype):
                loss = loss_fn(model(images).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            count += len(labels)
        torch.cuda.synchronize()
        if epoch > 0:  # the first epoch warms up cuDNN and the loader workers
            seen, timed = seen + count, timed + time.perf_counter() - start
    return seen / timed


def bench_cuda_throughput() -> None:
    print("== CUDA training throughput: engine vs plain PyTorch loop (whole network, images)")
    if not torch.cuda.is_available():
        print("   no CUDA GPU here")
        return
    root = str(SHARED_FLOWERS) if SHARED_FLOWERS.is_dir() else None
    # A tiny validation split keeps the engine's per-epoch validation out of the comparison.
    config = FinetuneConfig(dataset="folder" if root else "flowers-sample", dataset_root=root, mode="finetune",
                            train_scope="all", epochs=3, batch_size=64, val_fraction=0.02, device="cuda",
                            log_every=1000)
    job = Finetuner(config)
    epoch_seconds, last = [], None
    for event in job.events():
        if event.kind == "start":
            last = time.perf_counter()
        elif event.kind == "epoch":
            torch.cuda.synchronize()
            now = time.perf_counter()
            epoch_seconds.append(now - last)
            last = now
    if job.summary.status != "finished":
        print(f"   engine run {job.summary.status}: {job.summary.message}")
        return
    images = job.summary.n_images["train"]
    engine_rate = images * len(epoch_seconds[1:]) / sum(epoch_seconds[1:])  # epoch 1 warms up cuDNN and workers
    plain_rate = plain_loop_images_per_s(config, epochs=3)
    ratio = engine_rate / plain_rate
    print(f"   {torch.cuda.get_device_name()}: engine {engine_rate:.0f} img/s, plain loop {plain_rate:.0f} img/s, "
          f"ratio {ratio:.2f} -> {'OK' if ratio >= 0.85 else 'SLOW'} (target >= 0.85)")


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
    bench_cuda_throughput()


if __name__ == "__main__":
    main()
