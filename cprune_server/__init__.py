"""The app's server side, without Streamlit: a package beside ``ui/`` (``cprune_core`` never imports it).

- ``queue.py``: one first-in, first-out queue of visitors' launches (``RunQueue``, which knows which
  visitors are still here, ``presence.py``), with the operator's overview;
- ``uploads.py``: the uploaded checkpoints (``Uploads``), within a budget;
- ``models.py``: the saved models (``recorded_run``, ``keep_models_within``, ``downloadable_runs``);
- ``visitors.py``: the visitors' private ids (one per browser, from a cookie the server signs: ``signed_visitor``;
  ``VisitorCookies``, the ASGI middleware that hands the cookies out);
- ``upload_guard.py``: the memory Streamlit's upload endpoint holds, within a budget (``UploadGuard``, ASGI
  middleware in front of it);
- ``operator.py``: tries of the operator's token, slowed and logged (``OperatorGate``);
- ``access.py``: what a visitor may do, as the core's ``Access`` (``visitor_access``: data folders,
  downloads, owner), which the app passes down into every core call made on a visitor's behalf;
- ``settings.py``: the server's environment variables, checked as it starts.

The app builds one queue and one upload folder (``make_run_queue``, ``make_uploads``) and keeps them for
the life of the server; whether a browser session is still connected is the app's to say (``is_connected``).
"""
from .access import data_roots, downloads_allowed, visitor_access
from .models import STORE_ADVICE, downloadable_runs, keep_models_within, recorded_run
from .operator import OperatorGate, Verdict
from .presence import Attendance, Presence, Whereabouts
from .queue import (FINETUNE, OWNER_AWAY, STOPPED_BY_OPERATOR, STOPPED_BY_OWNER, Launch, LaunchState, QueueLimits,
                    QueueOverview, RunQueue, Runner, Task, Track, VisitorView, out_of_time)
from .server import make_run_queue, make_upload_guard, make_uploads, make_visitor_cookies
from .upload_guard import UploadGuard, UploadMemory, UploadRefused
from .uploads import Uploads, launch_user, uses_in_progress
from .visitors import (ANONYMOUS_PREFIX, VISITOR_COOKIE, IssueLimit, VisitorCookies, anonymous_visitor, is_anonymous,
                       new_cookie, server_key, signed_visitor, visitor_key)

__all__ = ["Launch", "LaunchState", "QueueLimits", "QueueOverview", "RunQueue", "Runner", "Task", "Track",
           "VisitorView", "FINETUNE", "STOPPED_BY_OWNER", "OWNER_AWAY", "STOPPED_BY_OPERATOR", "out_of_time",
           "Attendance", "Presence", "Whereabouts", "Uploads", "launch_user", "uses_in_progress", "recorded_run",
           "keep_models_within", "downloadable_runs", "STORE_ADVICE", "make_run_queue", "make_uploads",
           "make_upload_guard", "make_visitor_cookies", "UploadGuard", "UploadMemory", "UploadRefused",
           "OperatorGate", "Verdict", "VISITOR_COOKIE", "ANONYMOUS_PREFIX", "IssueLimit", "VisitorCookies",
           "anonymous_visitor", "is_anonymous", "new_cookie", "signed_visitor", "server_key", "visitor_key",
           "data_roots", "downloads_allowed", "visitor_access"]
