"""What one visitor of a shared server may do: uploads, downloads and text from links or files."""
from __future__ import annotations

import io
import os
import re
import zipfile

import pytest

from cprune_core import CheckpointError
from cprune_core.checkpoint import MODEL_FILES, model_files
from ui.text import ZERO_WIDTH_SPACE, plain
from ui.uploads import Uploads
from ui.worker import keep_models_within


@pytest.fixture
def active() -> set[str]:
    return {"alice", "bob"}


@pytest.fixture
def store(tmp_path, active) -> Uploads:
    return Uploads(tmp_path / "uploads", budget_bytes=1000, is_active=active.__contains__)


def test_uploads_start_empty_and_are_named_by_content(tmp_path, active):
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / "left-over.pt").write_bytes(b"x")
    store = Uploads(tmp_path / "uploads", 1000, active.__contains__)
    assert list(store.folder.iterdir()) == []
    first = store.add("alice", "../../etc/passwd", b"a" * 10)
    assert first.parent == store.folder and first.name.endswith("-passwd")  # the folders of the name are dropped
    assert store.add("bob", "other-name.pt", b"a" * 10).read_bytes() == b"a" * 10


def test_an_upload_goes_when_no_connected_visitor_or_running_launch_uses_it(store, active):
    path = store.add("alice", "a.pt", b"a" * 10)
    store.hold(path, "launch-1")
    active.add("launch-1")
    active.discard("alice")  # the tab was closed
    store.collect()
    assert path.exists(), "a queued or running launch still needs it"
    active.discard("launch-1")
    store.collect()
    assert not path.exists()


def test_a_new_upload_releases_the_previous_one(store):
    first = store.add("alice", "a.pt", b"a" * 10)
    second = store.add("alice", "b.pt", b"b" * 10)
    store.add("bob", "c.pt", b"c" * 10)  # any new upload collects
    assert not first.exists() and second.exists()


def test_a_refused_upload_is_deleted_at_once_unless_someone_else_uses_it(store):
    path = store.add("alice", "a.pt", b"a" * 10)
    store.add("bob", "a.pt", b"a" * 10)  # same name and content: the same file
    store.reject(path, "alice")
    assert path.exists()
    store.reject(path, "bob")
    assert not path.exists()


def test_the_upload_space_has_a_budget(store):
    store.add("alice", "a.pt", b"a" * 600)
    with pytest.raises(CheckpointError, match="space for uploads is full"):
        store.add("bob", "b.pt", b"b" * 600)
    assert len(list(store.folder.iterdir())) == 1


def test_downloads_hold_the_models_own_files_only(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in MODEL_FILES:
        (folder / name).write_bytes(b"x")
    (folder / "notes.txt").write_text("private")
    (folder / "secret.pt").write_text("private")
    (tmp_path / "outside").write_text("private")
    (folder / "model.onnx").unlink()
    (folder / "model.onnx").symlink_to(tmp_path / "outside")
    assert sorted(path.name for path in model_files(folder)) == ["model.json", "model.pt", "model.ts"]

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in model_files(folder):
            archive.write(path, path.name)
    assert set(zipfile.ZipFile(buffer).namelist()) <= set(MODEL_FILES)


@pytest.mark.parametrize("text", [
    "![pixel](https://example.com/p.png)", "[click](https://example.com)", "<img src=x onerror=alert(1)>",
    "https://example.com/x", "www.example.com", "mail me@example.com", "**bold** _it_ `code` $x^2$ :red[alarm] :smile: # heading", "a\\b",
])
def test_visitor_text_is_escaped_so_markdown_shows_it_literally(text):
    escaped = plain(text)
    shown = re.sub(r"\\(.)", r"\1", escaped).replace(ZERO_WIDTH_SPACE, "")
    assert shown == text  # what a reader sees is the text, unchanged
    assert not re.search(r"(?<!\\)[\[\]()<>*_`$:!#]", escaped)  # no markup character left unescaped
    assert not re.search(r"(?i)://|www\\?\.|@\w", escaped.replace("\\", ""))  # no bare address to autolink


def test_saved_models_are_kept_within_their_budget_oldest_first_never_the_newest(tmp_path):

    for age, name in enumerate(["old", "middle", "new"]):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.pt").write_bytes(b"x" * 1000)
        os.utime(folder, (1000 + age, 1000 + age))
    keep_models_within(tmp_path, 2000, newest=tmp_path / "new")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["middle", "new"]
    keep_models_within(tmp_path, 10, newest=tmp_path / "new")
    assert [path.name for path in tmp_path.iterdir()] == ["new"]
