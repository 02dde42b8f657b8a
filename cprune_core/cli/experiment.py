"""``experiment NAME``: generated reports. ``paper-table``: the paper's comparison (here), run in this
process (``--executor local``) or as Ray tasks on a cluster (``--executor ray``); ``importance``: does
centrality predict importance (experiment_importance.py); ``atlas``: the same question in every prunable
layer (experiment_atlas.py)."""
from __future__ import annotations

import sys
import threading
import time
from datetime import timedelta

from tqdm import tqdm

from .. import experiment
from ..paths import writable_dir
from .interrupt import stop_on_ctrl_c
from .options import executor_flags, make_executor, open_store, report_folder

__all__ = ["run_experiment_command"]


def run_experiment_command(args) -> int:
    out = writable_dir(report_folder(args.out, args.quick), "--out")
    grid = experiment.paper_table_grid(quick=args.quick, backbones=args.backbones, regimes=args.datasets,
                                       seeds=args.seeds, epochs=args.epochs, image_size=args.image_size,
                                       device=args.device, train_scope=args.train_scope)
    command = "python -m cprune_core experiment paper-table " + " ".join(
        part for part in [
            "--quick" if args.quick else "",
            f"--backbones {' '.join(args.backbones)}" if args.backbones else "",
            f"--datasets {' '.join(args.datasets)}" if args.datasets else "",
            f"--seeds {args.seeds}" if args.seeds else "",
            f"--epochs {args.epochs}" if args.epochs else "",
            f"--image-size {args.image_size}" if args.image_size != experiment.DEFAULT_IMAGE_SIZE else "",
            f"--train-scope {args.train_scope}" if args.train_scope != "suffix" else "",
            *executor_flags(args),
        ] if part)
    executor = make_executor(args)  # its CPU and GPU counts checked before the run store is opened
    store = None if args.no_record else open_store(None)
    start = time.perf_counter()
    with executor:
        bar = tqdm(total=len(grid.plan), unit="run", file=sys.stderr,
                   bar_format="{l_bar}{bar}| {n}/{total} [{elapsed}{postfix}]")

        def on_progress(progress, row):
            bar.n = progress.total - progress.running - progress.left
            eta = progress.eta_s(time.perf_counter() - start)
            bar.set_postfix_str(
                f"done {progress.done + progress.from_store}"
                + (f" ({progress.from_store} from the store)" if progress.from_store else "")
                + f", running {progress.running}, failed {progress.failed}, left {progress.left}"
                + (f", retried {progress.retried}" if progress.retried else "")
                + (f", ETA {timedelta(seconds=round(eta))}" if eta is not None else "")
                + ("" if row is None else f"; last: seed {row['seed']} {row['criterion']} keep {row['keep']:g} "
                   + ("-" if row["test_acc"] is None else f"{100 * row['test_acc']:.1f}%")))

        stop = threading.Event()
        try:
            with stop_on_ctrl_c(stop):
                rows = experiment.run_plan(grid.plan, store, on_progress, executor=executor, rerun=args.rerun,
                                           stop=stop)
        finally:
            bar.close()
        where = executor.describe()
    not_run = len(grid.plan) - sum(row["status"] == "finished" for row in rows)
    if rows:
        paths = experiment.write_report(rows, out, command=command.strip(), elapsed_s=time.perf_counter() - start,
                                        device=where, base=grid.base, stopped=not_run if stop.is_set() else 0)
        print(next(line for line in paths["md"].read_text().splitlines() if line.startswith("**Result:**")))
        for kind, path in paths.items():
            print(f"{kind}: {path}")
    if stop.is_set():
        print(f"stopped: interrupted with Ctrl-C; {not_run} of {len(grid.plan)} planned runs did not finish "
              + ("(the report holds the others); " if rows else "") + "the same command runs them, skipping the "
              "finished ones" + ("." if store is not None else " (with the run store: leave out --no-record)."),
              file=sys.stderr)
        return 130
    return 0 if all(row["status"] == "finished" for row in rows) else 1
