"""Layer-wise centrality: every prunable layer at once (every layer of a weights file). Does centrality predict which
neurons matter there (the atlas, for a registry backbone), and how concentrated is it?"""
import streamlit as st

from cprune_core.layer_report import MAX_GRAPH_NEURONS
from cprune_core.spectral import alpha_sentence
from ui import atlas_view, cache, charts, frame, launches, sidebar, state
from ui.glossary import terms_here
from ui.cache import ModelKey
from ui.text import plain

frame.start("Layer-wise centrality",
            "Every prunable layer at once (every layer of a weights file): does centrality tell which neurons matter "
            "there (the atlas), and how is it distributed?")

def atlas_section(key: ModelKey, bundle: cache.ModelBundle) -> None:
    """The atlas of the loaded backbone: its recorded runs as a heatmap whose cells open a layer, and a form that
    measures one."""
    st.caption("In each layer, with a new head trained once on the frozen backbone and nothing retrained: neurons removed "
               "one at a time (does a criterion's score predict the rise in validation loss?) and half or a quarter of "
               "the layer kept by each criterion (is accuracy better than keeping random neurons?).")
    runs = atlas_view.visible_runs(key, state.access())
    if runs:
        chosen = st.selectbox("Recorded atlas", range(len(runs)), format_func=lambda i: atlas_view.run_label(runs[i]),
                              key=f"atlas_run_{len(runs)}_{runs[0].path.stem}",  # a new run: the newest chosen
                              help="The command line's runs (shared) and your own, newest first.")
        result = atlas_view.read_run(runs[chosen])
        cell = atlas_view.show_run(result) if result is not None else None
        if result is None:
            st.warning("This record can no longer be read; choose another, or measure the atlas again.")
        if cell is not None:
            layer, criterion = cell
            route = atlas_view.cell_route(result, layer, criterion)
            st.markdown(f"**{plain(layer)}**, {plain(criterion)}: open the layer")
            links = st.columns(2)
            links[0].button("On “Does centrality predict importance?”", key="atlas_open_importance", type="primary",
                            on_click=atlas_view.open_cell, args=(route, "importance"))
            links[1].button("In the graph explorer", key="atlas_open_explorer", on_click=atlas_view.open_cell,
                            args=(route, "explorer"))
    else:
        st.info(f"No atlas of {bundle.loaded.spec.title} with these weights is recorded yet. The command line's "
                "`python -m cprune_core experiment atlas` records one for everyone; or measure one here.")

    with st.expander("Measure the atlas", expanded=not runs):
        atlas_view.launch_form(key, bundle)
    launches.live_launches("atlas", atlas_view.KIND, draw=atlas_view.draw_launches)
    if page := atlas_view.opened_page():
        st.switch_page(page)


def spectral_section(key: cache.SourceKey, summary) -> None:
    """The layer-wise table's spectral columns across depth, and one layer's eigenvalue distribution with its
    power-law fit beside the same weights shuffled."""
    st.caption("From the weights alone, no data (WeightWatcher's figures): the eigenvalues of WᵀW of each layer (a "
               "convolution's kernel positions pooled), the power-law exponent alpha of their upper tail (smaller: a "
               "heavier tail), the same for the layer's entries shuffled at random (what training did not put "
               "there), and the stable rank ‖W‖²_F / ‖W‖²₂. AlphaPruning prunes layers with a larger alpha more; "
               "docs/science.md tests whether any of these predicts what a layer can lose.")
    st.plotly_chart(charts.spectral_depth(summary), key="spectral_depth", config=state.chart_config("spectral_depth"))
    layers = summary["layer"].tolist()
    shown = st.session_state.get(state.layer_key())
    layer = st.selectbox("Eigenvalue distribution of layer", layers, index=layers.index(shown) if shown in layers else 0,
                         key="spectral_layer")
    figures = cache.layer_spectrum(key, layer)
    st.caption(plain(alpha_sentence(figures)))
    fits = {name: (fit.alpha, fit.xmin, fit.tail) for name, fit in (("trained", figures.fit),
                                                                     ("shuffled", figures.shuffled_fit)) if fit.fitted}
    st.plotly_chart(charts.esd_loglog({"trained": figures.spectrum.nonzero_eigenvalues,
                                       "shuffled": figures.shuffled.nonzero_eigenvalues}, fits),
                    key="spectral_esd", config=state.chart_config("spectral_esd"))


key, bundle = sidebar.require_model()
terms_here("ablation", "Spearman's ρ", "random (criterion)", "Holm correction", "redundancy", "eigenvector centrality",
           "Gini coefficient", "density", "components", "alpha (power-law exponent)", "stable rank")

st.header("Does centrality predict importance, layer by layer?")
if isinstance(key, ModelKey):
    atlas_section(key, bundle)
else:  # the atlas trains a head and prunes: a registry backbone's work
    st.info("The atlas trains a new head on the frozen backbone and removes neurons, which needs a registry "
            "backbone: choose one in the sidebar (a weights file's layers are explored below).")

st.header("How centrality is distributed")
st.caption("Eigenvector centrality of every prunable layer at the same τ. A concentrated layer (high Gini, a large "
           "top-10 % share) has a few hub neurons; a flat one has many interchangeable neurons.")
tau = state.tau_slider()
with st.spinner(f"Building the graphs of {len(bundle.graph_layers)} layers …"):
    summary, values = cache.layerwise(key, tau)
too_big = summary.loc[summary["edges"].isna(), "layer"].tolist()
if too_big:
    st.caption(f"No graph for {plain(', '.join(too_big))}: over {MAX_GRAPH_NEURONS:,} neurons each (the table's "
               "note says so).")

st.plotly_chart(charts.layerwise_boxes(values), key="layerwise_boxes", config=state.chart_config("layerwise_boxes"))
st.plotly_chart(charts.layerwise_concentration(summary), key="layerwise_concentration",
                config=state.chart_config("layerwise_concentration"))


st.markdown("**Select a layer to open it in the graph explorer.**")
# The columns `cprune graph --layer all` writes (layer_report.LAYERWISE_COLUMNS), labelled for people; counts as
# whole numbers (a layer with no graph makes its column's values floats).
COUNTS = {"neurons": "neurons", "vector_length": "weight-vector length", "edges": "edges", "components": "components",
          "isolated": "isolated", "largest_component": "largest component"}
SPECTRAL_FORMATS = {"alpha_tail": st.column_config.NumberColumn("alpha tail", format="%d"),
                    "eigenvalues": st.column_config.NumberColumn(format="%d"),
                    "alpha_vs_exponential_p": st.column_config.NumberColumn(format="%.2g"),
                    **{column: st.column_config.NumberColumn(format="%.3g")
                       for column in ("alpha", "alpha_xmin", "alpha_ks", "alpha_vs_exponential", "alpha_mid",
                                      "alpha_shuffled", "stable_rank", "spectral_norm")}}
event = st.dataframe(summary, key="layerwise_table", on_select="rerun", selection_mode="single-row",
                     hide_index=True, width="stretch",
                     column_config={**{column: st.column_config.NumberColumn(label, format="%d")
                                       for column, label in COUNTS.items()},
                                    "density": st.column_config.NumberColumn(format="%.4f"),
                                    "gini": st.column_config.NumberColumn(format="%.3f"),
                                    "top10_share": st.column_config.NumberColumn("top 10% share", format="%.3f"),
                                    **SPECTRAL_FORMATS})
if event.selection.rows:
    state.set_value(state.layer_key(), summary["layer"].iloc[event.selection.rows[0]])
    st.switch_page("pages/explorer.py")

st.header("How much can each layer lose? Its weights' spectrum")
spectral_section(key, summary)
