"""``experiment importance``: does centrality predict importance? A generated report, or JSON."""
from __future__ import annotations

import argparse
import json
import sys
import time

from ..ablation import DEFAULT_RESAMPLES, DEFAULT_SAMPLE_SIZE, analyse_importance
from ..experiment import importance_report
from ..experiment.grid import DEFAULT_IMAGE_SIZE
from ..criteria import DEFAULT_TAU
from ..paths import DOCS_DIR, writable_dir
from ..registry import DEFAULT_BACKBONE
from .progress_bars import StepProgressBar
from .options import add_analysis_data_options, add_config_argument, add_executor_options, executor_flags, make_executor

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
    parser.add_argument("--layer", help="Layer to analyse; default the backbone's head layer.")
    parser.add_argument("--seeds", type=int, help="Seeds of the random criterion; default 5 (--quick: 2).")
    parser.add_argument("--sample", type=int, default=DEFAULT_SAMPLE_SIZE,
                        help="Neurons measured when each needs a forward pass (any layer but one read only by the "
                             "classifier).")
    add_config_argument(parser, "tau")
    add_config_argument(parser, "image_size", default=DEFAULT_IMAGE_SIZE,
                        help="Input size; the flowers photos are 128 px.")
    add_config_argument(parser, "device")
    parser.add_argument("--quick", action="store_true",
                        help=f"flowers-sample, {importance_report.QUICK_SEEDS} seeds, {importance_report.QUICK_RESAMPLES} bootstrap "
                             f"resamples (instead of {DEFAULT_RESAMPLES}): for tests and for checking the set-up.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON on stdout (and nothing else).")
    parser.add_argument("--out", default=str(DOCS_DIR), help="Folder for the report, CSV and plot.")
    add_executor_options(parser, "task", local="in this process, with a progress bar",
                         ray="the whole analysis as one Ray task (e.g. on a GPU node), without a progress bar")
    parser.set_defaults(handler=importance_command)


def importance_command(args: argparse.Namespace) -> int:
    out = writable_dir(args.out, "--out")  # before hours of work whose report could not be written
    config = importance_report.importance_config(quick=args.quick, backbone=args.backbone, dataset=args.dataset,
                                          root=args.dataset_root, image_size=args.image_size, device=args.device)
    seeds = args.seeds if args.seeds is not None else (importance_report.QUICK_SEEDS if args.quick else importance_report.DEFAULT_SEEDS)
    resamples = importance_report.QUICK_RESAMPLES if args.quick else DEFAULT_RESAMPLES
    command = " ".join(part for part in [
        "python -m cprune_core experiment importance", "--quick" if args.quick else "",
        f"--backbone {args.backbone}" if args.backbone != DEFAULT_BACKBONE else "",
        f"--dataset {args.dataset}" if args.dataset else "", f"--root {args.dataset_root}" if args.dataset_root else "",
        f"--layer {args.layer}" if args.layer else "", f"--seeds {args.seeds}" if args.seeds is not None else "",
        f"--sample {args.sample}" if args.sample != DEFAULT_SAMPLE_SIZE else "",
        f"--tau {args.tau:g}" if args.tau != DEFAULT_TAU else "",
        f"--image-size {args.image_size}" if args.image_size != DEFAULT_IMAGE_SIZE else "",
        *executor_flags(args),
    ] if part)
    bar = StepProgressBar()
    start = time.perf_counter()
    with make_executor(args) as executor:
        where = executor.describe()
        if args.executor == "ray":  # a task's progress does not come back: say where it went
            print(f"Running the analysis on {where} …", file=sys.stderr)
        try:
            analysis = executor.call(analyse_importance, config, args.layer, tau=args.tau, seeds=seeds,
                                     sample_size=args.sample, resamples=resamples,
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
