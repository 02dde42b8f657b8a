"""A visitor's private id: one per browser, the same in every tab and after a reload, one that no visitor can take
on for another, and one that a made-up cookie cannot multiply.

The server hands each browser a cookie of its own, ``VISITOR_COOKIE``: 16 random bytes and their HMAC under the
server's key (``visitor_key``, kept in ``paths.cache_home()``, so cookies outlive a restart), HttpOnly, SameSite=Lax,
kept until the browser closes. ``VisitorCookies`` (ASGI middleware of app.py's st.App) sets it on the answer to
``/_stcore/health``, which the page asks for before it connects, whenever the request brings no cookie the server
signed. A page run reads it (``st.context.cookies``) and checks it (``signed_visitor``): the id is a second HMAC of
the random bytes, so the cookie (a credential) is never stored with the runs. Never show or log an id.

A cookie the server did not sign counts for nothing: a client that sends none, or a made-up or altered one, gets an
anonymous id for its session only (``anonymous_visitor``), and all anonymous visitors together are held to the run
queue's ``QueueLimits.anonymous`` launches. The server hands out at most ``CPRUNE_NEW_VISITORS_PER_HOUR`` new
cookies per client address (``IssueLimit``): a client that throws its cookie away and asks again gets a new id only
at that rate, then is anonymous. (Behind a reverse proxy every client has the proxy's address: raise the setting.)
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from cprune_core.paths import cache_home

__all__ = ["VISITOR_COOKIE", "ANONYMOUS_PREFIX", "new_cookie", "signed_visitor", "anonymous_visitor", "is_anonymous",
           "server_key", "visitor_key", "IssueLimit", "VisitorCookies"]

VISITOR_COOKIE = "cprune_visitor"
ANONYMOUS_PREFIX = "anonymous-"
KEY_BYTES = 32
COOKIE_FORM = re.compile(r"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}")  # 16 random bytes . their HMAC, base64url
HEALTH_PATH = "/_stcore/health"
KEPT_ADDRESSES = 10_000  # client addresses whose cookie allowance is remembered (the fullest forgotten first)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def _mac(key: bytes, purpose: bytes, token: str) -> bytes:
    return hmac.new(key, purpose + b"\0" + token.encode(), hashlib.sha256).digest()


def new_cookie(key: bytes) -> str:
    """A new visitor cookie's value: random bytes and their signature under ``key``."""
    token = secrets.token_urlsafe(16)
    return f"{token}.{base64.urlsafe_b64encode(_mac(key, b'cprune cookie', token)).decode().rstrip('=')}"


def signed_visitor(cookie: object, key: bytes) -> str | None:
    """The visitor id of a cookie the server signed with ``key``; None for any other text (empty, made up, altered,
    signed by another key) or value (Streamlit's AppTest has no real cookies)."""
    if not isinstance(cookie, str) or not COOKIE_FORM.fullmatch(cookie):
        return None
    token, signature = cookie.split(".")
    expected = base64.urlsafe_b64encode(_mac(key, b"cprune cookie", token)).decode().rstrip("=")
    if not hmac.compare_digest(signature, expected):
        return None
    return _mac(key, b"cprune visitor", token).hex()


def anonymous_visitor() -> str:
    """An id for a session whose browser brought no cookie the server signed: its own, for this session only."""
    return ANONYMOUS_PREFIX + secrets.token_hex(16)


def is_anonymous(owner: str) -> bool:
    """Whether ``owner`` is an ``anonymous_visitor`` id."""
    return owner.startswith(ANONYMOUS_PREFIX)


def server_key(path: Path) -> bytes:
    """The key cookies are signed and ids derived with: read from ``path``, or made and written there (readable by
    the server's user only). When it can be neither read nor written, a key of this process only (cookies then
    change at the next start)."""
    try:
        key = path.read_bytes()
        if len(key) == KEY_BYTES:
            return key
    except FileNotFoundError:
        pass
    except OSError:
        return secrets.token_bytes(KEY_BYTES)
    key = secrets.token_bytes(KEY_BYTES)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(key)
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)
    return key


@functools.cache
def _key_at(path: Path) -> bytes:
    return server_key(path)


def visitor_key() -> bytes:
    """The server's key, ``cache_home()/visitor.key`` (``server_key``), read once per process and folder: the
    middleware that signs cookies and the pages that check them use the same key, even one of this process only."""
    return _key_at(cache_home() / "visitor.key")


class IssueLimit:
    """How many new cookies each client address may still get: ``per_hour``, refilled evenly over the hour. Safe
    from any thread; ``clock``: seconds (tests pass their own)."""

    def __init__(self, per_hour: int, clock: Callable[[], float] = time.monotonic):
        self.per_hour = per_hour
        self._clock = clock
        self._lock = threading.Lock()
        self._left: dict[str, tuple[float, float]] = {}  # address -> (cookies left, when counted)

    def take(self, address: str) -> bool:
        """Whether ``address`` may get one more new cookie now (counted when it may)."""
        with self._lock:
            now = self._clock()
            left, then = self._left.pop(address, (self.per_hour, now))
            left = min(self.per_hour, left + (now - then) * self.per_hour / 3600)
            allowed = left >= 1
            self._left[address] = (left - allowed, now)
            if len(self._left) > KEPT_ADDRESSES:  # an address forgotten is one with its whole allowance again
                del self._left[max(self._left, key=lambda known: self._left[known][0])]
            return allowed


def _cookie(scope: Scope, name: str) -> str:
    """The value of cookie ``name`` in an ASGI request's headers ("" when absent)."""
    for header, value in scope.get("headers", ()):
        if header == b"cookie":
            for pair in value.decode("latin-1").split(";"):
                key, _, text = pair.strip().partition("=")
                if key == name:
                    return text.strip('"')
    return ""


class VisitorCookies:
    """ASGI middleware: the answer to ``GET /_stcore/health`` (asked by the page before it connects) sets a new
    VISITOR_COOKIE when the request brings none that ``key()`` signed and ``limit`` allows one for its address."""

    def __init__(self, app: ASGIApp, key: Callable[[], bytes], limit: IssueLimit):
        self.app, self._key, self._limit = app, key, limit

    async def __call__(self, scope: Scope, receive, send) -> None:
        if (scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].endswith(HEALTH_PATH)
                or signed_visitor(_cookie(scope, VISITOR_COOKIE), self._key())):
            await self.app(scope, receive, send)
            return
        address = (scope.get("client") or ("",))[0]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and self._limit.take(address):
                cookie = f"{VISITOR_COOKIE}={new_cookie(self._key())}; Path=/; HttpOnly; SameSite=Lax"
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
            await send(message)

        await self.app(scope, receive, sending)
