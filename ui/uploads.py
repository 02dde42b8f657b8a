"""Uploaded checkpoints: kept only while a visitor or a run uses them, within a total size budget.

Each upload is a file named by its content under ``paths.cache_home()/uploads`` (emptied when the
server starts). A file is in use while a browser session that uploaded it is still connected or
a queued or running launch holds it; ``collect`` deletes the others, and runs before each new
upload. An upload that is refused (not a state dict, wrong keys, NaN weights, over the budget)
is deleted at once.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import streamlit as st
from streamlit import runtime

from cprune_core import CheckpointError
from cprune_core.paths import cache_home
from cprune_core.registry import MAX_CHECKPOINT_BYTES


class Uploads:
    def __init__(self, folder: Path, budget_bytes: int, is_active: Callable[[str], bool]):
        self.folder = folder
        self.budget_bytes = budget_bytes
        self._is_active = is_active  # is_active(user): a connected session, or a launch still holding it
        self._users: dict[Path, set[str]] = {}
        self._lock = threading.Lock()
        self._collected_at = -math.inf
        shutil.rmtree(folder, ignore_errors=True)  # nothing in use survives a restart
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, user: str, name: str, data: bytes) -> Path:
        """Keep ``data`` for ``user`` (which stops using its previous upload); CheckpointError when it is too
        large for one checkpoint or for the space left."""
        if len(data) > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(f"The file is {len(data) / 2**20:.0f} MiB; the limit is "
                                  f"{MAX_CHECKPOINT_BYTES / 2**20:.0f} MiB.")
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name)[-80:] or "checkpoint.pt"
        path = self.folder / f"{hashlib.sha256(data).hexdigest()[:16]}-{safe}"
        with self._lock:
            for held, users in self._users.items():
                if held != path:
                    users.discard(user)
            self._collect()
            if not path.exists():
                if self._bytes() + len(data) > self.budget_bytes:
                    raise CheckpointError("The server's space for uploads is full. Try again when other visitors' "
                                          "runs have ended, or choose other weights.")
                path.write_bytes(data)
            self._users.setdefault(path, set()).add(user)
        return path

    def hold(self, path: Path, holder: str) -> bool:
        """Keep ``path`` while ``holder`` (a launch, or a session again) uses it; False when it is already gone."""
        with self._lock:
            if not path.is_file():
                return False
            self._users.setdefault(path, set()).add(holder)
            return True

    def reject(self, path: Path, user: str) -> None:
        """``user``'s upload was refused: forget it, and delete the file unless someone else still uses it."""
        with self._lock:
            users = self._users.get(path, set())
            users.discard(user)
            if not users:
                self._delete(path)

    def collect(self, every_s: float = 0.0) -> None:
        """Delete the files no one uses; ``every_s``: not again within that many seconds (pages call it at
        every rerun, and it lists the folder)."""
        with self._lock:
            if time.monotonic() - self._collected_at >= every_s:
                self._collect()

    def _collect(self) -> None:
        self._collected_at = time.monotonic()
        for path, users in list(self._users.items()):
            users.intersection_update({user for user in users if self._is_active(user)})
            if not users:
                self._delete(path)
        for stray in self.folder.iterdir():  # e.g. written by a process that died
            if stray not in self._users:
                stray.unlink(missing_ok=True)

    def _delete(self, path: Path) -> None:
        self._users.pop(path, None)
        path.unlink(missing_ok=True)

    def _bytes(self) -> int:
        return sum(path.stat().st_size for path in self.folder.iterdir() if path.is_file())


def _connected_or_running(user: str) -> bool:
    """Users are session ids (a connected browser tab) or "launch:<id>" (released by the worker)."""
    from .worker import run_queue

    if user.startswith("launch:"):
        return run_queue().is_pending(user.removeprefix("launch:"))
    return not runtime.exists() or runtime.get_instance().is_active_session(user)


@st.cache_resource
def uploads() -> Uploads:
    """The server's one upload folder (emptied at start-up)."""
    budget_mb = int(os.environ.get("CPRUNE_UPLOAD_BUDGET_MB", 2048))
    return Uploads(cache_home() / "uploads", budget_mb * 2**20, _connected_or_running)
