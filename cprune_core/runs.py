"""Run -> record -> save, written once for the CLI, the app's worker and the experiments."""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from .access import COMMAND_LINE, Access
from .checkpoint import save_model
from .engine import Finetuner
from .features import FeatureCache
from .schema import FinetuneConfig, MetricEvent, RunResult, RunStatus
from .store import RunStore, record

__all__ = ["run_and_record"]


def run_and_record(config: FinetuneConfig, store: RunStore | None, save_dir: str | Path | None = None,
                   stop: threading.Event | None = None, on_event: Callable[[MetricEvent], None] | None = None,
                   *, kind: str = "finetune", feature_cache: FeatureCache | None = None,
                   access: Access = COMMAND_LINE) -> RunResult:
    """Run ``config`` to its end, recording it in ``store`` (None: not recorded) and saving the trained
    model in ``save_dir`` (None: not saved; a failed run saves nothing). ``on_event`` sees every event
    as it happens; ``stop`` ends the run within one batch. ``access`` (``access.Access``): the folders the
    dataset may be read from, whether downloads are allowed, and the owner recorded with the run (the
    command line's by default: shared). The result carries run_id and model_dir.

    A run that fails or is stopped still returns (its status says so; a stopped run's model is saved,
    a failed run's is not). Raises StoreError when the store cannot be written, ConfigError for an
    impossible config (before anything runs), and ``checkpoint.save_model``'s errors when the model cannot
    be saved; any other exception is a bug and propagates.
    """
    job = Finetuner(config, feature_cache, access)
    events = job.events(stop, on_event)
    recording = record(store, config, events, kind, access.owner) if store is not None else None
    for _ in recording if recording is not None else events:
        pass
    result = job.result()
    if recording is not None:
        result.run_id = recording.run_id
    if save_dir is not None and result.model is not None and result.status != RunStatus.FAILED:
        result.model_dir = str(save_model(result, save_dir))
        if store is not None:
            store.set_model_dir(result.run_id, result.model_dir)
    return result
