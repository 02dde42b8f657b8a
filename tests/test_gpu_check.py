"""bench/gpu_check.py runs end to end on the CPU at tiny sizes, so the GPU check cannot rot between GPU runs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ["check 1 graph pipeline:", "check 1 centrality:", "check 1 same top-k as the CPU:",
           "check 2 resnet50 throughput:", "check 2 efficientnet_lite0 throughput:",
           "check 3 run:", "check 3 precision:", "check 3 train loss:", "check 3 test accuracy:", "check 3 stop:",
           "check 4 MACs:", "check 4 latency batch 1:", "check 4 latency batch 4:",
           "check 5 batch that cannot fit:", "check 5 out of memory:", "check 5 next run:"]


def run_gpu_check(home: Path, *args: str) -> subprocess.CompletedProcess:
    # One thread: nobody reads these figures, and two OpenMP threads on cores that other processes
    # are busy with run many times slower than one.
    env = {**os.environ, "CPRUNE_HOME": str(home), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "bench/gpu_check.py", "--device", "cpu", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_every_check_passes_on_the_cpu_at_tiny_sizes(tmp_path):
    result = run_gpu_check(tmp_path, "--tiny")

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for figure in FIGURES:
        assert sum(line.startswith(figure) for line in lines) == 1, figure
    assert "Out of CPU memory at batch size" in result.stdout
    assert lines[-1].startswith("gpu_check: every check passed")


@pytest.mark.slow
def test_a_failing_check_fails_the_script(tmp_path):
    result = run_gpu_check(tmp_path, "--checks", "3", "--flowers", str(tmp_path / "missing"))

    assert result.returncode == 1
    assert "check 3 run: failed" in result.stdout and " FAIL" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("gpu_check: FAILED (3 run")
