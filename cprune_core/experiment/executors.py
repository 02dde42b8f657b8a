"""Where a grid's runs execute: in this process one after another (``LocalExecutor``), or as Ray
tasks on a cluster (``RayExecutor``). Both take (index, config) jobs and yield an ``Outcome`` per
run as it ends, in whatever order runs end; neither touches the run store (the driver,
``grid.run_plan``, records each outcome in one transaction when it arrives). ``call`` runs one
piece of work the same way (one task with one run's resources): experiment importance; ``map`` runs
many pieces, each one task (experiment atlas: one task per layer).

Ray is imported only when a ``RayExecutor`` is entered, so the command line and the app never
pay for it. Each run is one Ray task asking for ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs
(fractions share a GPU); Ray picks the node and sets CUDA_VISIBLE_DEVICES, and the run uses
the device torch then sees as current (``device.resolve_device`` never picks an index). A task
given no GPU sees none, so "auto" falls back to the CPU instead of using a GPU Ray gave to
another task. A worker keeps the frozen features it computes in its memory and on its node's disk
(``NodeFeatureCache``), so the workers of a node compute each split's features once.

Faults: a task whose worker process dies (killed, out of memory, node lost) is submitted once
more; a second death ends the run "failed" with the reason. The driver resubmits it, rather than
Ray's ``max_retries``, so that it knows and reports which runs were retried and why. An expected
problem inside a run (a CPruneError) is not a fault: the run ends "failed" on its own. Any
other exception is a bug and is raised in the driver with the worker's traceback, as the local
executor would.
"""
from __future__ import annotations

import math
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, Protocol, TypeVar

import torch

from ..device import describe_device, resolve_device
from ..errors import ClusterError, ConfigError, CPruneError, StopRequested
from ..ranges import EXECUTORS
from ..features import FeatureCache
from ..progress import check_stop
from ..runs import run_and_record
from ..schema import FinetuneConfig, MetricEvent, RunStatus, RunSummary
from .ray_connect import START_ADVICE, first_line, import_ray, init_within, parse_address, probe_address

__all__ = ["Executor", "Outcome", "LocalExecutor", "RayExecutor", "NodeFeatureCache", "EXECUTORS", "run_config",
           "threads_for", "with_threads"]

T = TypeVar("T")
Job = tuple[int, FinetuneConfig]  # (index in the plan, its configuration)
STOP_POLL_S = 0.5  # how often the driver looks at the stop Event while it waits for Ray
THIS_MACHINE = (None, "auto", "local")  # addresses of a Ray on this very machine: started here, or found
# The folder that holds the driver's cprune_core: first on every worker's Python path, so a node with
# the same checkout at the same path runs the driver's code rather than another installed version.
CODE_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass
class Outcome:
    """One run that has ended (or could not be run: a worker died twice)."""

    index: int
    summary: RunSummary
    history: list[MetricEvent] = field(default_factory=list)
    retried_after: str = ""  # why a first attempt was lost ("" when it was not)
    host: str | None = None  # the machine that ran it
    node: str | None = None  # its Ray node id (None when run locally)


class Executor(Protocol):
    """What ``grid.run_plan`` needs of an executor (entered, ``with executor:``, before ``run``)."""

    slots: int  # how many runs it runs at once

    def run(self, jobs: list[Job], stop: threading.Event | None = None) -> Iterator[Outcome]:
        """Run every job, yielding each one's Outcome as it ends; once ``stop`` is set, stop the runs in flight
        and start no other."""

    def call(self, function: Callable[..., T], *args, stop: threading.Event | None = None, **kwargs) -> T:
        """``function(*args, stop=stop, **kwargs)`` as one task where runs execute (one run's CPUs and GPUs), its
        result returned: a command whose work is one piece (experiment importance). StopRequested once
        ``stop`` is set (the function sees ``stop`` when it runs in this process; a remote task is cancelled)."""

    def map(self, function: Callable[..., T], jobs: Iterable[tuple],
            stop: threading.Event | None = None) -> Iterator[tuple[int, T]]:
        """``function(*job)`` for each job as one task like ``call``'s, yielding (index of the job, result) as
        each ends. ``jobs`` is advanced only when a task can start (at most ``slots`` at once), so a lazy
        iterator holds the inputs of only the tasks under way. StopRequested once ``stop`` is set: no other
        task starts and the remote ones in flight are cancelled (a local one stops as ``function`` does)."""

    def describe(self) -> str:
        """Where the runs execute, in words, for the report."""


def run_config(config: FinetuneConfig, threads: int | None = None, feature_cache: FeatureCache | None = None,
               stop: threading.Event | None = None) -> tuple[RunSummary, list[MetricEvent]]:
    """Run one configuration to its end without recording it: (summary, history). ``threads``: torch's
    CPU threads during this run (None: as they are). The number matters for the numbers: CPU kernels
    split their sums by thread, so the same run on 1 and on 2 threads rounds differently.
    ``feature_cache``: where frozen features are kept (None: this process's memory). ``stop``: ends the
    run within a batch ("stopped")."""
    result = with_threads(threads, run_and_record, config, None, stop=stop, kind="experiment",
                           feature_cache=feature_cache)
    return result.summary, result.history


def with_threads(threads: int | None, function: Callable[..., T], *args, **kwargs) -> T:
    """``function(*args, **kwargs)`` on ``threads`` torch threads (None: as they are), restored after."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return function(*args, **kwargs)
    finally:
        torch.set_num_threads(previous)


def threads_for(cpus_per_run: float, unit: str = "run") -> int:
    """The torch threads of a run given ``cpus_per_run`` CPUs: its whole CPUs, at least one (ConfigError
    unless positive)."""
    if not cpus_per_run > 0:
        raise ConfigError(f"--cpus-per-{unit} must be positive, got {cpus_per_run:g}.")
    return max(1, math.floor(cpus_per_run))


class LocalExecutor:
    """Runs each job in this process, one after another (the frozen features stay cached between runs),
    on ``threads`` torch threads (None: torch's default, every core)."""

    slots = 1  # runs at once

    def __init__(self, device: str = "auto", threads: int | None = None):
        self.device, self.threads = device, threads

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def describe(self) -> str:
        device = resolve_device(self.device)
        if device.type != "cpu" or self.threads is None:
            return describe_device(device)
        return f"cpu ({self.threads} thread{'s' * (self.threads != 1)} per run)"

    def run(self, jobs: list[Job], stop: threading.Event | None = None) -> Iterator[Outcome]:
        for index, config in jobs:
            if stop is not None and stop.is_set():
                return
            summary, history = run_config(config, self.threads, stop=stop)
            yield Outcome(index, summary, history, host=socket.gethostname())

    def call(self, function: Callable[..., T], *args, stop: threading.Event | None = None, **kwargs) -> T:
        return with_threads(self.threads, function, *args, **({"stop": stop} if stop is not None else {}), **kwargs)

    def map(self, function: Callable[..., T], jobs: Iterable[tuple],
            stop: threading.Event | None = None) -> Iterator[tuple[int, T]]:
        for index, job in enumerate(jobs):
            check_stop(stop)
            yield index, with_threads(self.threads, function, *job)


class NodeFeatureCache(FeatureCache):
    """Frozen features in this process's memory and on its node's disk (``paths.features_dir()`` of the
    node): the Ray workers of a node, each its own process, compute each split's features once."""

    def get(self, key: str, disk: bool = False, accept=None):
        return super().get(key, disk=True, accept=accept)

    def put(self, key: str, value, disk: bool = False) -> None:
        super().put(key, value, disk=True)


NODE_FEATURES = NodeFeatureCache()  # one per worker process, reused by the runs it executes


def _run_on_worker(config: FinetuneConfig, threads: int) -> tuple[RunSummary, list[MetricEvent], str, str]:
    """The Ray task: one run on whichever node Ray chose, with Ray's CPUs as torch's threads."""
    import ray

    summary, history = run_config(config, threads, NODE_FEATURES)
    return summary, history, socket.gethostname(), ray.get_runtime_context().get_node_id()


def _cancel_unfinished(references: Iterable) -> None:
    """Force-cancel (the worker is killed) each of these tasks that has not finished. A finished one is left alone:
    a cancel that crosses a task's completion can abort the driver inside Ray ("Check failed: it !=
    submissible_tasks_.end() Tried to complete task that was not pending", seen with Ray 2.60; ray-project/ray
    PR 54527 fixed a sibling of this race)."""
    import ray

    references = list(references)
    if references:
        _, unfinished = ray.wait(references, num_returns=len(references), timeout=0, fetch_local=False)
        for reference in unfinished:
            ray.cancel(reference, force=True)


def _call_on_worker(function: Callable[..., T], threads: int, args: tuple, kwargs: dict) -> T:
    """The Ray task of ``RayExecutor.call``."""
    return with_threads(threads, function, *args, **kwargs)


class RayExecutor:
    """Runs each job as a Ray task: on the cluster at ``address`` (default $RAY_ADDRESS), else on a
    Ray started on this machine for the duration (``with RayExecutor(...) as executor``)."""

    def __init__(self, address: str | None = None, *, cpus_per_run: float = 1.0, gpus_per_run: float | None = None,
                 unit: str = "run"):
        """``gpus_per_run`` None: one GPU per run where the cluster has GPUs, else none. ``unit``: what one task
        is called in messages and option names ("run": --cpus-per-run; "task": --cpus-per-task)."""
        self.unit = unit
        self.threads = threads_for(cpus_per_run, unit)
        if gpus_per_run is not None and (gpus_per_run < 0 or (gpus_per_run > 1 and gpus_per_run != int(gpus_per_run))):
            raise ConfigError(f"--gpus-per-{unit} must be a fraction up to 1 (several tasks share a GPU) or a whole "
                              f"number, got {gpus_per_run:g}.")
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        if self.address not in THIS_MACHINE:
            parse_address(self.address)  # a malformed address is refused before Ray is even imported
        self.cpus_per_run, self.gpus_per_run = cpus_per_run, gpus_per_run
        self.slots = 0
        self._resources: dict = {}
        self._connected_here = False

    def __enter__(self) -> RayExecutor:
        ray = import_ray()
        if not ray.is_initialized():
            runtime_env = {"env_vars": {"PYTHONPATH": CODE_ROOT,
                                        # Hide the GPUs from a task that was given none (Ray leaves them visible).
                                        "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1"}}
            options = {"runtime_env": runtime_env, "logging_level": "WARNING"}
            if self.address in THIS_MACHINE:
                try:
                    ray.init(address=self.address, **options, **({} if self.address else {"include_dashboard": False}))
                except (ConnectionError, RuntimeError) as error:
                    raise ClusterError(f"Cannot start or find a Ray on this machine ({first_line(error).rstrip('.')})."
                                       f" {START_ADVICE}") from None
            else:
                probe_address(self.address)
                init_within(ray, self.address, **options)
            self._connected_here = True
        self._resources = ray.cluster_resources()
        if self.gpus_per_run is None:
            self.gpus_per_run = 1.0 if self._resources.get("GPU", 0) else 0.0
        self.slots = sum(self._runs_held(node["Resources"]) for node in ray.nodes() if node["Alive"])
        if self.slots == 0:
            self.__exit__()
            raise ClusterError(f"No node of the Ray cluster can hold one run ({self.cpus_per_run:g} CPUs, "
                               f"{self.gpus_per_run:g} GPUs); all together they have {self._resources.get('CPU', 0):g} "
                               f"CPUs and {self._resources.get('GPU', 0):g} GPUs. Lower --cpus-per-{self.unit} or "
                               f"--gpus-per-{self.unit}, or add nodes.")
        return self

    def __exit__(self, *exc) -> None:
        if self._connected_here:
            import ray

            ray.shutdown()
            self._connected_here = False

    def _runs_held(self, resources: dict) -> int:
        """How many runs one node's CPUs and GPUs hold at once."""
        fits = [math.floor(resources.get("CPU", 0) / self.cpus_per_run + 1e-9)]
        if self.gpus_per_run:
            fits.append(math.floor(resources.get("GPU", 0) / self.gpus_per_run + 1e-9))
        return min(fits)

    def describe(self) -> str:
        import ray

        nodes = sum(node["Alive"] for node in ray.nodes())
        return (f"a Ray cluster of {nodes} node{'s' * (nodes != 1)} ({self._resources.get('CPU', 0):g} CPUs, "
                f"{self._resources.get('GPU', 0):g} GPUs; {self.cpus_per_run:g} CPU and {self.gpus_per_run:g} GPU "
                f"per {self.unit}, {self.slots} at once)")

    def _task(self):
        """``_call_on_worker`` as a Ray task with one run's resources; a worker that dies is replaced once."""
        import ray

        return ray.remote(_call_on_worker).options(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run,
                                                   max_retries=1)

    def call(self, function: Callable[..., T], *args, stop: threading.Event | None = None, **kwargs) -> T:
        import ray

        reference = self._task().remote(function, self.threads, args, kwargs)
        while not ray.wait([reference], timeout=STOP_POLL_S)[0]:
            if stop is not None and stop.is_set():
                _cancel_unfinished([reference])
                raise StopRequested(f"Stopped: the {self.unit} on the Ray cluster was cancelled.")
        return _task_result(reference)

    def map(self, function: Callable[..., T], jobs: Iterable[tuple],
            stop: threading.Event | None = None) -> Iterator[tuple[int, T]]:
        import ray

        task, waiting, pending = self._task(), enumerate(jobs), {}
        function_ref = ray.put(function)  # shipped once, not with every task

        def submit() -> None:
            for index, job in waiting:
                pending[task.remote(function_ref, self.threads, job, {})] = index
                return

        for _ in range(max(self.slots, 1)):
            submit()
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=STOP_POLL_S)
            if stop is not None and stop.is_set():
                _cancel_unfinished(pending)
                raise StopRequested(f"Stopped: the {self.unit}s on the Ray cluster were cancelled.")
            if not done:
                continue
            [ready] = done
            index = pending.pop(ready)
            result = _task_result(ready)
            submit()
            yield index, result

    def run(self, jobs: list[Job], stop: threading.Event | None = None) -> Iterator[Outcome]:
        import ray
        from ray.exceptions import RayError, RayTaskError

        task = ray.remote(_run_on_worker).options(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run,
                                                  max_retries=0)
        pending = {task.remote(config, self.threads): (index, config, "") for index, config in jobs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=STOP_POLL_S)
            if stop is not None and stop.is_set():  # the runs in flight are cancelled; nothing was recorded of them
                _cancel_unfinished(pending)
                return
            if not done:
                continue
            [ready] = done
            index, config, retried_after = pending.pop(ready)
            try:
                summary, history, host, node = ray.get(ready)
            except RayTaskError as error:
                _raise_here(error)
            except _worker_deaths() as error:  # killed, out of memory, or its node was lost
                reason = _reason(error)
                if not retried_after:
                    pending[task.remote(config, self.threads)] = (index, config, reason)
                    continue
                summary, history, host, node = RunSummary(
                    RunStatus.FAILED, f"The worker running it died twice; last: {reason}"), [], None, None
            except RayError as error:  # the same for every run: end the grid with it
                raise ClusterError(f"Ray could not run a {self.unit}: {_reason(error)}") from None
            yield Outcome(index, summary, history, retried_after, host, node)


def _task_result(reference):
    """The result of a ``_call_on_worker`` task, its errors raised as ``call`` describes."""
    import ray
    from ray.exceptions import RayError, RayTaskError

    try:
        return ray.get(reference)
    except RayTaskError as error:
        _raise_here(error)
    except _worker_deaths() as error:
        raise ClusterError(f"The worker running it died twice; last: {_reason(error)}") from None
    except RayError as error:
        raise ClusterError(f"Ray could not run it: {_reason(error)}") from None


def _raise_here(error) -> NoReturn:
    """A task's exception (a RayTaskError) raised in the driver as this process would have: a CPruneError as
    itself, for its one-line message; anything else, a bug, with the worker's traceback."""
    if isinstance(error.cause, CPruneError):
        raise error.cause from None
    raise error.as_instanceof_cause() from None


def _worker_deaths() -> tuple[type[Exception], ...]:
    """Ray's errors for a task whose worker process or node went away: worth running the task once more. Any
    other Ray error (an environment that cannot be set up, a task no node can take) would only fail again."""
    from ray.exceptions import NodeDiedError, ObjectLostError, OutOfMemoryError, WorkerCrashedError

    return WorkerCrashedError, NodeDiedError, OutOfMemoryError, ObjectLostError


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {first_line(error)}"
