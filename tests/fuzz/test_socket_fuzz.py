"""Hostile clients against an in-process rwproxy in front of the local cluster (short run).

Each test starts its own proxy (small `handshake_timeout_seconds` and `max_allowed_packet`
so that timeouts and "too large" are cheap to reach), takes a baseline at rest, plays
hypothesis-generated inputs (derandomized: the same examples on every run), and after each
one checks the oracle of tests/fuzz/client.py, that no ERROR was logged by the proxy
(`logger.exception` is how a session reports an unexpected exception), and that a fresh
client still logs in and runs SELECT 1. At the end, sessions, pools, tasks and fds must be
back at the baseline. The long run (`make fuzz`, tests/fuzz/run.py) uses the same
generators with a plain random loop against a `python -m proxy serve` child.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.config import PoolConfig
from proxy.protocol.framing import frame
from tests.fuzz import baseline, client, inputs
from tests.support.proxy_harness import ProxyThread

pytestmark = pytest.mark.integration

HANDSHAKE_TIMEOUT = 1.0
RSS_SLACK_KIB = 48 * 1024  # in-process: hypothesis and the test share the heap
SHORT = settings(
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture
def fuzz_proxy(start_proxy: Callable[..., ProxyThread]) -> ProxyThread:
    return start_proxy(
        handshake_timeout_seconds=HANDSHAKE_TIMEOUT,
        max_allowed_packet=inputs.FUZZ_MAX_ALLOWED_PACKET,
        pool=PoolConfig(max_size=8, pool_timeout_seconds=3.0),
    )


@pytest.fixture
def proxy_errors(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    """`new()` returns the ERROR records logged (by the proxy or asyncio) since the last call."""
    caplog.set_level(logging.WARNING)
    seen = 0

    def new() -> list[str]:
        nonlocal seen
        records = caplog.records[seen:]
        seen = len(caplog.records)
        return [
            f"{r.name}: {r.getMessage()}\n{r.exc_text or ''}"
            for r in records
            if r.levelno >= logging.ERROR and r.name.split(".")[0] in ("proxy", "asyncio")
        ]

    yield new


def address(proxy: ProxyThread) -> tuple[str, int]:
    return ("127.0.0.1", proxy.port)


def fuzz_with(
    proxy: ProxyThread,
    errors: Callable[[], list[str]],
    family: Callable[[inputs.Chooser], inputs.FuzzInput],
    examples: int,
) -> None:
    """Play `examples` inputs of `family`, then check the baseline came back."""
    client.liveness(address(proxy))  # pools exist before the baseline is taken
    before = baseline.settle(lambda: baseline.inside(proxy))

    @settings(SHORT, max_examples=examples)
    @given(st.data())
    def one(data: st.DataObject) -> None:
        fuzz = family(inputs.HypothesisChooser(data))
        verdict = client.play(address(proxy), fuzz, quiet=0.3, bound=5.0)
        assert verdict.problems == [], f"{fuzz}\n-> {verdict}"
        assert errors() == [], f"{fuzz}\n-> the proxy logged errors"
        client.liveness(address(proxy))

    one()
    after = baseline.restored(before, lambda: baseline.inside(proxy))
    assert baseline.problems(before, after, RSS_SLACK_KIB) == []


def test_garbage_before_login(
    fuzz_proxy: ProxyThread, proxy_errors: Callable[[], list[str]]
) -> None:
    fuzz_with(fuzz_proxy, proxy_errors, inputs.pre_raw, 60)


def test_mutated_login(fuzz_proxy: ProxyThread, proxy_errors: Callable[[], list[str]]) -> None:
    fuzz_with(fuzz_proxy, proxy_errors, inputs.pre_login, 100)


def test_garbage_commands_after_login(
    fuzz_proxy: ProxyThread, proxy_errors: Callable[[], list[str]]
) -> None:
    fuzz_with(fuzz_proxy, proxy_errors, inputs.commands, 200)


def test_half_close_anywhere(
    fuzz_proxy: ProxyThread, proxy_errors: Callable[[], list[str]]
) -> None:
    fuzz_with(fuzz_proxy, proxy_errors, inputs.half_close, 60)


# -- slowloris -----------------------------------------------------------------------------


def _trickle(sock: socket.socket, data: bytes, every: float, until: float) -> float | None:
    """Send one byte every `every` seconds; when the proxy closed, how long it took."""
    started = time.monotonic()
    sock.settimeout(every)
    for byte in data:
        if time.monotonic() - started > until:
            return None
        try:
            sock.sendall(bytes((byte,)))
            while sock.recv(4096):  # greeting (and anything else) until the pause is over
                pass
            return time.monotonic() - started  # recv() returned b"": closed
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
    return None


def test_slowloris_before_login_is_cut_at_the_handshake_timeout(
    fuzz_proxy: ProxyThread, proxy_errors: Callable[[], list[str]]
) -> None:
    """Twenty clients trickle a HandshakeResponse41 one byte per 0.2 s; each is closed at
    handshake_timeout_seconds, and a real client logs in meanwhile."""
    before = baseline.settle(lambda: baseline.inside(fuzz_proxy))
    body = b"\x85\xa6\xff\x01" + b"\x00" * 28 + b"app\x00" + b"\x14" + b"\x00" * 20
    slow = [socket.create_connection(address(fuzz_proxy)) for _ in range(20)]
    try:
        client.liveness(address(fuzz_proxy))
        closed_after = [_trickle(s, frame(body, 1), 0.2, until=5.0) for s in slow[:1]]
        rest = []
        for sock in slow[1:]:
            sock.settimeout(5.0)
            try:
                rest.append(_drain_until_closed(sock))
            except TimeoutError:
                rest.append(False)
    finally:
        for sock in slow:
            sock.close()
    assert closed_after[0] is not None, "a slowloris client was never closed"
    assert HANDSHAKE_TIMEOUT * 0.9 <= closed_after[0] <= HANDSHAKE_TIMEOUT + 2.0
    assert all(rest), "some silent clients were not closed at the handshake timeout"
    assert proxy_errors() == []
    after = baseline.restored(before, lambda: baseline.inside(fuzz_proxy))
    assert baseline.problems(before, after, RSS_SLACK_KIB) == []


def _drain_until_closed(sock: socket.socket) -> bool:
    while sock.recv(4096):
        pass
    return True


def test_slowloris_after_login_is_cut(start_proxy: Callable[..., ProxyThread]) -> None:
    """Bytes trickled into a packet that never completes are not activity: the client is
    cut at client_idle_timeout_seconds (found by this file; MySQL: net_read_timeout)."""
    proxy = start_proxy(client_idle_timeout_seconds=1.0)
    with socket.create_connection(address(proxy), timeout=5) as sock:
        stream = client._Stream(sock)
        greeting = stream.packet()
        assert greeting is not None
        client.log_in(stream, frame(greeting[1], 0), *client.APP)
        closed_after = _trickle(sock, b"\xe8\x03\x00\x00\x03" + b"x" * 995, 0.3, until=4.0)
    assert closed_after is not None, "still open after 4 s of one byte per 0.3 s"
