"""What the commands share: options derived from FinetuneConfig's fields (one source for names,
types, defaults, choices, ranges and help: the idea of transformers' HfArgumentParser), where
an experiment's work executes (this process or a Ray cluster), and opening the run store."""
from __future__ import annotations

import argparse
import sys
import types
import typing
from typing import Any

from ..experiment.executors import EXECUTORS, LocalExecutor, RayExecutor, threads_for
from ..schema import FinetuneConfig, config_options
from ..store import RunStore

__all__ = ["add_config_argument", "add_config_options", "config_from_args", "comma_list", "add_analysis_data_options",
           "add_executor_options", "make_executor", "executor_flags", "open_store"]


def comma_list(text: str) -> list[str]:
    """"a, b,c" -> ["a", "b", "c"] (empty items dropped)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _base_type(hint: Any) -> type:
    """int for ``int | None``, list for ``list[str] | None``, str for ``Literal["a", "b"]``, and so on."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if typing.get_origin(hint) is typing.Literal:
        return type(typing.get_args(hint)[0])
    return typing.get_origin(hint) or hint


def add_config_argument(group, name: str, **overrides: Any) -> None:
    """Add the option of FinetuneConfig field ``name`` to ``group`` (overrides: argparse keywords)."""
    option = config_options()[name]
    kind = _base_type(typing.get_type_hints(FinetuneConfig)[name])
    help_text = option.help + (f" Valid: {option.range}." if option.range else "")
    keywords: dict[str, Any] = {"dest": name, "default": getattr(FinetuneConfig(), name), "help": help_text}
    if kind is bool:
        keywords["action"] = "store_true"
    elif kind is list:
        keywords.update(type=comma_list, metavar="NAMES")
    else:
        keywords.update(type=kind, choices=option.choices)
        if option.flag:  # e.g. --root ROOT, not --root DATASET_ROOT
            keywords["metavar"] = option.flag.lstrip("-").upper()
    keywords.update(overrides)
    group.add_argument(option.flag or "--" + name.replace("_", "-"), **keywords)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """Every FinetuneConfig field as an option, in argument groups (model, data, method, training)."""
    groups: dict[str, Any] = {}
    for name, option in config_options().items():
        if option.group not in groups:
            groups[option.group] = parser.add_argument_group(option.group)
        add_config_argument(groups[option.group], name)


def config_from_args(args: argparse.Namespace, **changes: Any) -> FinetuneConfig:
    """The validated FinetuneConfig of parsed options (``changes`` override them)."""
    values = {name: getattr(args, name) for name in config_options()}
    config = FinetuneConfig(**{**values, **changes})
    config.validate()
    return config


def add_analysis_data_options(parser: argparse.ArgumentParser) -> None:
    """--backbone, --dataset and --root of the analyses (experiment importance and atlas): the shared flowers
    by default, the embedded sample with --quick."""
    add_config_argument(parser, "backbone")
    add_config_argument(parser, "dataset", default=None,
                        help="Dataset; default tf-flowers from ../shared/data/flowers128 (--quick: flowers-sample).")
    add_config_argument(parser, "dataset_root", default=None,
                        help="Dataset folder; default ../shared/data/flowers128 when no --dataset is given.")


def add_executor_options(parser: argparse.ArgumentParser, unit: str, local: str, ray: str) -> None:
    """--executor, --ray-address, --gpus-per-run, --cpus-per-run. ``unit``: what one task is (e.g. "run");
    ``local``, ``ray``: what each executor does with the command's work, in words."""
    parser.set_defaults(executor_unit=unit)  # for make_executor and executor_flags
    cluster = parser.add_argument_group("where the work executes")
    cluster.add_argument("--executor", choices=EXECUTORS, default="local",
                         help=f"local: {local}; ray: {ray}, on the cluster at --ray-address.")
    cluster.add_argument("--ray-address", metavar="HOST:PORT",
                         help="The Ray cluster's address (ray start --head prints it); default $RAY_ADDRESS, else a "
                              "Ray started on this machine for the duration of the command.")
    cluster.add_argument(f"--gpus-per-{unit}", dest="gpus_per_run", type=float, metavar="N",
                         help=f"GPUs per {unit}, fractions allowed (0.25: four head-only runs share a GPU); "
                              "default 1 where the cluster has GPUs, else 0.")
    cluster.add_argument(f"--cpus-per-{unit}", dest="cpus_per_run", type=float, metavar="N",
                         help=f"CPUs per {unit}, also its number of torch threads; default every core with --executor "
                              "local, 1 with ray. Give both executors the same value for identical numbers: 1 and 2 "
                              "threads round differently.")


def make_executor(args: argparse.Namespace) -> LocalExecutor | RayExecutor:
    """The executor add_executor_options' options name, not yet entered (entering a RayExecutor connects)."""
    unit = args.executor_unit
    if args.executor == "ray":
        return RayExecutor(args.ray_address, cpus_per_run=1.0 if args.cpus_per_run is None else args.cpus_per_run,
                           gpus_per_run=args.gpus_per_run, unit=unit)
    return LocalExecutor(args.device, None if args.cpus_per_run is None else threads_for(args.cpus_per_run, unit))


def executor_flags(args: argparse.Namespace) -> list[str]:
    """add_executor_options' options as given, for a report's command line."""
    unit = args.executor_unit
    return [f"--executor {args.executor}" if args.executor != "local" else "",
            f"--ray-address {args.ray_address}" if args.ray_address else "",
            f"--gpus-per-{unit} {args.gpus_per_run:g}" if args.gpus_per_run is not None else "",
            f"--cpus-per-{unit} {args.cpus_per_run:g}" if args.cpus_per_run is not None else ""]


def open_store(path: str | None) -> RunStore:
    """The run store (StoreError when unusable); one warning line on stderr when a damaged store was set aside."""
    store = RunStore(path)
    if store.recovery_note:
        print(f"warning: {store.recovery_note} ({store.recovered_from})", file=sys.stderr)
    return store
