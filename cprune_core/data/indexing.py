"""Indexing: which readable image files a dataset folder holds, per class.

Every source reduces its data to an ``Index``: a sorted list of classes and, per class, the
image files that decode (a full decode at the cheapest scale, cached per path, size and
mtime), plus what was skipped and why.

Walking a folder always ends and counts each image once (``Walk``):
- a link that leads back into the dataset (to its own folder, a parent, or another class)
  is not followed: those images are indexed where they really are, under their own class;
- a folder reached a second time (a link loop, or two links to one folder) and a file
  reached a second time are skipped; links to files or folders outside the dataset are
  followed (datasets made of links into a central image store keep working), but with
  ``roots`` only when they lead inside those folders;
- special files (pipes, sockets, devices) and broken links are skipped, never opened;
- a budget of entries and seconds (``WalkBudget``) bounds the walk, and a stop Event ends it.
Every image file skipped, with why, is reported in ``Index.skipped``.
"""
from __future__ import annotations

import logging
import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError, StopRequested, UnreadableImageError
from .images import IMAGE_EXTENSIONS, decode_rgb
from ..paths import user_path
from ..settings import setting
from .roots import confine, is_inside

__all__ = ["Index", "Walk", "WalkBudget", "existing_dir", "scan_images", "index_image_folder", "finish_index"]

log = logging.getLogger(__name__)

_SCAN_THREADS = min(4, os.cpu_count() or 1)
_SCAN_CHUNK = 256  # files decoded between two looks at the stop Event
_IGNORED_NAMES = frozenset({"__MACOSX"})  # resource-fork folders left by macOS zip archives


@dataclass
class Index:
    classes: list[str]
    paths_by_class: list[list[str]]  # readable image files, indexed by label
    skipped: list[tuple[str, str]]  # (path, why it was skipped)
    dropped_classes: list[str]
    official_splits: dict[str, list[list[str]]] = field(default_factory=dict)  # split -> paths by label


def existing_dir(path: str | os.PathLike, what: str = "Dataset folder", roots: list[Path] | None = None) -> Path:
    """``path`` resolved, or DatasetError saying it is missing or a file. With ``roots``, a path
    outside them is refused first, with words that tell nothing about it (PathNotAllowedError)."""
    resolved = confine(path, roots) if roots is not None else user_path(path).resolve()
    if not resolved.exists():
        # The server's own folders are not a visitor's business: the current directory only on the command line.
        relative = "" if roots is not None else f" (a relative path is taken from the current directory, {Path.cwd()})"
        raise DatasetError(f"{what} not found: {resolved}. Check the path{relative}.")
    if not resolved.is_dir():
        raise DatasetError(
            f"{what} {resolved} is a file, not a folder. Pass the folder that holds one sub-folder "
            "per class (extract an archive first)."
        )
    return resolved


def _is_ignored(name: str) -> bool:
    return name.startswith(".") or name in _IGNORED_NAMES


@dataclass(frozen=True)
class WalkBudget:
    """How much of a folder tree indexing may look at before it gives up: files and folders seen,
    and seconds. The defaults (2,000,000 and 600 s; ImageNet's train split is 1.3 million files)
    can be changed with CPRUNE_INDEX_MAX_ENTRIES and CPRUNE_INDEX_MAX_SECONDS."""

    max_entries: int = field(default_factory=lambda: setting("CPRUNE_INDEX_MAX_ENTRIES"))
    max_seconds: float = field(default_factory=lambda: setting("CPRUNE_INDEX_MAX_SECONDS"))


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


class Walk:
    """One walk over a dataset folder (see the module's notes): ``image_files(folder)`` per class,
    then ``skipped`` holds (path, why) for every link and image file left out."""

    def __init__(self, dataset_root: Path, roots: list[Path] | None = None, budget: WalkBudget | None = None,
                 stop: threading.Event | None = None):
        self.dataset_root = Path(os.path.realpath(dataset_root))
        self.roots = roots
        self.budget = budget or WalkBudget()
        self.stop = stop
        self.deadline = time.monotonic() + self.budget.max_seconds
        self.entries = 0
        self.folders_seen: set[tuple[int, int]] = set()
        self.files_seen: dict[tuple[int, int], str] = {}
        self.skipped: list[tuple[str, str]] = []

    def class_folders(self, exclude: frozenset[str] = frozenset()) -> list[Path]:
        """The dataset root's sub-folders, one per class, sorted (links followed by the same rules)."""
        folders = []
        for entry in sorted(os.scandir(self.dataset_root), key=lambda entry: entry.name):
            self._count(entry.path)
            if not _is_ignored(entry.name) and entry.name not in exclude and self._follow(entry) == "folder":
                folders.append(Path(entry.path))
        return folders

    def image_files(self, folder: Path) -> list[str]:
        """Image files under one of ``class_folders()`` (recursively, hidden names skipped), sorted."""
        found: list[str] = []
        pending = [str(folder)]
        while pending:
            current = pending.pop()
            try:
                entries = sorted(os.scandir(current), key=lambda entry: entry.name)
            except OSError as error:
                self.skipped.append((current, f"folder cannot be read: {error.strerror}"))
                continue
            for entry in entries:
                self._count(entry.path)
                if _is_ignored(entry.name):
                    continue
                kind = self._follow(entry)
                if kind == "folder":
                    pending.append(entry.path)
                elif kind == "image":
                    found.append(entry.path)
        return sorted(found)

    def _count(self, path: str) -> None:
        self.entries += 1
        if self.stop is not None and self.stop.is_set():
            raise StopRequested("Stopped while indexing the dataset.")
        if self.entries > self.budget.max_entries:
            raise DatasetError(f"{self.dataset_root} holds more than {self.budget.max_entries:,} files and folders: "
                               "too many to index. Choose the folder that holds one sub-folder per class.")
        if time.monotonic() > self.deadline:
            raise DatasetError(f"Indexing {self.dataset_root} took longer than {self.budget.max_seconds:g} s "
                               f"(stopped at {path}). Choose a smaller folder, or one on a faster disk.")

    def _follow(self, entry: os.DirEntry) -> str | None:
        """"folder" to descend into, "image" to keep, or None. Skipped links and image files are recorded."""
        image = _is_image_name(entry.name)
        try:
            link = entry.is_symlink()
            target = os.path.realpath(entry.path) if link else None
        except OSError:
            return self._skip(entry.path, "unreadable entry")
        if link:
            if is_inside(target, [self.dataset_root]):
                return self._skip(entry.path, "link back into this dataset (indexed where it lies)")
            if self.roots is not None and not is_inside(target, self.roots):
                return self._skip(entry.path, "link to a place outside the server's data folders")
        try:
            info = os.stat(entry.path)
        except OSError:
            return self._skip(entry.path, "broken link or unreadable entry") if link or image else None
        key = (info.st_dev, info.st_ino)
        if stat.S_ISDIR(info.st_mode):
            if key in self.folders_seen:
                return self._skip(entry.path, "folder reached a second time (a link loop or a second link)")
            self.folders_seen.add(key)
            return "folder"
        if not image:
            return None
        if not stat.S_ISREG(info.st_mode):
            return self._skip(entry.path, "not a regular file (a pipe, socket or device)")
        if key in self.files_seen:
            return self._skip(entry.path, f"same file as {self.files_seen[key]}")
        self.files_seen[key] = entry.path
        return "image"

    def _skip(self, path: str, why: str) -> None:
        self.skipped.append((path, why))


# (path, size, mtime_ns, roots) -> why the file cannot be decoded, or None when it can.
_decode_problems: dict[tuple, str | None] = {}


def decode_problem(key: tuple) -> str | None:
    """Why the file version ``key`` (path, size, mtime, roots) cannot be decoded, or None when it can."""
    path, size, _, roots = key
    if size == 0:
        return "empty file (0 bytes)"
    try:
        decode_rgb(path, draft_size=(1, 1), roots=list(roots) if roots is not None else None)  # cheapest full check
    except UnreadableImageError as err:
        return err.reason
    return None


def scan_images(paths: list[str], stop: threading.Event | None = None,
                roots: list[Path] | None = None) -> dict[str, str | None]:
    """Why each file cannot be decoded (None when it can), by a full decode cached per file version;
    with ``roots``, a file is opened only when it lies inside them (checked on the open file).
    StopRequested when ``stop`` is set."""
    problems: dict[str, str | None] = {}
    keys: dict[str, tuple[str, int, int]] = {}
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError as err:
            problems[path] = f"cannot read file: {err.strerror}"
            continue
        keys[path] = (path, stat.st_size, stat.st_mtime_ns, tuple(roots) if roots is not None else None)
    unknown = [key for key in keys.values() if key not in _decode_problems]
    if unknown:
        with ThreadPoolExecutor(_SCAN_THREADS) as pool:
            for start in range(0, len(unknown), _SCAN_CHUNK):
                if stop is not None and stop.is_set():
                    raise StopRequested("Stopped while checking the dataset's images.")
                chunk = unknown[start:start + _SCAN_CHUNK]
                _decode_problems.update(zip(chunk, pool.map(decode_problem, chunk)))
    problems.update((path, _decode_problems[key]) for path, key in keys.items())
    return problems


def index_image_folder(root: Path, exclude: frozenset[str] = frozenset(), roots: list[Path] | None = None,
                       stop: threading.Event | None = None) -> Index:
    """Index an ImageFolder layout: root/<class>/**/<image> (see the module's notes on links)."""
    walk = Walk(root, roots, stop=stop)
    class_dirs = walk.class_folders(exclude)
    if not class_dirs:
        loose = sum(1 for entry in root.iterdir() if entry.suffix.lower() in IMAGE_EXTENSIONS)
        hint = f" It holds {loose} images directly: move them into per-class sub-folders." if loose else ""
        raise DatasetError(
            f"No class sub-folders in {root}. Expected one sub-folder per class, "
            f"e.g. {root / 'daisy' / 'photo1.jpg'}.{hint}"
        )
    files_by_class = {folder.name: walk.image_files(folder) for folder in class_dirs}
    problems = scan_images([path for paths in files_by_class.values() for path in paths], stop, roots)
    readable = {name: [path for path in paths if problems[path] is None] for name, paths in files_by_class.items()}
    skipped = [(path, problem) for path, problem in problems.items() if problem is not None] + walk.skipped
    return finish_index(root, readable, sorted(skipped))


def finish_index(root: Path, readable: dict[str, list[str]], skipped: list[tuple[str, str]]) -> Index:
    """Drop classes without readable images; at least two classes must remain."""
    dropped = [name for name, paths in readable.items() if not paths]
    kept = {name: paths for name, paths in readable.items() if paths}
    if dropped:
        log.warning("Dropping classes with no readable images in %s: %s", root, ", ".join(dropped))
    unreadable = (f" {len(skipped)} image files or links were left out (first: {skipped[0][1]})." if skipped
                  else "")
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
