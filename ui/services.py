"""The server's one run queue, one upload folder and visitor-id key (cprune_server), kept by
st.cache_resource for the life of the server process, so they outlive reruns and page switches."""
from __future__ import annotations

import streamlit as st
from streamlit import runtime

from cprune_core.paths import cache_home
from cprune_server import RunQueue, Uploads, make_run_queue, make_uploads, server_key

__all__ = ["run_queue", "uploads", "visitor_key"]


def _is_connected(session_id: str) -> bool:
    """Whether the browser session is still connected (always, outside a Streamlit server: AppTest)."""
    return not runtime.exists() or runtime.get_instance().is_active_session(session_id)


@st.cache_resource
def run_queue() -> RunQueue:
    """The server's one queue (its limits and budgets from the environment)."""
    return make_run_queue(_is_connected)


@st.cache_resource
def uploads() -> Uploads:
    """The server's one upload folder (emptied at start-up)."""
    return make_uploads(run_queue(), _is_connected)


@st.cache_resource
def visitor_key() -> bytes:
    """The key visitors' ids are derived with (cprune_server.visitors), kept in CPRUNE_HOME."""
    return server_key(cache_home() / "visitor.key")
