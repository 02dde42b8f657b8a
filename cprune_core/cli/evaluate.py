"""``evaluate``: accuracy of a saved model on a dataset, per class and overall."""
from __future__ import annotations

import argparse
import json

from ..checkpoint import load_model
from ..data import build_transform, load_dataset
from ..device import resolve_device
from ..errors import DatasetError
from ..evaluation import evaluate_model
from ..schema import FinetuneConfig
from .finetune import percent
from .progress_bars import StepProgressBar

__all__ = ["evaluate_command"]


def evaluate_command(args: argparse.Namespace) -> int:
    options = FinetuneConfig.options()  # the same ranges as finetune's options
    options["batch_size"].range.check(args.batch_size, "--batch-size")
    options["seed"].range.check(args.seed, "--seed")
    saved = load_model(args.model)
    if args.split == "all":
        splits = load_dataset(args.dataset, args.dataset_root, seed=args.seed, val_fraction=0.0, test_fraction=0.0)
        dataset = splits.train
    else:
        splits = load_dataset(args.dataset, args.dataset_root, seed=args.seed)
        dataset = getattr(splits, args.split)
    unknown = [name for name in splits.classes if name not in saved.classes]
    if unknown:
        raise DatasetError(
            f"The data has classes the model was not trained on: {', '.join(unknown)}. "
            f"Model classes: {', '.join(saved.classes)}. Use a folder whose sub-folders are named like those.")
    label_map = [saved.classes.index(name) for name in splits.classes]
    transform = build_transform(saved.image_size, saved.info["mean"], saved.info["std"], train=False)
    bar = StepProgressBar(unit="image", quiet=args.quiet)
    try:
        evaluation = evaluate_model(saved.model, dataset, transform, batch_size=args.batch_size,
                                    device=resolve_device(args.device), label_map=label_map, progress=bar)
    finally:
        bar.close()
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
        print(f"{name:<{width}}  {row['correct']:>7}  {row['total']:>5}  {percent(row['accuracy']) or '-'}")
    overall = percent(evaluation.accuracy) or "-"
    print(f"{'overall':<{width}}  {evaluation.correct:>7}  {evaluation.total:>5}  {overall}")
    if report["n_skipped"]:
        print(f"({report['n_skipped']} image files or links left out: unreadable, or links the rules skip)")
    return 0
