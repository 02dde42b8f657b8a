"""Valid values, each rule written once: ranges of the method's numbers, the names to choose among, and choosing
by name.

The core checks its inputs against these, ``FinetuneConfig`` carries them on its fields, and
the CLI and the app derive their options and widget limits from them. A check rejects NaN,
infinities and booleans, and raises ``ConfigError`` with the name, the value and the range. The names of the
criteria, devices and executors live here, not in the modules that implement them (which import torch), so the
settings classes and the command line's ``--help`` read them without importing torch.
"""
from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = ["Range", "number_from_text", "TAU", "KEEP", "FRACTION", "SEEDS", "DEFAULT_SEEDS", "CPUS_PER_TASK",
           "GPUS_PER_TASK", "DEFAULT_TAU", "CRITERION_NAMES", "DEVICES", "EXECUTORS", "GRAPH_FORMATS",
           "MAX_GRAPH_NEURONS", "choose"]


@dataclass(frozen=True)
class Range:
    """An interval of valid values; ``integer`` asks for whole numbers (ints, not whole floats).

    Example: ``0.5 in KEEP`` is True, ``0 in KEEP`` False (KEEP is (0, 1]); ``KEEP.check(0, "keep")``
    raises ConfigError "keep must be in (0, 1], got 0.".
    """

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def check(self, value, name: str):
        """``value`` unchanged when it lies in the range, else ConfigError naming ``name``."""
        if value not in self:
            kind = " (a whole number)" if self.integer else ""
            raise ConfigError(f"{name} must be in {self}{kind}, got {value!r}.")
        return value

    def __str__(self) -> str:
        def show(number: float) -> str:
            return f"{number:g}" if not self.integer else str(int(number))

        return f"{'(' if self.low_open else '['}{show(self.low)}, {show(self.high)}{')' if self.high_open else ']'}"


def number_from_text(text: str, integer: bool = False) -> int | float:
    """The number ``text`` writes: an int when ``integer``, else a float (``nan`` and ``inf`` included: a
    Range refuses them with its own sentence). The one reading of a number a person typed (an option, an
    environment variable, a link parameter).

    Raises
    ------
    ValueError
        When ``text`` is no number, or not written in ASCII: Python's ``int`` and ``float`` read other scripts'
        digits (``"١٠"`` is 10, ``"２"`` is 2), which no one means to type as a count.

    Example
    -------
    >>> number_from_text(" 12 ", integer=True), number_from_text("1e-3")
    (12, 0.001)
    """
    if not isinstance(text, str) or not text.isascii():
        raise ValueError(f"{text!r} is not written in ASCII digits")
    return int(text) if integer else float(text)


TAU = Range(0.0, 1.0, high_open=True)  # similarity threshold: an edge needs cosine similarity > tau
KEEP = Range(0.0, 1.0, low_open=True)  # fraction of a layer's neurons kept
FRACTION = Range(0.0, 1.0, high_open=True)  # share of each class held out for validation or test
SEEDS = Range(1, 1000, integer=True)  # how many seeds (0..N-1): of a grid, or of the random criterion
CPUS_PER_TASK = Range(0, 4096, low_open=True)  # CPUs a run or task asks of an executor (also its torch threads)
GPUS_PER_TASK = Range(0, 1024)  # GPUs a run or task asks of an executor: a fraction shares one
DEFAULT_SEEDS = 5  # the paper's: of the paper table's grid, and of the random criterion in the importance analysis
DEFAULT_TAU = 0.1
# criteria.CRITERIA's keys, in its order: the graph's criterion (arXiv 2512.12543) first.
CRITERION_NAMES = ("eigenvector", "inverse-eigenvector", "l1", "l2", "fpgm", "degree", "pagerank", "random")
DEVICES = ("auto", "cpu", "cuda", "mps")  # device.resolve_device's
EXECUTORS = ("local", "ray")  # experiment.executors': this process, or a Ray cluster
GRAPH_FORMATS = ("graphml", "gexf")  # graph.graph_file's: read by Gephi, Cytoscape and networkx
MAX_GRAPH_NEURONS = 65_536  # the canvas's and the budget's limit: beyond, a layer is listed, never drawn


def choose(value: Any, options: Collection, what: str) -> Any:
    """``options[value]`` for a mapping (``value`` itself for other collections) when ``value`` is one of
    ``options``; else ConfigError: "Unknown <what> <value>; choose one of <options>."."""
    try:
        known = value in options
    except TypeError:  # an unhashable value is no option
        known = False
    if not known:
        raise ConfigError(f"Unknown {what} {value!r}; choose one of {', '.join(map(str, options))}.")
    return options[value] if isinstance(options, dict) else value
