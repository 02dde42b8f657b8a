"""Command line: ``python -m cprune_core COMMAND``.

Each subcommand is registered by one ``add_*_command(subparsers)`` function listed in
``COMMANDS``; it sets ``handler`` (args -> exit code). Expected problems (bad values, missing
data, unreadable checkpoints) print one ``error:`` line and exit 2, with no traceback.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from . import experiment
from .checkpoint import export_onnx, export_torchscript, load_model, save_model
from .data import DATASETS, DatasetError, build_transform, load_dataset
from .engine import (DEVICES, MODES, RUN_ERRORS, TRAIN_SCOPES, WEIGHTS, Finetuner, FinetuneConfig, evaluate_model,
                     resolve_device)
from .importance import CRITERIA
from .registry import BACKBONES
from .store import RunStore, record

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STOPPED = 130
DEFAULTS = FinetuneConfig()


# ----------------------------------------------------------------------------- finetune


def add_finetune_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "finetune", help="Prune and fine-tune a backbone on a dataset (or train the baseline).",
        description="Fine-tune a backbone on an image-classification dataset: the conventional baseline "
                    "(frozen backbone + new head), prune-then-fine-tune, or fine-tune without pruning. "
                    "Prints progress, then a summary (or JSON with --json).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    model = parser.add_argument_group("model")
    model.add_argument("--backbone", default=DEFAULTS.backbone, choices=list(BACKBONES), help="Backbone network.")
    model.add_argument("--weights", default=DEFAULTS.weights, choices=WEIGHTS,
                       help="Starting weights: ImageNet-pretrained, random init, or a --checkpoint file.")
    model.add_argument("--checkpoint", help="State dict file to start from (with --weights checkpoint).")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default=DEFAULTS.dataset, choices=list(DATASETS), help="Dataset.")
    data.add_argument("--root", help="Dataset folder (required for 'folder'; optional for the others).")
    data.add_argument("--train-per-class", type=int,
                      help="Keep this many training images per class (few-shot).")
    data.add_argument("--val-fraction", type=float, default=DEFAULTS.val_fraction,
                      help="Fraction of each class for validation.")
    data.add_argument("--test-fraction", type=float, default=DEFAULTS.test_fraction,
                      help="Fraction of each class for test.")
    data.add_argument("--image-size", type=int,
                      help="Square input size; none: the backbone's own (224 for every backbone).")
    method = parser.add_argument_group("method")
    method.add_argument("--mode", default=DEFAULTS.mode, choices=MODES,
                        help="baseline: frozen backbone + new linear head; pruned: prune, then train the head and "
                             "the pruned layers' scope; finetune: as pruned, without pruning.")
    method.add_argument("--baseline", action="store_true", help="Shorthand for --mode baseline.")
    method.add_argument("--criterion", default=DEFAULTS.criterion, choices=list(CRITERIA),
                        help="Neuron importance criterion for pruning.")
    method.add_argument("--keep", type=float, default=DEFAULTS.keep,
                        help="Fraction of neurons kept in each pruned layer, in (0, 1].")
    method.add_argument("--tau", type=float, default=DEFAULTS.tau,
                        help="Cosine-similarity threshold of the neuron graph, in [0, 1).")
    method.add_argument("--layers", help="Comma-separated layers to prune, or 'all' for every prunable layer in "
                                         "the trained scope; none: the backbone's head layer "
                                         "(head.1 for efficientnet_lite0).")
    method.add_argument("--train-scope", default=DEFAULTS.train_scope, choices=TRAIN_SCOPES,
                        help="suffix: freeze and cache the backbone's prefix, train its suffix (fast); "
                             "all: train the whole network on augmented images.")
    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help="Training epochs.")
    training.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="Mini-batch size.")
    training.add_argument("--lr", type=float, default=DEFAULTS.lr, help="AdamW learning rate of the backbone layers being "
                                                                         "trained (cosine schedule).")
    training.add_argument("--head-lr-scale", type=float, default=DEFAULTS.head_lr_scale,
                          help="The new classifier head learns at this multiple of --lr.")
    training.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay, help="AdamW weight decay.")
    training.add_argument("--seed", type=int, default=DEFAULTS.seed,
                          help="Seed of the split, head init and shuffling.")
    training.add_argument("--device", default=DEFAULTS.device, choices=DEVICES,
                          help="auto: CUDA, then MPS, then CPU.")
    training.add_argument("--log-every", type=int, default=DEFAULTS.log_every,
                          help="Report training metrics every N steps.")
    training.add_argument("--disk-cache", action="store_true",
                          help="Also cache frozen features on disk (~/.cache/cprune/features) for later runs.")
    output = parser.add_argument_group("output")
    output.add_argument("--save", metavar="DIR", help="Save the fine-tuned model (model.pt + model.json) in DIR.")
    output.add_argument("--export", action="append", choices=("onnx", "torchscript"), default=[],
                        help="Also export the saved model to DIR/model.onnx or DIR/model.ts "
                             "(repeatable; needs --save).")
    output.add_argument("--no-record", action="store_true", help="Do not record the run in the run store.")
    output.add_argument("--store", metavar="FILE",
                        help="Run store file; none: $CPRUNE_HOME/runs.sqlite, else ~/.cache/cprune/runs.sqlite.")
    output.add_argument("--json", action="store_true", help="Print the final figures as JSON on stdout.")
    output.add_argument("--quiet", action="store_true", help="No progress bar.")
    parser.set_defaults(handler=finetune_command)


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    layers = None
    if args.layers:
        layers = [name.strip() for name in args.layers.split(",") if name.strip()]
    config = FinetuneConfig(
        backbone=args.backbone, weights=args.weights, checkpoint=args.checkpoint, dataset=args.dataset,
        dataset_root=args.root, mode="baseline" if args.baseline else args.mode, criterion=args.criterion,
        keep=args.keep, tau=args.tau, layers=layers, train_scope=args.train_scope, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, head_lr_scale=args.head_lr_scale, weight_decay=args.weight_decay,
        image_size=args.image_size,
        seed=args.seed, train_per_class=args.train_per_class, val_fraction=args.val_fraction,
        test_fraction=args.test_fraction, device=args.device, log_every=args.log_every, disk_cache=args.disk_cache)
    config.validate()
    return config


def finetune_command(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.export and not args.save:
        raise ValueError("--export needs --save DIR (the exported files go next to the saved model).")
    job = Finetuner(config)
    stop = threading.Event()
    events = job.events(stop)
    recording = None
    if not args.no_record:
        recording = record(RunStore(args.store), config, events)
        events = recording

    # First Ctrl-C: stop after the current batch and report; a second one aborts.
    def request_stop(signum, frame):
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    in_main_thread = threading.current_thread() is threading.main_thread()  # signals need the main thread
    previous_handler = signal.signal(signal.SIGINT, request_stop) if in_main_thread else None
    try:
        final = _consume(events, quiet=args.quiet)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous_handler)

    result = job.result()
    model_dir = None
    if args.save and result.model is not None and result.status != "failed":
        model_dir = save_model(result, args.save)
        image_size = config.image_size or result.spec.input_size
        for kind in args.export:
            exporter = export_onnx if kind == "onnx" else export_torchscript
            exporter(result.model, model_dir / ("model.onnx" if kind == "onnx" else "model.ts"), image_size)
        if recording is not None:
            recording.store.set_model_dir(recording.run_id, model_dir)
    report = {"run_id": recording.run_id if recording else None, "model_dir": str(model_dir) if model_dir else None,
              **final, "config": config.to_dict()}
    if final["status"] == "failed":
        print(f"error: {final['message']}", file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2))
    elif final["status"] != "failed":
        print(summary_table(config, report))
    return {"finished": 0, "stopped": EXIT_STOPPED}.get(final["status"], EXIT_FAILED)


def _consume(events, quiet: bool) -> dict:
    """Drive the run with a progress bar on stderr; returns the final figures."""
    bar = tqdm(total=None, unit="step", disable=quiet, file=sys.stderr, dynamic_ncols=True)
    final = {}
    try:
        for event in events:
            if event.kind == "prepare":
                bar.set_description_str(event.message)
            elif event.kind == "start":
                bar.reset(total=event.total_steps)
                bar.set_description_str("Training")
            elif event.kind in ("step", "epoch"):
                bar.update(event.step - bar.n)
                postfix = {"loss": event.train_loss, "train_acc": event.train_acc}
                if event.kind == "epoch":
                    postfix["val_acc"] = event.val_acc
                bar.set_postfix({k: f"{v:.3f}" for k, v in postfix.items() if v is not None})
                bar.set_description_str(f"Epoch {event.epoch}")
            elif event.kind == "end":
                final = event.final
    finally:
        bar.close()
    return final


def _format(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def summary_table(config: FinetuneConfig, report: dict) -> str:
    """A two-column text table of the run's outcome."""
    method = config.mode if config.mode != "pruned" else (
        f"pruned ({config.criterion}, keep {config.keep:g}, tau {config.tau:g})")
    rows = [
        ("status", report["status"]), ("message", report["message"]), ("backbone", config.backbone),
        ("dataset", config.dataset), ("method", method),
        ("images train/val/test", "/".join(str(n) for n in (report.get("n_images") or {}).values()) or None),
        ("test accuracy", _percent(report.get("test_acc"))), ("val accuracy", _percent(report.get("val_acc"))),
        ("params", report.get("params")), ("MACs", report.get("macs")),
        ("latency (ms, batch 1)", report.get("latency_ms")), ("kept neurons", _kept(report)),
        ("epochs", report.get("epochs_done")), ("duration (s)", report.get("duration_s")),
        ("skipped images", report.get("n_skipped")), ("device", report.get("device")),
        ("run id", report.get("run_id")), ("model saved in", report.get("model_dir")),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {_format(value)}" for name, value in rows)


def _percent(value: float | None) -> str | None:
    return None if value is None else f"{100 * value:.1f}%"


def _kept(report: dict) -> str | None:
    kept, channels = report.get("kept") or {}, report.get("channels") or {}
    return ", ".join(f"{layer} {kept[layer]}/{channels.get(layer, '?')}" for layer in kept) or None


# ----------------------------------------------------------------------------- evaluate


def add_evaluate_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="Accuracy of a saved model on a dataset, per class and overall.",
        description="Load a model directory written by `finetune --save` and measure its accuracy on a "
                    "dataset. Classes are matched by name; every class of the data must be a class of the model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", required=True, metavar="DIR", help="Saved model directory (model.json + model.pt).")
    parser.add_argument("--dataset", default="folder", choices=list(DATASETS),
                        help="Dataset; 'folder' is any folder with one sub-folder of images per class.")
    parser.add_argument("--root", help="Dataset folder (required for 'folder').")
    parser.add_argument("--split", default="all", choices=("all", "train", "val", "test"),
                        help="Which images: all, or one split made with --seed and the default fractions.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the split (with --split train/val/test).")
    parser.add_argument("--batch-size", type=int, default=64, help="Evaluation batch size.")
    parser.add_argument("--device", default="auto", choices=DEVICES, help="auto: CUDA, then MPS, then CPU.")
    parser.add_argument("--json", action="store_true", help="Print the accuracies as JSON on stdout.")
    parser.set_defaults(handler=evaluate_command)


def evaluate_command(args: argparse.Namespace) -> int:
    saved = load_model(args.model)
    if args.split == "all":
        splits = load_dataset(args.dataset, args.root, seed=args.seed, val_fraction=0.0, test_fraction=0.0)
        dataset = splits.train
    else:
        splits = load_dataset(args.dataset, args.root, seed=args.seed)
        dataset = getattr(splits, args.split)
    unknown = [name for name in splits.classes if name not in saved.classes]
    if unknown:
        raise DatasetError(
            f"The data has classes the model was not trained on: {', '.join(unknown)}. "
            f"Model classes: {', '.join(saved.classes)}. Use a folder whose sub-folders are named like those.")
    label_map = [saved.classes.index(name) for name in splits.classes]
    transform = build_transform(saved.image_size, saved.info["mean"], saved.info["std"], train=False)
    evaluation = evaluate_model(saved.model, dataset, transform, batch_size=args.batch_size,
                                device=resolve_device(args.device), label_map=label_map)
    per_class = {name: {"correct": c, "total": t, "accuracy": c / t if t else None}
                 for name, (c, t) in evaluation.per_class.items()}
    report = {"model": str(args.model), "dataset": args.dataset, "root": str(splits.root), "split": args.split,
              "accuracy": evaluation.accuracy, "correct": evaluation.correct, "total": evaluation.total,
              "n_skipped": len(splits.skipped) + dataset.n_failed, "per_class": per_class}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    width = max(len("overall"), *(len(name) for name in per_class))
    print(f"{'class':<{width}}  {'correct':>7}  {'total':>5}  accuracy")
    for name, row in per_class.items():
        print(f"{name:<{width}}  {row['correct']:>7}  {row['total']:>5}  {_percent(row['accuracy']) or '-'}")
    overall = _percent(evaluation.accuracy) or "-"
    print(f"{'overall':<{width}}  {evaluation.correct:>7}  {evaluation.total:>5}  {overall}")
    if report["n_skipped"]:
        print(f"({report['n_skipped']} unreadable images skipped)")
    return 0


# ----------------------------------------------------------------------------- entry point

# One function per subcommand: adding a command is one more entry here.
# ----------------------------------------------------------------------------- experiment


def add_experiment_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "experiment", help="Reproduce the paper's comparison as a table (paper-table).",
        description="paper-table: for each backbone x dataset regime x seed, on the same split, run the conventional "
                    "baseline, fine-tuning without pruning, and prune-then-fine-tune with each criterion and keep "
                    "ratio; record every run in the store and write results.md, results.csv and results.png in --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("name", choices=["paper-table"], help="Which experiment.")
    parser.add_argument("--backbones", nargs="+", choices=list(BACKBONES), help="Backbones; default efficientnet_lite0.")
    parser.add_argument("--datasets", nargs="+", choices=list(experiment.REGIMES),
                        help="Dataset regimes; default the offline pair flowers128 and flowers128-10shot "
                             "(--quick: flowers-sample).")
    parser.add_argument("--seeds", type=int, help="Number of seeds (0..N-1); default 5 (--quick: 2).")
    parser.add_argument("--quick", action="store_true",
                        help="A reduced grid (eigenvector and random at keep 0.25 and 0.5, no tau sweep, 3 epochs) "
                             "that runs in minutes on a CPU: for tests and for checking the set-up.")
    parser.add_argument("--epochs", type=int, help="Epochs per run; default 8 (--quick: 3).")
    parser.add_argument("--image-size", type=int, default=experiment.DEFAULT_IMAGE_SIZE,
                        help="Input size; the flowers photos are 128 px, so larger sizes only upsample "
                             "(use 224 for the downloaded datasets).")
    parser.add_argument("--device", default=DEFAULTS.device, choices=DEVICES, help="auto: CUDA, then MPS, then CPU.")
    parser.add_argument("--out", default=str(experiment.DOCS_DIR), help="Folder for the report, CSV and plot.")
    parser.add_argument("--no-record", action="store_true", help="Do not record the runs in the local run store.")
    parser.set_defaults(handler=run_experiment_command)


def run_experiment_command(args) -> int:
    grid = experiment.paper_table_grid(quick=args.quick, backbones=args.backbones, regimes=args.datasets,
                                       seeds=args.seeds, epochs=args.epochs, image_size=args.image_size,
                                       device=args.device)
    command = "python -m cprune_core experiment paper-table " + " ".join(
        part for part in [
            "--quick" if args.quick else "",
            f"--backbones {' '.join(args.backbones)}" if args.backbones else "",
            f"--datasets {' '.join(args.datasets)}" if args.datasets else "",
            f"--seeds {args.seeds}" if args.seeds else "",
            f"--epochs {args.epochs}" if args.epochs else "",
            f"--image-size {args.image_size}" if args.image_size != experiment.DEFAULT_IMAGE_SIZE else "",
        ] if part)
    store = None if args.no_record else RunStore()
    bar = tqdm(total=len(grid.plan), unit="run", file=sys.stderr)

    def on_run(index, planned, row):
        bar.update(1)
        accuracy = "-" if row["test_acc"] is None else f"{100 * row['test_acc']:.1f}%"
        bar.set_postfix_str(f"{planned.regime.label} seed {planned.config.seed} {row['criterion']} "
                            f"keep {row['keep']:g}: {accuracy}")

    recorder = (lambda config, events: record(store, config, events, kind="experiment")) if store else None
    start = time.perf_counter()
    rows = experiment.run_plan(grid.plan, record=recorder, on_run=on_run)
    bar.close()
    paths = experiment.write_report(rows, Path(args.out), command=command.strip(),
                                    elapsed_s=time.perf_counter() - start,
                                    device=experiment.describe_device(resolve_device(args.device)), base=grid.base)
    print(next(line for line in paths["md"].read_text().splitlines() if line.startswith("**Result:**")))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0 if all(row["status"] == "finished" for row in rows) else EXIT_FAILED


COMMANDS: list[Callable] = [add_finetune_command, add_evaluate_command, add_experiment_command]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cprune_core",
                                     description="CPrune: eigenvector-centrality pruning and fine-tuning.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except RUN_ERRORS + (OSError,) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
