"""How it works: the method step by step on a real, small layer of the loaded model."""
import numpy as np
import pandas as pd
import streamlit as st

from cprune_core import keep_count
from cprune_core.kept_sets import kept_mask
from ui import cache, charts, frame, sidebar, state
from ui.glossary import terms_here
from ui.graph_canvas import graph_canvas, send_payload
from ui.text import plain

MAX_NEURONS = 64  # small enough to see every neuron, weight and pair
SHOWN_NEURONS = 8  # the fewest neurons of a layer opened by default
SEARCHED_LAYERS = 24  # small layers whose graphs are built to find one that shows the method


def _columns_note(data, inputs: int) -> None:
    """Say so when W and Ŵ are drawn as column means: a layer wider than the heatmaps' columns
    (layer_view.WALKTHROUGH_COLUMNS), whose cost the walkthrough bounds by its shape."""
    if data.inputs_per_column > 1:
        st.caption(f"W has {inputs:,} inputs, more than a heatmap shows: each of its {data.weights.shape[1]} columns "
                   f"drawn is the mean of about {data.inputs_per_column:,.0f} adjacent inputs (W and Ŵ alike). S and "
                   "every step after it use every input.")

frame.start("How it works",
            "Eigenvector-centrality pruning in four steps, on a real layer of the loaded model, computed by the same "
            "functions that prune. Move τ and the keep ratio and watch every step change.")

key, bundle = sidebar.require_model()
terms_here("cosine similarity", "τ (tau)", "eigenvector centrality", "power iteration", "keep ratio", "params",
           "MACs")
is_backbone = isinstance(key, cache.ModelKey)  # a weights file has no architecture: no cost, no pruning
small = [name for name in bundle.graph_layers if 1 < bundle.info(name).neurons <= MAX_NEURONS]
if not small:
    st.info(f"{plain(bundle.title)} has no {'prunable ' if is_backbone else ''}layer of at most {MAX_NEURONS} neurons "
            "to show step by step.")
    st.stop()
order = {name: position for position, name in enumerate(bundle.layer_names)}
shared = st.session_state.get(state.layer_key(), "")
if shared == bundle.default_layer:  # the app's default layer, not a choice: start at the first small one
    shared = ""


def _shows_the_method(name: str) -> bool:
    """Enough neurons, and an edge at the shared tau, for every step to show something (a weights file's first
    small layer may be a 2-neuron one with no edge)."""
    return (bundle.info(name).neurons >= SHOWN_NEURONS
            and cache.layer_graph(key, name, st.session_state["tau"]).summary.edges > 0)


# A chosen layer when it is small enough; else the small layer nearest to it (to the network's start by default)
# that shows the method, among the nearest few; else the nearest small layer with the most neurons.
by_distance = sorted(small, key=lambda name: abs(order[name] - order.get(shared, 0)))
nearest = next((name for name in by_distance[:SEARCHED_LAYERS] if _shows_the_method(name)),
               max(by_distance, key=lambda name: bundle.info(name).neurons))
if st.session_state.get("hiw_layer") not in small:
    st.session_state["hiw_layer"] = nearest
layer = st.selectbox("Layer", small, key="hiw_layer",
                     format_func=lambda name: f"{name} · {bundle.info(name).neurons} neurons × "
                                              f"{bundle.info(name).vector_length} inputs")
if shared and shared not in small and shared in order and layer == nearest:
    st.caption(f"{plain(shared)} has {bundle.info(shared).neurons:,} neurons, too many to show step by step; this is "
               f"{plain(nearest)}, the nearest layer with at most {MAX_NEURONS} (and, where one is near, at least "
               f"{SHOWN_NEURONS} and an edge at τ).")
info = bundle.info(layer)
n, d = info.neurons, info.vector_length

st.header("1 · Weights and their similarity")
st.markdown(f"Each of the **{n}** neurons of {plain(layer)} has a weight vector of **{d}** inputs (a row of W; for a "
            "convolution, its filter flattened). Dividing each row by its length keeps only its direction; the "
            "similarity of two neurons is then the cosine of the angle between them.")
st.latex(r"\hat W_i = \frac{W_i}{\lVert W_i \rVert_2}, \qquad S = \hat W \hat W^{\top}, \qquad "
         r"S_{ij} = \cos\angle(W_i, W_j) \in [-1, 1]")
tau = state.tau_slider(help="Two neurons are linked when their cosine similarity is above τ.")
data = cache.walkthrough(key, layer, tau)
row = st.columns(3)
row[0].plotly_chart(charts.matrix_heatmap(data.weights, f"W ({n} × {d})", "input", "neuron"), key="hiw_w",
                    config=state.chart_config(f"{layer}-W"))
row[1].plotly_chart(charts.matrix_heatmap(data.normalised, "Ŵ (rows of length 1)", "input", "neuron"),
                    key="hiw_w_hat", config=state.chart_config(f"{layer}-W-hat"))
row[2].plotly_chart(charts.matrix_heatmap(data.similarity, f"S = Ŵ Ŵᵀ ({n} × {n})", "neuron", "neuron"),
                    key="hiw_s", config=state.chart_config(f"{layer}-S"))
_columns_note(data, d)

st.header("2 · The graph: keep the similarities above τ")
st.latex(r"A_{ij} = \begin{cases} S_{ij} & \text{if } S_{ij} > \tau \text{ and } i \neq j \\ 0 & \text{otherwise}"
         r"\end{cases}")
edges = int(np.count_nonzero(np.triu(data.adjacency, 1)))
st.markdown(f"At τ = {tau:.2f}, **{edges}** of the {n * (n - 1) // 2} pairs are linked.")
row = st.columns([2, 3])
row[0].plotly_chart(charts.matrix_heatmap(data.adjacency, "A", "neuron", "neuron", symmetric_range=False),
                    key="hiw_a", config=state.chart_config(f"{layer}-A"))
with row[1]:
    st.caption("Colour: eigenvector centrality (step 3); size: degree; width: similarity. The neurons stay put as τ "
               "moves. Click one to ring it; scroll to zoom.")
    payload = cache.graph_payload(key, layer, "force")
    send_payload(payload, key="hiw_graph")
    graph_canvas(payload, key="hiw_graph", tau=tau, view=cache.layer_graph(key, layer, tau), slider=False, labels=True,
                 height=460, file_name=f"{layer}-graph")

st.header("3 · Eigenvector centrality by power iteration")
st.markdown("A neuron is central when it is similar to neurons that are themselves central: the centrality x is "
            "the leading eigenvector of A. Power iteration finds it by multiplying a vector by (I + A) again and "
            "again (adding I keeps it from oscillating) and rescaling, from the uniform vector, until it stops "
            "changing.")
st.latex(r"x_0 = \tfrac{1}{n}\mathbf{1}, \quad x_k = \frac{(I + A)\,x_{k-1}}{\lVert (I + A)\,x_{k-1} \rVert_2}, "
         r"\quad \lambda_k = \frac{x_{k-1}^{\top} A\, x_{k-1}}{x_{k-1}^{\top} x_{k-1}}, "
         r"\quad \text{stop when } \lVert x_k - x_{k-1} \rVert_1 < n \cdot 10^{-6}")
steps = len(data.changes)
if steps == 1:
    st.caption("The graph has no edge, so the uniform vector is already the answer: it converges at step 1.")
play = st.toggle("Play", key="hiw_play", disabled=steps == 1, help="Step through the iterations.")


@st.fragment(run_every=0.5 if play else None)
def stepper() -> None:
    if st.session_state.get("hiw_step", 1) > steps:  # left over from another layer or tau
        st.session_state["hiw_step"] = steps
    if play:  # advance before the slider is drawn; at the last step, stop playing
        if st.session_state.get("hiw_step", 1) >= steps:
            st.session_state["hiw_play"] = False
            st.rerun()
        st.session_state["hiw_step"] = st.session_state.get("hiw_step", 1) + 1
    k = st.slider("Step k", 1, steps, key="hiw_step") if steps > 1 else 1
    cells = st.columns(4)
    cells[0].metric("Step k", f"{k} of {steps}")
    cells[1].metric("λ estimate", f"{data.eigenvalues[k - 1]:.6f}")
    cells[2].metric("L1 change", f"{data.changes[k - 1]:.3e}")
    cells[3].metric("Converged", "yes" if data.converged and k == steps else "not yet" if k < steps else "no")
    row = st.columns(2)
    row[0].plotly_chart(charts.iterate_bars(data.iterates[k - 1], k), key="hiw_x", config=state.chart_config("x_k"))
    row[1].plotly_chart(charts.convergence(data.changes, data.tolerance, k), key="hiw_change",
                        config=state.chart_config("convergence"))


stepper()
difference = float(np.abs(data.iterates[-1] - data.centrality).max())
st.markdown(f"After **{steps}** steps, x is the eigenvector centrality that pruning uses: the largest difference "
            f"from the core's `eigenvector_centrality` is **{difference:.1e}**."
            + ("" if data.converged else " (It had not converged within the step budget; pruning uses this last "
                                         "iterate too.)"))

st.header("4 · Rank and keep the most central")
keep = state.keep_slider(help="The fraction of neurons kept.")
kept_count = keep_count(n, keep)
kept = kept_mask(data.centrality, kept_count)
st.latex(rf"\text{{keep the }} \operatorname{{round}}(n \cdot r) = \operatorname{{round}}({n} \cdot {keep:g}) = "
         rf"{kept_count} \text{{ neurons of highest }} x_i")


def shrunk(before: int, after: int) -> dict:
    """A metric's delta for a count pruning lowers: "from N", with a down arrow only when it went down."""
    return dict(delta=f"from {before:,}", delta_color="off", delta_arrow="down" if after < before else "off")


cells = st.columns(4)
cells[0].metric("Weight matrix", f"{kept_count} × {d}", delta=f"from {n} × {d}", delta_color="off",
                delta_arrow="down" if kept_count < n else "off")
if is_backbone:
    before, after = bundle.cost.layer_estimate(layer, n), bundle.cost.layer_estimate(layer, kept_count)
    cells[1].metric("Layer params", f"{after.params:,}", **shrunk(before.params, after.params))
    cells[2].metric("Layer MACs", f"{after.macs:,}", **shrunk(before.macs, after.macs),
                    help=f"Multiply-accumulate operations of this layer for one image at "
                         f"{bundle.loaded.spec.input_size} px.")
else:  # a tensor alone: its weights are all there is to count
    cells[1].metric("Weights", f"{kept_count * d:,}", **shrunk(n * d, kept_count * d))
    cells[2].metric("Layer MACs", "—", help="A weights file holds no network around its tensors: no input size, "
                                           "so no MACs.")
cells[3].metric("Neurons kept", f"{kept_count} of {n}")
row = st.columns([3, 2])
row[0].plotly_chart(charts.matrix_heatmap(data.weights, "W: pruned rows in grey", "input", "neuron",
                                          dimmed_rows=~kept), key="hiw_w_kept", config=state.chart_config("W-kept"))
ranking = pd.DataFrame({"neuron": np.arange(n), "centrality": data.centrality, "kept": kept})
row[1].dataframe(ranking.sort_values("centrality", ascending=False), hide_index=True,
                 height=320, column_config={"centrality": st.column_config.NumberColumn(format="%.6f")})
if not is_backbone:
    st.caption("Pruning would remove the grey rows, and with them the matching inputs of the next layer. "
               + sidebar.EXPLORE_ONLY)
    sidebar.offer_backbones(key, bundle, "hiw")
    st.stop()
st.caption("Pruning removes the grey rows for real (smaller weight tensors), and with them the matching inputs of "
           "the next layer; the Prune page shows the whole model's cost and builds it.")


def _open(page: str) -> None:
    for name, value in (("layer", layer), ("criterion", "eigenvector"), ("tau", tau), ("keep", keep)):
        state.set_value(name, value)
    st.session_state["hiw_open"] = page


links = st.columns(2)
links[0].button("Open Prune with these settings", key="hiw_open_prune", on_click=_open, args=("pages/prune.py",))
links[1].button("Open Fine-tune with these settings", key="hiw_open_finetune", on_click=_open,
                args=("pages/finetune.py",))
if "hiw_open" in st.session_state:
    st.switch_page(st.session_state.pop("hiw_open"))
