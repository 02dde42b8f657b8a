"""CPrune core: neuron-similarity graphs, eigenvector-centrality pruning and fine-tuning.

Data flows one way: registry -> model -> layer -> graph -> scores -> pruned model ->
training -> store. No Streamlit in here, and no visitors: whom a call works for (which folders it
reads, whether it downloads, whose records it writes and lists) is the ``Access`` its caller passes.
"""
from .access import COMMAND_LINE, Access
from .centrality import Centrality, concentration, eigenvector_centrality, pagerank, power_iteration, weighted_degree
from .checkpoint import SavedModel, export_onnx, export_torchscript, load_model, save_model
from .cost import Cost, CostModel, count_macs, count_params, exact_cost, measure_latency_ms
from .data import DATASETS, load_dataset
from .device import describe_device, resolve_device
from .engine import Finetuner, finetune, run
from .errors import (CheckpointError, ConfigError, CPruneError, DatasetError, NonFiniteWeightsError,
                     PathNotAllowedError, StopRequested, StoreError,
                     UnreadableImageError, WeightsFileError, WeightsUnavailableError)
from .evaluation import Evaluation, evaluate_model
from .features import FEATURE_CACHE, FeatureCache
from .graph import (GraphSummary, adjacency_for, cosine_similarity, layout_2d, normalise_rows, summarize,
                    threshold_adjacency, to_networkx)
from .criteria import CRITERIA, DEFAULT_TAU, Criterion, GroupImportance, make_criterion
from .layer_report import LayerReport, layer_report, layerwise_rows
from .layer_view import LayerGraph, criterion_scores, layer_graph, layer_scores
from .layers import weight_vectors
from .model_source import BackboneSource, FileSource, ModelSource
from .paths import cache_home
from .pruning import (LayerInfo, PruneResult, PruningGraph, apply_kept, keep_count, keep_plan, kept_indices,
                      list_layers, prune_model)
from .ranges import KEEP, TAU, Range
from .registry import BACKBONES, DEFAULT_BACKBONE, Backbone, BackboneSpec, backbones_fitting, get_spec, load_backbone
from .runs import run_and_record
from .schema import EventKind, FinetuneConfig, MetricEvent, RunResult, RunStatus, RunSummary
from .cut import cut_model
from .store import RunRecord, RunStore
from .weights import WeightLayer, WeightsBudget, WeightsFile, open_weights_file

__all__ = [
    "Access", "COMMAND_LINE",
    "Centrality", "concentration", "eigenvector_centrality", "pagerank", "power_iteration", "weighted_degree",
    "SavedModel", "export_onnx", "export_torchscript", "load_model", "save_model",
    "Cost", "CostModel", "count_macs", "count_params", "exact_cost", "measure_latency_ms",
    "DATASETS", "load_dataset", "describe_device", "resolve_device", "Finetuner", "finetune", "run",
    "CheckpointError", "ConfigError", "CPruneError", "DatasetError", "NonFiniteWeightsError", "PathNotAllowedError",
    "StopRequested", "StoreError", "UnreadableImageError", "WeightsFileError",
    "WeightsUnavailableError",
    "Evaluation", "evaluate_model", "FEATURE_CACHE", "FeatureCache",
    "GraphSummary", "adjacency_for", "cosine_similarity", "layout_2d", "normalise_rows", "summarize",
    "threshold_adjacency", "to_networkx",
    "CRITERIA", "DEFAULT_TAU", "Criterion", "GroupImportance", "make_criterion",
    "LayerInfo", "list_layers", "weight_vectors", "cache_home",
    "LayerReport", "layer_report", "layerwise_rows", "LayerGraph", "criterion_scores", "layer_graph", "layer_scores", "BackboneSource", "FileSource", "ModelSource",
    "backbones_fitting", "WeightLayer", "WeightsBudget", "WeightsFile", "open_weights_file",
    "PruneResult", "PruningGraph", "apply_kept", "keep_count", "keep_plan", "kept_indices", "prune_model",
    "KEEP", "TAU", "Range", "BACKBONES", "DEFAULT_BACKBONE", "Backbone", "BackboneSpec", "get_spec", "load_backbone",
    "run_and_record", "EventKind", "FinetuneConfig", "MetricEvent", "RunResult", "RunStatus", "RunSummary",
    "cut_model", "RunRecord", "RunStore",
]
