"""A model as a folder: a Hugging Face checkpoint (``model.safetensors.index.json`` and its shards), a folder of
safetensors files, or a folder holding one weights file; and the model folders found under a server's roots.

Only names are read here (an index's ``weight_map``, a folder's entries); every file a model names is
resolved inside the model's own folder (``raw.model_file``: no absolute path, no ``..``, no link leading out,
except into a Hugging Face cache's ``blobs``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..data.roots import is_inside
from ..errors import WeightsFileError
from .bounded_json import load_bounded_json
from .budget import WeightsBudget
from .formats import EXTENSIONS
from .names import natural_key, printable
from .raw import model_file

__all__ = ["INDEX_SUFFIX", "ModelLayout", "model_layout", "find_models"]

INDEX_SUFFIX = ".index.json"
MAX_INDEX_BYTES = 32 * 2**20
MAX_FOLDER_ENTRIES = 100_000  # entries of one model folder looked at


@dataclass(frozen=True)
class ModelLayout:
    """The files of a model: ``format`` "file" (one file, its format told by its bytes), "shards" (an index:
    ``owners`` names each tensor's shard) or "folder" (several safetensors files)."""

    format: str
    files: list[Path]
    owners: dict[str, Path] | None = None


def _index_layout(index: Path, budget: WeightsBudget) -> ModelLayout:
    if not index.is_file() or index.stat().st_size > MAX_INDEX_BYTES:
        raise WeightsFileError(f"{index.name} is missing or larger than {MAX_INDEX_BYTES // 2**20} MiB: not a "
                               "checkpoint's index.")
    parsed = load_bounded_json(index.read_bytes(), index.name, max_objects=64, max_arrays=64,
                               max_values=budget.max_tensors + 1024)
    weight_map = parsed.get("weight_map") if isinstance(parsed, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(
            isinstance(name, str) and isinstance(shard, str) for name, shard in weight_map.items()):
        raise WeightsFileError(f"{index.name} has no weight_map (tensor names to shard files): it is not a "
                               "checkpoint's index.")
    if len(weight_map) > budget.max_tensors:
        raise WeightsFileError(f"{index.name} names {len(weight_map):,} tensors; the limit is "
                               f"{budget.max_tensors:,} per model.")
    shards = {shard: model_file(index.parent, shard, index.name)
              for shard in sorted(set(weight_map.values()), key=natural_key)}
    return ModelLayout("shards", list(shards.values()), {name: shards[shard] for name, shard in weight_map.items()})


def _entries(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as scan:
            names = []
            for entry in scan:
                names.append(entry.name)
                if len(names) > MAX_FOLDER_ENTRIES:
                    raise WeightsFileError(f"{folder.name} holds more than {MAX_FOLDER_ENTRIES:,} entries: not a "
                                           "model's folder.")
    except OSError as error:
        raise WeightsFileError(f"Folder {folder} cannot be read ({error.strerror or error}).") from error
    return sorted(names, key=natural_key)


def _folder_layout(folder: Path, budget: WeightsBudget) -> ModelLayout:
    names = _entries(folder)
    indexes = [name for name in names if name.endswith(INDEX_SUFFIX)]
    indexes = [name for name in indexes if ".safetensors" in name] or indexes
    if len(indexes) > 1:
        raise WeightsFileError(f"{folder.name} holds several indexes ({', '.join(indexes[:4])}): open one of them.")
    if indexes:
        return _index_layout(folder / indexes[0], budget)
    safetensors = [name for name in names if name.endswith(".safetensors")]
    candidates = safetensors or [name for name in names if Path(name).suffix.lower() in EXTENSIONS]
    if not candidates:
        raise WeightsFileError(f"{folder.name} holds no weights file (.safetensors, .onnx, .pt, .pth, .bin) and no "
                               "checkpoint index: there is no model to open.")
    if len(candidates) > 1 and not safetensors:
        raise WeightsFileError(f"{folder.name} holds several weights files ({', '.join(candidates[:4])}"
                               f"{', ...' if len(candidates) > 4 else ''}): open one of them.")
    files = [model_file(folder, name, f"Folder {folder.name}") for name in candidates]
    return ModelLayout("folder" if len(files) > 1 else "file", files)


def model_layout(path: Path, budget: WeightsBudget) -> ModelLayout:
    """The files of the model at ``path``: a folder (its index, its safetensors files, or its one weights
    file), an index (``*.index.json``), or one weights file.

    Raises WeightsFileError when a folder holds no weights file, several indexes or several weights files of
    other formats; when an index has no ``weight_map``, names over ``budget.max_tensors`` tensors, or names a
    shard outside its folder or missing.
    """
    if path.is_dir():
        return _folder_layout(path, budget)
    if path.name.endswith(INDEX_SUFFIX):
        return _index_layout(path, budget)
    return ModelLayout("file", [path])


def _offers(folder: Path) -> tuple[bool, list[str], list[str]]:
    """(whether ``folder`` is a model of several files or an index, its weights files otherwise, its
    subfolders); nothing for a folder that cannot be read."""
    try:
        names = _entries(folder)
    except WeightsFileError:
        return False, [], []
    whole = any(name.endswith(INDEX_SUFFIX) or name.endswith(".safetensors") for name in names)
    files = [] if whole else [name for name in names if Path(name).suffix.lower() in EXTENSIONS]
    subfolders = [name for name in names if not name.startswith(".") and (folder / name).is_dir()
                  and not (folder / name).is_symlink()]
    return whole, files, subfolders


def find_models(roots: tuple[Path, ...], max_depth: int = 4, max_folders: int = 5_000,
                max_entries: int = 200_000) -> list[tuple[str, Path]]:
    """The models under ``roots`` (resolved folders): (a name for people, its real path) for every folder
    holding an index or safetensors files, and every other weights file, down to ``max_depth`` folders, at
    most ``max_folders`` folders and ``max_entries`` entries looked at in all; links to folders are not
    walked, links to files are followed, and what leads outside the roots is left out. Sorted by name."""
    found: list[tuple[str, Path]] = []
    pending = [(root, printable(root.name or str(root)), 0) for root in roots]
    looked = entries = 0
    while pending and looked < max_folders and entries < max_entries:
        folder, label, depth = pending.pop(0)
        looked += 1
        whole, files, subfolders = _offers(folder)
        entries += len(files) + len(subfolders)
        if whole:
            found.append((label, folder))
            continue
        found += [(f"{label}/{printable(name)}", folder / name) for name in files]
        if depth < max_depth:
            pending += [(folder / name, f"{label}/{printable(name)}", depth + 1) for name in subfolders]
    return sorted(((label, Path(os.path.realpath(path))) for label, path in found if is_inside(path, roots)),
                  key=lambda item: natural_key(item[0]))
