"""A visitor's private id: one per browser, the same in every tab and after a reload, and one that no
visitor can take on for another.

It is derived from the secret a browser already holds for this server: Streamlit's XSRF cookie
(``_streamlit_xsrf``: 16 random bytes the server chose, stored masked as ``2|mask|masked|time`` and
masked anew at every page load; the browser keeps it until it closes). Another visitor cannot know
those bytes, so cannot present them. The id is an HMAC of them under the server's own key (kept in
``paths.cache_home()``, so ids outlive a restart), never the token itself: ids are stored with the
runs, and a stored XSRF token would be a credential on disk. Never show or log an id.

A client that sends no such cookie gets an id per session (its limit is then per tab); a client
that makes up cookies gets a new visitor each time: the limit per visitor is a limit per browser,
not per person, and the queue's own cap bounds the rest.
"""
from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import secrets
from pathlib import Path

__all__ = ["XSRF_COOKIE", "browser_secret", "visitor_id", "server_key", "session_visitor_id"]

XSRF_COOKIE = "_streamlit_xsrf"
KEY_BYTES = 32


def browser_secret(cookie: str) -> bytes | None:
    """The token bytes in an XSRF cookie value (``2|mask|masked|time``: token = masked XOR mask, repeated);
    None when the value is empty or not of that form."""
    parts = cookie.strip("\"'").split("|")
    if len(parts) != 4 or parts[0] != "2":
        return None
    try:
        mask, masked = binascii.a2b_hex(parts[1]), binascii.a2b_hex(parts[2])
    except (binascii.Error, ValueError):
        return None
    if len(mask) != 4 or not masked:
        return None
    return bytes(byte ^ mask[i % 4] for i, byte in enumerate(masked))


def visitor_id(secret: bytes, key: bytes) -> str:
    """The visitor id of a browser secret under the server's ``key``."""
    return hmac.new(key, b"cprune visitor\0" + secret, hashlib.sha256).hexdigest()


def session_visitor_id() -> str:
    """An id for a client with no browser secret: its own, for this session only."""
    return "session-" + secrets.token_hex(16)


def server_key(path: Path) -> bytes:
    """The key ids are derived with: read from ``path``, or made and written there (readable by the server's
    user only). When it can be neither read nor written, a key of this process only (ids then change at the
    next start)."""
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
