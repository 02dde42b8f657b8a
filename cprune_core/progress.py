"""A run's counters and the events they make (one object, so the training loop stays short)."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .schema import EventKind, MetricEvent, RunStatus, RunSummary

__all__ = ["Progress"]


class Progress:
    """Steps, epochs and throughput of one run; ``event`` stamps them on every MetricEvent it makes
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
