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


def test_a_newline_in_a_quoted_name_keeps_the_message_on_one_line():
    escaped = plain("Class 'evil\nerror: forged' has no images.\r\n\n    indented")
    assert "\n" not in escaped and "\r" not in escaped
    assert re.sub(r"\\(.)", r"\1", escaped) == "Class 'evil\\nerror: forged' has no images.\\r\\n\\n    indented"


# Downloads on a visitor's behalf: the server's choice (CPRUNE_DOWNLOADS) -------------------------------------

@pytest.fixture
def recorded_vgg16(monkeypatch, tmp_path):
    """vgg16 whose builder only records what it was asked for; torch's cache in an empty folder."""
    from dataclasses import replace

    from torch import nn

    from cprune_core import BACKBONES

    asked: list[bool] = []
    monkeypatch.setitem(BACKBONES, "vgg16", replace(BACKBONES["vgg16"], build=lambda pretrained: asked.append(
        pretrained) or nn.Linear(2, 2)))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return asked


def test_with_download_off_torchvision_weights_come_from_the_cache_or_not_at_all(recorded_vgg16):
    from cprune_core import WeightsUnavailableError, get_spec, load_backbone
    from cprune_core.registry import weights_cache_path

    with pytest.raises(WeightsUnavailableError, match="not in this machine's torch cache, and downloads are off"):
        load_backbone("vgg16", download=False)
    assert recorded_vgg16 == [], "the builder (which would download) was never called"
    assert load_backbone("vgg16", "random", download=False).weights_status == "random init"
    cached = weights_cache_path(get_spec("vgg16"))
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"placed there by whoever runs the server")
    load_backbone("vgg16", download=False)
    cached.unlink()
    load_backbone("vgg16")  # the command line: downloads
    assert recorded_vgg16 == [False, True, True]


@pytest.mark.parametrize("downloads, roots, downloaded", [
    ("off", True, False),  # a visitor, downloads off: never
    ("on", True, True),  # a visitor, downloads on: into the app's cache
    ("off", False, True),  # the command line (no roots): always
])
def test_a_visitors_dataset_is_downloaded_only_when_the_server_allows_it(monkeypatch, tmp_path, downloads, roots,
                                                                       downloaded):
    from cprune_core import DatasetError
    from cprune_core.access import COMMAND_LINE
    from cprune_core.data import load_dataset, tf_flowers
    from cprune_server import visitor_access

    fetched = []

    def fetch(url, download_root, remove_finished):
        fetched.append(url)
        raise OSError("offline in this test")

    monkeypatch.setattr(tf_flowers, "download_and_extract_archive", fetch)
    monkeypatch.setenv("CPRUNE_DOWNLOADS", downloads)
    monkeypatch.setenv("CPRUNE_DATA_ROOTS", str(tmp_path))
    cache = tmp_path / "datasets"
    with pytest.raises(DatasetError) as refused:
        load_dataset("tf-flowers", cache_dir=cache, access=visitor_access("a visitor") if roots else COMMAND_LINE)
    assert bool(fetched) == downloaded
    if not downloaded:
        assert "downloads nothing on a visitor's behalf" in str(refused.value) and str(cache) not in str(refused.value)


def test_a_visitors_folder_without_the_dataset_is_read_never_filled(monkeypatch, tmp_path):
    from cprune_core import DatasetError
    from cprune_core.data import caltech101, load_dataset
    from cprune_server import visitor_access

    monkeypatch.setattr(caltech101, "Caltech101", lambda *args, **kwargs: pytest.fail("a download started"))
    monkeypatch.setenv("CPRUNE_DATA_ROOTS", str(tmp_path))
    folder = tmp_path / "empty"
    folder.mkdir()
    for downloads, advice in (("off", "downloads nothing on a visitor's behalf"), ("on", "leave the folder empty")):
        monkeypatch.setenv("CPRUNE_DOWNLOADS", downloads)
        with pytest.raises(DatasetError, match=f"Caltech-101 not found under .*{advice}"):
            load_dataset("caltech101", folder, cache_dir=tmp_path / "cache", access=visitor_access("a visitor"))
