"""One application session: login, then each command classified, routed and relayed.

Theory of operation
-------------------
A `Session` is one task per application connection. It authenticates the client
itself (the pure `ServerHandshake`), then loops: take the next command packet, find
the backend connection it must run on, send it, and let the backend connection
stream the reply straight to the client socket (`BackendConnection.request` with the
client as sink). Rows are never decoded. When the reply ends, the final status flags
tell the session whether it is now inside a transaction (the truth, whatever the SQL
text said) and whether autocommit is on.

Backend connections are held per role, lazily: at most one writer connection and one
replica connection, taken from the pools on first use and kept for the life of the
session (as MaxScale's readwritesplit does), so a statement costs no pool traffic.
They go back to their pools when the session ends; one whose server state was
touched is reset first (the pool does that).

Session state that must hold on every backend is the schema (asked from the server
after `USE`) and the replayable `SET`s, kept by what they set (`replay_key`: a later
`SET autocommit=1` replaces `SET autocommit=0`) under a version number. A connection
remembers the version and the statements it has applied, and before it runs anything
it is sent only what differs (`_sync`). State that cannot be reproduced elsewhere pins
the session to the writer (`Classification.pin`).

Read-your-writes (`routing.read_your_writes: gtid`): after the session wrote, its
next replica read first asks the writer connection for the GTID of that write
(`@@last_gtid` on MariaDB, `@@global.gtid_executed` on MySQL) and waits on the
replica (`MASTER_GTID_WAIT` / `WAIT_FOR_EXECUTED_GTID_SET`) up to the configured
timeout; if the replica does not catch up in time the read goes to the writer.

TLS at login (`tls`): the greeting offers CLIENT_SSL when the proxy has a certificate.
On an SSLRequest (`TlsRequested`) nothing more is fed to the handshake or written in
clear: reading pauses, the bytes already read behind the SSLRequest go to the TLS
layer (`proxy.tls.start_tls(pending=...)`), the client's transport becomes the TLS one
and the handshake goes on over it. With ``tls.require`` a client that answers the
greeting in clear gets ER_SECURE_TRANSPORT_REQUIRED (3159) in place of whatever the
handshake queued (an auth switch, a verdict), so no password exchange happens in clear
and a wrong password is not told apart from a right one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, final

from proxy import tls
from proxy.auth_guard import blocked_error, blocked_greeting
from proxy.backend import (
    WIRE_CAPABILITIES,
    BackendConnection,
    BackendError,
    PoolKey,
    tls_error_text,
)
from proxy.logs import SampledLog
from proxy.pool import Pool
from proxy.prepared import PreparedStatements
from proxy.protocol import commands as cmd
from proxy.protocol import packets
from proxy.protocol.constants import Capability, Command, ErrorCode, ServerStatus
from proxy.protocol.errors import MySQLError, RemoteProtocolError
from proxy.protocol.framing import Packet, frame, next_seq_after
from proxy.protocol.handshake import (
    Authenticated,
    Rejected,
    ServerEvent,
    ServerHandshake,
    ServerState,
    TlsRequested,
)
from proxy.protocol.response import ResponseOutcome, ResponseState, ResponseTracker
from proxy.routing.classify import Classification, PinCause, StatementKind, classify
from proxy.routing.router import RouteDecision, SessionView, Target, route
from proxy.topology.model import Endpoint

if TYPE_CHECKING:
    from proxy.client import ClientConnection
    from proxy.server import ProxyContext

logger = logging.getLogger(__name__)
_statement_log = SampledLog(logger)  # per-statement DEBUG lines, rate-limited

MAX_REPLAYED_STATEMENTS = 64
# MySQL's answer under require_secure_transport (MariaDB answers 1045 there).
ER_SECURE_TRANSPORT_REQUIRED = 3159
_INSECURE = (
    "Connections using insecure transport are prohibited while --require_secure_transport=ON."
)
_AUTOCOMMIT = int(ServerStatus.SERVER_STATUS_AUTOCOMMIT)
_WIRE_CAPABILITIES: Final = int(WIRE_CAPABILITIES)  # an int: IntFlag operators are interpreted
FIELD_LIST = Classification(StatementKind.READ, "COM_FIELD_LIST reads metadata")
KILL_STATEMENT = re.compile(
    rb"\s*KILL\s+(?:(?:HARD|SOFT)\s+)?(CONNECTION\s+|QUERY\s+)?(\d+)\s*;?\s*\Z", re.IGNORECASE
)


class ClientGone(Exception):
    """The application closed its connection or broke the protocol."""


@dataclass(slots=True)
class Held:
    """A backend connection the session holds, and the pool it came from."""

    pool: Pool
    conn: BackendConnection


@dataclass(slots=True)
class SessionState:
    """Server-side state the session needs on every backend it uses."""

    schema: str | None = None
    replay: dict[bytes, bytes] = field(default_factory=dict)  # key -> statement
    version: int = 0
    pins: set[PinCause] = field(default_factory=set)

    def change(self) -> None:
        self.version += 1


class Session:
    """See the module docstring."""

    def __init__(self, client: ClientConnection, ctx: ProxyContext, connection_id: int) -> None:
        self.client = client
        self.ctx = ctx
        self.connection_id = connection_id
        self.user = ""
        self.capabilities = Capability(0)
        self.key: PoolKey | None = None
        self.state = SessionState()
        self.status = _AUTOCOMMIT  # ServerStatus bits of the last reply, as a plain int
        self._writer: Held | None = None
        self._reader: Held | None = None
        self._txn: BackendConnection | None = None
        self._last: BackendConnection | None = None
        self._unconfirmed_write = False
        self._wrote_on: BackendConnection | None = None  # where that write ran
        self._active: BackendConnection | None = None
        self._in_command = False
        self._handshake: ServerHandshake | None = None
        self._schema_changed_on: BackendConnection | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._state_lost: str | None = None
        self._fast: _FastStatement | None = None  # a statement on the fast path, in flight
        self._fast_failure: tuple[_FastStatement, BackendError | None] | None = None
        self._loop_turn = True  # the command loop owns the client's packets
        self._stop_loop = False
        self._finished = False
        client.on_lost = self._client_lost
        self.current_sql = b""
        self.statements = PreparedStatements(self)

    # -- life -------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            handshake = await self._login()
            if handshake is not None:
                self.client.start_command_phase(handshake.trailing_data)
                await self._command_loop()
        except ClientGone:
            logger.debug("client %s left", self.connection_id)
        except Exception:
            logger.exception("session %s failed", self.connection_id)
        finally:
            self._finished = True
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            self._release_all()
            self._forget_user()
            self.client.close()

    def _forget_user(self) -> None:
        if self.user:
            left = self.ctx.user_sessions.get(self.user, 1) - 1
            if left > 0:
                self.ctx.user_sessions[self.user] = left
            else:
                self.ctx.user_sessions.pop(self.user, None)

    async def _login(self) -> ServerHandshake | None:
        """Authenticate the client; the handshake when it succeeded."""
        guard = self.ctx.login_guard
        wait = guard.check(self.client.peer) if guard is not None else 0.0
        if wait > 0:
            logger.info("client %s: blocked for %.0f s after failed logins", self.client.peer, wait)
            self.ctx.metrics.refused("host_blocked")
            self.client.write(blocked_greeting(self.client.peer, wait))
            return None
        handshake = self.ctx.new_server_handshake(self.connection_id, self.client.peer)
        self.client.write(handshake.data_to_send())
        try:
            async with asyncio.timeout(self.ctx.config.handshake_timeout_seconds):
                accepted = await self._login_exchange(handshake)
        except TimeoutError:
            logger.info("client %s: no login within the handshake timeout", self.client.peer)
            self.ctx.metrics.refused("handshake_timeout")
            return None
        return handshake if accepted else None

    async def _login_exchange(self, handshake: ServerHandshake) -> bool:
        while True:
            data = await self.client.read_raw()
            if data is None:
                return False
            events = handshake.receive_data(data)
            if events and isinstance(events[-1], TlsRequested):
                if not await self._start_tls(handshake):
                    return False
                continue
            if self._refused_in_clear(handshake):
                return False
            accepted = self._decide(handshake, events)
            if accepted is not None:
                return accepted

    async def _start_tls(self, handshake: ServerHandshake) -> bool:
        """Switch the client's connection to TLS after its SSLRequest; False if that failed."""
        client, contexts = self.client, self.ctx.tls.client
        transport = client.transport
        assert contexts is not None  # CLIENT_SSL is only offered with a context
        if transport is None:
            return False
        # From here every byte read belongs to the TLS layer: stop reading, and hand it
        # what was read behind the SSLRequest (a ClientHello, or its beginning).
        transport.pause_reading()
        pending = handshake.trailing_data + client.take_raw()
        try:
            secure = await tls.start_tls(
                transport,
                client,
                contexts.current(),
                server_side=True,
                pending=pending,
                handshake_timeout=self.ctx.config.handshake_timeout_seconds,
            )
        except OSError as exc:  # ssl.SSLError (the client refused us), a reset, a timeout
            logger.info("client %s: TLS handshake failed: %s", client.peer, tls_error_text(exc))
            self.ctx.metrics.refused("tls_failed")
            client.abort()
            return False
        client.use_transport(secure)
        handshake.tls_established()
        return not client.closed

    def _refused_in_clear(self, handshake: ServerHandshake) -> bool:
        """tls.require: answer a login that did not switch to TLS with 3159, at once."""
        if not self.ctx.config.tls.require or handshake.tls:
            return False
        if handshake.state in (ServerState.AWAIT_RESPONSE, ServerState.AWAIT_TLS):
            return False  # its HandshakeResponse41 (or SSLRequest) is not complete yet
        handshake.data_to_send()  # dropped: an auth switch or a verdict, never sent in clear
        caps = handshake.negotiated or Capability.CLIENT_PROTOCOL_41
        error = packets.build_err(ER_SECURE_TRANSPORT_REQUIRED, _INSECURE, "HY000", caps)
        self.client.write(frame(error, 2))  # after the greeting (0) and the response (1)
        logger.info("client %s: refused, it did not switch to TLS (tls.require)", self.client.peer)
        self.ctx.metrics.refused("tls_required")
        return True

    def _decide(self, handshake: ServerHandshake, events: list[ServerEvent]) -> bool | None:
        """Accept or refuse a finished authentication; None while it goes on."""
        decision: bool | None = None
        for event in events:
            if isinstance(event, Authenticated | Rejected) and self._blocked_meanwhile(handshake):
                decision = False
            elif isinstance(event, Authenticated):
                decision = self._admit(handshake, event)
            elif isinstance(event, Rejected):
                logger.warning("refused login from %s: %s", self.client.peer, event.error)
                self.ctx.metrics.refused("auth_failed")
                guard = self.ctx.login_guard
                if guard is not None and event.error.code == ErrorCode.ER_ACCESS_DENIED_ERROR:
                    guard.failed(self.client.peer)
                decision = False
        self.client.write(handshake.data_to_send())
        return decision

    def _blocked_meanwhile(self, handshake: ServerHandshake) -> bool:
        """A block that started while this login was in flight answers it with 1129, right
        password or not, so a burst of parallel guesses learns nothing (auth_guard.py)."""
        guard = self.ctx.login_guard
        wait = guard.check(self.client.peer) if guard is not None else 0.0
        if wait <= 0:
            return False
        handshake.refuse_instead(blocked_error(self.client.peer, wait))
        self.ctx.metrics.refused("host_blocked")
        return True

    def _admit(self, handshake: ServerHandshake, event: Authenticated) -> bool:
        if self.ctx.login_guard is not None:
            self.ctx.login_guard.succeeded(self.client.peer)
        limit = self.ctx.user_connection_limit(event.username)
        if limit and self.ctx.user_sessions.get(event.username, 0) >= limit:
            handshake.reject(
                MySQLError(
                    ErrorCode.ER_TOO_MANY_USER_CONNECTIONS,
                    f"User '{event.username}' has exceeded the max_connections limit ({limit})",
                )
            )
            self.ctx.metrics.client_refused_total.labels("max_connections_per_user").inc()
            return False
        handshake.accept(ServerStatus(self.status))
        self._handshake = handshake
        self._accept(event)
        return True

    def _accept(self, event: Authenticated) -> None:
        self.ctx.user_sessions[event.username] = self.ctx.user_sessions.get(event.username, 0) + 1
        self.user = event.username
        self.capabilities = Capability(event.capabilities)
        self.state.schema = event.database or None
        self.ctx.remember_credential(event.username, event.backend_credential)
        self.key = PoolKey(
            event.username,
            int(event.capabilities) & _WIRE_CAPABILITIES,
            event.character_set,
        )

    async def _on_change_user(self, packet: Packet) -> None:
        """COM_CHANGE_USER: authenticate again, then start over as a fresh session."""
        handshake = self._handshake
        assert handshake is not None
        events = handshake.begin_change_user(packet.payload)
        while True:
            accepted = self._decide_change(handshake, events)
            if accepted is not None:
                if not accepted:
                    raise ClientGone
                return
            more = await self.client.next_packet()
            if more is None:
                raise ClientGone
            events = handshake.receive_data(frame(more.payload, more.seq))

    def _decide_change(self, handshake: ServerHandshake, events: list[ServerEvent]) -> bool | None:
        if any(isinstance(e, Authenticated) for e in events):
            self._release_all()
            self._forget_user()
            self.user = ""
            self.state = SessionState()
            self.status = _AUTOCOMMIT
            self.statements.reset()
        return self._decide(handshake, events)

    async def _command_loop(self) -> None:
        """Commands the fast path (`_dispatch`) did not take, one at a time, and the
        recovery of fast statements whose backend failed."""
        client = self.client
        self._watch_idle()
        client.on_packets = self._dispatch
        try:
            while not self._stop_loop:
                failure = self._fast_failure
                if failure is not None:
                    self._fast_failure = None
                    recover = functools.partial(self._recover_fast, *failure)
                    await self._run_command(recover, failure[0].packet)
                elif self._fast is not None:
                    self._loop_turn = False  # woken while a fast statement runs: not ours
                    await client.wait()
                    continue
                elif (packet := client.next_packet_nowait()) is not None:
                    if not await self._command(packet):
                        return
                elif client.input_ended or client.protocol_error is not None:
                    self._refuse_broken_framing()
                    return
                else:
                    self._loop_turn = False  # new packets go to the fast path first
                    await client.wait()
                    continue
                if self.ctx.draining and self._txn is None:
                    return  # shutting down: the transaction (if any) is over, say goodbye
        finally:
            client.on_packets = client.wake

    async def _command(self, packet: Packet) -> bool:
        """Run one command the slow way; False: the session ends."""
        if packet.seq != 0:
            self._send_error(
                ErrorCode.ER_NET_PACKETS_OUT_OF_ORDER, "Got packets out of order", seq=1
            )
            return False
        if not packet.payload:
            self._send_error(ErrorCode.ER_MALFORMED_PACKET, "Empty command packet")
            return True
        code = packet.payload[0]
        if code == Command.COM_QUIT:
            return False
        name = _HANDLERS.get(code)
        handler = getattr(self, name) if name else self.statements.handler_for(code)
        if handler is None:
            self._send_error(ErrorCode.ER_UNKNOWN_COM_ERROR, _unknown_command_text(code))
            return True
        await self._run_command(handler, packet)
        return True

    def _refuse_broken_framing(self) -> None:
        error = self.client.protocol_error
        if error is not None:
            self._send_error(
                ErrorCode.ER_NET_PACKET_TOO_LARGE
                if "max_allowed_packet" in str(error)
                else ErrorCode.ER_MALFORMED_PACKET,
                f"rwproxy: {error}",
                seq=1,
            )

    def _watch_idle(self) -> None:
        """Close a client that sent nothing for `client_idle_timeout_seconds` between
        commands (a running command never counts as idle). One timer per session that
        re-arms itself, rather than a timeout object per packet wait: that cost 6 % of
        the proxy's CPU under oltp_point_select."""
        if self.client.closed:
            return
        idle = self.ctx.config.client_idle_timeout_seconds
        loop = asyncio.get_running_loop()
        remaining = self.client.last_activity + idle - loop.time()
        if remaining > 0 or self._in_command:
            self._idle_timer = loop.call_later(max(remaining, 1.0), self._watch_idle)
            return
        logger.info("closing client %s: idle for %g s", self.connection_id, idle)
        self.client.close_idle()

    async def _run_command(self, handler: Callable[[Packet], Awaitable[None]], pkt: Packet) -> None:
        self._in_command = True
        start_out = self.client.bytes_out
        # One name per exception type: compiled (mypyc), a name has one type per function.
        try:
            await handler(pkt)
        except RemoteProtocolError as malformed:
            # A client packet the proxy parses (COM_STMT_EXECUTE's parameters, ...) was
            # malformed: nothing went to a pod yet. mysqld answers 1835 and carries on.
            if self.client.bytes_out != start_out:
                raise ClientGone from None  # part of a reply went out: the stream is lost
            self._send_error(
                ErrorCode.ER_MALFORMED_PACKET, f"rwproxy: malformed packet: {malformed}"
            )
        except MySQLError as refused:
            self._send_error(refused.code, refused.message, sqlstate=refused.sqlstate)
        except BackendError as lost:
            self._send_error(ErrorCode.CR_SERVER_LOST, f"rwproxy: backend {lost}")
            if self._state_lost is not None:
                raise ClientGone from None  # its transaction or pinned state died too
        except TimeoutError:
            # One of the proxy's own statements (state replay, GTID wait) got no answer;
            # that backend connection was aborted. The client's statement did not run.
            self._send_error(ErrorCode.CR_SERVER_LOST, "rwproxy: a backend did not answer in time")
        finally:
            self._in_command = False
            self.client.last_activity = self.client.loop_time()

    # -- the fast path ------------------------------------------------------------------
    #
    # Most statements of most applications run on a connection the session already
    # holds, in sync, with nothing to wait for. Those run from the client's
    # `data_received` straight to the pod, and their reply's end is a callback from the
    # pod's `data_received`: no task switch, no future. Everything else (a connection
    # to acquire, state to replay, a read-your-writes wait, statements the proxy answers
    # itself, failures) goes to the command loop, which is the one place for the rules.
    # Exactly one of them owns the client's packets at any time: the loop while
    # `_loop_turn`, the fast path while `_fast` is in flight.

    def _dispatch(self) -> None:
        """Packets arrived (or a fast statement ended): start the next one here if it
        can take the fast path, else give it to the command loop."""
        if self._fast is not None:
            return  # its end dispatches again
        client = self.client
        if client.packets:
            fast = not self._loop_turn and client.protocol_error is None
            if fast and self._start_fast(client.packets[0]):
                client.next_packet_nowait()
                return
        elif client.protocol_error is None and not client.input_ended:
            return
        self._loop_turn = True
        client.wake()

    def _start_fast(self, packet: Packet) -> bool:
        """Send `packet` (a COM_QUERY) on the fast path; False: it needs the loop."""
        payload = packet.payload
        if (
            packet.seq != 0
            or len(payload) >= _FAST_MAX_PAYLOAD
            or not payload
            or payload[0] != _COM_QUERY
            or self._state_lost is not None
            or self.ctx.draining
            or self.client.closed
        ):
            return False
        sql = payload[1:]
        c = classify(sql)
        if c.first_keyword in _LOOP_KEYWORDS:
            return False
        decision = self.route(c)
        conn = self._ready_conn(decision.target)
        if conn is None:
            return False
        self.current_sql = sql
        self._fast = _FastStatement(
            packet, c, decision, conn, time.perf_counter(), self.client.bytes_out
        )
        self._in_command = True
        self._active = conn
        self.client.set_backpressure_target(self._pause_backend)
        conn.start(frame(payload, 0), _COM_QUERY, self.client.write, self._fast_done)
        return True

    def _ready_conn(self, target: Target) -> BackendConnection | None:
        """The connection `target` names if it can take a statement now, with nothing
        to acquire, replay or wait for (what `_backend_for` would return at once)."""
        if target is Target.TRANSACTION:
            conn = self._txn
        elif target is Target.LAST:
            conn = self._last
        else:
            held = self._writer if target is Target.WRITER else self._reader
            if held is None:
                return None
            conn = held.conn
            topology = self.ctx.current_topology
            if target is Target.WRITER:
                writer = topology.writer  # the same object, unless the topology changed since
                if conn.endpoint is not writer and conn.endpoint != writer:
                    return None
            elif conn.endpoint not in topology.readers or (
                self._unconfirmed_write and self.ctx.config.routing.read_your_writes != "off"
            ):
                return None
            server = conn.server
            if server.owner is not self or server.state_version != self.state.version:
                return None
        if conn is None or not conn.ready_for_fast_path:
            return None
        return conn

    def _fast_done(self, tracker: ResponseTracker | None, error: BackendError | None) -> None:
        """The reply of the fast statement ended (`tracker`) or its connection was lost."""
        fast, self._fast = self._fast, None
        if fast is None or self._finished:
            return
        client = self.client
        self._active = None
        client.set_backpressure_target(None)
        self._in_command = False
        client.last_activity = client.loop_time()
        if tracker is None or tracker.state is ResponseState.LOCAL_INFILE_REQUESTED:
            if tracker is not None:
                fast.conn.abort("LOCAL INFILE requested for a statement that cannot send it")
            self._fast_failure = (fast, error)
            self._loop_turn = True
            client.wake()
            return
        self._finish_statement(
            fast.conn,
            fast.c,
            fast.decision,
            fast.decision.target,
            fast.started,
            tracker,
            _COM_QUERY,
        )
        if self.ctx.draining and self._txn is None:
            self._stop_loop = True
            client.wake()
            return
        self._dispatch()

    async def _recover_fast(
        self, fast: _FastStatement, error: BackendError | None, packet: Packet
    ) -> None:
        """What `execute` does when its backend fails, for a fast statement (run by the
        command loop): error or lost session, or a read retried elsewhere."""
        self._relay_failed(fast.conn, fast.bytes_out)
        error = error or BackendError(fast.conn.endpoint, "unexpected LOCAL INFILE request")
        target = fast.decision.target
        if target is not Target.READER or not self.ctx.config.routing.retry_reads:
            raise error
        conn, target, tracker = await self._retry_read(
            fast.conn, packet.payload, _COM_QUERY, fast.c
        )
        self._finish_statement(
            conn, fast.c, fast.decision, target, fast.started, tracker, _COM_QUERY
        )

    # -- COM_QUERY ----------------------------------------------------------------------

    async def _on_query(self, packet: Packet) -> None:
        sql = self.current_sql = packet.payload[1:]
        c = classify(sql)
        if self.ctx.admin_statement(self, sql, c):
            return
        if c.first_keyword == "kill":
            await self._on_kill_statement(sql)
            return
        decision = self.route(c)
        await self.execute(packet, Command.COM_QUERY, c, decision)

    async def _on_kill_statement(self, sql: bytes) -> None:
        """`KILL [QUERY] <id>` names a *proxy* connection id: never pass it to a pod,
        where the same number is some other client's backend thread."""
        match = KILL_STATEMENT.match(sql)
        if match is None:
            raise MySQLError(
                ErrorCode.ER_NOT_SUPPORTED_YET,
                "rwproxy: only KILL [CONNECTION | QUERY] <connection id> is supported",
            )
        query_only = (match.group(1) or b"").upper().startswith(b"QUERY")
        target = int(match.group(2))
        await self.ctx.kill(self, target, query_only=query_only)
        if target == self.connection_id and not query_only:
            raise ClientGone
        self.send_ok()

    def route(self, c: Classification) -> RouteDecision:
        """`route(c, self.view())`, remembered per classification and session state:
        building the view and the decision's text cost more than the rest of routing.

        The key must hold every fact `view()` gives (pins aside: pinned sessions are not
        remembered); tests/unit/routing/test_router.py fails when SessionView grows."""
        if self.state.pins:
            return route(c, self.view())
        topology = self.ctx.current_topology
        txn = self._txn
        key = (
            id(c),
            txn is not None,
            txn is not None and self._reader is not None and txn is self._reader.conn,
            self.status & _AUTOCOMMIT,
            not topology.readers,
            topology.writer is None,
            self.ctx.config.routing.mode,
            self._last is not None and not self._last.broken,
        )
        known = _decisions.get(key)
        if known is not None and known[0] is c:
            return known[1]
        decision = route(c, self.view())
        if len(_decisions) >= _DECISIONS_KEPT:
            _decisions.clear()
        _decisions[key] = (c, decision)  # holding `c` keeps its id from being reused
        return decision

    def view(self) -> SessionView:
        topology = self.ctx.current_topology
        return SessionView(
            in_transaction=self._txn is not None,
            transaction_on_reader=self._txn is not None
            and self._reader is not None
            and self._txn is self._reader.conn,
            autocommit=bool(self.status & _AUTOCOMMIT),
            pins=frozenset(self.state.pins),
            readers_available=bool(topology.readers),
            writer_available=topology.writer is not None,
            writer_only=self.ctx.config.routing.mode == "writer_only",
            has_last_backend=self._last is not None and not self._last.broken,
        )

    async def execute(
        self,
        packet: Packet,
        command: int,
        c: Classification,
        decision: RouteDecision,
        *,
        cursor: bool = False,
    ) -> None:
        """Run one client command where `decision` says and relay its reply."""
        started = time.perf_counter()
        data = packet.payload
        conn, target = await self._backend_for(decision.target, c)
        try:
            tracker = await self._relay(conn, data, command, c, cursor=cursor)
        except BackendError:
            if target is not Target.READER or not self.ctx.config.routing.retry_reads:
                raise
            conn, target, tracker = await self._retry_read(conn, data, command, c, cursor)
        self._finish_statement(conn, c, decision, target, started, tracker, command)
        if self._schema_changed_on is conn:
            await self._learn_schema(conn)

    async def _retry_read(
        self,
        failed: BackendConnection,
        data: bytes,
        command: int,
        c: Classification,
        cursor: bool = False,
    ) -> tuple[BackendConnection, Target, ResponseTracker]:
        """A read outside a transaction whose replica failed before a single byte of the
        reply reached the client is retried once elsewhere: nothing was seen, and a read
        has no effect to duplicate."""
        logger.info("read on %s failed before any reply: retrying once", failed.endpoint)
        self.ctx.metrics.retry("reader_failed")
        conn, target = await self._backend_for(Target.READER, c, avoid=failed.endpoint)
        tracker = await self._relay(conn, data, command, c, cursor=cursor)
        return conn, target, tracker

    def _finish_statement(
        self,
        conn: BackendConnection,
        c: Classification,
        decision: RouteDecision,
        target: Target,
        started: float,
        tracker: ResponseTracker,
        command: int,
    ) -> None:
        """Count, log and learn from a statement whose reply has ended."""
        seconds = time.perf_counter() - started
        outcome = tracker.outcome
        failed = outcome is not None and bool(outcome.error_code)
        metrics = self.ctx.metrics
        metrics.statements.record(target, conn.endpoint.pod, command, c.first_keyword, seconds)
        if failed:
            metrics.error_kind("server")
        if logger.isEnabledFor(logging.DEBUG):  # first: the line's arguments cost as much
            _statement_log.debug(
                "session %d: %s %s on %s (%s) %.2f ms",
                self.connection_id,
                c.first_keyword,
                target.value,
                conn.endpoint.pod,
                decision.rule,
                seconds * 1000,
            )
        self._after(conn, c, outcome)

    async def _relay(
        self,
        conn: BackendConnection,
        payload: bytes,
        command: int,
        c: Classification | None,
        *,
        cursor: bool = False,
    ) -> ResponseTracker:
        """Send one command payload (framed here: it may need several packets) and
        stream its reply to the client."""
        if self.client.closed:
            raise ClientGone  # killed or gone while we were choosing a backend
        start_out = self.client.bytes_out
        self._active = conn
        self.client.set_backpressure_target(self._pause_backend)
        first_seq = next_seq_after(len(payload), 0)
        try:
            tracker = await conn.request(
                frame(payload, 0), command, self.client.write, cursor=cursor, first_seq=first_seq
            )
            while tracker.state.name == "LOCAL_INFILE_REQUESTED":
                await self._relay_infile(conn)
                tracker = await conn.infile_sent()
        except BackendError:
            self._relay_failed(conn, start_out)
            raise
        finally:
            self._active = None
            self.client.set_backpressure_target(None)
        return tracker

    def _relay_failed(self, conn: BackendConnection, start_out: int) -> None:
        self._backend_failed(conn)
        if self.client.bytes_out != start_out:
            raise ClientGone from None  # half a reply went out: the stream is lost

    def _client_lost(self) -> None:
        """The client hung up: a reply still streaming to it must stop now, not run to
        its end on the pod (the connection's stream position is lost anyway)."""
        conn = self._active
        if conn is not None and conn.busy:
            conn.abort("client left mid-reply")

    def _pause_backend(self, paused: bool) -> None:
        conn = self._active
        if conn is not None:
            conn.pause_reading() if paused else conn.resume_reading()

    async def _relay_infile(self, conn: BackendConnection) -> None:
        """Forward the client's LOCAL INFILE packets up to and including the empty one."""
        while True:
            packet = await self.client.next_packet()
            if packet is None:
                conn.abort("client left during LOAD DATA LOCAL INFILE")
                raise ClientGone
            conn.send_more(frame(packet.payload, packet.seq))
            if not packet.payload:
                return
            await conn.drained()

    def _after(
        self, conn: BackendConnection, c: Classification | None, outcome: ResponseOutcome | None
    ) -> None:
        """Learn from a finished reply: transaction state, pins, session state."""
        status = outcome.status if outcome is not None else None
        error_code = outcome.error_code if outcome is not None else None
        ok = not error_code
        if error_code == ErrorCode.ER_OPTION_PREVENTS_STATEMENT:
            self._misroute_signal(conn)
        if status is not None:
            self.status = status
        self._last = conn
        if self._txn is not None and not conn.in_transaction:
            self.ctx.metrics.transaction_ended(c.kind if c is not None else None)
        self._txn = conn if conn.in_transaction else None
        if c is None or not ok:
            return
        self._learn(conn, c)

    def _learn(self, conn: BackendConnection, c: Classification) -> None:
        kind = c.kind
        if c.pin is not None:
            self._pin(c.pin)
        if c.unpin is not None:
            self.state.pins.discard(c.unpin)
        if kind not in (StatementKind.READ, StatementKind.READ_ON_WRITER):
            conn.server.needs_reset = conn.server.needs_reset or _touches_session(c)
        if self._writer is not None and conn is self._writer.conn and kind not in _READS:
            self._unconfirmed_write = True
            self._wrote_on = conn
        if kind is StatementKind.SESSION:
            self._record_session_change(conn, c)

    def _record_session_change(self, conn: BackendConnection, c: Classification) -> None:
        if not c.replay or len(self.state.replay) >= MAX_REPLAYED_STATEMENTS:
            self._pin(PinCause.USER_VARIABLE)
            return
        if c.first_keyword == "use":
            self._schema_changed_on = conn  # `execute` asks the server which one
            return
        sql = bytes(self.current_sql)
        key = replay_key(sql)
        self.state.replay.pop(key, None)  # re-insert: the latest setting replays last
        self.state.replay[key] = sql
        conn.server.applied[key] = sql
        self.state.change()
        conn.server.state_version = self.state.version

    async def _learn_schema(self, conn: BackendConnection) -> None:
        """After `USE ...` succeeded: ask the server rather than parse identifiers,
        comments and quoting ourselves."""
        self._schema_changed_on = None
        rows = await conn.query(b"SELECT DATABASE()", self.ctx.config.pool.connect_timeout_seconds)
        value = rows[0][0] if rows and rows[0] else None
        self.state.schema = value.decode("utf-8", "surrogateescape") if value else None
        conn.server.schema = self.state.schema
        self.state.change()
        conn.server.state_version = self.state.version

    def _misroute_signal(self, conn: BackendConnection) -> None:
        """Error 1290 (read-only) from a pod we sent a write to: the topology is stale
        (a demoted primary) or a rule is wrong. Either way: look again, loudly."""
        logger.warning("pod %s refused a statement as read-only (1290)", conn.endpoint)
        self.ctx.report_failure(conn.endpoint)

    # -- other commands -------------------------------------------------------------

    async def _on_ping(self, packet: Packet) -> None:
        if self.ctx.draining:
            self._send_error(ErrorCode.ER_SERVER_SHUTDOWN, "rwproxy is shutting down")
            return
        self.send_ok()

    async def _on_init_db(self, packet: Packet) -> None:
        schema = packet.payload[1:]
        conn, _ = await self._backend_for(self._session_target(), None)
        tracker = await self._relay(conn, packet.payload, Command.COM_INIT_DB, None)
        self._after(conn, None, tracker.outcome)
        if tracker.outcome is not None and not tracker.outcome.error_code:
            self.state.schema = schema.decode("utf-8", "surrogateescape")
            self.state.change()
            conn.server.schema = self.state.schema
            conn.server.state_version = self.state.version

    async def _on_reset_connection(self, packet: Packet) -> None:
        self._release_all()
        self.state = SessionState(schema=self.state.schema)
        self.status = _AUTOCOMMIT
        self.statements.reset()
        self.send_ok()

    async def _on_read_command(self, packet: Packet) -> None:
        """COM_FIELD_LIST is routed like a plain read (transactions, pins, mode)."""
        decision = route(FIELD_LIST, self.view())
        conn, _ = await self._backend_for(decision.target, None)
        tracker = await self._relay(conn, packet.payload, packet.payload[0], None)
        self._after(conn, None, tracker.outcome)

    async def _on_writer_command(self, packet: Packet) -> None:
        target = Target.TRANSACTION if self._txn is not None else Target.WRITER
        conn, _ = await self._backend_for(target, None)
        tracker = await self._relay(conn, packet.payload, packet.payload[0], None)
        self._after(conn, None, tracker.outcome)

    async def _on_set_option(self, packet: Packet) -> None:
        # Multi-statement mode is part of the wire flavour of a pooled connection;
        # changing it mid-session is rare, so the session stays on the writer.
        self._pin(PinCause.USER_VARIABLE)
        await self._on_writer_command(packet)
        if self._last is not None:
            self._last.server.needs_reset = True

    async def _on_process_kill(self, packet: Packet) -> None:
        target_id = int.from_bytes(packet.payload[1:5], "little")
        await self.ctx.kill(self, target_id, query_only=False)
        self.send_ok()

    # -- choosing and preparing backend connections ---------------------------------

    def _session_target(self) -> Target:
        if self._txn is not None:
            return Target.TRANSACTION
        return Target.WRITER

    async def _backend_for(
        self, target: Target, c: Classification | None, avoid: Endpoint | None = None
    ) -> tuple[BackendConnection, Target]:
        if self._state_lost is not None:
            self._lose_session(self._state_lost)
        if target is Target.TRANSACTION and self._txn is not None:
            if self._txn.broken:  # it died between two statements of the transaction
                self._lose_session("the connection holding this session's transaction")
            return self._txn, target
        if target is Target.LAST and self._last is not None and not self._last.broken:
            return self._last, target
        if target is Target.READER:
            conn = await self._reader_conn(avoid)
            if conn is not None:
                return conn, Target.READER
        return await self._writer_conn(), Target.WRITER

    async def _writer_conn(self) -> BackendConnection:
        endpoint = self.ctx.current_topology.writer
        held = self._writer
        if held is not None and (held.conn.broken or held.conn.endpoint != endpoint):
            if self.state.pins:
                causes = ", ".join(sorted(p.value for p in self.state.pins))
                self._lose_session(f"the writer connection holding this session's {causes}")
            self._release(held)
            held = self._writer = None
        if held is None:
            held = self._writer = await self._acquire_writer()
        await self._sync(held.conn)
        return held.conn

    async def _acquire_writer(self) -> Held:
        """A connection to the writer, waiting up to `writer_wait_timeout` for one.

        For a moment after a primary goes away the topology still names it (its health
        check has not failed yet), and connecting to it fails at once. Nothing of the
        client's statement has been sent, so trying again cannot apply it twice: keep
        trying, the topology refreshed by each failure, until a writer answers or the
        wait is over, as when the topology has no writer at all.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ctx.config.routing.writer_wait_timeout_seconds
        pause = _WRITER_RETRY_FIRST_PAUSE
        while True:
            endpoint = self.ctx.current_topology.writer
            if endpoint is None:
                endpoint = await self.ctx.wait_for_writer(deadline - loop.time())
            try:
                return await self._acquire(endpoint)
            except BackendError as exc:
                if not _worth_retrying(exc) or loop.time() + pause >= deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, _WRITER_RETRY_MAX_PAUSE)

    async def _reader_conn(self, avoid: Endpoint | None = None) -> BackendConnection | None:
        readers = tuple(r for r in self.ctx.current_topology.readers if r != avoid)
        held = self._reader
        if held is not None and (held.conn.broken or held.conn.endpoint not in readers):
            self._release(held)
            held = self._reader = None
        if held is None:
            endpoint = self.ctx.pick_reader(readers)
            if endpoint is None:
                return None
            try:
                held = self._reader = await self._acquire(endpoint)
            except BackendError:
                return None
        try:
            await self._sync(held.conn)
        except (BackendError, TimeoutError):
            # Like a failed acquire: nothing of the read was sent, another server can
            # answer it (the connection is discarded and the pod reported).
            self._backend_failed(held.conn)
            return None
        if not await self._read_your_writes(held.conn):
            return None
        return held.conn

    async def _acquire(self, endpoint: Endpoint) -> Held:
        assert self.key is not None
        pool = self.ctx.pools.pool(endpoint, self.key)
        started = time.perf_counter()
        try:
            conn = await pool.acquire()
            while self.state.schema is None and conn.server.schema is not None:
                # MySQL has no way to un-select a database, and a reset keeps it: a
                # session without a schema must not inherit another session's.
                pool.discard(conn, "carries another session's default schema")
                conn = await pool.acquire()
        except BackendError:
            self.ctx.report_failure(endpoint)
            raise
        self.ctx.metrics.pool_waited(endpoint.pod, time.perf_counter() - started)
        return Held(pool, conn)

    async def _sync(self, conn: BackendConnection) -> None:
        """Bring `conn` to this session's state: schema and replayed statements."""
        server = conn.server
        if server.owner is self and server.state_version == self.state.version:
            return
        timeout = self.ctx.config.pool.connect_timeout_seconds
        if self.state.schema is not None and server.schema != self.state.schema:
            init_db = frame(cmd.build_init_db(self.state.schema.encode()), 0)
            await self._internal(conn, init_db, Command.COM_INIT_DB)
            server.schema = self.state.schema
        if server.owner is not self:
            server.applied.clear()
        for key, sql in self.state.replay.items():
            if server.applied.get(key) != sql:
                server.needs_reset = True
                await conn.query(sql, timeout)
                server.applied[key] = sql
        server.owner = self
        server.state_version = self.state.version

    async def _internal(self, conn: BackendConnection, data: bytes, command: int) -> None:
        timeout = self.ctx.config.pool.connect_timeout_seconds
        tracker = await conn.wait_reply(data, command, timeout)
        payload = conn.take_collected()
        outcome = tracker.outcome
        if outcome is not None and outcome.error_code:
            error = packets.parse_err(outcome.payload, conn.capabilities)
            raise MySQLError(error.code, error.message, error.sqlstate)
        del payload

    async def _read_your_writes(self, reader: BackendConnection) -> bool:
        """Wait until `reader` has this session's last write; False: use the writer."""
        if not self._unconfirmed_write or self.ctx.config.routing.read_your_writes == "off":
            return True
        writer = self._writer.conn if self._writer is not None else None
        if writer is None or writer.broken:
            return False
        # The write's own session knows its GTID; once that connection is gone (released
        # by COM_RESET_CONNECTION, reclaimed by the pool), only the writer's whole
        # position is sure to include it.
        gtid = await self.ctx.ryw.last_write_position(writer, own=writer is self._wrote_on)
        if not gtid:
            self._unconfirmed_write = False
            return True
        if reader.server.confirmed_gtid == gtid:
            return True
        started = time.perf_counter()
        caught_up = await self.ctx.ryw.wait_on_replica(reader, gtid)
        if caught_up:
            reader.server.confirmed_gtid = gtid
        self.ctx.metrics.ryw_wait(caught_up, time.perf_counter() - started)
        return caught_up

    # -- failures and release --------------------------------------------------------

    def _unhold(self, conn: BackendConnection) -> Held | None:
        """Stop holding `conn` in whichever role it had; its holder, if it had one."""
        if self._wrote_on is conn:
            self._wrote_on = None
        for held in (self._writer, self._reader):
            if held is not None and held.conn is conn:
                if held is self._writer:
                    self._writer = None
                else:
                    self._reader = None
                return held
        return None

    def _lose_session(self, what: str) -> None:
        """State the client relies on died with a backend connection (an open
        transaction, a temporary table, a lock...). Carrying on elsewhere would commit
        half a transaction or read without that state, so the client gets one clear
        error and its connection is closed, as if it had been talking to that server."""
        self._send_error(
            ErrorCode.CR_SERVER_LOST,
            f"rwproxy: lost {what}; the transaction (if any) was rolled back",
        )
        raise ClientGone

    def _backend_failed(self, conn: BackendConnection) -> None:
        was_writer = self._writer is not None and self._writer.conn is conn
        held = self._unhold(conn)
        if held is not None:
            held.pool.discard(conn, "failed")
        if self._txn is conn or (self.state.pins and was_writer):
            self._state_lost = "the connection holding this session's transaction or pinned state"
        if self._txn is conn:
            self._txn = None
            self.ctx.metrics.transaction_aborted()
        if self._last is conn:
            self._last = None
        if not self.client.closed:  # a client hanging up says nothing about the pod
            self.ctx.pools.suspect_endpoint(conn.endpoint)
            self.ctx.report_failure(conn.endpoint)

    def _release(self, held: Held) -> None:
        conn = held.conn
        if conn.busy or conn.broken:
            held.pool.discard(conn, "released while busy")
        else:
            if conn.server.owner is self and self.state.version > 0:
                conn.server.needs_reset = True
            held.pool.release(conn)
        if self._txn is conn:
            self._txn = None
        if self._last is conn:
            self._last = None
        if self._wrote_on is conn:  # back in the pool, its session's GTID is not ours
            self._wrote_on = None

    def _release_all(self) -> None:
        if self._txn is not None:
            self.ctx.metrics.transaction_aborted()
        for held in (self._writer, self._reader):
            if held is not None:
                self._release(held)
        self._writer = self._reader = None
        self._txn = None
        self._last = None
        # _unconfirmed_write stays: after COM_RESET_CONNECTION the client's next read must
        # still see what it wrote before.

    def can_give_back(self, pool: Pool) -> bool:
        """Idle between statements, with a connection from `pool` that nothing ties to it
        (no transaction, no pinned state): see ProxyContext.reclaim_idle."""
        if self._in_command or self._fast is not None or self._txn is not None:
            return False
        if self.state.pins or self._active is not None or self._finished:
            return False
        return any(
            h is not None and h.pool is pool and not h.conn.busy
            for h in (self._writer, self._reader)
        )

    def give_back(self, pool: Pool) -> None:
        for held in (self._writer, self._reader):
            if held is not None and held.pool is pool:
                self._unhold(held.conn)
                self._release(held)
                return

    def _pin(self, cause: PinCause) -> None:
        if cause not in self.state.pins:
            self.state.pins.add(cause)
            self.ctx.metrics.pin(cause)

    @property
    def last_endpoint(self) -> Endpoint | None:
        """Where the previous statement ran (SHOW RWPROXY ROUTE's answer for Target.LAST)."""
        last = self._last
        return last.endpoint if last is not None and not last.broken else None

    @property
    def busy(self) -> bool:
        """A command is running or a transaction is open: draining must wait for it."""
        return self._in_command or self._active is not None or self._txn is not None

    def held_connections(self) -> list[BackendConnection]:
        return [h.conn for h in (self._writer, self._reader) if h is not None]

    # -- replies the proxy makes itself ---------------------------------------------

    def send_ok(self, seq: int = 1) -> None:
        ok = packets.OkPacket(0, 0, ServerStatus(self.status), 0)
        self.client.write(frame(packets.build_ok(ok, self.capabilities), seq))

    def _send_error(
        self, code: int, message: str, *, sqlstate: str | None = None, seq: int = 1
    ) -> None:
        self.ctx.metrics.error(code)
        payload = packets.build_err(code, message, sqlstate, self.capabilities)
        self.client.write(frame(payload, seq))


@final
class _FastStatement:
    """A statement in flight on the fast path. (A plain class: one is built per statement,
    and compiled only a plain class gets a native constructor; see `Packet`.)"""

    __slots__ = ("bytes_out", "c", "conn", "decision", "packet", "started")

    def __init__(
        self,
        packet: Packet,
        c: Classification,
        decision: RouteDecision,
        conn: BackendConnection,
        started: float,
        bytes_out: int,  # the client's byte count when it was sent: did any reply go out?
    ) -> None:
        self.packet: Final = packet
        self.c: Final = c
        self.decision: Final = decision
        self.conn: Final = conn
        self.started: Final = started
        self.bytes_out: Final = bytes_out


# Session.route's memory: (id(classification), session state) -> (classification, decision).
_decisions: dict[tuple[object, ...], tuple[Classification, RouteDecision]] = {}
_DECISIONS_KEPT = 4096

_COM_QUERY = int(Command.COM_QUERY)
_FAST_MAX_PAYLOAD = 0xFFFFFF  # one packet: longer statements come in several frames
# First keywords the command loop handles itself: statements the proxy answers (SHOW
# RWPROXY, KILL), that need a question after them (USE) or more client packets (LOAD DATA
# LOCAL INFILE).
_LOOP_KEYWORDS = frozenset({"show", "kill", "use", "load"})


# Statements after which a replica read needs no read-your-writes check. Cautious
# reads (READ_ON_WRITER) are not among them: a stored function called from a SELECT
# may have written.
_READS = (StatementKind.READ, StatementKind.SESSION)

_DML = frozenset({"insert", "update", "delete", "replace", "begin", "start", "commit", "rollback"})


_WRITER_RETRY_FIRST_PAUSE = 0.02
_WRITER_RETRY_MAX_PAUSE = 0.5
# Errors a pod answers a login with while it goes away or is overwhelmed: transient.
_TRANSIENT_LOGIN_ERRORS = frozenset({ErrorCode.ER_CON_COUNT_ERROR, ErrorCode.ER_SERVER_SHUTDOWN})


# The command loop's handlers by command byte: names, not bound methods, so that a session
# (one per connection) does not build a dict of them.
_HANDLERS: Final[dict[int, str]] = {
    Command.COM_QUERY: "_on_query",
    Command.COM_PING: "_on_ping",
    Command.COM_INIT_DB: "_on_init_db",
    Command.COM_RESET_CONNECTION: "_on_reset_connection",
    Command.COM_FIELD_LIST: "_on_read_command",
    Command.COM_STATISTICS: "_on_writer_command",
    Command.COM_SET_OPTION: "_on_set_option",
    Command.COM_PROCESS_KILL: "_on_process_kill",
    Command.COM_CHANGE_USER: "_on_change_user",
}


def _worth_retrying(exc: BackendError) -> bool:
    """A failed connect or a going-away pod may be followed by a writer that answers;
    a refused login (wrong password on the pod) will not."""
    return exc.error is None or exc.error.code in _TRANSIENT_LOGIN_ERRORS


def _touches_session(c: Classification) -> bool:
    """Whether a successful statement may leave state a reset must clear."""
    return c.pin is not None or c.kind is StatementKind.SESSION or c.first_keyword not in _DML


_SINGLE_ASSIGNMENT = re.compile(
    rb"\s*SET\s+(?:SESSION\s+|LOCAL\s+)?(?:@@(?:SESSION\.|LOCAL\.)?)?(@?[A-Za-z0-9_$]+)\s*:?=[^,;]*;?\s*\Z",
    re.IGNORECASE | re.DOTALL,
)
_CHARSET_STATEMENT = re.compile(rb"\s*SET\s+(NAMES|CHARACTER\s+SET|CHARSET)\b", re.IGNORECASE)


def replay_key(sql: bytes) -> bytes:
    """What a replayed statement sets, so a later setting of the same thing replaces it.

    `SET autocommit=0` then `SET autocommit=1` keep one entry; so do `SET NAMES` and
    `SET CHARACTER SET`. Anything more complex is its own key (its exact text).
    """
    match = _SINGLE_ASSIGNMENT.match(sql)
    if match is not None:
        return match.group(1).lower()
    if _CHARSET_STATEMENT.match(sql) is not None:
        return b"names"
    return sql


def _unknown_command_text(code: int) -> str:
    try:
        name = Command(code).name
    except ValueError:
        name = f"0x{code:02x}"
    if code in (Command.COM_BINLOG_DUMP, Command.COM_BINLOG_DUMP_GTID, Command.COM_REGISTER_SLAVE):
        return f"rwproxy: the replication protocol ({name}) is not supported through the proxy"
    return f"rwproxy: unsupported command {name}"
