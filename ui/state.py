"""Session state that pages share, mirrored in the URL so a view can be shared as a link.

Each shared value lives under its own name in st.session_state ("backbone", "layer", "tau",
"criterion", "keep"). Widgets bind to it through ``bound``: the widget gets its own key,
seeded from the shared value on every run, because Streamlit resets a widget that first
appears on another page. On the first run of a session the values come from the URL's query
parameters (checked, with a warning for any that are not valid), later runs write them back.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from cprune_core import FinetuneConfig, Range
from cprune_core.access import Access
from cprune_core.layer_view import TAU_STEP
from cprune_core.ranges import number_from_text
from cprune_server import VISITOR_COOKIE, anonymous_visitor, signed_visitor, visitor_access, visitor_key

__all__ = ["slider_bounds", "OPTIONS", "CONFIG_DEFAULTS", "TAU_STEP", "KEEP_STEP", "TAU_RANGE", "KEEP_RANGE", "DEFAULTS",
           "URL_PARAMS", "init", "write_url", "layer_key", "widget_key", "bound", "set_value", "ensure_choice", "tau_slider",
           "keep_slider", "visitor", "access", "CHART_FORMATS", "chart_config"]


def slider_bounds(valid: Range, step: float) -> tuple[float, float]:
    """A slider's end points within ``valid``: an open end moves in by one step."""
    low = valid.low + step if valid.low_open else valid.low
    high = valid.high - step if valid.high_open else valid.high
    return round(low, 10), round(high, 10)


OPTIONS, CONFIG_DEFAULTS = FinetuneConfig.options(), FinetuneConfig()  # the shared values' one source
KEEP_STEP = 0.05
TAU_RANGE = slider_bounds(OPTIONS["tau"].range, TAU_STEP)
KEEP_RANGE = slider_bounds(OPTIONS["keep"].range, KEEP_STEP)
DEFAULTS: dict[str, Any] = {
    "backbone": CONFIG_DEFAULTS.backbone,
    "layer": "",  # "" means the backbone's head layer (as FinetuneConfig's layers=None)
    "tau": CONFIG_DEFAULTS.tau,
    "criterion": CONFIG_DEFAULTS.criterion,
    "keep": CONFIG_DEFAULTS.keep,
}
URL_PARAMS = tuple(DEFAULTS)  # the link-able view
_READY = "_state_ready"


def _parse(name: str, text: str) -> Any:
    """A URL value as the type the app uses; ValueError when it is not a valid choice."""
    if name in ("backbone", "criterion"):
        if text not in OPTIONS[name].choices:
            raise ValueError(f"unknown {name} {text[:40]!r}")
        return text
    if name in ("tau", "keep"):
        low, high = TAU_RANGE if name == "tau" else KEEP_RANGE
        try:
            value = round(number_from_text(text), 2)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:  # NaN compares false: refused too
            raise ValueError(f"{name} must be a number between {low} and {high}, got {text[:40]!r}")
        return value
    return text  # layer: checked against the backbone's layers by the page that uses it


def init() -> None:
    """Once per session: shared values from the URL, else the defaults. Then, every run,
    copy widget values into the shared names so the whole run sees the latest input."""
    state = st.session_state
    if not state.get(_READY):
        rejected = []
        for name, default in DEFAULTS.items():
            value = default
            if name in st.query_params:
                try:
                    value = _parse(name, st.query_params[name])
                except ValueError as exc:
                    rejected.append(f"{name}: {exc}")
            state[name] = value
        state["url_rejected"] = rejected
        state[_READY] = True
    for name in DEFAULTS:
        key = widget_key(name)
        if key in state:
            state[name] = state[key]


def write_url() -> None:
    """Put the shared values in the URL (only those that changed, to keep history quiet)."""
    for name in URL_PARAMS:
        value = st.session_state[name]
        text = f"{value:g}" if isinstance(value, float) else str(value)
        if not text:
            st.query_params.pop(name, None)
        elif st.query_params.get(name) != text:
            st.query_params[name] = text


def layer_key() -> str:
    """The session value that holds the layer shown: "layer" (in the URL) for a registry backbone; "file_layer"
    (never in the URL: an upload is private to its visitor) for a weights file."""
    return "file_layer" if st.session_state.get("model_kind") == "file" else "layer"


def widget_key(name: str) -> str:
    return f"widget_{name}"


def bound(widget: Callable[..., Any], name: str, label: str, **kwargs: Any) -> Any:
    """Draw ``widget`` bound to the shared value ``name`` and return its value."""
    key = widget_key(name)
    if key in st.session_state:  # the widget's latest input; a fragment's rerun does not run init()
        st.session_state[name] = st.session_state[key]
    st.session_state[key] = st.session_state[name]
    value = widget(label, key=key, **kwargs)
    st.session_state[name] = value
    return value


def set_value(name: str, value: Any) -> None:
    """Change a shared value from code (a callback, or before its widget is drawn)."""
    st.session_state[name] = value
    st.session_state.pop(widget_key(name), None)


def ensure_choice(name: str, options: Sequence[Any], fallback: Any) -> bool:
    """Reset ``name`` to ``fallback`` if it is not one of ``options``; True when it was reset. The URL shows the
    value in use at once (app.py wrote it before the page ran)."""
    if st.session_state[name] in options:
        return False
    set_value(name, fallback)
    write_url()
    return True


def tau_slider(container: Any = st, **kwargs: Any) -> float:
    """The shared tau slider (bound to "tau"), drawn in ``container``."""
    return bound(container.slider, "tau", "Similarity threshold τ", min_value=TAU_RANGE[0], max_value=TAU_RANGE[1],
                 step=TAU_STEP, **kwargs)


def keep_slider(container: Any = st, **kwargs: Any) -> float:
    """The shared keep-ratio slider (bound to "keep"), drawn in ``container``."""
    return bound(container.slider, "keep", "Keep ratio", min_value=KEEP_RANGE[0], max_value=KEEP_RANGE[1],
                 step=KEEP_STEP, **kwargs)


def visitor() -> str:
    """This visitor's private id: it owns their launches and runs. One per browser (the same in every tab and
    after a reload: from the cookie the server signed for this browser, cprune_server.visitors), or, for a browser
    that brought no such cookie, an anonymous one for this session (anonymous visitors share one limit of
    launches). Never shown, never logged, never in a link."""
    if "_visitor" not in st.session_state:
        owner = signed_visitor(st.context.cookies.get(VISITOR_COOKIE, ""), visitor_key())
        st.session_state["_visitor"] = owner or anonymous_visitor()
    return st.session_state["_visitor"]


def access() -> Access:
    """What this visitor may do (``cprune_server.visitor_access``: the server's data folders and downloads, owning
    what they launch): what the pages pass to every core call they make on the visitor's behalf. Read at each
    call, as the server's settings are."""
    return visitor_access(visitor())


CHART_FORMATS = ("png", "svg")


def chart_config(name: str) -> dict:
    """Plotly's config for a chart: its camera button saves ``name``.png or .svg (the format chosen in the
    sidebar), drawn by Plotly in the browser, with no request to any server."""
    return {"displaylogo": False, "toImageButtonOptions": {"format": st.session_state.get("chart_format", "png"),
                                                           "filename": name, "scale": 2}}
