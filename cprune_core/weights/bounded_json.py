"""JSON from a model's files (a safetensors header, an index), its structure counted before it is expanded.

``json.loads`` turns three bytes (``[],``) into a 56-byte list: a 30 MB header of empty lists costs
0.75 GB before any entry can be checked. So the objects, arrays and values of the text are counted first
(strings blanked out, at C speed), and a text with more than its kind of file needs is refused unparsed.
"""
from __future__ import annotations

import json
import re

from ..errors import WeightsFileError

__all__ = ["load_bounded_json"]

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string, escapes included


def load_bounded_json(text: bytes, what: str, max_objects: int, max_arrays: int, max_values: int) -> object:
    """``text`` parsed, once it holds at most ``max_objects`` objects, ``max_arrays`` arrays and ``max_values``
    values (commas outside strings, plus one).

    Raises WeightsFileError naming ``what`` when a count is over its limit (before anything is parsed) or the
    text is not valid JSON.
    """
    skeleton = _STRING.sub(b"", text)
    counts = {"objects": (skeleton.count(b"{"), max_objects), "arrays": (skeleton.count(b"["), max_arrays),
              "values": (skeleton.count(b",") + 1, max_values)}
    for kind, (found, limit) in counts.items():
        if found > limit:
            raise WeightsFileError(f"{what} holds {found:,} JSON {kind}; a model's needs at most {limit:,}: the file "
                                   "is damaged or was not written for a model.")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise WeightsFileError(f"{what} is not valid JSON ({str(error)[:100]}); the file is damaged or "
                               "truncated.") from error
