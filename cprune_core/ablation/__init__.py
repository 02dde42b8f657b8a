"""Does centrality predict importance? Each neuron's exact ablation effect, and how well the criteria predict it.

A new head is trained once on the frozen backbone (a seeded baseline run of the engine, on its
cached features). A neuron's *ablation effect* is the change in validation loss and accuracy of
that trained model when the neuron alone is removed, with no retraining; its *importance* is the
change in loss (higher: more important). "Removed" means what structural pruning does
(``prune_model`` keeping every other neuron): the layer's output channel, the BatchNorm channel
after it, the depthwise channel that follows, and the next layers' input channel all disappear,
so every layer that reads the channel (its *consumers*) no longer sees it. That is computed
exactly, without pruning, by zeroing the channel at the consumers' inputs (a BatchNorm's beta
would survive a zeroed convolution output, so zeroing there would not be the same thing); for a
channel of a residual stream (layers coupled by an add) the whole stream's channel goes, as
pruning removes it from every coupled layer.

Two ways, both exact (``LayerAblator``):
- ``PooledAblator`` for a layer whose only consumer is the classifier, through pooling (e.g.
  EfficientNet-Lite0's ``head.1``): the classifier sees the cached pooled features P (N x n), so
  removing neuron j takes ``P[:, j] * W[:, j]`` off the logits; all neurons at once are one
  broadcast operation, and any kept set is one masked matrix product.
- ``ForwardAblator`` for every other prunable layer: the inputs of the rest of the network (from
  the block that holds the layer's group onwards) are cached on the validation split once, and the
  rest runs forward once per removed set, with the channels zeroed at their consumers. That costs
  a forward pass per neuron, so it runs on a seeded sample of neurons (``sample_neurons``).

On top: each criterion's scores (what pruning ranks the group by: ``PruningGraph.group_scores``),
their Spearman correlation with the importance and its bootstrap interval over neurons
(``criterion_correlations``), the validation accuracy before any fine-tuning at each keep ratio
(``zero_shot_curve``), and one sentence generated from those numbers (``summary_sentence``).
``analyse_importance`` does it all; the app and ``experiment importance`` call it, with the settings
of ``AnalysisConfig`` (the one source of their defaults, valid ranges and help).

Validation split only: the test split is never looked at here. Long steps take a progress
callback ``progress(done, total, message)`` (total 0: not known yet) and a ``stop`` event; a set
``stop`` raises ``StopRequested`` (``progress.report`` and ``progress.check_stop``).
"""
from ..lazy import attach

# Imported when first used (cprune_core.lazy): a light module of the package (its settings) costs no torch.
__getattr__, __dir__, __all__ = attach(__name__, {
    "ablators": ("ForwardAblator", "Heads", "LayerAblator", "Outcome", "PooledAblator", "consumers",
        "inference_copy", "layer_ablator", "rest_cut", "rest_features"),
    "analysis": ("ImportanceAnalysis", "analyse_importance"),
    "baseline": ("TrainedBaseline", "prunable_group", "train_baseline", "train_heads"),
    "config": ("RESAMPLES", "SAMPLE_SIZES", "AnalysisConfig"),
    "sentence": ("summary_sentence",),
    "statistics": ("TIE_DRAWS", "AblationResult", "Correlation", "ZeroShotCurve", "ablation_effects",
        "criterion_correlations", "kept_outcome", "sample_neurons", "scores_by_criterion", "zero_shot_curve"),
})
