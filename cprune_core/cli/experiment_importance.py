"""``experiment importance``: does centrality predict importance? A generated report, or JSON."""
from __future__ import annotations

import argparse
from dataclasses import replace
import json
import sys
import threading
import time

from ..ablation import AnalysisConfig, analyse_importance
from ..experiment import importance_report
from ..experiment.grid import DEFAULT_IMAGE_SIZE
from ..paths import writable_dir
from ..registry import DEFAULT_BACKBONE
from .interrupt import stop_on_ctrl_c
from .options import (add_analysis_data_options, add_config_argument, add_executor_options, add_settings_options,
                      executor_flags, make_executor, out_help, path_text, report_folder, settings_flags,
                      settings_from_args)
from .progress_bars import StepProgressBar

__all__ = ["add_importance_command"]


def add_importance_command(experiments) -> None:
    """The ``importance`` parser under ``experiment``'s names."""
    parser = experiments.add_parser(
        "importance", help="Does centrality predict importance? Each neuron's exact ablation effect against "
                           "every criterion's score.",
        description="Train a new head once on the frozen backbone, then remove each neuron of a layer alone and "
                    "measure the change in validation loss and accuracy (no retraining): every neuron of the "
                    "backbone's head layer by one matrix operation on the cached pooled features, or a seeded "
                    "sample of another layer's neurons by a forward pass each. Reports each criterion's Spearman "
                    "correlation with that effect (95% bootstrap interval) and the zero-shot pruning curve; writes "
                    "importance.md, importance.csv and importance.png in --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_analysis_data_options(parser)
    add_config_argument(parser, "image_size", default=DEFAULT_IMAGE_SIZE,
                        help="Input size; the flowers photos are 128 px.")
    add_config_argument(parser, "device")
    quick = importance_report.QUICK_ANALYSIS
    add_settings_options(parser, AnalysisConfig, quick=quick)
    parser.add_argument("--quick", action="store_true",
                        help=f"flowers-sample, {quick.seeds} seeds, {quick.resamples} bootstrap resamples (instead "
                             f"of {AnalysisConfig.resamples}), the report not in docs/ (see --out): for tests and for "
                             "checking the set-up.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON on stdout (and nothing else).")
    parser.add_argument("--out", type=path_text, help=out_help())
    add_executor_options(parser, "task", local="in this process, with a progress bar",
                         ray="the whole analysis as one Ray task (e.g. on a GPU node), without a progress bar")
    parser.set_defaults(handler=importance_command)


def importance_command(args: argparse.Namespace) -> int:
    out = writable_dir(report_folder(args.out, args.quick), "--out")  # before hours of work whose report could not be written
    config = replace(importance_report.importance_config(quick=args.quick, backbone=args.backbone,
                                                         dataset=args.dataset, root=args.dataset_root,
                                                         image_size=args.image_size, device=args.device),
                     disk_cache=True)  # a re-run (or the atlas's) frozen features are read back, not recomputed
    settings = settings_from_args(args, AnalysisConfig, importance_report.QUICK_ANALYSIS if args.quick else None)
    command = " ".join(part for part in [
        "python -m cprune_core experiment importance", "--quick" if args.quick else "",
        f"--backbone {args.backbone}" if args.backbone != DEFAULT_BACKBONE else "",
        f"--dataset {args.dataset}" if args.dataset else "", f"--root {args.dataset_root}" if args.dataset_root else "",
        *settings_flags(args, AnalysisConfig),
        f"--image-size {args.image_size}" if args.image_size != DEFAULT_IMAGE_SIZE else "",
        *executor_flags(args),
    ] if part)
    bar = StepProgressBar()
    start = time.perf_counter()
    with make_executor(args) as executor:
        where = executor.describe()
        if args.executor == "ray":  # a task's progress does not come back: say where it went
            print(f"Running the analysis on {where} …", file=sys.stderr)
        stop = threading.Event()  # Ctrl-C: the analysis stops within a step (StopRequested: one line, exit 130)
        try:
            with stop_on_ctrl_c(stop):
                analysis = executor.call(analyse_importance, config, **settings.to_dict(), stop=stop,
                                         progress=bar if args.executor == "local" else None)
        finally:
            bar.close()
    elapsed = time.perf_counter() - start
    paths = importance_report.write_importance_report(analysis, out, command=command, elapsed_s=elapsed, device=where)
    if args.json:
        print(json.dumps(importance_report.importance_json(analysis, elapsed), indent=2))
        return 0
    print(f"Finding: {analysis.sentence}")
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
