"""A backend connection's reading, paused by a client that does not keep up, must not stay
paused once the reply is over: the next reply on that connection would never be read.

The connection logs in for real, in memory, against the proxy's own `ServerHandshake`; the
transport is a recorder (there is no socket here: what is tested is when the connection
pauses and resumes reading)."""

from __future__ import annotations

from typing import Any

from proxy.backend import BASE_CAPABILITIES, BackendConnection, BackendError, PoolKey
from proxy.protocol.auth import BackendCredential, StoredCredential
from proxy.protocol.constants import Command
from proxy.protocol.framing import frame
from proxy.protocol.handshake import ClientHandshake, ServerHandshake
from proxy.protocol.response import ResponseTracker
from proxy.topology.model import Endpoint

COLUMN = b"\x03def\x03app\x01t\x01t\x01c\x01c\x0c\x21\x00\x0c\x00\x00\x00\xfd\x00\x00\x00\x00\x00"
EOF = b"\xfe\x00\x00\x02\x00"
#: `SELECT c FROM t` with one row, classic EOF framing (the pool's connections do not ask
#: for CLIENT_DEPRECATE_EOF).
RESULT_SET = (
    frame(b"\x01", 1) + frame(COLUMN, 2) + frame(EOF, 3) + frame(b"\x03abc", 4) + frame(EOF, 5)
)


class RecordingTransport:
    def __init__(self) -> None:
        self.sent = bytearray()
        self.reading = True

    def write(self, data: bytes | memoryview) -> None:
        self.sent += data

    def take(self) -> bytes:
        data = bytes(self.sent)
        self.sent.clear()
        return data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


async def logged_in() -> tuple[BackendConnection, RecordingTransport]:
    server = ServerHandshake(
        "10.11.6-MariaDB", 7, {"app": StoredCredential.from_password("pw")}.get
    )
    handshake = ClientHandshake(
        "app", BackendCredential(password=b"pw"), capabilities=BASE_CAPABILITIES
    )
    conn = BackendConnection(
        Endpoint("mysql-1", "127.0.0.11", 3306), PoolKey("app", 0, 45), handshake
    )
    transport = RecordingTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(server.data_to_send())  # greeting
    server.receive_data(transport.take())  # HandshakeResponse41
    conn.data_received(server.data_to_send())  # OK
    await conn.wait_ready()
    return conn, transport


async def test_a_reply_that_fills_the_client_to_its_end_leaves_the_connection_reading() -> None:
    conn, transport = await logged_in()
    ended: list[tuple[ResponseTracker | None, BackendError | None]] = []

    def client_is_full(data: bytes | memoryview) -> None:
        conn.pause_reading()  # what the client's pause_writing does through its session

    for _ in range(2):  # and the next reply on the same connection is read as well
        conn.start(
            frame(b"\x03SELECT c FROM t", 0),
            Command.COM_QUERY,
            client_is_full,
            lambda t, e: ended.append((t, e)),
        )
        assert transport.take() == frame(b"\x03SELECT c FROM t", 0)
        conn.data_received(RESULT_SET)
        tracker, error = ended.pop()
        assert error is None and tracker is not None and tracker.done
        assert transport.reading
        assert conn.ready_for_fast_path


async def test_a_paused_reply_resumes_when_the_client_drains() -> None:
    conn, transport = await logged_in()
    ended: list[object] = []
    conn.start(
        frame(b"\x03SELECT c FROM t", 0),
        Command.COM_QUERY,
        lambda data: None,
        lambda t, e: ended.append(t),
    )
    conn.data_received(RESULT_SET[:20])
    conn.pause_reading()
    assert not transport.reading
    conn.resume_reading()
    assert transport.reading
    conn.data_received(RESULT_SET[20:])
    assert len(ended) == 1
