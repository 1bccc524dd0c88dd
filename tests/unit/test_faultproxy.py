"""The TCP fault proxy of the integration tests (tests/support/faultproxy.py), against an echo
server on loopback: each mode does to existing and new connections what it says, and only that.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import cast

import pytest

from tests.support.faultproxy import FaultProxy

SILENCE_SECONDS = 0.3  # long enough to say "nothing came" on an idle loopback


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield cast(tuple[str, int], server.server_address[:2])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fault(echo: tuple[str, int]) -> Iterator[FaultProxy]:
    with FaultProxy(("127.0.0.1", 0), echo) as proxy:
        yield proxy


def dial(proxy: FaultProxy, timeout: float = 2.0) -> socket.socket:
    conn = socket.create_connection(proxy.address, timeout=timeout)
    conn.settimeout(timeout)
    return conn


def echo_of(conn: socket.socket, data: bytes) -> bytes:
    conn.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = conn.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def silent(conn: socket.socket) -> bool:
    """Nothing arrives (no data, no EOF, no RST) for SILENCE_SECONDS."""
    conn.settimeout(SILENCE_SECONDS)
    try:
        conn.recv(1)
    except TimeoutError:
        return True
    finally:
        conn.settimeout(2.0)
    return False


def test_passes_bytes_both_ways_and_counts_them(fault: FaultProxy) -> None:
    with dial(fault) as conn:
        assert echo_of(conn, b"hello") == b"hello"
    stats = fault.stats()
    assert (stats.accepted, stats.forwarded, stats.to_server, stats.to_client) == (1, 1, 5, 5)


def test_delay_applies_to_open_connections_and_lifts(fault: FaultProxy) -> None:
    with dial(fault) as conn:
        assert echo_of(conn, b"warm") == b"warm"
        fault.delay(0.1)
        started = time.monotonic()
        assert echo_of(conn, b"slow") == b"slow"
        assert time.monotonic() - started >= 0.2  # 0.1 s each way
        fault.pass_through()
        started = time.monotonic()
        assert echo_of(conn, b"fast") == b"fast"
        assert time.monotonic() - started < 0.1


def test_drop_mid_response_delivers_the_head_of_the_reply_then_closes(
    fault: FaultProxy,
) -> None:
    with dial(fault) as conn:
        fault.drop_mid_response(keep=3)
        assert echo_of(conn, b"0123456789") == b"012"
        assert conn.recv(1) == b""  # then EOF
    assert fault.stats().dropped == 1
    fault.restore()
    with dial(fault) as conn:
        assert echo_of(conn, b"again") == b"again"


def test_reset_sends_rst_to_open_and_new_connections(fault: FaultProxy) -> None:
    with dial(fault) as conn:
        assert echo_of(conn, b"x") == b"x"
        fault.reset()
        with pytest.raises(ConnectionResetError):
            conn.recv(1)
    # In connect() or in the first recv(): the RST may beat the end of the handshake.
    with pytest.raises(ConnectionResetError), dial(fault) as conn:
        conn.recv(1)
    assert fault.stats().reset == 2
    fault.restore()
    with dial(fault) as conn:
        assert echo_of(conn, b"y") == b"y"


def test_blackhole_holds_open_connections_and_ignores_new_ones(fault: FaultProxy) -> None:
    with dial(fault) as held:
        assert echo_of(held, b"a") == b"a"
        fault.blackhole()
        held.sendall(b"held")
        assert silent(held)
        with dial(fault) as ignored:  # the connect itself succeeds
            ignored.sendall(b"anyone?")
            assert silent(ignored)
            fault.restore()
            assert held.recv(16) == b"held"  # delivered once the partition heals
            assert silent(ignored)  # accepted during the fault: ignored for good
    stats = fault.stats()
    assert (stats.accepted, stats.forwarded, stats.ignored) == (2, 1, 1)


def test_blackhole_without_accept_leaves_connects_unanswered(fault: FaultProxy) -> None:
    with dial(fault) as held:
        assert echo_of(held, b"a") == b"a"
        fault.blackhole(accept=False)
        with pytest.raises(TimeoutError):
            socket.create_connection(fault.address, timeout=SILENCE_SECONDS)
        held.sendall(b"z")
        assert silent(held)
        fault.restore()
        assert held.recv(1) == b"z"
    with dial(fault) as conn:
        assert echo_of(conn, b"back") == b"back"
    assert fault.stats().accepted == 2  # the filler connection is not counted


def test_stop_closes_everything_and_frees_the_address(echo: tuple[str, int]) -> None:
    proxy = FaultProxy(("127.0.0.1", 0), echo).start()
    address = proxy.address
    conn = dial(proxy)
    assert echo_of(conn, b"bye") == b"bye"
    proxy.stop()
    proxy.stop()  # idempotent
    assert conn.recv(1) == b""
    conn.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=1.0)
