"""Tests for cprune_core.progress: a run's counters and events, the progress callback, the one way to stop and
the one way to drain a generator of steps."""
from __future__ import annotations

import threading

import pytest

from cprune_core.errors import CPruneError, StopRequested
from cprune_core.progress import Steps, check_stop, report
from cprune_core.schema import Progress
from cprune_core.schema import EventKind, RunStatus


def test_events_carry_the_counters_and_go_to_history_and_the_callback():
    seen = []
    progress = Progress(seen.append)
    progress.event(EventKind.PREPARE, message="Loading")
    start = progress.start_training(4, "Training")
    assert (start.kind, start.total_steps, start.step, start.progress) == (EventKind.START, 4, 0, 0.0)
    assert start.images_per_s is None and start.eta_s is None  # nothing measured yet
    progress.epoch = 1
    progress.count_step(8)
    step = progress.event(EventKind.STEP, train_loss=0.5)
    assert (step.epoch, step.step, step.progress, step.train_loss) == (1, 1, 0.25, 0.5)
    assert step.images_per_s > 0 and step.eta_s >= 0
    assert seen == progress.history and [e.kind for e in seen] == ["prepare", "start", "step"]


def test_end_summarises_the_last_epoch_and_counts_every_epoch():
    progress = Progress()
    progress.start_training(2, "Training")
    for epoch, val_acc in [(1, 0.5), (2, 0.75)]:
        progress.epoch = epoch
        progress.count_step(4)
        progress.event(EventKind.EPOCH, train_loss=1.0 / epoch, train_acc=0.6, val_acc=val_acc)
    end = progress.end(RunStatus.FINISHED, "Finished.", test_acc=0.7)
    summary = end.final
    assert end.kind == EventKind.END and end.eta_s == 0.0 and end is progress.history[-1]
    assert (summary.status, summary.val_acc, summary.train_loss, summary.test_acc) == ("finished", 0.75, 0.5, 0.7)
    assert (summary.epochs_done, summary.steps_done, summary.total_steps) == (2, 2, 2)


def test_a_stopped_end_has_no_eta_and_a_run_ended_before_training_no_epoch_figures():
    end = Progress().end(RunStatus.STOPPED, "Stopped while indexing the dataset.")
    assert end.eta_s is None and end.final.val_acc is None and end.final.epochs_done == 0
    assert end.final.message == "Stopped while indexing the dataset."


def test_report_calls_the_callback_and_none_is_allowed():
    calls = []
    report(lambda *args: calls.append(args), 3, 10, "Working")
    report(None, 3, 10, "nobody listens")
    assert calls == [(3, 10, "Working")]


def test_check_stop_raises_stop_requested_only_when_the_event_is_set():
    stop = threading.Event()
    check_stop(None)
    check_stop(stop)
    stop.set()
    with pytest.raises(StopRequested, match="^Stopped.$"):
        check_stop(stop)
    with pytest.raises(StopRequested, match="while computing features"):
        check_stop(stop, "Stopped while computing features.")
    assert issubclass(StopRequested, CPruneError)  # a stop is expected, never shown as a bug


def counting(n: int, fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise StopRequested("Stopped.")
        yield i
    return f"counted {n}"


def test_steps_gives_each_step_then_the_generators_return_value():
    steps = Steps(counting(3))
    with pytest.raises(RuntimeError, match="loop over the steps"):
        _ = steps.result
    assert list(steps) == [0, 1, 2]
    assert steps.result == "counted 3"
    empty = Steps(counting(0))
    assert list(empty) == [] and empty.result == "counted 0"


def test_a_stop_inside_the_generator_propagates_from_the_loop_and_leaves_no_result():
    steps = Steps(counting(5, fail_at=2))
    seen = []
    with pytest.raises(StopRequested):
        for step in steps:
            seen.append(step)
    assert seen == [0, 1]
    with pytest.raises(RuntimeError):
        _ = steps.result
