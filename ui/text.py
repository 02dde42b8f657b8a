"""Text that comes from a visitor, a link or a file is shown as text, never as Markdown or HTML.

Streamlit renders the body of st.markdown, st.caption, st.error and the like as Markdown: a
shared link whose parameter is ``![x](https://host/pixel.png)`` would put a live image (an
outside request) on the page. ``plain`` backslash-escapes every ASCII punctuation character,
which CommonMark then shows literally: no link, image, emphasis, HTML, math, emoji shortcode or
Streamlit colour directive can form from it.
"""
from __future__ import annotations

import re

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def plain(text: object) -> str:
    """``text`` escaped for any Markdown-rendering Streamlit call."""
    return _PUNCTUATION.sub(r"\\\1", str(text))
