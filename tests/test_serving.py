"""`streamlit run app.py`, the design card's own command, serves this machine only; serving a network is
`make serve`'s and the Docker image's explicit choice. The running server's own guards: the upload endpoint's
memory budget and the visitor cookie, tried with real requests."""
from __future__ import annotations

import http.client
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


# The server's own guards, against a running server (app.py's st.App and its middleware) ------------------------

UPLOAD_ENV = {"CPRUNE_UPLOAD_MEMORY_MB": "3", "CPRUNE_VISITOR_GRACE_S": "1"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`streamlit run app.py` with 3 MiB for uploads in memory and a grace of 1 s."""
    from app_server import running_app

    with running_app(tmp_path_factory.mktemp("home"), env=UPLOAD_ENV) as url:
        yield url


def health_cookies(url: str, cookie: str = "") -> dict[str, str]:
    """The cookies the server sets on its health check (asked by the page before it connects)."""
    request = urllib.request.Request(f"{url}/_stcore/health", headers={"Cookie": cookie} if cookie else {})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return dict(header.split(";")[0].split("=", 1) for header in answer.headers.get_all("Set-Cookie") or [])


class Browser:
    """A browser session as the page opens one: Streamlit's XSRF cookie, then the websocket; it asks for an upload
    URL (which names its session) and PUTs files there with http.client, as the page's uploader does."""

    def __init__(self, url: str):
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        from websockets.sync.client import connect

        self.host, self.port = url.removeprefix("http://").split(":")
        self.xsrf = health_cookies(url)["_streamlit_xsrf"]
        self.socket = connect(f"ws://{self.host}:{self.port}/_stcore/stream", subprotocols=["streamlit", self.xsrf],
                              additional_headers={"Cookie": f"_streamlit_xsrf={self.xsrf}"})
        ask = BackMsg()
        ask.file_urls_request.request_id = "1"
        ask.file_urls_request.file_names.append("weights.pt")
        self.socket.send(ask.SerializeToString())
        while True:
            message = ForwardMsg()
            message.ParseFromString(self.socket.recv(timeout=60))
            if message.WhichOneof("type") == "file_urls_response":
                self.session = message.file_urls_response.file_urls[0].upload_url.split("/")[-2]
                break

    def request(self, method: str, file_id: str, body=None, headers: dict | None = None) -> tuple[int, str]:
        connection = http.client.HTTPConnection(self.host, int(self.port), timeout=60)
        connection.request(method, f"/_stcore/upload_file/{self.session}/{file_id}", body,
                           {"X-Xsrftoken": self.xsrf, "Cookie": f"_streamlit_xsrf={self.xsrf}", **(headers or {})},
                           encode_chunked=headers is not None and "Transfer-Encoding" in headers)
        answer = connection.getresponse()
        status, text = answer.status, answer.read().decode()
        connection.close()
        return status, text

    def put(self, file_id: str, size: int) -> tuple[int, str]:
        head = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="weights.pt"\r\n'
                b"Content-Type: application/octet-stream\r\n\r\n")
        return self.request("PUT", file_id, head + bytes(size) + b"\r\n--b--\r\n",
                            {"Content-Type": "multipart/form-data; boundary=b"})

    def close(self) -> None:
        self.socket.close()


def test_streamlits_upload_endpoint_holds_no_more_than_the_servers_budget(served):
    """Streamlit keeps every PUT to /_stcore/upload_file/<session>/<any id> in memory: 16 x 64 MB used to take
    about 1 GB, held after the visitor left. Here every session's files together stay within
    CPRUNE_UPLOAD_MEMORY_MB (3 MiB), a session holds 4 at most, and a session gone for the grace is closed."""
    alice, bob = Browser(served), Browser(served)
    assert alice.put("made-up-id-1", 1_000_000)[0] == 204 and alice.put("made-up-id-2", 1_000_000)[0] == 204
    assert bob.put("any-id", 1_000_000)[0] == 204
    status, text = bob.put("one-more", 200_000)  # 3.2 MB in all: refused before its body is read
    assert status == 503 and "memory for uploads is full" in text
    assert alice.request("PUT", "no-size", iter([b"x" * 1000]), {"Transfer-Encoding": "chunked"})[0] == 411

    assert alice.request("DELETE", "made-up-id-2")[0] == 204  # Streamlit's delete frees its share
    carol = Browser(served)
    assert [carol.put(f"small-{i}", 10)[0] for i in range(5)] == [204, 204, 204, 204, 429]
    assert carol.request("DELETE", "small-0")[0] == 204 and carol.put("small-5", 10)[0] == 204

    assert bob.put("one-more", 1_200_000)[0] == 503
    alice.close()  # her tab closed: her file goes with her session after the grace (1 s; swept every 5 s)
    deadline = time.monotonic() + 60
    while (status := bob.put("one-more", 1_200_000)[0]) == 503 and time.monotonic() < deadline:
        time.sleep(1)
    assert status == 204
    bob.close()
    carol.close()


def test_the_server_hands_each_browser_a_signed_visitor_cookie_and_made_up_ones_count_for_nothing(served):
    from cprune_server import VISITOR_COOKIE

    given = health_cookies(served)[VISITOR_COOKIE]
    assert VISITOR_COOKIE not in health_cookies(served, f"{VISITOR_COOKIE}={given}"), "kept: not handed out again"
    made_up = f"{VISITOR_COOKIE}={'a' * 22}.{'b' * 43}"
    assert health_cookies(served, made_up)[VISITOR_COOKIE] not in (given, made_up), "replaced by a signed one"
