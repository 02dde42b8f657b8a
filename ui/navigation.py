"""The app's pages, in navigation order: the one list app.py, page links and the tests read."""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

__all__ = ["PageEntry", "PAGES", "OPERATOR_PAGE", "st_pages"]


@dataclass(frozen=True)
class PageEntry:
    script: str  # relative to the repository root
    title: str
    # "" for the default page, served at /; else the script's file name without .py, which is the path
    # Streamlit's legacy pages/ mode gives it too (see frame.py): a first request then finds the same page.
    url_path: str


PAGES = (
    PageEntry("pages/explorer.py", "Graph explorer", ""),
    PageEntry("pages/how-it-works.py", "How it works", "how-it-works"),
    PageEntry("pages/prune.py", "Prune", "prune"),
    PageEntry("pages/layerwise.py", "Layer-wise centrality", "layerwise"),
    PageEntry("pages/importance.py", "Does centrality predict importance?", "importance"),
    PageEntry("pages/finetune.py", "Fine-tune", "finetune"),
    PageEntry("pages/results.py", "Results", "results"),
    PageEntry("pages/glossary.py", "Glossary", "glossary"),
)
# Not listed in the navigation: the server's operator opens /operator and gives CPRUNE_ADMIN_TOKEN there.
OPERATOR_PAGE = PageEntry("pages/operator.py", "Operator", "operator")


def st_pages() -> list:
    """PAGES as st.Page objects for st.navigation (no icons: Streamlit would fetch their font from Google), and
    the operator's page, hidden from the navigation."""
    return [st.Page(entry.script, title=entry.title, default=True) if not entry.url_path
            else st.Page(entry.script, title=entry.title, url_path=entry.url_path) for entry in PAGES] + [
        st.Page(OPERATOR_PAGE.script, title=OPERATOR_PAGE.title, url_path=OPERATOR_PAGE.url_path,
                visibility="hidden")]
