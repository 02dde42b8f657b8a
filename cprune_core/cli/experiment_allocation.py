"""``experiment tolerance``: does a per-layer figure (alpha, stable rank, centrality's concentration) predict what a
layer can lose, measured by the atlas? ``experiment allocation``: prune the whole network to the same MACs with
ratios set uniformly, by alpha (AlphaPruning) or by measured tolerance, fine-tune, compare over seeds."""
from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import replace

from tqdm import tqdm

from ..experiment import allocation_report, tolerance_report
from ..experiment.allocation import REMOVED, REMOVED_RANGE, RULES, plan_allocations, run_allocations
from ..experiment.grid import DEFAULT_EPOCHS, DEFAULT_IMAGE_SIZE, REGIMES
from ..experiment.tolerance import PREDICTORS, associations, choose_atlas, tolerance_columns, tolerance_table
from ..errors import ConfigError, CPruneError
from ..paths import writable_dir
from ..ranges import DEFAULT_SEEDS, SEEDS
from ..registry import BACKBONES
from ..schema import FinetuneConfig
from .interrupt import stop_on_ctrl_c
from .options import (add_config_argument, add_executor_options, comma_floats, executor_flags, make_executor,
                      open_store, out_help, path_text, report_folder, whole_number)

__all__ = ["add_allocation_commands", "FULL_BACKBONES", "QUICK"]

FULL_BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")  # the atlas's three
# --quick: minutes on a CPU (two seeds, so the paired intervals exist).
QUICK = {"regimes": ["flowers-sample"], "seeds": 2, "epochs": 1, "image_size": 64, "removed": [0.5]}


def add_allocation_commands(experiments) -> None:
    """The ``tolerance`` and ``allocation`` parsers under ``experiment``'s names."""
    parser = experiments.add_parser(
        "tolerance", help="Does alpha, stable rank or centrality's concentration predict how much a layer can lose? "
                          "From the recorded atlas, no training.",
        description="For every layer the atlas measured (per backbone, its largest recorded run: docs/atlas-*.json.gz "
                    "or $CPRUNE_HOME/atlas): the accuracy lost with half and three quarters of the layer removed, at "
                    "random and by the best criterion, against the weights' spectral figures and centrality's "
                    "concentration; Spearman rho over every layer with bootstrap intervals and permutation p-values, "
                    "Holm-corrected over the family. Writes tolerance.md, tolerance.csv and tolerance.png in --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--backbones", nargs="+", choices=list(BACKBONES), metavar="BACKBONE",
                        help=f"Backbones whose atlases are read; default {' '.join(FULL_BACKBONES)} (--quick: "
                             f"{FULL_BACKBONES[0]}).")
    parser.add_argument("--quick", action="store_true",
                        help="The first backbone only, whatever atlas is recorded (a --quick one too); the report is "
                             "not written in docs/ (see --out).")
    parser.add_argument("--out", type=path_text, help=out_help())
    parser.set_defaults(handler=tolerance_command)
    _add_allocation_parser(experiments)


def _add_allocation_parser(experiments) -> None:
    parser = experiments.add_parser(
        "allocation", help="Prune the whole network to the same MACs with per-layer ratios set uniformly, by alpha "
                           "(AlphaPruning) or by the atlas's measured tolerance; fine-tune and compare over seeds.",
        description="For each backbone x dataset regime x seed: the unpruned network fine-tuned, and for each share of "
                    "the prunable MACs removed, each allocation rule (uniform, alpha, tolerance) and each criterion "
                    "within layers (eigenvector, random), the network pruned to exactly that many MACs and fine-tuned "
                    "end to end. Every run is recorded in the run store as it ends, so the same command resumes. "
                    "Writes allocation.md, allocation.csv and allocation.png in --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--backbones", nargs="+", choices=list(BACKBONES), default=[FULL_BACKBONES[0]],
                        metavar="BACKBONE", help=f"Backbones; choose from {', '.join(BACKBONES)}.")
    parser.add_argument("--datasets", nargs="+", choices=list(REGIMES),
                        help="Dataset regimes; default flowers128-full (--quick: flowers-sample).")
    parser.add_argument("--seeds", type=whole_number, help=f"Number of seeds (0..N-1); default {DEFAULT_SEEDS} "
                                                           f"(--quick: {QUICK['seeds']}).")
    parser.add_argument("--removed", type=comma_floats, metavar="SHARES",
                        help=f"Shares of the prunable MACs removed, comma-separated, each in (0, 1); default "
                             f"{','.join(f'{r:g}' for r in REMOVED)} (--quick: {QUICK['removed'][0]:g}).")
    add_config_argument(parser, "epochs", default=None, help=f"Epochs per run; default {DEFAULT_EPOCHS} "
                                                             f"(--quick: {QUICK['epochs']}).")
    add_config_argument(parser, "image_size", default=None, help=f"Input size; default {DEFAULT_IMAGE_SIZE} (the "
                                                                 f"flowers photos' size; --quick: {QUICK['image_size']}).")
    add_config_argument(parser, "device")
    parser.add_argument("--quick", action="store_true",
                        help="flowers-sample, 2 seeds, 1 epoch at 64 px, half the MACs removed: minutes on a CPU, "
                             "for tests and for checking the set-up; the report is not written in docs/.")
    parser.add_argument("--out", type=path_text, help=out_help())
    parser.add_argument("--no-record", action="store_true",
                        help="Do not record the runs in the run store (and so do not resume from it).")
    parser.add_argument("--rerun", action="store_true",
                        help="Run again the planned runs that already finished in the run store.")
    add_executor_options(parser, "run", local="one run after another in this process",
                         ray="each run is a Ray task (as many at once as the cluster holds)")
    parser.set_defaults(handler=allocation_command)


def tolerance_command(args: argparse.Namespace) -> int:
    out = writable_dir(report_folder(args.out, args.quick), "--out")
    backbones = list(dict.fromkeys(args.backbones or FULL_BACKBONES[:1 if args.quick else None]))
    start = time.perf_counter()
    atlases = [choose_atlas(backbone) for backbone in backbones]
    keeps = {atlas.settings.keep_ratios for atlas in atlases}
    if len(keeps) > 1:
        raise ConfigError("The atlases read were measured at different keep ratios; measure them with the same ones.")
    table = tolerance_table(atlases)
    tolerances = tolerance_columns(keeps.pop())
    found = associations(table, list(PREDICTORS), tolerances)
    reference = [replace(a, adjusted=float("nan")) for a in associations(table, ["neurons"], tolerances)]
    beyond_width = associations(table, list(PREDICTORS), tolerances, given="neurons")
    command = "python -m cprune_core experiment tolerance" + (" --quick" if args.quick else "") + (
        f" --backbones {' '.join(backbones)}" if args.backbones else "")
    paths = tolerance_report.write_tolerance_report(table, found, reference, beyond_width, atlases, out,
                                                    command=command, elapsed_s=time.perf_counter() - start)
    print(tolerance_report.tolerance_sentence(found, backbones))
    print(tolerance_report.beyond_width_sentence(beyond_width))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def _settings(args: argparse.Namespace) -> tuple[list, int, list[float], FinetuneConfig]:
    """The regimes, seeds, shares and base configuration, every value checked (ConfigError) before any work."""
    quick = QUICK if args.quick else {}
    regimes = [REGIMES[name] for name in args.datasets or quick.get("regimes", ["flowers128-full"])]
    seeds = SEEDS.check(args.seeds if args.seeds is not None else quick.get("seeds", DEFAULT_SEEDS), "seeds")
    removed = args.removed if args.removed is not None else quick.get("removed", list(REMOVED))
    if not removed:
        raise ConfigError("Choose at least one removed share of the prunable MACs (--removed 0.5,0.7).")
    for share in removed:
        REMOVED_RANGE.check(share, "--removed (a share of the prunable MACs)")
    base = FinetuneConfig(epochs=args.epochs or quick.get("epochs", DEFAULT_EPOCHS), device=args.device,
                          image_size=args.image_size or quick.get("image_size", DEFAULT_IMAGE_SIZE),
                          train_scope="all", log_every=1000)
    for backbone in args.backbones:
        replace(base, backbone=backbone).validate()
    return regimes, seeds, sorted(set(removed)), base


def _atlases(backbones: list[str]) -> dict:
    """Each backbone's atlas for the tolerance rule; None (the rule then has no measured layer) with a warning."""
    found = {}
    for backbone in backbones:
        try:
            found[backbone] = choose_atlas(backbone)
        except CPruneError as missing:
            print(f"warning: {missing} The tolerance rule gives every layer of {backbone} the same ratio.",
                  file=sys.stderr)
            found[backbone] = None
    return found


def _command(args: argparse.Namespace) -> str:
    return " ".join(part for part in [
        "python -m cprune_core experiment allocation", "--quick" if args.quick else "",
        f"--backbones {' '.join(args.backbones)}" if args.backbones != [FULL_BACKBONES[0]] else "",
        f"--datasets {' '.join(args.datasets)}" if args.datasets else "",
        f"--seeds {args.seeds}" if args.seeds is not None else "",
        f"--removed {','.join(f'{r:g}' for r in args.removed)}" if args.removed else "",
        f"--epochs {args.epochs}" if args.epochs else "", f"--image-size {args.image_size}" if args.image_size else "",
        *executor_flags(args)] if part)


def allocation_command(args: argparse.Namespace) -> int:
    out = writable_dir(report_folder(args.out, args.quick), "--out")
    regimes, seeds, removed, base = _settings(args)
    executor = make_executor(args)  # its CPU and GPU counts checked before anything is loaded
    start = time.perf_counter()
    plan = plan_allocations(args.backbones, regimes, range(seeds), removed, base, _atlases(args.backbones), RULES)
    store = None if args.no_record else open_store(None)
    stop = threading.Event()
    with executor:
        bar = tqdm(total=len(plan), unit="run", file=sys.stderr)

        def progress(done: int, total: int, row: dict | None) -> None:
            bar.n = done
            bar.set_postfix_str("" if row is None else f"last: seed {row['seed']} {row['rule']} {row['criterion']} "
                                + ("-" if row["test_acc"] is None else f"{100 * row['test_acc']:.1f}%"))

        try:
            with stop_on_ctrl_c(stop):
                rows = run_allocations(plan, store, executor, rerun=args.rerun, stop=stop, on_progress=progress)
        finally:
            bar.close()
        where = executor.describe()
    not_run = len(plan) - len(rows)
    if rows:
        paths = allocation_report.write_allocation_report(rows, out, command=_command(args), device=where,
                                                          elapsed_s=time.perf_counter() - start, epochs=base.epochs,
                                                          stopped=not_run)
        for line in paths["md"].read_text().splitlines():
            if line.startswith(("**At chance:**", "**Finding:**")):
                print(line)
        for kind, path in paths.items():
            print(f"{kind}: {path}")
    if stop.is_set():
        print(f"stopped: interrupted with Ctrl-C; {not_run} of {len(plan)} planned runs did not run; the same "
              "command runs them" + (", skipping the finished ones." if store is not None else "."), file=sys.stderr)
        return 130
    return 0 if all(row["status"] == "finished" for row in rows) else 1
