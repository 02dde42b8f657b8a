"""Command line: ``cprune COMMAND`` (or ``python -m cprune_core COMMAND``).

Each subcommand is one ``Command`` of ``COMMANDS``: its name, its one-line help, and the function of ``parsers``
that adds its options and sets ``handler`` (args -> exit code; the command's own module, which brings torch in, is
imported when it runs). Only the chosen command's parser is built, and no parser imports torch, so ``cprune --help``
and ``cprune COMMAND --help`` answer at once.
A CPruneError prints one ``error:`` line and exits with the code of its kind (EXIT_CODES), as does an OSError
(a file the user named cannot be read or written); anything else is a bug and shows its traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass

from ..errors import CPruneError, StopRequested, StoreError, one_line
from .interrupt import INTERRUPTED

__all__ = ["main", "build_parser", "Command", "COMMANDS", "EXIT_CODES"]

EXIT_CODES = {
    0: "success",
    1: "a run failed while training (e.g. out of memory), or some runs of an experiment did not finish",
    2: "usage: an unknown option or an impossible value",
    3: "input: a dataset, checkpoint, saved model, weights, file, run store or Ray cluster that cannot be used",
    130: "stopped with Ctrl-C (the partial run is reported)",
}


@dataclass(frozen=True)
class Command:
    """One subcommand: ``name``, its line in ``cprune --help``, and ``parser``, the name of the function of
    ``parsers`` that adds its parser: ``parser(subparsers, command)``."""

    name: str
    help: str
    parser: str

    def add(self, subparsers) -> None:
        from . import parsers  # the settings classes and registries: only for the commands whose options are shown

        getattr(parsers, self.parser)(subparsers, self)

    def add_summary(self, subparsers) -> None:
        """Its name and help only, for the list of commands (its options are not needed there)."""
        subparsers.add_parser(self.name, help=self.help)


COMMANDS: tuple[Command, ...] = (
    Command("finetune", "Prune and fine-tune a backbone on a dataset (or train the baseline).", "add_finetune"),
    Command("evaluate", "Accuracy of a saved model on a dataset, per class and overall.", "add_evaluate"),
    Command("experiment", "Generated reports: the paper's comparison (paper-table); does centrality predict "
                          "importance (importance), in every layer (atlas); what a layer can lose (tolerance); "
                          "per-layer ratios at the same MACs (allocation).", "add_experiment"),
    Command("graph", "A layer's neuron graph and every criterion's score per neuron, from a backbone or any "
                     "weights file (.safetensors, .onnx, .pt).", "add_graph"),
)
# After a StoreError, which names the problem only: what the command line's user can do about it.
STORE_ADVICE = ("Name another store file with `finetune --store FILE`, set CPRUNE_HOME to a writable folder, "
                "or run with --no-record.")


def build_parser(only: str | None = "") -> argparse.ArgumentParser:
    """The parser of every command (``only=""``), or of the command named ``only`` with the others listed by name
    and help (``None``: every command listed so; what ``cprune --help`` needs)."""
    epilog = "exit status: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()) + "."
    parser = argparse.ArgumentParser(prog="cprune", epilog=epilog,
                                     description="CPrune: eigenvector-centrality pruning and fine-tuning.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        if only in ("", command.name):
            command.add(subparsers)
        else:
            command.add_summary(subparsers)
    return parser


def chosen_command(argv: list[str]) -> str | None:
    """The command ``argv`` names (its first word not an option), None when it names none of ``COMMANDS``."""
    first = next((word for word in argv if not word.startswith("-")), None)
    return first if first in {command.name for command in COMMANDS} else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(chosen_command(argv)).parse_args(argv)
    # The core's warnings (skipped images, dropped classes) as "warning:" lines, not a logging format.
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    try:
        return args.handler(args)
    except StopRequested as stopped:  # a Ctrl-C the command turned into a stop of its work
        print(f"stopped: {one_line(stopped)}", file=sys.stderr)
        return stopped.exit_code
    except KeyboardInterrupt:  # a Ctrl-C where no stop was asked for, or a second one
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except CPruneError as error:
        advice = f" {STORE_ADVICE}" if isinstance(error, StoreError) else ""
        print(f"error: {one_line(error)}{advice}", file=sys.stderr)
        return error.exit_code
    except OSError as error:  # a file or folder of the machine's user: unreadable, unwritable, full disk
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 3
