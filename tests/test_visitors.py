"""What one visitor of a shared server may take and see: a model's download, and text from links or files.
(Uploads, the run queue and the saved models' budget: tests/test_service.py.)"""
from __future__ import annotations

import io
import re
import zipfile

import pytest

from cprune_core.checkpoint import MODEL_FILES, model_files, zip_model
from ui.text import ZERO_WIDTH_SPACE, plain


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
    archive = zipfile.ZipFile(io.BytesIO(zip_model(folder)))
    assert sorted(archive.namelist()) == ["model.json", "model.pt", "model.ts"]  # bare names: no folders
    assert archive.read("model.pt") == b"x"
    assert zipfile.ZipFile(io.BytesIO(zip_model(tmp_path / "gone"))).namelist() == []


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
