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
from ..experiment.allocation import plan_allocations, run_allocations
from ..experiment.settings import (DEFAULT_EPOCHS, DEFAULT_IMAGE_SIZE, FULL_BACKBONES, PREDICTORS, QUICK_ALLOCATION,
                                   REGIMES, REMOVED, REMOVED_RANGE, RULES)
from ..experiment.tolerance import associations, choose_atlas, tolerance_columns, tolerance_table
from ..errors import ConfigError, CPruneError
from ..paths import writable_dir
from ..ranges import DEFAULT_SEEDS, SEEDS
from ..schema import FinetuneConfig
from .interrupt import stop_on_ctrl_c
from .options import executor_flags, make_executor, open_store, report_folder

__all__ = ["tolerance_command", "allocation_command"]



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
    quick = QUICK_ALLOCATION if args.quick else {}
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
        f"--out {args.out}" if args.out else "", *executor_flags(args)] if part)


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
