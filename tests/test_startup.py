"""The server's start-up (app.py's st.App, ui/startup.py): `streamlit run app.py` finds it, and its warm-up
fills the caches the first page reads, in the server process, with torch and not torchvision."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.web.server.app_discovery import discover_asgi_app

ROOT = Path(__file__).resolve().parents[1]


def test_streamlit_run_app_py_starts_the_app_with_its_warm_up():
    found = discover_asgi_app(ROOT / "app.py")
    assert found.is_asgi_app and found.import_string == "app:app"  # what `streamlit run app.py` then serves
    spec = importlib.util.spec_from_file_location("app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # as Streamlit imports it: the page script's part does not run
    from streamlit.starlette import App

    from ui.startup import lifespan
    assert isinstance(module.app, App) and module.app._user_lifespan is lifespan


@pytest.mark.slow
def test_the_warm_up_builds_the_first_page_without_torchvision_or_onnx(tmp_path):
    """In a fresh process: after warm_up, the default model, its head layer's graph and the canvas payload are
    cached (a second call returns the same objects), and neither torchvision nor onnx (seconds to import) was."""
    script = """
import logging, sys
logging.disable(logging.WARNING)
from ui import cache, startup
calls = []
original = cache.payload_from_edges
cache.payload_from_edges = lambda *a, **k: calls.append(1) or original(*a, **k)
startup.warm_up()
assert len(calls) == 1, 'the warm-up did not build the payload'
from cprune_core import DEFAULT_BACKBONE
key = cache.ModelKey(DEFAULT_BACKBONE, "pretrained")
layer = cache.model_bundle(key).loaded.spec.head_layer
payload = cache.graph_payload(key, layer, "force")
assert payload is cache.graph_payload(key, layer, "force") and len(calls) == 1, calls
assert "torch" in sys.modules and not any(m.startswith(("torchvision", "onnx")) for m in sys.modules)
print("ok", payload.encoded[:4], len(payload.weights))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "CPRUNE_HOME": str(tmp_path)})
    assert done.returncode == 0 and done.stdout.startswith("ok b'CPG1'"), done.stderr[-2000:]
