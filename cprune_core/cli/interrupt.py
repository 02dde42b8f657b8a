"""Ctrl-C on the command line: the first asks the work to stop (a stop Event), the second aborts.

Every command stops the same way: with exit status 130 and one line on stderr, after writing what it
has (a grid's report of the runs that ended), never a traceback and never a half-written file
(``paths.atomic_write``).
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["stop_on_ctrl_c", "INTERRUPTED"]

INTERRUPTED = "stopped: interrupted with Ctrl-C."


@contextmanager
def stop_on_ctrl_c(stop: threading.Event) -> Iterator[None]:
    """Within the block, the first Ctrl-C sets ``stop`` (the work ends after its current batch and reports);
    a second one raises KeyboardInterrupt, which ``cli.main`` turns into one line and exit 130."""
    if threading.current_thread() is not threading.main_thread():  # signals need the main thread
        yield
        return

    def request_stop(signum, frame):
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
