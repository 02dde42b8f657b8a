"""Fine-tuning engine: conventional baseline, prune-then-fine-tune, and fine-tune without pruning.

One run is a stream of ``MetricEvent``s (``finetune``) that the app, the CLI and the
experiments all consume; its last event carries the ``RunSummary``.

Modes
-----
``baseline``: the pretrained backbone is frozen and only a new linear head is trained.
``pruned``: the chosen layers are pruned with a criterion, the head is replaced, and the
head plus the pruned layers' scope are trained (``train_scope="suffix"``: the registry's
suffix, e.g. the head conv of EfficientNet-Lite0, on cached prefix features; ``"all"``: the
whole network, on augmented images).
``finetune``: as ``pruned`` with nothing pruned, to separate the effect of pruning from the
effect of training more layers.

Stopping and failing
--------------------
A ``threading.Event`` passed as ``stop`` is checked before every batch (training, validation
and feature extraction) and while the dataset is indexed; whatever sees it set raises
``StopRequested``, which ``Finetuner`` catches in one place. A stopped run ends "stopped" with
its partial history; once training has begun, with the figures of the partially trained model
(its test accuracy too, when at least one step was taken). A ``CPruneError`` or running out of
memory ends the run "failed" with its message; any other exception is a bug and propagates.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import torch
from torch import nn

from .access import COMMAND_LINE, Access
from .cost import count_macs, count_params, measure_latency_ms
from .data import SPLITS, ImageListDataset, build_transform, load_dataset, make_loader
from .device import Precision, is_out_of_memory, resolve_device, to_device
from .errors import CPruneError, DatasetError, StopRequested
from .evaluation import accuracy
from .features import FEATURE_CACHE, FeatureCache, Features, TensorBatches, pooled_features, prefix_features
from .criteria import make_criterion
from .progress import Steps, check_stop
from .pruning import layers_to_prune, prune_model
from .registry import get_spec, get_submodule, load_backbone, replace_classifier
from .schema import EventKind, FinetuneConfig, MetricEvent, Progress, RunResult, RunStatus, RunSummary
from .cut import cut_model

__all__ = ["Finetuner", "finetune", "run", "make_optimizer", "train_epochs"]


def make_optimizer(trainable: nn.Module, head: nn.Module, config: FinetuneConfig, total_steps: int):
    """AdamW with the new head at head_lr_scale x lr, and a cosine decay to 0 over all steps."""
    head_params = list(head.parameters())
    body = [p for p in trainable.parameters() if p.requires_grad and all(p is not h for h in head_params)]
    groups = [{"params": head_params, "lr": config.lr * config.head_lr_scale}]
    if body:
        groups.append({"params": body, "lr": config.lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)


def train_epochs(trainable: nn.Module, head: nn.Module, sources: dict, config: FinetuneConfig, precision: Precision,
                 progress: Progress, stop: threading.Event | None, n_images: int,
                 n_classes: int) -> Iterator[MetricEvent]:
    """The training loop: a "start", then "step" and "epoch" events. StopRequested when ``stop`` is set
    (before a training batch, or during validation: that epoch then has no "epoch" event)."""
    device = precision.device
    total_steps = config.epochs * len(sources["train"])
    optimizer, schedule = make_optimizer(trainable, head, config, total_steps)
    loss_fn = nn.CrossEntropyLoss()
    yield progress.start_training(total_steps, f"Training {count_params(trainable):,} parameters on {n_images} "
                                               f"images ({device.type})")
    for epoch in range(1, config.epochs + 1):
        progress.epoch = epoch
        trainable.train()
        # Sums stay on the device: reading them back every step would stall a GPU.
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        seen = 0
        for batch in sources["train"]:
            check_stop(stop)
            if batch is None:
                continue
            inputs, labels = to_device(batch, device)
            with precision.autocast():
                logits = trainable(inputs)
                loss = loss_fn(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            precision.step(loss, optimizer)
            schedule.step()
            progress.count_step(len(labels))
            loss_sum += loss.detach() * len(labels)
            correct += (logits.argmax(1) == labels).sum()
            seen += len(labels)
            if progress.step % config.log_every == 0:
                yield progress.event(EventKind.STEP, train_loss=loss_sum.item() / seen, train_acc=correct.item() / seen)
        val_acc = accuracy(trainable, sources["val"], device, precision, n_classes, stop)
        seen = max(seen, 1)
        yield progress.event(EventKind.EPOCH, train_loss=loss_sum.item() / seen, train_acc=correct.item() / seen,
                             val_acc=val_acc, message=f"Epoch {epoch}/{config.epochs}")


class Finetuner:
    """One run of ``config`` (iterate ``events()`` once); afterwards ``result()`` holds the model.

    Parameters
    ----------
    config : the run; validated at once (ConfigError names the first impossible value).
    feature_cache : where frozen prefix features are looked up and kept; None: ``FEATURE_CACHE``.
    access : whom the run works for (``access.Access``): the folders its dataset may be read from and whether
        weights and datasets may be downloaded; the command line's by default.
    keep_counts : in mode "pruned", neurons kept per layer (``pruning.prune_model``'s dict), in place of
        ``config.keep``'s one ratio: a per-layer allocation (experiment allocation). None: ``config.keep``.

    The run's own problems never raise from ``events()``: a stop ends it "stopped", a ``CPruneError``
    or running out of memory "failed", each with a message (see the module's docstring). Latency is
    measured at batch 1 on the training device; the returned model is on the CPU. When the run trains
    on cached features, ``features`` holds them per split afterwards (for a baseline: what the
    classifier sees, the pooled features); ``datasets`` holds the splits.
    """

    def __init__(self, config: FinetuneConfig, feature_cache: FeatureCache | None = None,
                 access: Access = COMMAND_LINE, keep_counts: dict[str, int] | None = None):
        config.validate()
        self.access = access
        self.config = config
        self.keep_counts = keep_counts
        self.cache = feature_cache if feature_cache is not None else FEATURE_CACHE
        self.spec = get_spec(config.backbone)
        self.model: nn.Module | None = None
        self.classes: list[str] = []
        self.kept: dict[str, list[int]] = {}
        self.channels: dict[str, int] = {}
        self.summary: RunSummary | None = None
        self.features: dict[str, Features] = {}
        self.progress = Progress()
        self.device = torch.device("cpu")
        self.precision = Precision(self.device)
        self._stop = threading.Event()
        self._datasets: dict[str, ImageListDataset] = {}
        self._n_skipped = 0
        self._training: tuple[nn.Module, dict, int] | None = None  # (trainable, batches per split, image size)

    @property
    def datasets(self) -> dict[str, ImageListDataset]:
        """The run's train, val and test splits (empty until the run has loaded its dataset)."""
        return self._datasets

    def events(self, stop: threading.Event | None = None,
               on_event: Callable[[MetricEvent], None] | None = None) -> Iterator[MetricEvent]:
        """Run, yielding events; the last one is always kind "end" with ``final`` set."""
        self._stop = stop if stop is not None else threading.Event()
        self.progress = Progress(on_event)
        try:
            self.device = resolve_device(self.config.device)
            self.precision = Precision(self.device)
            yield from self._run()
            return
        except CPruneError as error:
            yield self._end(RunStatus.FAILED, str(error), error=type(error).__name__)
            return
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
        # Out of memory. Only now, with the exception and the batch its traceback held gone, can memory be freed.
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        size = self.config.batch_size
        yield self._end(RunStatus.FAILED, f"Out of {self.device.type.upper()} memory at batch size {size}. "
                                          f"Try a smaller batch size (e.g. {max(1, size // 2)}) or a smaller "
                                          "image size.", error="OutOfMemory")

    def result(self) -> RunResult:
        """The ended run's config, history, summary, model (on the CPU), classes and kept neurons.
        RuntimeError before ``events()`` has been iterated to its end."""
        if self.summary is None:
            raise RuntimeError("The run has not ended: iterate events() to the end first.")
        return RunResult(self.config, self.progress.history, self.summary, self.model, self.spec, self.classes,
                         self.kept)

    def _run(self) -> Iterator[MetricEvent]:
        """The run, ended "finished" or, the one place a stop is caught, "stopped"."""
        self._training = None
        try:
            yield from self._train()
        except StopRequested as stopped:
            if self._training is None:  # before training: no model worth measuring
                yield self._end(RunStatus.STOPPED, str(stopped))
            else:
                yield self._finish(RunStatus.STOPPED,
                                   f"Stopped after {self.progress.step} of {self.progress.total_steps} steps.")
            return
        yield self._finish(RunStatus.FINISHED, "Finished.")

    def _train(self) -> Iterator[MetricEvent]:
        config, spec = self.config, self.spec
        image_size = config.image_size or spec.input_size
        yield self._prepare(f"Loading {config.dataset}")
        splits = load_dataset(config.dataset, config.dataset_root, seed=config.seed, val_fraction=config.val_fraction,
                              test_fraction=config.test_fraction, train_per_class=config.train_per_class,
                              access=self.access, stop=self._stop)
        self.classes = list(splits.classes)
        self._datasets = {split: getattr(splits, split) for split in SPLITS}
        self._n_skipped = len(splits.skipped)
        if len(splits.train) == 0:
            raise DatasetError(f"{config.dataset} has no training images after the split.")

        yield self._prepare(f"Building {config.backbone} ({config.weights})")
        model = load_backbone(config.backbone, config.weights, config.checkpoint, download=self.access.downloads).model
        if config.mode == "pruned":
            keep = config.keep if self.keep_counts is None else self.keep_counts
            yield self._prepare(f"Pruning with {config.criterion} (keep " + (
                f"{keep:g})" if self.keep_counts is None else f"a count per layer, {len(keep)} layers)"))
            layers = layers_to_prune(model, spec, config.layers, frozen_prefix=config.train_scope == "suffix")
            pruned = prune_model(model, spec, make_criterion(config.criterion, config.tau, config.seed), keep,
                                 layers, inplace=True)
            self.kept, self.channels = pruned.kept, pruned.channels
        torch.manual_seed(config.seed)  # head init, dropout, augmentation: repeatable per seed
        replace_classifier(model, spec, len(self.classes))
        self.model = model.to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)

        trainable, sources = yield from self._sources(image_size)
        self._training = trainable, sources, image_size
        yield from train_epochs(trainable, get_submodule(self.model, spec.classifier), sources, config,
                                self.precision, self.progress, self._stop, len(self._datasets["train"]),
                                len(self.classes))
        check_stop(self._stop)  # a stop after the last validation still ends the run "stopped"

    def _sources(self, image_size: int):
        """The module to train and its batches per split: cached features, or images for scope "all"."""
        config, spec = self.config, self.spec
        if config.mode == "baseline" or config.train_scope == "suffix":
            prefix, suffix = cut_model(self.model, spec)
            cached = {}
            for split in SPLITS:
                steps = Steps(prefix_features(prefix, self._datasets[split], config, spec, split=split,
                                              precision=self.precision, stop=self._stop, cache=self.cache))
                for done, images in steps:
                    yield self._prepare(f"Computing {split} features: {done:,} of {images:,} images")
                cached[split] = steps.result
            trainable = suffix
            if config.mode == "baseline":
                trainable = get_submodule(self.model, spec.classifier)
                cached = pooled_features(suffix, trainable, cached, self.device)
            self.features = cached
            sources = {split: TensorBatches(*cached[split], config.batch_size) for split in cached}
            generator = torch.Generator().manual_seed(config.seed)
            sources["train"] = TensorBatches(*cached["train"], config.batch_size, generator)
            return trainable, sources
        eval_transform = build_transform(image_size, spec.mean, spec.std, train=False)
        train_transform = build_transform(image_size, spec.mean, spec.std, train=True)
        sources = {split: make_loader(self._datasets[split], eval_transform, config.batch_size, self.device)
                   for split in ("val", "test")}
        sources["train"] = make_loader(self._datasets["train"], train_transform, config.batch_size, self.device,
                                       shuffle_seed=config.seed)
        return self.model, sources

    def _finish(self, status: RunStatus, message: str) -> MetricEvent:
        """The end of a run whose training began: the test accuracy (of the partially trained model after a
        stop, and always of the whole test split; none before the first step), size and latency."""
        trainable, sources, image_size = self._training
        test_acc = (accuracy(trainable, sources["test"], self.device, self.precision, len(self.classes))
                    if self.progress.step else None)
        self.model.eval()
        figures = {"test_acc": test_acc, "params": count_params(self.model), "macs": count_macs(self.model, image_size),
                   "latency_ms": measure_latency_ms(self.model, image_size, batch_size=1)}
        self.model = self.model.to("cpu", memory_format=torch.contiguous_format)
        return self._end(status, message, **figures)

    def _prepare(self, message: str) -> MetricEvent:
        return self.progress.event(EventKind.PREPARE, message=message)

    def _end(self, status: RunStatus, message: str, **figures) -> MetricEvent:
        event = self.progress.end(
            status, message, n_skipped=self._n_skipped + sum(d.n_failed for d in self._datasets.values()),
            n_images={split: len(d) for split, d in self._datasets.items()}, classes=list(self.classes),
            kept={layer: len(idx) for layer, idx in self.kept.items()}, channels=dict(self.channels),
            device=self.device.type, **figures)
        self.summary = event.final
        return event


def finetune(config: FinetuneConfig, stop: threading.Event | None = None,
             on_event: Callable[[MetricEvent], None] | None = None, feature_cache: FeatureCache | None = None,
             access: Access = COMMAND_LINE) -> Iterator[MetricEvent]:
    """The run's event stream: "prepare" events, "start", "step" and "epoch" events, and always one last
    "end" event whose ``final`` is the RunSummary. The config is validated now (ConfigError); the run
    starts on iteration. ``stop`` ends it within one batch; ``on_event`` sees each event as it is made;
    ``access`` as ``Finetuner``'s.

    Example: ``[e.val_acc for e in finetune(config) if e.kind == "epoch"]`` is the validation curve.
    """
    return Finetuner(config, feature_cache, access).events(stop, on_event)


def run(config: FinetuneConfig, stop: threading.Event | None = None,
        on_event: Callable[[MetricEvent], None] | None = None) -> RunResult:
    """Run ``config`` to its end (in this thread) and return its history, summary and trained model.
    ConfigError for an impossible config; a run that fails or is stopped returns with that status."""
    job = Finetuner(config)
    for _ in job.events(stop, on_event):
        pass
    return job.result()
