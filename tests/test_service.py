"""The app's server side without Streamlit: the run queue, its owners and limits, the uploads (on disk, and in
Streamlit's upload endpoint's memory) and saved models, what a visitor may do (their Access).

Launches here are tasks and runners that wait on events the test sets, so each step happens when the test
says; ``RunQueue.wait`` (woken by every change of a launch) tells when the queue has reached a state.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from cprune_core import CheckpointError, ConfigError, DatasetError, FinetuneConfig, StopRequested
from cprune_core.access import COMMAND_LINE, Access
from cprune_core.checkpoint import MODEL_FILES
from cprune_core.paths import ASSETS_DIR
from cprune_core.schema import EventKind, MetricEvent, RunStatus, RunSummary
from cprune_server import (FINETUNE, OWNER_AWAY, STOPPED_BY_OPERATOR, STOPPED_BY_OWNER, LaunchState, QueueLimits,
                           Presence, RunQueue, UploadMemory, UploadRefused, Uploads, Whereabouts, anonymous_visitor, data_roots,
                           downloadable_runs, keep_models_within, launch_user, out_of_time, uses_in_progress,
                           visitor_access)

WAIT = 60  # seconds: only a broken queue takes this long


def no_runner(*args):
    raise AssertionError("no fine-tuning run was queued")


def gated(gate: threading.Event, ran: list[str], name: str, result: object = None):
    """A task that records that it ran, then waits for ``gate`` (or its own stop)."""
    def task(stop: threading.Event, progress) -> object:
        ran.append(name)
        progress(0, 1, f"{name} waits")
        while not gate.wait(0.01):  # a short wait, so a stop is seen too
            if stop.is_set():
                raise StopRequested("stopped")
        return result

    return task


def running(launch) -> bool:
    return launch.state == LaunchState.RUNNING


def started(queue: RunQueue, owner: str, name: str, gate: threading.Event, ran: list[str]):
    """A gated task of ``owner``'s, submitted and running."""
    launch = queue.submit_task(owner, name, gated(gate, ran, name))
    assert queue.wait(launch.id, WAIT, until=running)
    return launch


def ended(queue: RunQueue, *launches) -> None:
    for launch in launches:
        assert queue.wait(launch.id, WAIT), f"{launch.title or launch.id} did not end"


@pytest.fixture
def gate():
    gate = threading.Event()
    yield gate
    gate.set()  # nothing is left waiting on it


def test_launches_run_first_in_first_out_and_each_owner_sees_its_place(gate):
    queue = RunQueue(no_runner, QueueLimits(workers=1))
    ran: list[str] = []
    first = started(queue, "alice", "first", gate, ran)
    second = queue.submit_task("bob", "second", gated(gate, ran, "second"))
    third = queue.submit_task("carol", "third", gated(gate, ran, "third"))

    assert queue.view("bob").positions == {second.id: 1} and queue.view("carol").positions == {third.id: 2}
    busy = queue.view("dave")
    assert (busy.running, busy.queued, busy.launches) == (1, 2, [])  # counts only: nobody else's launches
    gate.set()
    ended(queue, first, second, third)
    assert ran == ["first", "second", "third"]


def test_two_workers_run_two_launches_at_once(gate):
    queue = RunQueue(no_runner, QueueLimits(workers=2))
    ran: list[str] = []
    first = queue.submit_task("alice", "first", gated(gate, ran, "first"))
    second = queue.submit_task("bob", "second", gated(gate, ran, "second"))
    assert queue.wait(first.id, WAIT, until=running) and queue.wait(second.id, WAIT, until=running)
    assert queue.view("carol").running == 2
    gate.set()
    ended(queue, first, second)


def test_an_owner_may_have_only_so_many_launches_waiting_or_running(gate):
    queue = RunQueue(no_runner, QueueLimits(workers=1, per_owner=2))
    held = [queue.submit_task("alice", f"held {i}", gated(gate, [], "held")) for i in range(2)]
    with pytest.raises(ConfigError, match="limit is 2"):
        queue.submit_task("alice", "one too many", gated(gate, [], "refused"))
    assert len(queue.view("alice").launches) == 2, "a refused launch is not kept"
    other = queue.submit_task("bob", "another owner's", gated(gate, [], "other"))  # the limit is per owner
    assert queue.stop("alice", held[1].id)
    again = queue.submit_task("alice", "after a stop", gated(gate, [], "again"))
    gate.set()
    ended(queue, held[0], other, again)


def test_the_queue_holds_only_so_many_waiting_launches(gate):
    queue = RunQueue(no_runner, QueueLimits(workers=1, per_owner=5, max_waiting=1))
    first = started(queue, "alice", "runs", gate, [])
    waiting = queue.submit_task("bob", "waits", gated(gate, [], "waits"))
    with pytest.raises(ConfigError, match="queue is full"):
        queue.submit_task("carol", "no room", gated(gate, [], "no room"))
    gate.set()
    ended(queue, first, waiting)


def test_only_the_owner_stops_a_launch_waiting_or_running(gate):
    queue = RunQueue(no_runner, QueueLimits(workers=1))
    ran: list[str] = []
    active = started(queue, "alice", "active", gate, ran)
    waiting = queue.submit_task("alice", "waiting", gated(gate, ran, "waiting"))

    assert not queue.stop("bob", active.id) and not queue.stop("bob", waiting.id)
    assert not queue.stop("bob", "no-such-launch")
    assert queue.is_pending(active.id) and queue.is_pending(waiting.id)

    assert queue.stop("alice", waiting.id)  # taken out of the queue at once
    withdrawn = queue.view("alice").launches[0]
    assert (withdrawn.id, withdrawn.state) == (waiting.id, LaunchState.ENDED) and withdrawn.stop.is_set()
    assert (withdrawn.started, withdrawn.ended_because) == (None, STOPPED_BY_OWNER)
    assert queue.view("alice").positions == {}
    assert queue.stop("alice", active.id)  # ends within a step of the task
    ended(queue, active)
    assert not queue.stop("alice", active.id), "an ended launch cannot be stopped again"
    stopped = next(launch for launch in queue.view("alice").launches if launch.id == active.id)
    assert (stopped.failure, stopped.result) == ("Stopped.", None)
    assert ran == ["active"], "the withdrawn launch never ran"


class Clock:
    """The queue's clock for the grace time, moved by the test."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def present_queue(connected: set[str], clock: Clock, **limits) -> RunQueue:
    """A queue that asks ``connected`` which sessions are there (no sweeper thread: the test sweeps)."""
    return RunQueue(no_runner, QueueLimits(**{"workers": 1, "per_owner": 3, "grace_s": 60, **limits}),
                    connected.__contains__, clock=clock)


def test_a_gone_visitors_launches_leave_the_queue_and_running_ones_stop_after_the_grace(gate):
    connected, clock = {"alice-tab", "bob-tab"}, Clock()
    queue = present_queue(connected, clock, workers=2)
    queue.attend("alice", "alice-tab")
    queue.attend("bob", "bob-tab")
    ran: list[str] = []
    active = started(queue, "alice", "active", gate, ran)
    theirs = started(queue, "bob", "bob's", gate, ran)
    mine = [queue.submit_task("alice", f"waiting {i}", gated(gate, ran, f"waiting {i}")) for i in range(2)]

    connected.discard("alice-tab")  # alice closed her last tab
    clock.now = 59.0
    assert queue.sweep() == 0 and queue.view("alice").positions == {mine[0].id: 1, mine[1].id: 2}
    assert queue.is_pending(active.id)
    clock.now = 60.0
    assert queue.sweep() == 3
    ended(queue, active)
    gone = {launch.id: launch for launch in queue.view("alice").launches}
    assert all(gone[launch.id].state == LaunchState.ENDED and gone[launch.id].started is None
               and gone[launch.id].ended_because == OWNER_AWAY for launch in mine)
    assert (gone[active.id].failure, gone[active.id].ended_because) == ("Stopped.", OWNER_AWAY)
    assert queue.is_pending(theirs.id), "another visitor's launch goes on"
    assert queue.sweep() == 0
    clock.now = 75.0
    assert queue.overview().presence["visitor 1"] == Presence(Whereabouts.GONE, 75.0), "alice, seen last at 0"
    gate.set()
    ended(queue, theirs)
    assert ran == ["active", "bob's"], "the withdrawn ones never ran"


def test_a_launch_that_runs_past_the_servers_limit_is_stopped(gate):
    queue = RunQueue(no_runner, QueueLimits(workers=1, max_run_s=0.2))
    overdue = started(queue, "alice", "long", gate, [])
    waiting = queue.submit_task("bob", "next", gated(gate, [], "next"))
    assert queue.sweep() == 0, "not yet"
    time.sleep(0.3)
    assert queue.sweep() == 1
    ended(queue, overdue)
    stopped = queue.view("alice").launches[0]
    assert (stopped.failure, stopped.ended_because) == ("Stopped.", out_of_time(0.2))
    assert "limit of 0.00333333 minutes" in out_of_time(0.2) and out_of_time(7200) == (
        "it ran for this server's limit of 120 minutes")
    assert queue.wait(waiting.id, WAIT, until=running), "the next launch starts"
    gate.set()
    ended(queue, waiting)


def test_visitors_without_the_servers_cookie_share_one_limit(gate):
    """Four made-up cookies used to make four visitors (eight launches): a cookie the server did not sign makes an
    anonymous visitor, and the anonymous ones together have ``QueueLimits.anonymous`` launches."""
    queue = RunQueue(no_runner, QueueLimits(workers=1, per_owner=2, anonymous=3))
    sessions = [anonymous_visitor() for _ in range(4)]
    held = [queue.submit_task(sessions[0], "first", gated(gate, [], "held")),
            queue.submit_task(sessions[1], "second", gated(gate, [], "held")),
            queue.submit_task(sessions[1], "third", gated(gate, [], "held"))]
    for session in sessions:  # the second also has its own limit of 2
        with pytest.raises(ConfigError, match="limit is 2" if session == sessions[1] else
                           "share 3 launches waiting or running, and they are taken"):
            queue.submit_task(session, "one too many", gated(gate, [], "refused"))
    signed = [queue.submit_task("a visitor with the server's cookie", f"theirs {i}", gated(gate, [], "x"))
              for i in range(2)]  # not anonymous: their own limit
    assert queue.stop(sessions[1], held[2].id)
    held.append(queue.submit_task(sessions[3], "after a stop", gated(gate, [], "held")))
    gate.set()
    ended(queue, *held, *signed)


def test_a_reload_keeps_the_visitors_launches_and_their_limit(gate):
    connected, clock = {"bob-tab", "alice-tab"}, Clock()
    queue = present_queue(connected, clock, per_owner=2)
    queue.attend("bob", "bob-tab")
    queue.attend("alice", "alice-tab")
    blocking = started(queue, "bob", "bob's", gate, [])
    first = queue.submit_task("alice", "first", gated(gate, [], "first"))
    connected.discard("alice-tab")  # a reload: the old session closes, a new one of the same browser opens
    connected.add("alice-reloaded")
    queue.attend("alice", "alice-reloaded")
    clock.now = 1000.0
    assert queue.sweep() == 0 and queue.view("alice").positions == {first.id: 1}
    second = queue.submit_task("alice", "second", gated(gate, [], "second"))
    with pytest.raises(ConfigError, match="limit is 2"):  # the same visitor: the limit counts both sessions
        queue.submit_task("alice", "third", gated(gate, [], "third"))
    gate.set()
    ended(queue, blocking, first, second)


def test_a_launch_never_starts_while_its_visitor_is_away(gate):
    connected, clock = {"alice-tab", "bob-tab", "carol-tab"}, Clock()
    queue = present_queue(connected, clock)
    for owner in ("alice", "bob", "carol"):
        queue.attend(owner, f"{owner}-tab")
    ran: list[str] = []
    first = started(queue, "bob", "bob's", gate, ran)
    away = queue.submit_task("alice", "alice's", gated(gate, ran, "alice's"))
    later = queue.submit_task("carol", "carol's", gated(gate, ran, "carol's"))
    connected.discard("alice-tab")  # within the grace time: her launch keeps its place but does not start
    gate.set()
    assert queue.wait(later.id, WAIT, until=lambda launch: launch.state != LaunchState.QUEUED)
    assert queue.view("alice").positions == {away.id: 1}
    connected.add("alice-tab")  # her connection came back
    queue.attend("alice", "alice-tab")
    ended(queue, first, later, away)
    assert ran == ["bob's", "carol's", "alice's"]


def test_the_sweeper_thread_takes_a_gone_visitors_launches_out_by_itself(gate):
    connected = {"alice-tab", "bob-tab"}
    queue = RunQueue(no_runner, QueueLimits(workers=1, grace_s=0), connected.__contains__, sweep_every_s=0.01)
    queue.attend("alice", "alice-tab")
    queue.attend("bob", "bob-tab")
    blocking = started(queue, "bob", "bob's", gate, [])
    waiting = queue.submit_task("alice", "alice's", gated(gate, [], "alice's"))
    connected.discard("alice-tab")
    assert queue.wait(waiting.id, WAIT), "the sweeper did not take the launch out"
    assert queue.view("alice").launches[0].ended_because == OWNER_AWAY
    gate.set()
    ended(queue, blocking)


def test_the_operator_sees_every_launch_under_labels_clears_the_queue_and_stops_any(gate):
    connected, clock = {"bob-tab"}, Clock()
    queue = present_queue(connected, clock)
    queue.attend("alice-secret-id", "alice-tab")  # not connected: away
    queue.attend("bob-secret-id", "bob-tab")
    active = started(queue, "bob-secret-id", "bob's", gate, [])
    waiting = [queue.submit_task("alice-secret-id", f"alice's {i}", gated(gate, [], "waits")) for i in range(2)]

    overview = queue.overview()
    assert [launch.owner for launch in overview.launches] == ["visitor 2", "visitor 2", "visitor 1"]
    assert "secret" not in repr(overview), "the operator never sees a visitor's id"
    assert overview.positions == {waiting[0].id: 1, waiting[1].id: 2}
    assert {label: presence.where for label, presence in overview.presence.items()} == {
        "visitor 1": Whereabouts.HERE, "visitor 2": Whereabouts.AWAY}
    assert queue.clear_waiting() == 2 and queue.clear_waiting() == 0
    assert {launch.ended_because for launch in queue.view("alice-secret-id").launches} == {STOPPED_BY_OPERATOR}
    assert queue.stop_any(active.id) and not queue.stop_any("no-such-launch")
    ended(queue, active)
    stopped = queue.view("bob-secret-id").launches[0]
    assert (stopped.failure, stopped.ended_because) == ("Stopped.", STOPPED_BY_OPERATOR)
    assert not queue.stop_any(active.id), "an ended launch cannot be stopped again"


def test_a_task_keeps_its_result_progress_and_failures():
    queue = RunQueue(no_runner, QueueLimits(workers=1, per_owner=5))
    reported = threading.Event()
    finish = threading.Event()

    def counted(stop, progress):
        progress(3, 7, "three of seven")
        reported.set()
        finish.wait(WAIT)
        return {"answer": 42}

    def refused(stop, progress):
        raise DatasetError("That folder has no images.")

    def buggy(stop, progress):
        raise KeyError("a bug")

    done = queue.submit_task("alice", "counted", counted)
    assert queue.wait(done.id, WAIT, until=lambda launch: launch.progress == (3, 7, "three of seven"))
    finish.set()
    failed = queue.submit_task("alice", "refused", refused)
    crashed = queue.submit_task("alice", "buggy", buggy)
    after = queue.submit_task("alice", "after the bug", lambda stop, progress: "still serving", kind="another page's")
    ended(queue, done, failed, crashed, after)

    by_title = {launch.title: launch for launch in queue.view("alice").launches}
    assert by_title["counted"].result == {"answer": 42} and by_title["counted"].failure == ""
    assert by_title["refused"].failure == "That folder has no images." and by_title["refused"].error == ""
    assert by_title["buggy"].error and "KeyError" in by_title["buggy"].error  # a bug: shown to its owner as one
    assert by_title["after the bug"].result == "still serving", "the worker outlives a crash"
    assert {launch.state for launch in by_title.values()} == {LaunchState.ENDED}
    view = queue.view("alice")  # each page lists its own kind of launch
    assert [launch.title for launch in view.of_kind("another page's")] == ["after the bug"]
    assert len(view.of_kind("task")) == 3 and not view.of_kind(FINETUNE) and not view.active("task")


def test_fine_tuning_runs_run_in_order_stream_their_events_and_stop_between_runs():
    gate = threading.Event()
    calls: list[tuple[str, str]] = []

    def runner(config: FinetuneConfig, stop: threading.Event, on_event, owner: str) -> None:
        calls.append((config.mode, owner))
        on_event(MetricEvent(EventKind.START, total_steps=2))
        if config.mode == "baseline" and not gate.wait(WAIT):
            raise AssertionError("the test never opened the gate")
        status = RunStatus.STOPPED if stop.is_set() else RunStatus.FINISHED
        on_event(MetricEvent(EventKind.END, final=RunSummary(status, "done")))

    queue = RunQueue(runner, QueueLimits(workers=1))
    configs = {"baseline": FinetuneConfig(mode="baseline"), "pruned": FinetuneConfig(mode="pruned")}
    launch = queue.submit("alice", configs)
    assert [track.label for track in launch.tracks] == ["baseline", "pruned"] and launch.task is None
    assert queue.wait(launch.id, WAIT, until=lambda live: len(live.tracks[0].events) == 1)
    snapshot = queue.view("alice").launches[0]
    assert snapshot.tracks[0].final is None and snapshot.tracks[0].events[0].kind == EventKind.START
    gate.set()
    ended(queue, launch)
    both = queue.view("alice").launches[0]
    assert [track.final.status for track in both.tracks] == [RunStatus.FINISHED, RunStatus.FINISHED]
    assert calls == [("baseline", "alice"), ("pruned", "alice")]

    gate.clear()
    calls.clear()
    stopped = queue.submit("alice", configs)
    assert queue.wait(stopped.id, WAIT, until=lambda live: len(live.tracks[0].events) == 1)
    assert queue.stop("alice", stopped.id)
    gate.set()
    ended(queue, stopped)
    tracks = next(launch for launch in queue.view("alice").launches if launch.id == stopped.id).tracks
    assert tracks[0].final.status == RunStatus.STOPPED and tracks[1].events == [], "the run after a stop never starts"
    assert calls == [("baseline", "alice")]


def test_the_queue_forgets_old_ended_launches_but_wait_still_answers():
    queue = RunQueue(no_runner, QueueLimits(workers=1, per_owner=1))
    first = queue.submit_task("alice", "0", lambda stop, progress: 0)
    ended(queue, first)
    for i in range(1, 7):
        ended(queue, queue.submit_task("alice", str(i), lambda stop, progress, i=i: i))
    kept = [launch.title for launch in queue.view("alice").launches]
    assert kept == ["6", "5", "4", "3", "2", "1"]  # five ended and the newest (ended after it was counted)
    assert queue.wait(first.id, 0) and not queue.is_pending(first.id)


@pytest.mark.parametrize("variable, value, message", [
    ("CPRUNE_CONCURRENT_RUNS", "0", "must be a whole number in \\[1, 64\\]"),
    ("CPRUNE_QUEUED_RUNS_PER_VISITOR", "two", "must be a whole number in"),
    ("CPRUNE_VISITOR_GRACE_S", "-1", "must be a number in"),
    ("CPRUNE_MAX_LAUNCH_MINUTES", "0", "must be a number in \\(0, 10080\\] \\(minutes"),
])
def test_queue_limits_come_from_the_environment(monkeypatch, variable, value, message):
    monkeypatch.setenv("CPRUNE_CONCURRENT_RUNS", "3")
    monkeypatch.setenv("CPRUNE_QUEUED_RUNS_PER_VISITOR", "4")
    monkeypatch.setenv("CPRUNE_VISITOR_GRACE_S", "2.5")
    monkeypatch.setenv("CPRUNE_MAX_LAUNCH_MINUTES", "0.5")
    assert QueueLimits.from_environment() == QueueLimits(workers=3, per_owner=4, anonymous=8, grace_s=2.5,
                                                         max_run_s=30)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"The environment variable {variable} {message}"):
        QueueLimits.from_environment()


# Uploads -----------------------------------------------------------------------------------------------------

@pytest.fixture
def active() -> set[str]:
    return {"alice", "bob"}


@pytest.fixture
def store(tmp_path, active) -> Uploads:
    return Uploads(tmp_path / "uploads", budget_bytes=1000, is_active=active.__contains__)


def test_uploads_start_empty_and_are_named_by_content(tmp_path, active):
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / "left-over.pt").write_bytes(b"x")
    store = Uploads(tmp_path / "uploads", 1000, active.__contains__)
    assert list(store.folder.iterdir()) == []
    first = store.add("alice", "../../etc/passwd", b"a" * 10)
    assert first.parent == store.folder and first.name.endswith("-passwd")  # the folders of the name are dropped
    assert store.add("bob", "other-name.pt", b"a" * 10).read_bytes() == b"a" * 10


def test_an_upload_goes_when_no_connected_visitor_or_running_launch_uses_it(store, active):
    path = store.add("alice", "a.pt", b"a" * 10)
    store.hold(path, "launch-1")
    active.add("launch-1")
    active.discard("alice")  # the tab was closed
    store.collect()
    assert path.exists(), "a queued or running launch still needs it"
    active.discard("launch-1")
    store.collect()
    assert not path.exists()
    assert not store.hold(path, "alice"), "a collected upload cannot be held again"


def test_collect_every_lists_the_folder_at_most_that_often(store, active):
    path = store.add("alice", "a.pt", b"a" * 10)
    active.discard("alice")
    store.collect(every_s=3600)  # add() collected just now
    assert path.exists()
    store.collect()
    assert not path.exists()


def test_a_new_upload_releases_the_previous_one(store):
    first = store.add("alice", "a.pt", b"a" * 10)
    second = store.add("alice", "b.pt", b"b" * 10)
    store.add("bob", "c.pt", b"c" * 10)  # any new upload collects
    assert not first.exists() and second.exists()


def test_a_refused_upload_is_deleted_at_once_unless_someone_else_uses_it(store):
    path = store.add("alice", "a.pt", b"a" * 10)
    store.add("bob", "a.pt", b"a" * 10)  # same name and content: the same file
    store.reject(path, "alice")
    assert path.exists()
    store.reject(path, "bob")
    assert not path.exists()


def test_the_upload_space_has_a_budget(store, active):
    store.add("alice", "a.pt", b"a" * 600)
    with pytest.raises(CheckpointError, match="space for uploads is full"):
        store.add("bob", "b.pt", b"b" * 600)
    assert len(list(store.folder.iterdir())) == 1
    active.discard("alice")  # gone: its file no longer counts
    assert store.add("bob", "b.pt", b"b" * 600).exists() and len(list(store.folder.iterdir())) == 1


def test_an_upload_held_for_a_launch_lives_while_the_launch_waits_or_runs(tmp_path, gate):
    queue = RunQueue(no_runner, QueueLimits(workers=1))
    connected = {"session-1"}
    uploads = Uploads(tmp_path / "uploads", 1000, uses_in_progress(queue, connected.__contains__))
    path = uploads.add("session-1", "a.pt", b"a" * 10)
    launch = queue.submit_task("alice", "uses the upload", gated(gate, [], "uses"))
    assert uploads.hold(path, launch_user(launch.id))
    connected.clear()  # the tab that uploaded it closed
    uploads.collect()
    assert path.exists()
    gate.set()
    ended(queue, launch)
    uploads.collect()
    assert not path.exists()


# Saved models ------------------------------------------------------------------------------------------------

def saved_model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in MODEL_FILES:
        (folder / name).write_bytes(name.encode())
    return folder


def test_streamlits_upload_memory_has_a_budget_a_share_per_session_and_goes_with_the_session():
    connected, closed, clock = {"alice", "bob"}, [], Clock()
    memory = UploadMemory(1000, connected.__contains__, closed.append, files_per_session=2, hold_s=30, clock=clock)
    first = memory.reserve("alice", 400)
    assert memory.held() == 400, "counted while it is received"
    memory.settle("alice", first, "file-1", kept=True)
    failed = memory.reserve("alice", 300)
    memory.settle("alice", failed, "file-2", kept=False)  # Streamlit refused it (a bad XSRF token, say)
    assert memory.held() == 400
    memory.settle("alice", memory.reserve("alice", 100), "file-2", kept=True)
    with pytest.raises(UploadRefused, match="holds 2 uploaded files already") as refused:
        memory.reserve("alice", 1)
    assert refused.value.status == 429
    with pytest.raises(UploadRefused, match="memory for uploads is full") as refused:
        memory.reserve("bob", 501)  # every session's bytes count against one budget
    assert refused.value.status == 503
    memory.settle("bob", memory.reserve("bob", 500), "file-1", kept=True)
    memory.release("alice", "file-2")  # Streamlit deleted it
    assert memory.held() == 900
    memory.settle("bob", memory.reserve("bob", 100), "file-1", kept=True)  # the same id again: replaced
    assert memory.held() == 500

    connected.discard("alice")  # her connection is gone: her files go after hold_s, her session closed
    clock.now = 29.0
    assert memory.sweep() == [] and memory.held() == 500
    clock.now = 30.0
    assert memory.sweep() == ["alice"] and closed == ["alice"] and memory.held() == 100
    clock.now = 1000.0
    assert memory.sweep() == [], "bob is still connected"
    memory.settle("alice", memory.reserve("alice", 900), "file-3", kept=True)  # the budget is free again


def test_the_servers_share_lowers_every_limit_of_the_apps_forms(monkeypatch):
    """CPRUNE_APP_LIMITS_PERCENT narrows ``options.app_range``, the one place the forms' limits and
    ``validate(app=True)`` come from; a form whose default lies above the new limit starts at it."""
    from cprune_core.ablation import AnalysisConfig
    from cprune_core.atlas.settings import AtlasSettings
    from cprune_core.options import app_range
    from cprune_core.ranges import Range
    from ui.forms import number_limits

    assert app_range(AtlasSettings, "val_images") == Range(8, 1000, integer=True)
    monkeypatch.setenv("CPRUNE_APP_LIMITS_PERCENT", "10")
    assert [app_range(AtlasSettings, name).high for name in ("sample_size", "val_images", "heads", "seeds")] == [
        100, 100, 1, 2]
    assert app_range(AnalysisConfig, "seeds") == Range(1, 2, integer=True)
    assert app_range(FinetuneConfig, "epochs") == FinetuneConfig.options()["epochs"].range, "no app limit: unchanged"
    with pytest.raises(ConfigError, match="validation images must be in \\[8, 100\\].*the command line accepts"):
        AtlasSettings(val_images=101).validate(app=True)
    AtlasSettings(val_images=101).validate()  # the command line's limits are its own
    assert number_limits(AtlasSettings(heads=3), "heads") == {"min_value": 1, "max_value": 1, "value": 1,
                                                              "help": AtlasSettings.options()["heads"].help}
    monkeypatch.setenv("CPRUNE_APP_LIMITS_PERCENT", "0")
    with pytest.raises(ConfigError, match="CPRUNE_APP_LIMITS_PERCENT must be a whole number in \\[1, 100\\]"):
        app_range(AtlasSettings, "heads")


def test_saved_models_are_kept_within_their_budget_oldest_first_never_the_newest(tmp_path):
    for age, name in enumerate(["old", "middle", "new"]):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.pt").write_bytes(b"x" * 1000)
        os.utime(folder, (1000 + age, 1000 + age))
    keep_models_within(tmp_path, 2000, newest=tmp_path / "new")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["middle", "new"]
    keep_models_within(tmp_path, 10, newest=tmp_path / "new")
    assert [path.name for path in tmp_path.iterdir()] == ["new"]


def test_only_the_owners_complete_models_in_the_apps_folder_may_be_downloaded(monkeypatch, tmp_path):
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path / "home"))
    models = tmp_path / "home" / "models"
    mine = saved_model(models / "mine")
    half = saved_model(models / "half-written")
    (half / "model.json").unlink()  # written last: a folder without it is not complete
    runs = [{"id": 1, "owner": "alice", "model_dir": str(mine)},
            {"id": 2, "owner": "bob", "model_dir": str(mine)},  # another visitor's
            {"id": 3, "owner": None, "model_dir": str(mine)},  # the command line's
            {"id": 4, "owner": "alice", "model_dir": str(saved_model(tmp_path / "elsewhere"))},
            {"id": 5, "owner": "alice", "model_dir": str(half)},
            {"id": 6, "owner": "alice", "model_dir": None}]  # failed: nothing saved
    assert [run["id"] for run in downloadable_runs(runs, "alice")] == [1]
    assert downloadable_runs(runs, "carol") == []



# What a visitor may do: the server's Access ----------------------------------------------------------------------

def test_default_data_roots_and_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("CPRUNE_DATA_ROOTS", raising=False)
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path))
    defaults = data_roots()
    assert ASSETS_DIR.resolve() in defaults and (tmp_path / "datasets").resolve() in defaults
    monkeypatch.setenv("CPRUNE_DATA_ROOTS", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    assert data_roots() == ((tmp_path / "a").resolve(), (tmp_path / "b").resolve())


def test_a_visitors_access_is_the_servers_settings_and_their_id(monkeypatch, tmp_path):
    monkeypatch.setenv("CPRUNE_DATA_ROOTS", str(tmp_path))
    monkeypatch.delenv("CPRUNE_DOWNLOADS", raising=False)
    assert visitor_access("alice") == Access(data_roots=(tmp_path.resolve(),), downloads=True, owner="alice")
    monkeypatch.setenv("CPRUNE_DOWNLOADS", "off")  # read at each call: a run started later follows it
    assert not visitor_access("alice").downloads and COMMAND_LINE.downloads and not COMMAND_LINE.confined
    alice = visitor_access("alice")
    assert alice.sees("alice") and alice.sees(None) and not alice.sees("bob")
    assert COMMAND_LINE.sees("alice") and COMMAND_LINE.sees(None)  # the command line sees every record
