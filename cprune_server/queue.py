"""A first-in, first-out queue of launches for a roomful of visitors, run by plain worker threads.

A launch is one press of Start: fine-tuning runs (e.g. the baseline, then the pruned model) that run
one after another, or one task (e.g. the importance analysis) that reports its progress and keeps its
result. Worker threads take launches in the order they came, ``QueueLimits.workers`` at a time.

Owners. Every launch belongs to an owner: an opaque string the caller chooses (the app: a private id
per browser, see visitors.py). Only the owner sees a launch's runs (``view``) and stops it (``stop``);
everyone sees how many launches wait and run. An owner may have ``QueueLimits.per_owner`` launches
waiting or running at most, and the anonymous owners (``visitors.is_anonymous``: sessions whose browser
brought no cookie the server signed) ``QueueLimits.anonymous`` all together. Stopping a waiting launch
takes it out of the queue; stopping a running one ends it within a batch.

Presence. The caller says where an owner is (``attend(owner, session)``, at every page run) and the
queue asks ``is_connected(session)`` (presence.py): a launch never starts while its owner has no
session connected, and once none has been for ``QueueLimits.grace_s`` seconds, ``sweep`` takes the
owner's waiting launches out of the queue and stops their running ones (their runs so far stay in the
run store, as stopped). ``sweep`` also stops a launch that has run ``QueueLimits.max_run_s`` seconds.
A sweeper thread calls ``sweep`` every few seconds.

The operator. ``overview`` shows everyone's launches, their owners as "visitor N", never the ids, and
where each is (here, away, gone; how long unseen); ``clear_waiting`` empties the queue and ``stop_any``
stops any one launch.
"""
from __future__ import annotations

import logging
import math
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from cprune_core.errors import ConfigError, CPruneError, StopRequested
from cprune_core.schema import EventKind, FinetuneConfig, MetricEvent, RunSummary
from .presence import Attendance, Presence
from .settings import setting
from .visitors import is_anonymous

__all__ = ["Runner", "Task", "Track", "LaunchState", "Launch", "VisitorView", "QueueOverview", "QueueLimits",
           "RunQueue", "FINETUNE", "STOPPED_BY_OWNER", "OWNER_AWAY", "STOPPED_BY_OPERATOR", "out_of_time"]

# runner(config, stop, on_event, owner): runs one config to its end, handing every event to on_event.
Runner = Callable[[FinetuneConfig, threading.Event, Callable[[MetricEvent], None], str], object]
# task(stop, progress) -> result, where progress(done, total, message) reports how far it got (total 0: unknown).
Task = Callable[[threading.Event, Callable[[int, int, str], None]], object]
log = logging.getLogger(__name__)
FINETUNE = "finetune"  # the kind of a launch of fine-tuning runs (a task's kind is its own)
KEPT_PER_OWNER = 5  # ended launches an owner still sees
KEPT_IN_ALL = 200  # ended launches kept at all (owners who left leave theirs behind)
# Why a launch was stopped, or taken out of the queue (Launch.ended_because), in words for its owner.
STOPPED_BY_OWNER = "the launch was stopped"
OWNER_AWAY = "every tab of this browser was closed"
STOPPED_BY_OPERATOR = "the server's operator stopped it"


def out_of_time(max_run_s: float) -> str:
    """Why a launch that ran ``max_run_s`` seconds was stopped, in words for its owner."""
    return f"it ran for this server's limit of {max_run_s / 60:g} minutes"


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
    created: float  # time.time() when it was queued
    task: Task | None = None
    title: str = ""  # what the task is, in words
    kind: str = FINETUNE  # which page shows it: fine-tuning runs, or the kind of task ("importance", "atlas")
    stop: threading.Event = field(default_factory=threading.Event)
    state: LaunchState = LaunchState.QUEUED
    error: str = ""  # a crash of the worker itself, i.e. a bug (a failed run ends with status "failed")
    progress: tuple[int, int, str] = (0, 0, "")  # a task's (done, total, message)
    result: object = None  # what a task returned
    failure: str = ""  # why a task could not be done (a CPruneError's message, or that it was stopped)
    started: float | None = None  # time.time() when a worker took it (None: it never ran)
    ended_because: str = ""  # why it was stopped or taken out of the queue (STOPPED_BY_OWNER, ...), if it was

    def copy(self) -> Launch:
        """A snapshot for a page: the same fields, each track's events copied (the worker appends to them)."""
        return replace(self, tracks=[Track(t.label, t.config, list(t.events)) for t in self.tracks])


@dataclass
class VisitorView:
    """What one owner may see: their own launches (newest first) and how busy the server is."""

    launches: list[Launch]
    positions: dict[str, int]  # launch id -> place in the queue (1 = next), for queued launches
    queued: int  # launches waiting, everyone's
    running: int  # launches running, everyone's

    def of_kind(self, kind: str) -> list[Launch]:
        """The launches of one kind: FINETUNE (the Fine-tune page's runs) or a kind of task (its page's)."""
        return [launch for launch in self.launches if launch.kind == kind]

    def active(self, kind: str) -> bool:
        """Whether any launch of that kind is still waiting or running (its page then polls)."""
        return any(launch.state != LaunchState.ENDED for launch in self.of_kind(kind))


@dataclass
class QueueOverview:
    """What the operator sees: everyone's launches (newest first), each owner replaced by a label ("visitor 3",
    the same for the life of the queue), and where each of those visitors is."""

    launches: list[Launch]
    positions: dict[str, int]  # launch id -> place in the queue (1 = next), for queued launches
    presence: dict[str, Presence]  # label -> where that visitor is now


@dataclass(frozen=True)
class QueueLimits:
    """How much the queue takes on."""

    workers: int = 1  # launches running at a time (on a CPU one run already uses every core)
    per_owner: int = 2  # launches one owner may have waiting or running
    anonymous: int = 4  # launches all anonymous owners together may have waiting or running
    max_waiting: int = 100  # launches waiting, everyone's: more would only wait for hours
    grace_s: float = 60.0  # an owner with no session connected this long loses their launches
    max_run_s: float = math.inf  # a launch running this long is stopped

    @classmethod
    def from_environment(cls) -> QueueLimits:
        """``CPRUNE_CONCURRENT_RUNS`` workers, ``CPRUNE_QUEUED_RUNS_PER_VISITOR`` per owner (and twice that for the
        anonymous ones together), ``CPRUNE_VISITOR_GRACE_S`` and ``CPRUNE_MAX_LAUNCH_MINUTES`` (settings.py: their
        defaults where unset, ConfigError naming a variable whose value cannot be used)."""
        per_owner = setting("CPRUNE_QUEUED_RUNS_PER_VISITOR")
        return cls(workers=setting("CPRUNE_CONCURRENT_RUNS"), per_owner=per_owner, anonymous=2 * per_owner,
                   grace_s=setting("CPRUNE_VISITOR_GRACE_S"), max_run_s=setting("CPRUNE_MAX_LAUNCH_MINUTES") * 60)


class RunQueue:
    """The queue and its worker threads (daemons, started here). Every method is safe from any thread.

    ``is_connected(session)``: whether a browser session is still there (default: always, as for a script);
    ``clock``: seconds for the grace time (tests pass their own); ``sweep_every_s``: how often a sweeper
    thread calls ``sweep`` (None: no thread, the caller sweeps)."""

    def __init__(self, runner: Runner, limits: QueueLimits = QueueLimits(),
                 is_connected: Callable[[str], bool] = lambda session: True,
                 clock: Callable[[], float] = time.monotonic, sweep_every_s: float | None = None):
        self._runner = runner
        self.limits = limits
        self._lock = threading.Condition()  # guards every launch; notified whenever one changes
        self._queue: deque[Launch] = deque()
        self._launches: dict[str, Launch] = {}
        self._attendance = Attendance(is_connected, limits.grace_s, clock)
        self._labels: dict[str, str] = {}  # owner -> "visitor N", for the operator
        for i in range(limits.workers):
            threading.Thread(target=self._work, name=f"cprune-run-{i}", daemon=True).start()
        if sweep_every_s is not None:
            threading.Thread(target=self._sweep_every, args=(sweep_every_s,), name="cprune-sweep", daemon=True).start()

    def submit(self, owner: str, configs: dict[str, FinetuneConfig]) -> Launch:
        """Queue fine-tuning runs (label -> config, run in that order) for ``owner``; a snapshot of the launch.
        ConfigError when the owner already has as many launches waiting or running as allowed, or the queue
        is full."""
        return self._enqueue(Launch(uuid.uuid4().hex[:12], owner, [Track(label, c) for label, c in configs.items()],
                                    time.time()))

    def submit_task(self, owner: str, title: str, task: Task, kind: str = "task") -> Launch:
        """Queue a task of ``kind`` for ``owner`` (the same limits as ``submit``). Its result is kept in the
        launch; a CPruneError it raises, or StopRequested, becomes the launch's ``failure``."""
        return self._enqueue(Launch(uuid.uuid4().hex[:12], owner, [], time.time(), task, title, kind=kind))

    def stop(self, owner: str, launch_id: str) -> bool:
        """Stop one of ``owner``'s launches (taken out of the queue, or ended within a batch); False when it
        is not theirs or has already ended."""
        with self._lock:
            launch = self._launches.get(launch_id)
            return launch is not None and launch.owner == owner and self._stop(launch, STOPPED_BY_OWNER)

    def attend(self, owner: str, session: str) -> None:
        """``owner`` is here, in browser session ``session`` (the app: at every page run). Their launches may
        start again, and wait for them as long as one of their sessions stays connected."""
        with self._lock:
            self._attendance.attend(owner, session)
            self._lock.notify_all()

    def sweep(self) -> int:
        """Take out of the queue the waiting launches, and stop the running ones, of every owner none of whose
        sessions has been connected for the grace time; stop every launch that has run ``max_run_s`` seconds.
        Returns how many launches were taken out or stopped."""
        with self._lock:
            gone = set(self._attendance.gone())
            ended = [launch for launch in self._launches.values()
                     if launch.owner in gone and self._stop(launch, OWNER_AWAY)]
            too_long = time.time() - self.limits.max_run_s
            for launch in self._launches.values():
                if launch.state == LaunchState.RUNNING and launch.started < too_long and not launch.stop.is_set():
                    ended.append(launch)
                    self._stop(launch, out_of_time(self.limits.max_run_s))
            return len(ended)

    def overview(self) -> QueueOverview:
        """For the operator: everyone's launches, newest first, their owners as labels, and where each is."""
        with self._lock:
            everyone = sorted(self._launches.values(), key=lambda launch: launch.created, reverse=True)
            presence = {self._labels[owner]: self._attendance.presence(owner)
                        for owner in {launch.owner for launch in everyone}}
            return QueueOverview([replace(launch.copy(), owner=self._labels[launch.owner]) for launch in everyone],
                                 {launch.id: place for place, launch in enumerate(self._queue, 1)}, presence)

    def clear_waiting(self) -> int:
        """For the operator: take every waiting launch out of the queue. Returns how many."""
        with self._lock:
            waiting = list(self._queue)
            for launch in waiting:
                self._withdraw(launch, STOPPED_BY_OPERATOR)
            return len(waiting)

    def stop_any(self, launch_id: str) -> bool:
        """For the operator: stop any launch, whoever's; False when there is none such or it has ended."""
        with self._lock:
            launch = self._launches.get(launch_id)
            return launch is not None and self._stop(launch, STOPPED_BY_OPERATOR)

    def view(self, owner: str) -> VisitorView:
        """Snapshots of ``owner``'s launches, newest first, and everyone's counts."""
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

    def wait(self, launch_id: str, timeout: float, until: Callable[[Launch], bool] | None = None) -> bool:
        """Block until ``until(launch)`` holds (default: the launch has ended), woken at each change of the
        launch (state, event, progress); True if it holds, False after ``timeout`` seconds. ``until`` sees
        the live launch under the queue's lock: it must only read it. For tests and scripts."""
        def reached() -> bool:
            launch = self._launches.get(launch_id)
            if launch is None:  # forgotten long after it ended
                return until is None
            return until(launch) if until is not None else launch.state == LaunchState.ENDED

        with self._lock:
            return self._lock.wait_for(reached, timeout)

    def _enqueue(self, launch: Launch) -> Launch:
        with self._lock:
            pending = self._pending(launch.owner)
            if pending >= self.limits.per_owner:
                raise ConfigError(f"You already have {pending} launch(es) waiting or running (the limit is "
                                  f"{self.limits.per_owner}). Wait for one to end, or stop one.")
            if is_anonymous(launch.owner) and self._pending_of(is_anonymous) >= self.limits.anonymous:
                raise ConfigError(f"Visitors whose browser holds no cookie of this server share "
                                  f"{self.limits.anonymous} launches waiting or running, and they are taken. Allow "
                                  "this site's cookies and reload the page, or try again later.")
            if len(self._queue) >= self.limits.max_waiting:
                raise ConfigError(f"The server's queue is full ({self.limits.max_waiting} launches waiting). "
                                  "Try again later.")
            self._launches[launch.id] = launch
            self._labels.setdefault(launch.owner, f"visitor {len(self._labels) + 1}")
            self._queue.append(launch)
            self._forget_old(launch.owner)
            self._lock.notify_all()
            return launch.copy()

    def _pending(self, owner: str) -> int:
        """How many of ``owner``'s launches wait or run: what the per-owner limit counts."""
        return self._pending_of(owner.__eq__)

    def _pending_of(self, owners: Callable[[str], bool]) -> int:
        """How many launches of the owners for whom ``owners`` says True wait or run."""
        return sum(owners(launch.owner) and launch.state != LaunchState.ENDED for launch in self._launches.values())

    def _stop(self, launch: Launch, because: str) -> bool:
        """Stop a launch that waits (taken out of the queue) or runs (ended within a batch); False when it has
        ended (the lock is held)."""
        if launch.state == LaunchState.ENDED:
            return False
        if launch.state == LaunchState.QUEUED:
            self._withdraw(launch, because)
        else:
            launch.stop.set()
            launch.ended_because = because
            self._lock.notify_all()
        return True

    def _withdraw(self, launch: Launch, because: str) -> None:
        """Take a waiting launch out of the queue: it ends without having run (the lock is held)."""
        self._queue.remove(launch)
        launch.stop.set()
        launch.state = LaunchState.ENDED
        launch.ended_because = because
        self._lock.notify_all()

    def _forget_old(self, owner: str) -> None:
        ended = sorted((launch for launch in self._launches.values() if launch.state == LaunchState.ENDED),
                       key=lambda launch: launch.created)
        for launch in [launch for launch in ended if launch.owner == owner][:-KEPT_PER_OWNER] + ended[:-KEPT_IN_ALL]:
            self._launches.pop(launch.id, None)

    def _next(self) -> Launch | None:
        """The first waiting launch whose owner is here (the lock is held)."""
        return next((launch for launch in self._queue if self._attendance.is_here(launch.owner)), None)

    def _sweep_every(self, every_s: float) -> None:
        while True:
            time.sleep(every_s)
            self.sweep()
            with self._lock:  # an owner's session may have come back without a page run (a dropped connection)
                self._lock.notify_all()

    def _work(self) -> None:
        while True:
            with self._lock:
                launch = self._lock.wait_for(self._next)
                self._queue.remove(launch)
                launch.state, launch.started = LaunchState.RUNNING, time.time()
                self._lock.notify_all()
            try:
                self._run(launch)
            except Exception:  # a bug, not a failed run: keep the server alive and show it to its owner
                log.exception("A background launch crashed")
                with self._lock:
                    launch.error = traceback.format_exc(limit=6)
            with self._lock:
                launch.state = LaunchState.ENDED
                self._lock.notify_all()

    def _run(self, launch: Launch) -> None:
        if launch.task is not None:
            self._run_task(launch)
        for track in launch.tracks:
            if launch.stop.is_set():
                break
            self._runner(track.config, launch.stop, lambda event, track=track: self._append(track, event),
                         launch.owner)

    def _run_task(self, launch: Launch) -> None:
        def progress(done: int, total: int, message: str) -> None:
            with self._lock:
                launch.progress = (done, total, message)
                self._lock.notify_all()

        try:
            result = launch.task(launch.stop, progress)
        except StopRequested:
            failure = "Stopped."
        except CPruneError as error:  # the input cannot be used: said to the owner, not a bug
            failure = str(error)
        else:
            failure = ""
        with self._lock:
            launch.result = None if failure else result
            launch.failure = failure

    def _append(self, track: Track, event: MetricEvent) -> None:
        with self._lock:
            track.events.append(event)
            self._lock.notify_all()
