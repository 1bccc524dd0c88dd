"""Streaming into rwproxy faster than it can pass data on, to show its buffers stay bounded.

`stream_until_stalled` sends packets on a non-blocking socket until the socket has taken
nothing for `STALLED_AFTER_SECONDS`: the proxy stopped reading it. Without back-pressure the
proxy reads on and the stream runs into `STREAM_CAP_BYTES`, more than every kernel buffer on
the way can hold. Meanwhile it samples what the proxy holds of the client's data
(`held_by_proxy`: unread command packets and bytes not yet taken by the pod's socket).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from proxy.client import QUEUE_LIMIT
from tests.support.proxy_harness import ProxyThread

STREAM_CAP_BYTES = 64 << 20
STALLED_AFTER_SECONDS = 0.5
# The queue limit, plus a transport's write buffer and one read of a socket, generously.
PROXY_HELD_BOUND = 2 * QUEUE_LIMIT


@dataclass
class Stream:
    sent: int = 0  # bytes the socket took
    items: int = 0  # what the packets begun stand for (rows, statements), as the caller counts
    packets: int = 0  # packets begun
    rest: bytes = b""  # the unsent end of the last packet begun
    most_held: int = 0  # the most `held_by_proxy` said while the socket was full

    @property
    def stalled(self) -> bool:
        return self.sent < STREAM_CAP_BYTES


def held_by_proxy(proxy: ProxyThread) -> int:
    """Bytes of client data the proxy holds: unread command packets and unsent backend bytes."""

    def look(px: Any) -> int:
        held = 0
        for session in px.ctx.sessions.values():
            held += session.client.unread_bytes
            held += sum(conn.unsent_bytes for conn in session.held_connections())
        return held

    return int(proxy.call(look))


def stream_until_stalled(
    sock: socket.socket, packets: Iterator[tuple[bytes, int]], proxy: ProxyThread
) -> Stream:
    """Send `packets` (wire bytes, items in it) until the socket stalls or the cap is hit."""
    sock.setblocking(False)
    stream = Stream()
    stalled_since: float | None = None
    try:
        while stream.sent < STREAM_CAP_BYTES:
            if not stream.rest:
                stream.rest, count = next(packets)
                stream.items += count
                stream.packets += 1
            try:
                n = sock.send(stream.rest)
            except BlockingIOError:
                now = time.monotonic()
                stalled_since = stalled_since or now
                stream.most_held = max(stream.most_held, held_by_proxy(proxy))
                if now - stalled_since > STALLED_AFTER_SECONDS:
                    break
                time.sleep(0.02)
                continue
            stalled_since = None
            stream.sent += n
            stream.rest = stream.rest[n:]
    finally:
        sock.setblocking(True)
    return stream
