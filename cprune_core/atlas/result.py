"""The whole atlas: every layer's measurements, the tests corrected over layers, and the JSON form."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..schema import FinetuneConfig, RunSummary
from ..stats import holm, minimum_detectable_rho
from .layer import LayerAtlas, json_values
from .settings import AtlasSettings
from .significance import ALPHA, VERDICTS, verdict

__all__ = ["AtlasResult", "Family", "TESTS", "TIED_FLAG"]

TESTS = ("group", "rho")  # accuracy after group ablation against random kept sets; rho against 0
TIED_FLAG = 0.25  # a kept set more than this share of which a tie decided is flagged


@dataclass
class Family:
    """One criterion and one test over every layer of the atlas (in network order): the effect (positive: the
    criterion does better than random), the p-values, Holm's adjusted p-values, the verdicts, and what each layer's
    test could detect (``detectable``: for rho, the minimum detectable |rho| at Holm's first-step level; for the
    group test, the smallest p-value its random draws allow)."""

    criterion: str
    test: str  # "group" (at keep ratio ``keep``) or "rho"
    keep: float | None
    effects: np.ndarray  # group: accuracy minus random's mean accuracy; rho: Spearman's rho
    p: np.ndarray
    adjusted: np.ndarray
    verdicts: list[str]
    detectable: np.ndarray

    def count(self, which: str) -> int:
        return self.verdicts.count(which)


@dataclass
class AtlasResult:
    """Everything one atlas run measured (``to_dict``/``from_dict``: its JSON form, the derived tests included)."""

    config: FinetuneConfig  # the baseline run that trained the first head
    settings: AtlasSettings
    baseline: RunSummary
    head: str  # fingerprint of the trained heads: layers measured with other heads are not reused
    network_layers: int  # Conv2d/Linear layers of the network (the scale of each layer's depth)
    prunable_layers: int  # of the backbone: the atlas covers ``len(layers)`` of them
    layers: list[LayerAtlas]  # in network order
    elapsed_s: float = 0.0
    device: str = ""
    created: float = 0.0  # time.time() when the run ended
    reused: list[str] = field(default_factory=list)  # layers whose results came from an earlier run
    owner: str | None = None  # the app visitor who launched it (never shown); None: the command line, shared

    @property
    def criteria(self) -> list[str]:
        return list(self.layers[0].correlations) if self.layers else list(self.settings.criteria)

    @property
    def backbone(self) -> str:
        return self.config.backbone

    def minimum_detectable_rho(self, layer: LayerAtlas) -> float:
        """The smallest |rho| the layer's test detects with 80% power at Holm's first-step level (alpha / m over
        the m layers of the atlas)."""
        return minimum_detectable_rho(layer.measured, ALPHA / max(len(self.layers), 1))

    def tied(self, layer: LayerAtlas, criterion: str, keep: float) -> float:
        """The share of the criterion's kept set at ``keep`` that a tie decided."""
        column = list(self.settings.keep_ratios).index(keep)
        return float(layer.curve.tied[criterion][0, column])

    def family(self, criterion: str, test: str, keep: float | None = None) -> Family:
        """The tests of ``criterion`` over the layers: ``test`` "rho", or "group" at keep ratio ``keep``
        (default the first of the settings' keep ratios)."""
        if test == "rho":
            effects = np.array([layer.correlations[criterion].spearman for layer in self.layers])
            p = np.array([layer.rho_p[criterion].p for layer in self.layers])
            detectable = np.array([self.minimum_detectable_rho(layer) for layer in self.layers])
        else:
            keep = self.settings.keep_ratios[0] if keep is None else keep
            column = list(self.settings.keep_ratios).index(keep)
            effects = np.array([layer.curve.accuracy[criterion][:, column].mean()
                                - layer.curve.accuracy["random"][:, column].mean() for layer in self.layers])
            p = np.array([layer.group_p[criterion][column].p for layer in self.layers])
            detectable = np.array([2 / (len(layer.curve.accuracy["random"]) + 1) for layer in self.layers])
        adjusted = holm(p)
        return Family(criterion, test, keep if test == "group" else None, effects, p, adjusted,
                      [verdict(a, e, ALPHA) for a, e in zip(adjusted, effects)], detectable)

    def families(self, criterion: str) -> list[Family]:
        """Every test of ``criterion``: group ablation at each keep ratio, then rho."""
        return [self.family(criterion, "group", keep) for keep in self.settings.keep_ratios] + \
            [self.family(criterion, "rho")]

    def to_dict(self) -> dict:
        """The JSON form: the settings, the run, every layer, and each criterion's tests with their verdicts
        (the sentences that say what they show: ``atlas_sentences``)."""
        tests = {criterion: [{"test": f.test, "keep": f.keep, "p": f.p, "adjusted_p": f.adjusted,
                              "verdicts": f.verdicts, "counts": {v: f.count(v) for v in VERDICTS}}
                             for f in self.families(criterion)]
                 for criterion in self.criteria if criterion != "random"}
        return json_values({"config": self.config.to_dict(), "settings": self.settings.to_dict(),
                            "baseline": self.baseline.to_dict(), "head": self.head,
                            "network_layers": self.network_layers, "prunable_layers": self.prunable_layers,
                            "elapsed_s": self.elapsed_s, "device": self.device, "created": self.created,
                            "reused": self.reused, "owner": self.owner, "alpha": ALPHA, "tests": tests,
                            "layers": [layer.to_dict() for layer in self.layers]})

    @classmethod
    def from_dict(cls, values: dict) -> AtlasResult:
        return cls(FinetuneConfig.from_dict(values["config"]), AtlasSettings.from_dict(values["settings"]),
                   RunSummary.from_dict(values["baseline"]), values["head"], values["network_layers"],
                   values["prunable_layers"], [LayerAtlas.from_dict(layer) for layer in values["layers"]],
                   values.get("elapsed_s", 0.0), values.get("device", ""), values.get("created", 0.0),
                   list(values.get("reused", [])), values.get("owner"))

    def layer(self, name: str) -> LayerAtlas:
        for layer in self.layers:
            if layer.layer == name:
                return layer
        raise KeyError(name)

