"""Prove the GPU path: the app's CUDA claims checked in one run of a few minutes.

    python bench/gpu_check.py [--flowers DIR]              # the real check, on a CUDA GPU
    python bench/gpu_check.py --device cpu --tiny          # the same code at tiny sizes (tests/test_gpu_check.py)

It prints the device, then one line per figure ("check N ...: figure (target) OK|FAIL"), and
exits 1 when any check fails (a check that raises fails with its traceback; the others still run).

1. Graph pipeline of VGG16 classifier.0 (4,096 x 25,088, random init, tau 0.01) on the device,
   timed warm: similarity + adjacency + eigenvector centrality, and the centrality alone
   (target < 50 ms); the neurons pruning would keep at 0.5 (top half of the scores) must be the
   same set as the CPU pipeline's.
2. Whole-network training throughput of the engine (``train_epochs`` over ``TensorBatches`` of
   synthetic 224 px images) against a plain PyTorch loop with the same model, batches, AMP dtype
   and AdamW, resnet50 (random init) and efficientnet_lite0, warm-up steps excluded, clocks read
   after synchronising: the engine at least 85% of the plain loop. The images live on the device,
   so host-to-device copies are in neither figure.
3. A real run: efficientnet_lite0 pruned, train scope all, AMP, flowers128 at 128 px, 2 epochs:
   it finishes with a finite loss and a test accuracy; a second run, whose stop event is set by
   the on_event callback at the first step, ends "stopped" after exactly 1 step.
4. ResNet50 (random init) pruned at keep 0.5 on every prunable layer: MACs ratio, and latency
   (``measure_latency_ms``: fp32, batch 1 and 64) of the full and the pruned network.
5. Out of memory: the smallest batch whose saved activations alone exceed the memory available
   (measured per image with autograd's saved-tensor hooks; on CUDA the device's total memory)
   ends the run "failed" with the engine's one-line "Out of ... memory at batch size N" message,
   no traceback; the next run in the same process finishes.

``--tiny`` shrinks every check so the whole script takes well under a minute on two CPU cores:
a 256 x 25,088 random Linear layer for check 1, 32 px images (128 px for check 5), batch 4, a
few steps, the embedded flowers-sample with 4 training images per class, latency at batch 1
and 4.

On the CPU:
- targets that only mean something on a GPU (centrality < 50 ms, engine >= 85% of the plain
  loop) are printed with "target ... applies on CUDA" and do not fail the run;
- check 1 has no second device to compare with, and says so;
- check 5 (Linux only: glibc, /proc) limits the process's address space (RLIMIT_AS) to its current size plus 256 MiB
  during the failing run, the memory available being that headroom plus what malloc holds free:
  the allocator really fails, and nothing else on the machine can lose memory to it. (Linux
  refuses one allocation larger than RAM + swap at once, but no training step makes such an
  allocation while its inputs are small enough to load.) oneDNN and NNPACK are off for that run:
  a convolution library that cannot allocate fails in its own words (oneDNN: "could not create a
  primitive", which cannot be told from its other errors; NNPACK: "posix_memalign failed"), and
  the engine recognises only PyTorch's own allocator's failure on the CPU.
Everything else fails on any device: different kept sets, a run that does not finish, a
non-finite loss, no test accuracy, a stop after more than one step, no MACs saved, a traceback
or another message on out of memory, a next run that does not finish.
"""
from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import math
import re
import resource
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from cprune_core.centrality import eigenvector_centrality
from cprune_core.cost import count_macs, measure_latency_ms
from cprune_core.device import Precision, describe_device, resolve_device
from cprune_core.engine import Finetuner, train_epochs
from cprune_core.errors import ConfigError
from cprune_core.features import TensorBatches
from cprune_core.graph import adjacency_for
from cprune_core.criteria import make_criterion
from cprune_core.paths import SHARED_FLOWERS
from cprune_core.schema import Progress
from cprune_core.pruning import keep_count, kept_indices, prune_model
from cprune_core.registry import get_spec, get_submodule, load_backbone, replace_classifier
from cprune_core.schema import EventKind, FinetuneConfig, MetricEvent, RunStatus, RunSummary

GRAPH_TAU = 0.01  # random 25,088-d weight vectors have cosine similarities of about +-0.006
GRAPH_KEEP = 0.5
CENTRALITY_TARGET_MS = 50.0
THROUGHPUT_TARGET = 0.85
N_CLASSES = 5
CPU_OOM_HEADROOM = 256 * 2**20


@dataclass(frozen=True)
class Sizes:
    graph_neurons: int | None  # None: VGG16's classifier.0 itself; else a random Linear of its input width
    train_image_size: int  # check 2
    train_batch: int
    warmup_steps: int  # also the engine's log_every, so its step events mark the timed span
    timed_steps: int  # a multiple of warmup_steps, so the engine's last step event ends the timed span
    run_image_size: int  # checks 3 and 5
    run_batch: int
    run_epochs: int
    run_train_per_class: int | None
    latency_image_size: int  # check 4
    latency_batches: tuple[int, int]
    oom_image_size: int  # check 5


FULL = Sizes(graph_neurons=None, train_image_size=224, train_batch=64, warmup_steps=10, timed_steps=40,
             run_image_size=128, run_batch=32, run_epochs=2, run_train_per_class=None, latency_image_size=224,
             latency_batches=(1, 64), oom_image_size=512)
TINY = Sizes(graph_neurons=256, train_image_size=32, train_batch=4, warmup_steps=2, timed_steps=4,
             run_image_size=32, run_batch=4, run_epochs=2, run_train_per_class=4, latency_image_size=32,
             latency_batches=(1, 4), oom_image_size=128)


class Report:
    """Prints one line per figure and remembers the checks that failed."""

    def __init__(self, device: torch.device):
        self.on_cuda = device.type == "cuda"
        self.failed: list[str] = []

    def figure(self, check: str, text: str, ok: bool | None = None) -> None:
        """``ok`` None: a figure with no pass/fail of its own."""
        verdict = "" if ok is None else (" OK" if ok else " FAIL")
        print(f"check {check}: {text}{verdict}", flush=True)
        if ok is False:
            self.failed.append(check)

    def gpu_target(self, check: str, text: str, target: str, met: bool) -> None:
        """A figure whose target only means something on a GPU: judged on CUDA, printed elsewhere."""
        if self.on_cuda:
            self.figure(check, f"{text} (target {target})", met)
        else:
            self.figure(check, f"{text} (target {target} applies on CUDA)")


@dataclass
class Setup:
    device: torch.device
    sizes: Sizes
    flowers: Path
    tiny: bool

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run_config(self, **overrides) -> FinetuneConfig:
        """Checks 3 and 5: efficientnet_lite0 pruned (the default), whole network, on flowers128
        (tiny: the embedded flowers-sample)."""
        data = {"dataset": "flowers-sample"} if self.tiny else {"dataset": "folder", "dataset_root": str(self.flowers)}
        sizes = self.sizes
        config = FinetuneConfig(backbone="efficientnet_lite0", train_scope="all", image_size=sizes.run_image_size,
                                batch_size=sizes.run_batch, epochs=sizes.run_epochs,
                                train_per_class=sizes.run_train_per_class, device=self.device.type, **data)
        return replace(config, **overrides)


def rounded(value: float | None) -> str:
    return "none" if value is None else f"{value:.3f}"


def run_to_end(config: FinetuneConfig, stop: threading.Event | None = None,
               on_event: Callable[[MetricEvent], None] | None = None) -> tuple[RunSummary, Finetuner]:
    """The run's summary, and the job itself: its precision is the one the run used."""
    job = Finetuner(config)
    for _ in job.events(stop, on_event):
        pass
    return job.summary, job


# ----------------------------------------------------------------------------- check 1

def graph_scores(layer: nn.Module, setup: Setup) -> tuple[torch.Tensor, float, float]:
    """Centrality scores of ``layer`` on its device, the whole pipeline's seconds and the centrality's."""
    setup.synchronize()
    start = time.perf_counter()
    adjacency = adjacency_for(layer, GRAPH_TAU)
    setup.synchronize()
    centrality_start = time.perf_counter()
    scores = eigenvector_centrality(adjacency).scores
    setup.synchronize()
    end = time.perf_counter()
    return scores, end - start, end - centrality_start


def check_graph(report: Report, setup: Setup) -> None:
    if setup.sizes.graph_neurons is None:
        layer = load_backbone("vgg16", "random").model.get_submodule("classifier.0")
        name = "VGG16 classifier.0"
    else:
        torch.manual_seed(0)
        layer = nn.Linear(25_088, setup.sizes.graph_neurons)
        name = "random Linear"
    on_device = copy.deepcopy(layer).to(setup.device)
    graph_scores(on_device, setup)  # warm-up: CUDA context, cuBLAS handles
    scores, pipeline_s, centrality_s = graph_scores(on_device, setup)
    n, d = layer.weight.shape
    report.figure("1 graph pipeline", f"{name} {n:,} x {d:,}, similarity + adjacency + centrality "
                                      f"{pipeline_s * 1000:.1f} ms on {setup.device.type}")
    report.gpu_target("1 centrality", f"{centrality_s * 1000:.1f} ms", f"< {CENTRALITY_TARGET_MS:g} ms",
                      centrality_s * 1000 < CENTRALITY_TARGET_MS)
    k = keep_count(n, GRAPH_KEEP)
    if setup.device.type == "cpu":
        report.figure("1 same top-k as the CPU", "not compared: the device is the CPU")
        return
    reference, _, _ = graph_scores(layer, replace(setup, device=torch.device("cpu")))
    different = len(set(kept_indices(scores, k)) - set(kept_indices(reference, k)))
    largest = (scores.cpu() - reference).abs().max().item()
    report.figure("1 same top-k as the CPU", f"top-{k:,} sets differ in {different} neurons, largest score "
                                             f"difference {largest:.1e}", different == 0)


# ----------------------------------------------------------------------------- check 2

def synthetic_batches(images: torch.Tensor, labels: torch.Tensor, batch: int) -> TensorBatches:
    return TensorBatches(images, labels, batch, generator=torch.Generator().manual_seed(0))


def engine_images_per_s(model: nn.Module, head: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                        setup: Setup) -> float:
    """Training throughput of the engine's own loop after its warm-up steps."""
    sizes = setup.sizes
    config = FinetuneConfig(mode="finetune", train_scope="all", epochs=1, batch_size=sizes.train_batch,
                            log_every=sizes.warmup_steps, device=setup.device.type)
    marks = []  # (steps done, seconds) at each step event

    def mark(event) -> None:
        if event.kind == EventKind.STEP:
            setup.synchronize()
            marks.append((event.step, time.perf_counter()))

    sources = {"train": synthetic_batches(images, labels, sizes.train_batch),
               "val": synthetic_batches(images[:sizes.train_batch], labels[:sizes.train_batch], sizes.train_batch)}
    for _ in train_epochs(model, head, sources, config, Precision(setup.device), Progress(mark), threading.Event(),
                          len(labels), N_CLASSES):
        pass
    (first_step, first_time), (last_step, last_time) = marks[0], marks[-1]
    return (last_step - first_step) * sizes.train_batch / (last_time - first_time)


def plain_loop_images_per_s(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, setup: Setup) -> float:
    """The same training as a plain PyTorch loop: AdamW, autocast in the engine's dtype, loss scaling for fp16,
    channels-last images on CUDA."""
    sizes, device = setup.sizes, setup.device
    dtype = Precision(device).dtype
    defaults = FinetuneConfig()
    optimizer = torch.optim.AdamW(model.parameters(), lr=defaults.lr, weight_decay=defaults.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    loss_fn = nn.CrossEntropyLoss()
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model.train()
    start = None
    for step, (inputs, targets) in enumerate(synthetic_batches(images, labels, sizes.train_batch), 1):
        inputs = inputs.contiguous(memory_format=memory_format)
        with torch.autocast(device.type, dtype=dtype) if dtype else nullcontext():
            loss = loss_fn(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if step == sizes.warmup_steps:
            setup.synchronize()
            start = time.perf_counter()
    setup.synchronize()
    return sizes.timed_steps * sizes.train_batch / (time.perf_counter() - start)


def check_throughput(report: Report, setup: Setup) -> None:
    sizes, device = setup.sizes, setup.device
    n_images = (sizes.warmup_steps + sizes.timed_steps) * sizes.train_batch
    generator = torch.Generator(device).manual_seed(0)
    images = torch.randn(n_images, 3, sizes.train_image_size, sizes.train_image_size, generator=generator,
                         device=device)
    labels = torch.randint(0, N_CLASSES, (n_images,), generator=generator, device=device)
    for name in ("resnet50", "efficientnet_lite0"):
        spec = get_spec(name)
        model = load_backbone(name, "pretrained" if spec.offline else "random").model
        replace_classifier(model, spec, N_CLASSES)
        # As the engine prepares a model for training on CUDA.
        model = model.to(device, memory_format=torch.channels_last if device.type == "cuda" else torch.preserve_format)
        plain_model = copy.deepcopy(model)
        engine = engine_images_per_s(model, get_submodule(model, spec.classifier), images, labels, setup)
        plain = plain_loop_images_per_s(plain_model, images, labels, setup)
        ratio = engine / plain
        report.gpu_target(f"2 {name} throughput", f"engine {engine:,.1f} img/s, plain loop {plain:,.1f} img/s, "
                                                  f"ratio {ratio:.2f} (batch {sizes.train_batch}, "
                                                  f"{sizes.train_image_size} px)",
                          f">= {THROUGHPUT_TARGET:g}", ratio >= THROUGHPUT_TARGET)
        del model, plain_model


# ----------------------------------------------------------------------------- check 3

def check_real_run(report: Report, setup: Setup) -> None:
    config = setup.run_config()
    summary, job = run_to_end(config)
    report.figure("3 run", f"{summary.status} after {summary.epochs_done} epochs, {summary.steps_done} steps, "
                           f"{summary.n_images.get('train', 0)} training images at {config.image_size} px, "
                           f"{summary.duration_s:.1f} s ({summary.message})",
                  summary.status == RunStatus.FINISHED and summary.epochs_done == config.epochs)
    dtype = job.precision.dtype
    report.figure("3 precision", f"autocast {dtype}" if dtype else "fp32 (AMP applies on CUDA)",
                  dtype is not None if setup.device.type == "cuda" else None)
    loss = summary.train_loss
    report.figure("3 train loss", rounded(loss), loss is not None and math.isfinite(loss))
    report.figure("3 test accuracy", rounded(summary.test_acc), summary.test_acc is not None)

    stop = threading.Event()

    def stop_at_first_step(event) -> None:
        if event.kind == EventKind.STEP:
            stop.set()

    summary, _ = run_to_end(replace(config, log_every=1), stop, stop_at_first_step)
    report.figure("3 stop", f"{summary.status} after {summary.steps_done} of {summary.total_steps} steps, asked at "
                            "step 1 (target: 1 step)",
                  summary.status == RunStatus.STOPPED and summary.steps_done == 1)


# ----------------------------------------------------------------------------- check 4

def check_pruned_latency(report: Report, setup: Setup) -> None:
    sizes = setup.sizes
    backbone = load_backbone("resnet50", "random")
    full = backbone.model
    pruned = prune_model(full, backbone.spec, make_criterion("eigenvector"), 0.5).model
    full_macs, pruned_macs = count_macs(full, sizes.latency_image_size), count_macs(pruned, sizes.latency_image_size)
    macs_ratio = pruned_macs / full_macs
    report.figure("4 MACs", f"resnet50 at {sizes.latency_image_size} px, every prunable layer at keep 0.5: "
                            f"{full_macs / 1e9:.2f} G -> {pruned_macs / 1e9:.2f} G, ratio {macs_ratio:.2f}",
                  macs_ratio < 1)
    full, pruned = full.to(setup.device), pruned.to(setup.device)
    for batch in sizes.latency_batches:
        full_ms = measure_latency_ms(full, sizes.latency_image_size, batch)
        pruned_ms = measure_latency_ms(pruned, sizes.latency_image_size, batch)
        report.figure(f"4 latency batch {batch}", f"{full_ms:.2f} ms -> {pruned_ms:.2f} ms, ratio "
                                                  f"{pruned_ms / full_ms:.2f} against the MACs ratio {macs_ratio:.2f} "
                                                  "(fp32)")


# ----------------------------------------------------------------------------- check 5

def saved_bytes_per_image(model: nn.Module, image_size: int, device: torch.device) -> int:
    """What autograd keeps for the backward pass of one more image: a lower bound of training memory per image."""
    precision = Precision(device)

    def saved_bytes(batch: int) -> int:
        storages = {}

        def keep(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()  # tensors sharing memory count once
            storages[storage.data_ptr()] = storage.nbytes()
            return tensor

        inputs = torch.zeros(batch, 3, image_size, image_size, device=device)
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor), precision.autocast():
            model(inputs)
        return sum(storages.values())

    return saved_bytes(2) - saved_bytes(1)


class MallocInfo(ctypes.Structure):
    """glibc's struct mallinfo2."""

    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def malloc_free_bytes() -> int:
    """Bytes free inside malloc's heaps: memory the process can reuse without growing its address space."""
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = MallocInfo
    return mallinfo2().fordblks


def address_space() -> int:
    """This process's virtual memory size in bytes (what RLIMIT_AS limits)."""
    with open("/proc/self/status") as status:
        return int(re.search(r"VmSize:\s+(\d+) kB", status.read()).group(1)) * 1024


@contextmanager
def memory_limit(setup: Setup):
    """CUDA: nothing to do, the device's memory is the limit. CPU: the address space capped at its current
    size plus CPU_OOM_HEADROOM, and oneDNN and NNPACK off, until the block ends.

    A convolution library that cannot allocate says so in its own words (oneDNN: "could not create a
    primitive", NNPACK: "posix_memalign failed"); PyTorch's own kernels allocate through PyTorch's
    allocator, whose failure is the one the engine recognises on the CPU.
    """
    if setup.device.type == "cuda":
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    onednn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    resource.setrlimit(resource.RLIMIT_AS, (address_space() + CPU_OOM_HEADROOM, hard))
    try:
        with torch.backends.nnpack.flags(enabled=False):
            yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        torch.backends.mkldnn.enabled = onednn


def check_out_of_memory(report: Report, setup: Setup) -> None:
    sizes, device = setup.sizes, setup.device
    spec = get_spec("efficientnet_lite0")
    model = load_backbone(spec.name).model.train().to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    per_image = saved_bytes_per_image(model, sizes.oom_image_size, device)
    del model
    if device.type == "cuda":
        available, where = torch.cuda.get_device_properties(device).total_memory, "the GPU's total memory"
    else:
        gc.collect()
        available = CPU_OOM_HEADROOM + malloc_free_bytes()
        where = (f"the {CPU_OOM_HEADROOM / 2**20:.0f} MiB address-space headroom plus malloc's free bytes "
                 "(oneDNN and NNPACK off)")
    batch = available // per_image + 1
    report.figure("5 batch that cannot fit", f"batch {batch} at {sizes.oom_image_size} px: {batch} x "
                                             f"{per_image / 2**20:.1f} MiB saved per image > "
                                             f"{available / 2**20:,.0f} MiB available, {where}")
    config = setup.run_config(image_size=sizes.oom_image_size, batch_size=batch, epochs=1,
                              train_per_class=math.ceil(batch / N_CLASSES))
    allocated_before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    with memory_limit(setup):
        summary, job = run_to_end(config)
    expected = f"Out of {device.type.upper()} memory at batch size {batch}."
    report.figure("5 out of memory", f"{summary.status}: {summary.message!r}",
                  summary.status == RunStatus.FAILED and summary.message.startswith(expected)
                  and "\n" not in summary.message)
    del job
    if device.type == "cuda":
        gc.collect()
        report.figure("5 GPU memory after the failed run", f"{torch.cuda.memory_allocated(device) / 2**20:,.0f} MiB "
                                                           f"allocated (before: {allocated_before / 2**20:,.0f} MiB), "
                                                           f"{torch.cuda.memory_reserved(device) / 2**20:,.0f} MiB "
                                                           "reserved")
    summary, _ = run_to_end(setup.run_config(epochs=1))
    loss = summary.train_loss
    report.figure("5 next run", f"{summary.status}, train loss {rounded(loss)}, test accuracy "
                                f"{rounded(summary.test_acc)}",
                  summary.status == RunStatus.FINISHED and loss is not None and math.isfinite(loss))


CHECKS = [check_graph, check_throughput, check_real_run, check_pruned_latency, check_out_of_memory]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="default: cuda")
    parser.add_argument("--tiny", action="store_true", help="Tiny sizes: the whole script in well under a minute "
                                                            "on a CPU.")
    parser.add_argument("--checks", type=lambda text: [int(n) for n in text.split(",")],
                        default=list(range(1, len(CHECKS) + 1)), help="Comma-separated check numbers (default: all).")
    parser.add_argument("--flowers", type=Path, default=SHARED_FLOWERS,
                        help=f"flowers128 folder for checks 3 and 5 (default: {SHARED_FLOWERS}); --tiny uses the "
                             "embedded flowers-sample")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ConfigError as error:
        parser.error(str(error))
    setup = Setup(device, TINY if args.tiny else FULL, args.flowers, args.tiny)
    report = Report(device)
    started = time.perf_counter()
    print(f"gpu_check: {describe_device(device)}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"{'tiny' if args.tiny else 'full'} sizes", flush=True)
    for number in args.checks:
        check_started = time.perf_counter()
        try:
            CHECKS[number - 1](report, setup)
        except Exception as error:  # a bug found: report it and run the other checks
            traceback.print_exc()
            report.figure(str(number), f"raised {type(error).__name__}: {error}", False)
        report.figure(f"{number} time", f"{time.perf_counter() - check_started:.1f} s")
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    elapsed = time.perf_counter() - started
    if report.failed:
        print(f"gpu_check: FAILED ({', '.join(report.failed)}) in {elapsed:.0f} s")
        return 1
    print(f"gpu_check: every check passed in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
