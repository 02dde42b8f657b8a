"""The graph canvas: one layer's similarity graph drawn in the browser (ui/components/graph_canvas/).

A Streamlit Components v2 component (no iframe), its JavaScript and CSS files of this repository. Each
graph is mounted twice: ``send_payload`` mounts it with the layer's payload as bytes (positions, norms, the
edges strongest first: cprune_core.graph_view), which is the same object at every run of a layer and
layout, so Streamlit sends it to a browser once and the browser does not decode it again; ``graph_canvas``
mounts it with this run's small state (tau, selection, kept neurons, colouring, the server's numbers where
the browser does not hold every edge), and draws. The browser filters edges by tau as its slider moves and
reports back only the released tau and a clicked (or searched) neuron, each checked here before it is used:
a message the canvas could not have sent (a forged one) is ignored.

The JavaScript is ES modules (payload, analysis, interaction, edges, nodes, legend, view, index), tested on their own
by ``node --test tests/js/``. Streamlit imports a component's JavaScript from a blob: URL made of one string,
where a relative ``import`` cannot resolve, and serves files only for an installed package that declares an
``asset_dir``; so ``bundle`` joins the modules into one module here, as the app starts.
"""
from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from cprune_core.errors import ConfigError
from cprune_core.graph_view import GraphPayload

from .cache import LayerGraph

__all__ = ["Colouring", "MODULES", "bundle", "graph_canvas", "released_tau", "chosen_neuron", "send_payload"]

ASSETS = Path(__file__).parent / "components" / "graph_canvas"
MODULES = ("analysis.js", "payload.js", "interaction.js", "edges.js", "nodes.js", "legend.js", "view.js", "index.js")
_IMPORT = re.compile(r'^import \{ ([\w, ]+) \} from "\./([\w-]+\.js)";\n', re.M)
_EXPORT = re.compile(r"^export (?=(?:async )?(?:function|class|const|let) )", re.M)
_DECLARED = re.compile(r"^(?:export )?(?:async )?(?:function\*?|class|const|let|var) (\w+)", re.M)
_MODULE_SYNTAX = re.compile(r"^\s*(?:import|export)\b.*$", re.M)
_ENTRY_EXPORT = "export default function "
_COMMENT_LINE = re.compile(r"^[ \t]*//[^\n]*\n", re.M)  # sent with each mount: whole-line comments are left out


def bundle(folder: Path, modules: Sequence[str]) -> str:
    """The ES modules ``modules`` of ``folder`` joined into one module, for a component's ``js``.

    Each module may import only named bindings of a module listed before it, one statement a line
    (``import { a, b } from "./other.js";``); those lines are dropped and each ``export`` keyword of a
    declaration is removed, so that every module's top-level names share one scope: they must be unique.
    The last module is the entry: it keeps its ``export default``. Whole-line ``//`` comments are left out
    (Streamlit sends the JavaScript with each mount), so no line of a template literal may begin with ``//``.

    Raises
    ------
    ConfigError for an import of a module not listed before the importer, of a name that module does not
    export, any other import or export statement, or a top-level name declared in two modules.

    Example
    -------
    ``bundle(ASSETS, MODULES)`` is the canvas's JavaScript.
    """
    exported: dict[str, set[str]] = {}
    declared: dict[str, str] = {}
    parts = []
    for position, name in enumerate(modules):
        text = (folder / name).read_text()
        for names, source in _IMPORT.findall(text):
            missing = {n.strip() for n in names.split(",")} - exported.get(source, set())
            if source not in exported or missing:
                raise ConfigError(f"{name} imports {sorted(missing) or source} from {source}, which is not a module "
                                  "listed before it that exports it.")
        body = _IMPORT.sub("", text)
        exported[name] = set(re.findall(r"^export (?:async )?(?:function|class|const|let) (\w+)", body, re.M))
        entry = position == len(modules) - 1
        body = body if entry else _EXPORT.sub("", body)
        for line in _MODULE_SYNTAX.findall(body.replace(_ENTRY_EXPORT, "", 1) if entry else body):
            raise ConfigError(f"{name} has an import or export that cannot be joined: {line.strip()!r}.")
        for top_level in _DECLARED.findall(body):
            if top_level in declared:
                raise ConfigError(f"{top_level} is declared in both {declared[top_level]} and {name}.")
            declared[top_level] = name
        parts.append(f"// ---- {name}\n{_COMMENT_LINE.sub('', body)}")
    return "\n".join(parts)


_COMPONENT = st.components.v2.component("cprune_graph_canvas", css=(ASSETS / "style.css").read_text(),
                                        js=bundle(ASSETS, MODULES))


@dataclass(frozen=True)
class Colouring:
    """Communities to colour by (Louvain labels and the tau they were found at); None colours by centrality."""

    labels: np.ndarray
    tau: float


def released_tau(value: object, taus: np.ndarray) -> float | None:
    """The tau step a canvas released, or None for a value it could not have sent: not a finite real number, or
    not one of ``taus`` (the slider's steps)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not abs(value) <= 1:  # NaN, inf, 10**400
        return None
    step = int(np.argmin(np.abs(taus - value)))
    return float(taus[step]) if abs(float(taus[step]) - value) <= 1e-9 else None


def chosen_neuron(value: object, n: int) -> int | None:
    """The neuron a canvas chose, or None for a value it could not have sent: not an integer in 0..n-1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n:
        return None
    return value


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
    community; ``labels`` writes each neuron's index (small graphs). ``key`` names this canvas on the page.
    A tau that is not one of the payload's steps, or a neuron that is not one of its, never reaches
    ``on_tau`` or ``on_neuron``."""
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
        value = released_tau(st.session_state[key].tau, payload.taus)
        if value is not None and slider and on_tau is not None:
            on_tau(value)

    def clicked() -> None:
        value = chosen_neuron(st.session_state[key].neuron, len(payload.norms))
        if value is not None and on_neuron is not None:
            on_neuron(value)

    _COMPONENT(key=key, data=state, on_tau_change=released, on_neuron_change=clicked)


def send_payload(payload: GraphPayload, *, key: str) -> None:
    """Send ``payload`` to the browser for the canvas ``key`` (drawn by ``graph_canvas``, before or after it).
    The same bytes at every run: Streamlit sends them once and the browser decodes them once. A page whose graph
    is in a fragment sends it outside the fragment, so that the fragment's reruns do not touch it at all."""
    _COMPONENT(key=f"{key}-payload", data=payload.encoded)
