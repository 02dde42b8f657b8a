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
``analyse_importance`` does it all; the app and ``experiment importance`` call it.

Validation split only: the test split is never looked at here. Long steps take a progress
callback ``progress(done, total, message)`` (total 0: not known yet) and a ``stop`` event; a set
``stop`` raises ``AnalysisStopped``.
"""
from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from .data import ImageListDataset, build_transform
from .device import Precision, resolve_device
from .engine import Finetuner
from .errors import ConfigError, CPruneError
from .features import FEATURE_BATCH_SIZE, FEATURE_CACHE, FeatureCache, Features, cached_prefix_features, weights_id
from .importance import CRITERIA, DEFAULT_TAU, RandomScores, make_criterion
from .layers import has_neurons, is_depthwise
from .pruning import GroupEffect, PrunableGroup, PruningGraph, keep_count, kept_indices
from .ranges import KEEP, TAU, Range, choose
from .registry import BackboneSpec, get_spec, get_submodule, load_backbone
from .schema import EventKind, FinetuneConfig, MetricEvent, RunStatus, RunSummary
from .split import split_model

__all__ = ["ProgressCallback", "AnalysisStopped", "TrainedBaseline", "train_baseline", "prunable_group",
           "LayerAblator", "PooledAblator", "ForwardAblator", "layer_ablator", "sample_neurons", "AblationResult",
           "ablation_effects", "criterion_scores", "Correlation", "criterion_correlations", "ZeroShotCurve",
           "zero_shot_curve", "summary_sentence", "ImportanceAnalysis", "analyse_importance",
           "DEFAULT_SAMPLE_SIZE", "DEFAULT_RESAMPLES", "ZERO_SHOT_KEEP_RATIOS", "SEEDS", "SAMPLE_SIZES", "RESAMPLES"]

ProgressCallback = Callable[[int, int, str], None]  # (done, total, message); total 0 while not known

DEFAULT_SAMPLE_SIZE = 64  # neurons measured by a forward pass each (ForwardAblator)
DEFAULT_RESAMPLES = 1000  # bootstrap resamples of the neurons
ZERO_SHOT_KEEP_RATIOS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
SMALL_KEEP = 0.2  # the sentence compares eigenvector with random at keep ratios up to this
SEEDS = Range(1, 1000, integer=True)  # seeds of the random criterion
SAMPLE_SIZES = Range(1, 10**6, integer=True)
RESAMPLES = Range(1, 100_000, integer=True)
_LOGIT_BUDGET = 2**24  # floats of ablated logits held at once (64 MiB)


class AnalysisStopped(Exception):
    """The ``stop`` event was set: the analysis ended early and has no result."""


def _check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise AnalysisStopped("Stopped.")


def _report(progress: ProgressCallback | None, done: int, total: int, message: str) -> None:
    if progress is not None:
        progress(done, total, message)


# ----------------------------------------------------------------------------- the trained baseline


@dataclass
class TrainedBaseline:
    """The frozen backbone with a new head trained on it once (a baseline run of the engine)."""

    config: FinetuneConfig  # mode "baseline"
    spec: BackboneSpec
    model: nn.Module  # eval mode, on the CPU, with the trained classifier
    pooled: dict[str, Features]  # split -> (classifier inputs, labels): the engine's pooled features
    datasets: dict[str, ImageListDataset]  # split -> images
    summary: RunSummary


def train_baseline(config: FinetuneConfig, *, progress: ProgressCallback | None = None,
                   stop: threading.Event | None = None, feature_cache: FeatureCache | None = None) -> TrainedBaseline:
    """Train a new head on the frozen backbone with the engine (``config`` in mode "baseline"); the prefix
    features come from (and go to) the engine's feature cache. CPruneError with the run's message when it
    fails, ConfigError when the validation split is empty, AnalysisStopped when ``stop`` is set."""
    config = replace(config, mode="baseline")
    job = Finetuner(config, feature_cache)

    def relay(event: MetricEvent) -> None:
        if event.kind == EventKind.PREPARE:
            _report(progress, 0, 0, event.message)
        elif event.kind in (EventKind.START, EventKind.STEP, EventKind.EPOCH):
            _report(progress, event.step, event.total_steps, "Training the new head")

    for _ in job.events(stop, relay):
        pass
    result = job.result()
    if result.status == RunStatus.STOPPED:
        raise AnalysisStopped(result.summary.message)
    if result.status != RunStatus.FINISHED:
        raise CPruneError(result.summary.message)
    if len(job.features["val"][1]) == 0:
        raise ConfigError("The ablation effect is measured on the validation split, which is empty: "
                          "use a validation fraction above 0.")
    return TrainedBaseline(config, result.spec, result.model.eval(), job.features, job.datasets, result.summary)


def prunable_group(model: nn.Module, spec: BackboneSpec, layer: str) -> tuple[PruningGraph, PrunableGroup]:
    """The pruning graph of ``model`` and the group whose neurons ``layer`` has. ConfigError when the
    model has no such layer, or the layer has no neurons of its own (a depthwise convolution follows
    its producer) or cannot be pruned (the classifier, a layer tied to the input or output)."""
    module = get_submodule(model, layer)
    if has_neurons(module) and is_depthwise(module):
        raise ConfigError(f"{layer} is a depthwise convolution: its channels follow the layer that feeds it. "
                          "Choose that layer instead.")
    graph = PruningGraph(model, spec)
    return graph, graph.group_for(layer)


# ----------------------------------------------------------------------------- evaluating removed neurons


def _loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and accuracy over the images (logits ... x N x C, labels N)."""
    flat = logits.reshape(-1, logits.shape[-1]).float()
    repeated = labels.repeat(flat.shape[0] // len(labels))  # row-major: image index varies fastest
    losses = F.cross_entropy(flat, repeated, reduction="none")
    hits = (flat.argmax(1) == repeated).float()
    return losses.reshape(logits.shape[:-1]).mean(-1), hits.reshape(logits.shape[:-1]).mean(-1)


class LayerAblator:
    """The trained model's validation loss and accuracy with any set of one layer's neurons removed.

    ``evaluate(keep)`` takes a boolean mask of the ``n_neurons`` neurons (True: kept);
    ``remove_each(neurons)`` removes each listed neuron alone. ``exhaustive`` says whether measuring
    every neuron is cheap (one operation) or a forward pass each.
    """

    method: str = ""  # "pooled" or "forward"
    exhaustive: bool = False

    def __init__(self, layer: str, group: PrunableGroup, n_images: int):
        self.layer, self.group, self.n_images = layer, group, n_images
        self.n_neurons = group.channels

    def evaluate(self, keep: torch.Tensor) -> tuple[float, float]:
        raise NotImplementedError

    def remove_each(self, neurons: Sequence[int], *, progress: ProgressCallback | None = None,
                    stop: threading.Event | None = None) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def full(self) -> tuple[float, float]:
        """Loss and accuracy with every neuron kept."""
        return self.evaluate(torch.ones(self.n_neurons, dtype=torch.bool))

    def _check_mask(self, keep: torch.Tensor) -> torch.Tensor:
        if keep.shape != (self.n_neurons,) or keep.dtype != torch.bool:
            raise ConfigError(f"A keep mask of {self.layer} is {self.n_neurons} booleans, got {keep.dtype} "
                              f"{tuple(keep.shape)}.")
        return keep


class PooledAblator(LayerAblator):
    """Exact, for a layer whose only consumer is the classifier: the classifier input column j is
    neuron j's pooled feature, so removing j takes ``P[:, j] * W[:, j]`` off every image's logits."""

    method = "pooled"
    exhaustive = True

    def __init__(self, layer: str, group: PrunableGroup, pooled: torch.Tensor, labels: torch.Tensor,
                 classifier: nn.Linear):
        super().__init__(layer, group, len(labels))
        self.pooled, self.labels = pooled.float(), labels
        self.weight = classifier.weight.detach().float().cpu()  # C x n
        self.bias = classifier.bias.detach().float().cpu()
        self.logits = self.pooled @ self.weight.T + self.bias

    def evaluate(self, keep: torch.Tensor) -> tuple[float, float]:
        keep = self._check_mask(keep)
        loss, accuracy = _loss_and_accuracy((self.pooled * keep) @ self.weight.T + self.bias, self.labels)
        return float(loss), float(accuracy)

    def remove_each(self, neurons: Sequence[int], *, progress: ProgressCallback | None = None,
                    stop: threading.Event | None = None) -> tuple[np.ndarray, np.ndarray]:
        neurons = torch.as_tensor(list(neurons), dtype=torch.long)
        n_images, n_classes = self.logits.shape
        chunk = max(1, _LOGIT_BUDGET // (n_images * n_classes))
        losses, accuracies = [], []
        for start in range(0, len(neurons), chunk):
            _check_stop(stop)
            part = neurons[start:start + chunk]
            # k x N x C: the logits with each neuron of the chunk removed in turn.
            ablated = self.logits[None] - self.pooled[:, part].T[:, :, None] * self.weight[:, part].T[:, None, :]
            loss, accuracy = _loss_and_accuracy(ablated, self.labels)
            losses.append(loss)
            accuracies.append(accuracy)
            _report(progress, min(start + chunk, len(neurons)), len(neurons), f"Removing each neuron of {self.layer}")
        if not losses:
            return np.empty(0), np.empty(0)
        return torch.cat(losses).numpy().astype(float), torch.cat(accuracies).numpy().astype(float)


class ForwardAblator(LayerAblator):
    """Exact for any prunable layer: the rest of the network runs on cached inputs, with the removed
    channels zeroed at the inputs of their consumers (the layers that read them)."""

    method = "forward"
    exhaustive = False

    def __init__(self, layer: str, group: PrunableGroup, rest: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                 consumers: list[tuple[nn.Module, int]], device: torch.device):
        super().__init__(layer, group, len(labels))
        self.rest, self.inputs, self.labels, self.device = rest.eval(), inputs, labels, device
        self.consumers = consumers  # (module, input entries per channel: > 1 after a flatten)

    def evaluate(self, keep: torch.Tensor) -> tuple[float, float]:
        mask = self._check_mask(keep).float().to(self.device)
        hooks = [module.register_forward_pre_hook(self._zeroing_hook(mask, per_channel))
                 for module, per_channel in self.consumers]
        try:
            with torch.no_grad():
                logits = torch.cat([self.rest(self.inputs[start:start + FEATURE_BATCH_SIZE].to(self.device)).float().cpu()
                                    for start in range(0, len(self.inputs), FEATURE_BATCH_SIZE)])
        finally:
            for hook in hooks:
                hook.remove()
        loss, accuracy = _loss_and_accuracy(logits, self.labels)
        return float(loss), float(accuracy)

    @staticmethod
    def _zeroing_hook(mask: torch.Tensor, per_channel: int):
        def hook(module: nn.Module, args: tuple):
            x = args[0]
            if isinstance(module, nn.Conv2d):
                return (x * mask.view(1, -1, 1, 1),) + args[1:]
            return (x * mask.repeat_interleave(per_channel),) + args[1:]  # a Linear's flattened input

        return hook

    def remove_each(self, neurons: Sequence[int], *, progress: ProgressCallback | None = None,
                    stop: threading.Event | None = None) -> tuple[np.ndarray, np.ndarray]:
        neurons = list(neurons)
        which = f"a sample of {len(neurons):,} of the {self.n_neurons:,}" if len(neurons) < self.n_neurons else "all"
        message = f"Removing each neuron of {self.layer} ({which} neurons; a forward pass each)"
        losses, accuracies = np.empty(len(neurons)), np.empty(len(neurons))
        for i, neuron in enumerate(neurons):
            _check_stop(stop)
            keep = torch.ones(self.n_neurons, dtype=torch.bool)
            keep[neuron] = False
            losses[i], accuracies[i] = self.evaluate(keep)
            _report(progress, i + 1, len(neurons), message)
        return losses, accuracies


def _rest_cut(model: nn.Module, group: PrunableGroup) -> str:
    """Where the rest of the network starts for ``group``: at its first module when every container
    above that is an ``nn.Sequential``, else at the outermost container above it that is not one
    (the children of a block with a skip connection are not a chain, so no cut falls among them)."""
    order = {name: index for index, (name, _) in enumerate(model.named_modules())}
    first = min((effect.module for effect in group.effects), key=order.__getitem__)
    parts = first.split(".")
    depth = 1
    while depth < len(parts) and isinstance(model.get_submodule(".".join(parts[:depth])), nn.Sequential):
        depth += 1
    return ".".join(parts[:depth])


def _consumers(model: nn.Module, group: PrunableGroup) -> list[GroupEffect]:
    """The layers that read the group's channels; ConfigError when one reads other channels too (a
    concatenation), which zeroing by channel index would get wrong."""
    consumers = [effect for effect in group.effects if effect.dim == "in"]
    for effect in consumers:
        module = model.get_submodule(effect.module)
        inputs = module.in_channels if isinstance(module, nn.Conv2d) else module.in_features
        if inputs != group.channels * effect.per_channel:
            raise ConfigError(f"{effect.module} reads {inputs} inputs, not only the {group.channels} channels of "
                              f"{group.root}: ablating this layer is not supported.")
    return consumers


def layer_ablator(trained: TrainedBaseline, graph: PruningGraph, group: PrunableGroup, layer: str | None = None, *,
                  progress: ProgressCallback | None = None, stop: threading.Event | None = None,
                  feature_cache: FeatureCache | None = None) -> LayerAblator:
    """The ablator of ``group`` (of ``layer``, for messages) on the trained baseline's validation split:
    a ``PooledAblator`` when the classifier is the group's only consumer, else a ``ForwardAblator``
    (whose rest-of-network inputs are computed once, through the engine's feature cache; it moves the
    model to the config's device)."""
    layer = layer or group.root
    spec, config, model = trained.spec, trained.config, trained.model
    consumers = _consumers(model, group)
    if consumers == [GroupEffect(spec.classifier, "in", 1)]:
        pooled, labels = trained.pooled["val"]
        return PooledAblator(layer, group, pooled, labels, get_submodule(model, spec.classifier))
    cut = _rest_cut(model, group)
    device = resolve_device(config.device)
    model.to(device)
    prefix, rest = split_model(model, replace(spec, suffix_start=cut))
    image_size = config.image_size or spec.input_size
    steps = cached_prefix_features(feature_cache if feature_cache is not None else FEATURE_CACHE, prefix,
                                   trained.datasets["val"], build_transform(image_size, spec.mean, spec.std, train=False),
                                   backbone=config.backbone, weights=weights_id(config.weights, config.checkpoint),
                                   cut=cut, image_size=image_size, precision=Precision(device),
                                   stop=stop or threading.Event(), split="val", disk=config.disk_cache)
    while True:
        try:
            batch, batches = next(steps)
        except StopIteration as done:
            features = done.value
            break
        _report(progress, batch, batches, f"Computing the inputs of {cut} on the validation split")
    if features is None:
        raise AnalysisStopped("Stopped while computing features.")
    inputs, labels = features
    return ForwardAblator(layer, group, rest, inputs, labels,
                          [(model.get_submodule(e.module), e.per_channel) for e in consumers], device)


# ----------------------------------------------------------------------------- effects, scores, correlations


def sample_neurons(n_neurons: int, size: int, seed: int = 0) -> np.ndarray:
    """``size`` distinct neuron indices drawn with ``seed``, sorted; all of them when ``size`` >= n."""
    SAMPLE_SIZES.check(size, "sample size")
    if size >= n_neurons:
        return np.arange(n_neurons)
    return np.sort(np.random.default_rng(seed).choice(n_neurons, size, replace=False))


@dataclass
class AblationResult:
    """Each measured neuron's ablation effect on the validation split (no retraining)."""

    layer: str
    method: str  # "pooled": one operation on the cached pooled features; "forward": a forward pass each
    n_neurons: int  # neurons of the layer
    neurons: np.ndarray  # indices of the measured neurons (sorted): all of them, or a sample
    delta_loss: np.ndarray  # validation loss with the neuron removed minus the full model's: the importance
    delta_acc: np.ndarray  # validation accuracy with the neuron removed minus the full model's
    full_loss: float
    full_acc: float
    n_images: int  # validation images

    @property
    def sampled(self) -> bool:
        return len(self.neurons) < self.n_neurons


def ablation_effects(ablator: LayerAblator, neurons: Sequence[int] | None = None, *,
                     progress: ProgressCallback | None = None,
                     stop: threading.Event | None = None) -> AblationResult:
    """Remove each of ``neurons`` (None: every neuron) alone and measure the change. A neuron that
    nothing downstream reads (zero pooled feature, or zero consumer weights) has effect exactly 0."""
    neurons = np.arange(ablator.n_neurons) if neurons is None else np.asarray(sorted(set(int(i) for i in neurons)))
    if len(neurons) and not (neurons[0] >= 0 and neurons[-1] < ablator.n_neurons):
        raise ConfigError(f"Neuron indices of {ablator.layer} must lie in 0..{ablator.n_neurons - 1}.")
    full_loss, full_acc = ablator.full()
    losses, accuracies = ablator.remove_each(neurons.tolist(), progress=progress, stop=stop)
    return AblationResult(ablator.layer, ablator.method, ablator.n_neurons, neurons, losses - full_loss,
                          accuracies - full_acc, full_loss, full_acc, ablator.n_images)


def criterion_scores(graph: PruningGraph, group: PrunableGroup, criteria: Iterable[str] = tuple(CRITERIA), *,
                     tau: float = DEFAULT_TAU, seeds: int = 5) -> dict[str, np.ndarray]:
    """Criterion -> scores (runs x neurons; higher: keep), exactly what pruning ranks the group by: one
    row for a deterministic criterion, one per seed 0..seeds-1 for ``random``."""
    SEEDS.check(seeds, "seeds")
    scores = {}
    for name in criteria:
        choose(name, CRITERIA, "criterion")
        runs = range(seeds) if CRITERIA[name] is RandomScores else [0]
        scores[name] = np.stack([graph.group_scores(group, make_criterion(name, tau, seed)).double().numpy()
                                 for seed in runs])
    return scores


@dataclass
class Correlation:
    """Spearman's rho between a criterion's scores and the neurons' importance (delta loss).

    For ``random``, ``spearman`` is the mean over seeds and the interval pools the seeds' bootstrap
    resamples. NaN where undefined: constant scores or effects, or fewer than 3 measured neurons.
    """

    criterion: str
    spearman: float
    ci_low: float  # 95% bootstrap percentile interval over resampled neurons
    ci_high: float
    per_seed: list[float]  # rho per scores row (one per seed for random)


def _centred_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks within each row (ties: average rank, as spearmanr), minus the row's mean rank."""
    ranks = stats.rankdata(values, axis=1)
    return ranks - ranks.mean(1, keepdims=True)


def _rank_correlation(x_ranks: np.ndarray, y_ranks: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair of centred ranks: Spearman's rho, NaN where a row is constant."""
    denominator = np.sqrt((x_ranks * x_ranks).sum(1) * (y_ranks * y_ranks).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (x_ranks * y_ranks).sum(1) / denominator, np.nan)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.spearmanr(x, y).statistic)


def criterion_correlations(result: AblationResult, scores: dict[str, np.ndarray], *,
                           resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict[str, Correlation]:
    """Each criterion's Spearman rho with the importance of the measured neurons, with a 95% bootstrap
    interval: the neurons are resampled with replacement ``resamples`` times (seeded, the same
    resamples for every criterion)."""
    RESAMPLES.check(resamples, "bootstrap resamples")
    importance = result.delta_loss
    n = len(importance)
    if n < 3:
        return {name: Correlation(name, math.nan, math.nan, math.nan, [math.nan] * len(rows))
                for name, rows in scores.items()}
    resampled = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    importance_ranks = _centred_ranks(importance[resampled])
    correlations = {}
    for name, rows in scores.items():
        measured = rows[:, result.neurons]
        per_seed = [_spearman(row, importance) for row in measured]
        boot = np.concatenate([_rank_correlation(_centred_ranks(row[resampled]), importance_ranks) for row in measured])
        defined = boot[~np.isnan(boot)]
        low, high = np.percentile(defined, [2.5, 97.5]) if len(defined) else (math.nan, math.nan)
        rho = float(np.mean(per_seed)) if not np.isnan(per_seed).any() else math.nan
        correlations[name] = Correlation(name, rho, float(low), float(high), per_seed)
    return correlations


@dataclass
class ZeroShotCurve:
    """Validation accuracy and loss at each keep ratio before any fine-tuning: the trained head on the
    neurons each criterion keeps, exactly as pruning keeps them."""

    keep_ratios: np.ndarray  # r
    kept: np.ndarray  # r: neurons kept at each ratio (keep_count)
    accuracy: dict[str, np.ndarray]  # criterion -> runs x r (one row per seed for random)
    loss: dict[str, np.ndarray]
    full_acc: float

    def band(self, criterion: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean, min and max accuracy over the criterion's runs (seeds) at each keep ratio."""
        rows = self.accuracy[criterion]
        return rows.mean(0), rows.min(0), rows.max(0)


def zero_shot_curve(ablator: LayerAblator, scores: dict[str, np.ndarray],
                    keep_ratios: Sequence[float] = ZERO_SHOT_KEEP_RATIOS, *, progress: ProgressCallback | None = None,
                    stop: threading.Event | None = None) -> ZeroShotCurve:
    """Accuracy with only the kept neurons, ``kept_indices(scores, keep_count(n, ratio))``, per
    criterion run and ratio; a kept set two runs share is evaluated once."""
    ratios = np.array([KEEP.check(ratio, "keep ratio") for ratio in keep_ratios], dtype=float)
    counts = np.array([keep_count(ablator.n_neurons, ratio) for ratio in ratios])
    measured: dict[bytes, tuple[float, float]] = {}
    total = sum(len(rows) for rows in scores.values()) * len(ratios)
    accuracy, loss = {}, {}
    done = 0
    for name, rows in scores.items():
        accuracy[name], loss[name] = np.empty((len(rows), len(ratios))), np.empty((len(rows), len(ratios)))
        for run, row in enumerate(rows):
            for column, count in enumerate(counts):
                _check_stop(stop)
                keep = torch.zeros(ablator.n_neurons, dtype=torch.bool)
                keep[kept_indices(torch.from_numpy(row), int(count))] = True
                key = keep.numpy().tobytes()
                if key not in measured:
                    measured[key] = ablator.evaluate(keep)
                loss[name][run, column], accuracy[name][run, column] = measured[key]
                done += 1
                _report(progress, done, total, "Zero-shot pruning curve")
    return ZeroShotCurve(ratios, counts, accuracy, loss, ablator.full()[1])


# ----------------------------------------------------------------------------- the sentence


def _interval(correlation: Correlation) -> str:
    return f"rho {correlation.spearman:+.2f}, 95% CI [{correlation.ci_low:+.2f}, {correlation.ci_high:+.2f}]"


def _eigenvector_clause(correlation: Correlation, best: bool) -> str:
    """What eigenvector centrality's interval says; ``best``: it was just named as the best predictor."""
    if math.isnan(correlation.spearman):
        return "eigenvector centrality's correlation is undefined (constant scores or effects)"
    if correlation.ci_low > 0:
        meaning = "excludes 0: more central neurons matter more"
    elif correlation.ci_high < 0:
        meaning = "excludes 0: more central neurons matter less"
    else:
        meaning = "includes 0: no evidence that centrality tells which neurons matter"
    return f"its interval {meaning}" if best else f"eigenvector centrality has {_interval(correlation)}, which {meaning}"


def _curve_clause(curve: ZeroShotCurve) -> str:
    """Where eigenvector's zero-shot accuracy lies against random's range at the small keep ratios."""
    small = [i for i, ratio in enumerate(curve.keep_ratios) if ratio <= SMALL_KEEP + 1e-9]
    if not small:
        return ""
    eigen = curve.accuracy["eigenvector"][0]
    _, low, high = curve.band("random")
    seeds = len(curve.accuracy["random"])
    places = ["above" if eigen[i] > high[i] else "below" if eigen[i] < low[i] else "within" for i in small]
    ratios = [f"{curve.keep_ratios[i]:g}" for i in small]
    example = small[len(small) // 2]
    detail = (f"{100 * eigen[example]:.1f}% vs {100 * low[example]:.1f}-{100 * high[example]:.1f}% at keep "
              f"{curve.keep_ratios[example]:g}")
    if len(set(places)) == 1:
        span = f"at keep {ratios[0]}" if len(ratios) == 1 else f"at every keep ratio from {ratios[0]} to {ratios[-1]}"
        where = f"{places[0]} random pruning's range over {seeds} seeds {span}"
    else:
        at = {place: [ratio for p, ratio in zip(places, ratios) if p == place] for place in dict.fromkeys(places)}
        where = f"{places[0]} random pruning's range over {seeds} seeds at keep {' and '.join(at[places[0]])}, " + \
            ", ".join(f"{place} it at keep {' and '.join(ratios_at)}" for place, ratios_at in list(at.items())[1:])
    return f"before any fine-tuning, keeping the most central neurons gives validation accuracy {where} ({detail})"


def summary_sentence(result: AblationResult, correlations: dict[str, Correlation], curve: ZeroShotCurve) -> str:
    """One sentence stating what the numbers show for this layer: how much single neurons matter, the
    criterion that best predicts the ablation effect, whether eigenvector centrality's interval
    excludes 0, and where its zero-shot accuracy lies against the random band at keep ratios up to
    0.2 (each part only when the criteria it needs were computed)."""
    measured = (f"a sample of {len(result.neurons):,} of the {result.n_neurons:,} neurons" if result.sampled
                else f"all {result.n_neurons:,} neurons")
    harmful = int((result.delta_loss > 0).sum())
    parts = [f"Of {measured} of {result.layer}, {harmful:,} raise the validation loss when removed alone "
             f"(largest rise {result.delta_loss.max(initial=0.0):.4f}, median change {np.median(result.delta_loss):+.5f})"]
    ranked = sorted((c for c in correlations.values() if c.criterion != "random" and not math.isnan(c.spearman)),
                    key=lambda c: c.spearman, reverse=True)
    best = ranked[0] if ranked else None
    if best is not None:
        parts.append(f"the criterion whose scores correlate best with that effect is {best.criterion} ({_interval(best)})")
    else:
        parts.append("no criterion's correlation with that effect is defined")
    if "eigenvector" in correlations:
        parts.append(_eigenvector_clause(correlations["eigenvector"], best is not None and best.criterion == "eigenvector"))
    if {"eigenvector", "random"} <= set(curve.accuracy):
        parts.append(_curve_clause(curve))
    return "; ".join(part for part in parts if part) + "."


# ----------------------------------------------------------------------------- all of it


@dataclass
class ImportanceAnalysis:
    """Everything ``analyse_importance`` computed, for the report, the JSON and the app's figures."""

    config: FinetuneConfig  # the baseline run that trained the head
    layer: str
    baseline: RunSummary
    result: AblationResult
    scores: dict[str, np.ndarray]  # criterion -> runs x n_neurons
    correlations: dict[str, Correlation]
    curve: ZeroShotCurve
    sentence: str
    tau: float
    seeds: int
    resamples: int


def analyse_importance(config: FinetuneConfig, layer: str | None = None, *, criteria: Iterable[str] = tuple(CRITERIA),
                       tau: float = DEFAULT_TAU, seeds: int = 5, sample_size: int = DEFAULT_SAMPLE_SIZE,
                       resamples: int = DEFAULT_RESAMPLES, keep_ratios: Sequence[float] = ZERO_SHOT_KEEP_RATIOS,
                       progress: ProgressCallback | None = None, stop: threading.Event | None = None,
                       feature_cache: FeatureCache | None = None) -> ImportanceAnalysis:
    """Train the head once (``config``'s backbone, dataset, split and seed), then measure ``layer``'s
    neurons (None: the backbone's head layer): every neuron when that is one operation, else a
    seeded sample of ``sample_size``. Every setting and the layer are checked before any training
    (ConfigError)."""
    criteria = list(criteria)
    if not criteria:
        raise ConfigError("Choose at least one criterion.")
    for name in criteria:
        choose(name, CRITERIA, "criterion")
    SEEDS.check(seeds, "seeds")
    SAMPLE_SIZES.check(sample_size, "sample size")
    RESAMPLES.check(resamples, "bootstrap resamples")
    TAU.check(tau, "tau")
    for ratio in keep_ratios:
        KEEP.check(ratio, "keep ratio")
    config = replace(config, mode="baseline")
    config.validate()
    spec = get_spec(config.backbone)
    layer = layer or spec.head_layer
    prunable_group(load_backbone(config.backbone, config.weights, config.checkpoint).model, spec, layer)

    trained = train_baseline(config, progress=progress, stop=stop, feature_cache=feature_cache)
    graph, group = prunable_group(trained.model, spec, layer)
    ablator = layer_ablator(trained, graph, group, layer, progress=progress, stop=stop, feature_cache=feature_cache)
    neurons = None if ablator.exhaustive else sample_neurons(ablator.n_neurons, sample_size, config.seed)
    result = ablation_effects(ablator, neurons, progress=progress, stop=stop)
    scores = criterion_scores(graph, group, criteria, tau=tau, seeds=seeds)
    correlations = criterion_correlations(result, scores, resamples=resamples, seed=config.seed)
    curve = zero_shot_curve(ablator, scores, keep_ratios, progress=progress, stop=stop)
    return ImportanceAnalysis(trained.config, layer, trained.summary, result, scores, correlations, curve,
                              summary_sentence(result, correlations, curve), tau, seeds, resamples)
