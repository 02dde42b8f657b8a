"""The app's server side without Streamlit: the run queue, its owners and limits, the uploads and saved models.

Launches here are tasks and runners that wait on events the test sets, so each step happens when the test
says; ``RunQueue.wait`` (woken by every change of a launch) tells when the queue has reached a state.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cprune_core import CheckpointError, ConfigError, DatasetError, FinetuneConfig, StopRequested
from cprune_core.checkpoint import MODEL_FILES
from cprune_core.schema import EventKind, MetricEvent, RunStatus, RunSummary
from cprune_core.service import (FINETUNE, OWNER_AWAY, STOPPED_BY_OPERATOR, STOPPED_BY_OWNER, LaunchState, QueueLimits, RunQueue,
                                 Uploads, browser_secret, downloadable_runs, keep_models_within, launch_user,
                                 server_key, session_visitor_id, uses_in_progress, visitor_id)

ROOT = Path(__file__).resolve().parents[1]
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


def test_a_gone_visitors_waiting_launches_leave_the_queue_after_the_grace_and_running_ones_go_on(gate):
    connected, clock = {"alice-tab", "bob-tab"}, Clock()
    queue = present_queue(connected, clock)
    queue.attend("alice", "alice-tab")
    queue.attend("bob", "bob-tab")
    ran: list[str] = []
    active = started(queue, "alice", "active", gate, ran)
    mine = [queue.submit_task("alice", f"waiting {i}", gated(gate, ran, f"waiting {i}")) for i in range(2)]
    theirs = queue.submit_task("bob", "bob's", gated(gate, ran, "bob's"))

    connected.discard("alice-tab")  # alice closed her last tab
    clock.now = 59.0
    assert queue.sweep() == 0 and queue.view("alice").positions == {mine[0].id: 1, mine[1].id: 2}
    clock.now = 60.0
    assert queue.sweep() == 2
    gone = {launch.id: launch for launch in queue.view("alice").launches}
    assert all(gone[launch.id].state == LaunchState.ENDED and gone[launch.id].started is None
               and gone[launch.id].ended_because == OWNER_AWAY for launch in mine)
    assert queue.is_pending(active.id) and queue.view("bob").positions == {theirs.id: 1}
    assert queue.sweep() == 0
    gate.set()
    ended(queue, active, theirs)
    assert ran == ["active", "bob's"], "the running launch went on; the withdrawn ones never ran"


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
    assert overview.positions == {waiting[0].id: 1, waiting[1].id: 2} and overview.away == {"visitor 2"}
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
])
def test_queue_limits_come_from_the_environment(monkeypatch, variable, value, message):
    monkeypatch.setenv("CPRUNE_CONCURRENT_RUNS", "3")
    monkeypatch.setenv("CPRUNE_QUEUED_RUNS_PER_VISITOR", "4")
    monkeypatch.setenv("CPRUNE_VISITOR_GRACE_S", "2.5")
    assert QueueLimits.from_environment() == QueueLimits(workers=3, per_owner=4, grace_s=2.5)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"The environment variable {variable} {message}"):
        QueueLimits.from_environment()


@pytest.mark.slow
def test_the_service_does_not_import_streamlit():
    code = "import sys, cprune_core.service; print('streamlit' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert shown.stdout.strip() == "False"


# Visitors' ids ------------------------------------------------------------------------------------------------

def test_a_browser_keeps_its_visitor_id_across_reloads_and_no_other_browser_gets_it():
    """Streamlit masks the XSRF token anew at every page load (the cookie's text changes at each reload):
    the id comes from the token itself. Cookies made by Streamlit's own function, as its server makes them."""
    from streamlit.web.server.starlette.starlette_app_utils import generate_xsrf_token_string

    key = bytes(32)
    token = os.urandom(16)
    first, reloaded = generate_xsrf_token_string(token, 1700000000), generate_xsrf_token_string(token, 1700000000)
    other = generate_xsrf_token_string(os.urandom(16), 1700000000)
    assert browser_secret(first) == browser_secret(reloaded) == token
    assert visitor_id(browser_secret(first), key) == visitor_id(browser_secret(reloaded), key)
    assert visitor_id(browser_secret(other), key) != visitor_id(token, key)
    assert visitor_id(token, bytes(31) + b"x") != visitor_id(token, key), "another server's key: other ids"
    assert token.hex() not in visitor_id(token, key), "the id is not the token"
    for made_up in ("", "garbage", "2|zz|00|1", "2|0000|", "1|00000000|00|1", "2|00|0011|1"):
        assert browser_secret(made_up) is None, made_up
    assert session_visitor_id() != session_visitor_id()


def test_the_servers_key_is_kept_private_and_reused(tmp_path):
    path = tmp_path / "home" / "visitor.key"
    key = server_key(path)
    assert len(key) == 32 and server_key(path) == key
    assert path.stat().st_mode & 0o777 == 0o600
    (tmp_path / "folder.key").mkdir()  # cannot be read or written: a key of this process only
    assert len(server_key(tmp_path / "folder.key")) == 32


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

