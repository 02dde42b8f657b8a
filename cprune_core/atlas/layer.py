"""One layer of the atlas: everything measured in it, as one task (``measure_layer``) on cached inputs.

In one layer, with the trained head and no retraining: each sampled neuron's ablation effect and each
criterion's Spearman rho with it (the ablation package's ablators and statistics), the rho's permutation
p-value; group ablation at each keep ratio for every criterion (random: one row per seed) with the test
against random's seeds; and the redundancy and coverage of every kept set.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from ..ablation import (AblationResult, Correlation, ForwardAblator, LayerAblator, PooledAblator, ZeroShotCurve,
                        ablation_effects, consumers, criterion_correlations, sample_neurons, zero_shot_curve)
from ..cut import cut_model
from ..device import resolve_device
from ..features import Features
from ..progress import ProgressCallback
from ..pruning import GroupEffect, PrunableGroup, kept_indices
from ..registry import get_spec, get_submodule
from .geometry import group_geometry, group_similarities
from .settings import AtlasSettings
from .significance import prediction_p, rho_permutation_p

__all__ = ["LayerTask", "LayerAtlas", "measure_layer", "is_pooled", "json_values"]


def is_pooled(model: torch.nn.Module, spec_name: str, group: PrunableGroup) -> bool:
    """Whether the classifier is the group's only consumer: then every neuron is one operation on the
    pooled features (``PooledAblator``), else a forward pass each (``ForwardAblator``)."""
    return consumers(model, group) == [GroupEffect(get_spec(spec_name).classifier, "in", 1)]


@dataclass
class LayerTask:
    """What one layer's task needs besides the trained model: the layer's group and scores, and the inputs
    of the rest of the network at ``cut`` on the validation images (the classifier's inputs when ``cut`` is
    None)."""

    layer: str
    position: int  # in the atlas's network order, from 0
    depth: int  # 1-based position among every Conv2d/Linear layer of the network
    kind: str
    group: PrunableGroup
    backbone: str
    device: str
    cut: str | None
    features: Features
    scores: dict[str, np.ndarray]  # criterion -> runs x neurons
    settings: AtlasSettings
    seed: int
    key: str


@dataclass
class LayerAtlas:
    """Everything the atlas measured in one layer (the JSON form: ``to_dict`` / ``from_dict``)."""

    layer: str
    position: int
    depth: int
    kind: str
    coupled: list[str]  # the other layers whose channels go with this layer's (a residual stream)
    result: AblationResult  # single-neuron effects of the measured neurons
    correlations: dict[str, Correlation]
    rho_p: dict[str, float]  # permutation p-value of rho against 0 (NaN for random)
    curve: ZeroShotCurve  # group ablation at the keep ratios: accuracy and loss, runs x ratios
    group_p: dict[str, list[float]]  # per keep ratio: accuracy against random's seeds (NaN for random)
    redundancy: dict[str, np.ndarray]  # runs x ratios
    coverage: dict[str, np.ndarray]
    seconds: float
    key: str

    @property
    def neurons(self) -> int:
        return self.result.n_neurons

    @property
    def label(self) -> str:
        """"12 blocks.3.project.1 (Conv2d 1x1, residual x2, 40)": depth, name, kind (shortened), neurons."""
        kind = self.kind.replace("residual stream of ", "residual x").replace(" layers", "")
        return f"{self.depth} {self.layer} ({kind}, {self.neurons:,})"

    def to_dict(self) -> dict:
        """Plain JSON values (NaN as None)."""
        return json_values({**{name: getattr(self, name) for name in ("layer", "position", "depth", "kind", "coupled",
                                                                  "rho_p", "group_p", "redundancy", "coverage",
                                                                  "seconds", "key")},
                       "result": asdict(self.result), "correlations": {k: asdict(c) for k, c in self.correlations.items()},
                       "curve": asdict(self.curve)})

    @classmethod
    def from_dict(cls, values: dict) -> LayerAtlas:
        def arrays(mapping: dict) -> dict[str, np.ndarray]:
            return {name: np.array(rows, dtype=float) for name, rows in mapping.items()}  # None -> NaN

        result = {**values["result"], **{name: np.array(values["result"][name], dtype=float)
                                         for name in ("delta_loss", "delta_acc")}}
        result["neurons"] = np.array(result["neurons"], dtype=int)
        curve = {**values["curve"], "keep_ratios": np.array(values["curve"]["keep_ratios"], dtype=float),
                 "kept": np.array(values["curve"]["kept"], dtype=int), "accuracy": arrays(values["curve"]["accuracy"]),
                 "loss": arrays(values["curve"]["loss"])}
        correlations = {name: Correlation(c["criterion"], _number(c["spearman"]), _number(c["ci_low"]),
                                          _number(c["ci_high"]), [_number(r) for r in c["per_seed"]])
                        for name, c in values["correlations"].items()}
        return cls(values["layer"], values["position"], values["depth"], values["kind"], list(values["coupled"]),
                   AblationResult(**result), correlations, {k: _number(v) for k, v in values["rho_p"].items()},
                   ZeroShotCurve(**curve), {k: [_number(p) for p in ps] for k, ps in values["group_p"].items()},
                   arrays(values["redundancy"]), arrays(values["coverage"]), values["seconds"], values["key"])


def _number(value) -> float:
    return math.nan if value is None else float(value)


def json_values(value):
    """numpy to lists and numbers, NaN and infinities to None, recursively."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): json_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_values(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _ablator(model: torch.nn.Module, task: LayerTask) -> LayerAblator:
    """The layer's ablator on the task's inputs (see ``ablation.layer_ablator``, which computes its own)."""
    values = task.features
    if task.cut is None:
        return PooledAblator(task.layer, task.group, values[0], values[1],
                             get_submodule(model, get_spec(task.backbone).classifier))
    device = resolve_device(task.device)
    model.to(device)
    rest = cut_model(model, replace(get_spec(task.backbone), suffix_start=task.cut))[1]
    readers = [(model.get_submodule(effect.module), effect.per_channel) for effect in consumers(model, task.group)]
    return ForwardAblator(task.layer, task.group, rest, values[0], values[1], readers, device)


def _kept_mask(row: np.ndarray, count: int) -> torch.Tensor:
    keep = torch.zeros(len(row), dtype=torch.bool)
    keep[kept_indices(torch.from_numpy(row), count)] = True
    return keep


def _geometry(model: torch.nn.Module, task: LayerTask, curve: ZeroShotCurve) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Redundancy and coverage of every kept set of the curve (criterion run x keep ratio)."""
    similarities = group_similarities(model, task.group)
    redundancy, coverage = {}, {}
    for name, rows in task.scores.items():
        redundancy[name], coverage[name] = np.empty((len(rows), len(curve.kept))), np.empty((len(rows), len(curve.kept)))
        for run, row in enumerate(rows):
            for column, count in enumerate(curve.kept):
                geometry = group_geometry(similarities, _kept_mask(row, int(count)))
                redundancy[name][run, column], coverage[name][run, column] = geometry.redundancy, geometry.coverage
    return redundancy, coverage


def measure_layer(model: torch.nn.Module, task: LayerTask, *, progress: ProgressCallback | None = None,
                  stop: threading.Event | None = None) -> LayerAtlas:
    """Measure one layer of ``model`` (eval mode, the trained head; see the module docstring). ``progress``
    and ``stop`` as in the ablation package. The model is left as it was (hooks removed)."""
    started = time.perf_counter()
    settings = task.settings
    # Ray hands numpy arrays over read-only; torch.from_numpy (in the kept sets) warns about those.
    task = replace(task, scores={name: np.array(rows) for name, rows in task.scores.items()})
    ablator = _ablator(model, task)
    neurons = None if ablator.exhaustive else sample_neurons(ablator.n_neurons, settings.sample_for(ablator.n_neurons),
                                                             task.seed)
    result = ablation_effects(ablator, neurons, progress=progress, stop=stop)
    correlations = criterion_correlations(result, task.scores, resamples=settings.resamples, seed=task.seed)
    rho_p = rho_permutation_p(result, task.scores, permutations=settings.permutations, seed=task.seed)
    curve = zero_shot_curve(ablator, task.scores, settings.keep_ratios, stop=stop)
    random_runs = curve.accuracy["random"]
    group_p = {name: [math.nan if name == "random" or len(rows) > 1 else prediction_p(rows[0, c], random_runs[:, c])
                      for c in range(len(curve.keep_ratios))] for name, rows in curve.accuracy.items()}
    redundancy, coverage = _geometry(model, task, curve)
    coupled = [name for name in task.group.layers if name != task.layer]
    return LayerAtlas(task.layer, task.position, task.depth, task.kind, coupled, result, correlations, rho_p, curve,
                      group_p, redundancy, coverage, time.perf_counter() - started, task.key)
