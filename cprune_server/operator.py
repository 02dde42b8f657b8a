"""Tries of the operator's token (``CPRUNE_ADMIN_TOKEN``, which opens the page /operator): compared in constant
time, wrong ones slowed and logged. (How hard to guess the token must be: ``cprune_core.settings``, as the server
reads it.)

A browser session that gave a wrong token waits 1 s before its next try, then 2, 4 ... up to ``SESSION_WAIT_MAX_S``;
once ``SERVER_FREE_FAILURES`` wrong tokens were given in the last ``SERVER_WINDOW_S`` seconds (by any sessions),
every session waits ``SERVER_WAIT_S`` after the latest. A try made too soon is refused without being compared. Each
wrong token is logged as a warning (how many in a row, how many on the server lately, the client's address when
known), never the token itself.
"""
from __future__ import annotations

import hmac
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Verdict", "OperatorGate", "SESSION_WAIT_MAX_S", "SERVER_FREE_FAILURES", "SERVER_WINDOW_S", "SERVER_WAIT_S"]

SESSION_WAIT_MAX_S = 60.0
SERVER_FREE_FAILURES = 10
SERVER_WINDOW_S = 900.0
SERVER_WAIT_S = 30.0
KEPT_SESSIONS = 10_000  # sessions whose wrong tries are remembered (the oldest forgotten first)
log = logging.getLogger("cprune.operator")


@dataclass(frozen=True)
class Verdict:
    """The answer to one try: ``admitted``, else ``wait_s`` > 0 when it came too soon (and was not compared)."""

    admitted: bool
    wait_s: float = 0.0


class OperatorGate:
    """Tries of the operator's token, per browser session and for the whole server. Safe from any thread;
    ``clock``: seconds (tests pass their own)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[int, float]] = {}  # session -> (wrong tries in a row, time of the last)
        self._recent: deque[float] = deque()  # times of the server's wrong tries in the last SERVER_WINDOW_S

    def wait_s(self, session: str) -> float:
        """Seconds before ``session`` may try again (0: now)."""
        with self._lock:
            return self._wait(session, self._clock())

    def attempt(self, session: str, given: str, token: str, client: str = "") -> Verdict:
        """Compare ``given`` with ``token`` in constant time, unless ``session`` must still wait; a wrong one is
        counted and logged (with ``client``, the browser's address, when known)."""
        with self._lock:
            now = self._clock()
            wait = self._wait(session, now)
            if wait > 0:
                return Verdict(False, wait)
            if hmac.compare_digest(given.encode(), token.encode()):
                self._sessions.pop(session, None)
                return Verdict(True)
            in_a_row = self._sessions.pop(session, (0, now))[0] + 1
            self._sessions[session] = (in_a_row, now)  # now the newest: the oldest are forgotten first
            while len(self._sessions) > KEPT_SESSIONS:
                del self._sessions[next(iter(self._sessions))]
            self._recent.append(now)
            recent = len(self._recent)
        log.warning("A wrong operator token was given%s: %d in a row from its browser session, %d on the server in "
                    "the last %d minutes (the token given is not logged).", f" from {client}" if client else "",
                    in_a_row, recent, SERVER_WINDOW_S // 60)
        return Verdict(False)

    def _wait(self, session: str, now: float) -> float:
        while self._recent and now - self._recent[0] > SERVER_WINDOW_S:
            self._recent.popleft()
        in_a_row, last = self._sessions.get(session, (0, now))
        mine = last + min(2.0 ** (in_a_row - 1), SESSION_WAIT_MAX_S) - now if in_a_row else 0.0
        everyone = self._recent[-1] + SERVER_WAIT_S - now if len(self._recent) >= SERVER_FREE_FAILURES else 0.0
        return max(mine, everyone, 0.0)
