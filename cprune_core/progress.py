"""How long work reports how far it got, and how it stops.

- ``ProgressCallback`` and ``report``: ``progress(done, total, message)``, the callback every long step
  below the app's worker takes (total 0: not known yet).
- ``check_stop``: the one way to stop. Below the engine, work that sees its ``stop`` Event set raises
  ``StopRequested``; ``Finetuner`` catches it in one place and ends the run "stopped".
- ``Steps``: the one way to drain a generator that yields its steps and returns its result.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any, Generic, TypeVar

from .errors import StopRequested

__all__ = ["ProgressCallback", "report", "check_stop", "Steps"]

ProgressCallback = Callable[[int, int, str], None]  # (done, total, message); total 0 while not known

Step = TypeVar("Step")
Result = TypeVar("Result")


def report(progress: ProgressCallback | None, done: int, total: int, message: str) -> None:
    """Call ``progress(done, total, message)``; nothing when ``progress`` is None."""
    if progress is not None:
        progress(done, total, message)


def check_stop(stop: threading.Event | None, message: str = "Stopped.") -> None:
    """Raise ``StopRequested(message)`` when ``stop`` is set; nothing when it is None or clear.

    Example: ``for batch in loader: check_stop(stop); ...`` stops before the next batch.
    """
    if stop is not None and stop.is_set():
        raise StopRequested(message)


class Steps(Generic[Step, Result]):
    """A generator's steps, then what it returned: ``for step in steps: ...``, then ``steps.result``.

    For sub-tasks written as generators that yield their steps (e.g. a batch number) and return their
    result: the caller turns each step into what it reports (an event, a progress callback) with a
    plain ``for`` loop. An exception of the generator (StopRequested included) propagates from the loop.

    Example::

        steps = Steps(prefix_features(...))
        for batch, batches in steps:
            report(progress, batch, batches, "Computing features")
        features = steps.result
    """

    def __init__(self, generator: Generator[Step, Any, Result]):
        self._generator = generator
        self._done = False
        self._result: Result | None = None

    def __iter__(self) -> Iterator[Step]:
        self._result = yield from self._generator
        self._done = True

    @property
    def result(self) -> Result:
        """What the generator returned. RuntimeError before the loop has run to the end."""
        if not self._done:
            raise RuntimeError("Steps.result is known once the loop over the steps has ended.")
        return self._result
