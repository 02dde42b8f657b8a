"""The app's server side, without Streamlit: a package beside ``ui/`` (``cprune_core`` never imports it).

- ``queue.py``: one first-in, first-out queue of visitors' launches (``RunQueue``, which knows which
  visitors are still here, ``presence.py``), with the operator's overview;
- ``uploads.py``: the uploaded checkpoints (``Uploads``), within a budget;
- ``models.py``: the saved models (``recorded_run``, ``keep_models_within``, ``downloadable_runs``);
- ``visitors.py``: the visitors' private ids (``visitor_id``: one per browser);
- ``access.py``: what a visitor may do, as the core's ``Access`` (``visitor_access``: data folders,
  downloads, owner), which the app passes down into every core call made on a visitor's behalf;
- ``settings.py``: the server's environment variables, checked as it starts.

The app builds one queue and one upload folder (``make_run_queue``, ``make_uploads``) and keeps them for
the life of the server; whether a browser session is still connected is the app's to say (``is_connected``).
"""
from .access import data_roots, downloads_allowed, visitor_access
from .models import STORE_ADVICE, downloadable_runs, keep_models_within, recorded_run
from .presence import Attendance
from .queue import (FINETUNE, OWNER_AWAY, STOPPED_BY_OPERATOR, STOPPED_BY_OWNER, Launch, LaunchState, QueueLimits,
                    QueueOverview, RunQueue, Runner, Task, Track, VisitorView)
from .server import make_run_queue, make_uploads
from .uploads import Uploads, launch_user, uses_in_progress
from .visitors import XSRF_COOKIE, browser_secret, server_key, session_visitor_id, visitor_id

__all__ = ["Launch", "LaunchState", "QueueLimits", "QueueOverview", "RunQueue", "Runner", "Task", "Track",
           "VisitorView", "FINETUNE", "STOPPED_BY_OWNER", "OWNER_AWAY", "STOPPED_BY_OPERATOR", "Attendance", "Uploads",
           "launch_user", "uses_in_progress", "recorded_run", "keep_models_within", "downloadable_runs",
           "STORE_ADVICE", "make_run_queue", "make_uploads", "XSRF_COOKIE", "browser_secret", "visitor_id",
           "server_key", "session_visitor_id", "data_roots", "downloads_allowed", "visitor_access"]
