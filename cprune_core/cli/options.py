"""What the commands share: options derived from a settings class's fields (``FinetuneConfig``,
``AnalysisConfig``, ``AtlasSettings``: one source for names, types, defaults, choices, ranges and help,
the idea of transformers' HfArgumentParser), where an experiment's work executes (this process or a Ray
cluster), and opening the run store. What builds the parsers imports no torch (``cprune COMMAND --help`` answers at
once): the executors and the store are imported when a command makes or opens them."""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..paths import DOCS_DIR, quick_reports_dir, user_path
from ..registry import BACKBONES, DEFAULT_BACKBONE
from ..ranges import CPUS_PER_TASK, EXECUTORS, GPUS_PER_TASK, number_from_text
from ..options import Option, Settings
from ..schema import FinetuneConfig

if TYPE_CHECKING:
    from ..experiment.executors import LocalExecutor, RayExecutor
    from ..store import RunStore

__all__ = ["whole_number", "real_number", "path_text", "name_text", "VALUE_TYPES", "shown_value", "flag_of",
           "add_config_argument", "add_settings_options", "settings_from_args", "settings_flags",
           "comma_list", "comma_floats",
           "add_analysis_data_options", "add_executor_options", "make_executor", "executor_flags", "open_store",
           "report_folder", "out_help"]


# The argparse types of the options: each turns a value it cannot read into argparse's usage error (exit 2).
# A number is read in ASCII only (ranges.number_from_text); its range is checked where the command checks its
# settings, in the sentence of ranges.Range. A path or a name may not be empty: "" would mean the current folder.

def whole_number(text: str) -> int:
    """An int written in ASCII digits."""
    try:
        return number_from_text(text, integer=True)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (ASCII digits)") from None


def real_number(text: str) -> float:
    """A float written in ASCII (nan and inf are read, and refused by the option's range)."""
    try:
        return number_from_text(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (ASCII digits)") from None


def path_text(text: str) -> str:
    """A file or folder's path as given; an empty one (which every function would read as the current folder)
    or one holding a NUL character (which no file name can) is refused."""
    if not text.strip() or "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a path: name a file or folder")
    return text


def name_text(text: str) -> str:
    """A name the command looks up (a layer's, a Ray address); an empty one is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name: give one")
    return text


def comma_list(text: str) -> list[str]:
    """"a, b,c" -> ["a", "b", "c"] (empty items dropped)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def comma_floats(text: str) -> list[float]:
    """"0.1, 0.5" -> [0.1, 0.5]; argparse's usage error for an item that is no number written in ASCII."""
    return [real_number(item) for item in comma_list(text)]


# Every option that takes a value has choices or one of these types (tests/test_surface.py checks it).
VALUE_TYPES = (whole_number, real_number, path_text, name_text, comma_list, comma_floats)


def shown_value(value: Any) -> str:
    """A setting as the command line writes it: 0.1, not 0.1000; items joined by commas."""
    if isinstance(value, (tuple, list)):
        return ",".join(shown_value(item) for item in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def flag_of(settings_class: type[Settings], name: str) -> str:
    """The command line's flag of a field: its Option's flag, else --<field-name>."""
    return settings_class.options()[name].flag or "--" + name.replace("_", "-")


def _default_text(chosen: Option, value: Any) -> str:
    """A default as the help names it: what None means, "all of them" for every choice, else the value."""
    if value is None:
        return chosen.none or "none"
    if chosen.choices is not None and isinstance(value, (tuple, list)) and list(value) == list(chosen.choices):
        return "all of them"
    return shown_value(value)


def add_config_argument(group, name: str, settings_class: type[Settings] = FinetuneConfig,
                        shown_default: str | None = None, **overrides: Any) -> None:
    """Add the option of ``settings_class``'s field ``name`` to ``group`` (overrides: argparse keywords): its
    flag, type, choices, help (the field's, with its valid range) and default. A list or tuple field takes
    comma-separated items (its Option's ``cli_none`` alone: None). ``shown_default``: the help names this
    default, and an option not given is absent from the parsed namespace (the command chooses the value)."""
    chosen, shape = settings_class.options()[name], settings_class.shapes()[name]
    help_text = chosen.help + (f" Valid: {chosen.range}." if chosen.range else "")
    help_text += f" Choices: {', '.join(chosen.choices)}." if chosen.choices and shape.kind in (list, tuple) else ""
    keywords: dict[str, Any] = {"dest": name, "default": getattr(settings_class(), name), "help": help_text}
    if shown_default is not None:
        keywords.update(default=argparse.SUPPRESS, help=f"{help_text} Default: {shown_default}.")
    keywords["help"] = keywords["help"].replace("%", "%%")  # argparse formats help with %
    if shape.kind is bool:
        keywords["action"] = "store_true"
    elif shape.kind in (list, tuple):
        numbers = shape.item is float
        keywords.update(type=comma_floats if numbers else comma_list, metavar="NUMBERS" if numbers else "NAMES")
        if chosen.cli_none:
            keywords["metavar"] = f"{chosen.cli_none}|NAMES"
    else:
        kinds = {int: whole_number, float: real_number, str: str if chosen.choices else name_text}
        keywords.update(type=path_text if chosen.path else kinds.get(shape.kind, shape.kind), choices=chosen.choices)
        if chosen.flag:  # e.g. --root ROOT, not --root DATASET_ROOT
            keywords["metavar"] = chosen.flag.lstrip("-").upper()
    keywords.update(overrides)
    group.add_argument(flag_of(settings_class, name), **keywords)


def add_settings_options(parser: argparse.ArgumentParser, settings_class: type[Settings],
                         quick: Settings | None = None) -> None:
    """Every field of ``settings_class`` as an option, in argument groups named by the fields' groups. Each
    option's default is the field's; with ``quick`` (the command's --quick preset) an option not given is
    absent from the parsed namespace (``settings_from_args`` then takes the preset's value or the default)
    and the help names both defaults."""
    groups: dict[str, Any] = {}
    full = settings_class()
    for name, chosen in settings_class.options().items():
        if chosen.group not in groups:
            groups[chosen.group] = parser.add_argument_group(chosen.group)
        shown = None
        if quick is not None:
            shown = _default_text(chosen, getattr(full, name))
            if getattr(quick, name) != getattr(full, name):
                shown += f" (--quick: {_default_text(chosen, getattr(quick, name))})"
        add_config_argument(groups[chosen.group], name, settings_class, shown_default=shown)


def _given_settings(args: argparse.Namespace, settings_class: type[Settings]) -> dict[str, Any]:
    """The fields whose options the parsed ``args`` hold, as the fields' values (comma lists as tuples where
    the field is a tuple; an Option's ``cli_none`` word alone as None)."""
    given = {}
    for name, shape in settings_class.shapes().items():
        if not hasattr(args, name):
            continue
        value, none_word = getattr(args, name), settings_class.options()[name].cli_none
        if none_word is not None and value == [none_word]:
            value = None
        elif shape.kind is tuple and isinstance(value, list):
            value = tuple(value)
        given[name] = value
    return given


def settings_from_args(args: argparse.Namespace, settings_class: type[Settings], base: Settings | None = None,
                       **changes: Any) -> Any:
    """The validated settings of parsed options: ``base`` (default: the class's defaults) with the options
    given, then ``changes``. ConfigError naming the first impossible value."""
    base = settings_class() if base is None else base
    return replace(base, **{**_given_settings(args, settings_class), **changes}).validate()


def settings_flags(args: argparse.Namespace, settings_class: type[Settings]) -> list[str]:
    """The options of ``settings_class`` given on the command line, as written there (for a report's command)."""
    return [f"{flag_of(settings_class, name)} {shown_value(value)}" for name, value in
            ((name, getattr(args, name)) for name in settings_class.options() if hasattr(args, name))]


def add_analysis_data_options(parser: argparse.ArgumentParser, backbones: bool = False) -> None:
    """--backbone (or, with ``backbones``, --backbones: one or more), --dataset and --root of the analyses
    (experiment importance and atlas): the shared flowers by default, the embedded sample with --quick."""
    if backbones:
        parser.add_argument("--backbones", nargs="+", choices=list(BACKBONES), default=[DEFAULT_BACKBONE],
                            metavar="BACKBONE", help=f"Backbones, each measured in turn into one report; choose from "
                                                     f"{', '.join(BACKBONES)}.")
    else:
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
    cluster.add_argument("--ray-address", metavar="HOST:PORT", type=name_text,
                         help="The Ray cluster's address (ray start --head prints it); default $RAY_ADDRESS, else a "
                              "Ray started on this machine for the duration of the command.")
    cluster.add_argument(f"--gpus-per-{unit}", dest="gpus_per_run", type=real_number, metavar="N",
                         help=f"GPUs per {unit}, fractions allowed (0.25: four head-only runs share a GPU); "
                              "default 1 where the cluster has GPUs, else 0.")
    cluster.add_argument(f"--cpus-per-{unit}", dest="cpus_per_run", type=real_number, metavar="N",
                         help=f"CPUs per {unit}, also its number of torch threads; default every core with --executor "
                              "local, 1 with ray. Give both executors the same value for identical numbers: 1 and 2 "
                              "threads round differently.")


def report_folder(out: str | None, quick: bool) -> Path:
    """The folder an experiment writes its report in: ``out``; else docs/ for a full run and
    ``paths.quick_reports_dir()`` for ``--quick``. ConfigError for ``--quick`` into docs/: the committed
    reports there come from the full runs only."""
    if out is None:
        return quick_reports_dir() if quick else DOCS_DIR
    if quick and user_path(out).resolve() == DOCS_DIR.resolve():
        raise ConfigError(f"--quick writes a reduced report, and the reports in {DOCS_DIR} come from the full runs: "
                          f"leave out --out (the quick report then goes to {quick_reports_dir()}) or choose another "
                          "folder.")
    return Path(out)


def out_help() -> str:
    """--out's help: where the full and the --quick reports go by default."""
    return (f"Folder for the report, CSV and plot; default {DOCS_DIR}, and with --quick {quick_reports_dir()} "
            "($CPRUNE_HOME/quick-reports; ~/.cache/cprune/quick-reports when CPRUNE_HOME is not set): a quick run "
            "never replaces the committed reports in docs/.")


def make_executor(args: argparse.Namespace) -> LocalExecutor | RayExecutor:
    """The executor add_executor_options' options name, not yet entered (entering a RayExecutor connects).
    ConfigError for a CPU or GPU count out of its range, whichever the executor (a local one uses no GPU
    count, but a wrong one is still a mistake to point out)."""
    from ..experiment.executors import LocalExecutor, RayExecutor, threads_for

    unit = args.executor_unit
    if args.cpus_per_run is not None:
        CPUS_PER_TASK.check(args.cpus_per_run, f"--cpus-per-{unit}")
    if args.gpus_per_run is not None:
        GPUS_PER_TASK.check(args.gpus_per_run, f"--gpus-per-{unit}")
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
    from ..store import RunStore

    store = RunStore(path)
    if store.recovery_note:
        print(f"warning: {store.recovery_note} ({store.recovered_from})", file=sys.stderr)
    return store
