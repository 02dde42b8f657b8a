"""The app in a real browser for a test: `streamlit run app.py` on a free local port with its own run store,
stopped at the end; Debian's chromium driven by Playwright (never `playwright install`)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"  # `make browser` installs it; conftest.py skips the browser tests without it
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'  # Streamlit has no script run under way
LOCAL_SCHEMES = ("data", "blob", "about")
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(home: Path, start_timeout_s: float = 120, env: dict[str, str] | None = None) -> Iterator[str]:
    """The app's URL while it runs, answering its health check; RuntimeError with its output if it never does.
    ``env``: environment variables the server gets besides CPRUNE_HOME=``home``."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "CPRUNE_HOME": str(home), **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + start_timeout_s
    try:
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                if time.time() > deadline or process.poll() is not None:
                    process.kill()
                    raise RuntimeError(f"streamlit did not start: {process.stdout.read().decode()[-2000:]}") from None
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def launch_chromium(playwright, *extra_args: str):
    """Headless chromium (``CHROMIUM_ARGS`` and ``extra_args``) from a ``sync_playwright()`` context."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit has finished the current script run. Only where something on the page (a heading,
    the URL) shows that the run in question has begun."""
    page.wait_for_selector(IDLE, timeout=timeout)


def outside_requests(urls) -> list[str]:
    """The requested URLs that went to a host other than this machine, sorted, once each."""
    return sorted({url for url in urls
                   if urlparse(url).scheme not in LOCAL_SCHEMES and urlparse(url).hostname not in LOCAL_HOSTS})
