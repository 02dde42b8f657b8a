"""Shared fixtures, and the marks that keep the fast lane fast.

`make test-fast` runs ``pytest -m "not browser and not ray and not slow"`` on two workers: the unit and AppTest
layer, in under 3 minutes on a 2-core machine; `make test` runs everything. A whole module gets its marks from
``MODULE_MARKS`` below; a single test elsewhere carries its own (``@pytest.mark.slow``). The marks:

- ``browser``: drives Debian's chromium through Playwright (skipped where it is missing: `make browser`);
- ``ray``: starts Ray;
- ``slow``: over about 5 s on its own (real training, VGG16-sized work), or a command or script in a fresh
  Python process (each pays torch's import again, about 3 s).
"""
from pathlib import Path

import pytest
import torch
from app_server import CHROMIUM
from tiny_data import make_tiny_folder

from cprune_core.atlas import records
from cprune_core.registry import load_backbone

MODULE_MARKS = {
    "test_browser.py": ("browser",),
    "test_graph_canvas.py": ("browser",),
    "test_executors.py": ("ray",),  # imports Ray; its cluster fixture and its command start it
}


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by the marks
def pytest_collection_modifyitems(items):
    no_chromium = pytest.mark.skip(reason=f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    for item in items:
        for mark in MODULE_MARKS.get(item.path.name, ()):
            item.add_marker(mark)
        if item.get_closest_marker("browser") and not Path(CHROMIUM).exists():
            item.add_marker(no_chromium)


@pytest.fixture(scope="session")
def lite0():
    """The offline default with its real packaged ImageNet weights."""
    return load_backbone("efficientnet_lite0")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_reference_atlas(tmp_path_factory, monkeypatch):
    """Tests read only the atlases they record: the committed reference runs (docs/atlas-*.json.gz) are out of
    sight unless a test points ``REFERENCE_DIR`` at its own."""
    monkeypatch.setattr(records, "REFERENCE_DIR", tmp_path_factory.getbasetemp() / "no-reference-atlas")


@pytest.fixture(scope="module")
def app_home(tmp_path_factory):
    """A fresh CPRUNE_HOME (run store, uploads, saved models) for a module of app tests, restored afterwards:
    their runs never go to the user's store. Use with ``pytestmark = pytest.mark.usefixtures("app_home")``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CPRUNE_HOME", str(tmp_path_factory.mktemp("cprune-home")))
        yield


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """tiny_data's three colour classes, 8 images each, made once for a module."""
    return make_tiny_folder(tmp_path_factory.mktemp("tiny") / "colours")
