"""Graph explorer: one layer's neuron-similarity graph, coloured by eigenvector centrality."""
import numpy as np
import pandas as pd
import streamlit as st

from cprune_core import keep_count
from cprune_core.graph import GRAPH_FORMATS, MAX_FORCE_LAYOUT_NODES
from ui import cache, charts, frame, pyvis_view, sidebar, state

frame.start("Graph explorer",
            "Each neuron of a layer is a node; two neurons are linked when the cosine similarity of their "
            "weight vectors exceeds τ. Central neurons are similar to many others, which are similar to many others.")

key, bundle = sidebar.require_model()
sidebar.require_layer(bundle)
VIEWS = ["Plotly", "pyvis physics"]


def _use_tau(value: float) -> None:
    state.set_value("tau", value)


def _no_edge_note(layer: str, tau: float) -> None:
    """Why a graph has no edge, and a tau that draws a readable one."""
    suggested = cache.suggested_tau(key, layer)
    length = bundle.info(layer).vector_length
    why = (f"These weights are random: cosine similarities of random {length:,}-dimensional vectors are close to 0 "
           f"(about ±{1 / np.sqrt(length):.3f})" if not bundle.loaded.pretrained
           else "No two neurons of this layer are that similar")
    st.info(f"No edge at τ = {tau:.2f}. {why}, so no pair clears τ. At τ = {suggested:.2f} each neuron has about "
            "ten edges.")
    st.button(f"Use τ = {suggested:.2f}", key="use_suggested_tau", on_click=_use_tau, args=(suggested,))


@st.fragment
def graph_section() -> None:
    """The graph and all that τ changes: moving τ reruns this part only, on cached layouts and scores."""
    controls = st.columns([3, 2, 2])
    layer = state.bound(controls[0].selectbox, "layer", "Layer", options=bundle.layer_names,
                        format_func=lambda name: f"{name} · {bundle.info(name).kind} · "
                                                 f"{bundle.info(name).neurons} neurons")
    tau = state.tau_slider(controls[1], help="Edges keep only pairs with cosine similarity > τ.")
    neurons = bundle.info(layer).neurons
    controls[2].segmented_control("Layout", list(cache.LAYOUTS), format_func=cache.LAYOUTS.get, key="graph_layout",
                                  default="force", disabled=neurons > MAX_FORCE_LAYOUT_NODES,
                                  help="force-directed: the graph itself, linked neurons pulled together, "
                                       f"laid out at τ = {cache.suggested_tau(key, layer):.2f} (about ten edges "
                                       "per neuron); weight PCA: the weight vectors' principal components. Both "
                                       "stay put as τ moves: only the edges change. Force-directed is offered up "
                                       f"to {MAX_FORCE_LAYOUT_NODES:,} neurons.")
    with st.spinner("Building the similarity graph …"):
        view = cache.layer_graph(key, layer, tau)
        xy = cache.positions(key, layer)
    summary = view.summary
    stats = st.columns(5)
    stats[0].metric("Neurons", f"{summary.nodes:,}")
    stats[1].metric("Edges", f"{summary.edges:,}")
    stats[2].metric("Density", f"{summary.density:.4f}")
    stats[3].metric("Components", f"{summary.components:,}", help=f"largest: {summary.largest_component:,} neurons")
    stats[4].metric("Isolated neurons", f"{summary.isolated:,}")
    if summary.edges == 0 and summary.nodes > 1:
        _no_edge_note(layer, tau)
    if view.centrality_note:
        st.warning(f"Centrality is approximate: {view.centrality_note}. Lower τ to connect the graph.")

    if ("neuron" not in st.session_state or st.session_state.get("neuron_of") != (key, layer)
            or st.session_state["neuron"] >= summary.nodes):
        st.session_state["neuron"] = int(np.argmax(view.centrality))  # start at the most central neuron
        st.session_state["neuron_of"] = (key, layer)
    neuron = st.session_state["neuron"]
    similarities = cache.similarity(key, layer)[neuron].numpy()
    neighbours = [int(j) for j in np.argsort(-similarities, kind="stable") if j != neuron][:8]

    options = st.columns([2, 3])
    kind = options[0].segmented_control("View", VIEWS, default=VIEWS[0], key="graph_view",
                                        help=f"The pyvis physics view is offered for layers up to "
                                             f"{pyvis_view.MAX_NODES} neurons.")
    show_kept = options[1].toggle("Show what pruning keeps", key="show_kept",
                                  help=f"Kept neurons filled, pruned ones hollow: criterion {st.session_state['criterion']}, "
                                       f"keep ratio {st.session_state['keep']:.2f} (set them on the Prune page).")
    if kind == VIEWS[1] and summary.nodes > pyvis_view.MAX_NODES:
        st.warning(f"{layer} has {summary.nodes:,} neurons; the physics view handles up to {pyvis_view.MAX_NODES}. "
                   "Showing the Plotly view: pick a smaller layer for physics.")
        kind = VIEWS[0]
    kept = None
    if show_kept:
        scores = cache.neuron_scores(key, layer, st.session_state["criterion"], tau)
        kept = cache.kept_mask(scores, keep_count(summary.nodes, st.session_state["keep"]))

    if kind == VIEWS[0]:
        shown = st.slider("Edges drawn (strongest first)", 0, cache.EDGE_LIMIT, 500, step=100, key="edges_drawn")
        drawn = min(shown, len(view.edge_rows))
        st.caption(f"Showing the {drawn:,} strongest of {summary.edges:,} edges at τ = {tau:.2f}. "
                   "Click a neuron to inspect it.")
        event = st.plotly_chart(charts.graph_figure(view, xy, drawn, kept=kept, selected=neuron, neighbours=neighbours),
                                key=f"graph_{layer}", on_select="rerun", selection_mode="points",
                                config={**state.chart_config(f"graph-{layer}"), "scrollZoom": True})
        points = event.selection.points if event else []
        picked = next((int(p["customdata"][0]) for p in points if p.get("customdata")), None)
        if picked is not None and picked != st.session_state.get("picked"):
            st.session_state["picked"] = picked
            st.session_state["neuron"] = picked
            st.rerun(scope="fragment")
    else:
        st.caption(f"Physics view: the {min(len(view.edge_rows), pyvis_view.MAX_EDGES):,} strongest of "
                   f"{summary.edges:,} edges. Drag nodes; hover for details.")
        st.iframe(pyvis_view.network_html(view, layer), height=580)

    downloads = st.columns(len(GRAPH_FORMATS) + 1)
    downloads[0].caption("The graph for Gephi or Cytoscape (centrality, degree, L2 norm and positions per neuron):")
    for column, file_format in zip(downloads[1:], GRAPH_FORMATS):
        column.download_button(f"{file_format.upper()}", lambda f=file_format: cache.graph_file(key, layer, tau, f),
                               file_name=f"{layer}-tau{tau:.2f}.{file_format}", mime="application/xml",
                               key=f"download_{file_format}", on_click="ignore")

    st.subheader("Neuron")
    pick, details = st.columns([1, 2])
    with pick:
        st.number_input("Neuron index", min_value=0, max_value=summary.nodes - 1, key="neuron",
                        help="Or click a node in the graph.")
        st.markdown(f"**centrality** {view.centrality[neuron]:.4f} · **degree** {int(view.degree[neuron])} · "
                    f"**L2 norm** {view.norms[neuron]:.3f}")
        st.dataframe(pd.DataFrame({"neighbour": neighbours, "cosine similarity": similarities[neighbours],
                                   "edge at τ": similarities[neighbours] > tau,
                                   "centrality": view.centrality[neighbours]}),
                     hide_index=True, width="stretch")
    with details:
        weights = bundle.loaded.model.get_submodule(layer).weight.detach()[neuron].numpy()
        what = "filter" if weights.ndim == 3 else "weights"
        st.plotly_chart(charts.filter_image(weights, f"{what} of neuron {neuron} ({' × '.join(map(str, weights.shape))})"),
                        key="filter_image", config=state.chart_config(f"{layer}-neuron-{neuron}"))
    state.write_url()  # a fragment rerun does not run app.py, which otherwise keeps the link up to date


def _select_layer_from_table() -> None:
    rows = st.session_state["layer_table"].selection.rows
    if rows:
        state.set_value("layer", bundle.layers[rows[0]].name)


graph_section()
with st.expander("Layers of the model: select a row to explore it"):
    table = pd.DataFrame([info.as_row() for info in bundle.layers]).rename(columns={"vector_length": "weight-vector length"})
    st.dataframe(table, key="layer_table", on_select=_select_layer_from_table, selection_mode="single-row",
                 hide_index=True, width="stretch", height=300)
