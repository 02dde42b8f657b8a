"""The grid on Ray against the grid in one process, side by side in one run, and Ray's cost per run.

Run: .venv/bin/python bench/bench_ray.py
Targets (2-core CPU, a local Ray of 2 CPUs): the --quick paper table under Ray within 1.3x of its
wall time with the local executor; Ray's overhead under 1 s per run; an unreachable --ray-address
refused (one line naming it) within the probe's timeout (PROBE_TIMEOUT_S, 5 s: what a silent address
costs by design) plus 1 s of the command's start-up.

Each grid is the real command in a fresh process (`python -m cprune_core experiment paper-table
--quick --no-record`), timed from start to exit: the local one imports torch and runs the 12 runs in
turn on every core; the Ray one also starts a local Ray, its two workers (each importing torch) and
stops it. A third, local with one thread per run, checks that its test accuracies are Ray's.
Ray's overhead: what it adds to every run (an empty task's round trip on a warm worker), what it adds
once per command (starting a local Ray; a fresh worker importing torch and the engine), and, from the
Ray grid, the slot-seconds not spent inside a run (slots x wall time - the runs' own durations)
divided by the runs, which spreads the once-per-command costs and the idle tail over this grid's 12 runs.
An unreachable address: the command (in this process, after its imports) on a closed port, on an address
nobody answers (TEST-NET-1) and on a port that answers but not as Ray.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def timed_grid(options: list[str], out: Path) -> tuple[float, pd.DataFrame]:
    command = [sys.executable, "-m", "cprune_core", "experiment", "paper-table", "--quick", "--no-record",
               "--out", str(out), *options]
    environment = {**os.environ, "CPRUNE_HOME": str(out / "home")}
    environment.pop("RAY_ADDRESS", None)
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=environment, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started, pd.read_csv(out / "results.csv")


def ray_costs(repeats: int = 200) -> tuple[float, float, float]:
    """(seconds to start a local Ray, seconds until a fresh worker has imported the engine, seconds of an
    empty task's round trip on a warm worker): the first two once per command, the last once per run."""
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    start_s = time.perf_counter() - started
    try:
        @ray.remote(num_cpus=1)
        def import_engine():
            import cprune_core.engine  # noqa: F401 (torch and the engine, as a run's first task loads them)

        @ray.remote(num_cpus=1)
        def empty():
            return None

        started = time.perf_counter()
        ray.get(import_engine.remote())
        warm_up_s = time.perf_counter() - started
        ray.get([empty.remote() for _ in range(4)])
        started = time.perf_counter()
        for _ in range(repeats):
            ray.get(empty.remote())
        return start_s, warm_up_s, (time.perf_counter() - started) / repeats
    finally:
        ray.shutdown()


def unreachable_address_seconds() -> dict[str, float]:
    """Seconds from the command's start (imports done) to its one-line error, per unreachable address."""
    from cprune_core.cli import main as command

    seconds = {}
    with socket.create_server(("127.0.0.1", 0)) as silent, tempfile.TemporaryDirectory() as out:
        for what, address in [("closed port", "127.0.0.1:9"), ("nobody answers", "192.0.2.1:6379"),
                              ("answers, not as Ray", f"127.0.0.1:{silent.getsockname()[1]}")]:
            error = io.StringIO()
            started = time.perf_counter()
            with contextlib.redirect_stderr(error):
                code = command(["experiment", "paper-table", "--quick", "--no-record", "--out", out,
                                "--executor", "ray", "--ray-address", address])
            seconds[what] = time.perf_counter() - started
            if code != 3 or address not in error.getvalue():
                raise SystemExit(f"unexpected outcome for {address}: exit {code}, {error.getvalue()!r}")
    return seconds


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    load = os.getloadavg()[0]
    print(f"== The --quick paper table, local vs Ray (load average at start {load:.2f} on {os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as scratch:
        local_s, local_rows = timed_grid(["--executor", "local"], Path(scratch) / "local")
        ray_s, ray_rows = timed_grid(["--executor", "ray"], Path(scratch) / "ray")
        single_s, single_rows = timed_grid(["--executor", "local", "--cpus-per-run", "1"], Path(scratch) / "single")
    runs, slots = len(ray_rows), os.cpu_count()  # the command's local Ray has every core, 1 per run
    ratio = ray_s / local_s
    print(f"   local, every core per run: {local_s:.1f} s for {len(local_rows)} runs "
          f"({local_rows['duration_s'].sum():.1f} s inside runs)")
    print(f"   ray, 1 CPU per run, {slots} at once: {ray_s:.1f} s for {runs} runs "
          f"({ray_rows['duration_s'].sum():.1f} s inside runs)")
    print(f"   ratio ray/local: {ratio:.2f} -> {'OK' if ratio <= 1.3 else 'SLOW'} (target <= 1.3)")
    print(f"   local with --cpus-per-run 1: {single_s:.1f} s; test accuracies "
          f"{'identical to' if single_rows['test_acc'].tolist() == ray_rows['test_acc'].tolist() else 'DIFFER from'} "
          f"Ray's (with every core: {'identical' if local_rows['test_acc'].tolist() == ray_rows['test_acc'].tolist() else 'different'})")
    outside = (slots * ray_s - ray_rows["duration_s"].sum()) / runs
    print(f"   Ray grid: slot-seconds outside the runs, per run (Ray and worker start-up, idle tail): {outside:.2f} s")
    start_s, warm_up_s, round_trip_s = ray_costs()
    print(f"== Ray's own costs: starting a local Ray {start_s:.1f} s and a worker importing the engine {warm_up_s:.1f} s "
          f"(once per command); an empty task's round trip on a warm worker {1000 * round_trip_s:.1f} ms per run "
          f"-> {'OK' if round_trip_s < 1 else 'SLOW'} (target < 1 s per run)")
    from cprune_core.experiment.executors import PROBE_TIMEOUT_S

    seconds, target = unreachable_address_seconds(), PROBE_TIMEOUT_S + 1
    print("== An unreachable --ray-address, to its one-line error: " + ", ".join(
        f"{what} {value:.2f} s" for what, value in seconds.items())
          + f" -> {'OK' if max(seconds.values()) < target else 'SLOW'} (target < {target:g} s)")

if __name__ == "__main__":
    main()
