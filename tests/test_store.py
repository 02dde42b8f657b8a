"""Tests for cprune_core.store: the SQLite run store and the record() wrapper."""
from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cprune_core.access import Access
from cprune_core.paths import store_path
from cprune_core.schema import EventKind, FinetuneConfig, MetricEvent, RunSummary
from cprune_core.errors import StoreError
from cprune_core.store import SCHEMA, RunStore, record

ROOT = Path(__file__).resolve().parents[1]


def fake_run(status: str = "finished", steps: int = 3):
    """An event stream shaped like the engine's, without training anything."""
    yield MetricEvent(EventKind.PREPARE, message="Loading")
    yield MetricEvent(EventKind.START, total_steps=steps)
    for step in range(1, steps + 1):
        yield MetricEvent(EventKind.STEP, step=step, total_steps=steps, progress=step / steps, train_loss=1.0 / step)
    yield MetricEvent(EventKind.EPOCH, epoch=1, step=steps, total_steps=steps, progress=1.0, val_acc=0.5)
    final = RunSummary(status=status, message=status.title(), test_acc=0.75, params=1000, macs=5000,
                       latency_ms=1.5, duration_s=2.0, val_acc=0.5)
    yield MetricEvent(EventKind.END, step=steps, total_steps=steps, progress=1.0, final=final)


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs.sqlite")


def test_default_path_follows_cprune_home(monkeypatch, tmp_path):
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path))
    assert store_path() == tmp_path / "runs.sqlite" == RunStore().path


def test_record_stores_config_history_and_final_figures(store):
    config = FinetuneConfig(criterion="l1", keep=0.3)
    recording = record(store, config, fake_run())
    events = list(recording)

    assert [e.kind for e in events][-1] == "end"
    run = store.get_run(recording.run_id)
    assert run.status == "finished" and run.config == config.to_dict()
    assert run.history == events
    assert run.summary.test_acc == 0.75 and run.summary == events[-1].final
    [row] = store.list_runs()
    assert row["id"] == recording.run_id
    assert {k: row[k] for k in ("dataset", "backbone", "mode", "criterion", "keep", "test_acc", "params", "macs",
                                "latency_ms", "duration_s")} == {
        "dataset": "flowers-sample", "backbone": "efficientnet_lite0", "mode": "pruned", "criterion": "l1",
        "keep": 0.3, "test_acc": 0.75, "params": 1000, "macs": 5000, "latency_ms": 1.5, "duration_s": 2.0}


def test_an_exception_mid_run_leaves_a_readable_record_marked_failed(store):
    def broken():
        yield from list(fake_run())[:3]
        raise RuntimeError("disk on fire")

    recording = record(store, FinetuneConfig(), broken())
    with pytest.raises(RuntimeError, match="disk on fire"):
        list(recording)

    run = store.get_run(recording.run_id)
    assert run.status == "failed" and "disk on fire" in run.message
    assert len(run.history) == 3


@pytest.mark.parametrize("error, steps, kept", [
    ("DatasetError", 0, False), ("ConfigError", 0, False), ("WeightsFileError", 0, False),  # refused: exit 2 or 3
    ("DatasetError", 4, True),  # failed after training began
    ("OutOfMemory", 0, True), ("RuntimeError", 0, True),  # a run that failed (exit 1), not a refusal
])
def test_a_run_refused_before_its_first_step_is_not_kept(store, error, steps, kept):
    def refused():
        yield MetricEvent(EventKind.PREPARE, message="Loading")
        yield MetricEvent(EventKind.END, final=RunSummary("failed", "No.", steps_done=steps, error=error))

    recording = record(store, FinetuneConfig(), refused())
    list(recording)
    assert (len(store.list_runs()) == 1) == kept and (recording.run_id is not None) == kept


def test_a_consumer_that_stops_early_leaves_the_run_interrupted(store):
    recording = record(store, FinetuneConfig(), fake_run())
    events = iter(recording)
    next(events)
    events.close()  # what happens to the stream when an app session is abandoned

    run = store.get_run(recording.run_id)
    assert run.status == "interrupted" and len(run.history) == 1


@pytest.mark.slow
def test_a_killed_process_leaves_a_running_row_that_becomes_interrupted(tmp_path):
    path = tmp_path / "runs.sqlite"
    script = textwrap.dedent(f"""
        import os
        from cprune_core.schema import EventKind, MetricEvent
        from cprune_core.store import RunStore
        store = RunStore({str(path)!r})
        run_id = store.create_run({{"mode": "pruned"}})
        store.append_events(run_id, [MetricEvent(EventKind.START, total_steps=10)])
        os._exit(9)  # killed: no finally, no finish_run
    """)
    assert subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=120).returncode == 9

    store = RunStore(path)  # opening the store tidies up after dead processes
    [row] = store.list_runs()
    assert row["status"] == "interrupted" and "ended before it finished" in row["message"]
    assert len(store.get_run(row["id"]).history) == 1
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_running_row_of_a_live_process_is_left_alone(store):
    run_id = store.create_run({"mode": "baseline"})
    assert RunStore(store.path).get_run(run_id).status == "running"


def test_a_failed_batch_of_events_is_written_all_or_nothing(store):
    run_id = store.create_run({})
    store.append_events(run_id, [MetricEvent(EventKind.START)])
    with pytest.raises(TypeError):
        store.append_events(run_id, [MetricEvent(EventKind.STEP, step=1),
                                     MetricEvent(EventKind.STEP, message=object())])
    assert [e.kind for e in store.get_run(run_id).history] == ["start"]


def test_non_finite_figures_are_stored_as_null(store):
    run_id = store.create_run({"keep": 0.5})
    summary = RunSummary("finished", "Finished.", test_acc=math.nan, latency_ms=math.inf)
    store.finish_run(run_id, "finished", summary, model_dir="/m")
    run = store.get_run(run_id)
    assert run.summary.test_acc is None and run.summary.latency_ms is None and run.model_dir == "/m"


def test_delete_run_removes_it_and_its_history(store):
    recording = record(store, FinetuneConfig(), fake_run())
    list(recording)
    assert store.delete_run(recording.run_id)
    assert store.get_run(recording.run_id) is None and store.list_runs() == []
    assert not store.delete_run(recording.run_id)


# ----------------------------------------------------------------------------- damaged and unusable stores


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_store_is_kept_aside_and_a_fresh_one_started(tmp_path, damage):
    path = tmp_path / "runs.sqlite"
    good = RunStore(path)
    list(record(good, FinetuneConfig(), fake_run()))
    content = path.read_bytes()
    path.write_bytes(b"this is not sqlite at all" * 100 if damage == "garbage" else content[: len(content) // 3])
    Path(f"{path}-wal").unlink(missing_ok=True)
    damaged_bytes = path.read_bytes()

    store = RunStore(path)
    assert store.recovered_from is not None and store.recovered_from.read_bytes() == damaged_bytes  # nothing lost
    assert store.list_runs() == []
    list(record(store, FinetuneConfig(), fake_run()))
    assert len(store.list_runs()) == 1


def test_a_store_that_is_a_folder_or_cannot_be_created_names_the_problem_only(tmp_path):
    """What to do depends on the front end (the CLI's flags, the app's operator): the core only names it."""
    folder = tmp_path / "runs.sqlite"
    folder.mkdir()
    with pytest.raises(StoreError, match="is a folder, not a file.$"):
        RunStore(folder)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot be created .*\\)\\.$"):
        RunStore(blocker / "sub" / "runs.sqlite")


@pytest.mark.skipif(not Path("/proc/version").is_file(), reason="needs Linux's /proc")
def test_an_unwritable_file_that_is_no_store_names_the_problem_only():
    with pytest.raises(StoreError, match="cannot be used") as caught:
        RunStore("/proc/version")  # not even root may write it
    assert "--" not in str(caught.value) and "CPRUNE_HOME" not in str(caught.value)


def test_the_command_line_adds_its_own_flags_to_a_store_problem(tmp_path, capsys):
    from cprune_core import cli

    (tmp_path / "runs.sqlite").mkdir()
    assert cli.main(["finetune", "--store", str(tmp_path / "runs.sqlite")]) == 3
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: The run store {tmp_path / 'runs.sqlite'} is a folder, not a file. Name another "
                           "store file with `finetune --store FILE`") and line.endswith("or run with --no-record.")


def test_stores_of_earlier_versions_gain_the_new_columns(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA.replace(",\n    owner TEXT,\n    run_key TEXT", ""))
        db.execute("INSERT INTO runs (kind, created, status, config) VALUES ('finetune', 0, 'finished', '{}')")
    store = RunStore(path)
    [row] = store.list_runs(Access(owner="someone"))  # a run of the command line: visible to every visitor
    assert store.get_run(row["id"]).owner is None


def test_visitors_see_their_own_runs_and_those_of_the_command_line(store):
    mine = store.create_run({}, owner="me")
    theirs = store.create_run({}, owner="them")
    cli = store.create_run({})
    assert {r["id"] for r in store.list_runs(Access(owner="me"))} == {mine, cli}
    assert {r["id"] for r in store.list_runs()} == {mine, theirs, cli}
