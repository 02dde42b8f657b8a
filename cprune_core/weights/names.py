"""Tensor names as people see them: printable, sorted as a model defines its layers.

A name comes from the file (a header, a pickle, a protobuf) and may be anything: a control character
that drives a terminal (ESC, BEL, CR), a lone surrogate that no encoder writes, digits ``int()``
refuses (``²``) or 4,300 of them (beyond Python's limit for ``int()`` of a string). ``printable`` is
the name a layer goes by everywhere it is shown or typed; ``natural_key`` sorts "layer2" before
"layer10" comparing runs of ASCII digits only.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["printable", "natural_key", "layer_names"]

_DIGITS = re.compile(r"([0-9]{1,30})")  # ASCII digits only; a longer run is compared 30 digits at a time


def printable(name: str) -> str:
    """``name`` with every character that is not printable (control and format characters, lone surrogates,
    separators other than the space) written as its escape: ``"a\\x1b]0;x\\x07"`` stays one line of text and
    sets no terminal title; ``"\\udc80"`` can be encoded as UTF-8.

    >>> printable("conv\\x1b[31m.weight"), printable("h\\udc80"), printable("layer1²")
    ('conv\\\\x1b[31m.weight', 'h\\\\udc80', 'layer1²')
    """
    if name.isprintable():
        return name
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in name)


def natural_key(name: str) -> tuple:
    """A sort key comparing runs of ASCII digits as numbers: "layer2.0" before "layer10.0"."""
    return tuple((0, int(part), "") if index % 2 else (1, 0, part) for index, part in enumerate(_DIGITS.split(name)))


def layer_names(tensors: Iterable[str]) -> dict[str, str]:
    """Tensor name -> layer name: printable, and "x.weight" becomes "x" unless another tensor (or layer name) is
    called "x". Two tensors whose printable names are the same (a name and another holding its escape as text)
    keep their printable tensor names, and a further clash gets ``#2``, ``#3``: every layer name is unique."""
    tensors = list(tensors)
    taken = {printable(name) for name in tensors}
    names: dict[str, str] = {}
    used: set[str] = set()
    for tensor in tensors:
        shown = printable(tensor)
        short = shown.removesuffix(".weight")
        name = short if short == shown or short not in taken else shown
        suffix = 2
        while name in used:
            name = f"{shown}#{suffix}"
            suffix += 1
        used.add(name)
        names[tensor] = name
    return names
