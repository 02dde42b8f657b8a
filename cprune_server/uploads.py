"""Uploaded checkpoints: kept only while a visitor or a launch uses them, within a total size budget.

Each upload is a file named by its content in one folder (the app's: ``paths.cache_home()/uploads``,
emptied when the server starts). Its users are named by strings: a browser session's id, or
``launch_user(id)`` for a queued or running launch. A file is kept while ``is_active`` says one of
its users still is (``uses_in_progress``: a connected session, or a launch that waits or runs);
``collect`` deletes the others, and runs before each new upload. An upload that is refused (not a
state dict, wrong keys, NaN weights, over the budget) is deleted at once.
"""
from __future__ import annotations

import hashlib
import math
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cprune_core.errors import CheckpointError
from cprune_core.registry import MAX_CHECKPOINT_BYTES

from .queue import RunQueue

__all__ = ["Uploads", "launch_user", "uses_in_progress"]
LAUNCH_PREFIX = "launch:"


class Uploads:
    """The upload folder and who uses each file in it. Every method is safe from any thread."""

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


def launch_user(launch_id: str) -> str:
    """The user name under which a launch holds its upload (``Uploads.hold``) while it waits or runs."""
    return LAUNCH_PREFIX + launch_id


def uses_in_progress(queue: RunQueue, is_connected: Callable[[str], bool]) -> Callable[[str], bool]:
    """``is_active`` for the app's Uploads: a ``launch_user`` while its launch waits or runs in ``queue``,
    any other user (a session id) while ``is_connected`` says so."""
    def is_active(user: str) -> bool:
        if user.startswith(LAUNCH_PREFIX):
            return queue.is_pending(user.removeprefix(LAUNCH_PREFIX))
        return is_connected(user)

    return is_active
