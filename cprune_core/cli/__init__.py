"""Command line: ``cprune COMMAND`` (or ``python -m cprune_core COMMAND``).

Each subcommand is registered by one ``add_*_command(subparsers)`` function listed in
``COMMANDS``; it sets ``handler`` (args -> exit code). A CPruneError prints one ``error:``
line and exits with the code of its kind (EXIT_CODES), as does an OSError (a file the user
named cannot be read or written); anything else is a bug and shows its traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from ..errors import CPruneError, StopRequested, StoreError, one_line
from .evaluate import add_evaluate_command
from .experiment import add_experiment_command
from .finetune import add_finetune_command
from .interrupt import INTERRUPTED
from .graph import add_graph_command

__all__ = ["main", "build_parser", "COMMANDS", "EXIT_CODES"]

EXIT_CODES = {
    0: "success",
    1: "a run failed while training (e.g. out of memory), or some runs of an experiment did not finish",
    2: "usage: an unknown option or an impossible value",
    3: "input: a dataset, checkpoint, saved model, weights, file, run store or Ray cluster that cannot be used",
    130: "stopped with Ctrl-C (the partial run is reported)",
}

COMMANDS: list[Callable] = [add_finetune_command, add_evaluate_command, add_experiment_command, add_graph_command]
# After a StoreError, which names the problem only: what the command line's user can do about it.
STORE_ADVICE = ("Name another store file with `finetune --store FILE`, set CPRUNE_HOME to a writable folder, "
                "or run with --no-record.")


def build_parser() -> argparse.ArgumentParser:
    epilog = "exit status: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()) + "."
    parser = argparse.ArgumentParser(prog="cprune", epilog=epilog,
                                     description="CPrune: eigenvector-centrality pruning and fine-tuning.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
