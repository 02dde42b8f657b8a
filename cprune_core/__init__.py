"""CPrune core: neuron-similarity graphs, eigenvector-centrality pruning and fine-tuning.

Data flows one way: registry -> model -> layer -> graph -> scores -> pruned model ->
training -> store. No Streamlit in here.
"""
from .centrality import PowerIterationFailedConvergence, eigenvector_centrality, pagerank, weighted_degree
from .cost import Cost, CostModel, count_macs, count_params, exact_cost, measure_latency_ms
from .graph import (GraphSummary, NonFiniteWeightsError, adjacency_for, cosine_similarity, layout_2d, summarize,
                    threshold_adjacency, to_networkx, weight_vectors)
from .importance import CRITERIA, DEFAULT_TAU, Criterion, GroupImportance, make_criterion
from .layers import LayerInfo, list_layers
from .pruning import PruneResult, PruningGraph, apply_kept, keep_count, keep_plan, prune_model
from .registry import (BACKBONES, DEFAULT_BACKBONE, Backbone, BackboneSpec, CheckpointError, WeightsUnavailableError,
                       get_spec, load_backbone)

__all__ = [name for name in dir() if not name.startswith("_")]
