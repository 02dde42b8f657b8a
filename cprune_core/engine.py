"""Fine-tuning engine: conventional baseline, prune-then-fine-tune, and fine-tune without pruning.

One run is a stream of ``MetricEvent``s (``finetune``) that the app and the CLI both consume.

Modes
-----
``baseline``: the pretrained backbone is frozen and only a new linear head is trained.
``pruned``: the chosen layers are pruned with a criterion, the head is replaced, and the
head plus the pruned layers' scope are trained (``train_scope="suffix"``: the registry's
suffix, e.g. the head conv of EfficientNet-Lite0; ``"all"``: the whole network).
``finetune``: as ``pruned`` with nothing pruned, to separate the effect of pruning from the
effect of training more layers.

Feature caching
---------------
Whatever is frozen runs once per (backbone, weights, dataset split, image size, cut point):
the frozen prefix's outputs are kept in an LRU cache in memory (``FEATURE_CACHE``) and, with
``disk_cache=True``, under ~/.cache/cprune/features ($CPRUNE_HOME/features when set). The
baseline's pooled features are computed from those prefix features by the frozen suffix, so a
baseline and a pruned run on the same data share the expensive pass. Because frozen modules run
in eval mode, features of the *train* split are computed with the evaluation transform (resize +
centre crop, no augmentation): augmentation is only used with ``train_scope="all"``, which
trains on images.

Stopping
--------
A ``threading.Event`` passed as ``stop`` is checked before every batch (training, evaluation
and feature extraction). A stopped run ends with status "stopped", its partial history, and
test accuracy, params, MACs and latency of the partially trained model (test accuracy is None
when the stop came before training started).
"""
from __future__ import annotations

import hashlib
import math
import os
import threading
import time
from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader

from .cost import count_macs, count_params, measure_latency_ms
from .data import DATASETS, DatasetError, ImageListDataset, build_transform, collate_skip_bad, load_dataset
from .importance import CRITERIA, DEFAULT_TAU, make_criterion
from .pruning import PruningGraph, prune_model, select_groups
from .registry import (BACKBONES, BackboneSpec, CheckpointError, WeightsUnavailableError, get_submodule,
                       load_backbone, replace_classifier)
from .split import split_model

MODES = ("baseline", "pruned", "finetune")
TRAIN_SCOPES = ("suffix", "all")
WEIGHTS = ("pretrained", "random", "checkpoint")
DEVICES = ("auto", "cpu", "cuda", "mps")
EVENT_KINDS = ("prepare", "start", "step", "epoch", "end")
STATUSES = ("finished", "stopped", "failed")
FEATURE_BATCH_SIZE = 64

# Errors that mean "this configuration cannot run here", reported as a failed run, not raised.
RUN_ERRORS = (DatasetError, WeightsUnavailableError, CheckpointError, ValueError, KeyError)


# ----------------------------------------------------------------------------- configuration


@dataclass
class FinetuneConfig:
    """Everything that defines one fine-tuning run (JSON-serialisable via to_dict)."""

    backbone: str = "efficientnet_lite0"
    weights: str = "pretrained"  # "pretrained", "random" or "checkpoint"
    checkpoint: str | None = None  # state dict file when weights == "checkpoint"
    dataset: str = "flowers-sample"
    dataset_root: str | None = None
    mode: str = "pruned"  # "baseline", "pruned" or "finetune"
    criterion: str = "eigenvector"
    keep: float = 0.5  # fraction of neurons kept in each pruned layer
    tau: float = DEFAULT_TAU  # similarity threshold of the neuron graph
    layers: list[str] | None = None  # None: [spec.head_layer]; ["all"]: every prunable layer in scope
    train_scope: str = "suffix"  # pruned/finetune: "suffix" (frozen cached prefix) or "all" (whole network)
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3  # AdamW, cosine decay to 0 over all steps; the new head gets head_lr_scale * lr
    head_lr_scale: float = 10.0  # a freshly initialised head learns faster than pretrained layers
    weight_decay: float = 1e-4
    image_size: int | None = None  # None: the backbone's input size
    seed: int = 0
    train_per_class: int | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    device: str = "auto"
    log_every: int = 10  # a "step" event every this many optimizer steps
    disk_cache: bool = False  # also keep frozen features under ~/.cache/cprune/features

    def validate(self) -> None:
        """Raise ValueError naming the first impossible value."""
        def choose(value, options, what):
            if value not in options:
                raise ValueError(f"Unknown {what} {value!r}; choose one of {', '.join(options)}.")

        choose(self.backbone, BACKBONES, "backbone")
        choose(self.weights, WEIGHTS, "weights")
        choose(self.dataset, DATASETS, "dataset")
        choose(self.mode, MODES, "mode")
        choose(self.criterion, CRITERIA, "criterion")
        choose(self.train_scope, TRAIN_SCOPES, "train scope")
        choose(self.device, DEVICES, "device")
        if self.weights == "checkpoint" and not self.checkpoint:
            raise ValueError("weights='checkpoint' needs a checkpoint file.")
        if not 0.0 < self.keep <= 1.0:
            raise ValueError(f"keep must be in (0, 1] (the fraction of neurons kept), got {self.keep}.")
        if not 0.0 <= self.tau < 1.0:
            raise ValueError(f"tau must be in [0, 1), got {self.tau}.")
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("log_every", 1), ("image_size", 16)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < minimum):
                raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}.")
        if self.train_per_class is not None and self.train_per_class < 1:
            raise ValueError(f"train_per_class must be at least 1 (or None for all), got {self.train_per_class}.")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}.")
        if not self.head_lr_scale > 0:
            raise ValueError(f"head_lr_scale must be positive, got {self.head_lr_scale}.")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}.")
        fractions_ok = 0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1
        if not (fractions_ok and self.val_fraction + self.test_fraction < 1):
            raise ValueError("val_fraction and test_fraction must be in [0, 1) and sum to less than 1.")
        if self.layers is not None and (not self.layers or not all(isinstance(x, str) for x in self.layers)):
            raise ValueError("layers must be None, ['all'] or a non-empty list of layer names.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FinetuneConfig:
        """Build from a dict; unknown keys raise ValueError (a typo would otherwise be ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown FinetuneConfig field(s): {', '.join(unknown)}.")
        return cls(**values)


@dataclass
class MetricEvent:
    """One point of a run's metric stream.

    kind: "prepare" (loading, pruning, feature extraction; ``message`` says which), "start"
    (training begins; total_steps known), "step" (every ``log_every`` steps: running train loss
    and accuracy of the epoch), "epoch" (epoch means and val_acc), "end" (``final`` holds the
    final figures and status).
    """

    kind: str
    epoch: int = 0  # 1-based epoch in progress (0 before training)
    step: int = 0  # optimizer steps done
    total_steps: int = 0
    progress: float = 0.0  # steps done / total steps
    train_loss: float | None = None
    train_acc: float | None = None
    val_acc: float | None = None
    elapsed_s: float = 0.0  # since the run started, preparation included
    images_per_s: float | None = None  # training throughput since training started
    eta_s: float | None = None
    message: str = ""
    final: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> MetricEvent:
        return cls(**values)


@dataclass
class RunResult:
    """A finished (or stopped/failed) run: history, final figures and the trained model (on CPU)."""

    config: FinetuneConfig
    history: list[MetricEvent]
    final: dict
    model: nn.Module | None
    spec: BackboneSpec
    classes: list[str]
    kept: dict[str, list[int]]  # pruned layer -> original indices of kept neurons

    @property
    def status(self) -> str:
        return self.final["status"]


# ----------------------------------------------------------------------------- devices


def resolve_device(name: str = "auto") -> torch.device:
    """"auto": CUDA, then Apple MPS, then CPU; otherwise the named device (checked to exist)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available; use 'auto' or 'cpu'.")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' requested but Apple MPS is not available; use 'auto' or 'cpu'.")
    return torch.device(name)


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the RuntimeError MPS raises when its memory is exhausted."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "MPS backend out of memory" in str(error)


class _Precision:
    """Mixed precision on CUDA (bf16 where supported, else fp16 with loss scaling); fp32 elsewhere."""

    def __init__(self, device: torch.device):
        self.device = device
        self.dtype = None
        if device.type == "cuda":
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else nullcontext()

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()


# ----------------------------------------------------------------------------- feature cache


def cache_home() -> Path:
    """$CPRUNE_HOME, else ~/.cache/cprune (XDG_CACHE_HOME respected): features and the run store."""
    home = os.environ.get("CPRUNE_HOME")
    if home:
        return Path(home).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "cprune"


class FeatureCache:
    """LRU cache of frozen features in memory, optionally backed by files on disk.

    Values are (features, labels) CPU tensors. Memory is bounded by ``max_bytes``
    (env CPRUNE_FEATURE_CACHE_MB, default 2048); disk files are written atomically and read
    with ``torch.load(weights_only=True)``.
    """

    def __init__(self, max_bytes: int | None = None, disk_dir: str | Path | None = None):
        mb = int(os.environ.get("CPRUNE_FEATURE_CACHE_MB", "2048"))
        self.max_bytes = max_bytes if max_bytes is not None else mb * 2**20
        self._disk_dir = Path(disk_dir) if disk_dir else None
        self._entries: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()  # the app may run several runs from different threads

    @property
    def disk_dir(self) -> Path:
        return self._disk_dir or cache_home() / "features"  # read when used: CPRUNE_HOME may change

    @staticmethod
    def key(*parts) -> str:
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]

    def get(self, key: str, disk: bool = False) -> tuple[torch.Tensor, torch.Tensor] | None:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        path = self.disk_dir / f"{key}.pt"
        if disk and path.is_file():
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
                value = saved["features"], saved["labels"]
            except Exception:  # a damaged cache file is recomputed, never trusted
                return None
            self._store(key, value)
            return value
        return None

    def put(self, key: str, value: tuple[torch.Tensor, torch.Tensor], disk: bool = False) -> None:
        self._store(key, value)
        if disk:
            self.disk_dir.mkdir(parents=True, exist_ok=True)
            path = self.disk_dir / f"{key}.pt"
            temporary = path.with_suffix(f".tmp{os.getpid()}")
            torch.save({"features": value[0], "labels": value[1]}, temporary)
            os.replace(temporary, path)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _store(self, key: str, value: tuple[torch.Tensor, torch.Tensor]) -> None:
        size = sum(t.numel() * t.element_size() for t in value)
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > 1 and self._bytes() > self.max_bytes:
                self._entries.popitem(last=False)
            if size > self.max_bytes:
                self._entries.pop(key, None)

    def _bytes(self) -> int:
        return sum(t.numel() * t.element_size() for value in self._entries.values() for t in value)

    def __len__(self) -> int:
        return len(self._entries)


FEATURE_CACHE = FeatureCache()


def _samples_digest(dataset: ImageListDataset) -> str:
    """Identifies a split's exact contents (paths, labels, file versions) for cache keys."""
    digest = hashlib.sha256()
    for path, label in dataset.samples:
        try:
            stat = os.stat(path)
            version = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            version = None
        digest.update(repr((path, label, version)).encode())
    return digest.hexdigest()


def _weights_id(config: FinetuneConfig) -> str:
    if config.weights != "checkpoint":
        return config.weights
    stat = os.stat(config.checkpoint)
    return f"checkpoint:{Path(config.checkpoint).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


# ----------------------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    accuracy: float | None  # None when no sample could be evaluated
    correct: int
    total: int
    per_class: dict[str, tuple[int, int]]  # class -> (correct, total)


def _accuracy_counts(model: nn.Module, batches, device, precision: _Precision, num_classes: int, stop=None):
    correct = torch.zeros(num_classes, dtype=torch.long)
    total = torch.zeros(num_classes, dtype=torch.long)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in batches:
            if stop is not None and stop.is_set():
                break
            if batch is None:
                continue
            inputs, labels = _to_device(batch, device)
            with precision.autocast():
                predictions = model(inputs).argmax(1)
            labels, hits = labels.cpu(), (predictions == labels).cpu()
            total += torch.bincount(labels, minlength=num_classes)
            correct += torch.bincount(labels[hits], minlength=num_classes)
    model.train(was_training)
    return correct, total


def evaluate_model(model: nn.Module, dataset: ImageListDataset, transform, *, batch_size: int = 64,
                   device: str | torch.device = "cpu", label_map: list[int] | None = None,
                   class_names: list[str] | None = None) -> Evaluation:
    """Accuracy of ``model`` on ``dataset`` read with ``transform``, overall and per class.

    ``label_map[dataset_label]`` gives the model's output index of each dataset class (classes
    matched by name by the caller); per-class figures are keyed by the dataset's class names.
    """
    device = torch.device(device)
    model = model.to(device)
    loader = DataLoader(dataset.with_transform(transform), batch_size=batch_size, shuffle=False,
                        collate_fn=collate_skip_bad)
    mapping = torch.tensor(label_map if label_map is not None else range(len(dataset.classes)))
    batches = ((x, mapping[y]) for x, y in filter(None, loader))
    num_outputs = int(mapping.max()) + 1
    correct, total = _accuracy_counts(model, batches, device, _Precision(device), num_outputs)
    names = class_names or dataset.classes
    per_class = {name: (int(correct[mapping[i]]), int(total[mapping[i]])) for i, name in enumerate(names)}
    n_correct, n_total = int(correct.sum()), int(total.sum())
    return Evaluation(n_correct / n_total if n_total else None, n_correct, n_total, per_class)


# ----------------------------------------------------------------------------- batches


def _to_device(batch, device: torch.device):
    inputs, labels = batch
    non_blocking = device.type == "cuda"
    inputs = inputs.to(device, non_blocking=non_blocking)
    if device.type == "cuda" and inputs.ndim == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs, labels.to(device, non_blocking=non_blocking)


class _TensorBatches:
    """Mini-batches over cached features, shuffled by a seeded generator each epoch."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 generator: torch.Generator | None = None):
        self.features, self.labels, self.batch_size, self.generator = features, labels, batch_size, generator

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.generator is not None else torch.arange(n)
        for start in range(0, n, self.batch_size):
            index = order[start:start + self.batch_size]
            yield self.features[index], self.labels[index]


# ----------------------------------------------------------------------------- the run


class Finetuner:
    """One run of ``config`` (iterate ``events()`` once); afterwards ``result()`` holds the model.

    The model, its spec, the class names and the kept indices are attributes once prepared.
    Latency is measured at batch 1 on the training device; the returned model is on the CPU.
    """

    def __init__(self, config: FinetuneConfig, feature_cache: FeatureCache | None = None):
        config.validate()
        self.config = config
        self.cache = feature_cache if feature_cache is not None else FEATURE_CACHE
        self.history: list[MetricEvent] = []
        self.final: dict | None = None
        self.model: nn.Module | None = None
        self.spec: BackboneSpec = BACKBONES[config.backbone]
        self.classes: list[str] = []
        self.kept: dict[str, list[int]] = {}
        self.channels: dict[str, int] = {}
        self._stop = threading.Event()
        self._on_event: Callable[[MetricEvent], None] | None = None
        self._started = 0.0
        self._train_started: float | None = None
        self._images_seen = 0
        self._step = 0
        self._total_steps = 0
        self._epoch = 0
        self._n_skipped = 0
        self._datasets: dict[str, ImageListDataset] = {}
        self.device = torch.device("cpu")
        self.precision = _Precision(self.device)

    # ------------------------------------------------------------------ public

    def events(self, stop: threading.Event | None = None,
               on_event: Callable[[MetricEvent], None] | None = None) -> Iterator[MetricEvent]:
        """Run, yielding events; the last one is always kind "end" with ``final`` set."""
        self._stop = stop if stop is not None else threading.Event()
        self._on_event = on_event
        self._started = time.perf_counter()
        try:
            self.device = resolve_device(self.config.device)
            self.precision = _Precision(self.device)
            yield from self._run()
        except RUN_ERRORS as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
            yield self._end("failed", message)
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            size = self.config.batch_size
            yield self._end("failed", f"Out of {self.device.type.upper()} memory at batch size {size}. "
                                      f"Try a smaller batch size (e.g. {max(1, size // 2)}) or a smaller image size.")

    def result(self) -> RunResult:
        if self.final is None:
            raise RuntimeError("The run has not ended: iterate events() to the end first.")
        return RunResult(self.config, self.history, self.final, self.model, self.spec, self.classes, self.kept)

    # ------------------------------------------------------------------ stages

    def _run(self) -> Iterator[MetricEvent]:
        config = self.config
        image_size = config.image_size or self.spec.input_size
        yield self._event("prepare", message=f"Loading {config.dataset}")
        splits = load_dataset(config.dataset, config.dataset_root, seed=config.seed,
                              val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                              train_per_class=config.train_per_class, download=True)
        self.classes = list(splits.classes)
        self._datasets = {"train": splits.train, "val": splits.val, "test": splits.test}
        self._n_skipped = len(splits.skipped)
        if len(splits.train) == 0:
            raise DatasetError(f"{config.dataset} has no training images after the split.")

        yield self._event("prepare", message=f"Building {config.backbone} ({config.weights})")
        model = load_backbone(config.backbone, config.weights, config.checkpoint).model
        if config.mode == "pruned":
            yield self._event("prepare", message=f"Pruning with {config.criterion} (keep {config.keep:g})")
            layers = self._layers_to_prune(model)
            criterion = make_criterion(config.criterion, config.tau, config.seed)
            pruned = prune_model(model, self.spec, criterion, config.keep, layers, inplace=True)
            self.kept, self.channels = pruned.kept, pruned.channels
        torch.manual_seed(config.seed)  # head init, dropout, augmentation: repeatable per seed
        replace_classifier(model, self.spec, len(self.classes))
        self.model = model.to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)

        eval_transform = build_transform(image_size, self.spec.mean, self.spec.std, train=False)
        if config.mode == "baseline" or config.train_scope == "suffix":
            prefix, suffix = split_model(self.model, self.spec)
            cached = {}
            for split in ("train", "val", "test"):
                cached[split] = yield from self._prefix_features(prefix, split, eval_transform, image_size)
                if cached[split] is None:
                    yield self._end("stopped", "Stopped while computing features.")
                    return
            if config.mode == "baseline":
                trainable = get_submodule(self.model, self.spec.classifier)
                cached = self._pooled_features(suffix, cached)
            else:
                trainable = suffix
            sources = {split: _TensorBatches(*cached[split], config.batch_size) for split in cached}
            generator = torch.Generator().manual_seed(config.seed)
            sources["train"] = _TensorBatches(*cached["train"], config.batch_size, generator)
        else:
            trainable = self.model
            train_transform = build_transform(image_size, self.spec.mean, self.spec.std, train=True)
            sources = {split: self._image_loader(split, eval_transform) for split in ("val", "test")}
            sources["train"] = self._image_loader("train", train_transform, shuffle=True)

        yield from self._train(trainable, sources)
        yield self._finish(trainable, sources, image_size)

    def _layers_to_prune(self, model: nn.Module) -> list[str]:
        """Resolve config.layers, checking that pruning leaves the frozen prefix untouched."""
        layers = self.config.layers or [self.spec.head_layer]
        graph = PruningGraph(model, self.spec)
        prefix_modules: set[int] = set()
        if self.config.train_scope == "suffix":
            prefix_modules = {id(m) for m in split_model(model, self.spec)[0].modules()}

        def touches_prefix(group) -> bool:
            return any(id(get_submodule(model, effect.module)) in prefix_modules for effect in group.effects)

        if layers == ["all"]:
            groups = [g for g in graph.groups if not touches_prefix(g)]
            if not groups:
                raise ValueError(f"{self.spec.name} has no prunable layer in its trainable suffix; "
                                 "use train_scope='all'.")
            return [g.root for g in groups]
        for group in select_groups(graph, layers):
            if touches_prefix(group):
                raise ValueError(
                    f"Pruning {group.root} changes the frozen prefix (it ends before {self.spec.suffix_start}); "
                    "use train_scope='all' to prune it, or choose a layer in the suffix.")
        return layers

    def _prefix_features(self, prefix: nn.Module, split: str, transform, image_size: int):
        """Features of the frozen prefix for one split, from the cache or computed (None if stopped)."""
        dataset = self._datasets[split]
        if len(dataset) == 0:  # e.g. val_fraction=0: nothing to evaluate
            return torch.empty(0), torch.empty(0, dtype=torch.long)
        config = self.config
        key = self.cache.key("prefix", config.backbone, _weights_id(config), self.spec.suffix_start,
                             image_size, _samples_digest(dataset))
        hit = self.cache.get(key, disk=config.disk_cache)
        if hit is not None:
            return hit
        loader = DataLoader(dataset.with_transform(transform), batch_size=FEATURE_BATCH_SIZE, shuffle=False,
                            collate_fn=collate_skip_bad, num_workers=self._workers())
        features, labels = [], []
        prefix.eval()
        with torch.no_grad():
            for index, batch in enumerate(loader):
                if self._stop.is_set():
                    return None
                yield self._event("prepare", message=f"Computing {split} features: batch {index + 1}/{len(loader)}")
                if batch is None:
                    continue
                inputs, batch_labels = _to_device(batch, self.device)
                with self.precision.autocast():
                    output = prefix(inputs)
                features.append(output.float().cpu().contiguous())
                labels.append(batch_labels.cpu())
        if not features:
            raise DatasetError(f"No image of the {split} split could be read.")
        value = torch.cat(features), torch.cat(labels)
        self.cache.put(key, value, disk=config.disk_cache)
        return value

    def _pooled_features(self, suffix: nn.Module, cached: dict) -> dict:
        """Baseline inputs: what the frozen suffix feeds its classifier, from the prefix features."""
        classifier = get_submodule(self.model, self.spec.classifier)
        captured: list[torch.Tensor] = []
        hook = classifier.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0].float().cpu()))
        pooled = {}
        try:
            suffix.eval()
            with torch.no_grad():
                for split, (features, labels) in cached.items():
                    if len(labels) == 0:
                        pooled[split] = features, labels
                        continue
                    captured.clear()
                    for start in range(0, len(features), FEATURE_BATCH_SIZE):
                        suffix(features[start:start + FEATURE_BATCH_SIZE].to(self.device))
                    pooled[split] = torch.cat(captured), labels
        finally:
            hook.remove()
        return pooled

    def _workers(self) -> int:
        # On CPU the model needs every core; loader workers would only compete with it.
        return 0 if self.device.type == "cpu" else min(8, os.cpu_count() or 1)

    def _image_loader(self, split: str, transform, shuffle: bool = False) -> DataLoader:
        generator = torch.Generator().manual_seed(self.config.seed) if shuffle else None
        return DataLoader(self._datasets[split].with_transform(transform), batch_size=self.config.batch_size,
                          shuffle=shuffle, generator=generator, collate_fn=collate_skip_bad,
                          num_workers=self._workers(), pin_memory=self.device.type == "cuda")

    def _train(self, trainable: nn.Module, sources: dict) -> Iterator[MetricEvent]:
        config = self.config
        steps_per_epoch = len(sources["train"])
        self._total_steps = config.epochs * steps_per_epoch
        head = set(get_submodule(self.model, self.spec.classifier).parameters())
        body = [p for p in trainable.parameters() if p.requires_grad and p not in head]
        groups = [{"params": list(head), "lr": config.lr * config.head_lr_scale}]
        if body:
            groups.append({"params": body, "lr": config.lr})
        optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self._total_steps)
        loss_fn = nn.CrossEntropyLoss()
        yield self._event("start", message=f"Training {count_params(trainable):,} parameters on "
                                           f"{len(self._datasets['train'])} images ({self.device.type})")
        self._train_started = time.perf_counter()
        for epoch in range(1, config.epochs + 1):
            self._epoch = epoch
            trainable.train()
            # Sums stay on the device: reading them back every step would stall a GPU.
            loss_sum = torch.zeros((), device=self.device)
            correct = torch.zeros((), dtype=torch.long, device=self.device)
            seen = 0
            for batch in sources["train"]:
                if self._stop.is_set():
                    return
                if batch is None:
                    continue
                inputs, labels = _to_device(batch, self.device)
                with self.precision.autocast():
                    logits = trainable(inputs)
                    loss = loss_fn(logits.float(), labels)
                optimizer.zero_grad(set_to_none=True)
                self.precision.step(loss, optimizer)
                schedule.step()
                self._step += 1
                self._images_seen += len(labels)
                loss_sum += loss.detach() * len(labels)
                correct += (logits.argmax(1) == labels).sum()
                seen += len(labels)
                if self._step % config.log_every == 0:
                    yield self._event("step", train_loss=loss_sum.item() / seen, train_acc=correct.item() / seen)
            val_acc = self._accuracy(trainable, sources["val"])
            if self._stop.is_set():  # the stop came during validation: this epoch is incomplete
                return
            seen = max(seen, 1)
            yield self._event("epoch", train_loss=loss_sum.item() / seen, train_acc=correct.item() / seen,
                              val_acc=val_acc, message=f"Epoch {epoch}/{config.epochs}")

    def _accuracy(self, model: nn.Module, source) -> float | None:
        correct, total = _accuracy_counts(model, source, self.device, self.precision, len(self.classes), self._stop)
        return int(correct.sum()) / int(total.sum()) if int(total.sum()) else None

    def _finish(self, trainable: nn.Module, sources: dict, image_size: int) -> MetricEvent:
        stopped = self._stop.is_set()
        # Evaluate the test split even after a stop (the partially trained model), never half of it.
        self._stop = threading.Event()
        test_acc = self._accuracy(trainable, sources["test"]) if self._step else None
        self.model.eval()
        figures = {
            "test_acc": test_acc,
            "params": count_params(self.model),
            "macs": count_macs(self.model, image_size),
            "latency_ms": measure_latency_ms(self.model, image_size, batch_size=1),
        }
        self.model = self.model.to("cpu", memory_format=torch.contiguous_format)
        status = "stopped" if stopped else "finished"
        message = f"Stopped after {self._step} of {self._total_steps} steps." if stopped else "Finished."
        return self._end(status, message, **figures)

    # ------------------------------------------------------------------ events

    def _event(self, kind: str, **values) -> MetricEvent:
        now = time.perf_counter()
        progress = self._step / self._total_steps if self._total_steps else 0.0
        images_per_s = eta_s = None
        if self._train_started is not None and self._step:
            training_time = now - self._train_started
            images_per_s = self._images_seen / training_time if training_time > 0 else None
            eta_s = training_time / self._step * (self._total_steps - self._step)
        values = {"epoch": self._epoch, "step": self._step, "total_steps": self._total_steps, "progress": progress,
                  "elapsed_s": now - self._started, "images_per_s": images_per_s, "eta_s": eta_s, **values}
        event = MetricEvent(kind=kind, **values)
        self.history.append(event)
        if self._on_event is not None:
            self._on_event(event)
        return event

    def _end(self, status: str, message: str, **figures) -> MetricEvent:
        last_epoch = next((e for e in reversed(self.history) if e.kind == "epoch"), None)
        n_failed = sum(d.n_failed for d in self._datasets.values())
        self.final = {
            "status": status,
            "message": message,
            "test_acc": None, "params": None, "macs": None, "latency_ms": None,
            **figures,
            "val_acc": last_epoch.val_acc if last_epoch else None,
            "train_acc": last_epoch.train_acc if last_epoch else None,
            "train_loss": last_epoch.train_loss if last_epoch else None,
            "epochs_done": sum(e.kind == "epoch" for e in self.history),
            "steps_done": self._step,
            "total_steps": self._total_steps,
            "duration_s": time.perf_counter() - self._started,
            "n_skipped": self._n_skipped + n_failed,
            "n_images": {split: len(d) for split, d in self._datasets.items()},
            "classes": self.classes,
            "kept": {layer: len(idx) for layer, idx in self.kept.items()},
            "channels": dict(self.channels),
            "device": self.device.type,
        }
        return self._event("end", message=message, final=self.final, eta_s=0.0 if status == "finished" else None)


def finetune(config: FinetuneConfig, stop: threading.Event | None = None,
             on_event: Callable[[MetricEvent], None] | None = None,
             feature_cache: FeatureCache | None = None) -> Iterator[MetricEvent]:
    """The run's event stream. The config is validated now (ValueError), the run starts on iteration.

    Problems of the run itself (dataset, weights, OOM) end the stream with status "failed".
    Use ``Finetuner`` directly to get the model afterwards, or ``run``.
    """
    return Finetuner(config, feature_cache).events(stop, on_event)


def run(config: FinetuneConfig, stop: threading.Event | None = None,
        on_event: Callable[[MetricEvent], None] | None = None) -> RunResult:
    """Run to the end and return history, final figures and the trained model."""
    job = Finetuner(config)
    for _ in job.events(stop, on_event):
        pass
    return job.result()
