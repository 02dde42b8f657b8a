"""How long work reports how far it got, and how it stops.

- ``Progress``: a run's counters and the events they make (one object, so the training loop stays short).
- ``ProgressCallback`` and ``report``: ``progress(done, total, message)``, the callback every long step
  below the app's worker takes (total 0: not known yet).
- ``check_stop``: the one way to stop. Below the engine, work that sees its ``stop`` Event set raises
  ``StopRequested``; ``Finetuner`` catches it in one place and ends the run "stopped".
- ``Steps``: the one way to drain a generator that yields its steps and returns its result.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any, Generic, TypeVar

from .errors import StopRequested
from .schema import EventKind, MetricEvent, RunStatus, RunSummary

__all__ = ["Progress", "ProgressCallback", "report", "check_stop", "Steps"]

ProgressCallback = Callable[[int, int, str], None]  # (done, total, message); total 0 while not known

Step = TypeVar("Step")
Result = TypeVar("Result")


def report(progress: ProgressCallback | None, done: int, total: int, message: str) -> None:
    """Call ``progress(done, total, message)``; nothing when ``progress`` is None."""
    if progress is not None:
        progress(done, total, message)


def check_stop(stop: threading.Event | None, message: str = "Stopped.") -> None:
    """Raise ``StopRequested(message)`` when ``stop`` is set; nothing when it is None or clear.

    Example: ``for batch in loader: check_stop(stop); ...`` stops before the next batch.
    """
    if stop is not None and stop.is_set():
        raise StopRequested(message)


class Steps(Generic[Step, Result]):
    """A generator's steps, then what it returned: ``for step in steps: ...``, then ``steps.result``.

    For sub-tasks written as generators that yield their steps (e.g. a batch number) and return their
    result: the caller turns each step into what it reports (an event, a progress callback) with a
    plain ``for`` loop. An exception of the generator (StopRequested included) propagates from the loop.

    Example::

        steps = Steps(prefix_features(...))
        for batch, batches in steps:
            report(progress, batch, batches, "Computing features")
        features = steps.result
    """

    def __init__(self, generator: Generator[Step, Any, Result]):
        self._generator = generator
        self._done = False
        self._result: Result | None = None

    def __iter__(self) -> Iterator[Step]:
        self._result = yield from self._generator
        self._done = True

    @property
    def result(self) -> Result:
        """What the generator returned. RuntimeError before the loop has run to the end."""
        if not self._done:
            raise RuntimeError("Steps.result is known once the loop over the steps has ended.")
        return self._result


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
