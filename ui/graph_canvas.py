"""The graph canvas: one layer's similarity graph drawn in the browser (ui/components/graph_canvas/).

A Streamlit Components v2 component (no iframe), its JavaScript and CSS files of this repository. Each
graph is mounted twice: ``send_payload`` mounts it with the layer's payload as bytes (positions, norms, the
edges strongest first: cprune_core.graph_view), which is the same object at every run of a layer and
layout, so Streamlit sends it to a browser once and the browser does not decode it again; ``graph_canvas``
mounts it with this run's small state (tau, selection, kept neurons, colouring, the server's numbers where
the browser does not hold every edge), and draws. The browser filters edges by tau as its slider moves and reports back only the
released tau and a clicked (or searched) neuron.
"""
from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from cprune_core.graph_view import GraphPayload

from .cache import LayerGraph

__all__ = ["Colouring", "graph_canvas", "send_payload"]

_ASSETS = Path(__file__).parent / "components" / "graph_canvas"
_COMPONENT = st.components.v2.component("cprune_graph_canvas", css=(_ASSETS / "style.css").read_text(),
                                        js=(_ASSETS / "index.js").read_text())


@dataclass(frozen=True)
class Colouring:
    """Communities to colour by (Louvain labels and the tau they were found at); None colours by centrality."""

    labels: np.ndarray
    tau: float


def _base64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()


def _server_numbers(view: LayerGraph, tau: float) -> dict:
    """The core's numbers at ``tau``, for a tau where the browser does not hold every edge."""
    summary = view.summary
    return {"tau": tau, "components": summary.components, "largest": summary.largest_component,
            "isolated": summary.isolated, "converged": not view.centrality_note,
            "centrality": _base64(view.centrality.astype(np.float32)), "degree": _base64(view.degree.astype(np.uint32))}


def graph_canvas(payload: GraphPayload, *, key: str, tau: float, view: LayerGraph, slider: bool = True,
                 kept: np.ndarray | None = None, selected: int | None = None, communities: Colouring | None = None,
                 labels: bool = False, height: int = 560, file_name: str = "graph",
                 on_tau: Callable[[float], None] | None = None, on_neuron: Callable[[int], None] | None = None) -> None:
    """Draw ``payload``'s graph at ``tau``.

    ``view`` is the server's graph at ``tau``: its numbers are sent only where the payload does not hold every
    edge above ``tau``. ``slider`` shows the canvas's own tau slider (its released value goes to ``on_tau``);
    without it the graph stays at ``tau``. ``kept`` (a boolean per neuron) draws pruned neurons hollow;
    ``selected`` rings a neuron (a click or search sends one to ``on_neuron``); ``communities`` colours by
    community; ``labels`` writes each neuron's index (small graphs). ``key`` names this canvas on the page."""
    state = {
        "payload": payload.key, "tau": tau, "slider": slider, "height": height, "labels": labels,
        "selected": selected, "fileName": file_name, "reportsNeuron": on_neuron is not None,
        "kept": _base64(kept.astype(np.uint8)) if kept is not None else None,
        "colouring": "community" if communities is not None else "centrality",
        "communities": _base64(communities.labels.astype(np.uint16)) if communities is not None else None,
        "communityTau": communities.tau if communities is not None else None,
        "server": None if payload.holds_every_edge(tau) else _server_numbers(view, tau),
    }

    def released() -> None:
        value = st.session_state[key].tau
        if value is not None and on_tau is not None:
            on_tau(round(float(value), 2))

    def clicked() -> None:
        value = st.session_state[key].neuron
        if value is not None and on_neuron is not None:
            on_neuron(int(value))

    _COMPONENT(key=key, data=state, on_tau_change=released, on_neuron_change=clicked)


def send_payload(payload: GraphPayload, *, key: str) -> None:
    """Send ``payload`` to the browser for the canvas ``key`` (drawn by ``graph_canvas``, before or after it).
    The same bytes at every run: Streamlit sends them once and the browser decodes them once. A page whose graph
    is in a fragment sends it outside the fragment, so that the fragment's reruns do not touch it at all."""
    _COMPONENT(key=f"{key}-payload", data=payload.encoded)
