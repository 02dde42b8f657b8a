"""Joining a Ray cluster is bounded: a malformed address, a silent port, a server that greets and then says
nothing, and a ray.init that never returns each end in one ClusterError, "Cannot reach the Ray cluster"."""
from __future__ import annotations

import contextlib
import socket
import threading

import pytest

from cprune_core.cli import main
from cprune_core.errors import ClusterError
from cprune_core.experiment.ray_connect import (HTTP2_PING, PING_PAYLOAD, _frame, init_within, parse_address,
                                                probe_address)

LONG_LABEL = "a" * 64


@pytest.mark.parametrize("address, expected", [
    ("10.0.0.5:6379", ("10.0.0.5", 6379)),
    ("ray://head-node.example.org:10001", ("head-node.example.org", 10001)),
    ("[::1]:6379", ("::1", 6379)),
    ("localhost:65535", ("localhost", 65535)),
])
def test_well_formed_addresses_parse(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", [
    f"{LONG_LABEL}.example:6379",  # a label over 63 characters: the IDNA codec would raise UnicodeError
    "127.0.0.1:²",  # a superscript two is a digit to str.isdigit, not a port
    "127.0.0.1:٦٣٧٩",  # Arabic-Indic digits
    "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:", "127.0.0.1", ":6379", "ray://10.0.0.1",
    "[::1:6379", "[nonsense]:6379", "héad:6379", "bad host:6379", "-lead.example:6379", "a..b:6379",
    "host\n:6379",
])
def test_malformed_addresses_are_one_cluster_error(address):
    with pytest.raises(ClusterError, match="Cannot reach the Ray cluster") as caught:
        parse_address(address)
    assert "\n" not in str(caught.value)


class Server:
    """A TCP server on a free local port that treats each connection with ``behaviour(connection)``."""

    def __init__(self, behaviour):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.closing = threading.Event()
        threading.Thread(target=self._serve, args=(behaviour,), daemon=True).start()

    def _serve(self, behaviour):
        while not self.closing.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(behaviour, connection), daemon=True).start()

    def _handle(self, behaviour, connection):
        with connection, contextlib.suppress(OSError):
            behaviour(connection, self.closing)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closing.set()
        self.listener.close()


def silent(connection, closing):
    closing.wait()


def greets_then_nothing(connection, closing):
    connection.recv(65536)
    connection.sendall(_frame(4, 0, b""))  # an empty SETTINGS frame, and then silence
    closing.wait()


def hangs_up(connection, closing):
    connection.recv(65536)


def answers_pings(connection, closing):
    """Enough of HTTP/2 for the probe: SETTINGS, then a PING acknowledged with its payload."""
    received = b""
    connection.sendall(_frame(4, 0, b""))
    while PING_PAYLOAD not in received:
        received += connection.recv(65536)
    connection.sendall(_frame(4, 1, b"") + _frame(HTTP2_PING, 1, PING_PAYLOAD))
    closing.wait()


@pytest.mark.parametrize("behaviour", [silent, greets_then_nothing, hangs_up])
def test_a_server_that_is_not_an_http2_peer_fails_the_probe_within_its_timeout(behaviour):
    with Server(behaviour) as server, pytest.raises(ClusterError, match="Cannot reach the Ray cluster"):
        probe_address(server.address, timeout_s=0.5)


def test_a_closed_port_fails_the_probe():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with pytest.raises(ClusterError, match="Cannot reach the Ray cluster"):
        probe_address(f"127.0.0.1:{port}", timeout_s=0.5)


def test_an_http2_peer_that_answers_a_ping_passes_the_probe():
    with Server(answers_pings) as server:
        probe_address(server.address, timeout_s=5)


class FakeRay:
    """Stands in for the ray module: init blocks until released, raises, or returns."""

    def __init__(self, *, raises: BaseException | None = None, blocks: bool = False):
        self.raises, self.release = raises, threading.Event()
        if not blocks:
            self.release.set()
        self.calls = []

    def init(self, **options):
        self.calls.append(options)
        self.release.wait()
        if self.raises is not None:
            raise self.raises


def test_a_ray_init_that_never_returns_is_given_up_at_the_deadline():
    ray = FakeRay(blocks=True)
    try:
        with pytest.raises(ClusterError, match="did not accept this driver within 0.2 s"):
            init_within(ray, "10.0.0.5:6379", timeout_s=0.2)
    finally:
        ray.release.set()


def test_a_ray_init_that_fails_is_one_cluster_error_naming_the_reason():
    ray = FakeRay(raises=ConnectionError("Failed to connect to GCS\nat 10.0.0.5:6379\nmore lines"))
    with pytest.raises(ClusterError, match=r"Cannot reach the Ray cluster at '10.0.0.5:6379' \(Failed to connect "
                                           r"to GCS\)") as caught:
        init_within(ray, "10.0.0.5:6379", timeout_s=5)
    assert "\n" not in str(caught.value)


def test_a_ray_init_that_returns_joins_with_the_given_options():
    ray = FakeRay()
    init_within(ray, "10.0.0.5:6379", timeout_s=5, logging_level="WARNING")
    assert ray.calls == [{"address": "10.0.0.5:6379", "logging_level": "WARNING"}]


@pytest.mark.parametrize("address", ["127.0.0.1:²", f"{LONG_LABEL}.example:6379"])
def test_the_command_refuses_a_malformed_address_in_one_line_with_exit_3(address, capsys, tmp_path):
    code = main(["experiment", "paper-table", "--quick", "--no-record", "--executor", "ray", "--ray-address",
                 address, "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 3 and "\n" not in err and err.startswith("error: Cannot reach the Ray cluster")
