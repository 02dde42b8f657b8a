"""Layers' graphs kept on disk: what a restart of the app, another visitor or a resumed ``--layer all`` would
otherwise compute again.

Entries are NumPy ``.npz`` files in ``cache_home()/graphs`` (``GraphCache``), each named by the sha256 of what it
depends on (``entry_key``): the layer's identity (``layer_identity``), what was computed with which parameters,
and GRAPH_CACHE_VERSION. They hold arrays of numbers and text only and are read with ``allow_pickle=False``:
never an object. Each is written atomically (``paths.atomic_write``) with a checksum of its arrays; a file that
cannot be read or whose checksum does not match is deleted and its entry computed again, never trusted. The
folder is kept within CPRUNE_GRAPH_CACHE_MB (default 1024): after each write the entries least recently used
(read or written: a read touches the file's modification time) are deleted first. Deleting the folder, or any
file in it, at any time is safe. No Streamlit here: the app's ``ui/cache.py`` and the command line share it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .blockwise import GraphBudget
from .graph import force_layout
from .graph_view import EDGE_CAP
from .layer_view import LayerScan, scan_layer
from .model_source import ModelSource
from .paths import atomic_write, cache_home
from .progress import ProgressCallback
from .settings import setting
from .sparse_graph import EdgeList, SparseGraph

__all__ = ["GRAPH_CACHE_VERSION", "layer_identity", "entry_key", "GraphCache", "cached_scan", "cached_force_layout"]

GRAPH_CACHE_VERSION = 2  # part of every key: a change to what an entry holds or means changes it (2: force layouts
# of graphs with more than graph.FORCE_EDGE_SAMPLE edges are drawn with sampled pulls)
_CHECKSUM = "checksum"
_HASH_CHUNK = 2**24  # bytes of a layer's values hashed at a time


def layer_identity(source: ModelSource, layer: str) -> str:
    """A sha256 naming the values of ``layer``: a weights file's layer by its files (each one's resolved path, size
    and modification time: an upload is stored under its content's hash, and a server's model file that is
    replaced changes them) and the tensor's name and shape; a backbone's layer (in memory) by its values' bytes.
    ConfigError for a layer the source lacks."""
    info = source.info(layer)
    weights = getattr(source, "weights", None)  # a FileSource's opened files
    digest = hashlib.sha256(json.dumps({"layer": info.name, "neurons": info.neurons,
                                        "length": info.vector_length}).encode())
    if weights is not None:
        for path in weights.files:
            status = Path(path).resolve().stat()
            digest.update(json.dumps([str(Path(path).resolve()), status.st_size, status.st_mtime_ns]).encode())
        return digest.hexdigest()
    values = source.weight_vectors(layer).contiguous()
    raw = values.view(torch.uint8).view(-1).numpy()
    for start in range(0, len(raw), _HASH_CHUNK):
        digest.update(memoryview(raw[start:start + _HASH_CHUNK]))
    return digest.hexdigest()


def entry_key(identity: str, kind: str, **parameters) -> str:
    """The name of an entry: the sha256 of the layer's ``identity``, what the entry is (``kind``), the parameters it
    was computed with (JSON-able values) and GRAPH_CACHE_VERSION."""
    text = json.dumps({"version": GRAPH_CACHE_VERSION, "identity": identity, "kind": kind, **parameters},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.asarray(arrays[name])
        digest.update(json.dumps([name, array.dtype.str, array.shape]).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class GraphCache:
    """Entries of named arrays on disk under ``folder`` (None: ``cache_home()/graphs``, read when used), at most
    ``limit_bytes`` of them in all (None: CPRUNE_GRAPH_CACHE_MB, read at each write; 0 keeps nothing)."""

    def __init__(self, folder: str | Path | None = None, limit_bytes: int | None = None):
        self._folder = Path(folder) if folder is not None else None
        self.limit_bytes = limit_bytes

    @property
    def folder(self) -> Path:
        return self._folder or cache_home() / "graphs"

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None: never stored, evicted, or damaged (then deleted)."""
        path = self._path(key)
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
            checksum = str(arrays.pop(_CHECKSUM))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, EOFError):  # not an npz, truncated, objects in it, no checksum
            path.unlink(missing_ok=True)
            return None
        if checksum != _checksum(arrays):
            path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):  # a read-only folder: still a hit
            os.utime(path)  # used now: the last to be evicted
        return arrays

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> bool:
        """Store ``arrays`` (numbers or text, no objects) under ``key``, then evict what exceeds the limit. Returns
        whether it was stored: a folder that cannot be written, or a limit of 0, stores nothing (the cache only
        saves time)."""
        limit = self._limit()
        if limit <= 0:
            return False
        contents = {**arrays, _CHECKSUM: np.array(_checksum(arrays))}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(self._path(key), lambda temporary: _save(temporary, contents))
        except OSError:
            return False
        self.evict(limit)
        return self._path(key).exists()

    def _limit(self) -> int:
        return self.limit_bytes if self.limit_bytes is not None else int(setting("CPRUNE_GRAPH_CACHE_MB")) * 2**20

    def evict(self, limit: int | None = None) -> None:
        """Delete the entries least recently used until the folder holds at most ``limit`` bytes (default: the
        cache's limit). Files written meanwhile by another process are counted at the next write."""
        limit = self._limit() if limit is None else limit
        entries = []
        for path in self.folder.glob("*.npz"):
            try:
                status = path.stat()
            except OSError:
                continue
            entries.append((status.st_mtime_ns, status.st_size, path))
        held = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries, key=lambda entry: entry[0]):
            if held <= limit:
                break
            path.unlink(missing_ok=True)
            held -= size

    def size(self) -> int:
        """Bytes the entries take now."""
        return sum(path.stat().st_size for path in self.folder.glob("*.npz") if path.is_file())


def _save(path: str, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def cached_scan(source: ModelSource, layer: str, taus: Sequence[float], *, cache: GraphCache | None = None,
                edge_cap: int = EDGE_CAP, budget: GraphBudget | None = None, progress: ProgressCallback | None = None,
                stop: threading.Event | None = None) -> LayerScan:
    """``layer_view.scan_layer(source, layer, taus=taus, layout=True)`` (the strongest edges above ``taus[0]``, at
    most ``edge_cap``, each step's edge count, the norms, the row-wise scores and the weight-PCA layout: what the
    canvas is sent), from ``cache`` (default: ``GraphCache()``) when any process computed it for the same layer
    values and parameters, else computed and kept there. A stored entry that does not hold what it should is
    computed again."""
    cache = cache or GraphCache()
    key = entry_key(layer_identity(source, layer), "scan", taus=[float(tau) for tau in taus], cap=edge_cap)
    stored = cache.get(key)
    found = _scan_from(stored) if stored is not None else None
    if found is not None:
        return found
    scan = scan_layer(source, layer, taus=taus, edge_cap=edge_cap, layout=True, budget=budget, progress=progress,
                      stop=stop)
    cache.put(key, {"norms": scan.norms, "rows": scan.strongest.rows.astype(np.int32),
                    "cols": scan.strongest.cols.astype(np.int32), "weights": scan.strongest.weights,
                    "counts": scan.counts, "positions": scan.positions,
                    **{f"score_{name}": values for name, values in scan.row_scores.items()}})
    return scan


def _scan_from(stored: dict[str, np.ndarray]) -> LayerScan | None:
    """The LayerScan an entry holds, or None when its arrays are not what ``cached_scan`` stores."""
    try:
        norms, rows, cols, weights = stored["norms"], stored["rows"], stored["cols"], stored["weights"]
        n = len(norms)
        if not (stored["positions"].shape == (n, 2) and rows.shape == cols.shape == weights.shape
                and (len(rows) == 0 or (rows.min() >= 0 and cols.max() < n))):
            return None
        scores = {name.removeprefix("score_"): values for name, values in stored.items() if name.startswith("score_")}
        return LayerScan(n, norms, scores, None, EdgeList(n, rows.astype(np.int64), cols.astype(np.int64), weights),
                         stored["counts"], None, stored["positions"])
    except (KeyError, AttributeError, ValueError):
        return None


def cached_force_layout(source: ModelSource, layer: str, tau: float, graph: SparseGraph, *,
                        cache: GraphCache | None = None) -> np.ndarray:
    """``graph.force_layout(graph)`` of ``layer``'s graph at ``tau``, kept in ``cache`` (default ``GraphCache()``) as
    ``cached_scan`` keeps a scan."""
    cache = cache or GraphCache()
    key = entry_key(layer_identity(source, layer), "force-layout", tau=float(tau))
    stored = cache.get(key)
    if stored is not None and stored.get("positions", np.zeros(0)).shape == (graph.n, 2):
        return stored["positions"]
    positions = force_layout(graph)
    cache.put(key, {"positions": positions})
    return positions
