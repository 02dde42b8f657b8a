"""Graph explorer: one layer's neuron-similarity graph, coloured by eigenvector centrality."""
import numpy as np
import pandas as pd
import streamlit as st

from cprune_core import ConfigError, CPruneError, keep_count
from cprune_core.graph import GRAPH_FORMATS, MAX_FORCE_LAYOUT_NODES
from cprune_core.graph_view import EDGE_CAP
from cprune_core.kept_sets import kept_mask
from cprune_core.layer_report import MAX_GRAPH_NEURONS
from cprune_core.layer_view import LAYOUTS
from cprune_core.spectral import alpha_sentence
from ui import cache, charts, frame, pyvis_view, sidebar, state
from ui.glossary import terms_here
from ui.graph_canvas import Colouring, graph_canvas, send_payload
from ui.text import plain

frame.start("Graph explorer",
            "Each neuron of a layer is a node; two neurons are linked when the cosine similarity of their "
            "weight vectors exceeds τ. Central neurons are similar to many others, which are similar to many others.")

key, bundle = sidebar.require_model()
sidebar.require_layer(bundle)
terms_here("layer, neuron", "cosine similarity", "τ (tau)", "eigenvector centrality", "degree (criterion)", "density",
           "components", "Louvain communities", "alpha (power-law exponent)")
LAYER = state.layer_key()  # a backbone's layer, or a weights file's (never in the URL)
VIEWS = ["canvas", "pyvis physics"]
COLOURINGS = ["centrality", "community"]
CANVAS = "explorer_graph"


def _use_tau(value: float) -> None:
    state.set_value("tau", value)


def _pick(neuron: int) -> None:
    st.session_state["neuron"] = neuron


def _no_edge_note(layer: str, tau: float) -> None:
    """Why a graph has no edge, and a tau that draws a readable one."""
    suggested = cache.suggested_tau(key, layer)
    length = bundle.info(layer).vector_length
    why = (f"These weights are random: cosine similarities of random {length:,}-dimensional vectors are close to 0 "
           f"(about ±{1 / np.sqrt(length):.3f})" if bundle.untrained
           else "No two neurons of this layer are that similar")
    st.info(f"No edge at τ = {tau:.2f}. {why}, so no pair clears τ. At τ = {suggested:.2f} each neuron has about "
            "ten edges.")
    st.button(f"Use τ = {suggested:.2f}", key="use_suggested_tau", on_click=_use_tau, args=(suggested,))


def _statistics(summary) -> None:
    """The server's graph statistics (the canvas shows its own, live, as τ moves)."""
    stats = st.columns(5)
    stats[0].metric("Neurons", f"{summary.nodes:,}")
    stats[1].metric("Edges", f"{summary.edges:,}")
    stats[2].metric("Density", f"{summary.density:.4f}")
    stats[3].metric("Components", f"{summary.components:,}", help=f"largest: {summary.largest_component:,} neurons")
    stats[4].metric("Isolated neurons", f"{summary.isolated:,}")


def _colouring(layer: str) -> Colouring | None:
    """Louvain communities when the page asks to colour by them (None: colour by centrality)."""
    if st.session_state.get("graph_colour") != "community":
        return None
    try:
        with st.spinner("Finding communities (Louvain) …"):
            labels, tau = cache.communities(key, layer)
    except ConfigError as exc:  # too many edges at the layout's tau for networkx
        st.warning(f"Colouring by centrality: {plain(exc)}")
        return None
    return Colouring(labels, tau)


def _canvas(layer: str, layout_name: str, view, tau: float, kept, neuron: int) -> None:
    payload = cache.graph_payload(key, layer, layout_name)
    cap = ""
    if payload.complete_from != cache.TAU_STEPS[0]:
        where = f"below τ = {payload.complete_from:.2f}" if payload.complete_from is not None else "at every τ"
        cap = (f" The browser is sent the {len(payload.weights):,} strongest edges (the cap is {EDGE_CAP:,}): {where} "
               "the graph has more, and the canvas says so.")
    st.caption("Drag τ (or use the arrow keys): the browser redraws the edges above it and recomputes each neuron's "
               "centrality, its colour, as you move; the page below follows when you let go. Scroll to zoom, drag "
               f"to pan, click a neuron to inspect it.{cap}")
    graph_canvas(payload, key=CANVAS, tau=tau, view=view, kept=kept, selected=neuron,
                 communities=_colouring(layer), file_name=f"{layer}-{layout_name}", on_tau=_use_tau,
                 on_neuron=_pick)


def _scan_or_stop(layer: str) -> None:
    """Build the layer's graph (a block at a time, or from the disk cache), saying what it is doing meanwhile; a
    layer beyond the server's budget gets one sentence and the page stops there."""
    try:
        cache.with_progress(cache.layer_scan, key, layer)
    except CPruneError as exc:  # over the graph budget, NaN weights
        st.warning(plain(exc))
        _layer_table()
        st.stop()


def _controls() -> tuple[str, str, str]:
    """Layer, layout, colouring and view: (layer, layout drawn, view)."""
    # Two rows: the layer's name and the layout's choices whole, then the colouring and the view, on a laptop too.
    top, bottom = st.columns([3, 2]), st.columns([2, 2, 1])
    controls = [top[0], top[1], bottom[0], bottom[1]]
    layer = state.bound(controls[0].selectbox, LAYER, "Layer", options=bundle.layer_names, format_func=_layer_label)
    neurons = bundle.info(layer).neurons
    if neurons > MAX_GRAPH_NEURONS:
        st.info(f"{plain(layer)} has {neurons:,} neurons: graphs are drawn for layers of up to "
                f"{MAX_GRAPH_NEURONS:,} neurons (the canvas's limit). Choose another layer.")
        _layer_table()
        st.stop()
    _scan_or_stop(layer)
    layout_name = controls[1].segmented_control(
        "Layout", list(LAYOUTS), format_func=LAYOUTS.get, key="graph_layout", default="force",
        disabled=neurons > MAX_FORCE_LAYOUT_NODES,
        help="force-directed: the graph itself, linked neurons pulled together, laid out at "
             f"τ = {cache.suggested_tau(key, layer):.2f} (about ten edges per neuron); weight PCA: the weight "
             "vectors' principal components. Both stay put as τ moves: only the edges change. Force-directed is "
             f"offered up to {MAX_FORCE_LAYOUT_NODES:,} neurons.")
    controls[2].segmented_control("Colour by", COLOURINGS, key="graph_colour", default=COLOURINGS[0],
                                  help="centrality: eigenvector centrality at the τ shown; community: Louvain "
                                       "communities (networkx, seeded) of the graph at the layout's τ.")
    kind = controls[3].segmented_control("View", VIEWS, default=VIEWS[0], key="graph_view",
                                         help=f"The pyvis physics view is offered for layers up to "
                                              f"{pyvis_view.MAX_NODES} neurons.")
    if kind == VIEWS[1] and neurons > pyvis_view.MAX_NODES:
        st.warning(f"{plain(layer)} has {neurons:,} neurons; the physics view handles up to {pyvis_view.MAX_NODES}. "
                   "Showing the canvas: pick a smaller layer for physics.")
        kind = VIEWS[0]
    return layer, cache.layout_for(key, layer, layout_name or "force"), kind or VIEWS[0]


@st.fragment
def graph_section(layer: str, layout_name: str, kind: str) -> None:
    """The graph and all that τ changes: a released τ or a click reruns this part only, on cached data (and
    without the layer's payload, sent once above it)."""
    if kind == VIEWS[1]:
        state.tau_slider(help="Edges keep only pairs with cosine similarity > τ.")
    tau = st.session_state["tau"]
    show_kept = st.toggle("Show what pruning keeps", key="show_kept",
                          help=f"Kept neurons filled, pruned ones hollow: criterion {st.session_state['criterion']}, "
                               f"keep ratio {st.session_state['keep']:.2f} (set them on the Prune page).")
    try:
        view = cache.with_progress(cache.layer_graph, key, layer, tau)
    except ConfigError as exc:  # more edges at this tau than the server builds a graph with
        st.warning(plain(exc))
        return
    summary = view.summary
    if ("neuron" not in st.session_state or st.session_state.get("neuron_of") != (key, layer)
            or st.session_state["neuron"] >= summary.nodes):
        st.session_state["neuron"] = int(np.argmax(view.centrality))  # start at the most central neuron
        st.session_state["neuron_of"] = (key, layer)
    neuron = st.session_state["neuron"]
    kept = None
    if show_kept:
        scores = cache.neuron_scores(key, layer, st.session_state["criterion"], tau)
        kept = kept_mask(scores, keep_count(summary.nodes, st.session_state["keep"]))
    if kind == VIEWS[0]:
        _canvas(layer, layout_name, view, tau, kept, neuron)
    else:
        _statistics(summary)
        st.caption(f"Physics view: the {min(len(view.edge_rows), pyvis_view.MAX_EDGES):,} strongest of "
                   f"{summary.edges:,} edges. Drag nodes; hover for details.")
        st.iframe(pyvis_view.network_html(view, layer), height=580)
    if summary.edges == 0 and summary.nodes > 1:
        _no_edge_note(layer, tau)
    if view.centrality_note:
        st.warning(f"Centrality is approximate: {view.centrality_note}. Lower τ to connect the graph.")
    _downloads(layer, tau)
    _neuron_panel(layer, view, tau, neuron)
    state.write_url()  # a fragment rerun does not run app.py, which otherwise keeps the link up to date


def _downloads(layer: str, tau: float) -> None:
    downloads = st.columns(len(GRAPH_FORMATS) + 1)
    downloads[0].caption("The graph for Gephi or Cytoscape (centrality, degree, L2 norm and positions per neuron):")
    for column, file_format in zip(downloads[1:], GRAPH_FORMATS):
        column.download_button(f"{file_format.upper()}", lambda f=file_format: cache.graph_file(key, layer, tau, f),
                               file_name=f"{layer}-tau{tau:.2f}.{file_format}", mime="application/xml",
                               key=f"download_{file_format}", on_click="ignore")


def _neuron_panel(layer: str, view, tau: float, neuron: int) -> None:
    """The selected neuron: its numbers at τ, its nearest neighbours and its filter or weights."""
    similarities = cache.neuron_similarities(key, layer, neuron)
    neighbours = [int(j) for j in np.argsort(-similarities, kind="stable") if j != neuron][:8]
    st.subheader("Neuron")
    pick, details = st.columns([3, 2])  # the neighbour table's four columns whole at 1366 px
    with pick:
        st.number_input("Neuron index", min_value=0, max_value=view.summary.nodes - 1, key="neuron",
                        help="Or click a neuron in the graph, or find it by its index there.")
        st.markdown(f"**centrality** {view.centrality[neuron]:.4f} · **degree** {int(view.degree[neuron])} · "
                    f"**L2 norm** {view.norms[neuron]:.3f}")
        st.dataframe(pd.DataFrame({"neighbour": neighbours, "cosine similarity": similarities[neighbours],
                                   "edge at τ": similarities[neighbours] > tau,
                                   "centrality": view.centrality[neighbours]}),
                     hide_index=True, width="stretch",
                     column_config={"cosine similarity": st.column_config.NumberColumn(format="%.3f"),
                                    "centrality": st.column_config.NumberColumn(format="%.4f")})
    with details:
        weights = cache.layer_weight(key, layer)[neuron].numpy()
        what = "filter" if weights.ndim == 3 else "weights"
        picture, limit = charts.filter_picture(weights)
        st.markdown(f"**{what} of neuron {neuron}** ({' × '.join(map(str, weights.shape))})")
        st.image(picture, caption=f"blue −{limit:.3g} · white 0 · red +{limit:.3g}"
                                  + (" (input channels tiled, each its kernel)" if weights[0].size > 1 else ""))


def _layer_label(name: str) -> str:
    info = bundle.info(name)
    return f"{name} · {info.kind} · {info.neurons} neurons" + (" (too many to draw)" if info.neurons > MAX_GRAPH_NEURONS
                                                                else "")


def _select_layer_from_table() -> None:
    rows = st.session_state["layer_table"].selection.rows
    if rows:
        state.set_value(LAYER, bundle.layers[rows[0]].name)


def _layer_table() -> None:
    with st.expander("Layers of the model: select a row to explore it"):
        table = pd.DataFrame([info.as_row() for info in bundle.layers]).rename(
            columns={"vector_length": "weight-vector length"})
        st.dataframe(table, key="layer_table", on_select=_select_layer_from_table, selection_mode="single-row",
                     hide_index=True, width="stretch", height=300)


layer, layout_name, kind = _controls()
# The layer's spectral tail (data-free: docs/science.md, the Layer-wise page) heads the graph but is filled last: on a
# large layer its two spectra take longer than the graph itself (20 s of VGG16 classifier.0's first view).
spectral_tail = st.empty()
spectral_tail.caption("Spectral tail: computed once the graph is drawn.")  # holds the line: nothing below moves
if kind == VIEWS[0]:
    cache.prefetch(cache.layer_graph, key, layer, st.session_state["tau"])  # beside the layout, on the other core
    send_payload(cache.with_progress(cache.graph_payload, key, layer, layout_name), key=CANVAS)
graph_section(layer, layout_name, kind)
_layer_table()
spectral_tail.caption(plain(alpha_sentence(cache.layer_spectrum(key, layer))))
