"""End to end in a real browser: `streamlit run app.py` driven by Playwright with Debian's chromium.

Opens every page, moves the graph canvas's tau slider with the keyboard, checks the canvas and the
pyvis view render, and that the browser never asked any host other than the app's for
anything (the canvas's own tests: tests/test_graph_canvas.py). Screenshots go to screenshots/ (git-ignored); docs/screenshots/ holds copies.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "screenshots"
LOCAL_HOSTS = {"localhost", "127.0.0.1"}
LOCAL_SCHEMES = {"data", "blob", "about"}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    home = tmp_path_factory.mktemp("cprune-home")  # the run store of this test only
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", "CPRUNE_HOME": str(home)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            if time.time() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"streamlit did not start: {process.stdout.read().decode()[-2000:]}")
            time.sleep(0.3)
    yield url
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


# True once the pyvis canvas has any non-transparent pixel.
DRAWN_CANVAS = """() => {
    const canvas = document.querySelector('#mynetwork canvas');
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < pixels.length; i += 4 * 7) if (pixels[i] > 0) return true;
    return false;
}"""


def is_local(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in LOCAL_SCHEMES or parsed.hostname in LOCAL_HOSTS


def wait_idle(page, timeout: float = 60_000, settle_ms: int = 300) -> None:
    """Wait until Streamlit has finished the current script run (after ``settle_ms`` for a
    rerun that an input just asked for to begin)."""
    page.wait_for_timeout(settle_ms)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)


def metric(page, label: str) -> str:
    card = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return card.locator('[data-testid="stMetricValue"]').inner_text()


def canvas_stat(page, name: str) -> str:
    """A number the graph canvas shows above the graph (edges, components, ...), as it reads."""
    return page.locator(f'.cg-stat[data-stat="{name}"] b').inner_text()


def shoot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def open_page(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
    wait_idle(page)


def launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def test_navigation_lists_the_pages_in_order_and_each_url_opens_its_page(server):
    """Runs first, on the fresh server: its very first request goes straight to a page other than the
    default (Streamlit's legacy pages/ mode would run that page without app.py; ui/frame.py handles it)."""
    from playwright.sync_api import sync_playwright

    from ui.navigation import PAGES

    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            for entry in sorted(PAGES, key=lambda e: e.url_path != "prune"):  # /prune first
                page.goto(f"{server}/{entry.url_path}")
                page.get_by_role("heading", name=entry.title).first.wait_for(timeout=120_000)
                wait_idle(page)
                links = page.locator('[data-testid="stSidebarNav"] a')
                assert links.all_inner_texts() == [e.title for e in PAGES]
                assert not page.locator('[data-testid="stException"]').count(), entry
                assert urlparse(page.url).path.strip("/") == entry.url_path, page.url
        finally:
            browser.close()


def test_every_page_offline(server):
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    timings = {}
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1250})
        page.on("request", lambda request: requests.append(request.url))
        try:
            start = time.perf_counter()
            page.goto(f"{server}/?layer=head.1")
            page.locator(".cg-root[data-frame]").wait_for(timeout=120_000)  # the graph canvas has drawn
            wait_idle(page)
            timings["first page (new session)"] = time.perf_counter() - start

            page.reload()
            start = time.perf_counter()
            page.locator(".cg-root[data-frame]").wait_for(timeout=60_000)
            wait_idle(page)
            timings["first page (reload)"] = time.perf_counter() - start

            edges = canvas_stat(page, "edges")
            slider = page.locator(".cg-slider")
            first_change, complete = [], []  # per step: the canvas redrawn at the new tau; Python's run over
            for tau in ("0.11", "0.12", "0.13"):
                slider.focus()
                start = time.perf_counter()
                slider.press("ArrowRight")
                page.locator(f'.cg-root[data-tau="{tau}"]').wait_for(timeout=30_000)
                first_change.append(time.perf_counter() - start)
                page.wait_for_function(f"() => location.search.includes('tau={tau}')")
                wait_idle(page, settle_ms=0)
                complete.append(time.perf_counter() - start)
            timings["tau slider on head.1: figures updated (median of 3)"] = sorted(first_change)[1]
            timings["tau slider on head.1: run complete (median of 3)"] = sorted(complete)[1]
            assert canvas_stat(page, "edges") != edges
            shoot(page, "explorer")

            # A shared link cannot put markup on the page: the rejected values are shown as text.
            page.goto(f"{server}/?backbone=![pixel](https://example.com/p.png)&layer=[x](https://example.com)")
            page.get_by_text("Ignored a link parameter").first.wait_for(timeout=60_000)
            wait_idle(page)
            alert = page.locator('[data-testid="stAlert"]').first.inner_text().replace("\u200b", "")
            assert "![pixel](https://example.com/p.png)" in alert  # shown as written
            outside = ", ".join(f'{tag}[{attribute}^="{scheme}://example.com"]' for tag, attribute in
                                (("img", "src"), ("a", "href")) for scheme in ("http", "https"))
            assert not page.locator(outside).count()

            page.goto(f"{server}/?layer=blocks.1.expand.1")
            page.locator(".cg-root[data-frame]").wait_for(timeout=60_000)
            wait_idle(page)
            page.get_by_role("radio", name="pyvis physics").click()
            wait_idle(page)
            iframe = page.locator('iframe[title="st.iframe"]')
            iframe.scroll_into_view_if_needed()
            frame = iframe.element_handle().content_frame()
            frame.wait_for_selector("#mynetwork canvas", timeout=60_000)
            frame.wait_for_function(DRAWN_CANVAS, timeout=60_000)  # vis-network drew the graph
            page.wait_for_timeout(1000)
            shoot(page, "explorer-pyvis")

            open_page(page, "How it works")
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            shoot(page, "how-it-works")

            open_page(page, "Does centrality predict importance?")
            page.locator('[data-testid="stSelectbox"]').filter(has_text="Image size").click()
            page.get_by_role("option", name="64", exact=True).click()
            wait_idle(page)
            page.get_by_role("button", name="Analyse").click()
            page.get_by_text("neurons of head.1").first.wait_for(timeout=300_000)  # the generated finding
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            wait_idle(page)
            shoot(page, "importance")

            open_page(page, "Prune")
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            before = metric(page, "Layer neurons kept")
            keep = page.locator('[data-testid="stSlider"]').filter(has_text="Keep ratio").get_by_role("slider")
            keep.focus()
            keep.press("ArrowLeft")
            page.wait_for_function("() => location.search.includes('keep=0.45')", timeout=30_000)
            wait_idle(page)
            assert metric(page, "Layer neurons kept") != before
            shoot(page, "prune")

            open_page(page, "Layer-wise centrality")
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            shoot(page, "layerwise")

            page.goto(f"{server}/finetune?layer=head.1")  # a link: prune the head layer, as by default
            page.get_by_role("heading", name="Fine-tune").first.wait_for(timeout=60_000)
            wait_idle(page)
            page.locator('[data-testid="stSelectbox"]').filter(has_text="Image size").click()
            page.get_by_role("option", name="64", exact=True).click()
            wait_idle(page)
            for label, value in (("Epochs", "2"), ("Train images per class (0: all)", "10")):
                field = page.get_by_label(label, exact=True)
                field.fill(value)
                field.press("Enter")
                wait_idle(page)
            page.get_by_role("button", name="Start").click()
            page.get_by_text("pruned finished in").wait_for(timeout=180_000)
            page.get_by_text("baseline finished in").wait_for()
            wait_idle(page)
            page.locator(".js-plotly-plot").first.wait_for()
            shoot(page, "finetune")

            open_page(page, "Results")
            page.locator(".js-plotly-plot").nth(1).wait_for(timeout=60_000)
            shoot(page, "results")

            assert not page.locator('[data-testid="stException"]').count()
        finally:
            browser.close()
    print("timings (s):", {k: round(v, 2) for k, v in timings.items()})
    outside = sorted({url for url in requests if not is_local(url)})
    assert not outside, f"requests to outside addresses: {outside}"
    assert timings["tau slider on head.1: figures updated (median of 3)"] < 3, timings
