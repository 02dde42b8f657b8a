"""Graph explorer: one layer's neuron-similarity graph, coloured by eigenvector centrality."""
import numpy as np
import pandas as pd
import streamlit as st

from ui import cache, charts, frame, pyvis_view, sidebar, state

frame.start("Graph explorer",
            "Each neuron of a layer is a node; two neurons are linked when the cosine similarity of their "
            "weight vectors exceeds τ. Central neurons are similar to many others, which are similar to many others.")

key, bundle = sidebar.require_model()
layer = sidebar.require_layer(bundle)


def _select_layer_from_table() -> None:
    rows = st.session_state["layer_table"].selection.rows
    if rows:
        state.set_value("layer", bundle.layers[rows[0]].name)


with st.expander("Layers of the model: select a row to explore it", expanded=True):
    table = pd.DataFrame([info.as_row() for info in bundle.layers]).rename(columns={"vector_length": "weight-vector length"})
    st.dataframe(table, key="layer_table", on_select=_select_layer_from_table, selection_mode="single-row",
                 hide_index=True, width="stretch", height=210)

left, right = st.columns([3, 2])
layer = state.bound(left.selectbox, "layer", "Layer", options=bundle.layer_names,
                    format_func=lambda name: f"{name} · {bundle.info(name).kind} · {bundle.info(name).neurons} neurons")
tau = state.tau_slider(right, help="Edges keep only pairs with cosine similarity > τ. "
                                  "Moving τ only refilters edges: the layout stays put.")

with st.spinner("Building the similarity graph …"):
    view = cache.layer_graph(key, layer, tau)
    xy = cache.layout(key, layer)
summary = view.summary
stats = st.columns(5)
stats[0].metric("Neurons", f"{summary.nodes:,}")
stats[1].metric("Edges", f"{summary.edges:,}")
stats[2].metric("Density", f"{summary.density:.4f}")
stats[3].metric("Components", f"{summary.components:,}", help=f"largest: {summary.largest_component:,} neurons")
stats[4].metric("Isolated neurons", f"{summary.isolated:,}")
if view.centrality_note:
    st.warning(f"Centrality is approximate: {view.centrality_note}. Lower τ to connect the graph.")

views = ["Plotly (WebGL)", "pyvis physics"]
small = summary.nodes <= pyvis_view.MAX_NODES
kind = st.segmented_control("View", views, default=views[0], key="graph_view",
                            help=f"The pyvis physics view is offered for layers up to {pyvis_view.MAX_NODES} neurons.")
if kind == views[1] and not small:
    st.warning(f"{layer} has {summary.nodes:,} neurons; the physics view handles up to {pyvis_view.MAX_NODES}. "
               "Showing the WebGL view: pick a smaller layer for physics.")
    kind = views[0]

if ("neuron" not in st.session_state or st.session_state.get("neuron_of") != (key, layer)
        or st.session_state["neuron"] >= summary.nodes):
    st.session_state["neuron"] = int(np.argmax(view.centrality))  # start at the most central neuron
    st.session_state["neuron_of"] = (key, layer)
neuron = st.session_state["neuron"]
order = np.argsort(-cache.similarity(key, layer)[neuron].numpy(), kind="stable")
neighbours = [int(j) for j in order if j != neuron][:8]

if kind == views[0]:
    shown = st.slider("Edges drawn (strongest first)", 0, cache.EDGE_LIMIT, 500, step=100,
                      key="edges_drawn")
    drawn = min(shown, len(view.edge_rows))
    st.caption(f"Showing the {drawn:,} strongest of {summary.edges:,} edges at τ = {tau:.2f}. "
               "Click a neuron to inspect it.")
    event = st.plotly_chart(charts.graph_figure(view, xy, drawn, selected=neuron, neighbours=neighbours),
                            key=f"graph_{layer}", on_select="rerun", selection_mode="points",
                            config={"scrollZoom": True, "displaylogo": False})
    points = event.selection.points if event else []
    picked = next((int(p["customdata"][0]) for p in points if p.get("customdata")), None)
    if picked is not None and picked != st.session_state.get("picked"):
        st.session_state["picked"] = picked
        st.session_state["neuron"] = picked
        st.rerun()
else:
    st.caption(f"Physics view: the {min(len(view.edge_rows), pyvis_view.MAX_EDGES):,} strongest of "
               f"{summary.edges:,} edges. Drag nodes; hover for details.")
    st.iframe(pyvis_view.network_html(view, layer), height=580)

st.subheader("Neuron")
pick, details = st.columns([1, 2])
with pick:
    st.number_input("Neuron index", min_value=0, max_value=summary.nodes - 1, key="neuron",
                    help="Or click a node in the graph.")
    st.markdown(f"**centrality** {view.centrality[neuron]:.4f} · **degree** {int(view.degree[neuron])} · "
                f"**L2 norm** {view.norms[neuron]:.3f}")
    similarities = cache.similarity(key, layer)[neuron].numpy()
    st.dataframe(pd.DataFrame({"neighbour": neighbours, "cosine similarity": similarities[neighbours],
                               "edge at τ": similarities[neighbours] > tau,
                               "centrality": view.centrality[neighbours]}),
                 hide_index=True, width="stretch")
with details:
    weights = bundle.loaded.model.get_submodule(layer).weight.detach()[neuron].numpy()
    what = "filter" if weights.ndim == 3 else "weights"
    st.plotly_chart(charts.filter_image(weights, f"{what} of neuron {neuron} ({' × '.join(map(str, weights.shape))})"),
                    key="filter_image", config={"displaylogo": False})
