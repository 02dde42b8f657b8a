"""The models the app's runs save: each in a new folder of ``paths.models_dir()``, all of them within a
space budget (the oldest deleted first), and downloadable only by the owner whose run saved them."""
from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from cprune_core.checkpoint import SPEC_FILE
from cprune_core.data.roots import is_inside
from cprune_core.errors import StoreError
from cprune_core.paths import models_dir
from cprune_core.runs import run_and_record
from cprune_core.schema import EventKind, FinetuneConfig, MetricEvent
from cprune_core.store import RunStore

from .access import visitor_access

__all__ = ["recorded_run", "keep_models_within", "downloadable_runs", "STORE_ADVICE"]

RECENT_S = 60  # a model saved this recently is never deleted: another run's, just written
# The app's advice after a StoreError (which names the problem only): a visitor cannot change the store.
STORE_ADVICE = "Whoever runs this server can set CPRUNE_HOME to a writable folder."


def recorded_run(config: FinetuneConfig, stop: threading.Event, on_event: Callable[[MetricEvent], None],
                 owner: str, *, models_budget: int) -> None:
    """Run ``config`` as the visitor ``owner`` (``visitor_access``: the dataset confined to the data roots,
    downloads as the server allows, recorded in the run store as theirs), its model saved in a new folder of
    models_dir(), then the saved models kept within ``models_budget`` bytes. A store that cannot be used does not stop the run (an event says so). A ``Runner`` of the RunQueue once
    ``models_budget`` is bound."""
    try:
        store = RunStore()
    except StoreError as error:
        store = None
        on_event(MetricEvent(EventKind.PREPARE, message=f"This run is not recorded: {error} {STORE_ADVICE}"))
    else:
        if store.recovery_note:
            on_event(MetricEvent(EventKind.PREPARE, message=store.recovery_note))
    save_dir = models_dir() / uuid.uuid4().hex
    run_and_record(config, store, save_dir, stop, on_event, access=visitor_access(owner))
    keep_models_within(models_dir(), models_budget, newest=save_dir)


_models_lock = threading.Lock()  # one clean-up at a time (several runs may end together)


def keep_models_within(folder: Path, budget_bytes: int, newest: Path) -> None:
    """Delete the oldest saved models (folders of ``folder``, by the time they were saved) until the rest fit
    in ``budget_bytes``; never ``newest``, nor a model saved in the last RECENT_S seconds (another run's, just
    written). Visitors' runs would otherwise fill the disk; a deleted model is no longer offered for download."""
    with _models_lock:
        sizes: dict[Path, tuple[float, int]] = {}
        for path in folder.iterdir() if folder.is_dir() else []:
            try:
                if path.is_dir() and not path.is_symlink():
                    sizes[path] = (path.stat().st_mtime, sum(f.stat().st_size for f in path.iterdir() if f.is_file()))
            except OSError:  # gone meanwhile
                continue
        total = sum(size for _, size in sizes.values())
        recent = time.time() - RECENT_S
        for path, (saved, size) in sorted(sizes.items(), key=lambda item: item[1][0]):
            if total <= budget_bytes:
                break
            if path != newest and saved < recent:
                shutil.rmtree(path, ignore_errors=True)
                total -= size


def downloadable_runs(runs: Iterable[dict], owner: str) -> list[dict]:
    """The runs (rows of ``RunStore.list_runs``) whose saved model ``owner`` may download: their own runs
    whose model lies in the app's models folder and is still complete. A command-line run's ``--save``
    folder is wherever its user chose, and the files there are theirs; a run of the owner's that points
    elsewhere is not offered either."""
    app_models = [models_dir().resolve()]
    return [run for run in runs
            if run["owner"] == owner and run["model_dir"] and is_inside(run["model_dir"], app_models)
            and Path(run["model_dir"], SPEC_FILE).is_file()]
