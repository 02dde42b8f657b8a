"""The reports' figures: matplotlib without a display, one way to finish a panel, and a figure written whole.

Example
-------
>>> plt = pyplot()
>>> figure, axis = plt.subplots()
>>> finish_panel(axis, "keep ratio", "accuracy (%)", "a panel")  # labels, title, grid, legend
>>> save_figure(figure, "panel.png")  # laid out, written atomically, closed
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .paths import atomic_write

__all__ = ["pyplot", "finish_panel", "save_figure"]


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only: no display is needed or opened)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def finish_panel(axis: Any, xlabel: str, ylabel: str | None, title: str, *, legend: bool = True,
                 title_size: float | None = None, legend_columns: int = 1) -> None:
    """Label ``axis`` (``ylabel`` None: left as it is), title it, draw its grid and (``legend``) its legend."""
    axis.set_xlabel(xlabel)
    if ylabel is not None:
        axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=title_size)
    axis.grid(alpha=0.3)
    if legend:
        axis.legend(fontsize=8, ncol=legend_columns)


def save_figure(figure: Any, path: str | Path, dpi: int = 110, **savefig_options) -> None:
    """Lay ``figure`` out, write it to ``path`` (whole or not at all: ``paths.atomic_write``) and close it."""
    figure.tight_layout()
    atomic_write(path, lambda temporary: figure.savefig(temporary, dpi=dpi, **savefig_options))
    pyplot().close(figure)
