"""Play one `FuzzInput` against a proxy on a raw socket, and judge what comes back.

Theory of operation
-------------------
`play()` connects, reads the greeting (it must be a HandshakeV10 with sequence id 0, or an
ERR such as "Too many connections"), logs in when the input says so (the proxy's own
`ClientHandshake`, the same client as bench/wire.py), then sends the parts. A `Login`
part is built against the greeting's nonce and mutated; `HalfClose` shuts the write side.

After the parts, a logged-in connection that is still writable gets a sentinel statement,
``SELECT 'rwfuzz-<random>' AS s``. Its row coming back proves the proxy consumed the garbage
and is still in step with the client. Then the oracle reads:

- every packet the proxy sent must frame, and each ERR (0xFF first byte: never the start of
  a row or column definition) must parse as an ERR with a code in 1..65535;
- the proxy either answers the sentinel, or closes the connection;
- a connection that went quiet for `quiet` seconds (the proxy legitimately waiting for the
  rest of a packet a lying header announced) is half-closed by the player, and must then be
  closed by the proxy within `bound` seconds. Not closing is a hang.

The result is a `Verdict`: how it ended (`answered`, `closed` by the proxy on its own,
`closed_on_eof` after our half-close), the ERR codes seen, and `problems` (oracle
violations; empty when the proxy behaved).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Final

from bench import wire
from proxy.protocol import commands
from proxy.protocol.auth import BackendCredential, scramble_native
from proxy.protocol.constants import Capability
from proxy.protocol.errors import ProtocolError
from proxy.protocol.framing import frame
from proxy.protocol.handshake import ClientHandshake, Failed, Ready
from proxy.protocol.packets import (
    HandshakeResponse41,
    build_handshake_response,
    parse_err,
    parse_handshake_v10,
)
from tests.fuzz.inputs import FuzzInput, HalfClose, Login, mutate_bytes

APP: Final = ("app", "app-password", "app")
LOGIN_CAPS: Final = wire.CAPABILITIES | Capability.CLIENT_CONNECT_WITH_DB
_ERR: Final = 0xFF


@dataclass
class Verdict:
    """How one input ended; `problems` lists oracle violations (empty: the proxy behaved)."""

    ending: str = "closed"  # answered | closed | closed_on_eof | hang | refused
    error_codes: list[int] = field(default_factory=list)
    packets: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


class _Stream:
    """A socket with a receive buffer: whole packets, or None when the peer closed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.closed = False

    def fill(self) -> bool:
        """Read once; False when the peer closed (or reset) the connection."""
        try:
            chunk = self.sock.recv(1 << 16)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        return True

    def packet(self) -> tuple[int, bytes] | None:
        while True:
            if len(self.buf) >= 4:
                size = int.from_bytes(self.buf[:3], "little")
                if len(self.buf) >= 4 + size:
                    seq, data = self.buf[3], bytes(self.buf[4 : 4 + size])
                    del self.buf[: 4 + size]
                    return seq, data
            if not self.fill():
                return None


def build_login(part: Login, greeting: bytes) -> bytes:
    """The HandshakeResponse41 the part describes, scrambled with the greeting's nonce,
    framed with sequence id 1, then mutated."""
    nonce = parse_handshake_v10(greeting).auth_plugin_data[:20]
    caps = Capability(int(LOGIN_CAPS | Capability.CLIENT_CONNECT_ATTRS) ^ part.caps_xor)
    scramble = scramble_native(part.password.encode(), nonce)
    if not caps & Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA and len(scramble) > 255:
        scramble = scramble[:255]
    if not caps & (
        Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | Capability.CLIENT_SECURE_CONNECTION
    ):
        scramble = scramble.replace(b"\0", b"")  # a NUL-terminated auth response cannot hold NUL
    response = HandshakeResponse41(
        caps, 1 << 24, 45, part.user, scramble, part.database, part.plugin, dict(part.attrs)
    )
    return mutate_bytes(frame(build_handshake_response(response), 1), part.mutations)


def log_in(stream: _Stream, greeting_wire: bytes, user: str, password: str, db: str) -> None:
    handshake = ClientHandshake(
        user, BackendCredential(password=password.encode()), db, capabilities=wire.CAPABILITIES
    )
    data = greeting_wire
    while True:
        for event in handshake.receive_data(data):
            if isinstance(event, Failed):
                raise wire.LoginError(str(event.error))
            if isinstance(event, Ready):
                return
        if out := handshake.data_to_send():
            stream.sock.sendall(out)
        if not stream.fill():
            raise wire.LoginError("closed during login")
        data = bytes(stream.buf)
        stream.buf.clear()


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


def _half_close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already gone
        sock.shutdown(socket.SHUT_WR)


def play(
    address: tuple[str, int], fuzz: FuzzInput, *, quiet: float = 0.3, bound: float = 5.0
) -> Verdict:
    """Run one input; see the module docstring for the oracle."""
    started = time.monotonic()
    verdict = Verdict()
    with socket.create_connection(address, timeout=bound) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = _Stream(sock)
        greeting = stream.packet()
        if greeting is None or greeting[0] != 0:
            verdict.problems.append(f"no greeting with sequence id 0: {greeting!r}")
            return verdict
        if greeting[1][:1] == bytes((_ERR,)):
            verdict.ending = "refused"
            _check_err(greeting[1], verdict)
            return verdict
        greeting_wire = frame(greeting[1], 0)
        if fuzz.login:
            log_in(stream, greeting_wire, *APP)
        marker, half_closed = _send_parts(stream, fuzz, greeting[1])
        _judge(stream, marker, half_closed, verdict, quiet, bound)
        if verdict.ending == "answered":
            _send(sock, frame(commands.build_quit(), 0))
    verdict.seconds = time.monotonic() - started
    return verdict


def _send_parts(stream: _Stream, fuzz: FuzzInput, greeting: bytes) -> tuple[bytes | None, bool]:
    """Send the parts, then the sentinel: (the sentinel's marker or None, half-closed)."""
    for part in fuzz.parts:
        if isinstance(part, HalfClose):
            _half_close(stream.sock)
            return None, True
        data = build_login(part, greeting) if isinstance(part, Login) else part.data
        if not _send(stream.sock, data):
            return None, False  # the proxy closed already: the reading will tell
    if not fuzz.login:
        return None, False
    marker = b"rwfuzz-" + os.urandom(6).hex().encode()
    sentinel = commands.build_query(b"SELECT '" + marker + b"' AS s")
    return (marker if _send(stream.sock, frame(sentinel, 0)) else None), False


def _judge(
    stream: _Stream,
    marker: bytes | None,
    half_closed: bool,
    verdict: Verdict,
    quiet: float,
    bound: float,
) -> None:
    sock = stream.sock
    sock.settimeout(bound if half_closed else quiet)
    received = bytearray()
    while True:
        try:
            alive = stream.fill()
        except TimeoutError:
            if half_closed:
                verdict.ending = "hang"
                verdict.problems.append(f"not closed {bound:g} s after our half-close")
                break
            _half_close(sock)  # waiting for bytes a lying header announced: end it
            half_closed = True
            sock.settimeout(bound)
            continue
        received += stream.buf
        stream.buf.clear()
        if not alive:
            verdict.ending = "closed_on_eof" if half_closed else "closed"
            break
        if marker is not None and marker in received and _whole_packets(received):
            verdict.ending = "answered"
            break
    _check_stream(bytes(received), verdict)


def _whole_packets(data: bytearray) -> bool:
    pos = 0
    while pos + 4 <= len(data):
        pos += 4 + int.from_bytes(data[pos : pos + 3], "little")
    return pos == len(data)


def _check_stream(data: bytes, verdict: Verdict) -> None:
    pos = 0
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos : pos + 3], "little")
        payload = data[pos + 4 : pos + 4 + size]
        if len(payload) < size:
            break
        verdict.packets += 1
        if payload[:1] == bytes((_ERR,)):
            _check_err(payload, verdict)
        pos += 4 + size
    if pos != len(data) and verdict.ending != "closed_on_eof":
        verdict.problems.append(f"reply cut mid-packet ({len(data) - pos} bytes left over)")


def _check_err(payload: bytes, verdict: Verdict) -> None:
    try:
        err = parse_err(payload)
    except ProtocolError as exc:
        verdict.problems.append(f"malformed ERR packet {payload[:40]!r}: {exc}")
        return
    if not 1 <= err.code <= 0xFFFF or (err.sqlstate is not None and len(err.sqlstate) != 5):
        verdict.problems.append(f"odd ERR packet {err}")
    verdict.error_codes.append(err.code)


def liveness(address: tuple[str, int], timeout: float = 10.0) -> None:
    """A fresh, valid client logs in and runs SELECT 1 (raises otherwise)."""
    conn = wire.Connection.open(address, *APP, timeout=timeout)
    try:
        conn.query("SELECT 1")
    finally:
        conn.close()
