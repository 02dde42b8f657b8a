"""The top of every page script: make sure it runs inside app.py, then draw its title and caption;
and how a page reports a bug that a background worker met.

Streamlit 1.67 decides per process (and in AppTest, per run) whether a ``pages/`` folder next to
the main script means its legacy folder mode; in that mode the first script run of a server
process, and every AppTest run, may execute a page script directly, without app.py (so without
st.navigation, the shared state and the sidebar). A page run that way switches the legacy mode
off and runs app.py in its place, within the same script run, so button clicks are not lost;
app.py then navigates to this very page. (streamlit/streamlit#14217 has the flag's history.)
"""
from __future__ import annotations

import runpy

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import get_script_run_ctx

__all__ = ["start", "show_bug"]


# Streamlit leaves 6rem above a page's title: on a laptop or a projector (768 px high) the first figures fall below
# the fold. Our own style sheet, no visitor's text.
TIGHTER_TOP = "<style>[data-testid='stMainBlockContainer'] { padding-top: 2.5rem; }</style>"


def start(title: str, caption: str) -> None:
    if PagesManager.uses_pages_directory:  # app.py's st.navigation sets it False for the process
        PagesManager.uses_pages_directory = False
        runpy.run_path(get_script_run_ctx().main_script_path, run_name="__main__")
        st.stop()  # app.py has drawn this page; the outer legacy run ends here
    st.html(TIGHTER_TOP)
    st.title(title)
    st.caption(caption)


def show_bug(sentence: str, details: str) -> None:
    """A bug met by a background worker: ``sentence`` always; the traceback ``details`` only where the server
    shows error details (client.showErrorDetails full or stacktrace: `make serve` and the Docker image say
    none, so a classroom sees no server paths). The worker has logged it to the server's console too."""
    st.error(sentence)
    if st.get_option("client.showErrorDetails") in ("full", "stacktrace", True):
        st.code(details, language=None)
