"""The app's pages under streamlit.testing.v1.AppTest, reached as a visitor reaches them (app.py's st.navigation,
then AppTest.switch_page), and what the visitor reads there."""
from __future__ import annotations

import re
from pathlib import Path

from streamlit.testing.v1 import AppTest

from ui.services import run_queue

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 180  # seconds one script run may take: the first builds the default model


def open_app(page: str | None = None, **query) -> AppTest:
    """A new session opened by a link with ``query``, then on ``page`` (a file name under pages/, no suffix);
    fails the test if either run raised."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(query)
    at.run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    assert_clean(at)
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def shown(markdown: str) -> str:
    """What a visitor reads: the Markdown source with ui.text.plain's backslash escapes removed."""
    return re.sub(r"\\(.)", r"\1", markdown)


def errors(at: AppTest) -> str:
    return "\n".join(shown(e.value) for e in at.error)


def launches(at: AppTest) -> list:
    """The session's visitor's launches in the app's run queue, newest first."""
    return run_queue().view(at.session_state["_visitor"]).launches
