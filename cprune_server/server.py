"""The app server's one run queue, one upload folder and its two ASGI guards, configured from the environment.

``CPRUNE_CONCURRENT_RUNS`` (default 1) launches run at a time, each for ``CPRUNE_MAX_LAUNCH_MINUTES`` (default
120) at most; an owner may have ``CPRUNE_QUEUED_RUNS_PER_VISITOR`` (default 2) waiting or running, kept for
``CPRUNE_VISITOR_GRACE_S`` (default 60) after their last session closed; saved models are kept within
``CPRUNE_MODELS_BUDGET_MB`` (default 5120), uploaded files within ``CPRUNE_UPLOAD_BUDGET_MB`` (default 2048) on disk
and ``CPRUNE_UPLOAD_MEMORY_MB`` (default 1024) in Streamlit's upload endpoint; ``CPRUNE_NEW_VISITORS_PER_HOUR``
(default 120) visitor cookies are handed out per client address an hour. Each is read through settings.setting: a
value that cannot be used is a ConfigError naming the variable.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

from cprune_core.paths import cache_home

from .models import recorded_run
from .queue import QueueLimits, RunQueue
from .settings import setting
from .upload_guard import HOLD_S, UploadGuard, UploadMemory
from .uploads import Uploads, uses_in_progress
from .visitors import ASGIApp, IssueLimit, VisitorCookies, visitor_key

__all__ = ["make_run_queue", "make_uploads", "make_upload_guard", "make_visitor_cookies"]

MIB = 2**20
SWEEP_EVERY_S = 5.0  # how soon after the grace time a gone visitor's waiting launches leave the queue


def make_run_queue(is_connected: Callable[[str], bool]) -> RunQueue:
    """A queue whose runs are recorded in the run store as their owner's and whose models are saved in the
    app's models folder, within its budget; ``is_connected(session)`` says whether a browser session is
    still there."""
    runner = functools.partial(recorded_run, models_budget=setting("CPRUNE_MODELS_BUDGET_MB") * MIB)
    limits = QueueLimits.from_environment()
    return RunQueue(runner, limits, is_connected, sweep_every_s=min(SWEEP_EVERY_S, max(limits.grace_s / 4, 0.25)))


def make_uploads(queue: RunQueue, is_connected: Callable[[str], bool]) -> Uploads:
    """The upload folder ``cache_home()/uploads``, emptied now; a file is kept while a session that
    ``is_connected`` says is still there, or a launch of ``queue`` that waits or runs, uses it."""
    return Uploads(cache_home() / "uploads", setting("CPRUNE_UPLOAD_BUDGET_MB") * MIB,
                   uses_in_progress(queue, is_connected))


def make_upload_guard(app: ASGIApp, is_connected: Callable[[str], bool],
                      close_session: Callable[[str], None]) -> UploadGuard:
    """``app`` behind an UploadGuard whose memory budget is ``CPRUNE_UPLOAD_MEMORY_MB``, and which closes a session
    holding uploads once its connection has been gone for ``CPRUNE_VISITOR_GRACE_S`` (at most ``upload_guard.HOLD_S``,
    well within the time Streamlit keeps it); ``is_connected`` and ``close_session`` are Streamlit's."""
    return UploadGuard(app, UploadMemory(setting("CPRUNE_UPLOAD_MEMORY_MB") * MIB, is_connected, close_session,
                                         hold_s=min(setting("CPRUNE_VISITOR_GRACE_S"), HOLD_S)))


def make_visitor_cookies(app: ASGIApp) -> VisitorCookies:
    """``app`` behind the middleware that hands out visitor cookies signed with ``visitor_key()``, at most
    ``CPRUNE_NEW_VISITORS_PER_HOUR`` per client address an hour."""
    return VisitorCookies(app, visitor_key, IssueLimit(setting("CPRUNE_NEW_VISITORS_PER_HOUR")))
