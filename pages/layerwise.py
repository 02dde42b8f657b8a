"""Layer-wise centrality: how concentrated centrality is in every prunable layer (every layer of a weights file)."""
import streamlit as st

from cprune_core.layer_report import MAX_GRAPH_NEURONS
from ui import cache, charts, frame, sidebar, state
from ui.text import plain

frame.start("Layer-wise centrality",
            "Eigenvector centrality of every prunable layer (every layer of a weights file) at the same τ. A "
            "concentrated layer (high Gini, a large top-10 % share) has a few hub neurons; a flat one has many "
            "interchangeable neurons.")

key, bundle = sidebar.require_model()
tau = state.tau_slider()
with st.spinner(f"Building the graphs of {len(bundle.graph_layers)} layers …"):
    summary, values = cache.layerwise(key, tau)
too_big = [name for name in bundle.graph_layers if name not in bundle.drawable]
if too_big:
    st.caption(f"Not shown: {plain(', '.join(too_big))}, over {MAX_GRAPH_NEURONS:,} neurons each.")

st.plotly_chart(charts.layerwise_boxes(values), key="layerwise_boxes", config=state.chart_config("layerwise_boxes"))
st.plotly_chart(charts.layerwise_concentration(summary), key="layerwise_concentration",
                config=state.chart_config("layerwise_concentration"))


st.markdown("**Select a layer to open it in the graph explorer.**")
event = st.dataframe(summary, key="layerwise_table", on_select="rerun", selection_mode="single-row",
                     hide_index=True, width="stretch",
                     column_config={"density": st.column_config.NumberColumn(format="%.4f"),
                                    "gini": st.column_config.NumberColumn(format="%.3f"),
                                    "top 10% share": st.column_config.NumberColumn(format="%.3f")})
if event.selection.rows:
    state.set_value(state.layer_key(), summary["layer"].iloc[event.selection.rows[0]])
    st.switch_page("pages/explorer.py")
