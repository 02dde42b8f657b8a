"""Progress on stderr for the commands: a run's bar, fed its MetricEvents (``finetune``), and a bar
fed ``progress(done, total, message)`` callbacks (the analyses' steps)."""
from __future__ import annotations

import sys

from tqdm import tqdm

from ..schema import EventKind, MetricEvent

__all__ = ["RunProgressBar", "StepProgressBar"]


class RunProgressBar:
    """The run's progress on stderr, fed one MetricEvent at a time."""

    def __init__(self, quiet: bool):
        self.bar = tqdm(total=None, unit="step", disable=quiet, file=sys.stderr, dynamic_ncols=True)

    def __call__(self, event: MetricEvent) -> None:
        bar = self.bar
        if event.kind == EventKind.PREPARE:
            bar.set_description_str(event.message)
        elif event.kind == EventKind.START:
            bar.reset(total=event.total_steps)
            bar.set_description_str("Training")
        elif event.kind in (EventKind.STEP, EventKind.EPOCH):
            bar.update(event.step - bar.n)
            postfix = {"loss": event.train_loss, "train_acc": event.train_acc}
            if event.kind == EventKind.EPOCH:
                postfix["val_acc"] = event.val_acc
            bar.set_postfix({k: f"{v:.3f}" for k, v in postfix.items() if v is not None})
            bar.set_description_str(f"Epoch {event.epoch}")

    def close(self) -> None:
        self.bar.close()


class StepProgressBar:
    """The analysis's progress on stderr: one bar whose description names the step. It appears at the
    first report, so an input error (raised before any work) is the only line printed."""

    def __init__(self, unit: str = "it", quiet: bool = False):
        self.bar: tqdm | None = None
        self.unit, self.quiet = unit, quiet

    def __call__(self, done: int, total: int, message: str) -> None:
        if self.bar is None:
            self.bar = tqdm(total=total or None, file=sys.stderr, dynamic_ncols=True, unit=self.unit,
                            disable=self.quiet)
        elif (total or None) != self.bar.total:
            self.bar.reset(total=total or None)
        self.bar.set_description_str(message, refresh=False)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
