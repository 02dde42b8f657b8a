"""One graph canvas (ui/graph_canvas.py) of a layer larger than the app's examples: the page that bench/bench_app.py's
large case and tests/test_graph_canvas.py's slow test open.

The layer is bench/large_layer.py's, read from the .npz file named by CPRUNE_CANVAS_LAYER (written by
``python bench/large_layer.py FILE.npz``): its weight vectors and every edge above tau = 0, found cluster by
cluster. The server's part is what the app does for a layer of more than 4,096 neurons (weight-PCA layout),
with the payload made from the edge list (``payload_from_edges``): no n x n matrix anywhere.

Run: CPRUNE_CANVAS_LAYER=FILE.npz streamlit run bench/canvas_app.py  (open ?tau=0.1 for another start)
"""
from __future__ import annotations

import os

import numpy as np
import streamlit as st
import torch

from cprune_core.criteria import RANKING_MAX_ITER
from cprune_core.graph import layout_2d
from cprune_core.graph_view import GraphPayload, payload_from_edges
from cprune_core.sparse_graph import EdgeList
from ui.graph_canvas import graph_canvas, send_payload

TAUS = [round(0.01 * k, 2) for k in range(100)]  # the app's tau steps


@st.cache_resource
def layer_payload(path: str) -> GraphPayload:
    saved = np.load(path)
    vectors = torch.from_numpy(saved["vectors"])
    edges = EdgeList(len(vectors), saved["rows"], saved["cols"], saved["weights"])
    return payload_from_edges(edges, layout_2d(vectors), vectors.norm(dim=1).numpy(), TAUS, max_iter=RANKING_MAX_ITER)


def _use_tau(value: float) -> None:
    st.session_state.tau = value
    st.query_params["tau"] = f"{value:g}"


st.set_page_config(page_title="A large layer's graph canvas", layout="wide")
payload = layer_payload(os.environ["CPRUNE_CANVAS_LAYER"])
if payload.complete_from != TAUS[0]:
    st.error("This page draws a layer whose every edge the browser holds; this one has more than the cap.")
    st.stop()
tau = st.session_state.setdefault("tau", float(st.query_params.get("tau", 0.5)))
st.session_state.setdefault("neuron", 0)
send_payload(payload, key="large")
# every edge held: the server's numbers at a tau (``view``) are never needed
graph_canvas(payload, key="large", tau=tau, view=None, selected=st.session_state.neuron, on_tau=_use_tau,
             on_neuron=lambda neuron: st.session_state.update(neuron=neuron))
st.write(f"{len(payload.norms):,} neurons, {len(payload.weights):,} edges held; released τ = {tau:.2f}, "
         f"neuron {st.session_state.neuron}")
