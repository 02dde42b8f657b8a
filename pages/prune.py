"""Prune: rank neurons by a criterion, see the cost live, then build the real pruned model."""
import numpy as np
import pandas as pd
import streamlit as st

from cprune_core import CRITERIA, keep_count, keep_plan
from cprune_core.kept_sets import kept_mask, kept_set
from ui import cache, charts, frame, sidebar, state
from ui.glossary import terms_here
from ui.graph_canvas import graph_canvas, send_payload

frame.start("Prune",
            "Keep the neurons a criterion ranks highest. The paper's criterion is eigenvector centrality in the "
            "neuron-similarity graph; the others are for comparison. Costs below update live, with no forward pass.")

key, bundle = sidebar.require_backbone()
sidebar.require_layer(bundle, prunable_only=True)
terms_here("keep ratio", "τ (tau)", "eigenvector centrality", "params", "MACs", "Jaccard index", "redundancy",
           "coverage", "latency")

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


def removed(base: int, now: int) -> dict:
    """A metric's delta for what pruning removed: "-12.5 %" with a down arrow, or "0 %" with none."""
    if not base or now == base:
        return dict(delta="0 %", delta_color="off", delta_arrow="off")
    return dict(delta=f"{100 * (now - base) / base:+.1f} %", delta_color="off",
                delta_arrow="down" if now < base else "up")


size = bundle.loaded.spec.input_size
st.subheader("Cost, live")
st.caption(f"Layer figures are for {layer}; model figures for the whole network, against the unpruned model. MACs: "
           f"multiply-accumulates for one image at {size} px.")
layer_cells, model_cells = st.columns(3), st.columns(3)  # two rows: each figure whole on a laptop's screen
layer_cells[0].metric("Layer neurons kept", f"{kept_here:,} / {info.neurons:,}", **removed(info.neurons, kept_here))
layer_cells[1].metric("Layer params", f"{layer_after.params:,}", **removed(layer_before.params, layer_after.params))
layer_cells[2].metric("Layer MACs", f"{layer_after.macs / 1e6:,.2f} M",
                      **removed(layer_before.macs, layer_after.macs), help=f"before: {layer_before.macs:,}")
model_cells[0].metric("Model params", f"{after.params / 1e6:,.3f} M", **removed(before.params, after.params),
                      help=f"before: {before.params:,}")
model_cells[1].metric("Model MACs", f"{after.macs / 1e6:,.1f} M", **removed(before.macs, after.macs),
                      help=f"before: {before.macs:,}")
model_cells[2].metric("Layers pruned", f"{len(plan)}")
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
           "MACs with a forward pass, and times the unpruned and the pruned model on this machine in turns.")
settings = (key, criterion, tau, keep, layers)
if st.button("Build pruned model", type="primary", key="build"):
    st.session_state["built"] = settings
if st.session_state.get("built") == settings:
    params, macs, base_latency, latency = cache.pruned_cost(*settings)
    base_params, base_macs = cache.measured_cost(key)
    change = (f"{100 * (latency.median_ms - base_latency.median_ms) / base_latency.median_ms:+.0f} %"
              if latency.differs_from(base_latency) else "within the spread")
    st.dataframe(pd.DataFrame({
        "": ["params", f"MACs (per image at {size} px)", "latency (ms, one image, median)",
             "latency's middle half (ms)"],
        "original": [f"{base_params:,}", f"{base_macs:,}", f"{base_latency.median_ms:,.1f}",
                     f"{base_latency.low_ms:,.1f}–{base_latency.high_ms:,.1f}"],
        "pruned": [f"{params:,}", f"{macs:,}", f"{latency.median_ms:,.1f}", f"{latency.low_ms:,.1f}–{latency.high_ms:,.1f}"],
        "change": [removed(base_params, params)["delta"], removed(base_macs, macs)["delta"], change, ""],
    }), hide_index=True)
    st.caption(f"Latency: {latency.repeats} passes of each model, taking turns; the middle half is the 25th to 75th "
               "percentile of the passes. A change is given only where the two middle halves do not overlap: the "
               "machine's other work moves a timing more than a small pruning does.")
    if (params, macs) != (after.params, after.macs):
        st.warning("The live estimate and the built model disagree; please report this.")
elif "built" in st.session_state:
    st.caption("Settings changed since the last build: build again to measure them.")
