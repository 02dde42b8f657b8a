"""The graph canvas (ui/graph_canvas.py, ui/components/graph_canvas/).

- Its JavaScript on its own: ``node --test tests/js/`` on payloads the core wrote (tests/js/make_fixtures.py), so
  the browser's counts and power iteration are checked against the core's at every tau step, in milliseconds.
- Its modules joined into the one module Streamlit loads (``bundle``), and what the joining refuses.
- Messages from the browser checked on the server: a forged tau or neuron is ignored, with no exception.
- In a real browser: `streamlit run app.py` driven by Playwright with Debian's chromium, WebGL switched off. What
  the canvas shows as tau moves (edges, components, isolated neurons, and neurons' centrality, rank and degree in
  their tooltips) is the core's; the slider by keyboard and by drag; a click and a search selecting a neuron for
  the panel below; the layer where the browser does not hold every edge; a layer of 14,336 neurons with 1.5
  million edges, all held (bench/large_layer.py on bench/canvas_app.py's page; slow); and that the browser asks
  no other host for anything. Timings are the benchmark's (bench/bench_app.py), not these tests'.
"""
from __future__ import annotations

import json
import math
import os
import runpy
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
from canvas_page import CANVAS, FRAME_ENTRY, canvas_centre, entries, find, status, tooltip, wait_shown
from streamlit.runtime.state.session_state import STREAMLIT_INTERNAL_KEY_PREFIX
from streamlit.testing.v1 import AppTest

from cprune_core import summarize, threshold_adjacency
from cprune_core.criteria import make_criterion
from cprune_core.errors import ConfigError
from cprune_core.graph import cosine_similarity
from cprune_core.layers import weight_vectors
from cprune_core.registry import load_backbone
from ui.graph_canvas import bundle, chosen_neuron, released_tau
from app_server import running_app

ROOT = Path(__file__).resolve().parents[1]
JS_TESTS = ROOT / "tests" / "js"
NODE = shutil.which("node")
CHROMIUM = "/usr/bin/chromium"
# No GPU and no WebGL at all: the canvas is drawn with the Canvas 2D API only.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-webgl", "--disable-3d-apis",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
TAUS = np.round(np.arange(0, 1, 0.01), 2)
FORGED_TAUS = [1.5, -0.01, 0.005, float("nan"), float("inf"), "0.3", [0.3], {"tau": 0.3}, True, 10**400, 1e308, None]
FORGED_NEURONS = [-1, -5, 3, 4, 10**30, 1.0, 2.5, "1", [1], True, float("nan"), None]  # a graph of 3 neurons



def in_browser(test):
    """Marks a test that drives Debian's chromium (skipped without it)."""
    missing = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason=f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    return pytest.mark.browser(missing(test))


# ------------------------------------------------------------------ the JavaScript on its own

@pytest.mark.skipif(NODE is None, reason="node is missing: the canvas's JavaScript tests need node 20 (no npm package)")
def test_the_canvas_javascript_computes_the_cores_numbers(tmp_path, lite0):
    """tests/js/ run by node on fixtures written here: a real EfficientNet-Lite0 layer (head.1), random ones (one
    with a step budget too small to converge), an edgeless one and one of several components."""
    write_fixtures = runpy.run_path(str(JS_TESTS / "make_fixtures.py"))["write_fixtures"]
    assert write_fixtures(tmp_path, lite0) == ["lite0_head", "random", "random_budget", "edgeless", "components"]
    run = subprocess.run([NODE, "--test", "--test-reporter=tap", str(JS_TESTS)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "CPRUNE_CANVAS_FIXTURES": str(tmp_path)})
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    summary = dict(line[2:].split(" ", 1) for line in run.stdout.splitlines() if line.startswith("# ") and
                   line[2:].split(" ")[0] in ("pass", "fail", "skipped"))
    assert int(summary["pass"]) >= 25 and summary["fail"] == "0" and summary["skipped"] == "0", summary


# ------------------------------------------------------------------ the modules joined

def modules(folder: Path, **texts: str) -> list[str]:
    for name, text in texts.items():
        (folder / f"{name}.js").write_text(text)
    return [f"{name}.js" for name in texts]


def test_bundle_joins_modules_into_one_with_the_entrys_default_export(tmp_path):
    names = modules(tmp_path,
                    maths='// a comment line, left out\nexport const TWO = 2;\nexport function twice(x) {\n  return TWO * x;\n}\n',
                    entry='import { twice } from "./maths.js";\n\nexport default function run() {\n  return twice(4);\n}\n')
    joined = bundle(tmp_path, names)
    assert "import" not in joined and joined.count("export") == 1 and "export default function run" in joined
    assert "const TWO = 2;" in joined and "a comment line" not in joined
    if NODE:
        (tmp_path / "joined.mjs").write_text(joined)
        ran = subprocess.run([NODE, "--input-type=module", "-e",
                              f"import run from {json.dumps((tmp_path / 'joined.mjs').as_uri())}; console.log(run())"],
                             capture_output=True, text=True, timeout=60)
        assert ran.stdout.strip() == "8", ran.stderr


@pytest.mark.parametrize(("texts", "refusal"), [
    ({"entry": 'import { twice } from "./maths.js";\nexport default function run() {}\n',
      "maths": "export function twice(x) {}\n"}, "not a module listed before it"),
    ({"maths": "export function twice(x) {}\n",
      "entry": 'import { thrice } from "./maths.js";\nexport default function run() {}\n'}, "thrice"),
    ({"maths": 'import * as all from "./other.js";\nexport function twice(x) {}\n',
      "entry": "export default function run() {}\n"}, "cannot be joined"),
    ({"maths": "export default function twice(x) {}\n", "entry": "export default function run() {}\n"},
     "cannot be joined"),
    ({"maths": "export const LIMIT = 1;\n", "entry": "const LIMIT = 2;\nexport default function run() {}\n"},
     "LIMIT is declared in both"),
    ({"maths": 'import {\n  twice,\n} from "./x.js";\n', "entry": "export default function run() {}\n"},
     "cannot be joined"),
])
def test_bundle_refuses_what_it_cannot_join(tmp_path, texts, refusal):
    with pytest.raises(ConfigError, match=refusal):
        bundle(tmp_path, modules(tmp_path, **texts))


# ------------------------------------------------------------------ what the browser sends, checked

def test_a_released_tau_must_be_one_of_the_sliders_steps():
    assert released_tau(0.13, TAUS) == 0.13 and released_tau(0, TAUS) == 0.0 and released_tau(0.99, TAUS) == 0.99
    for forged in FORGED_TAUS:
        assert released_tau(forged, TAUS) is None, forged


def test_a_chosen_neuron_must_be_an_index_of_the_graph():
    assert [chosen_neuron(value, 3) for value in (0, 2)] == [0, 2]
    for forged in FORGED_NEURONS:
        assert chosen_neuron(forged, 3) is None, forged


def canvas_app() -> None:
    """A page with one canvas of 3 neurons whose released tau and chosen neuron go to the session state."""
    import numpy as np
    import streamlit as st
    import torch

    from cprune_core.graph_view import build_payload
    from ui.graph_canvas import graph_canvas, send_payload

    similarity = torch.tensor([[1.0, 0.5, 0.1], [0.5, 1.0, 0.3], [0.1, 0.3, 1.0]])
    taus = [round(0.01 * k, 2) for k in range(100)]
    payload = build_payload(similarity, np.zeros((3, 2)), np.ones(3), taus, max_iter=100)
    tau = st.session_state.setdefault("tau", 0.1)
    send_payload(payload, key="graph")
    graph_canvas(payload, key="graph", tau=tau, view=None, on_tau=lambda value: st.session_state.update(tau=value),
                 on_neuron=lambda value: st.session_state.update(neuron=value))
    st.write(f"tau {st.session_state.tau}, neuron {st.session_state.get('neuron')}")


def send(at: AppTest, event: str, value: object, key: str = "graph") -> None:
    """Run ``at`` as if the browser of its canvas ``key`` had sent ``event`` with ``value``: the trigger message a
    page sends, written by hand, as a forged one would be."""
    canvas = next(el.proto for el in at.main.get("bidi_component") if el.proto.id.endswith(key))
    states = at._tree.get_widget_states()
    trigger = states.widgets.add()
    trigger.id = f"{STREAMLIT_INTERNAL_KEY_PREFIX}_{canvas.id}__events"
    trigger.json_trigger_value = json.dumps([{"event": event, "value": value}])
    at._run(states)


def test_forged_messages_are_ignored_without_an_exception_and_true_ones_are_heard():
    at = AppTest.from_function(canvas_app, default_timeout=60).run()
    for forged in FORGED_TAUS:
        send(at, "tau", forged)
        assert not at.exception and at.session_state["tau"] == 0.1, forged
    for forged in FORGED_NEURONS:
        send(at, "neuron", forged)
        assert not at.exception and "neuron" not in at.session_state, forged
    send(at, "tau", 0.3)  # what the canvas sends: heard, so the forged ones were ignored, not lost in transit
    send(at, "neuron", 2)
    assert not at.exception and (at.session_state["tau"], at.session_state["neuron"]) == (0.3, 2)
    assert at.markdown[-1].value == "tau 0.3, neuron 2"


@pytest.mark.usefixtures("app_home")
def test_a_forged_tau_or_neuron_leaves_the_explorer_and_the_later_pages_as_they_were():
    """Before the check a forged tau of 1.5 raised in the session and broke every later page until a reload, and
    a neuron of -1 chose the last one."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    tau, neuron = at.session_state["tau"], at.session_state["neuron"]
    for event, value in [("tau", 1.5), ("tau", math.nan), ("tau", "0.3"), ("neuron", -1), ("neuron", 1280),
                         ("neuron", [3])]:
        send(at, event, value, key="explorer_graph")
        assert not at.exception, (event, value)
    assert (at.session_state["tau"], at.session_state["neuron"]) == (tau, neuron)
    at.switch_page("pages/prune.py").run()
    assert not at.exception


# ------------------------------------------------------------------ in a real browser

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("cprune-home")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server):
    """A fresh page that records every request; the test fails if one went to another host."""
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    yield page
    page.close()
    outside = sorted({url for url in requests
                      if urlparse(url).scheme not in ("data", "blob", "about")
                      and urlparse(url).hostname not in ("127.0.0.1", "localhost")})
    assert not outside, f"requests to other hosts: {outside}"


def wait_idle(page) -> None:
    page.wait_for_selector(IDLE, timeout=180_000)


def open_graph(page, url: str) -> None:
    page.goto(url)
    page.locator(CANVAS).wait_for(timeout=180_000)
    wait_idle(page)


def wait_released(page, tau: float) -> None:
    """Python heard the released tau: it is in the link, and the run it started is over."""
    page.wait_for_function(f"() => new URLSearchParams(location.search).get('tau') === '{tau:g}'", timeout=60_000)
    wait_idle(page)


@pytest.fixture(scope="module")
def head_similarity(lite0) -> torch.Tensor:
    module = lite0.model.get_submodule("head.1")
    return cosine_similarity(weight_vectors(module, "head.1"))


def assert_the_cores(page, similarity: torch.Tensor, tau: float) -> None:
    """The canvas's numbers at ``tau`` are the core's: the counts above the graph; the most central neurons'
    centrality (to the tooltip's 4 decimals), rank and degree, and a middling one's centrality and degree."""
    shown = wait_shown(page, tau)
    adjacency = threshold_adjacency(similarity, tau)
    summary = summarize(adjacency)
    assert shown["source"] == "browser"
    stats = shown["stats"]
    assert (stats["edges"], stats["components"], stats["isolated"], stats["largest"]) == (
        summary.edges, summary.components, summary.isolated, summary.largest_component)
    assert stats["density"] == pytest.approx(summary.density, rel=1e-12)
    core = make_criterion("eigenvector").from_adjacency(adjacency).scores
    degree = (adjacency > 0).sum(1)
    order = torch.argsort(core, descending=True, stable=True).tolist()
    for rank, neuron in [(1, order[0]), (2, order[1]), (None, order[len(order) // 2])]:
        seen = tooltip(page, neuron)
        assert seen["centrality"] == pytest.approx(float(core[neuron]), abs=6e-5) and seen["degree"] == degree[neuron]
        assert rank is None or seen["rank"] == rank


@in_browser
def test_tau_by_keyboard_redraws_in_the_browser_with_the_cores_numbers(page, server, head_similarity):
    open_graph(page, f"{server}/?layer=head.1&tau=0.1")
    assert page.evaluate("() => document.createElement('canvas').getContext('webgl') === null")  # WebGL off
    assert_the_cores(page, head_similarity, 0.10)
    slider = page.locator(".cg-slider")
    for keys, tau in ((["ArrowRight"] * 3, 0.13), (["ArrowRight"] * 5, 0.18), (["ArrowLeft"] * 12, 0.06)):
        slider.focus()
        for key in keys:
            slider.press(key)
        wait_shown(page, tau)
        wait_released(page, tau)  # the keys' burst is sent once, when they settle
        assert_the_cores(page, head_similarity, tau)


@in_browser
def test_dragging_draws_each_step_and_tells_python_once_on_release(page, server):
    open_graph(page, f"{server}/?layer=head.1&tau=0.1")
    sent: list[float] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda _: sent.append(time.time())))
    page.reload()  # the listener sees the page's own connection from its start
    page.locator(CANVAS).wait_for(timeout=60_000)
    wait_idle(page)
    frames_before = int(status(page)["frame"])
    box = page.locator(".cg-slider").bounding_box()
    left, width, y = box["x"] + 8, box["width"] - 16, box["y"] + box["height"] / 2  # the thumb's travel
    page.mouse.move(left + width * 0.10 / 0.99, y)
    page.mouse.down()
    dragging_since = time.time()
    for step in range(1, 21):
        page.mouse.move(left + width * (0.10 + step * 0.004) / 0.99, y)
        page.wait_for_timeout(30)
    assert not [t for t in sent if t > dragging_since], "nothing is sent to Python while dragging"
    page.mouse.up()
    released = float(page.locator(".cg-tau-value").inner_text())
    taus = {round(frame["tau"], 2) for frame in entries(page, FRAME_ENTRY) if frame["input"]}
    assert len(taus) >= 5 and released > 0.12  # drawn at each step on the way
    wait_released(page, released)
    assert int(status(page)["frame"]) > frames_before
    wait_shown(page, released)  # and its centrality computed once the slider rests


@in_browser
def test_a_click_and_a_search_select_a_neuron_for_the_panel(page, server):
    open_graph(page, f"{server}/?layer=blocks.1.expand.1&tau=0.25")
    number = page.get_by_label("Neuron index", exact=True)

    def panel_shows(neuron: int) -> None:
        # Looked up afresh at each poll: while the page reruns, Streamlit keeps the old input beside the new one, and
        # a handle taken then can be the old one, replaced and never updated (a timeout, or two inputs found).
        page.wait_for_function("v => { const inputs = document.querySelectorAll('input[aria-label=\"Neuron index\"]');"
                               " return inputs.length === 1 && inputs[0].value === v; }", arg=str(neuron),
                               timeout=60_000)
        wait_idle(page)

    find(page, 40)  # searched: selected, drawn at the centre, and the panel below follows
    panel_shows(40)
    number.fill("7")  # chosen in the panel: the canvas follows, and its view stays where it was
    number.press("Enter")
    page.locator('.cg-root[data-selected="7"]').wait_for(timeout=30_000)
    wait_idle(page)
    page.mouse.click(*canvas_centre(page))  # a click on neuron 40, still at the centre
    assert status(page)["selected"] == "40"  # ringed at once
    panel_shows(40)
    assert page.get_by_text("of neuron 40 (").count()  # its filter image

    search = page.locator(".cg-search")
    search.fill("96")  # out of range: said, nothing selected
    search.press("Enter")
    assert "cg-invalid" in search.get_attribute("class") and status(page)["selected"] == "40"


@in_browser
def test_how_it_works_and_prune_draw_the_same_canvas_and_a_png_is_made_in_the_browser(page, server):
    open_graph(page, f"{server}/how-it-works?tau=0.2")
    shown = wait_shown(page, 0.2)
    assert shown["stats"]["neurons"] == 32 and shown["source"] == "browser"
    assert page.locator(".cg-slider").is_hidden()  # the page's own τ slider moves it
    open_graph(page, f"{server}/prune?layer=blocks.1.expand.1&keep=0.25")
    assert status(page)["stats"]["neurons"] == 96
    with page.expect_download() as download:
        page.locator(".cg-png").click()
    path = download.value.path()
    assert download.value.suggested_filename.endswith("-tau0.10.png")
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@in_browser
def test_where_the_browser_does_not_hold_every_edge_it_says_so_and_shows_the_servers_numbers(page, server):
    """VGG16's classifier.3 with (seeded) random weights: 4,096 neurons with 2,188,212 edges at tau 0.01, more than
    the 2,000,000 the browser is sent; from 0.02 (841,071 edges) on it holds them all."""
    vgg = load_backbone("vgg16", "random").model
    similarity = cosine_similarity(weight_vectors(vgg.get_submodule("classifier.3"), "classifier.3"))
    page.goto(f"{server}/?backbone=vgg16&layer=classifier.3&tau=0.02")
    page.get_by_role("button", name="Use random init instead").click(timeout=120_000)  # offline: no ImageNet weights
    page.locator(CANVAS).wait_for(timeout=240_000)
    wait_idle(page)
    shown = wait_shown(page, 0.02, centrality="final")
    assert shown["held"] == "2000000"
    summary = summarize(threshold_adjacency(similarity, 0.02))
    assert (shown["stats"]["edges"], shown["stats"]["components"], shown["stats"]["isolated"]) == (
        summary.edges, summary.components, summary.isolated)
    slider = page.locator(".cg-slider")
    slider.focus()
    slider.press("ArrowLeft")
    page.locator('.cg-root[data-tau="0.01"]').wait_for(timeout=30_000)
    waiting = status(page)
    assert waiting["source"] in ("waiting", "server") and waiting["stats"]["edges"] == summarize(
        threshold_adjacency(similarity, 0.01)).edges > 2_000_000
    assert "the browser holds the 2,000,000 strongest" in page.locator(".cg-note").inner_text()
    wait_released(page, 0.01)
    shown = wait_shown(page, 0.01)  # the server's numbers for 0.01
    adjacency = threshold_adjacency(similarity, 0.01)
    summary = summarize(adjacency)
    assert shown["source"] == "server" and (shown["stats"]["components"], shown["stats"]["isolated"],
                                            shown["stats"]["largest"]) == (
        summary.components, summary.isolated, summary.largest_component)
    core = make_criterion("eigenvector").from_adjacency(adjacency).scores
    top = int(torch.argmax(core))
    assert tooltip(page, top)["rank"] == 1


@contextmanager
def serving(script: str, env: dict[str, str]) -> Iterator[str]:
    """`streamlit run SCRIPT` (a page of this repository) on a free local port, with ``env``: its URL while it runs."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                assert time.time() < deadline and process.poll() is None, f"{script} did not start"
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:  # a server still busy building when its test ended
            process.kill()
            process.wait()


def edge_list_adjacency(saved, tau: float) -> torch.Tensor:
    """The dense adjacency at ``tau`` of a layer saved by bench/large_layer.py, from the edges it holds (those the
    canvas was sent): what ``threshold_adjacency`` makes of its similarity, which is 0 between clusters."""
    n = len(saved["vectors"])
    above = saved["weights"] > np.float32(tau)
    rows, cols = torch.from_numpy(saved["rows"][above]), torch.from_numpy(saved["cols"][above])
    weights = torch.from_numpy(saved["weights"][above])
    adjacency = torch.zeros(n, n)
    adjacency[rows, cols] = weights
    adjacency[cols, rows] = weights
    return adjacency


@pytest.mark.slow
@in_browser
def test_a_layer_of_14336_neurons_with_1_5_million_edges_is_held_and_shows_the_cores_numbers(browser, tmp_path):
    layer = tmp_path / "large.npz"
    subprocess.run([sys.executable, "bench/large_layer.py", str(layer)], cwd=ROOT, check=True, timeout=300,
                   capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    saved = np.load(layer)
    held = len(saved["weights"])
    assert held > 1_400_000
    with serving("bench/canvas_app.py", {"CPRUNE_CANVAS_LAYER": str(layer)}) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        open_graph(page, f"{url}/?tau=0.1")
        slider = page.locator(".cg-slider")
        for presses, tau in ((0, 0.10), (3, 0.13)):
            slider.focus()
            for _ in range(presses):
                slider.press("ArrowRight")
            shown = wait_shown(page, tau, centrality="final")
            assert shown["held"] == str(held) and shown["source"] == "browser"  # every edge, in the browser
            assert "the browser holds the" not in page.locator(".cg-note").inner_text()
            adjacency = edge_list_adjacency(saved, tau)
            summary = summarize(adjacency)
            assert (shown["stats"]["neurons"], shown["stats"]["edges"], shown["stats"]["components"],
                    shown["stats"]["isolated"], shown["stats"]["largest"]) == (
                14_336, summary.edges, summary.components, summary.isolated, summary.largest_component)
            core = make_criterion("eigenvector").from_adjacency(adjacency).scores
            del adjacency
            top = int(torch.argmax(core))
            seen = tooltip(page, top)
            assert seen["rank"] == 1 and seen["centrality"] == pytest.approx(float(core[top]), abs=6e-5)
        wait_released(page, 0.13)
        page.close()


@in_browser
def test_the_script_health_check_runs_no_script(server):
    """Off (.streamlit/config.toml): the path is the app's page, not a run of app.py for whoever asks."""
    import urllib.request

    with urllib.request.urlopen(f"{server}/_stcore/script-health-check", timeout=30) as response:
        body = response.read().decode()
    assert response.headers.get_content_type() == "text/html" and '<div id="root">' in body
