"""A self-contained pyvis (vis-network) physics view of a layer graph.

pyvis 0.3.2 inlines vis-network's JS and CSS with cdn_resources="in_line", but its template
still links Bootstrap from a CDN; those tags are removed, and ``external_urls`` lets the page
and the tests check that no script or stylesheet is fetched from outside.
"""
from __future__ import annotations

import html
import re

import numpy as np
from plotly.colors import sample_colorscale
from pyvis.network import Network

from cprune_core.layer_view import EDGE_LIMIT, LayerGraph

MAX_NODES = 500
MAX_EDGES = EDGE_LIMIT  # a LayerGraph's strongest edges
STABILIZATION_ITERATIONS = 200  # physics steps before the first draw (pyvis's default of 1,000 is slow)
_BOOTSTRAP_TAGS = re.compile(r"<link[^>]*bootstrap[^>]*/?>|<script[^>]*bootstrap[^>]*>\s*</script>", re.S)
_EXTERNAL_SRC = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def external_urls(page: str) -> list[str]:
    """Tags in ``page`` that would load a resource from another host."""
    return _EXTERNAL_SRC.findall(page)


def network_html(view: LayerGraph, layer: str, height_px: int = 560) -> str:
    """HTML of the physics view: nodes coloured by centrality, sized by degree."""
    n = len(view.centrality)
    span = float(np.ptp(view.centrality)) or 1.0
    colours = sample_colorscale("Viridis", ((view.centrality - view.centrality.min()) / span).tolist())
    top = max(int(view.degree.max(initial=0)), 1)
    net = Network(height=f"{height_px}px", width="100%", cdn_resources="in_line", bgcolor="#ffffff")
    for i in range(n):
        net.add_node(i, label=str(i), color=colours[i], size=float(6 + 18 * np.sqrt(view.degree[i] / top)),
                     title=(f"{html.escape(layer)} neuron {i}\ncentrality {view.centrality[i]:.4f}\n"
                            f"degree {int(view.degree[i])}\nL2 norm {view.norms[i]:.3f}"))
    for a, b, w in zip(view.edge_rows, view.edge_cols, view.edge_weights):
        net.add_edge(int(a), int(b), value=float(w), color="rgba(90,110,130,0.35)")
    net.barnes_hut(gravity=-3000, spring_length=90)
    net.options.physics.stabilization.iterations = STABILIZATION_ITERATIONS
    page = _BOOTSTRAP_TAGS.sub("", net.generate_html())
    if external_urls(page):
        raise RuntimeError(f"pyvis HTML still loads outside resources: {external_urls(page)[:3]}")
    return page
