"""Cached calls into cprune_core, keyed by what they depend on.

A model to look at is named by a key (hashable, so it can key caches): a ``ModelKey`` for a registry
backbone (its weights: pretrained, random init or an uploaded checkpoint), a ``FileKey`` for a weights
file (explore only: its layers have no architecture around them, so nothing is pruned, costed or
fine-tuned). Both give a bundle (``bundle``) with the same view of their layers; a ``ModelBundle`` adds
the pruning graph and cost model. Models, bundles and a layer's weights are resources (one shared
object per key); arrays derived from them (layouts, scores, graph views) are data keyed by the key,
layer and tau.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st
import torch

from cprune_core import (CRITERIA, Backbone, CostModel, GraphSummary, LayerInfo, concentration,
                         cosine_similarity, exact_cost, kept_indices, layout_2d, load_backbone, make_criterion,
                         measure_latency_ms, normalise_rows, power_iteration, prune_model, summarize,
                         threshold_adjacency)
from cprune_core import graph
from cprune_core.centrality import POWER_TOLERANCE
from cprune_core.graph import strongest_edges
from cprune_core.graph_view import GraphPayload, build_payload, louvain_labels
from cprune_core.atlas import AtlasSettings, KeptSetCurves, group_curves, group_similarities
from cprune_core.criteria import DEFAULT_TAU, RANKING_MAX_ITER
from cprune_core.layer_report import MAX_GRAPH_NEURONS
from cprune_core.model_source import BackboneSource, FileSource
from cprune_core.registry import MAX_CHECKPOINT_BYTES
from cprune_core.weights import FORMATS, WeightsBudget
from cprune_server import downloads_allowed

from .state import TAU_RANGE, TAU_STEP

__all__ = ["EDGE_LIMIT", "FILE_BUDGET", "ModelKey", "FileKey", "SourceKey", "ModelBundle", "FileBundle", "backbone",
           "model_bundle", "file_bundle", "bundle_of", "layer_weight", "layer_vectors", "similarity", "layout",
           "force_layout", "LAYOUTS", "layout_for", "positions", "TAU_STEPS", "graph_payload", "communities",
           "suggested_tau", "graph_file", "Walkthrough", "walkthrough", "LayerGraph", "layer_graph", "prefetch",
           "neuron_scores", "kept_set", "kept_mask", "kept_overlap", "layerwise", "measured_cost", "pruned_cost"]

EDGE_LIMIT = 1500  # the strongest edges a LayerGraph keeps: what the pyvis physics view draws
FILE_BUDGET = WeightsBudget(max_file_bytes=MAX_CHECKPOINT_BYTES)  # a weights file: an upload's size at most


@dataclass(frozen=True)
class ModelKey:
    """A registry backbone and its weights."""

    backbone: str
    weights: str  # "pretrained", "random" or "checkpoint"
    checkpoint: str = ""  # path of the uploaded state dict when weights == "checkpoint"


@dataclass(frozen=True)
class FileKey:
    """A weights file to explore: a visitor's upload (named by its content), never in a link."""

    path: str
    name: str  # the file's name, for people


SourceKey = ModelKey | FileKey


class _Layers:
    """What the pages read of any bundle's layers (``layers`` and ``graph_layers`` of a ModelSource)."""

    layers: list[LayerInfo]
    graph_layers: list[str]  # the layers a layer-wise table covers: a backbone's prunable ones, a file's every one

    @property
    def layer_names(self) -> list[str]:
        return [info.name for info in self.layers]

    def info(self, layer: str) -> LayerInfo:
        return next(info for info in self.layers if info.name == layer)

    @property
    def drawable(self) -> list[str]:
        """The layers whose graph can be built (at most MAX_GRAPH_NEURONS neurons)."""
        return [info.name for info in self.layers if info.neurons <= MAX_GRAPH_NEURONS]


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
        return next(iter(self.drawable), self.layers[0].name)


@st.cache_resource(max_entries=3, show_spinner=False)
def backbone(key: ModelKey) -> Backbone:
    """The model alone: a layer's graph needs no more, so it can be made while model_bundle builds the rest."""
    return load_backbone(key.backbone, key.weights, key.checkpoint or None, download=downloads_allowed())


@st.cache_resource(max_entries=3, show_spinner=False)
def model_bundle(key: ModelKey) -> ModelBundle:
    return ModelBundle(backbone(key))


@st.cache_resource(max_entries=3, show_spinner=False)
def file_bundle(key: FileKey) -> FileBundle:
    """The file's layers, each read once here: a file refused (WeightsFileError: not what its extension says,
    damaged, over FILE_BUDGET, no float layer; NonFiniteWeightsError: NaN or Inf in a layer) is refused whole,
    as it is uploaded, not when a visitor comes to the layer."""
    opened = FileBundle.open(key.path, FILE_BUDGET)
    for name in opened.layer_names:
        opened.weight(name)
    opened.title = f"{key.name} ({FORMATS[opened.weights.format]})"  # the name as uploaded, not as stored
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
def similarity(key: SourceKey, layer: str) -> torch.Tensor:
    """Cosine similarity of a layer's neurons (n x n, read-only: copy before changing)."""
    return cosine_similarity(layer_vectors(key, layer))


@st.cache_data(max_entries=16, show_spinner=False)
def layout(key: SourceKey, layer: str) -> np.ndarray:
    """Node positions: depend on the weights only, so moving tau never moves a node."""
    return layout_2d(layer_vectors(key, layer))


@st.cache_data(max_entries=32, show_spinner=False)
def force_layout(key: SourceKey, layer: str, tau: float) -> np.ndarray:
    """Force-directed positions of the thresholded graph: computed once per layer and tau."""
    return graph.force_layout(threshold_adjacency(similarity(key, layer), tau))


LAYOUTS = {"force": "force-directed", "pca": "weight PCA"}


def layout_for(key: SourceKey, layer: str, layout_name: str) -> str:
    """The layout a layer is drawn in: ``layout_name``, except that force-directed is offered up to
    graph.MAX_FORCE_LAYOUT_NODES neurons (weight PCA above)."""
    if layout_name == "force" and layer_vectors(key, layer).shape[0] <= graph.MAX_FORCE_LAYOUT_NODES:
        return "force"
    return "pca"


def positions(key: SourceKey, layer: str, layout_name: str) -> np.ndarray:
    """Node positions in a layout of LAYOUTS (see layout_for). Force-directed lays out the graph at the layer's
    suggested tau, about ten edges per neuron, once per layer: moving tau then only refilters edges, so nodes
    stay put and a move costs no new layout."""
    if layout_for(key, layer, layout_name) == "force":
        return force_layout(key, layer, suggested_tau(key, layer))
    return layout(key, layer)


TAU_STEPS = tuple(float(t) for t in np.round(np.arange(TAU_RANGE[0], TAU_RANGE[1] + TAU_STEP / 2, TAU_STEP), 2))


@st.cache_resource(max_entries=6, show_spinner=False)
def graph_payload(key: SourceKey, layer: str, layout_name: str) -> GraphPayload:
    """What the graph canvas is sent once per layer and layout (cprune_core.graph_view): positions, norms and
    the edges strongest first down to the slider's lowest tau, at most EDGE_CAP. A resource: the same
    object (and bytes) at every run, so Streamlit sends it to a browser once."""
    return build_payload(similarity(key, layer), positions(key, layer, layout_name),
                         layer_vectors(key, layer).norm(dim=1).numpy(), TAU_STEPS, max_iter=RANKING_MAX_ITER)


@st.cache_data(max_entries=8, show_spinner=False)
def communities(key: SourceKey, layer: str) -> tuple[np.ndarray, float]:
    """Louvain communities (seeded) of the layer's graph at its suggested tau, the force layout's, and that tau."""
    tau = suggested_tau(key, layer)
    return louvain_labels(threshold_adjacency(similarity(key, layer), tau)), tau


@st.cache_data(max_entries=16, show_spinner=False)
def suggested_tau(key: SourceKey, layer: str) -> float:
    """The tau at which the layer's neurons have about ten edges each."""
    return graph.tau_for_mean_degree(similarity(key, layer), 10)


@st.cache_data(max_entries=4, show_spinner=False)
def graph_file(key: SourceKey, layer: str, tau: float, file_format: str) -> bytes:
    """The thresholded graph with each neuron's centrality, degree, L2 norm and both layouts' positions."""
    view = layer_graph(key, layer, tau)
    pca = layout(key, layer)
    values = {"centrality": view.centrality, "degree": view.degree, "l2_norm": view.norms,
              "pca_x": pca[:, 0], "pca_y": pca[:, 1]}
    return graph.graph_file(threshold_adjacency(similarity(key, layer), tau), values, file_format)


@dataclass(frozen=True)
class Walkthrough:
    """Every quantity of the method for one small layer, step by step, from the core's own functions."""

    weights: np.ndarray  # W: neurons x inputs
    normalised: np.ndarray  # W-hat: each row divided by its L2 norm
    similarity: np.ndarray  # S = W-hat W-hat^T
    adjacency: np.ndarray  # A: S where S > tau, off the diagonal
    iterates: np.ndarray  # x_k of power iteration, one row per step k = 1..K
    changes: np.ndarray  # L1 change of each step
    eigenvalues: np.ndarray  # the eigenvalue estimate at each step
    converged: bool
    tolerance: float  # the L1 change below which iteration stops: n x tol
    centrality: np.ndarray  # what pruning ranks by (the eigenvector criterion's scores)


@st.cache_data(max_entries=16, show_spinner=False)
def walkthrough(key: SourceKey, layer: str, tau: float) -> Walkthrough:
    vectors = layer_vectors(key, layer)
    similarity_matrix = similarity(key, layer)
    adjacency = threshold_adjacency(similarity_matrix, tau)
    steps = list(power_iteration(adjacency, max_iter=RANKING_MAX_ITER))
    centrality = make_criterion("eigenvector", tau).from_adjacency(adjacency).scores
    return Walkthrough(
        weights=vectors.float().numpy(), normalised=normalise_rows(vectors).numpy(),
        similarity=similarity_matrix.numpy(), adjacency=adjacency.numpy(),
        iterates=torch.stack([step.x for step in steps]).numpy(),
        changes=np.array([step.change for step in steps]), eigenvalues=np.array([step.eigenvalue for step in steps]),
        converged=steps[-1].converged, tolerance=adjacency.shape[0] * POWER_TOLERANCE, centrality=centrality.numpy())


@dataclass(frozen=True)
class LayerGraph:
    """The thresholded similarity graph of one layer, as the views need it."""

    summary: GraphSummary
    centrality: np.ndarray  # eigenvector centrality per neuron
    degree: np.ndarray  # number of edges per neuron
    norms: np.ndarray  # L2 norm of each neuron's weight vector
    edge_rows: np.ndarray  # strongest edges first, at most EDGE_LIMIT
    edge_cols: np.ndarray
    edge_weights: np.ndarray
    centrality_note: str  # non-empty when power iteration stopped before converging


@st.cache_data(max_entries=32, show_spinner=False)
def layer_graph(key: SourceKey, layer: str, tau: float) -> LayerGraph:
    adjacency = threshold_adjacency(similarity(key, layer), tau)
    centrality = make_criterion("eigenvector", tau).from_adjacency(adjacency)
    rows, cols, weights, _ = strongest_edges(adjacency, EDGE_LIMIT)
    return LayerGraph(
        summary=summarize(adjacency),
        centrality=centrality.scores.numpy(),
        degree=(adjacency > 0).sum(1).numpy(),
        norms=layer_vectors(key, layer).norm(dim=1).numpy(),
        edge_rows=rows, edge_cols=cols, edge_weights=weights,
        centrality_note=centrality.note("eigenvector centrality"),
    )


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
    """One score per neuron of ``layer`` (higher = keep), on the unpruned weights (``seed``: random's)."""
    scorer = make_criterion(criterion, tau, seed)
    if scorer.uses_graph:  # reuse the cached similarity: no second n x n matrix product per tau
        return scorer.from_adjacency(threshold_adjacency(similarity(key, layer), tau)).scores.numpy()
    return scorer(layer_vectors(key, layer)).numpy()


def kept_set(scores: np.ndarray, count: int) -> set[int]:
    """The ``count`` best-scored neurons, chosen exactly as prune_model chooses them."""
    return set(kept_indices(torch.from_numpy(scores), count))


def kept_mask(scores: np.ndarray, count: int) -> np.ndarray:
    """``kept_set`` as one boolean per neuron."""
    mask = np.zeros(len(scores), bool)
    mask[list(kept_set(scores, count))] = True
    return mask


def kept_overlap(key: SourceKey, layer: str, criterion: str, tau: float, count: int) -> pd.DataFrame:
    """How far the ``count`` neurons ``criterion`` keeps agree with those each other criterion keeps: one row per
    other criterion with the Jaccard index of the two kept sets."""
    kept = kept_set(neuron_scores(key, layer, criterion, tau), count)
    rows = []
    for other in CRITERIA:
        if other != criterion:
            theirs = kept_set(neuron_scores(key, layer, other, tau), count)
            rows.append({"criterion": other, "Jaccard with kept set": len(kept & theirs) / len(kept | theirs)})
    return pd.DataFrame(rows)


GEOMETRY_SEEDS = AtlasSettings().seeds  # random's kept sets on the Prune page: as many as the atlas draws


@st.cache_resource(max_entries=4, show_spinner=False)
def group_similarity(key: ModelKey, layer: str) -> list[torch.Tensor]:
    """The similarity matrix of each layer whose channels go with ``layer``'s: its own (``similarity``) for a
    layer of its own, every coupled layer's for a residual stream (read-only)."""
    bundle = model_bundle(key)
    group = bundle.graph.group_for(layer)
    if list(group.layers) == [layer]:
        return [similarity(key, layer)]
    return group_similarities(bundle.loaded.model, group)


@st.cache_data(max_entries=128, show_spinner=False)
def _kept_curves(key: ModelKey, layer: str, criterion: str, tau: float | None, seed: int) -> KeptSetCurves:
    group = model_bundle(key).graph.group_for(layer)
    tau = DEFAULT_TAU if tau is None else tau  # None: a criterion that ignores tau
    if list(group.layers) == [layer]:
        scores = neuron_scores(key, layer, criterion, tau, seed)
    else:  # pruning ranks a residual stream's channels by the criterion averaged over its layers
        scores = model_bundle(key).graph.group_scores(group, make_criterion(criterion, tau, seed)).double().numpy()
    return group_curves(group_similarity(key, layer), scores)


def kept_curves(key: ModelKey, layer: str, criterion: str, tau: float, seed: int = 0) -> KeptSetCurves:
    """Redundancy and coverage of ``criterion``'s kept set of every size in ``layer``'s group, its channels
    ranked as pruning ranks them (cprune_core.atlas.group_curves): once per layer, criterion and seed, and
    per tau for the graph criteria, so a moved keep ratio costs nothing."""
    return _kept_curves(key, layer, criterion, tau if CRITERIA[criterion].uses_graph else None, seed)


def kept_geometry(key: ModelKey, layer: str, tau: float, count: int) -> pd.DataFrame:
    """Each criterion's kept set of ``count`` neurons: its redundancy and coverage, and each minus random's
    (random: the mean over GEOMETRY_SEEDS seeds' kept sets)."""
    def at(name: str, seed: int = 0) -> tuple[float, float]:
        curves = kept_curves(key, layer, name, tau, seed)
        return float(curves.redundancy[count]), float(curves.coverage[count])

    random = np.mean([at("random", seed) for seed in range(GEOMETRY_SEEDS)], axis=0)
    rows = [(name, *at(name)) for name in CRITERIA if name != "random"]
    rows.append((f"random (mean of {GEOMETRY_SEEDS} seeds)", *random))
    table = pd.DataFrame(rows, columns=["criterion", "redundancy", "coverage"])
    table.insert(2, "redundancy − random", table["redundancy"] - random[0])
    table["coverage − random"] = table["coverage"] - random[1]
    return table


@st.cache_data(max_entries=16, show_spinner=False)
def layerwise(key: SourceKey, tau: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per prunable layer at ``tau``: a summary table and the long-form centralities."""
    rows, values, bundle = [], [], bundle_of(key)
    drawable = set(bundle.drawable)
    for name in bundle.graph_layers:
        if name not in drawable:
            continue  # the page says which
        view = layer_graph(key, name, tau)
        gini, top10 = concentration(torch.from_numpy(view.centrality))
        rows.append({"layer": name, "neurons": view.summary.nodes, "edges": view.summary.edges,
                     "density": view.summary.density, "components": view.summary.components,
                     "isolated": view.summary.isolated, "gini": gini, "top 10% share": top10})
        values.append(pd.DataFrame({"layer": name, "centrality": view.centrality}))
    return pd.DataFrame(rows), pd.concat(values, ignore_index=True)


@st.cache_data(max_entries=4, show_spinner=False)
def measured_cost(key: ModelKey) -> tuple[int, int, float]:
    """Exact params, MACs and median latency (ms) of the unpruned model."""
    bundle = model_bundle(key)
    size = bundle.loaded.spec.input_size
    cost = exact_cost(bundle.loaded.model, size)
    return cost.params, cost.macs, measure_latency_ms(bundle.loaded.model, size)


@st.cache_data(max_entries=16, show_spinner="Pruning and measuring …")
def pruned_cost(key: ModelKey, criterion: str, tau: float, keep: float | dict[str, int],
                layers: list[str] | None) -> tuple[int, int, float]:
    """The model pruned for real (smaller weight tensors, torch-pruning) with these settings (as ``prune_model``
    takes them), measured as ``measured_cost`` measures the unpruned one. Built and timed once per settings
    and server, in the script run that first asks: a few seconds, which the run queue would put behind
    visitors' fine-tuning runs."""
    loaded = model_bundle(key).loaded
    result = prune_model(loaded.model, loaded.spec, make_criterion(criterion, tau), keep, layers)
    cost = exact_cost(result.model, loaded.spec.input_size)
    return cost.params, cost.macs, measure_latency_ms(result.model, loaded.spec.input_size)
