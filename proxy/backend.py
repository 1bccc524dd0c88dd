"""One authenticated connection from the proxy to one pod.

Theory of operation
-------------------
`BackendConnection` is an `asyncio.Protocol`: the event loop hands it whole chunks
of bytes as they come off the socket. During the handshake they go to the pure
`ClientHandshake`; afterwards to a `ResponseTracker`, which says how many bytes of
the chunk belong to the reply of the command in flight. Those bytes go straight to
a *sink* (the client's transport, unparsed: rows are never decoded) or, for the
proxy's own queries, into a buffer. When the tracker says the reply is complete the
future returned by `request()` resolves with the tracker, whose outcome carries the
final status flags (the truth about transactions) and the final OK packet.

`start()` is the same exchange without a future: the reply's end (or the connection's
loss) calls a completion callback from inside `data_received`/`connection_lost`. The
session's fast path uses it so that an ordinary statement costs no task switch.

There is at most one command in flight per connection. A connection whose reply was
cut short (client gone, timeout, bytes after the end of a reply) is marked `broken`
and is never reused: its byte stream position is unknown.

What the proxy remembers about the server-side session (schema, replayed session
state version, prepared statements, whether a reset is needed) lives here too,
because it belongs to this connection and dies with it.

TLS (`backend_tls`). With a `BackendTls`, the `ClientHandshake` is built with
``tls_possible`` (and ``tls_required`` for required/verify_*). When the pod offers TLS
the handshake queues an SSLRequest and reports `TlsRequested`; the SSLRequest goes out
in clear, nothing is fed to the handshake any more, and `wait_ready()` (still inside
`open_backend`'s connect timeout) switches the transport with `loop.start_tls()`,
passing the pod's FQDN (`tls_server_name`) as ``server_hostname`` (SNI; checked in
verify_identity mode only). The HandshakeResponse41 then goes over TLS, and from there
on the connection is an ordinary one whose transport happens to be the TLS one: the
reply path is the same code. A failed TLS handshake becomes ``BackendError(endpoint,
"TLS: ...")``; connections are aborted rather than closed when broken, since closing
a TLS transport waits for the peer's close_notify.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from proxy.config import DiscoveryConfig
from proxy.protocol import commands as cmd
from proxy.protocol.constants import Capability as Cap
from proxy.protocol.constants import CharacterSet, Command, ServerStatus
from proxy.protocol.errors import MySQLError, ProtocolError
from proxy.protocol.framing import frame
from proxy.protocol.handshake import ClientHandshake, Failed, Ready, TlsRequested
from proxy.protocol.response import ResponseState, ResponseTracker
from proxy.protocol.resultset import decode_text_rows
from proxy.topology.model import Endpoint

logger = logging.getLogger(__name__)

Sink = Callable[[bytes | memoryview], None]
#: Called once when a `start()`ed reply ends: (tracker, None), or (None, error) when the
#: connection was lost first.
Completion = Callable[["ResponseTracker | None", "BackendError | None"], None]

#: Capabilities every backend connection asks for, whatever the client asked.
BASE_CAPABILITIES = (
    Cap.CLIENT_LONG_PASSWORD
    | Cap.CLIENT_LONG_FLAG
    | Cap.CLIENT_PROTOCOL_41
    | Cap.CLIENT_TRANSACTIONS
    | Cap.CLIENT_SECURE_CONNECTION
    | Cap.CLIENT_MULTI_RESULTS
    | Cap.CLIENT_PS_MULTI_RESULTS
    | Cap.CLIENT_PLUGIN_AUTH
    | Cap.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | Cap.CLIENT_CONNECT_ATTRS
)

#: Client capabilities that change what the server sends or accepts: a backend
#: connection must have the same ones as the client it serves, so pools are keyed
#: by them.
WIRE_CAPABILITIES = (
    Cap.CLIENT_FOUND_ROWS
    | Cap.CLIENT_IGNORE_SPACE
    | Cap.CLIENT_DEPRECATE_EOF
    | Cap.CLIENT_MULTI_STATEMENTS
    | Cap.CLIENT_LOCAL_FILES
    | Cap.CLIENT_INTERACTIVE
    | Cap.CLIENT_SESSION_TRACK
)


class BackendError(Exception):
    """A backend connection failed (connect, login, or mid-conversation)."""

    def __init__(self, endpoint: Endpoint, reason: str, error: MySQLError | None = None) -> None:
        super().__init__(f"{endpoint.pod} ({endpoint.address}): {reason}")
        self.endpoint = endpoint
        self.reason = reason
        self.error = error


@dataclass(frozen=True, slots=True)
class BackendTls:
    """How a new connection switches to TLS when its pod agrees (see the module docstring)."""

    context: ssl.SSLContext
    server_hostname: str  # the pod's FQDN: SNI, and the name verify_identity checks
    handshake_timeout: float


def tls_server_name(discovery: DiscoveryConfig, endpoint: Endpoint) -> str:
    """The name a pod's certificate must carry: ``mysql-0.mysql-h.default.svc.cluster.local``.

    A pod found only by its address (an unnamed port: `Endpoint.pod` is ``ip:port``) has no
    DNS name of its own, so its address is checked instead.
    """
    if endpoint.pod == f"{endpoint.host}:{endpoint.port}":
        return endpoint.host
    return discovery.pod_fqdn(endpoint.pod)


_SSL_SOURCE = re.compile(r"\s*\(_ssl\.c:\d+\)$")


def tls_error_text(exc: BaseException) -> str:
    """A one-line reason for a failed TLS handshake, for errors and logs."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or ""
        return f"certificate verify failed: {detail}".rstrip(": ")
    if isinstance(exc, ssl.SSLError):
        text = _SSL_SOURCE.sub("", exc.args[1] if len(exc.args) > 1 else str(exc))
        return text or type(exc).__name__
    if isinstance(exc, ConnectionError | EOFError):
        return f"connection closed during the TLS handshake ({type(exc).__name__})"
    return str(exc) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class PoolKey:
    """What makes two backend connections interchangeable for a client."""

    user: str
    wire_capabilities: int
    character_set: int


@dataclass(slots=True)
class BackendPrepared:
    """A statement prepared on this connection: the server's id and its shape."""

    statement_id: int
    num_params: int
    num_columns: int
    types_bound: bool = False


@dataclass(slots=True)
class ServerSession:
    """What the proxy knows of the server-side session state of one connection."""

    schema: str | None = None
    owner: object | None = None
    state_version: int = -1
    prepared: dict[bytes, BackendPrepared] = field(default_factory=dict)
    applied: dict[bytes, bytes] = field(default_factory=dict)  # replayed session statements
    needs_reset: bool = False
    confirmed_gtid: str | None = None


class BackendConnection(asyncio.Protocol):
    """A logged-in connection to one pod; see the module docstring."""

    def __init__(
        self,
        endpoint: Endpoint,
        key: PoolKey,
        handshake: ClientHandshake,
        clock: Callable[[], float] = time.monotonic,
        tls: BackendTls | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.key = key
        self.server = ServerSession()
        self.created_at = clock()
        self.last_used_at = self.created_at
        self.broken = False
        self.unverified = False  # idle when another connection to the pod failed: ping first
        self.thread_id = 0
        self.server_version = ""
        self.capabilities = Cap(0)
        self.status = 0  # ServerStatus bits of the last reply, as a plain int
        self._clock = clock
        self._handshake: ClientHandshake | None = handshake
        self._tls = tls
        self.tls = False  # the transport is TLS
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        # True: the SSLRequest is out, switch to TLS now (a new future then waits for the
        # login); False: logged in.
        self._ready: asyncio.Future[bool] = self._loop.create_future()
        self._reply: asyncio.Future[ResponseTracker] | None = None
        self._on_done: Completion | None = None
        self._tracker: ResponseTracker | None = None
        self._sink: Sink | None = None
        self._collected = bytearray()
        self._close_reason = ""
        self._drained: asyncio.Future[None] | None = None  # set while writing is paused
        self._reading_paused = False  # by the client's back-pressure

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._handshake is not None:
            self._handshake_data(data)
            return
        tracker = self._tracker
        if tracker is None or (self._reply is None and self._on_done is None):
            self._fail("server sent data while no command was in flight")
            return
        try:
            used = tracker.feed(data)
        except ProtocolError as exc:
            self._fail(f"malformed reply: {exc}")
            return
        part = data if used == len(data) else memoryview(data)[:used]
        if self._sink is not None:
            self._sink(part)
        else:
            self._collected += part
        if tracker.done or tracker.state is ResponseState.LOCAL_INFILE_REQUESTED:
            if used != len(data):
                self._fail("server sent bytes after the end of a reply")
                return
            self._finish_reply()

    def connection_lost(self, exc: Exception | None) -> None:
        self.broken = True
        reason = self._close_reason or (f"connection lost: {exc}" if exc else "connection closed")
        error = BackendError(self.endpoint, reason)
        for future in (self._ready, self._reply, self._drained):
            if future is not None and not future.done():
                future.set_exception(error)
        self._transport = None
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done(None, error)

    def pause_reading(self) -> None:
        """Backpressure: the client is not reading, so stop reading from the pod."""
        if self._transport is not None and not self.broken:
            self._transport.pause_reading()
            self._reading_paused = True

    def resume_reading(self) -> None:
        self._reading_paused = False
        if self._transport is not None and not self.broken:
            self._transport.resume_reading()

    @property
    def unsent_bytes(self) -> int:
        """Bytes written to this connection that the kernel has not taken yet."""
        return self._transport.get_write_buffer_size() if self._transport is not None else 0

    def pause_writing(self) -> None:
        """The pod is not reading what we send (LOCAL INFILE data): `drained()` waits."""
        if self._drained is None:
            self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    async def drained(self) -> None:
        """Until the pod took what was sent (at once unless writing is paused), so a
        client streaming LOAD DATA faster than the pod reads waits in its own buffers."""
        if self._drained is not None:
            await self._drained

    # -- handshake ----------------------------------------------------------------------

    def _handshake_data(self, data: bytes) -> None:
        handshake = self._handshake
        assert handshake is not None
        try:
            events = handshake.receive_data(data)
        except ProtocolError as exc:
            self._fail(f"bad handshake from server: {exc}")
            return
        self._write(handshake.data_to_send())
        for event in events:
            if isinstance(event, Ready):
                self._handshake = None
                self.thread_id = event.connection_id
                self.server_version = event.server_version
                self.capabilities = Cap(event.capabilities)
                self.status = int(event.status)
                if not self._ready.done():
                    self._ready.set_result(False)
            elif isinstance(event, Failed):
                self._fail_ready(BackendError(self.endpoint, "login failed", event.error))
            elif isinstance(event, TlsRequested):
                self._tls_requested(handshake)

    def _tls_requested(self, handshake: ClientHandshake) -> None:
        """The SSLRequest is written: let `wait_ready` switch the transport."""
        if self._tls is None:
            self._fail_ready(BackendError(self.endpoint, "TLS to pods is not configured"))
        elif handshake.trailing_data:  # the pod must wait for our ClientHello
            self._fail_ready(BackendError(self.endpoint, "TLS: server sent data after SSLRequest"))
        elif not self._ready.done():
            switch, self._ready = self._ready, self._loop.create_future()
            switch.set_result(True)

    def _fail_ready(self, error: BackendError) -> None:
        if not self._ready.done():
            self._ready.set_exception(error)
        if self.tls:
            self.abort(error.reason)
        else:
            self.close(error.reason)

    async def _switch_to_tls(self) -> None:
        """start_tls on the transport, then the HandshakeResponse41 over it."""
        tls, handshake, raw = self._tls, self._handshake, self._transport
        assert tls is not None and handshake is not None
        try:
            if raw is None or self.broken:
                raise self._lost()
            secure = await self._loop.start_tls(
                raw,
                self,
                tls.context,
                server_hostname=tls.server_hostname,
                ssl_handshake_timeout=tls.handshake_timeout,
            )
        except OSError as exc:  # ssl.SSLError (a bad certificate), a reset, the timeout
            reason = f"TLS: {tls_error_text(exc)} (server name {tls.server_hostname})"
            self._ready.cancel()  # nobody will wait for the login now
            self.abort(reason)
            raise BackendError(self.endpoint, reason) from None
        except BaseException:
            self._ready.cancel()
            raise
        if secure is None or self.broken:  # lost while switching
            self._ready.cancel()
            raise self._lost()
        self._transport = secure
        self.tls = True
        handshake.tls_established()
        self._write(handshake.data_to_send())

    # -- requests ---------------------------------------------------------------------

    def request(
        self,
        packet: bytes,
        command: int,
        sink: Sink | None = None,
        *,
        cursor: bool = False,
        first_seq: int = 1,
    ) -> asyncio.Future[ResponseTracker]:
        """Send one framed command; the future resolves when its reply is complete.

        With a `sink`, reply bytes are handed to it as they arrive; without one they
        are collected and available from `take_collected()`.
        """
        if self.broken or self._transport is None:
            raise BackendError(self.endpoint, "connection is closed")
        if self.busy:
            raise BackendError(self.endpoint, "a reply is still in flight")
        tracker = self._tracker
        if tracker is None:
            tracker = self._tracker = ResponseTracker(self.capabilities)
        tracker.start(command, cursor=cursor, first_seq=first_seq)
        self._sink = sink
        self._collected = bytearray()
        self._reply = self._loop.create_future()
        self._transport.write(packet)
        self.last_used_at = self._clock()
        if tracker.done:
            self._reply.set_result(tracker)
        return self._reply

    def start(self, packet: bytes, command: int, sink: Sink, on_done: Completion) -> None:
        """`request()` for the fast path: `on_done` is called when the reply ends.

        The caller has checked that the connection is open and idle. A LOCAL INFILE
        request ends the exchange too (`tracker.state` says so): the caller must
        abandon the connection, since only `request()` can carry the client's file.
        """
        tracker = self._tracker
        if tracker is None:
            tracker = self._tracker = ResponseTracker(self.capabilities)
        tracker.start(command)
        self._sink = sink
        self._on_done = on_done
        assert self._transport is not None
        self._transport.write(packet)
        self.last_used_at = self._clock()

    @property
    def ready_for_fast_path(self) -> bool:
        """Open, with no reply in flight: `start()` may be called."""
        if self.broken or self._transport is None or self._on_done is not None:
            return False
        tracker = self._tracker
        if tracker is not None and tracker.state not in _AT_REST:
            return False
        return self._reply is None or self._reply.done()

    def send_more(self, packet: bytes | memoryview) -> None:
        """Forward client bytes inside a running exchange (LOCAL INFILE data)."""
        self._write(packet)

    def infile_sent(self) -> asyncio.Future[ResponseTracker]:
        """The client's LOCAL INFILE data is through: wait for the final OK/ERR."""
        assert self._tracker is not None
        self._tracker.infile_sent()
        self._reply = self._loop.create_future()
        if self._transport is None:  # lost while the data went out
            self._reply.set_exception(self._lost())
        return self._reply

    def take_collected(self) -> bytes:
        data = bytes(self._collected)
        self._collected = bytearray()
        return data

    async def query(self, sql: bytes, timeout: float) -> list[list[bytes | None]]:
        """Run one of the proxy's own statements; return its rows, raise on ERR.

        On timeout the connection is aborted: its reply may still come, so its
        position in the byte stream is lost.
        """
        tracker = await self.wait_reply(frame(cmd.build_query(sql), 0), Command.COM_QUERY, timeout)
        data = self.take_collected()
        outcome = tracker.outcome
        assert outcome is not None
        if outcome.error_code:
            raise MySQLError(outcome.error_code, outcome_message(outcome.payload))
        return decode_text_rows(data, self.capabilities)

    async def wait_reply(self, packet: bytes, command: int, timeout: float) -> ResponseTracker:
        """`request()` without a sink, bounded by `timeout` (then the connection is aborted)."""
        try:
            async with asyncio.timeout(timeout):
                return await self.request(packet, command)
        except TimeoutError:
            self.abort(f"no reply within {timeout:g} s")
            raise

    def _finish_reply(self) -> None:
        tracker = self._tracker
        reply = self._reply
        assert tracker is not None
        if self._reading_paused:
            # The reply's last bytes filled the client's buffer, which paused us; its
            # session lets go of our back-pressure now, so nobody would resume us, and the
            # next reply on this connection would never be read (seen: a 17 MiB SELECT
            # after another one hung until the client's read timeout). Nothing more comes
            # until the next command, whose start pauses us again if the client is still full.
            self.resume_reading()
        outcome = tracker.outcome
        if outcome is not None and outcome.status is not None:
            self.status = outcome.status
        if tracker.done:  # paused for LOCAL INFILE: the final OK/ERR still goes to the client
            self._sink = None
        on_done = self._on_done
        if on_done is not None:
            self._on_done = None
            on_done(tracker, None)
        elif reply is not None and not reply.done():
            reply.set_result(tracker)

    # -- lifetime -------------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return bool(self.status & _IN_TRANS)

    @property
    def busy(self) -> bool:
        """A reply is still coming (also when whoever waited for it was cancelled)."""
        tracker = self._tracker
        if tracker is not None and tracker.state not in _AT_REST:
            return True
        if self._on_done is not None:
            return True
        return self._reply is not None and not self._reply.done()

    def age(self) -> float:
        return self._clock() - self.created_at

    def idle_for(self) -> float:
        return self._clock() - self.last_used_at

    def close(self, reason: str = "closed by proxy") -> None:
        """Close now. A connection closed mid-reply is never reused."""
        self.broken = True
        self._close_reason = reason
        if self._transport is not None:
            self._transport.close()

    def abort(self, reason: str) -> None:
        self.broken = True
        self._close_reason = reason
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, reason: str) -> None:
        logger.warning("backend %s: %s; closing", self.endpoint.pod, reason)
        self.abort(reason)

    def _lost(self) -> BackendError:
        return BackendError(self.endpoint, self._close_reason or "connection closed")

    def _write(self, data: bytes | memoryview) -> None:
        if data and self._transport is not None:
            self._transport.write(data)

    async def wait_ready(self) -> None:
        """Until logged in; switches to TLS on the way when the pod agreed to it."""
        if await self._ready:
            await self._switch_to_tls()
            await self._ready


_AT_REST = (ResponseState.IDLE, ResponseState.DONE)
_IN_TRANS = int(ServerStatus.SERVER_STATUS_IN_TRANS)


def outcome_message(payload: bytes) -> str:
    """The message text of an ERR payload (header, code, optional SQLSTATE)."""
    text = payload[3:]
    if text[:1] == b"#":
        text = text[6:]
    return text.decode("utf-8", "replace")


async def open_backend(
    endpoint: Endpoint,
    key: PoolKey,
    handshake: ClientHandshake,
    *,
    connect_timeout: float,
    tls: BackendTls | None = None,
) -> BackendConnection:
    """Connect, switch to TLS when both sides want it, and log in, under one timeout."""
    loop = asyncio.get_running_loop()
    conn: BackendConnection | None = None
    try:
        async with asyncio.timeout(connect_timeout):
            _, conn = await loop.create_connection(
                lambda: BackendConnection(endpoint, key, handshake, tls=tls),
                endpoint.host,
                endpoint.port,
            )
            await conn.wait_ready()
    except TimeoutError:
        if conn is not None:
            conn.abort("connect timeout")
        raise BackendError(endpoint, f"no login within {connect_timeout:g} s") from None
    except OSError as exc:
        raise BackendError(endpoint, f"cannot connect: {exc.strerror or exc}") from None
    return conn


DEFAULT_CHARACTER_SET = CharacterSet.UTF8MB4_GENERAL_CI
