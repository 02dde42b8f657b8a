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
from ..experiment.settings import DEFAULT_IMAGE_SIZE
from ..paths import writable_dir
from ..registry import DEFAULT_BACKBONE
from .interrupt import stop_on_ctrl_c
from .options import executor_flags, make_executor, report_folder, settings_flags, settings_from_args
from .progress_bars import StepProgressBar

__all__ = ["importance_command"]


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
