"""The memory Streamlit's upload endpoint holds, bounded for the whole server.

Streamlit keeps every file PUT to ``/_stcore/upload_file/<session>/<file id>`` in memory (its
``MemoryUploadedFileManager``), for any file id a client makes up, until the session is closed; a session that
lost its connection is kept for reconnection and its files with it, and nothing in Streamlit bounds their total.
``UploadGuard`` (ASGI middleware of app.py's st.App, in front of Streamlit's routes) bounds it:

- a PUT must say its size (``Content-Length``; the server reads no more than that), else 411;
- it is refused before its body is read (503) when the bytes held and being received, every session's together,
  would exceed ``UploadMemory.budget_bytes`` (``CPRUNE_UPLOAD_MEMORY_MB``), or (429) when its session already holds
  ``files_per_session`` files; a refused or failed PUT holds nothing;
- a file counts from the moment its PUT is accepted until a DELETE of it succeeds or its session is closed;
- a session whose connection has been gone for ``hold_s`` seconds (the app: ``CPRUNE_VISITOR_GRACE_S``, at most
  ``HOLD_S``) is closed (``close_session``), its files and state with it; a sweep every few seconds sees to it.

What is counted is each PUT's declared size, a little more than the file it carries: the count is never below
what Streamlit's upload manager holds. Not counted: a page's own copies while it reads an upload (one per page
run, within the 600 MiB cap of one file; a page's last run may refer to a deleted file until its next run), and
Starlette's temporary file of a PUT in progress (on disk, in the system's temporary folder, within the budget).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .visitors import ASGIApp, Message, Scope

__all__ = ["UploadRefused", "UploadMemory", "UploadGuard", "UPLOAD_PATH", "FILES_PER_SESSION", "HOLD_S", "SWEEP_EVERY_S"]

UPLOAD_PATH = re.compile(r"/_stcore/upload_file/([^/]+)/([^/]+)$")
FILES_PER_SESSION = 4  # the app's two file uploaders, each replacing its file (the new one may arrive first)
HOLD_S = 30.0  # Streamlit keeps a disconnected session 120 s for reconnection: its uploads go sooner
SWEEP_EVERY_S = 5.0
log = logging.getLogger(__name__)


class UploadRefused(Exception):
    """A PUT refused before its body is read: ``status`` (503: the server's budget is spent; 429: the session holds
    its share of files) and the sentence that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class _Session:
    files: dict[str, int] = field(default_factory=dict)  # file id -> bytes held
    receiving: dict[int, int] = field(default_factory=dict)  # ticket -> bytes being received
    seen: float = 0.0  # when its connection was last seen (clock)


class UploadMemory:
    """The bytes each browser session holds, or is receiving, in Streamlit's upload endpoint. Safe from any thread.

    ``is_connected(session)``: whether the session's connection is there; ``close_session(session)``: close it for
    good (Streamlit's ``Runtime.close_session``, which drops its files; called from ``sweep`` only); ``clock``:
    seconds (tests pass their own)."""

    def __init__(self, budget_bytes: int, is_connected: Callable[[str], bool], close_session: Callable[[str], None],
                 files_per_session: int = FILES_PER_SESSION, hold_s: float = HOLD_S,
                 clock: Callable[[], float] = time.monotonic):
        self.budget_bytes, self.files_per_session, self.hold_s = budget_bytes, files_per_session, hold_s
        self._is_connected, self._close_session, self._clock = is_connected, close_session, clock
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._tickets = itertools.count()

    def reserve(self, session: str, size: int) -> int:
        """Count ``size`` bytes about to be received for ``session``: a ticket for ``settle``. UploadRefused when
        they do not fit in the budget, or the session holds ``files_per_session`` files already."""
        with self._lock:
            if self.held() + size > self.budget_bytes:
                raise UploadRefused(503, "The server's memory for uploads is full: try again in a minute, when other "
                                         "visitors' uploads have gone.")
            held = self._sessions.setdefault(session, _Session())
            if len(held.files) + len(held.receiving) >= self.files_per_session:
                raise UploadRefused(429, f"This page holds {self.files_per_session} uploaded files already: remove "
                                         "one first.")
            ticket = next(self._tickets)
            held.receiving[ticket] = size
            held.seen = self._clock()
            return ticket

    def settle(self, session: str, ticket: int, file_id: str, kept: bool) -> None:
        """The PUT of ``ticket`` ended: its bytes are now held as ``file_id`` (replacing a file of that id) when
        ``kept``, else forgotten."""
        with self._lock:
            held = self._sessions.get(session)
            if held is None or ticket not in held.receiving:
                return  # its session was closed meanwhile
            size = held.receiving.pop(ticket)
            if kept:
                held.files[file_id] = size
            self._forget_if_empty(session)

    def release(self, session: str, file_id: str) -> None:
        """``file_id`` of ``session`` was deleted."""
        with self._lock:
            held = self._sessions.get(session)
            if held is not None:
                held.files.pop(file_id, None)
                self._forget_if_empty(session)

    def held(self) -> int:
        """Bytes held and being received, every session's together."""
        return sum(sum(s.files.values()) + sum(s.receiving.values()) for s in list(self._sessions.values()))

    def sweep(self) -> list[str]:
        """Close every session holding files whose connection has been gone for ``hold_s`` seconds; their bytes are
        no longer counted. Returns the sessions closed."""
        with self._lock:
            now, gone = self._clock(), []
            for session, held in list(self._sessions.items()):
                if self._is_connected(session):
                    held.seen = now
                elif now - held.seen >= self.hold_s and not held.receiving:
                    del self._sessions[session]
                    gone.append(session)
        for session in gone:
            self._close_session(session)
        return gone

    def _forget_if_empty(self, session: str) -> None:
        held = self._sessions[session]
        if not held.files and not held.receiving:
            del self._sessions[session]


async def _answer(send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class UploadGuard:
    """ASGI middleware: PUTs and DELETEs of Streamlit's upload endpoint counted in ``memory`` (the module's rules),
    which it sweeps every SWEEP_EVERY_S seconds on the server's event loop (where Streamlit closes sessions)."""

    def __init__(self, app: ASGIApp, memory: UploadMemory):
        self.app, self.memory = app, memory
        self._sweeper: asyncio.Task | None = None

    async def __call__(self, scope: Scope, receive, send) -> None:
        found = UPLOAD_PATH.search(scope["path"]) if scope["type"] == "http" else None
        if found is None or scope["method"] not in ("PUT", "DELETE"):
            await self.app(scope, receive, send)
            return
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        session, file_id = found.groups()
        status = await self._put(scope, receive, send, session, file_id) if scope["method"] == "PUT" else \
            await _status_of(self.app, scope, receive, send)
        if scope["method"] == "DELETE" and status is not None and 200 <= status < 300:
            self.memory.release(session, file_id)

    async def _put(self, scope: Scope, receive, send, session: str, file_id: str) -> int | None:
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if not declared.isdigit():
            await _answer(send, 411, "An upload must say its size (Content-Length).")
            return 411
        try:
            ticket = self.memory.reserve(session, int(declared))
        except UploadRefused as refusal:
            await _answer(send, refusal.status, str(refusal))
            return refusal.status
        status = None
        try:
            status = await _status_of(self.app, scope, receive, send)
        finally:
            self.memory.settle(session, ticket, file_id, kept=status is not None and 200 <= status < 300)
        return status

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            try:
                self.memory.sweep()
            except Exception:  # a bug: logged, and the sweeps go on
                log.exception("Sweeping the upload endpoint's gone sessions failed")


async def _status_of(app: ASGIApp, scope: Scope, receive, send) -> int | None:
    """Run ``app`` on the request; the status it answered with (None if it answered none)."""
    status: list[int] = []

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        await send(message)

    await app(scope, receive, sending)
    return status[0] if status else None
