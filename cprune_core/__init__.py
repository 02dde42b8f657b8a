"""CPrune core: neuron-similarity graphs, eigenvector-centrality pruning and fine-tuning.

Data flows one way: registry -> model -> layer -> graph -> scores -> pruned model ->
training -> store. No Streamlit in here.
"""
from .centrality import (PowerIterationFailedConvergence, concentration, eigenvector_centrality, pagerank,
                         weighted_degree)
from .cost import Cost, CostModel, count_macs, count_params, exact_cost, measure_latency_ms
from .graph import (GraphSummary, NonFiniteWeightsError, adjacency_for, cosine_similarity, layout_2d, summarize,
                    threshold_adjacency, to_networkx, weight_vectors)
from .importance import CRITERIA, DEFAULT_TAU, Criterion, GroupImportance, make_criterion
from .layers import LayerInfo, list_layers
from .pruning import PruneResult, PruningGraph, apply_kept, keep_count, keep_plan, kept_indices, prune_model
from .registry import (BACKBONES, DEFAULT_BACKBONE, Backbone, BackboneSpec, CheckpointError, WeightsUnavailableError,
                       get_spec, load_backbone)

from .engine import (FEATURE_CACHE, Evaluation, FeatureCache, Finetuner, FinetuneConfig, MetricEvent, RunResult,
                     evaluate_model, finetune, resolve_device)
from .engine import run as run_finetune
from .store import Recording, RunStore, record
from .checkpoint import SavedModel, export_onnx, export_torchscript, load_model, save_model
from .split import split_model

__all__ = [name for name in dir() if not name.startswith("_")]
