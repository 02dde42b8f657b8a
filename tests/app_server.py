"""`streamlit run app.py` for a test: on a free local port, with its own run store, stopped at the end."""
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

ROOT = Path(__file__).resolve().parents[1]


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
