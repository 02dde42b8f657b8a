// CPrune's graph canvas: one layer's neuron-similarity graph drawn with the Canvas 2D API.
//
// A Streamlit Components v2 module (no iframe), made of this folder's modules: payload.js (decoding),
// analysis.js (counts and centrality at a tau), view.js (drawing: edges.js the edges, nodes.js the nodes,
// legend.js the colours and legend), interaction.js (events) and this entry.
// Streamlit loads a component's JavaScript from a string, as one module with no URL of its own, so
// ui/graph_canvas.py joins the modules into one at import time.
//
// It is mounted twice per graph: once with the layer's payload as bytes (cprune_core/graph_view.py), which
// Streamlit sends again only when it changes, and once with the small state of each run (tau, selection,
// kept neurons, colouring, the server's numbers), which draws. The two meet in `layers` below, by the
// payload's key. Nothing here asks any host for anything.

import { layerOf, readHeader } from "./payload.js";
import { GraphView, PAYLOAD_ENTRY } from "./view.js";

const LAYERS_KEPT = 3;
const layers = new Map(); // payload key -> LayerAnalysis (or {failed: sentence}), the most recent last
const views = new Map(); // mounted element -> GraphView

export default function graphCanvas(component) {
  const { data, parentElement } = component;
  if (data instanceof Uint8Array || data instanceof ArrayBuffer) {
    receivePayload(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
    return undefined;
  }
  let view = views.get(parentElement);
  if (!view) {
    view = new GraphView(parentElement);
    views.set(parentElement, view);
  }
  view.update(data, component, layers.get(data.payload));
  return () => {
    view.destroy();
    views.delete(parentElement);
  };
}

// A payload, decoded once per key (a rerun sends the same bytes, or none); the views waiting for it draw.
function receivePayload(bytes) {
  const key = readHeader(bytes).key;
  if (!layers.has(key)) {
    layers.set(key, layerOf(bytes.slice())); // an aligned copy: typed arrays need it
    performance.mark(PAYLOAD_ENTRY, { detail: { key, bytes: bytes.length } });
    while (layers.size > LAYERS_KEPT) layers.delete(layers.keys().next().value);
  }
  const layer = layers.get(key);
  for (const view of views.values()) {
    if (view.state.payload === key && view.layer !== layer) view.update(view.state, view.component, layer);
  }
}
