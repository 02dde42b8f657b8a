"""The app on a weights file: uploaded in the sidebar, explored like a backbone, refused in one sentence.

AppTest (as tests/test_app.py) for the pages and every refusal; one test in a real browser (Debian's chromium
through Playwright, `streamlit run app.py` from tests/app_server.py) uploads a file, draws a layer, checks the
canvas against the core and clicks a neuron. Files are made here: a transformer-like safetensors stack, its ONNX
and PyTorch twins, EfficientNet-Lite0's own state dict, and broken ones.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import struct
from pathlib import Path
from urllib.parse import urlparse

import networkx as nx
import numpy as np
import pytest
import torch
from safetensors.torch import save
from streamlit.testing.v1 import AppTest
from torch import nn

from cprune_core import load_backbone, summarize, threshold_adjacency
from cprune_core.criteria import make_criterion
from cprune_core.graph import cosine_similarity
from cprune_core.layer_report import layerwise_rows
from cprune_core.model_source import FileSource
from canvas_page import canvas_centre, find, status, tooltip, wait_shown
from ui.services import uploads
from weights_files import clustered, hugging_face_checkpoint, llama_like, transformer_stack

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "screenshots"
pytestmark = pytest.mark.usefixtures("app_home")  # a fresh CPRUNE_HOME (conftest.py)


@pytest.fixture(scope="module")
def stack_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("files") / "stack.safetensors"
    path.write_bytes(save(transformer_stack()))
    return path


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def shown(markdown: str) -> str:
    """What a visitor reads: the Markdown source with ui.text.plain's backslash escapes removed."""
    return re.sub(r"\\(.)", r"\1", markdown)


def upload(name: str, data: bytes, page: str | None = None) -> AppTest:
    """A new session that chooses "a weights file" and uploads ``data`` as ``name``."""
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.radio(key="model_kind").set_value("file").run()
    assert_clean(at)
    at.file_uploader(key="weights_file_upload").upload(name, data).run()
    assert_clean(at)
    if page:
        at.switch_page(f"pages/{page}.py").run()
        assert_clean(at)
    return at


def canvas(at: AppTest, key: str = "explorer_graph") -> tuple[dict, dict]:
    """(the canvas's state of this run, its payload's header), as tests/test_app.py reads them."""
    from cprune_core.graph_view import decode_payload

    mounts = [el.proto for el in at.main.get("bidi_component") if el.proto.component_name == "cprune_graph_canvas"]
    state = next(json.loads(p.json) for p in mounts if p.WhichOneof("data") == "json" and p.id.endswith(key))
    header, _ = decode_payload(next(p.bytes for p in mounts if p.id.endswith(f"{key}-payload")))
    return state, header


def core_edges(path: Path, layer: str, tau: float) -> int:
    return summarize(threshold_adjacency(cosine_similarity(FileSource.open(path).weight_vectors(layer)), tau)).edges


def test_an_uploaded_file_is_explored_like_a_backbone_and_stays_out_of_the_link(stack_file):
    at = upload("stack.safetensors", stack_file.read_bytes())
    assert not at.error
    assert any("stack.safetensors**: 9 layers (a safetensors file), explore only" in shown(c.value)
               for c in at.sidebar.caption)
    assert at.title[0].value == "Graph explorer" and at.session_state["file_layer"] == "h.0.attn.proj"

    at.selectbox(key="widget_file_layer").set_value("h.0.mlp.fc").run()
    assert_clean(at)
    state, header = canvas(at)
    tau = state["tau"]
    assert header["n"] == 256 and header["counts"][header["taus"].index(tau)] == core_edges(stack_file, "h.0.mlp.fc", tau)
    assert at.query_params.get("layer") != "h.0.mlp.fc" and "h.0" not in str(at.query_params), "an upload is private"
    assert any("**weights of neuron" in m.value and "** (64)" in m.value for m in at.markdown)

    at.segmented_control(key="graph_colour").set_value("community").run()
    assert_clean(at)
    assert canvas(at)[0]["colouring"] == "community"
    from ui import cache

    graphml = cache.graph_file(at.session_state["model_key"], "h.0.mlp.fc", tau, "graphml")
    graph = nx.read_graphml(io.BytesIO(graphml), node_type=int)
    assert graph.number_of_nodes() == 256 and graph.number_of_edges() == core_edges(stack_file, "h.0.mlp.fc", tau)

    at.selectbox(key="widget_file_layer").set_value("patch_embed.proj").run()  # a Conv2d-like layer: filter images
    assert_clean(at)
    assert canvas(at)[1]["n"] == 32
    assert any("**filter of neuron" in m.value and "** (3 × 4 × 4)" in m.value for m in at.markdown)

    at.radio(key="model_kind").set_value("backbone").run()  # back to the registry: its own layer, in the link
    assert_clean(at)
    assert at.session_state["layer"] == "head.1" and at.query_params["layer"] == "head.1"


def test_how_it_works_and_the_layer_wise_page_on_a_file_give_the_cores_numbers(stack_file):
    at = upload("stack.safetensors", stack_file.read_bytes(), "how-it-works")
    assert at.session_state["hiw_layer"] == "h.0.attn.proj"  # the first layer of at most 64 neurons
    at.selectbox(key="hiw_layer").set_value("patch_embed.proj").run()  # 32 RGB 4 x 4 filters
    assert_clean(at)
    source = FileSource.open(stack_file)
    tau = at.session_state["tau"]
    adjacency = threshold_adjacency(cosine_similarity(source.weight_vectors("patch_embed.proj")), tau)
    edges = int(torch.count_nonzero(torch.triu(adjacency, 1)))
    assert any(f"**{edges}** of the 496 pairs" in m.value for m in at.markdown)
    ranking = at.dataframe[-1].value.sort_values("neuron")
    assert np.array_equal(ranking["centrality"].to_numpy(), make_criterion("eigenvector").from_adjacency(adjacency).scores.numpy())
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Weights"] == f"{16 * 48:,}" and metrics["Neurons kept"] == "16 of 32"  # keep 0.5
    assert any("Pruning and fine-tuning stay with the registry backbones" in c.value for c in at.caption)
    assert not [b for b in at.button if b.key and b.key.startswith("hiw_open")], "no Prune or Fine-tune link"

    at.switch_page("pages/layerwise.py").run()
    assert_clean(at)
    table = at.dataframe[0].value.set_index("layer")
    rows = {row["layer"]: row for row in layerwise_rows(source, tau)}
    assert list(table.index) == list(rows)  # every layer of the file, in file order
    for layer, row in rows.items():
        assert table.loc[layer, "edges"] == row["edges"] and table.loc[layer, "components"] == row["components"]
        assert table.loc[layer, "gini"] == pytest.approx(row["gini"], abs=1e-9)
    at.session_state["layerwise_table"] = {"selection": {"rows": [2], "columns": [], "cells": []}}
    at.run()
    assert_clean(at)
    assert at.title[0].value == "Graph explorer" and at.session_state["file_layer"] == table.index[2]


@pytest.mark.parametrize("page", ["prune", "finetune", "importance"])
def test_the_pages_that_prune_say_they_need_a_registry_backbone(stack_file, page):
    at = upload("stack.safetensors", stack_file.read_bytes(), page)
    assert [shown(i.value) for i in at.info] == [
        "Pruning and fine-tuning stay with the registry backbones: a weights file is only explored. Choose a "
        "registry backbone under Model in the sidebar."]
    assert not at.main.button, "this file fits no backbone: nothing is offered"


def test_a_file_that_fits_a_backbone_is_offered_as_its_checkpoint_and_prunes():
    state = load_backbone("efficientnet_lite0", "random").model.state_dict()
    at = upload("lite0.safetensors", save({name: tensor.contiguous() for name, tensor in state.items()}), "prune")
    assert any("This file fits efficientnet_lite0: use it as efficientnet_lite0's checkpoint" in c.value
               for c in at.main.caption)
    at.button(key="adopt_page_efficientnet_lite0").click().run()
    assert_clean(at)
    key = at.session_state["model_key"]
    assert (key.backbone, key.weights) == ("efficientnet_lite0", "checkpoint") and Path(key.checkpoint).is_file()
    assert at.title[0].value == "Prune" and next(m for m in at.metric if m.label == "Layer neurons kept")
    assert any("Checkpoint: your weights file lite0.safetensors" in shown(c.value) for c in at.sidebar.caption)
    assert at.radio(key="weights").value == "checkpoint"


def test_onnx_and_pytorch_files_open_in_the_explorer_with_the_cores_numbers(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 6 * 6, 24))
    onnx_path = tmp_path / "small.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 8, 8),), str(onnx_path), dynamo=False)
    pt_path = tmp_path / "small.pt"
    torch.save(model.state_dict(), pt_path)
    for path in (onnx_path, pt_path):
        at = upload(path.name, path.read_bytes())
        assert not at.error
        layers = [info.name for info in FileSource.open(path).layers]
        assert len(layers) == 2
        at.selectbox(key="widget_file_layer").set_value(layers[1]).run()  # the Linear: rows are its 24 neurons
        assert_clean(at)
        state, header = canvas(at)
        assert header["n"] == 24
        assert header["counts"][header["taus"].index(state["tau"])] == core_edges(path, layers[1], state["tau"])


def forged_safetensors(shape: list[int]) -> bytes:
    """A header claiming a float32 tensor of ``shape`` over 16 bytes of data."""
    text = json.dumps({"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 16]}}).encode()
    return struct.pack("<Q", len(text)) + text + bytes(16)


def torchscript_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(nn.Linear(3, 2)), buffer)
    return buffer.getvalue()


def torch_bytes(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


REFUSALS = {  # name: (file name, contents, what the sentence says)
    "integer only": ("q.safetensors", lambda: save({"q.weight": torch.ones(4, 4, dtype=torch.int8)}),
                     "q.safetensors holds no floating-point weight of rank 2 (Linear) to 5 (Conv3d)"),
    "NaN": ("nan.safetensors", lambda: save({"a.weight": torch.randn(4, 3),
                                             "b.weight": torch.tensor([[1.0, float("nan")], [2.0, 3.0]])}),
            "Layer b has NaN or Inf weights in 1 neuron(s)"),
    "not what its extension says": ("model.safetensors", lambda: torch_bytes({"a.weight": torch.randn(3, 3)}),
                                    "model.safetensors is not a safetensors file: its content looks like a "
                                    "PyTorch state dict (torch.save). Rename it with the extension .pt."),
    "truncated": ("cut.safetensors", lambda: save({"a.weight": torch.randn(6, 5)})[:-8],
                  "cut.safetensors: the safetensors header entry 'a.weight' points outside the file"),
    "not ONNX": ("x.onnx", lambda: b"\x08" + bytes(40), "x.onnx is not an ONNX model"),
    "oversized tensor": ("big.safetensors", lambda: forged_safetensors([2**15, 2**14]),
                         "big.safetensors: tensor 'w' claims 536,870,912 elements (2,147,483,648 bytes) but the "
                         "file holds 16 bytes for it"),
    "oversized file": ("big.pt", lambda: bytes(3 * 2**20), "The file is 3 MiB; the limit is 2 MiB."),
    "TorchScript": ("silero.jit", lambda: torchscript_bytes(), "silero.jit is a TorchScript program (torch.jit.save): "
                    "its weights come with code, which CPrune never runs. Save its state dict"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_file_is_one_sentence_and_deleted_at_once(case, monkeypatch):
    name, make, expected = REFUSALS[case]
    monkeypatch.setattr("cprune_server.uploads.MAX_CHECKPOINT_BYTES", 2 * 2**20)  # "oversized file"
    data = make()
    at = upload(name, data)
    said = [shown(e.value) for e in at.error]
    assert len(said) == 1 and expected in said[0] and "\n" not in said[0], said
    assert "Traceback" not in said[0] and not re.search(r"[0-9a-f]{16}-", said[0]), "named as uploaded"
    assert any("No model is loaded" in i.value for i in at.info)
    digest = hashlib.sha256(data).hexdigest()[:16]
    assert not list(uploads().folder.glob(f"{digest}-*")), "a refused upload is deleted at once"
    writes = []
    original = uploads().add
    monkeypatch.setattr(uploads(), "add", lambda *args: writes.append(args) or original(*args))
    at.run()  # any rerun: the same upload is neither written nor read again
    assert [shown(e.value) for e in at.error] == said and (writes == [] or case == "oversized file")


def test_a_model_in_the_servers_model_folders_is_explored_without_an_upload(tmp_path, monkeypatch):
    state = llama_like(blocks=1, hidden=32, mlp=64, vocab=24, dtype=torch.bfloat16)
    folder = hugging_face_checkpoint(tmp_path / "models" / "llama", state, shards=2)
    files = sorted(path.name for path in folder.iterdir())
    monkeypatch.setenv("CPRUNE_MODEL_ROOTS", str(tmp_path / "models"))
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.radio(key="model_kind").set_value("file").run()
    at.radio(key="file_source").set_value("server").run()
    assert_clean(at)
    assert at.selectbox(key="server_model").value == "models/llama" and not at.error
    captions = [shown(c.value) for c in at.sidebar.caption]
    assert any("models/llama**: 8 layers (a sharded checkpoint: an index and its shards (2 files))" in c
               for c in captions), captions
    assert any("tensors are not layers" in e.label for e in at.sidebar.expander)
    assert any("model.norm.weight: shape [32]: one value per channel" in text.value for text in at.sidebar.text)
    at.selectbox(key="widget_file_layer").set_value("model.layers.0.mlp.up_proj").run()
    assert_clean(at)
    _, header = canvas(at)
    vectors = state["model.layers.0.mlp.up_proj.weight"].float()
    tau = at.session_state["tau"]
    edges = summarize(threshold_adjacency(cosine_similarity(vectors), tau)).edges
    assert header["n"] == 64 and header["counts"][header["taus"].index(tau)] == edges
    assert sorted(path.name for path in folder.iterdir()) == files, "the server's model is only read"


# ----------------------------------------------------------------------------------------- in a real browser


@pytest.mark.browser
def test_in_a_browser_an_uploaded_file_is_drawn_with_the_cores_numbers_and_a_neuron_clicked(tmp_path, stack_file):
    from playwright.sync_api import sync_playwright

    from app_server import running_app

    refused = tmp_path / "int8.safetensors"
    refused.write_bytes(save({"q.weight": torch.ones(4, 4, dtype=torch.int8)}))
    requests: list[str] = []
    with running_app(tmp_path / "home") as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.on("request", lambda request: requests.append(request.url))
        try:
            _upload_and_draw(page, url, stack_file)
            _click_a_neuron(page)
            assert "h.0" not in page.url, "the link holds no layer of a visitor's file"
            SHOTS.mkdir(exist_ok=True)
            page.screenshot(path=str(SHOTS / "explorer-weights-file.png"))

            page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(refused))
            page.get_by_text("holds no floating-point weight").wait_for(timeout=60_000)
            page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')
            assert not page.locator('[data-testid="stException"]').count()
            page.screenshot(path=str(SHOTS / "weights-file-refused.png"))
        finally:
            browser.close()
    outside = sorted({u for u in requests if urlparse(u).scheme not in ("data", "blob", "about")
                      and urlparse(u).hostname not in ("127.0.0.1", "localhost")})
    assert not outside, f"requests to other hosts: {outside}"


def _idle(page) -> None:
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=180_000)


def _upload_and_draw(page, url: str, path: Path) -> None:
    """Choose "a weights file", upload ``path``, pick h.0.mlp.fc and check the canvas against the core."""
    page.goto(url)
    page.locator(".cg-root[data-frame]").wait_for(timeout=180_000)
    _idle(page)
    page.get_by_text("a weights file (explore only)").click()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
    page.get_by_text("9 layers (a safetensors file)").wait_for(timeout=120_000)
    page.locator(".cg-root[data-frame]").wait_for(timeout=120_000)
    _idle(page)
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Layer").first.click()
    page.get_by_role("option", name=re.compile(r"^h\.0\.mlp\.fc ·")).click()
    page.get_by_text("of neuron").locator("visible=true").first.wait_for(timeout=120_000)  # the glossary's are hidden
    page.locator('.cg-stat[data-stat="neurons"][data-value="256"]').wait_for(timeout=120_000)
    _idle(page)
    tau = float(status(page)["tau"])
    shown = wait_shown(page, tau)
    vectors = FileSource.open(path).weight_vectors("h.0.mlp.fc")
    adjacency = threshold_adjacency(cosine_similarity(vectors), tau)
    summary = summarize(adjacency)
    assert (shown["stats"]["edges"], shown["stats"]["components"], shown["stats"]["isolated"]) == (
        summary.edges, summary.components, summary.isolated)
    core = make_criterion("eigenvector").from_adjacency(adjacency).scores
    top = int(torch.argmax(core))
    seen = tooltip(page, top)  # the most central neuron: its centrality, rank and degree as the core's
    assert seen["rank"] == 1 and seen["centrality"] == pytest.approx(float(core[top]), abs=6e-5)
    assert seen["degree"] == int((adjacency[top] > 0).sum())


def _click_a_neuron(page) -> None:
    """Search neuron 9 (drawn at the canvas's centre), choose 3 in the panel, click the centre: the panel names 9."""
    find(page, 9)
    page.get_by_text("of neuron 9 (").wait_for(timeout=60_000)
    _idle(page)
    number = page.get_by_label("Neuron index", exact=True)
    number.fill("3")
    number.press("Enter")
    page.get_by_text("of neuron 3 (").wait_for(timeout=60_000)
    _idle(page)
    page.mouse.click(*canvas_centre(page))
    page.get_by_text("of neuron 9 (").wait_for(timeout=60_000)
    _idle(page)


HOSTILE_NAME = '<a href="https://example.com">x</a><b>bold</b><br><span style="color:red">red</span>.weight'


def test_a_tensor_named_in_html_is_text_in_every_chart_of_the_layer_wise_page():
    """Issue 29.10: the Layer-wise page's Plotly charts (tick labels, hover text) show a tensor's name as written:
    escaped for Plotly, so no link, bold, line break or styled span forms."""
    generator = torch.Generator().manual_seed(0)
    state = {HOSTILE_NAME: torch.randn(24, 16, generator=generator), "plain.weight": torch.randn(24, 16,
                                                                                              generator=generator)}
    at = upload("hostile.safetensors", save(state), "layerwise")
    specs = [json.loads(el.proto.spec) for el in at.main.get("plotly_chart")]  # "<" is \u003c in the JSON

    def texts(value) -> list[str]:
        if isinstance(value, dict):
            return [text for item in value.values() for text in texts(item)]
        if isinstance(value, list):
            return [text for item in value for text in texts(item)]
        return [value] if isinstance(value, str) else []

    shown = [texts(spec["data"]) + texts(spec["layout"]) for spec in specs]
    named = [chart for chart in shown if any(text.startswith("&lt;a href") for text in chart)]  # escaped
    assert len(named) >= 3, "the boxes, the concentration and the spectral figures name every layer"
    assert not any(tag in text for chart in shown for text in chart for tag in ("<a href", "<b>bold", "<span style"))


def test_how_it_works_on_a_file_opens_a_layer_that_shows_the_method():
    """Issue 28: a file whose first small layer has 2 neurons and no edge opens on a layer with enough neurons and
    an edge at tau, not on that one."""
    generator = torch.Generator().manual_seed(0)
    state = {"a.weight": torch.tensor([[1.0, 0.0], [0.0, 1.0]]), "b.weight": torch.randn(4, 8, generator=generator),
             "c.weight": clustered(32, 48, 4, generator)}
    at = upload("small.safetensors", save(state), "how-it-works")
    assert at.session_state["hiw_layer"] == "c"
    assert any(m.value.startswith("At τ") and "**0**" not in m.value for m in at.markdown)
