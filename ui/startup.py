"""What the server process does as it starts, before anyone visits (app.py's st.App lifespan), and what stands in
front of Streamlit's routes (its middleware, ``Guards``).

`streamlit run app.py` (and so `make run`, `make serve`, `make dev` and the Docker image) finds the st.App in
app.py and starts it; its lifespan checks the server's settings, starts ``warm_up`` in a thread and lets the
server answer at once. The thread imports torch and the pages' libraries and fills the caches the first page reads
(the default model, its head layer's graph and the canvas payload), through the same cached functions the pages
call, so a first visitor waiting on them waits for what is left, never for a second copy.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

__all__ = ["lifespan", "warm_up", "Guards"]

_LOG = logging.getLogger("cprune.startup")


def warm_up() -> None:
    """Import torch and build what the default first page shows: the model's pruning graph in this thread, its
    head layer's graph (similarity, layout, payload) in a second one, so both cores work.
    A failure is logged, never raised: the first visitor then meets it with the app's own message (a missing
    weights file, say)."""
    try:
        import torch  # noqa: F401  (the slowest import, first)

        from cprune_core import DEFAULT_BACKBONE, DEFAULT_TAU

        from . import cache, charts, pyvis_view  # noqa: F401  (the pages' libraries: plotly, pandas, pyvis)

        key = cache.ModelKey(DEFAULT_BACKBONE, "pretrained")
        layer = cache.backbone(key).spec.head_layer
        graph = threading.Thread(target=_quietly, args=(cache.graph_payload, key, layer, "force"),
                                 name="cprune-warm-up-graph")
        graph.start()
        cache.model_bundle(key)  # its cost model waits for the Prune page: the first page shows no costs
        cache.layer_graph(key, layer, DEFAULT_TAU)
        graph.join()
    except Exception:  # noqa: BLE001  (start-up must not stop the server)
        _LOG.warning("warming up the default model failed; the first visitor will see why", exc_info=True)


def _quietly(work, *args) -> None:
    try:
        work(*args)
    except Exception:  # noqa: BLE001
        _LOG.warning("warming up the default layer's graph failed; the first visitor will see why", exc_info=True)


@asynccontextmanager
async def lifespan(_app) -> AsyncIterator[None]:
    """st.App's lifespan: check the server's settings (a value that cannot be used stops start-up with one
    sentence naming the variable, exit status 2), then start ``warm_up`` in the background and serve."""
    from cprune_core.errors import ConfigError, one_line
    from cprune_server.settings import check_server_settings

    try:
        check_server_settings()
    except ConfigError as error:
        print(f"error: {one_line(error)}", file=sys.stderr, flush=True)
        os._exit(2)  # at once, without the server's traceback of a failed start-up
    threading.Thread(target=warm_up, name="cprune-warm-up", daemon=True).start()
    yield


class Guards:
    """app.py's ASGI middleware, in front of Streamlit's routes: cprune_server's visitor cookies (``VisitorCookies``)
    and the upload endpoint's memory budget (``UploadGuard``), built at the first request, after ``lifespan`` has
    checked the settings they read (importing cprune_server imports torch: not while app.py is imported)."""

    def __init__(self, app: Any):
        self.app = app
        self._guarded: Any = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if self._guarded is None:
            self._guarded = _guard(self.app)
        await self._guarded(scope, receive, send)


def _guard(app: Any) -> Any:
    from streamlit import runtime

    from cprune_server import make_upload_guard, make_visitor_cookies

    from .services import is_connected

    def close_session(session: str) -> None:  # on the server's event loop, where Streamlit closes sessions
        server = runtime.get_instance()
        server.close_session(session)  # its state and files, while Streamlit keeps it for reconnection
        server.uploaded_file_mgr.remove_session_files(session)  # its files, even once Streamlit forgot it

    return make_visitor_cookies(make_upload_guard(app, is_connected, close_session))
