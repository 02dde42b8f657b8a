"""How fast the command line answers ``--help`` (issue 28: under a second), each command as a fresh process.

Every command's and experiment's ``cprune ... --help`` runs REPEATS times as ``python -m cprune_core``, as a user
types it; the median wall time is printed beside, in the same run, the interpreter alone and ``import torch`` alone
(what every command's help cost while its parser imported the work). A line also says which of torch, pandas,
scipy and networkx building each parser imported: none, by design (``cli.parsers``).

    .venv/bin/python -m bench.bench_cli
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

REPEATS = 5
COMMANDS = ([], ["finetune"], ["evaluate"], ["graph"], ["experiment"], ["experiment", "paper-table"],
            ["experiment", "importance"], ["experiment", "atlas"], ["experiment", "tolerance"],
            ["experiment", "allocation"])
HEAVY = ("torch", "pandas", "scipy", "networkx")
PROBE = ("import sys\nfrom cprune_core.cli import main\ntry:\n    main(sys.argv[1:] + ['--help'])\n"
         "except SystemExit:\n    pass\nprint([name for name in {heavy!r} if name in sys.modules])")


def median_seconds(argv: list[str]) -> float:
    times = []
    for _ in range(REPEATS):
        begun = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - begun)
    return statistics.median(times)


def heavy_imports(words: list[str]) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *words], check=True,
                          capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]


def main() -> None:
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; median of {REPEATS} fresh "
          "processes each")
    for code in ("pass", "import torch"):
        print(f"{'python -c ' + repr(code):<42} {median_seconds([sys.executable, '-c', code]):6.2f} s")
    for words in COMMANDS:
        shown = "cprune " + " ".join([*words, "--help"])
        seconds = median_seconds([sys.executable, "-m", "cprune_core", *words, "--help"])
        print(f"{shown:<42} {seconds:6.2f} s   heavy modules imported: {heavy_imports(words)}")


if __name__ == "__main__":
    main()
