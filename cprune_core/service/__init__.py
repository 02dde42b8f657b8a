"""The app's server side, without Streamlit: one first-in, first-out queue of visitors' launches
(``RunQueue``), the uploaded checkpoints (``Uploads``) and the saved models (``recorded_run``,
``keep_models_within``, ``downloadable_runs``), each within its limits.

The app builds one of each (``make_run_queue``, ``make_uploads``) and keeps them for the life of
the server; whether a browser session is still connected is the app's to say (``is_connected``).
"""
from .models import downloadable_runs, keep_models_within, recorded_run
from .queue import Launch, LaunchState, QueueLimits, RunQueue, Runner, Task, Track, VisitorView
from .server import make_run_queue, make_uploads
from .uploads import Uploads, launch_user, uses_in_progress

__all__ = ["Launch", "LaunchState", "QueueLimits", "RunQueue", "Runner", "Task", "Track", "VisitorView",
           "Uploads", "launch_user", "uses_in_progress", "recorded_run", "keep_models_within",
           "downloadable_runs", "make_run_queue", "make_uploads"]
