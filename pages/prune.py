"""Prune: rank neurons by a criterion, see the cost live, then build the real pruned model."""
import numpy as np
import pandas as pd
import streamlit as st

from cprune_core import CRITERIA, keep_count, keep_plan
from cprune_core.kept_sets import kept_mask, kept_set
from ui import cache, charts, frame, sidebar, state
from ui.graph_canvas import graph_canvas, send_payload

frame.start("Prune",
            "Keep the neurons a criterion ranks highest. The paper's criterion is eigenvector centrality in the "
            "neuron-similarity graph; the others are for comparison. Costs below update live, with no forward pass.")

key, bundle = sidebar.require_backbone()
sidebar.require_layer(bundle, prunable_only=True)

controls = st.columns([2, 2, 2, 3])
layer = state.bound(controls[0].selectbox, "layer", "Layer", options=bundle.prunable)
info = bundle.info(layer)
criterion = state.bound(controls[1].selectbox, "criterion", "Criterion", options=list(CRITERIA))
scope = controls[2].radio("Prune", ["this layer", "all prunable layers"], key="prune_scope")
graph_based = CRITERIA[criterion].uses_graph
tau = state.tau_slider(controls[3], disabled=not graph_based,
                       help="Used by the graph criteria (eigenvector, inverse-eigenvector, degree, pagerank).")

scores = cache.neuron_scores(key, layer, criterion, tau)
rule_options = ["keep ratio", "score cut-off"] if scope == "this layer" else ["keep ratio"]
rule = st.radio("Rule", rule_options, horizontal=True, key="prune_rule",
                help="A score cut-off applies to one layer; all layers share one keep ratio.")
if rule == "score cut-off":
    low, high = float(scores.min()), float(scores.max())
    cutoff = st.slider(f"Keep neurons with {criterion} score ≥", low, max(high, low + 1e-9),
                       float(np.quantile(scores, 0.5)), step=(high - low) / 200 or 1e-9, format="%.5f", key=f"cutoff_{layer}_{criterion}_{tau}")
    kept_here = max(1, int((scores >= cutoff).sum()))
    keep = {layer: kept_here}
else:
    keep_ratio = state.keep_slider(help="Fraction of neurons kept in each pruned layer.")
    kept_here = keep_count(info.neurons, keep_ratio)
    keep = keep_ratio
layers = [layer] if scope == "this layer" else None

kept = kept_set(scores, kept_here)
cutoff_score = float(np.min(scores[list(kept)]))
plan = keep_plan(bundle.graph, layers, keep)
before, after = bundle.cost.base, bundle.cost.estimate(plan)
layer_before = bundle.cost.layer_estimate(layer, info.neurons)
layer_after = bundle.cost.layer_estimate(layer, kept_here)


def removed(base: int, now: int) -> str:
    return f"-{100 * (base - now) / base:.1f} %" if base else "0 %"


st.subheader("Cost, live")
st.caption(f"Layer figures are for {layer}; model figures for the whole network, against the unpruned model.")
cells = st.columns(6)
cells[0].metric("Layer neurons kept", f"{kept_here:,} / {info.neurons:,}", removed(info.neurons, kept_here),
                delta_color="off")
cells[1].metric("Layer params", f"{layer_after.params:,}", removed(layer_before.params, layer_after.params),
                delta_color="off")
cells[2].metric("Layer MACs", f"{layer_after.macs / 1e6:,.2f} M", removed(layer_before.macs, layer_after.macs),
                delta_color="off")
cells[3].metric("Model params", f"{after.params / 1e6:,.3f} M", removed(before.params, after.params), delta_color="off",
                help=f"before: {before.params:,}")
cells[4].metric("Model MACs", f"{after.macs / 1e6:,.1f} M", removed(before.macs, after.macs), delta_color="off",
                help=f"before: {before.macs:,}")
cells[5].metric("Layers pruned", f"{len(plan)}")
if info.note:
    st.caption(f"{layer}: {info.note}. Coupled layers are pruned together; the real pruning ranks them by the "
               "criterion averaged over the coupled layers, so its kept set can differ from the one shown here.")

hist, graph = st.columns([2, 3])
with hist:
    st.plotly_chart(charts.score_histogram(scores, cutoff_score, criterion), key="score_histogram",
                    config=state.chart_config("score_histogram"))
    st.markdown(f"**Overlap of the kept set with other criteria** ({kept_here} kept of {info.neurons})")
    st.dataframe(cache.kept_overlap(key, layer, criterion, tau, kept_here), hide_index=True, width="stretch",
                 column_config={"Jaccard with kept set": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0,
                                                                                        format="%.2f")})
with graph:
    view = cache.layer_graph(key, layer, tau)
    layout_name = cache.layout_for(key, layer, st.session_state.get("graph_layout") or "force")
    st.caption(f"Pruned neurons hollow; the graph at τ = {tau:.2f} ({view.summary.edges:,} edges), coloured by "
               "eigenvector centrality, laid out as on the Graph explorer.")
    payload = cache.graph_payload(key, layer, layout_name)
    send_payload(payload, key="prune_graph")
    graph_canvas(payload, key="prune_graph", tau=tau, view=view, slider=False, kept=kept_mask(scores, kept_here),
                 height=470, file_name=f"{layer}-pruned")

st.markdown("**Redundancy and coverage of each criterion's kept set**")
coupled = bundle.graph.group_for(layer).layers
st.dataframe(cache.kept_geometry(key, layer, tau, kept_here), hide_index=True, width="stretch", key="kept_geometry",
             column_config={name: st.column_config.NumberColumn(format="%+.3f" if "−" in name else "%.3f")
                            for name in ("redundancy", "redundancy − random", "coverage", "coverage − random")})
st.caption("Redundancy: the mean cosine similarity between two kept neurons (high: the kept neurons resemble one "
           "another). Coverage: the mean, over removed neurons, of the similarity to their closest kept neuron "
           "(high: each removed neuron has a close kept twin)." +
           (f" A residual stream: its channels ranked as pruning ranks them (scores averaged over its "
            f"{len(coupled)} coupled layers), the figures averaged over them." if len(coupled) > 1 else ""))

st.subheader("Build the pruned model")
st.caption("Removes the neurons for real (smaller weight tensors) with torch-pruning, then counts parameters and "
           "MACs with a forward pass and measures latency on this machine.")
settings = (key, criterion, tau, keep, layers)
if st.button("Build pruned model", type="primary", key="build"):
    st.session_state["built"] = settings
if st.session_state.get("built") == settings:
    params, macs, latency = cache.pruned_cost(*settings)
    base_params, base_macs, base_latency = cache.measured_cost(key)
    st.dataframe(pd.DataFrame({
        "": ["params", "MACs", "latency (ms, batch 1)"],
        "original": [f"{base_params:,}", f"{base_macs:,}", f"{base_latency:.1f}"],
        "pruned": [f"{params:,}", f"{macs:,}", f"{latency:.1f}"],
        "change": [removed(base_params, params), removed(base_macs, macs),
                   f"{100 * (latency - base_latency) / base_latency:+.1f} %"],
    }), hide_index=True)
    if (params, macs) != (after.params, after.macs):
        st.warning("The live estimate and the built model disagree; please report this.")
elif "built" in st.session_state:
    st.caption("Settings changed since the last build: build again to measure them.")
