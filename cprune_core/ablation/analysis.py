"""``analyse_importance``: the whole analysis of one layer, as the app and ``experiment importance`` run it."""
from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..access import COMMAND_LINE, Access
from ..features import FeatureCache
from ..progress import ProgressCallback
from ..registry import get_spec, load_backbone
from ..schema import FinetuneConfig, RunSummary
from ..stats import Reliability, minimum_detectable_rho, split_half_reliability
from ..pruning import PrunableGroup, PruningGraph
from .ablators import Heads, LayerAblator, layer_ablator
from .baseline import TrainedBaseline, prunable_group, train_baseline, train_heads
from .config import AnalysisConfig
from .sentence import summary_sentence
from .statistics import (AblationResult, Correlation, ZeroShotCurve, ablation_effects, criterion_correlations,
                         scores_by_criterion, sample_neurons, zero_shot_curve)

__all__ = ["ImportanceAnalysis", "analyse_importance"]


@dataclass
class ImportanceAnalysis:
    """Everything ``analyse_importance`` computed, for the report, the JSON and the app's figures."""

    config: FinetuneConfig  # the baseline run that trained the head
    layer: str
    baseline: RunSummary
    result: AblationResult
    reliability: Reliability  # of the single-neuron effects over images, and the ceiling it puts on any rho
    minimum_detectable_rho: float  # the smallest |rho| a test at 5% detects with 80% power among the measured neurons
    scores: dict[str, np.ndarray]  # criterion -> runs x n_neurons
    correlations: dict[str, Correlation]
    curve: ZeroShotCurve
    sentence: str
    tau: float
    seeds: int
    resamples: int


def analyse_importance(config: FinetuneConfig, layer: str | None = AnalysisConfig.layer, *,
                       criteria: Iterable[str] = AnalysisConfig.criteria, tau: float = AnalysisConfig.tau,
                       seeds: int = AnalysisConfig.seeds, heads: int = AnalysisConfig.heads,
                       sample_size: int = AnalysisConfig.sample_size, resamples: int = AnalysisConfig.resamples,
                       keep_ratios: Sequence[float] = AnalysisConfig.keep_ratios,
                       progress: ProgressCallback | None = None, stop: threading.Event | None = None,
                       feature_cache: FeatureCache | None = None, access: Access = COMMAND_LINE) -> ImportanceAnalysis:
    """Does centrality predict importance? Train the head once, then measure ``layer``'s neurons.

    Parameters
    ----------
    config : the run that trains the head (its backbone, weights, dataset, split, seed, epochs, image
        size; run in mode "baseline" whatever its mode).
    layer, criteria, tau, seeds, heads, sample_size, resamples, keep_ratios : the analysis's settings, as
        ``AnalysisConfig``'s fields (their defaults; ``**settings.to_dict()`` passes a whole one). Every
        neuron is measured when that is one operation (a layer read only by the classifier), else a
        sample of ``sample_size`` drawn with ``config.seed``.
    progress : ``progress(done, total, message)`` as each step goes (total 0: not known yet).
    stop : a set Event ends the analysis with StopRequested, within one batch or one neuron.
    feature_cache : as ``train_baseline``.
    access : whom the analysis works for (``access.Access``): the head's training reads its dataset and
        downloads as it allows.

    Returns
    -------
    ImportanceAnalysis : the baseline run's summary, each measured neuron's effect (averaged over ``heads`` heads,
    on every validation image), the effects' split-half reliability and the smallest rho the test could detect,
    every criterion's scores and correlation, the zero-shot curve and the sentence. The test split is never read.

    Raises
    ------
    ConfigError : for an impossible setting or a layer that cannot be analysed (no such layer, the
        classifier, a depthwise convolution), all before any training; for an empty validation split; and,
        once the head is trained, for a layer whose consumers also read other channels (a concatenation).
    StopRequested : when ``stop`` is set.
    CPruneError : the head's training run's own error (a dataset that cannot be read, missing weights).

    Example: ``analyse_importance(config, "head.1", seeds=2).sentence`` states the finding in one sentence.
    """
    AnalysisConfig(layer=layer, criteria=tuple(criteria), tau=tau, seeds=seeds, heads=heads, sample_size=sample_size,
                   resamples=resamples, keep_ratios=tuple(keep_ratios)).validate()
    config = replace(config, mode="baseline")
    config.validate()
    spec = get_spec(config.backbone)
    layer = layer or spec.head_layer
    prunable_group(load_backbone(config.backbone, "random").model, spec, layer)  # the layer exists: no weights needed

    trained = train_baseline(config, progress=progress, stop=stop, feature_cache=feature_cache, access=access)
    graph, group = prunable_group(trained.model, spec, layer)
    ablator, result = _measured(trained, graph, group, layer, heads, sample_size, config.seed, progress, stop,
                                feature_cache)
    reliability = split_half_reliability(result.image_values(), seed=config.seed)
    detectable = minimum_detectable_rho(len(result.neurons), 0.05)
    scores = scores_by_criterion(graph, group, criteria, tau=tau, seeds=seeds)
    correlations = criterion_correlations(result, scores, resamples=resamples, seed=config.seed)
    curve = zero_shot_curve(ablator, scores, keep_ratios, progress=progress, stop=stop)
    sentence = summary_sentence(result, correlations, curve, reliability, detectable)
    return ImportanceAnalysis(trained.config, layer, trained.summary, result, reliability, detectable, scores,
                              correlations, curve, sentence, tau, seeds, resamples)


def _measured(trained: TrainedBaseline, graph: PruningGraph, group: PrunableGroup, layer: str, heads: int,
              sample_size: int, seed: int, progress: ProgressCallback | None, stop: threading.Event | None,
              feature_cache: FeatureCache | None) -> tuple[LayerAblator, AblationResult]:
    """``layer``'s ablator over ``heads`` trained heads, and the effects of its neurons (all of them when that is
    one operation, else ``sample_size`` drawn with ``seed``)."""
    trained_heads = Heads.of(train_heads(trained, heads, progress=progress, stop=stop))
    ablator = layer_ablator(trained, graph, group, layer, heads=trained_heads, progress=progress, stop=stop,
                            feature_cache=feature_cache)
    neurons = None if ablator.exhaustive else sample_neurons(ablator.n_neurons, sample_size, seed)
    return ablator, ablation_effects(ablator, neurons, progress=progress, stop=stop)
