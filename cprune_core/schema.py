"""What a fine-tuning run is made of: its configuration, its event stream and its outcome.

``FinetuneConfig`` is the one source of the run's settings: each field carries its help, its
choices and its valid range (``options.option``), from which ``validate`` checks a config, the CLI
builds its options and the app its widgets. ``MetricEvent`` is one point of a run's stream;
``RunSummary`` is the typed outcome, serialised with ``asdict``. No training code here.
"""
from __future__ import annotations

import time
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from .data import DATASETS, DEFAULT_DATASET
from .data.splits import check_split_arguments
from .errors import ConfigError, exit_code_for
from .options import Settings, option
from .ranges import CRITERION_NAMES, DEFAULT_TAU, DEVICES, FRACTION, KEEP, TAU, Range
from .registry import BACKBONES, DEFAULT_BACKBONE, MAX_INPUT_SIZE, WEIGHT_SOURCES, get_spec

if TYPE_CHECKING:
    from torch import nn

    from .registry import BackboneSpec

__all__ = ["RunStatus", "EventKind", "Mode", "TrainScope", "MODES", "TRAIN_SCOPES", "FinetuneConfig", "MetricEvent",
           "RunSummary", "RunResult", "Progress"]


class RunStatus(StrEnum):
    """Where a run stands. A run ends finished, stopped or failed; "interrupted" is set by the
    store for a run whose process died while it was running."""

    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class EventKind(StrEnum):
    """What a ``MetricEvent`` marks in a run's stream."""

    PREPARE = "prepare"  # loading, pruning, feature extraction (the message says which)
    START = "start"  # training begins; total_steps known
    STEP = "step"  # every log_every optimizer steps: running train loss and accuracy of the epoch
    EPOCH = "epoch"  # epoch means and val_acc
    END = "end"  # the last event: ``final`` holds the RunSummary


Mode = Literal["baseline", "pruned", "finetune"]
TrainScope = Literal["suffix", "all"]
MODES: tuple[Mode, ...] = typing.get_args(Mode)
TRAIN_SCOPES: tuple[TrainScope, ...] = typing.get_args(TrainScope)


@dataclass
class FinetuneConfig(Settings):
    """Everything that defines one fine-tuning run (JSON-serialisable via to_dict).

    Each field's ``Option`` (``FinetuneConfig.options()``) carries its help, choices and valid range;
    ``validate`` checks them all and the combinations (ConfigError naming the first impossible value). Example:
    ``FinetuneConfig(dataset="flowers-sample", keep=0.25, epochs=3)`` is a quick pruned run of the
    default backbone's head layer.
    """

    backbone: str = option(DEFAULT_BACKBONE, "Backbone network.", "model", choices=BACKBONES)
    weights: str = option("pretrained", "Starting weights: ImageNet-pretrained, random init, or a --checkpoint file.",
                          "model", choices=WEIGHT_SOURCES)
    checkpoint: str | None = option(None, "State dict file to start from (with --weights checkpoint).", "model",
                                    path=True, none="no file")
    dataset: str = option(DEFAULT_DATASET, "Dataset.", "data", choices=DATASETS)
    dataset_root: str | None = option(None, "Dataset folder (required for 'folder'; optional for the others).",
                                      "data", flag="--root", path=True, none="the dataset's own place")
    mode: Mode = option("pruned", "baseline: frozen backbone + new linear head; pruned: prune, then train the head "
                                 "and the pruned layers' scope; finetune: as pruned, without pruning.", "method",
                       choices=MODES)
    criterion: str = option("eigenvector", "Neuron importance criterion for pruning.", "method",
                            choices=CRITERION_NAMES)
    keep: float = option(0.5, "Fraction of neurons kept in each pruned layer.", "method", range=KEEP)
    tau: float = option(DEFAULT_TAU, "Cosine-similarity threshold of the neuron graph.", "method", range=TAU)
    layers: list[str] | None = option(None, "Comma-separated layers to prune, or 'all' for every prunable layer "
                                            "in the trained scope; none: the backbone's head layer.", "method",
                                      label="layer", none="the backbone's head layer")
    train_scope: TrainScope = option("suffix", "suffix: freeze and cache the backbone's prefix, train its suffix (fast); "
                                        "all: train the whole network on augmented images.", "method",
                              choices=TRAIN_SCOPES)
    epochs: int = option(5, "Training epochs.", "training", range=Range(1, 1000, integer=True))
    batch_size: int = option(32, "Mini-batch size.", "training", range=Range(1, 4096, integer=True))
    lr: float = option(1e-3, "AdamW learning rate of the backbone layers being trained (cosine decay to 0); the "
                             "new head learns at head_lr_scale x lr.", "training", range=Range(0, 10, low_open=True))
    head_lr_scale: float = option(10.0, "The new classifier head learns at this multiple of --lr.", "training",
                                  range=Range(0, 1000, low_open=True))
    weight_decay: float = option(1e-4, "AdamW weight decay.", "training", range=Range(0, 10))
    image_size: int | None = option(None, "Square input size; none: the backbone's own. Bounded by what the "
                                          "backbone can take (its registry entry).", "data",
                                    range=Range(min(spec.min_input_size for spec in BACKBONES.values()),
                                                MAX_INPUT_SIZE, integer=True), none="the backbone's own")
    seed: int = option(0, "Seed of the split, head init and shuffling.", "training",
                       range=Range(0, 2**31 - 1, integer=True))
    train_per_class: int | None = option(None, "Keep this many training images per class (few-shot); none: all.",
                                         "data", range=Range(1, 10**7, integer=True), none="all")
    val_fraction: float = option(0.15, "Fraction of each class for validation.", "data", range=FRACTION)
    test_fraction: float = option(0.15, "Fraction of each class for test.", "data", range=FRACTION)
    device: str = option("auto", "auto: CUDA, then MPS, then CPU.", "training", choices=DEVICES)
    log_every: int = option(10, "Report training metrics every N optimizer steps.", "training",
                            range=Range(1, 10**6, integer=True))
    disk_cache: bool = option(False, "Also keep frozen features on disk (under CPRUNE_HOME) for later runs.",
                              "training")

    def check_together(self) -> None:
        """A checkpoint needs weights='checkpoint'; the image size must suit the backbone; the held-out
        fractions must leave images for training."""
        if self.weights == "checkpoint" and not self.checkpoint:
            raise ConfigError("weights='checkpoint' needs a checkpoint file.")
        if self.image_size is not None:
            get_spec(self.backbone).input_sizes.check(self.image_size, f"image_size for {self.backbone}")
        check_split_arguments(self.val_fraction, self.test_fraction, self.train_per_class)


@dataclass(frozen=True)
class RunSummary:
    """The outcome of one run: its end status and final figures (None where not reached)."""

    status: RunStatus
    message: str
    test_acc: float | None = None
    val_acc: float | None = None
    train_acc: float | None = None
    train_loss: float | None = None
    params: int | None = None
    macs: int | None = None
    latency_ms: float | None = None
    epochs_done: int = 0
    steps_done: int = 0
    total_steps: int = 0
    duration_s: float = 0.0
    n_skipped: int = 0  # images that could not be read, at indexing and during the run
    n_images: dict[str, int] = field(default_factory=dict)  # split -> images
    classes: list[str] = field(default_factory=list)
    kept: dict[str, int] = field(default_factory=dict)  # pruned layer -> neurons kept
    channels: dict[str, int] = field(default_factory=dict)  # pruned layer -> neurons before pruning
    device: str = ""
    error: str | None = None  # what failed the run: a CPruneError class name, or "OutOfMemory"

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", RunStatus(self.status))  # also from the plain string of a stored run

    @property
    def refused(self) -> bool:
        """True for a run that failed before its first step on what it was given: an error of the command
        line's usage or input kinds (exit status 2 or 3: a setting, dataset, checkpoint or weights that cannot
        be used). Such a run is not recorded (store.Recording)."""
        return self.status == RunStatus.FAILED and self.steps_done == 0 and exit_code_for(self.error) in (2, 3)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RunSummary:
        """From a stored dict; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


@dataclass
class MetricEvent:
    """One point of a run's metric stream (see EventKind for what each kind carries)."""

    kind: EventKind
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
    final: RunSummary | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> MetricEvent:
        values = dict(values)
        values["kind"] = EventKind(values["kind"])
        if values.get("final") is not None:
            values["final"] = RunSummary.from_dict(values["final"])
        return cls(**values)


@dataclass
class RunResult:
    """A run that has ended: its history, summary and trained model (on the CPU; None when it failed
    before training), with where it was recorded and saved when it was."""

    config: FinetuneConfig
    history: list[MetricEvent]
    summary: RunSummary
    model: nn.Module | None
    spec: BackboneSpec
    classes: list[str]
    kept: dict[str, list[int]]  # pruned layer -> original indices of kept neurons
    run_id: int | None = None
    model_dir: str | None = None

    @property
    def status(self) -> RunStatus:
        return self.summary.status


class Progress:
    """A run's counters (one object, so the training loop stays short): steps, epochs and throughput; ``event`` stamps them on every MetricEvent it makes
    and appends it to ``history`` (and hands it to ``on_event``)."""

    def __init__(self, on_event: Callable[[MetricEvent], None] | None = None):
        self.history: list[MetricEvent] = []
        self.on_event = on_event
        self.started = time.perf_counter()
        self.train_started: float | None = None
        self.step = 0
        self.total_steps = 0
        self.epoch = 0
        self.images_seen = 0

    def start_training(self, total_steps: int, message: str) -> MetricEvent:
        self.total_steps = total_steps
        event = self.event(EventKind.START, message=message)
        self.train_started = time.perf_counter()
        return event

    def count_step(self, images: int) -> None:
        self.step += 1
        self.images_seen += images

    def event(self, kind: EventKind, **values: Any) -> MetricEvent:
        now = time.perf_counter()
        images_per_s = eta_s = None
        if self.train_started is not None and self.step:
            training_time = now - self.train_started
            images_per_s = self.images_seen / training_time if training_time > 0 else None
            eta_s = training_time / self.step * (self.total_steps - self.step)
        values = {"epoch": self.epoch, "step": self.step, "total_steps": self.total_steps,
                  "progress": self.step / self.total_steps if self.total_steps else 0.0,
                  "elapsed_s": now - self.started, "images_per_s": images_per_s, "eta_s": eta_s, **values}
        event = MetricEvent(kind=kind, **values)
        self.history.append(event)
        if self.on_event is not None:
            self.on_event(event)
        return event

    def end(self, status: RunStatus, message: str, **figures: Any) -> MetricEvent:
        """The last event: a RunSummary of ``figures`` and of what the counters saw."""
        last_epoch = next((e for e in reversed(self.history) if e.kind == EventKind.EPOCH), None)
        summary = RunSummary(
            status=status, message=message,
            val_acc=last_epoch.val_acc if last_epoch else None,
            train_acc=last_epoch.train_acc if last_epoch else None,
            train_loss=last_epoch.train_loss if last_epoch else None,
            epochs_done=sum(e.kind == EventKind.EPOCH for e in self.history),
            steps_done=self.step, total_steps=self.total_steps, duration_s=time.perf_counter() - self.started,
            **figures,
        )
        return self.event(EventKind.END, message=message, final=summary,
                          eta_s=0.0 if status == RunStatus.FINISHED else None)
