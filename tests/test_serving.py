"""`streamlit run app.py`, the design card's own command, serves this machine only; serving a network is
`make serve`'s and the Docker image's explicit choice."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from app_server import free_port

ROOT = Path(__file__).resolve().parents[1]


def outward_address() -> str | None:
    """An address of this machine other than loopback (None when it has none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.mark.slow
def test_streamlit_run_app_py_listens_on_loopback_only(tmp_path):
    address = outward_address()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "CPRUNE_HOME": str(tmp_path)})
    try:
        deadline = time.monotonic() + 120
        while True:  # up on loopback
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "streamlit did not start"
                time.sleep(0.2)
        with pytest.raises(OSError):  # and not on the machine's network address
            socket.create_connection((address, port), timeout=2).close()
    finally:
        server.terminate()
        server.wait(30)


def test_only_make_serve_and_the_docker_image_open_the_app_to_a_network():
    makefile = (ROOT / "Makefile").read_text()
    serve = makefile[makefile.index("\nserve:"):].split("\n\n")[0]
    others = makefile.replace(serve, "")
    assert "--server.address 0.0.0.0" in serve and "0.0.0.0" not in others
    assert '"--server.address", "0.0.0.0"' in (ROOT / "Dockerfile").read_text()


def test_make_serve_and_the_docker_image_download_nothing_for_visitors_unless_told_to():
    makefile = (ROOT / "Makefile").read_text()
    serve = makefile[makefile.index("\nserve:"):].split("\n\n")[0]
    assert "CPRUNE_DOWNLOADS=$${CPRUNE_DOWNLOADS:-off} " in serve  # off, unless the operator's environment says
    assert "CPRUNE_DOWNLOADS" not in makefile.replace(serve, ""), "make run and make dev download as before"
    env = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("ENV ")]
    assert any("CPRUNE_DOWNLOADS=off" in line.split() for line in env)


@pytest.mark.slow
def test_a_setting_that_cannot_be_used_stops_start_up_with_one_sentence(tmp_path):
    port = free_port()
    completed = subprocess.run([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
                               cwd=ROOT, capture_output=True, text=True, timeout=120,
                               env={**os.environ, "CPRUNE_HOME": str(tmp_path), "CPRUNE_INDEX_MAX_ENTRIES": "lots"})
    errors = [line for line in completed.stderr.splitlines() + completed.stdout.splitlines() if line.strip()
              and not line.startswith(("  You can now view", "  URL:"))]
    assert completed.returncode == 2
    assert errors == [line for line in errors if line.startswith("error: The environment variable "
                                                                  "CPRUNE_INDEX_MAX_ENTRIES")] and len(errors) == 1
