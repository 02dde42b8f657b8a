"""Connecting to a Ray cluster, bounded in time: an address is parsed, probed, then joined.

``ray.init`` on an address waits minutes, or for ever, on something that is not a Ray cluster (a
silent port, a server that answers HTTP/2 and then nothing, a gRPC server that is not Ray). So:
``parse_address`` accepts only a well-formed host:port (ASCII host name labels of at most 63
characters, an IPv4 or bracketed IPv6 literal, a port of ASCII digits in 1..65535); ``probe_address``
opens a TCP connection and waits for the server's HTTP/2 greeting within PROBE_TIMEOUT_S; and
``init_within`` runs ``ray.init`` itself under a deadline (JOIN_TIMEOUT_S). Every failure is one
ClusterError, "Cannot reach the Ray cluster at ...", which the command line prints on one line
(exit status 3).
"""
from __future__ import annotations

import ipaddress
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import ClusterError, ConfigError

__all__ = ["PROBE_TIMEOUT_S", "JOIN_TIMEOUT_S", "START_ADVICE", "parse_address", "probe_address", "init_within",
           "import_ray", "first_line"]

PROBE_TIMEOUT_S = 5.0
JOIN_TIMEOUT_S = 10.0  # ray.init after a good probe: a driver joins a healthy cluster in a few seconds
# A gRPC client's first words on a plain connection (RFC 9113 section 3.4): the preface and an empty SETTINGS
# frame. A gRPC server (Ray's GCS, its client server) answers with frames of its own.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_PING = 6  # a frame type (the 4th byte of a frame header); flag 1 on a PING is its acknowledgement
PING_PAYLOAD = b"cprune:?"  # 8 bytes, echoed back by the server
GCS_CONNECT_ATTEMPTS = 5  # Ray's own connection attempts to the GCS, about one a second
START_ADVICE = ("Start it with `ray start --head` on its head node and run this command on a node of the cluster "
                "(the head, or one that joined with `ray start --address=...`), or correct --ray-address (or "
                "RAY_ADDRESS).")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)", re.ASCII)
_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)


def _unreachable(address: str, reason: str) -> ClusterError:
    return ClusterError(f"Cannot reach the Ray cluster at {address!r} ({reason}). {START_ADVICE}")


def parse_address(address: str) -> tuple[str, int]:
    """(host, port) of a Ray address.

    Parameters
    ----------
    address : "host:port", "[ipv6]:port", or either behind "ray://" (Ray Client).

    Returns
    -------
    The host (a name, or an IP literal without brackets) and the port.

    Raises
    ------
    ClusterError
        When it is not a well-formed address: no port, a port outside 1..65535 or not written in ASCII
        digits (``127.0.0.1:²``), a host name with a label over 63 characters, non-ASCII or other characters a
        host name cannot hold (they would reach the resolver's IDNA codec and fail there).

    Example
    -------
    >>> parse_address("ray://10.0.0.5:10001")
    ('10.0.0.5', 10001)
    """
    text = address.removeprefix("ray://")
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _unreachable(address, "not an IPv6 address between the brackets") from None
    elif not host or len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in host.split(".")):
        raise _unreachable(address, "not host:port: a host name is ASCII letters, digits and hyphens, at most "
                                    "63 characters between dots, e.g. 10.0.0.5:6379")
    if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise _unreachable(address, "the port must be a number from 1 to 65535 in ASCII digits")
    return host, int(port)


def probe_address(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise ClusterError unless ``address`` answers as an HTTP/2 (gRPC) server, as Ray's GCS does, within about
    ``timeout_s``: a TCP connection opens, and after the client preface, a SETTINGS frame and a PING, the
    server's PING acknowledgement comes back (RFC 9113 section 6.7: every HTTP/2 endpoint must answer a PING).
    A silent port, a server that is not HTTP/2, and one that sends its greeting and then nothing all fail here."""
    host, port = parse_address(address)
    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as connection:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return  # a TLS server says nothing before a TLS handshake
            connection.sendall(HTTP2_PREFACE + _frame(HTTP2_PING, 0, PING_PAYLOAD))
            while True:
                connection.settimeout(max(deadline - time.monotonic(), 0.001))
                header = _read_exactly(connection, 9)
                length, kind, flags = int.from_bytes(header[:3], "big"), header[3], header[4]
                if length > 1 << 16:
                    raise _unreachable(address, "something answers there, but not as Ray")
                payload = _read_exactly(connection, length)
                if kind == HTTP2_PING and flags & 1 and payload == PING_PAYLOAD:
                    return
    except (OSError, UnicodeError, EOFError) as error:
        if isinstance(error, TimeoutError):
            reason = f"no HTTP/2 answer within {timeout_s:g} s"
        elif isinstance(error, EOFError):
            reason = "something answers there, but not as Ray"
        else:
            reason = getattr(error, "strerror", None) or str(error)
        raise _unreachable(address, reason) from None


def _frame(kind: int, flags: int, payload: bytes, stream: int = 0) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def _read_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        part = connection.recv(size - len(data))
        if not part:
            raise EOFError("the server closed the connection")
        data += part
    return data


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Hold back what Ray's C++ core writes straight to file descriptor 2 while it connects (a warning a second
    while it retries): written out after a connection, dropped after a failure, which the caller reports in
    one line."""
    sys.stderr.flush()
    real_stderr = os.dup(2)
    failed = True
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
            failed = False
        finally:
            os.dup2(real_stderr, 2)
            os.close(real_stderr)
        if not failed:
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))


def init_within(ray, address: str, timeout_s: float = JOIN_TIMEOUT_S, **init_options) -> None:
    """``ray.init(address=address, **init_options)``, given up after ``timeout_s`` with a ClusterError.

    ray.init runs on a helper thread, so that a cluster that never answers cannot hold the command: past the
    deadline the thread is left behind (it holds no lock of ours) and the caller reports the failure. Ray's own
    GCS connection attempts are cut to about GCS_CONNECT_ATTEMPTS seconds (unless the user set
    RAY_gcs_server_port_wait_time_s), and the SIGTERM handler ray.init installs only from the main thread is
    installed here, as ray.init would (a terminated driver exits through sys.exit, so Ray shuts down).
    """
    variable = "RAY_gcs_server_port_wait_time_s"
    chosen = variable not in os.environ
    os.environ.setdefault(variable, str(GCS_CONNECT_ATTEMPTS))
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))
    outcome: list[BaseException | None] = []
    finished = threading.Event()

    def join() -> None:
        try:
            ray.init(address=address, **init_options)
            outcome.append(None)
        except BaseException as error:  # handed to the caller's thread
            outcome.append(error)
        finally:
            finished.set()

    try:
        with _quiet_stderr():
            threading.Thread(target=join, name="cprune-ray-init", daemon=True).start()
            if not finished.wait(timeout_s):
                raise _unreachable(address, f"it answers, but Ray did not accept this driver within {timeout_s:g} s")
            if outcome[0] is not None:
                raise outcome[0]
    except (ConnectionError, RuntimeError, ValueError) as error:
        reason = first_line(error).rstrip(".")
        raise _unreachable(address, reason if address not in reason else "Ray refused the connection") from None
    finally:
        if chosen:
            os.environ.pop(variable, None)


def first_line(error: BaseException) -> str:
    """The first non-blank line of an error's message (Ray's run to pages), or "no reason given"."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else "no reason given"


def import_ray():
    """The ray module; ConfigError when Ray is not installed."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray, which is not installed: run `pip install -e '.[cluster]'` "
                          "(`make test` installs it too).") from None
    return ray
