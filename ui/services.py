"""The server's one run queue, one upload folder and one operator gate (cprune_server), kept by
st.cache_resource for the life of the server process, so they outlive reruns and page switches; and whether a
browser session is still connected (``is_connected``)."""
from __future__ import annotations

import streamlit as st
from streamlit import runtime

from cprune_server import OperatorGate, RunQueue, Uploads, make_run_queue, make_uploads

__all__ = ["is_connected", "run_queue", "uploads", "operator_gate"]


def is_connected(session_id: str) -> bool:
    """Whether the browser session is still connected (always, outside a Streamlit server: AppTest)."""
    return not runtime.exists() or runtime.get_instance().is_active_session(session_id)


@st.cache_resource
def run_queue() -> RunQueue:
    """The server's one queue (its limits and budgets from the environment)."""
    return make_run_queue(is_connected)


@st.cache_resource
def uploads() -> Uploads:
    """The server's one upload folder (emptied at start-up)."""
    return make_uploads(run_queue(), is_connected)


@st.cache_resource
def operator_gate() -> OperatorGate:
    """The server's one record of tries of the operator's token (wrong ones slowed and logged)."""
    return OperatorGate()
