"""The application side of one proxied connection: bytes in, packets out.

`ClientConnection` is the `asyncio.Protocol` for an application's socket. Before
login it hands raw bytes to the session (the handshake state machine does its own
framing); afterwards a `PacketFramer` cuts them into command packets, bounded by
`max_allowed_packet`. It also carries backpressure: when the application stops
reading, the transport calls `pause_writing()`, and the connection pauses whatever
backend is streaming to it until `resume_writing()`.

TLS: when the client sends an SSLRequest, the session pauses reading, takes what was
read but not yet used (`take_raw`: the first TLS bytes) for the TLS layer, and after
`loop.start_tls()` puts the TLS transport in place (`use_transport`). From then on
`data_received` gets decrypted bytes, possibly even before `start_tls()` returns; in
the login phase they simply wait in the raw buffer for the next `read_raw()`.

Memory per client is bounded: the raw login bytes by `LOGIN_BUFFER_LIMIT`, a packet by
`max_allowed_packet` (the framer checks each length header before buffering), and the command
packets received but not yet taken by the session by `QUEUE_LIMIT`. Past a limit the
socket is not read until the session catches up, so a client that pipelines without
reading replies, or streams LOAD DATA faster than the pod takes it, waits in its own
send buffer rather than in ours.

New command packets are announced through `on_packets` (by default: wake whoever waits
in `next_packet()`). The session replaces it with its fast-path dispatcher, which runs
ordinary statements straight from this callback and wakes its command loop only for
the rest.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import cast

from proxy.protocol.constants import HEADER_SIZE, MAX_PACKET_PAYLOAD
from proxy.protocol.errors import ProtocolError
from proxy.protocol.framing import Packet, PacketFramer
from proxy.protocol.handshake import MAX_LOGIN_PACKET_SIZE

LOGIN_BUFFER_LIMIT = 2 * MAX_LOGIN_PACKET_SIZE
QUEUE_LIMIT = 1 << 20
LINGER_SECONDS = 2.0
CLOSE_TIMEOUT_SECONDS = 10.0


class ClientConnection(asyncio.Protocol):
    """See the module docstring."""

    def __init__(self, on_connect: Callable[[ClientConnection], None], max_packet: int) -> None:
        self._on_connect = on_connect
        self.framer = PacketFramer(max_packet)
        self.transport: asyncio.Transport | None = None
        self.peer = "unknown"
        self.closed = False  # nothing more can be written to it
        self.input_ended = False  # nothing more will be read from it
        self._tls = False
        self.protocol_error: ProtocolError | None = None
        self.bytes_out = 0
        self.bytes_in = 0
        self.idle_timed_out = False
        self._loop = asyncio.get_running_loop()
        self.last_activity = self._loop.time()
        self.on_lost: Callable[[], None] | None = None
        self._raw: bytearray | None = bytearray()
        self.packets: deque[Packet] = deque()
        self.on_packets: Callable[[], None] = self.wake
        self._waiter: asyncio.Future[None] | None = None
        self._paused_by: Callable[[bool], None] | None = None
        self._writing_paused = False
        self._reading_paused = False  # by us, for a full buffer (not by TLS or framing)
        self._lingering: asyncio.TimerHandle | None = None  # closing: input is discarded
        self._close_deadline: asyncio.TimerHandle | None = None
        self._unread = 0  # command bytes received and not yet taken by the session

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = str(peer[0])
        self._on_connect(self)

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self._lingering is not None:
            return
        if self._raw is not None:
            self.last_activity = self._loop.time()
            self._raw += data
            if len(self._raw) > LOGIN_BUFFER_LIMIT:
                self._pause_reading()
            self.wake()
            return
        self._unread += len(data)
        try:
            packets = self.framer.feed(data)
            if packets:  # a byte trickled now and then is not activity: a packet is
                self.last_activity = self._loop.time()
                self.packets.extend(packets)
            if self.framer.error is not None:  # after the packets it returned
                raise self.framer.error
        except ProtocolError as exc:
            self.protocol_error = exc
            if self.transport is not None:
                self.transport.pause_reading()
        self.on_packets()
        if self._unread > QUEUE_LIMIT and self.packets:  # (a packet being cut cannot wait)
            self._pause_reading()

    def eof_received(self) -> bool:
        """The client shut down its sending side. Like mysqld, answer every command it
        sent before that (the session closes once they are done): keeping the transport
        open is what lets those replies out. asyncio's TLS transport cannot stay open
        (it warns when asked to), and a TLS client's close_notify means goodbye anyway."""
        self.input_ended = True
        self.wake()
        return not self._tls and self._lingering is None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.input_ended = True
        self.transport = None
        for timer in (self._lingering, self._close_deadline):
            if timer is not None:
                timer.cancel()
        self.wake()
        if self.on_lost is not None:
            self.on_lost()
        if self._paused_by is not None:
            self._paused_by(False)

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self._paused_by is not None:
            self._paused_by(True)

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._paused_by is not None:
            self._paused_by(False)

    # -- used by the session --------------------------------------------------------

    def set_backpressure_target(self, callback: Callable[[bool], None] | None) -> None:
        """`callback(True)` pauses the backend streaming to us, `False` resumes it."""
        self._paused_by = callback
        if callback is not None and self._writing_paused:
            callback(True)

    async def read_raw(self) -> bytes | None:
        """Handshake phase: whatever bytes arrived, or None when the client left."""
        while True:
            if self._raw:
                data = bytes(self._raw)
                self._raw.clear()
                self._resume_reading()
                return data
            if self.input_ended:
                return None
            await self.wait()

    def take_raw(self) -> bytes:
        """Login phase: the bytes received and not read yet, now (they are no longer kept)."""
        if not self._raw:
            return b""
        data = bytes(self._raw)
        self._raw.clear()
        return data

    def use_transport(self, transport: asyncio.BaseTransport) -> None:
        """Write through `transport` from now on (the TLS one after the switch)."""
        secure = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if self.closed:  # lost while switching
            secure.abort()
            return
        self.transport = secure
        self._tls = True
        self._reading_paused = False  # that was the plain transport

    def start_command_phase(self, early: bytes = b"") -> None:
        """Switch from raw bytes to framed packets (after a successful login).

        `early` holds command bytes that came with the last handshake packet.
        """
        leftover = early + bytes(self._raw or b"")
        self._raw = None
        self._resume_reading()
        if leftover:
            self.data_received(leftover)

    @property
    def unread_bytes(self) -> int:
        """Command bytes received and not yet taken by the session (bounded, see above)."""
        return self._unread

    def next_packet_nowait(self) -> Packet | None:
        """Take the next command packet, if one is queued."""
        if not self.packets:
            return None
        packet = self.packets.popleft()
        size = len(packet.payload)
        self._unread -= size + HEADER_SIZE * (size // MAX_PACKET_PAYLOAD + 1)
        if self._reading_paused and (not self.packets or self._unread <= QUEUE_LIMIT // 2):
            self._resume_reading()
        return packet

    async def next_packet(self) -> Packet | None:
        """The next client packet, or None when the client left or broke framing."""
        while True:
            if self.packets:
                return self.next_packet_nowait()
            if self.input_ended or self.protocol_error is not None:
                return None
            await self.wait()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            if self.transport is not None and self.protocol_error is None:
                self.transport.resume_reading()

    def loop_time(self) -> float:
        return self._loop.time()

    def close_idle(self) -> None:
        """The client sent nothing for too long (the proxy's wait_timeout)."""
        self.idle_timed_out = True
        self.abort()

    def write(self, data: bytes | memoryview) -> None:
        if self.transport is not None:
            self.transport.write(data)
            self.bytes_out += len(data)

    def close(self) -> None:
        """Close after what was written is sent. `closed` is set at once, as in `abort`: a TLS
        transport reports the loss only once the client answered its close_notify, and an
        idle client never does, so a session waiting for its next packet would wait on.

        Closing a socket that holds unread input makes the kernel send RST, which can
        destroy the last replies on their way (seen by the fuzzer: a result cut after a
        too-large packet). So when the client sent more than was read, the close lingers:
        FIN after the replies, then input is read and dropped until the client closes too,
        for at most LINGER_SECONDS (as nginx's lingering_close).

        A client that reads nothing more (or a TLS client that never answers close_notify)
        would keep the socket open for ever, so it is dropped after CLOSE_TIMEOUT_SECONDS."""
        transport = self.transport
        self.closed = self.input_ended = True
        self.wake()
        if transport is None or self._close_deadline is not None:
            return
        self._close_deadline = self._loop.call_later(CLOSE_TIMEOUT_SECONDS, transport.abort)
        if self._tls or not self._unread_input() or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._lingering = self._loop.call_later(LINGER_SECONDS, transport.close)
        transport.resume_reading()

    def _unread_input(self) -> bool:
        """Did the client send bytes the session never took (or may the kernel hold some)?"""
        return bool(
            self.protocol_error is not None
            or self._reading_paused
            or self._raw
            or self.packets
            or self.framer.buffered
        )

    def abort(self) -> None:
        """Drop the connection now (KILL, protocol violation). `closed` is set at once,
        not when the loop gets round to `connection_lost`, so a session that is about
        to send this client's statement to a pod sees it and does not."""
        self.closed = self.input_ended = True
        if self.transport is not None:
            self.transport.abort()

    async def wait(self) -> None:
        """Until `wake()` (new packets, or the client left)."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
