"""Where atlas results are kept: JSON files in a folder, by default ``cache_home()/atlas``.

- ``layers/<key>.json``: one layer's ``LayerAtlas``, written as soon as the layer is measured, so a run
  killed midway resumes from its finished layers. The key (``layer_key``) is the sha256 of the baseline
  configuration, the trained head's fingerprint, the layer and the settings its numbers depend on: the same
  layer measured the same way, whichever command or app visitor asked.
- ``runs/<configuration key>.json``: the latest complete atlas run of a configuration (``configuration_key``:
  the baseline configuration, the settings and the layers chosen), replaced by each later run of it.
  ``AtlasRecords.latest`` reads it; ``AtlasRecords.runs`` lists every configuration's latest run.

Owners. A run launched by an app visitor is theirs (``owner``: their private id; None: the command line's,
a shared result). An owner's layers and runs are kept apart from the shared ones (their files are named
with a digest of the owner, and a run's JSON says whose it is): ``runs(access=...)`` lists only what that
``access.Access`` sees (an owner: the shared runs and their own), and a run of an owner reuses only shared
layers and its own.

Reference atlases: the report of the command line's full atlas (``report.write_atlas_report`` into docs/) writes
each backbone's run as ``atlas-<backbone>.json.gz`` beside it; those files are shipped in the repository, and
``runs`` lists them (``reference``: read-only, shared with every visitor) before anyone has measured anything.

A file that cannot be read or is not what this version writes is treated as absent (measured again).
"""
from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..access import COMMAND_LINE, Access
from ..paths import DOCS_DIR, atomic_write, cache_home
from ..schema import FinetuneConfig
from .layer import LayerAtlas
from .result import AtlasResult
from .settings import AtlasSettings

__all__ = ["AtlasRecords", "RecordedAtlas", "layer_key", "configuration_key", "write_reference", "ATLAS_VERSION",
           "REFERENCE_PATTERN", "REFERENCE_DIR"]

ATLAS_VERSION = 2  # part of every key: a change to what a layer's numbers mean changes it
# What does not change the atlas: the machine's device and logging, and the pruning settings (its head is a baseline run).
_NOT_MEASURED = ("device", "log_every", "disk_cache", "mode", "criterion", "keep", "tau", "layers")


def _digest(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _configuration(config: FinetuneConfig) -> dict:
    return {name: value for name, value in config.to_dict().items() if name not in _NOT_MEASURED}


def _owner_tag(owner: str) -> str:
    return _digest({"owner": owner})[:24]


def _owned(name: str, owner: str | None) -> str:
    """The file name of a record: ``name`` for the command line's, ``name`` and a digest of the owner for an
    owner's (never the owner id itself)."""
    return f"{name}.json" if owner is None else f"{name}-{_owner_tag(owner)}.json"


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
    config: FinetuneConfig  # the baseline run that trained the head
    settings: AtlasSettings
    layers: int
    created: float
    owner: str | None  # the app visitor who launched it; None: the command line (shared)
    reference: bool = False  # shipped with CPrune beside its report (docs/), read-only

    @property
    def backbone(self) -> str:
        return self.config.backbone


REFERENCE_PATTERN = "atlas-*.json.gz"  # the reference runs beside the committed report
REFERENCE_DIR = DOCS_DIR


class AtlasRecords:
    """The results folder (``folder`` None: ``cache_home()/atlas``, read when used) and the folder of reference
    runs (``reference`` None: REFERENCE_DIR, the committed report's docs/)."""

    def __init__(self, folder: str | Path | None = None, reference: str | Path | None = None):
        self._folder = Path(folder) if folder is not None else None
        self.reference = Path(reference) if reference is not None else REFERENCE_DIR

    @property
    def folder(self) -> Path:
        return self._folder or cache_home() / "atlas"

    def _write(self, path: Path, values: dict) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write(path, lambda temporary: Path(temporary).write_text(json.dumps(values)))

    @staticmethod
    def _read(path: Path) -> dict | None:
        try:
            raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
            return json.loads(raw)
        except (OSError, ValueError, EOFError):
            return None

    def _layer(self, key: str, owner: str | None) -> LayerAtlas | None:
        values = self._read(self.folder / "layers" / _owned(key, owner))
        try:
            return LayerAtlas.from_dict(values) if values is not None and values.get("key") == key else None
        except (KeyError, TypeError, ValueError):
            return None

    def layer(self, key: str, owner: str | None = None) -> LayerAtlas | None:
        """The layer measured under ``key`` by ``owner`` or, failing that, by the command line; or None."""
        own = self._layer(key, owner) if owner is not None else None
        return own if own is not None else self._layer(key, None)

    def put_layer(self, layer: LayerAtlas, owner: str | None = None) -> Path:
        """Record ``layer`` as measured by ``owner`` (None: the command line, shared)."""
        return self._write(self.folder / "layers" / _owned(layer.key, owner), layer.to_dict())

    def put_run(self, result: AtlasResult) -> Path:
        """Record ``result`` as its configuration's latest run of its owner (``result.owner``)."""
        return self._write(self.folder / "runs" / _owned(configuration_key(result.config, result.settings), result.owner),
                           result.to_dict())

    def latest(self, config: FinetuneConfig, settings: AtlasSettings, owner: str | None = None) -> AtlasResult | None:
        """The latest complete run of this configuration by ``owner`` (None: the command line), or None."""
        result = self._result(self.folder / "runs" / _owned(configuration_key(config, settings), owner))
        return result if result is not None and result.owner == owner else None

    def _result(self, path: Path) -> AtlasResult | None:
        values = self._read(path)
        try:
            return AtlasResult.from_dict(values) if values is not None else None
        except (KeyError, TypeError, ValueError):
            return None

    def run_files(self) -> list[Path]:
        """The files ``runs`` reads: the reference runs, then the recorded runs (a write under way left out)."""
        recorded = [path for path in (self.folder / "runs").glob("*.json") if not path.name.startswith(".")]
        return sorted(self.reference.glob(REFERENCE_PATTERN)) + recorded

    def runs(self, backbone: str | None = None, access: Access = COMMAND_LINE) -> list[RecordedAtlas]:
        """Every configuration's latest run (of ``backbone``, when given) that ``access`` sees: the reference runs
        first, then the recorded ones newest first: every run for the command line; for an owner, the shared runs
        (the command line's) and their own, no one else's (``Access.sees``)."""
        found, tag = [], None if access.owner is None else _owner_tag(access.owner)
        for path in self.run_files():
            reference = path.name.endswith(".gz")
            if not reference and tag is not None and "-" in path.stem and not path.stem.endswith(tag):
                continue  # another owner's, by its name: not read at all
            entry = self._entry(path, reference)
            if entry is not None and access.sees(entry.owner) and (backbone is None or entry.backbone == backbone):
                found.append(entry)
        return sorted(found, key=lambda entry: (not entry.reference, -entry.created))

    def _entry(self, path: Path, reference: bool) -> RecordedAtlas | None:
        values = self._read(path)
        try:
            owner = None if reference else values.get("owner")  # a reference run is everyone's
            return RecordedAtlas(path, FinetuneConfig.from_dict(values["config"]),
                                 AtlasSettings.from_dict(values["settings"]), len(values["layers"]),
                                 float(values.get("created", 0.0)), owner, reference)
        except (AttributeError, KeyError, TypeError, ValueError):
            return None

    def read(self, entry: RecordedAtlas) -> AtlasResult | None:
        """The run ``runs`` listed (None when it was damaged or removed since, or is no longer its owner's)."""
        result = self._result(entry.path)
        return result if result is not None and (entry.reference or result.owner == entry.owner) else None


def write_reference(result: AtlasResult, path: Path) -> Path:
    """``result`` as a compact reference run (gzip JSON, numbers to 6 significant digits), as ``runs`` reads it."""
    def compact(value):
        if isinstance(value, float):
            return float(f"{value:.6g}")
        if isinstance(value, list):
            return [compact(v) for v in value]
        if isinstance(value, dict):
            return {k: compact(v) for k, v in value.items()}
        return value

    text = json.dumps(compact({**result.to_dict(), "owner": None}), separators=(",", ":"))
    return atomic_write(path, lambda temporary: Path(temporary).write_bytes(gzip.compress(text.encode(), mtime=0)))
