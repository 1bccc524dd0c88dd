"""A minimal MySQL client on a raw blocking socket, for the streaming and idle-client measurements.

Theory of operation
-------------------
The client must cost as little CPU as possible: on a 2-core machine every cycle it burns is
taken from the proxy and the pods being measured. So there is no driver here. `Connection.open`
logs in with the proxy's own sans-I/O `ClientHandshake` (native or caching_sha2 fast auth, no
TLS, no connect attributes) and from then on the client only writes `COM_QUERY` packets and
walks the reply's packet *headers* without decoding a single row.

`drain_reply` knows the text protocol in classic EOF mode only (CLIENT_DEPRECATE_EOF is not
asked for): OK or ERR ends a reply at once; otherwise the first packet is the column count,
then come that many column definitions and an EOF, then rows, ended by an EOF (0xFE with a
payload shorter than 9 bytes) or an ERR. Multi-result replies, LOCAL INFILE and rows of
16 MiB or more (continuation packets) are out of scope: the benchmarks never send them.
"""

from __future__ import annotations

import socket
from typing import Final

from proxy.protocol import commands
from proxy.protocol.auth import BackendCredential
from proxy.protocol.constants import Capability
from proxy.protocol.framing import frame
from proxy.protocol.handshake import (
    DEFAULT_CLIENT_CAPABILITIES,
    ClientHandshake,
    Failed,
    Ready,
    TlsRequested,
)

CAPABILITIES: Final = (
    DEFAULT_CLIENT_CAPABILITIES
    & ~Capability.CLIENT_DEPRECATE_EOF
    & ~Capability.CLIENT_CONNECT_ATTRS
    & ~Capability.CLIENT_SESSION_TRACK
)
RECV_SIZE: Final = 1 << 20
_OK, _EOF, _ERR = 0x00, 0xFE, 0xFF


class LoginError(Exception):
    """The server refused the login, or asked for something this client does not do (TLS)."""


class Connection:
    """One logged-in connection on a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    def open(
        cls,
        address: tuple[str, int],
        user: str,
        password: str,
        database: str | None = None,
        timeout: float = 10.0,
    ) -> Connection:
        sock = socket.create_connection(address, timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            credential = BackendCredential(password=password.encode())
            _login(sock, ClientHandshake(user, credential, database, capabilities=CAPABILITIES))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def query(self, sql: str) -> int:
        """Run one statement and read its whole reply; returns the reply's size in bytes."""
        self.sock.sendall(frame(commands.build_query(sql.encode()), 0))
        return drain_reply(self.sock)

    def close(self) -> None:
        try:
            self.sock.sendall(frame(commands.build_quit(), 0))
        except OSError:
            pass  # the peer went first; closing is all that is left
        finally:
            self.sock.close()


def _login(sock: socket.socket, handshake: ClientHandshake) -> None:
    while True:
        data = sock.recv(65536)
        if not data:
            raise LoginError("connection closed during the handshake")
        for event in handshake.receive_data(data):
            if isinstance(event, Failed):
                raise LoginError(str(event.error))
            if isinstance(event, TlsRequested):
                raise LoginError("the server asked for TLS, which this client does not do")
            if isinstance(event, Ready):
                return
        if out := handshake.data_to_send():
            sock.sendall(out)


class ReplyEnd:
    """Says, packet by packet, whether a text-protocol reply (classic EOF mode) is complete."""

    def __init__(self) -> None:
        self._headers_left = -1  # -1: before the first packet; 0: in the rows

    def done_after(self, first_byte: int, length: int) -> bool:
        if self._headers_left == -1:
            if first_byte in (_OK, _ERR):
                return True
            self._headers_left = first_byte + 1  # column definitions + their EOF (< 251 columns)
            return False
        if self._headers_left > 0:
            self._headers_left -= 1
            return False
        return first_byte == _ERR or (first_byte == _EOF and length < 9)


def drain_reply(sock: socket.socket) -> int:
    """Read one reply to its end (see the module docstring); returns the bytes read."""
    end = ReplyEnd()
    buf = bytearray()
    total = 0
    while True:
        chunk = sock.recv(RECV_SIZE)
        if not chunk:
            raise ConnectionError("connection closed in the middle of a reply")
        total += len(chunk)
        buf += chunk
        consumed, done = _walk(buf, end)
        if done:
            return total
        del buf[:consumed]


def _walk(buf: bytearray, end: ReplyEnd) -> tuple[int, bool]:
    """Step over the whole packets in `buf`; returns (bytes stepped over, reply complete)."""
    pos = 0
    size = len(buf)
    while pos + 4 < size:
        length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
        if pos + 4 + length > size:
            break
        if end.done_after(buf[pos + 4], length):
            return pos + 4 + length, True
        pos += 4 + length
    return pos, False
