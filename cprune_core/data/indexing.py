"""Indexing: which readable image files a dataset folder holds, per class.

Every source reduces its data to an ``Index``: a sorted list of classes and, per class, the
image files that decode (a full decode at the cheapest scale, cached per path, size and
mtime), plus what was skipped and why.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError, UnreadableImageError
from .images import IMAGE_EXTENSIONS, decode_rgb

__all__ = ["Index", "existing_dir", "find_image_files", "scan_images", "index_image_folder", "finish_index"]

log = logging.getLogger(__name__)

_SCAN_THREADS = min(4, os.cpu_count() or 1)
_IGNORED_NAMES = frozenset({"__MACOSX"})  # resource-fork folders left by macOS zip archives


@dataclass
class Index:
    classes: list[str]
    paths_by_class: list[list[str]]  # readable image files, indexed by label
    skipped: list[tuple[str, str]]  # (path, why it was skipped)
    dropped_classes: list[str]
    official_splits: dict[str, list[list[str]]] = field(default_factory=dict)  # split -> paths by label


def existing_dir(path: str | os.PathLike, what: str = "Dataset folder") -> Path:
    """``path`` resolved, or DatasetError saying it is missing or a file."""
    resolved = Path(path).expanduser().resolve()
    if not resolved.exists():
        raise DatasetError(
            f"{what} not found: {resolved}. Check the path "
            f"(a relative path is taken from the current directory, {Path.cwd()})."
        )
    if not resolved.is_dir():
        raise DatasetError(
            f"{what} {resolved} is a file, not a folder. Pass the folder that holds one sub-folder "
            "per class (extract an archive first)."
        )
    return resolved


def _is_ignored(name: str) -> bool:
    return name.startswith(".") or name in _IGNORED_NAMES


def find_image_files(folder: Path) -> list[str]:
    """Image files under folder (recursively, skipping hidden ones), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [name for name in dirnames if not _is_ignored(name)]
        found.extend(
            os.path.join(dirpath, name)
            for name in filenames
            if not _is_ignored(name) and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
        )
    return sorted(found)


# (path, size, mtime_ns) -> why the file cannot be decoded, or None when it can.
_decode_problems: dict[tuple[str, int, int], str | None] = {}


def decode_problem(key: tuple[str, int, int]) -> str | None:
    """Why the file version ``key`` cannot be decoded, or None when it can."""
    path, size, _ = key
    if size == 0:
        return "empty file (0 bytes)"
    try:
        decode_rgb(path, draft_size=(1, 1))  # a full check at the cheapest scale
    except UnreadableImageError as err:
        return err.reason
    return None


def scan_images(paths: list[str]) -> dict[str, str | None]:
    """Why each file cannot be decoded (None when it can), by a full decode cached per file version."""
    problems: dict[str, str | None] = {}
    keys: dict[str, tuple[str, int, int]] = {}
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError as err:
            problems[path] = f"cannot read file: {err.strerror}"
            continue
        keys[path] = (path, stat.st_size, stat.st_mtime_ns)
    unknown = [key for key in keys.values() if key not in _decode_problems]
    if unknown:
        with ThreadPoolExecutor(_SCAN_THREADS) as pool:
            _decode_problems.update(zip(unknown, pool.map(decode_problem, unknown)))
    problems.update((path, _decode_problems[key]) for path, key in keys.items())
    return problems


def index_image_folder(root: Path, exclude: frozenset[str] = frozenset()) -> Index:
    """Index an ImageFolder layout: root/<class>/**/<image>."""
    class_dirs = sorted(
        entry for entry in root.iterdir() if entry.is_dir() and not _is_ignored(entry.name) and entry.name not in exclude
    )
    if not class_dirs:
        loose = sum(1 for entry in root.iterdir() if entry.suffix.lower() in IMAGE_EXTENSIONS)
        hint = f" It holds {loose} images directly: move them into per-class sub-folders." if loose else ""
        raise DatasetError(
            f"No class sub-folders in {root}. Expected one sub-folder per class, "
            f"e.g. {root / 'daisy' / 'photo1.jpg'}.{hint}"
        )
    files_by_class = {folder.name: find_image_files(folder) for folder in class_dirs}
    problems = scan_images([path for paths in files_by_class.values() for path in paths])
    readable = {name: [path for path in paths if problems[path] is None] for name, paths in files_by_class.items()}
    skipped = [(path, problem) for path, problem in problems.items() if problem is not None]
    return finish_index(root, readable, sorted(skipped))


def finish_index(root: Path, readable: dict[str, list[str]], skipped: list[tuple[str, str]]) -> Index:
    """Drop classes without readable images; at least two classes must remain."""
    dropped = [name for name, paths in readable.items() if not paths]
    kept = {name: paths for name, paths in readable.items() if paths}
    if dropped:
        log.warning("Dropping classes with no readable images in %s: %s", root, ", ".join(dropped))
    unreadable = f" {len(skipped)} image files could not be decoded (first: {skipped[0][1]})." if skipped else ""
    if not kept:
        raise DatasetError(
            f"No readable images in {root}.{unreadable} Put the images in one sub-folder per class; "
            f"accepted extensions: {', '.join(sorted(IMAGE_EXTENSIONS))}."
        )
    if len(kept) == 1:
        others = f" (classes without readable images: {', '.join(dropped)})" if dropped else ""
        raise DatasetError(
            f"Only one class with images in {root}: {next(iter(kept))!r}{others}.{unreadable} "
            "A classifier needs at least two classes: add another sub-folder of images."
        )
    return Index(list(kept), list(kept.values()), skipped, dropped)
