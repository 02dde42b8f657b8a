"""The app's caches of cprune_core's calls, keyed by what they depend on: caching here, computing in the core.

A model to look at is named by a key (hashable, so it can key caches): a ``ModelKey`` for a registry
backbone (its weights: pretrained, random init or an uploaded checkpoint), a ``FileKey`` for a weights
file (explore only: its layers have no architecture around them, so nothing is pruned, costed or
fine-tuned). Both give a bundle (``bundle``) with the same view of their layers; a ``ModelBundle`` adds
the pruning graph and cost model. Models, bundles, a layer's weights and its similarity matrix are
resources (one shared object per key); what the core derives from them (``cprune_core.layer_view``,
``layer_report``, ``kept_sets``, ``graph_view``) is data keyed by the key, layer and tau, so moving tau
recomputes only what depends on it.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st
import torch

from cprune_core import (CRITERIA, Backbone, CostModel, LayerInfo, cosine_similarity, exact_cost, load_backbone,
                         make_criterion, prune_model)
from cprune_core import graph, graph_cache, kept_sets, layer_view
from cprune_core.cost import Latency, compare_latency
from cprune_core.geometry import KeptSetCurves
from cprune_core.criteria import DEFAULT_TAU, RANKING_MAX_ITER
from cprune_core.graph_view import GraphPayload, louvain_labels, payload_from_edges
from cprune_core.layer_report import LAYERWISE_COLUMNS, MAX_GRAPH_NEURONS, layerwise_rows
from cprune_core.layer_view import TAU_STEPS, LayerGraph, LayerScan, Walkthrough
from cprune_core.sparse_graph import SparseGraph
from cprune_core.model_source import BackboneSource, FileSource
from cprune_core.registry import MAX_CHECKPOINT_BYTES
from cprune_core.spectral import LayerSpectrum, weight_spectrum
from cprune_core.weights import LOCAL_BUDGET, WeightsBudget
from cprune_server import downloads_allowed


__all__ = ["FILE_BUDGET", "ModelKey", "FileKey", "SourceKey", "ModelBundle", "FileBundle", "backbone", "model_bundle",
           "file_bundle", "bundle_of", "layer_weight", "layer_vectors", "similarity", "with_progress", "layer_scan",
           "graph_at", "layout", "force_layout", "layout_for", "positions", "TAU_STEPS", "graph_payload", "communities",
           "suggested_tau", "graph_file", "walkthrough", "layer_graph", "neuron_similarities", "prefetch",
           "neuron_scores", "kept_overlap", "kept_curves", "kept_geometry",
           "layerwise", "measured_cost", "pruned_cost", "layer_spectrum"]

FILE_BUDGET = WeightsBudget(max_file_bytes=MAX_CHECKPOINT_BYTES)  # a weights file: an upload's size at most


@dataclass(frozen=True)
class ModelKey:
    """A registry backbone and its weights."""

    backbone: str
    weights: str  # "pretrained", "random" or "checkpoint"
    checkpoint: str = ""  # path of the uploaded state dict when weights == "checkpoint"


@dataclass(frozen=True)
class FileKey:
    """A model to explore: a visitor's upload (named by its content), or a model in the server's model folders
    (``on_server``: a file or a folder, any size), never in a link."""

    path: str
    name: str  # the file's name, for people
    on_server: bool = False


SourceKey = ModelKey | FileKey


class _Layers:
    """What the pages read of any bundle's layers (``layers`` and ``graph_layers`` of a ModelSource)."""

    layers: list[LayerInfo]
    graph_layers: list[str]  # the layers a layer-wise table covers: a backbone's prunable ones, a file's every one

    @property
    def layer_names(self) -> list[str]:
        return [info.name for info in self.layers]


class ModelBundle(_Layers, BackboneSource):
    """A loaded backbone's layers with the objects the pruning pages need from it. The cost model is built on
    first use (a second of a first page that does not show costs, the explorer's)."""

    def __init__(self, loaded: Backbone):
        super().__init__(loaded)
        self._cost: CostModel | None = None
        self._cost_lock = threading.Lock()

    @property
    def loaded(self) -> Backbone:
        return self.backbone

    @property
    def cost(self) -> CostModel:
        with self._cost_lock:  # visitors share the bundle: one of them builds it
            if self._cost is None:
                self._cost = CostModel(self.loaded.model, self.graph, self.loaded.spec.input_size)
            return self._cost

    @property
    def prunable(self) -> list[str]:
        return self.graph_layers

    @property
    def default_layer(self) -> str:
        return self.loaded.spec.head_layer

    @property
    def untrained(self) -> bool:
        return not self.loaded.pretrained


class FileBundle(_Layers, FileSource):
    """A weights file's layers (explore only), as a ModelBundle's for the exploring pages."""

    untrained = False  # as far as anyone can tell

    @property
    def default_layer(self) -> str:
        """The first layer whose graph can be built (a file's first tensor may be a 50,257-row embedding)."""
        return next((info.name for info in self.layers if info.neurons <= MAX_GRAPH_NEURONS), self.layers[0].name)


@st.cache_resource(max_entries=3, show_spinner=False)
def backbone(key: ModelKey) -> Backbone:
    """The model alone: a layer's graph needs no more, so it can be made while model_bundle builds the rest."""
    return load_backbone(key.backbone, key.weights, key.checkpoint or None, download=downloads_allowed())


@st.cache_resource(max_entries=3, show_spinner=False)
def model_bundle(key: ModelKey) -> ModelBundle:
    return ModelBundle(backbone(key))


@st.cache_resource(max_entries=3, show_spinner=False)
def file_bundle(key: FileKey) -> FileBundle:
    """The model's layers. An upload's are each read once here: a file refused (WeightsFileError: not what its
    extension says, damaged, over FILE_BUDGET, no float layer; NonFiniteWeightsError: NaN or Inf in a layer) is
    refused whole, as it is uploaded, not when a visitor comes to the layer. A model of the server's folders
    (any size: a checkpoint's shards) is listed from its headers, each layer read when it is shown."""
    opened = FileBundle.open(key.path, LOCAL_BUDGET if key.on_server else FILE_BUDGET)
    if not key.on_server:
        for name in opened.layer_names:
            opened.weight(name)
    opened.title = f"{key.name} ({opened.weights.description})"  # the name as uploaded, not as stored
    return opened


def bundle_of(key: SourceKey) -> ModelBundle | FileBundle:
    return model_bundle(key) if isinstance(key, ModelKey) else file_bundle(key)


@st.cache_resource(max_entries=4, show_spinner=False)
def layer_weight(key: SourceKey, layer: str) -> torch.Tensor:
    """A layer's weights, float32, neurons first (read-only): a neuron's filter is ``layer_weight(...)[neuron]``.
    A file's layer is read from disk once."""
    return bundle_of(key).weight(layer)


def layer_vectors(key: SourceKey, layer: str) -> torch.Tensor:
    return layer_weight(key, layer).flatten(1)


@st.cache_resource(max_entries=4, show_spinner=False)
def similarity(key: ModelKey, layer: str) -> torch.Tensor:
    """Cosine similarity of a backbone layer's neurons (n x n, read-only: copy before changing): what the kept
    sets' group figures read (``group_similarity``). The graph pages never hold one: their graphs are built a
    block at a time (``layer_scan``)."""
    return cosine_similarity(layer_vectors(key, layer))


_progress: dict[tuple[SourceKey, str], str] = {}  # what the build of a layer's graph under way last reported


def _reporter(key: SourceKey, layer: str):
    """The core's ``progress(done, total, message)`` for a layer's build, kept for ``with_progress`` to show (no
    Streamlit call here: the build may run in a cached function or another thread)."""
    def report(done: int, total: int, message: str) -> None:
        _progress[(key, layer)] = message

    return report


def with_progress(cached, key: SourceKey, layer: str, *args):
    """``cached(key, layer, *args)`` (a cached function of this module) in a thread, while the page shows what the
    layer's build last reported under a spinner (reading, comparing, waiting for other graphs); its result, or its
    exception raised here."""
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["value"] = cached(key, layer, *args)
        except BaseException as error:  # noqa: BLE001  (raised again in the page's own thread)
            outcome["error"] = error

    _progress.pop((key, layer), None)  # an earlier build's last words
    thread = threading.Thread(target=work, name="cprune-graph", daemon=True)
    thread.start()
    thread.join(0.3)
    if thread.is_alive():
        slot = st.empty()
        while thread.is_alive():
            slot.caption(_progress.get((key, layer), "Preparing the graph …"))
            thread.join(0.3)
        slot.empty()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@st.cache_resource(max_entries=6, show_spinner=False)
def layer_scan(key: SourceKey, layer: str) -> LayerScan:
    """One blockwise pass over the layer at the slider's tau steps (``graph_cache.cached_scan``): its strongest edges
    and every step's edge count, the norms, the row-wise scores, the weight-PCA layout; in the memory budget of
    CPRUNE_GRAPH_MEMORY_MB, CPRUNE_GRAPHS_AT_ONCE at once server-wide, and read from the disk cache when this or an
    earlier server built it. ConfigError (one sentence) for a layer over the budget, before any value is read."""
    return graph_cache.cached_scan(bundle_of(key), layer, TAU_STEPS, progress=_reporter(key, layer))


@st.cache_resource(max_entries=8, show_spinner=False)
def graph_at(key: SourceKey, layer: str, tau: float) -> SparseGraph:
    """Every edge above ``tau`` (``layer_view.graph_above``: the scan's strongest edges where they hold them all,
    else a scan at tau; ConfigError, from the counts, for more edges than the budget holds)."""
    return layer_view.graph_above(layer_scan(key, layer), TAU_STEPS, bundle_of(key), layer, tau,
                                  progress=_reporter(key, layer))


def layout(key: SourceKey, layer: str) -> np.ndarray:
    """Node positions: depend on the weights only, so moving tau never moves a node."""
    return layer_scan(key, layer).positions


@st.cache_data(max_entries=32, show_spinner=False)
def force_layout(key: SourceKey, layer: str, tau: float) -> np.ndarray:
    """Force-directed positions of the thresholded graph: computed once per layer and tau, kept on disk."""
    return graph_cache.cached_force_layout(bundle_of(key), layer, tau, graph_at(key, layer, tau))


def layout_for(key: SourceKey, layer: str, layout_name: str) -> str:
    """The layout a layer is drawn in (``layer_view.layout_for``): force-directed when asked for and the layer is
    small enough, else weight PCA."""
    return layer_view.layout_for(bundle_of(key).info(layer).neurons, layout_name)


def positions(key: SourceKey, layer: str, layout_name: str) -> np.ndarray:
    """Node positions in a layout of ``layer_view.LAYOUTS`` (see layout_for). Force-directed lays out the graph at
    the layer's suggested tau, once per layer: moving tau then only refilters edges, so nodes stay put and a move
    costs no new layout."""
    if layout_for(key, layer, layout_name) == "force":
        return force_layout(key, layer, suggested_tau(key, layer))
    return layout(key, layer)


@st.cache_resource(max_entries=6, show_spinner=False)
def graph_payload(key: SourceKey, layer: str, layout_name: str) -> GraphPayload:
    """What the graph canvas is sent once per layer and layout (cprune_core.graph_view): positions, norms and
    the edges strongest first down to the slider's lowest tau, at most EDGE_CAP, with every step's exact count
    (``layer_scan``). A resource: the same object (and bytes) at every run, so Streamlit sends it to a browser
    once."""
    scan = layer_scan(key, layer)
    return payload_from_edges(scan.strongest, positions(key, layer, layout_name), scan.norms, TAU_STEPS,
                              max_iter=RANKING_MAX_ITER, counts=scan.counts)


@st.cache_data(max_entries=8, show_spinner=False)
def communities(key: SourceKey, layer: str) -> tuple[np.ndarray, float]:
    """Louvain communities (seeded) of the layer's graph at its suggested tau, the force layout's, and that tau."""
    tau = suggested_tau(key, layer)
    return louvain_labels(graph_at(key, layer, tau)), tau


@st.cache_data(max_entries=16, show_spinner=False)
def suggested_tau(key: SourceKey, layer: str) -> float:
    scan = layer_scan(key, layer)
    return layer_view.suggested_tau(TAU_STEPS, scan.counts, scan.neurons)


@st.cache_data(max_entries=4, show_spinner=False)
def graph_file(key: SourceKey, layer: str, tau: float, file_format: str) -> bytes:
    """The thresholded graph with each neuron's centrality, degree, L2 norm and weight-PCA position."""
    values = layer_graph(key, layer, tau).node_values(layout(key, layer))
    return graph.graph_file(graph_at(key, layer, tau), values, file_format)


@st.cache_data(max_entries=16, show_spinner=False)
def walkthrough(key: SourceKey, layer: str, tau: float) -> Walkthrough:
    """``layer_view.walkthrough``: its rows read a block at a time, W and W-hat kept as at most WALKTHROUGH_COLUMNS
    column means, whatever the layer's width."""
    return layer_view.walkthrough(bundle_of(key), layer, tau)


@st.cache_data(max_entries=32, show_spinner=False)
def layer_graph(key: SourceKey, layer: str, tau: float) -> LayerGraph:
    return layer_view.layer_graph(graph_at(key, layer, tau), layer_scan(key, layer).norms)


@st.cache_data(max_entries=64, show_spinner=False)
def neuron_similarities(key: SourceKey, layer: str, neuron: int) -> np.ndarray:
    """The cosine similarity of ``neuron`` with each neuron of the layer (``layer_view.similarities_to``: a row of S
    without S)."""
    return layer_view.similarities_to(bundle_of(key), layer, neuron)


def prefetch(cached, *args) -> None:
    """Start ``cached(*args)`` (a cached function of this module) in a thread and return at once: the page's own
    call later waits for what is left of it, never computing a second copy (Streamlit holds one compute lock
    per key), so the machine's second core works on it meanwhile. A failure is left for the page's own call
    to meet and show."""
    def quietly() -> None:
        with contextlib.suppress(Exception):  # the page's own call raises it again, in front of the visitor
            cached(*args)

    threading.Thread(target=quietly, name="cprune-prefetch", daemon=True).start()


@st.cache_data(max_entries=64, show_spinner=False)
def neuron_scores(key: SourceKey, layer: str, criterion: str, tau: float, seed: int = 0) -> np.ndarray:
    """One score per neuron of ``layer`` (higher = keep), on the unpruned weights (``seed``: random's); a graph
    criterion from the cached graph at tau (``graph_at``: no second similarity computed per tau)."""
    if CRITERIA[criterion].uses_graph:
        return make_criterion(criterion, tau).from_adjacency(graph_at(key, layer, tau)).scores.cpu().numpy()
    return layer_view.criterion_scores(layer_vectors(key, layer), criterion, tau, seed=seed)[0]


def kept_overlap(key: SourceKey, layer: str, criterion: str, tau: float, count: int) -> pd.DataFrame:
    """``kept_sets.kept_overlap`` of every criterion's scores of ``layer`` at ``tau``."""
    scores = {name: neuron_scores(key, layer, name, tau) for name in CRITERIA}
    return kept_sets.kept_overlap(scores, criterion, count)


@st.cache_resource(max_entries=4, show_spinner=False)
def group_similarity(key: ModelKey, layer: str) -> list[torch.Tensor]:
    """``kept_sets.group_similarity``: the layer's own similarity (cached above, as the page's graph needs it
    anyway) when it is pruned alone, every coupled layer's for a residual stream (read-only)."""
    return kept_sets.group_similarity(model_bundle(key), layer, similarity(key, layer))


@st.cache_data(max_entries=128, show_spinner=False)
def _kept_curves(key: ModelKey, layer: str, criterion: str, tau: float | None, seed: int) -> KeptSetCurves:
    tau = DEFAULT_TAU if tau is None else tau  # None: a criterion that ignores tau
    # The layer's own scores are cached (the overlap table reads them too); used when it is pruned alone.
    return kept_sets.kept_curves(model_bundle(key), layer, criterion, tau, seed,
                                 similarities=group_similarity(key, layer),
                                 own_scores=neuron_scores(key, layer, criterion, tau, seed))


def kept_curves(key: ModelKey, layer: str, criterion: str, tau: float, seed: int = 0) -> KeptSetCurves:
    """``kept_sets.kept_curves``: once per layer, criterion and seed, and per tau for the graph criteria, so a
    moved keep ratio costs nothing."""
    return _kept_curves(key, layer, criterion, tau if CRITERIA[criterion].uses_graph else None, seed)


def kept_geometry(key: ModelKey, layer: str, tau: float, count: int) -> pd.DataFrame:
    """``kept_sets.kept_geometry`` of every criterion's kept set of ``count`` neurons, against random's over
    GEOMETRY_SEEDS seeds."""
    curves = {name: kept_curves(key, layer, name, tau) for name in CRITERIA if name != "random"}
    random = [kept_curves(key, layer, "random", tau, seed) for seed in range(kept_sets.GEOMETRY_SEEDS)]
    return kept_sets.kept_geometry(curves, random, count)


@st.cache_data(max_entries=16, show_spinner=False)
def layerwise(key: SourceKey, tau: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The layer-wise table at ``tau`` (``layer_report.layerwise_rows``, as ``cprune graph --layer all`` writes it:
    a layer too large for a graph is a row with a note and no figures), each layer's graph the cached
    ``layer_graph``; and the long-form centralities (layer, centrality) of the layers with a graph."""
    graphs: dict[str, LayerGraph] = {}

    def figures(layer: str) -> LayerGraph:
        graphs[layer] = layer_graph(key, layer, tau)
        return graphs[layer]

    table = pd.DataFrame(layerwise_rows(bundle_of(key), tau, figures, lambda layer: layer_spectrum(key, layer)),
                         columns=LAYERWISE_COLUMNS)
    values = pd.DataFrame({"layer": np.repeat(list(graphs), [len(view.centrality) for view in graphs.values()]),
                           "centrality": np.concatenate([view.centrality for view in graphs.values()] or [[]])})
    return table, values


@st.cache_data(max_entries=4, show_spinner=False)
def measured_cost(key: ModelKey) -> tuple[int, int]:
    """Exact params and MACs (per image at the backbone's input size) of the unpruned model."""
    bundle = model_bundle(key)
    cost = exact_cost(bundle.loaded.model, bundle.loaded.spec.input_size)
    return cost.params, cost.macs


@st.cache_data(max_entries=16, show_spinner="Pruning and measuring …")
def pruned_cost(key: ModelKey, criterion: str, tau: float, keep: float | dict[str, int],
                layers: list[str] | None) -> tuple[int, int, Latency, Latency]:
    """The model pruned for real (smaller weight tensors, torch-pruning) with these settings (as ``prune_model``
    takes them): its exact params and MACs, as ``measured_cost`` counts the unpruned one's, and the latency of the
    unpruned and the pruned model timed in turns (``compare_latency``). Built and timed once per settings and
    server, in the script run that first asks: a few seconds, which the run queue would put behind visitors'
    fine-tuning runs."""
    loaded = model_bundle(key).loaded
    result = prune_model(loaded.model, loaded.spec, make_criterion(criterion, tau), keep, layers)
    cost = exact_cost(result.model, loaded.spec.input_size)
    before, after = compare_latency([loaded.model, result.model], loaded.spec.input_size)
    return cost.params, cost.macs, before, after


@st.cache_data(max_entries=256, show_spinner=False)
def layer_spectrum(key: SourceKey, layer: str) -> LayerSpectrum:
    """A layer's spectral figures (``cprune_core.spectral``): they depend on its weights only, so once per layer,
    whatever tau; the layer-wise table reads them here too."""
    return weight_spectrum(layer_weight(key, layer), layer)
