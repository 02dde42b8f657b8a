"""``finetune``: prune and fine-tune a backbone on a dataset (or train the baseline)."""
from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

from ..checkpoint import ONNX_FILE, TORCHSCRIPT_FILE, export_onnx, export_torchscript
from ..errors import ConfigError, exit_code_for, one_line
from ..paths import writable_dir
from ..runs import run_and_record
from ..schema import FinetuneConfig, RunResult, RunStatus
from .interrupt import stop_on_ctrl_c
from .options import open_store, settings_from_args
from .parsers import EXPORT_FORMATS
from .progress_bars import RunProgressBar

__all__ = ["summary_table", "finetune_command"]

# --export's formats (parsers.EXPORT_FORMATS): what writes each, and the file it writes in --save's folder.
EXPORTERS = dict(zip(EXPORT_FORMATS, ((export_onnx, ONNX_FILE), (export_torchscript, TORCHSCRIPT_FILE)), strict=True))


def finetune_command(args: argparse.Namespace) -> int:
    config = settings_from_args(args, FinetuneConfig, **({"mode": "baseline"} if args.baseline else {}))
    if args.export and not args.save:
        raise ConfigError("--export needs --save DIR (the exported files go next to the saved model).")
    if args.save:
        writable_dir(args.save, "--save")
    store = None if args.no_record else open_store(args.store)
    stop = threading.Event()
    bar = RunProgressBar(args.quiet)
    try:
        with stop_on_ctrl_c(stop):
            result = run_and_record(config, store, args.save, stop, on_event=bar)
    finally:
        bar.close()
    if result.model_dir is not None:
        image_size = config.image_size or result.spec.input_size
        for kind in args.export:
            export, file_name = EXPORTERS[kind]
            export(result.model, Path(result.model_dir) / file_name, image_size)
    summary = result.summary
    if summary.status == RunStatus.FAILED:
        print(f"error: {one_line(summary.message)}", file=sys.stderr)
    if args.json:
        report = {"run_id": result.run_id, "model_dir": result.model_dir, **summary.to_dict(),
                  "config": config.to_dict()}
        print(json.dumps(report, indent=2))
    elif summary.status != RunStatus.FAILED:
        print(summary_table(config, result))
    if summary.status == RunStatus.FAILED:
        return exit_code_for(summary.error)
    return 130 if summary.status == RunStatus.STOPPED else 0


def _format(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def percent(value: float | None) -> str | None:
    return None if value is None else f"{100 * value:.1f}%"


def summary_table(config: FinetuneConfig, result: RunResult) -> str:
    """A two-column text table of the run's outcome."""
    summary = result.summary
    method = config.mode if config.mode != "pruned" else (
        f"pruned ({config.criterion}, keep {config.keep:g}, tau {config.tau:g})")
    kept = ", ".join(f"{layer} {summary.kept[layer]}/{summary.channels.get(layer, '?')}" for layer in summary.kept)
    rows = [
        ("status", summary.status), ("message", summary.message), ("backbone", config.backbone),
        ("dataset", config.dataset), ("method", method),
        ("images train/val/test", "/".join(str(n) for n in summary.n_images.values()) or None),
        ("test accuracy", percent(summary.test_acc)), ("val accuracy", percent(summary.val_acc)),
        ("params", summary.params), ("MACs", summary.macs), ("latency (ms, batch 1)", summary.latency_ms),
        ("kept neurons", kept or None), ("epochs", summary.epochs_done), ("duration (s)", summary.duration_s),
        ("skipped images", summary.n_skipped), ("device", summary.device), ("run id", result.run_id),
        ("model saved in", result.model_dir),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {_format(value)}" for name, value in rows)
