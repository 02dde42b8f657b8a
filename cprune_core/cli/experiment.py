"""``experiment NAME``: generated reports. ``paper-table``: the paper's comparison (here), run in this
process (``--executor local``) or as Ray tasks on a cluster (``--executor ray``); ``importance``: does
centrality predict importance (experiment_importance.py); ``atlas``: the same question in every prunable
layer (experiment_atlas.py)."""
from __future__ import annotations

import argparse
import sys
import threading
import time
from datetime import timedelta

from tqdm import tqdm

from .. import experiment
from ..paths import writable_dir
from ..ranges import DEFAULT_SEEDS
from ..registry import BACKBONES
from .experiment_allocation import add_allocation_commands
from .experiment_atlas import add_atlas_command
from .experiment_importance import add_importance_command
from .interrupt import stop_on_ctrl_c
from .options import (add_config_argument, add_executor_options, executor_flags, make_executor, open_store, out_help,
                      path_text, report_folder, whole_number)

__all__ = ["add_command"]


def add_command(subparsers, command) -> None:
    experiments = subparsers.add_parser(
        command.name, help=command.help,
        description="Each experiment writes a generated report (Markdown, CSV and PNG) in --out; "
                    "`experiment NAME --help` lists its options.")
    names = experiments.add_subparsers(dest="name", required=True, metavar="NAME")
    parser = names.add_parser(
        "paper-table", help="Reproduce the paper's comparison as a table.",
        description="paper-table: for each backbone x dataset regime x seed, on the same split, run the conventional "
                    "baseline, fine-tuning without pruning, and prune-then-fine-tune with each criterion and keep "
                    "ratio; record every run in the store and write results.md, results.csv and results.png in --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--backbones", nargs="+", choices=list(BACKBONES), help="Backbones; default efficientnet_lite0.")
    parser.add_argument("--datasets", nargs="+", choices=list(experiment.REGIMES),
                        help="Dataset regimes; default the offline pair flowers128 and flowers128-10shot "
                             "(--quick: flowers-sample).")
    parser.add_argument("--seeds", type=whole_number, help=f"Number of seeds (0..N-1); default {DEFAULT_SEEDS} "
                                                  f"(--quick: {experiment.QUICK_SEEDS}).")
    parser.add_argument("--quick", action="store_true",
                        help=f"A reduced grid (eigenvector and random at keep 0.25 and 0.5, no tau sweep, "
                             f"{experiment.QUICK_EPOCHS} epochs) that runs in minutes on a CPU, its report not in "
                             "docs/ (see --out): for tests and for checking the set-up.")
    add_config_argument(parser, "epochs", default=None, help=f"Epochs per run; default {experiment.DEFAULT_EPOCHS} "
                                                             f"(--quick: {experiment.QUICK_EPOCHS}).")
    add_config_argument(parser, "image_size", default=experiment.DEFAULT_IMAGE_SIZE,
                        help="Input size; the flowers photos are 128 px, so larger sizes only upsample "
                             "(use 224 for the downloaded datasets).")
    add_config_argument(parser, "train_scope")
    add_config_argument(parser, "device")
    parser.add_argument("--out", type=path_text, help=out_help())
    parser.add_argument("--no-record", action="store_true",
                        help="Do not record the runs in the local run store (and so do not resume from it).")
    parser.add_argument("--rerun", action="store_true",
                        help="Run again the planned runs that already finished in the run store (by default they "
                             "are skipped and their recorded results reported, so a killed grid resumes).")
    add_executor_options(parser, "run", local="one run after another in this process",
                         ray="each run is a Ray task (as many at once as the cluster holds)")
    parser.set_defaults(handler=run_experiment_command)
    add_importance_command(names)
    add_atlas_command(names)
    add_allocation_commands(names)


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
