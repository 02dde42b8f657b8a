"""The graph canvas in a real browser: `streamlit run app.py` driven by Playwright with Debian's chromium,
WebGL switched off. What the canvas shows as tau moves (edges, components, each neuron's centrality, so its
colour) is checked against the core at three tau values; the slider by keyboard and by drag; a click and a
search selecting a neuron for the panel below; the layer where the browser does not hold every edge; and that
the browser asks no other host for anything. Timings are the benchmark's (bench/bench_app.py), not these tests'.
"""
from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from cprune_core import kept_indices, summarize, threshold_adjacency
from cprune_core.criteria import make_criterion
from cprune_core.graph import cosine_similarity
from cprune_core.layers import weight_vectors
from cprune_core.registry import load_backbone
from app_server import running_app

CHROMIUM = "/usr/bin/chromium"
# No GPU and no WebGL at all: the canvas is drawn with the Canvas 2D API only.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-webgl", "--disable-3d-apis",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
CANVAS = ".cg-root[data-frame]"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")


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


def snapshot(page) -> dict:
    return page.locator(".cg-root").evaluate("root => root.snapshot()")


def wait_tau(page, tau: float) -> dict:
    """The canvas redrawn at ``tau`` (before any server reply), and what it shows."""
    page.locator(f'.cg-root[data-tau="{tau:.2f}"]').wait_for(timeout=30_000)
    return snapshot(page)


def wait_released(page, tau: float) -> None:
    """Python heard the released tau: it is in the link, and the run it started is over."""
    page.wait_for_function(f"() => new URLSearchParams(location.search).get('tau') === '{tau:g}'", timeout=60_000)
    wait_idle(page)


@pytest.fixture(scope="module")
def head_similarity(lite0) -> torch.Tensor:
    module = lite0.model.get_submodule("head.1")
    return cosine_similarity(weight_vectors(module, "head.1"))


def assert_the_cores(shown: dict, similarity: torch.Tensor, tau: float) -> None:
    """The canvas's numbers at ``tau`` are the core's: counts exactly, centrality by rank."""
    adjacency = threshold_adjacency(similarity, tau)
    summary = summarize(adjacency)
    assert shown["source"] == "browser" and shown["tau"] == pytest.approx(tau)
    assert (shown["edges"], shown["components"], shown["isolated"], shown["largest"]) == (
        summary.edges, summary.components, summary.isolated, summary.largest_component)
    assert shown["density"] == pytest.approx(summary.density, rel=1e-12)
    core = make_criterion("eigenvector").from_adjacency(adjacency).scores
    assert np.array_equal(np.array(shown["degree"]), (adjacency > 0).sum(1).numpy())
    browser_centrality = torch.tensor(shown["centrality"])
    assert spearmanr(browser_centrality.numpy(), core.numpy()).statistic >= 0.999
    half = similarity.shape[0] // 2
    assert kept_indices(browser_centrality, half) == kept_indices(core, half)  # the same top half


def test_tau_by_keyboard_redraws_in_the_browser_with_the_cores_numbers(page, server, head_similarity):
    open_graph(page, f"{server}/?layer=head.1&tau=0.1")
    assert page.evaluate("() => document.createElement('canvas').getContext('webgl') === null")  # WebGL off
    assert_the_cores(snapshot(page), head_similarity, 0.10)
    slider = page.locator(".cg-slider")
    for keys, tau in ((["ArrowRight"] * 3, 0.13), (["ArrowRight"] * 5, 0.18), (["ArrowLeft"] * 12, 0.06)):
        slider.focus()
        for key in keys:
            slider.press(key)
        assert_the_cores(wait_tau(page, tau), head_similarity, tau)
        wait_released(page, tau)  # the keys' burst is sent once, when they settle


def test_dragging_draws_each_step_and_tells_python_once_on_release(page, server):
    open_graph(page, f"{server}/?layer=head.1&tau=0.1")
    frames_before = snapshot(page)["frame"]
    sent: list[float] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda _: sent.append(time.time())))
    page.reload()  # the listener sees the page's own connection from its start
    page.locator(CANVAS).wait_for(timeout=60_000)
    wait_idle(page)
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
    taus = {round(t["tau"], 2) for t in snapshot(page)["timings"] if t["inputAt"] is not None}
    assert len(taus) >= 5 and released > 0.12  # drawn at each step on the way
    wait_released(page, released)
    assert snapshot(page)["frame"] > frames_before


def test_a_click_and_a_search_select_a_neuron_for_the_panel(page, server):
    open_graph(page, f"{server}/?layer=blocks.1.expand.1&tau=0.25")
    # the neuron farthest from any other, so that the click cannot land on a neighbour
    loneliest = page.locator(".cg-root").evaluate("""root => {
        const n = root.snapshot().n, points = Array.from({length: n}, (_, i) => root.pointOf(i));
        let best = 0, bestGap = -1;
        points.forEach((p, i) => {
            let gap = Infinity;
            points.forEach((q, j) => { if (i !== j) gap = Math.min(gap, Math.hypot(p.x - q.x, p.y - q.y)); });
            if (gap > bestGap) { best = i; bestGap = gap; }
        });
        return best;
    }""")
    assert snapshot(page)["selected"] != loneliest
    point = page.locator(".cg-root").evaluate("(root, node) => root.pointOf(node)", loneliest)
    page.mouse.click(point["x"], point["y"])
    assert snapshot(page)["selected"] == loneliest  # ringed at once
    number = page.get_by_label("Neuron index", exact=True)
    page.wait_for_function("([el, v]) => el.value === v", arg=[number.element_handle(), str(loneliest)],
                           timeout=30_000)
    wait_idle(page)
    assert page.get_by_text(f"of neuron {loneliest} (").count()  # its filter image

    search = page.locator(".cg-search")
    search.fill("7")
    search.press("Enter")
    page.wait_for_function("([el, v]) => el.value === v", arg=[number.element_handle(), "7"], timeout=30_000)
    wait_idle(page)
    search.fill("96")  # out of range: said, nothing selected
    search.press("Enter")
    assert "cg-invalid" in search.get_attribute("class") and snapshot(page)["selected"] == 7


def test_how_it_works_and_prune_draw_the_same_canvas_and_a_png_is_made_in_the_browser(page, server):
    open_graph(page, f"{server}/how-it-works?tau=0.2")
    shown = snapshot(page)
    assert shown["n"] == 32 and shown["source"] == "browser" and shown["tau"] == pytest.approx(0.2)
    assert page.locator(".cg-slider").is_hidden()  # the page's own τ slider moves it
    open_graph(page, f"{server}/prune?layer=blocks.1.expand.1&keep=0.25")
    assert snapshot(page)["n"] == 96
    with page.expect_download() as download:
        page.locator(".cg-png").click()
    path = download.value.path()
    assert download.value.suggested_filename.endswith("-tau0.10.png")
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_where_the_browser_does_not_hold_every_edge_it_says_so_and_shows_the_servers_numbers(page, server):
    """VGG16's classifier.3 with (seeded) random weights: 4,096 neurons with 841,071 edges at tau 0.02, more than the
    500,000 the browser is sent; from 0.03 (229,909 edges) on it holds them all."""
    vgg = load_backbone("vgg16", "random").model
    similarity = cosine_similarity(weight_vectors(vgg.get_submodule("classifier.3"), "classifier.3"))
    page.goto(f"{server}/?backbone=vgg16&layer=classifier.3&tau=0.03")
    page.get_by_role("button", name="Use random init instead").click(timeout=120_000)  # offline: no ImageNet weights
    page.locator(CANVAS).wait_for(timeout=240_000)
    wait_idle(page)
    shown = snapshot(page)
    assert shown["held"] == 500_000
    assert_the_cores(shown, similarity, 0.03)
    slider = page.locator(".cg-slider")
    slider.focus()
    slider.press("ArrowLeft")
    waiting = wait_tau(page, 0.02)
    assert waiting["source"] in ("waiting", "server") and waiting["edges"] == summarize(
        threshold_adjacency(similarity, 0.02)).edges > 500_000
    assert "the browser holds the 500,000 strongest" in page.locator(".cg-note").inner_text()
    wait_released(page, 0.02)
    page.locator('.cg-root[data-source="server"]').wait_for(timeout=60_000)  # the server's numbers for 0.02
    shown = snapshot(page)
    adjacency = threshold_adjacency(similarity, 0.02)
    summary = summarize(adjacency)
    assert (shown["components"], shown["isolated"], shown["largest"]) == (
        summary.components, summary.isolated, summary.largest_component)
    assert np.array_equal(np.array(shown["centrality"], np.float32), make_criterion("eigenvector").from_adjacency(adjacency).scores.numpy())


def test_the_script_health_check_runs_no_script(server):
    """Off (.streamlit/config.toml): the path is the app's page, not a run of app.py for whoever asks."""
    import urllib.request

    with urllib.request.urlopen(f"{server}/_stcore/script-health-check", timeout=30) as response:
        body = response.read().decode()
    assert response.headers.get_content_type() == "text/html" and '<div id="root">' in body
