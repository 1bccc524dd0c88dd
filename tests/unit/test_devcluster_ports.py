"""proxy.devcluster.process.wait_free: a port let go of meanwhile is waited for (a daemon on
its way out), one still held fails naming it. Real sockets on loopback."""

import socket
import threading

import pytest

from proxy.devcluster import process
from proxy.devcluster.errors import ClusterError


def _held_udp_port() -> tuple[socket.socket, int]:
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    return holder, int(holder.getsockname()[1])


def test_a_port_let_go_of_meanwhile_is_waited_for() -> None:
    holder, port = _held_udp_port()
    release = threading.Timer(0.2, holder.close)
    release.start()
    try:
        process.wait_free("127.0.0.1", port, (socket.SOCK_DGRAM,), timeout=10.0)
    finally:
        release.join()
    assert process.is_free("127.0.0.1", port, socket.SOCK_DGRAM)


def test_a_port_still_held_fails_naming_it() -> None:
    holder, port = _held_udp_port()
    with holder, pytest.raises(ClusterError, match=rf"127\.0\.0\.1:{port}/udp is already in use"):
        process.wait_free("127.0.0.1", port, (socket.SOCK_DGRAM,), timeout=0.2)
