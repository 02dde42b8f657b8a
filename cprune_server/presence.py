"""Which visitors are still here. A visitor (an owner of launches: one browser) is here while one of their
browser sessions is connected, and gone once none has been for ``grace_s`` seconds: a reload opens a new
session within a second or two, and a dropped connection comes back under the same session.

Only what ``attend`` was told is known: an owner never attended (a script, a test) counts as here.
"""
from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Attendance"]


class Attendance:
    """The sessions each owner was seen in, and when each was last seen connected. Not thread-safe: the
    RunQueue uses it under its lock."""

    def __init__(self, is_connected: Callable[[str], bool], grace_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self._is_connected = is_connected
        self.grace_s = grace_s
        self._clock = clock
        self._seen: dict[str, dict[str, float]] = {}  # owner -> session -> last seen connected (clock)

    def attend(self, owner: str, session: str) -> None:
        """``owner`` is here now, in browser session ``session``."""
        self._seen.setdefault(owner, {})[session] = self._clock()

    def is_here(self, owner: str) -> bool:
        """Whether one of ``owner``'s sessions is connected now (True for an owner never attended)."""
        sessions = self._seen.get(owner)
        return sessions is None or any(self._is_connected(session) for session in sessions)

    def gone(self) -> list[str]:
        """The owners none of whose sessions has been connected for ``grace_s`` seconds, forgotten as they are
        returned. Sessions connected now are seen now; a session gone longer than the grace is forgotten."""
        now = self._clock()
        gone = []
        for owner, sessions in list(self._seen.items()):
            for session in list(sessions):
                if self._is_connected(session):
                    sessions[session] = now
                elif now - sessions[session] >= self.grace_s:
                    del sessions[session]
            if not sessions:
                del self._seen[owner]
                gone.append(owner)
        return gone
