"""The app's settings widgets, derived from a settings class's fields (``cprune_core.options``).

A widget's limits, default and help come from the field it sets: its limits are the app's
(``options.app_range``: the field's range narrowed by its ``app_range``, the one place the app's limits
come from), its default the given settings' value, its help the field's help (the command line's
``--help`` text). A form built with these cannot drift from the command line or from validation; the
launch still calls ``settings.validate(app=True)``.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import streamlit as st

from cprune_core.options import Settings, app_range

__all__ = ["help_for", "number_limits", "number_input_for", "unless_set", "choices_within"]


def help_for(settings_class: type[Settings], name: str) -> str:
    """The field's help: the same text as its command-line option's."""
    return settings_class.options()[name].help


def number_limits(settings: Settings, name: str) -> dict[str, Any]:
    """``st.number_input``'s keywords for the whole-number field ``name``: ``min_value`` and ``max_value``
    (the app's limits), ``value`` (``settings``' value, at most ``max_value``) and ``help`` (the field's). A
    field that may be None and whose range leaves out 0 takes 0 for None, and its help says what 0 means.

    Raises
    ------
    TypeError
        For a field that is not a whole number (a fraction is a slider's or a selectbox's: ``choices_within``).

    Example
    -------
    >>> number_limits(AtlasSettings.quick(), "seeds")
    {'min_value': 2, 'max_value': 20, 'value': 4, 'help': 'Seeds of the random criterion: its band, and ...'}
    """
    settings_class = type(settings)
    valid, chosen = app_range(settings_class, name), settings_class.options()[name]
    if valid is None or not valid.integer:
        raise TypeError(f"{name} is not a whole number: draw it with a slider or a selectbox")
    low = int(valid.low) + (1 if valid.low_open else 0)
    high = int(valid.high) - (1 if valid.high_open else 0)
    value, help_text = getattr(settings, name), chosen.help
    if settings_class.shapes()[name].nullable and 0 not in valid:
        low, value, help_text = 0, 0 if value is None else value, f"{help_text} 0: {chosen.none}."
    # a default above a limit the server lowered (CPRUNE_APP_LIMITS_PERCENT) starts at the limit
    return {"min_value": low, "max_value": high, "value": min(int(value), high), "help": help_text}


def number_input_for(container: Any, label: str, settings: Settings, name: str, key: str,
                     **widget: Any) -> int | None:
    """``container.number_input`` for field ``name`` with ``number_limits(settings, name)`` (``widget``:
    further keywords, e.g. ``disabled``). Returns the whole number chosen, or None for the 0 that stands for
    None."""
    limits = number_limits(settings, name)
    limits.update(unless_set(key, value=limits.pop("value")))
    chosen = int(container.number_input(label, key=key, **limits, **widget))
    return None if chosen == 0 and limits["min_value"] == 0 and 0 not in app_range(type(settings), name) else chosen


def unless_set(key: str, **default: Any) -> dict[str, Any]:
    """``default`` (a widget's ``index=`` or ``value=``) while the widget ``key`` has no state, else nothing: its
    state, or a preset's, decides (Streamlit logs a clash when a widget gets both)."""
    return {} if key in st.session_state else default


def choices_within(settings_class: type[Settings], name: str, candidates: Iterable[Any]) -> list[Any]:
    """The candidates (a selectbox's options) within the app's limits of field ``name``."""
    valid = app_range(settings_class, name)
    return [value for value in candidates if value in valid]
