"""Background work for a roomful of visitors: a first-in, first-out queue of launches.

A launch is one visitor's press of Start: fine-tuning runs (e.g. the baseline, then the pruned
model) that run one after another, or one analysis task (e.g. the importance analysis), which
reports its progress and keeps its result for the visitor. The ``RunQueue`` lives in st.cache_resource, so it outlives reruns and
page switches; plain worker threads (no st.* calls) take launches in the order they came, at
most ``CPRUNE_CONCURRENT_RUNS`` at a time (default 1: on a CPU one run already uses every core).

Each launch belongs to the visitor (browser session) that made it: only that visitor sees its
runs' progress and can stop it; everyone sees how many launches are queued or running. A visitor
may have at most ``CPRUNE_QUEUED_RUNS_PER_VISITOR`` launches waiting or running (default 2).
Stopping a queued launch takes it out of the queue; stopping a running one ends it within a batch.
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

import streamlit as st

from cprune_core import (ConfigError, CPruneError, FinetuneConfig, MetricEvent, RunStore, StopRequested, StoreError,
                         run_and_record)
from cprune_core.data import data_roots
from cprune_core.paths import models_dir
from cprune_core.schema import EventKind, RunSummary

# runner(config, stop, on_event, owner): runs one config to its end, handing every event to on_event.
Runner = Callable[[FinetuneConfig, threading.Event, Callable[[MetricEvent], None], str], object]
# task(stop, progress) -> result, where progress(done, total, message) reports how far it got (total 0: unknown).
Task = Callable[[threading.Event, Callable[[int, int, str], None]], object]
log = logging.getLogger(__name__)
KEPT_PER_VISITOR = 5  # ended launches a visitor still sees
KEPT_IN_ALL = 200  # ended launches kept at all (visitors who left leave theirs behind)
MAX_WAITING = 100  # launches waiting, everyone's: more would only wait for hours


@dataclass
class Track:
    """One run of a launch (e.g. the baseline, or the pruned model) and its events so far."""

    label: str
    config: FinetuneConfig
    events: list[MetricEvent] = field(default_factory=list)

    @property
    def final(self) -> RunSummary | None:
        return self.events[-1].final if self.events and self.events[-1].kind == EventKind.END else None


class LaunchState(StrEnum):
    """Where a launch stands in the queue (its runs' own outcome is their RunStatus)."""

    QUEUED = "queued"
    RUNNING = "running"
    ENDED = "ended"


@dataclass
class Launch:
    id: str
    owner: str
    tracks: list[Track]  # fine-tuning runs; none for a task
    created: float
    task: Task | None = None
    title: str = ""  # what the task is, in words
    stop: threading.Event = field(default_factory=threading.Event)
    state: LaunchState = LaunchState.QUEUED
    error: str = ""  # a crash of the worker itself, i.e. a bug (a failed run ends with status "failed")
    progress: tuple[int, int, str] = (0, 0, "")  # a task's (done, total, message)
    result: object = None  # what a task returned
    failure: str = ""  # why a task could not be done (a CPruneError's message, or that it was stopped)

    def copy(self) -> Launch:
        """A snapshot for a page: the same fields, each track's events copied (the worker appends to them)."""
        return replace(self, tracks=[Track(t.label, t.config, list(t.events)) for t in self.tracks])


@dataclass
class VisitorView:
    """What one visitor may see: their own launches (newest first) and how busy the server is."""

    launches: list[Launch]
    positions: dict[str, int]  # launch id -> place in the queue (1 = next), for queued launches
    queued: int  # launches waiting, everyone's
    running: int  # launches running, everyone's

    def of_kind(self, tasks: bool) -> list[Launch]:
        """The fine-tuning launches (``tasks`` False: the Fine-tune page's) or the tasks (the analyses' page)."""
        return [launch for launch in self.launches if (launch.task is not None) == tasks]

    def active(self, tasks: bool) -> bool:
        """Whether any launch of that kind is still waiting or running (its page then polls)."""
        return any(launch.state != LaunchState.ENDED for launch in self.of_kind(tasks))


def _setting(name: str, default: int) -> int:
    value = int(os.environ.get(name, default))
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value}.")
    return value


class RunQueue:
    def __init__(self, runner: Runner, workers: int, per_visitor: int):
        self._runner = runner
        self._per_visitor = per_visitor
        self._lock = threading.Condition()
        self._queue: deque[Launch] = deque()
        self._launches: dict[str, Launch] = {}
        self._threads = [threading.Thread(target=self._work, name=f"cprune-run-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, owner: str, configs: dict[str, FinetuneConfig]) -> Launch:
        """Queue fine-tuning runs for ``owner``; ConfigError when they already have as many launches waiting or
        running as allowed, or the queue is full."""
        return self._enqueue(Launch(uuid.uuid4().hex[:12], owner, [Track(label, c) for label, c in configs.items()],
                                    time.time()))

    def submit_task(self, owner: str, title: str, task: Task) -> Launch:
        """Queue an analysis task for ``owner`` (the same limits as ``submit``)."""
        return self._enqueue(Launch(uuid.uuid4().hex[:12], owner, [], time.time(), task, title))

    def _enqueue(self, launch: Launch) -> Launch:
        owner = launch.owner
        with self._lock:
            pending = [launch for launch in self._launches.values() if launch.owner == owner and launch.state != LaunchState.ENDED]
            if len(pending) >= self._per_visitor:
                raise ConfigError(f"You already have {len(pending)} launch(es) waiting or running (the limit is "
                                  f"{self._per_visitor}). Wait for one to end, or stop one.")
            if len(self._queue) >= MAX_WAITING:
                raise ConfigError(f"The server's queue is full ({MAX_WAITING} launches waiting). Try again later.")
            self._launches[launch.id] = launch
            self._queue.append(launch)
            self._forget_old(owner)
            self._lock.notify()
            return launch.copy()

    def stop(self, owner: str, launch_id: str) -> bool:
        """Stop one of ``owner``'s launches (taken out of the queue, or ended within a batch); False otherwise."""
        with self._lock:
            launch = self._launches.get(launch_id)
            if launch is None or launch.owner != owner or launch.state == LaunchState.ENDED:
                return False
            launch.stop.set()
            if launch.state == LaunchState.QUEUED:
                self._queue.remove(launch)
                launch.state = LaunchState.ENDED
            return True

    def view(self, owner: str) -> VisitorView:
        with self._lock:
            mine = sorted((launch for launch in self._launches.values() if launch.owner == owner),
                          key=lambda launch: launch.created, reverse=True)
            positions = {launch.id: place for place, launch in enumerate(self._queue, 1) if launch.owner == owner}
            running = sum(launch.state == LaunchState.RUNNING for launch in self._launches.values())
            return VisitorView([launch.copy() for launch in mine], positions, len(self._queue), running)

    def is_pending(self, launch_id: str) -> bool:
        """Whether the launch is still waiting or running."""
        with self._lock:
            launch = self._launches.get(launch_id)
            return launch is not None and launch.state != LaunchState.ENDED

    def wait(self, launch_id: str, timeout: float) -> bool:
        """Block until the launch has ended (for tests and scripts); True if it has."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._launches[launch_id].state != LaunchState.ENDED:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True

    def _forget_old(self, owner: str) -> None:
        ended = sorted((launch for launch in self._launches.values() if launch.state == LaunchState.ENDED),
                       key=lambda launch: launch.created)
        for launch in [launch for launch in ended if launch.owner == owner][:-KEPT_PER_VISITOR] + ended[:-KEPT_IN_ALL]:
            self._launches.pop(launch.id, None)

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue:
                    self._lock.wait()
                launch = self._queue.popleft()
                launch.state = LaunchState.RUNNING
            try:
                if launch.task is not None:
                    self._run_task(launch)
                for track in launch.tracks:
                    if launch.stop.is_set():
                        break
                    self._runner(track.config, launch.stop, lambda event, track=track: self._append(track, event),
                                 launch.owner)
            except Exception:  # a bug, not a failed run: keep the server alive and show it to its visitor
                log.exception("A background launch crashed")
                with self._lock:
                    launch.error = traceback.format_exc(limit=6)
            with self._lock:
                launch.state = LaunchState.ENDED
                self._lock.notify_all()

    def _run_task(self, launch: Launch) -> None:
        def progress(done: int, total: int, message: str) -> None:
            with self._lock:
                launch.progress = (done, total, message)

        try:
            result = launch.task(launch.stop, progress)
        except StopRequested:
            failure = "Stopped."
        except CPruneError as error:  # the input cannot be used: said to the visitor, not a bug
            failure = str(error)
        else:
            failure = ""
        with self._lock:
            launch.result = None if failure else result
            launch.failure = failure

    def _append(self, track: Track, event: MetricEvent) -> None:
        with self._lock:
            track.events.append(event)


def recorded_run(config: FinetuneConfig, stop: threading.Event, on_event: Callable[[MetricEvent], None],
                 owner: str, *, models_budget: int) -> None:
    """Run ``config`` with the dataset confined to the data roots, recorded in the run store as ``owner``'s,
    its model saved in a new folder of models_dir(), then the saved models kept within ``models_budget`` bytes.
    A store that cannot be used does not stop the run."""
    try:
        store = RunStore()
    except StoreError as error:
        store = None
        on_event(MetricEvent(EventKind.PREPARE, message=f"This run is not recorded: {error}"))
    else:
        if store.recovery_note:
            on_event(MetricEvent(EventKind.PREPARE, message=store.recovery_note))
    save_dir: Path = models_dir() / uuid.uuid4().hex
    run_and_record(config, store, save_dir, stop, on_event, owner=owner, data_roots=data_roots())
    keep_models_within(models_dir(), models_budget, newest=save_dir)


_models_lock = threading.Lock()  # one clean-up at a time (several runs may end together)


def keep_models_within(folder: Path, budget_bytes: int, newest: Path) -> None:
    """Delete the oldest saved models (folders of ``folder``, by the time they were saved) until the rest fit
    in ``budget_bytes``; never ``newest``, nor a model saved in the last minute (another run's, just
    written). Visitors' runs would otherwise fill the disk; a deleted model is no longer offered on Results."""
    with _models_lock:
        sizes: dict[Path, tuple[float, int]] = {}
        for path in folder.iterdir() if folder.is_dir() else []:
            try:
                if path.is_dir() and not path.is_symlink():
                    sizes[path] = (path.stat().st_mtime, sum(f.stat().st_size for f in path.iterdir() if f.is_file()))
            except OSError:  # gone meanwhile
                continue
        total = sum(size for _, size in sizes.values())
        recent = time.time() - 60
        for path, (saved, size) in sorted(sizes.items(), key=lambda item: item[1][0]):
            if total <= budget_bytes:
                break
            if path != newest and saved < recent:
                shutil.rmtree(path, ignore_errors=True)
                total -= size


@st.cache_resource
def run_queue() -> RunQueue:
    """The server's one queue."""
    runner = functools.partial(recorded_run, models_budget=_setting("CPRUNE_MODELS_BUDGET_MB", 5120) * 2**20)
    return RunQueue(runner, _setting("CPRUNE_CONCURRENT_RUNS", 1), _setting("CPRUNE_QUEUED_RUNS_PER_VISITOR", 2))
