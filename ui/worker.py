"""Background fine-tuning runs, one at a time per server.

The ``RunManager`` lives in st.cache_resource, so it outlives reruns, page switches and browser
refreshes. A plain thread (no st.* calls) runs each run in turn through ``run_and_record``
and appends its events to lock-protected lists; pages read a ``snapshot`` and poll it.
Stopping sets a threading.Event that the engine checks before every batch. Each run is
recorded in the run store and its model saved under paths.models_dir(), as the CLI does.
"""
from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import streamlit as st

from cprune_core import FinetuneConfig, MetricEvent, RunStore, run_and_record
from cprune_core.paths import models_dir
from cprune_core.schema import EventKind, RunSummary

# runner(config, stop, on_event): runs one config to its end, handing every event to on_event.
Runner = Callable[[FinetuneConfig, threading.Event, Callable[[MetricEvent], None]], object]


@dataclass
class Track:
    """One run of a launch (e.g. the baseline, or the pruned model) and its events so far."""

    label: str
    config: FinetuneConfig
    events: list[MetricEvent] = field(default_factory=list)

    @property
    def final(self) -> RunSummary | None:
        return self.events[-1].final if self.events and self.events[-1].kind == EventKind.END else None


@dataclass
class Snapshot:
    running: bool
    stopping: bool
    started: float | None  # time.time() of the launch
    tracks: list[Track]
    error: str  # a crash of the worker itself (not a failed run: those end with status "failed")


class RunManager:
    def __init__(self, runner: Runner):
        self._runner = runner
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tracks: list[Track] = []
        self._started: float | None = None
        self._error = ""

    def start(self, configs: dict[str, FinetuneConfig]) -> bool:
        """Launch the runs in order; False (nothing started) if a launch is still running."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self._stop = threading.Event()
            self._tracks = [Track(label, config) for label, config in configs.items()]
            self._started, self._error = time.time(), ""
            self._thread = threading.Thread(target=self._work, args=(list(self._tracks), self._stop),
                                            name="cprune-finetune", daemon=True)
            self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float) -> bool:
        """Block until the launch ends (for tests and scripts); True if it has."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def snapshot(self) -> Snapshot:
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
            tracks = [Track(t.label, t.config, list(t.events)) for t in self._tracks]
            return Snapshot(running, running and self._stop.is_set(), self._started, tracks, self._error)

    def _append(self, track: Track, event: MetricEvent) -> None:
        with self._lock:
            track.events.append(event)

    def _work(self, tracks: list[Track], stop: threading.Event) -> None:
        try:
            for track in tracks:
                if stop.is_set():
                    break
                self._runner(track.config, stop, lambda event, track=track: self._append(track, event))
        except Exception:  # a bug, not a failed run: keep the server alive and show it
            with self._lock:
                self._error = traceback.format_exc(limit=6)


def recorded_run(config: FinetuneConfig, stop: threading.Event, on_event: Callable[[MetricEvent], None]) -> None:
    """Run ``config``, recorded in the run store, its model saved in a new folder of models_dir()."""
    run_and_record(config, RunStore(), models_dir() / uuid.uuid4().hex, stop, on_event)


@st.cache_resource
def run_manager() -> RunManager:
    """The server's one run manager."""
    return RunManager(recorded_run)
