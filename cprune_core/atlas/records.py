"""Where atlas results are kept: JSON files in a folder, by default ``cache_home()/atlas``.

- ``layers/<key>.json``: one layer's ``LayerAtlas``, written as soon as the layer is measured, so a run
  killed midway resumes from its finished layers. The key (``layer_key``) is the sha256 of the baseline
  configuration, the trained head's fingerprint, the layer and the settings its numbers depend on: the same
  layer measured the same way, whichever command or app asked.
- ``runs/<configuration key>.json``: the latest complete atlas run of a configuration (``configuration_key``:
  the baseline configuration, the settings and the layers chosen), replaced by each later run of it.
  ``AtlasRecords.latest`` reads it; ``AtlasRecords.runs`` lists every configuration's latest run.

A file that cannot be read or is not what this version writes is treated as absent (measured again).
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from ..paths import cache_home
from ..schema import FinetuneConfig
from .layer import LayerAtlas
from .result import AtlasResult
from .settings import AtlasSettings

__all__ = ["AtlasRecords", "RecordedAtlas", "layer_key", "configuration_key", "ATLAS_VERSION"]

ATLAS_VERSION = 1  # part of every key: a change to what a layer's numbers mean changes it
# What does not change the atlas: the machine's device and logging, and the pruning settings (its head is a baseline run).
_NOT_MEASURED = ("device", "log_every", "disk_cache", "mode", "criterion", "keep", "tau", "layers")


def _digest(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _configuration(config: FinetuneConfig) -> dict:
    return {name: value for name, value in config.to_dict().items() if name not in _NOT_MEASURED}


def layer_key(config: FinetuneConfig, head: str, layer: str, settings: AtlasSettings) -> str:
    """sha256 of what one layer's numbers depend on (see the module docstring)."""
    return _digest({"version": ATLAS_VERSION, "config": config.to_dict(), "head": head, "layer": layer,
                    "settings": settings.identity()})


def configuration_key(config: FinetuneConfig, settings: AtlasSettings) -> str:
    """sha256 of an atlas run's configuration: what the app asks "the latest run of" (the machine's device
    and logging, and the pruning settings a baseline ignores, left out)."""
    return _digest({"version": ATLAS_VERSION, "config": _configuration(config), "settings": asdict(settings)})


@dataclass(frozen=True)
class RecordedAtlas:
    """One configuration's latest run, as ``AtlasRecords.runs`` lists it."""

    path: Path
    backbone: str
    dataset: str
    dataset_root: str | None
    layers: int
    created: float


class AtlasRecords:
    """The results folder (``folder`` None: ``cache_home()/atlas``, read when used)."""

    def __init__(self, folder: str | Path | None = None):
        self._folder = Path(folder) if folder is not None else None

    @property
    def folder(self) -> Path:
        return self._folder or cache_home() / "atlas"

    def _write(self, path: Path, values: dict) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        temporary.write_text(json.dumps(values))
        os.replace(temporary, path)
        return path

    @staticmethod
    def _read(path: Path) -> dict | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def layer(self, key: str) -> LayerAtlas | None:
        """The layer measured under ``key``, or None."""
        values = self._read(self.folder / "layers" / f"{key}.json")
        try:
            return LayerAtlas.from_dict(values) if values is not None and values.get("key") == key else None
        except (KeyError, TypeError, ValueError):
            return None

    def put_layer(self, layer: LayerAtlas) -> Path:
        return self._write(self.folder / "layers" / f"{layer.key}.json", layer.to_dict())

    def put_run(self, result: AtlasResult) -> Path:
        """Record ``result`` as its configuration's latest run."""
        return self._write(self.folder / "runs" / f"{configuration_key(result.config, result.settings)}.json",
                           result.to_dict())

    def latest(self, config: FinetuneConfig, settings: AtlasSettings) -> AtlasResult | None:
        """The latest complete run of this configuration, or None."""
        return self._result(self.folder / "runs" / f"{configuration_key(config, settings)}.json")

    def _result(self, path: Path) -> AtlasResult | None:
        values = self._read(path)
        try:
            return AtlasResult.from_dict(values) if values is not None else None
        except (KeyError, TypeError, ValueError):
            return None

    def runs(self, backbone: str | None = None) -> list[RecordedAtlas]:
        """Every configuration's latest run (of ``backbone``, when given), newest first."""
        found = []
        for path in (self.folder / "runs").glob("*.json"):
            values = self._read(path)
            try:
                config = values["config"]
                entry = RecordedAtlas(path, config["backbone"], config["dataset"], config.get("dataset_root"),
                                      len(values["layers"]), float(values.get("created", 0.0)))
            except (KeyError, TypeError, ValueError):
                continue
            if backbone is None or entry.backbone == backbone:
                found.append(entry)
        return sorted(found, key=lambda entry: entry.created, reverse=True)

    def read(self, entry: RecordedAtlas) -> AtlasResult | None:
        """The run ``runs`` listed (None when it was damaged or removed since)."""
        return self._result(entry.path)
