"""CPrune core: neuron-similarity graphs, eigenvector-centrality pruning and fine-tuning.

Data flows one way: registry -> model -> layer -> graph -> scores -> pruned model ->
training -> store. No Streamlit in here, and no visitors: whom a call works for (which folders it
reads, whether it downloads, whose records it writes and lists) is the ``Access`` its caller passes.
"""
# Names are imported when first used (PEP 562): `import cprune_core` and the command line's `--help` stay free of
# torch, which takes seconds to import. ``from cprune_core import X`` works as before.
from __future__ import annotations

from .lazy import attach

_EXPORTS: dict[str, tuple[str, ...]] = {
    "access": ("COMMAND_LINE", "Access"),
    "centrality": ("Centrality", "concentration", "eigenvector_centrality", "pagerank", "power_iteration", "weighted_degree"),
    "checkpoint": ("SavedModel", "export_onnx", "export_torchscript", "load_model", "save_model"),
    "cost": ("Cost", "CostModel", "count_macs", "count_params", "exact_cost", "measure_latency_ms"),
    "data": ("DATASETS", "load_dataset"),
    "device": ("describe_device", "resolve_device"),
    "engine": ("Finetuner", "finetune", "run"),
    "errors": ("CheckpointError", "ConfigError", "CPruneError", "DatasetError", "NonFiniteWeightsError",
        "PathNotAllowedError", "StopRequested", "StoreError", "UnreadableImageError", "WeightsFileError",
        "WeightsUnavailableError"),
    "evaluation": ("Evaluation", "evaluate_model"),
    "features": ("FEATURE_CACHE", "FeatureCache"),
    "graph": ("GraphSummary", "adjacency_for", "cosine_similarity", "layout_2d", "normalise_rows", "summarize",
        "threshold_adjacency", "to_networkx"),
    "criteria": ("CRITERIA", "DEFAULT_TAU", "Criterion", "GroupImportance", "make_criterion"),
    "layer_report": ("LayerReport", "layer_report", "layerwise_rows"),
    "layer_view": ("LayerGraph", "criterion_scores", "layer_graph", "layer_scores"),
    "layers": ("weight_vectors",),
    "model_source": ("BackboneSource", "FileSource", "ModelSource"),
    "paths": ("cache_home",),
    "pruning": ("LayerInfo", "PruneResult", "PruningGraph", "apply_kept", "keep_count", "keep_plan", "kept_indices",
        "list_layers", "prune_model"),
    "ranges": ("KEEP", "TAU", "Range"),
    "registry": ("BACKBONES", "DEFAULT_BACKBONE", "Backbone", "BackboneSpec", "backbones_fitting", "get_spec",
        "load_backbone"),
    "runs": ("run_and_record",),
    "schema": ("EventKind", "FinetuneConfig", "MetricEvent", "RunResult", "RunStatus", "RunSummary"),
    "cut": ("cut_model",),
    "store": ("RunRecord", "RunStore"),
    "weights": ("WeightLayer", "WeightsBudget", "WeightsFile", "open_weights_file"),
}
__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
