"""Text that comes from a visitor, a link or a file is shown as text, never as Markdown or HTML.

Streamlit renders the body of st.markdown, st.caption, st.error and the like as Markdown: a
shared link whose parameter is ``![x](https://host/pixel.png)`` would put a live image (an
outside request) on the page. ``plain`` backslash-escapes every ASCII punctuation character,
which CommonMark then shows literally, so no link, image, emphasis, HTML, math, emoji shortcode
or Streamlit colour directive can form. GitHub-flavoured Markdown also turns bare addresses
(``https://...``, ``www....``, ``a@b.org``) into links after parsing, whatever the escapes, so a
zero-width space is put into each: the text reads the same and links nowhere. Control characters (a
newline in a class or folder name) are written as their escapes (cprune_core.errors.one_line), so a
quoted name can neither split a message nor start a Markdown block.
"""
from __future__ import annotations

import re

from cprune_core.errors import one_line

__all__ = ["plain", "ZERO_WIDTH_SPACE"]

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_AUTOLINK = re.compile(r"(?i)(?<=:)(?=//)|(?<=www)(?=\.)|(?<=@)")
ZERO_WIDTH_SPACE = "\u200b"


def plain(text: object) -> str:
    """``text`` made safe for any Markdown-rendering Streamlit call: it is shown as written, on one line."""
    return _PUNCTUATION.sub(r"\\\1", _AUTOLINK.sub(ZERO_WIDTH_SPACE, one_line(text)))
