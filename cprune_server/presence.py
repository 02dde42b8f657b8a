"""Which visitors are still here. A visitor (an owner of launches: one browser) is here while one of their
browser sessions is connected, away once none is, and gone once none has been for ``grace_s`` seconds: a reload
opens a new session within a second or two, and a dropped connection comes back under the same session.

Only what ``attend`` was told is known: an owner never attended (a script, a test) counts as here.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Attendance", "Presence", "Whereabouts"]

KEPT_GONE = 1000  # owners gone whose last visit is remembered (for the operator), the oldest forgotten first


class Whereabouts(StrEnum):
    HERE = "here"  # a session of theirs is connected (or they were never attended)
    AWAY = "away"  # none is, for less than the grace time
    GONE = "gone"  # none has been for the grace time or longer


@dataclass(frozen=True)
class Presence:
    """Where an owner is, and for how many seconds none of their sessions has been seen connected (0 while here;
    None for an owner never attended)."""

    where: Whereabouts
    unseen_s: float | None


class Attendance:
    """The sessions each owner was seen in, and when each was last seen connected. Not thread-safe: the
    RunQueue uses it under its lock."""

    def __init__(self, is_connected: Callable[[str], bool], grace_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self._is_connected = is_connected
        self.grace_s = grace_s
        self._clock = clock
        self._seen: dict[str, dict[str, float]] = {}  # owner -> session -> last seen connected (clock)
        self._gone: dict[str, float] = {}  # owner returned by ``gone`` -> last seen connected (clock)

    def attend(self, owner: str, session: str) -> None:
        """``owner`` is here now, in browser session ``session``."""
        self._gone.pop(owner, None)
        self._seen.setdefault(owner, {})[session] = self._clock()

    def is_here(self, owner: str) -> bool:
        """Whether one of ``owner``'s sessions is connected now (True for an owner never attended)."""
        sessions = self._seen.get(owner)
        if sessions is None:
            return owner not in self._gone
        return any(self._is_connected(session) for session in sessions)

    def presence(self, owner: str) -> Presence:
        """Where ``owner`` is now, as far as the last ``gone`` and the connections now tell."""
        now = self._clock()
        if owner in self._gone:
            return Presence(Whereabouts.GONE, now - self._gone[owner])
        sessions = self._seen.get(owner)
        if sessions is None:
            return Presence(Whereabouts.HERE, None)
        if any(self._is_connected(session) for session in sessions):
            return Presence(Whereabouts.HERE, 0.0)
        unseen = now - max(sessions.values())
        return Presence(Whereabouts.GONE if unseen >= self.grace_s else Whereabouts.AWAY, unseen)

    def gone(self) -> list[str]:
        """The owners none of whose sessions has been connected for ``grace_s`` seconds, returned once (until they
        attend again). Sessions connected now are seen now; a session gone longer than the grace is forgotten."""
        now = self._clock()
        gone = []
        for owner, sessions in list(self._seen.items()):
            for session in list(sessions):
                if self._is_connected(session):
                    sessions[session] = now
                elif now - sessions[session] >= self.grace_s:
                    last = sessions.pop(session)
                    self._gone[owner] = max(self._gone.get(owner, last), last)
            if not sessions:
                del self._seen[owner]
                gone.append(owner)
            else:
                self._gone.pop(owner, None)
        while len(self._gone) > KEPT_GONE:
            del self._gone[next(iter(self._gone))]
        return gone
