"""One layer of the atlas: what its task needs (``LayerTask``) and everything measured in it (``LayerAtlas``),
with its JSON form. The measuring itself is ``measure.measure_layer``."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from ..ablation import AblationResult, Correlation, Heads, ZeroShotCurve
from ..features import Features
from ..pruning import PrunableGroup
from ..stats import PValue, Reliability
from .settings import AtlasSettings

__all__ = ["LayerTask", "LayerAtlas", "json_values"]


@dataclass
class LayerTask:
    """What one layer's task needs besides the trained model: the layer's group and scores, the heads, and the
    inputs of the rest of the network at ``cut`` on the validation images (the classifier's inputs when ``cut``
    is None)."""

    layer: str
    position: int  # in the atlas's network order, from 0
    depth: int  # 1-based position among every Conv2d/Linear layer of the network
    kind: str
    group: PrunableGroup
    backbone: str
    device: str
    cut: str | None
    features: Features
    heads: Heads
    scores: dict[str, np.ndarray]  # criterion -> runs x neurons (random: one row per seed, up to settings.seeds)
    settings: AtlasSettings
    seed: int
    key: str
    family_size: int  # layers in the atlas: the Holm family each of this layer's tests belongs to


@dataclass
class LayerAtlas:
    """Everything the atlas measured in one layer (the JSON form: ``to_dict`` / ``from_dict``)."""

    layer: str
    position: int
    depth: int
    kind: str
    coupled: list[str]  # the other layers whose channels go with this layer's (a residual stream)
    result: AblationResult  # single-neuron effects of the measured neurons (per image only in memory)
    reliability: Reliability  # split-half reliability of those effects over images, and the ceiling on any rho
    correlations: dict[str, Correlation]
    rho_p: dict[str, PValue]  # permutation test of rho against 0 (undefined for random)
    curve: ZeroShotCurve  # group ablation: accuracy and loss, runs x ratios (random: one row per drawn seed)
    group_p: dict[str, list[PValue]]  # per keep ratio: rank among random kept sets (undefined for random)
    redundancy: dict[str, np.ndarray]  # runs x ratios
    coverage: dict[str, np.ndarray]
    seconds: float
    key: str

    @property
    def neurons(self) -> int:
        return self.result.n_neurons

    @property
    def measured(self) -> int:
        """Neurons whose single ablation was measured."""
        return len(self.result.neurons)

    @property
    def random_draws(self) -> int:
        """Random kept sets drawn per keep ratio (the sequential test stops once every rank is settled)."""
        return len(self.curve.accuracy["random"])

    @property
    def label(self) -> str:
        """"12 blocks.3.project.1 (Conv2d 1x1, residual x2, 40)": depth, name, kind (shortened), neurons."""
        kind = self.kind.replace("residual stream of ", "residual x").replace(" layers", "")
        return f"{self.depth} {self.layer} ({kind}, {self.neurons:,})"

    def to_dict(self) -> dict:
        """Plain JSON values (NaN as None); the per-image effects are left out (they stay in memory)."""
        result = {name: getattr(self.result, name) for name in _RESULT_FIELDS}
        return json_values({
            **{name: getattr(self, name) for name in ("layer", "position", "depth", "kind", "coupled", "redundancy",
                                                      "coverage", "seconds", "key")},
            "result": result, "reliability": asdict(self.reliability),
            "correlations": {k: asdict(c) for k, c in self.correlations.items()},
            "rho_p": {k: asdict(p) for k, p in self.rho_p.items()},
            "group_p": {k: [asdict(p) for p in ps] for k, ps in self.group_p.items()},
            "curve": asdict(self.curve)})

    @classmethod
    def from_dict(cls, values: dict) -> LayerAtlas:
        result = {**values["result"], **{name: np.array(values["result"][name], dtype=float)
                                         for name in ("delta_loss", "delta_acc")}}
        result["neurons"] = np.array(result["neurons"], dtype=int)
        curve = values["curve"]
        curve = {**curve, "keep_ratios": np.array(curve["keep_ratios"], dtype=float),
                 "kept": np.array(curve["kept"], dtype=int),
                 **{name: _arrays(curve[name]) for name in ("accuracy", "loss", "tied")}}
        correlations = {name: Correlation(c["criterion"], *(_number(c[f]) for f in ("spearman", "ci_low", "ci_high")),
                                          [_number(r) for r in c["per_seed"]], _number(c["z_variance"]))
                        for name, c in values["correlations"].items()}
        return cls(values["layer"], values["position"], values["depth"], values["kind"], list(values["coupled"]),
                   AblationResult(**result), _reliability(values["reliability"]), correlations,
                   {k: _p_value(p) for k, p in values["rho_p"].items()}, ZeroShotCurve(**curve),
                   {k: [_p_value(p) for p in ps] for k, ps in values["group_p"].items()},
                   _arrays(values["redundancy"]), _arrays(values["coverage"]), values["seconds"], values["key"])


_RESULT_FIELDS = [f.name for f in fields(AblationResult) if f.name != "per_image"]


def _number(value) -> float:
    return math.nan if value is None else float(value)


def _arrays(mapping: dict) -> dict[str, np.ndarray]:
    return {name: np.array(rows, dtype=float) for name, rows in mapping.items()}  # None -> NaN


def _p_value(values: dict) -> PValue:
    return PValue(_number(values["p"]), int(values["draws"]), int(values["exceedances"]), _number(values["low"]),
                  _number(values["high"]), values["method"])


def _reliability(values: dict) -> Reliability:
    return Reliability(*(_number(values[name]) for name in ("half", "half_sd", "full", "ceiling")),
                       int(values["splits"]), int(values["images"]))


def json_values(value):
    """numpy and torch to lists and numbers, NaN and infinities to None, recursively."""
    if isinstance(value, torch.Tensor):
        value = value.numpy()
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
    if isinstance(value, np.bool_):
        return bool(value)
    return value
