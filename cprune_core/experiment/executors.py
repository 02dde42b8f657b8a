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
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, Protocol, TypeVar

import torch

from ..device import describe_device, resolve_device
from ..errors import ClusterError, ConfigError, CPruneError
from ..features import FeatureCache
from ..runs import run_and_record
from ..schema import FinetuneConfig, MetricEvent, RunStatus, RunSummary

__all__ = ["Executor", "Outcome", "LocalExecutor", "RayExecutor", "NodeFeatureCache", "EXECUTORS", "run_config",
           "threads_for", "probe_address"]

EXECUTORS = ("local", "ray")
T = TypeVar("T")
Job = tuple[int, FinetuneConfig]  # (index in the plan, its configuration)
PROBE_TIMEOUT_S = 5.0
# A gRPC client's first words on a plain connection (RFC 9113 section 3.4): the preface and an empty SETTINGS
# frame; a gRPC server (Ray's GCS, its client server) answers with a SETTINGS frame of its own.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_SETTINGS = 4  # the frame type, the 4th byte of a frame header
CONNECT_ATTEMPTS = 5
START_ADVICE = ("Start it with `ray start --head` on its head node and run this command on a node of the cluster "
                "(the head, or one that joined with `ray start --address=...`), or correct --ray-address (or "
                "RAY_ADDRESS).")
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

    def run(self, jobs: list[Job]) -> Iterator[Outcome]:
        """Run every job, yielding each one's Outcome as it ends."""

    def call(self, function: Callable[..., T], *args, **kwargs) -> T:
        """``function(*args, **kwargs)`` as one task where runs execute (one run's CPUs and GPUs), its
        result returned: a command whose work is one piece (experiment importance)."""

    def map(self, function: Callable[..., T], jobs: Iterable[tuple]) -> Iterator[tuple[int, T]]:
        """``function(*job)`` for each job as one task like ``call``'s, yielding (index of the job, result) as
        each ends. ``jobs`` is advanced only when a task can start (at most ``slots`` at once), so a lazy
        iterator holds the inputs of only the tasks under way."""

    def describe(self) -> str:
        """Where the runs execute, in words, for the report."""


def run_config(config: FinetuneConfig, threads: int | None = None,
               feature_cache: FeatureCache | None = None) -> tuple[RunSummary, list[MetricEvent]]:
    """Run one configuration to its end without recording it: (summary, history). ``threads``: torch's
    CPU threads during this run (None: as they are). The number matters for the numbers: CPU kernels
    split their sums by thread, so the same run on 1 and on 2 threads rounds differently.
    ``feature_cache``: where frozen features are kept (None: this process's memory)."""
    result = _with_threads(threads, run_and_record, config, None, kind="experiment", feature_cache=feature_cache)
    return result.summary, result.history


def _with_threads(threads: int | None, function: Callable[..., T], *args, **kwargs) -> T:
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

    def run(self, jobs: list[Job]) -> Iterator[Outcome]:
        for index, config in jobs:
            summary, history = run_config(config, self.threads)
            yield Outcome(index, summary, history, host=socket.gethostname())

    def call(self, function: Callable[..., T], *args, **kwargs) -> T:
        return _with_threads(self.threads, function, *args, **kwargs)

    def map(self, function: Callable[..., T], jobs: Iterable[tuple]) -> Iterator[tuple[int, T]]:
        for index, job in enumerate(jobs):
            yield index, _with_threads(self.threads, function, *job)


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


def _call_on_worker(function: Callable[..., T], threads: int, args: tuple, kwargs: dict) -> T:
    """The Ray task of ``RayExecutor.call``."""
    return _with_threads(threads, function, *args, **kwargs)


def probe_address(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise ClusterError unless ``address`` (host:port, or ray://host:port) answers as a Ray cluster's gRPC
    server within about ``timeout_s``: a TCP connection opens and the server's HTTP/2 greeting (a SETTINGS
    frame) comes back. ray.init itself waits for minutes on an address that does not answer."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r} is not host:port (e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001).")
    greeting = b""
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as connection:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return  # a TLS server says nothing before a TLS handshake
            connection.sendall(HTTP2_PREFACE)
            while len(greeting) < 9 and (part := connection.recv(9 - len(greeting))):
                greeting += part
    except OSError as error:
        reason = f"no answer within {timeout_s:g} s" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise ClusterError(f"Cannot reach the Ray cluster at {address} ({reason}). {START_ADVICE}") from None
    if len(greeting) < 9 or greeting[3] != HTTP2_SETTINGS:
        raise ClusterError(f"Cannot reach the Ray cluster at {address} (something answers there, but not as Ray). "
                           f"{START_ADVICE}")


@contextmanager
def _connecting_quietly() -> Iterator[None]:
    """Around ray.init(address): give up after about CONNECT_ATTEMPTS seconds instead of Ray's 20, and
    hold back what Ray's C++ core writes straight to file descriptor 2 meanwhile (a warning a second
    while it retries): written out after a connection, dropped after a failure, which the caller
    reports in one line. Something that answers on the port without being Ray gets here past the probe."""
    budget = "RAY_gcs_server_port_wait_time_s"  # Ray's connection attempts, about one a second
    chosen = budget not in os.environ  # the user's own budget stays
    os.environ.setdefault(budget, str(CONNECT_ATTEMPTS))
    sys.stderr.flush()
    real_stderr = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(real_stderr, 2)
            os.close(real_stderr)
            if chosen:
                os.environ.pop(budget, None)
        held.seek(0)
        sys.stderr.write(held.read().decode(errors="replace"))


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray, which is not installed: run `make install` "
                          "(or `pip install -r requirements.txt`).") from None
    return ray


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
        self.cpus_per_run, self.gpus_per_run = cpus_per_run, gpus_per_run
        self.slots = 0
        self._resources: dict = {}
        self._connected_here = False

    def __enter__(self) -> RayExecutor:
        ray = import_ray()
        if not ray.is_initialized():
            remote = self.address not in (None, "auto", "local")  # not a Ray on this very machine
            if remote:
                probe_address(self.address)
            runtime_env = {"env_vars": {"PYTHONPATH": CODE_ROOT,
                                        # Hide the GPUs from a task that was given none (Ray leaves them visible).
                                        "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1"}}
            try:
                with _connecting_quietly() if remote else nullcontext():
                    ray.init(address=self.address, runtime_env=runtime_env, logging_level="WARNING",
                             **({} if self.address else {"include_dashboard": False}))
            except (ConnectionError, RuntimeError) as error:
                where = self.address or "this machine"
                reason = _first_line(error).rstrip(".")
                detail = "" if where in reason else f" ({reason})"  # Ray's own line often just repeats ours
                raise ClusterError(f"Cannot connect to the Ray cluster at {where}{detail}. {START_ADVICE}") from None
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

    def call(self, function: Callable[..., T], *args, **kwargs) -> T:
        return _task_result(self._task().remote(function, self.threads, args, kwargs))

    def map(self, function: Callable[..., T], jobs: Iterable[tuple]) -> Iterator[tuple[int, T]]:
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
            [ready], _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready)
            result = _task_result(ready)
            submit()
            yield index, result

    def run(self, jobs: list[Job]) -> Iterator[Outcome]:
        import ray
        from ray.exceptions import RayError, RayTaskError

        task = ray.remote(_run_on_worker).options(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run,
                                                  max_retries=0)
        pending = {task.remote(config, self.threads): (index, config, "") for index, config in jobs}
        while pending:
            [ready], _ = ray.wait(list(pending), num_returns=1)
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
    return f"{type(error).__name__}: {_first_line(error)}"


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else "no reason given"
