"""Server-side prepared statements (COM_STMT_*) across several backend connections.

Theory of operation
-------------------
The client sees one statement id per COM_STMT_PREPARE, chosen by the proxy. The
statement is classified once, at prepare time, and each COM_STMT_EXECUTE is routed
like a query of that class *in the session's state at execute time*: a SELECT
prepared outside a transaction and executed inside one runs on the writer.

A statement is prepared on a backend connection lazily, the first time it executes
there; the backend's own id is kept on the connection (`ServerSession.prepared`,
keyed by SQL text, cleared by a connection reset), and the id in each COM_STMT_*
packet is rewritten on the way through. The first EXECUTE on a connection must bind
parameter types: when the client relies on types it bound earlier
(new_params_bound_flag = 0), the proxy inserts the types it remembered.

Long data (COM_STMT_SEND_LONG_DATA) and open cursors tie the statement to the
connection that holds them until the EXECUTE / the last FETCH / COM_STMT_RESET.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from proxy.backend import BackendConnection, BackendPrepared
from proxy.protocol import commands as cmd
from proxy.protocol.constants import Command, ErrorCode, ServerStatus
from proxy.protocol.errors import MySQLError
from proxy.protocol.framing import Packet, frame
from proxy.routing.classify import Classification, classify

if TYPE_CHECKING:
    from proxy.session import Session

CURSOR_TYPE_READ_ONLY = 0x01


@dataclass(slots=True)
class ClientStatement:
    """A statement as the client knows it."""

    client_id: int
    sql: bytes
    classification: Classification
    num_params: int
    param_types: bytes | None = None
    bound_to: BackendConnection | None = None


_HANDLERS: Final[dict[int, str]] = {
    Command.COM_STMT_PREPARE: "_on_prepare",
    Command.COM_STMT_EXECUTE: "_on_execute",
    Command.COM_STMT_SEND_LONG_DATA: "_on_long_data",
    Command.COM_STMT_CLOSE: "_on_close",
    Command.COM_STMT_RESET: "_on_reset",
    Command.COM_STMT_FETCH: "_on_fetch",
}


class PreparedStatements:
    """The COM_STMT_* handlers of one session."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._statements: dict[int, ClientStatement] = {}
        self._next_id = 1

    def handler_for(self, code: int) -> Callable[[Packet], Awaitable[None]] | None:
        name = _HANDLERS.get(code)
        return getattr(self, name) if name else None

    def reset(self) -> None:
        self._statements.clear()

    # -- handlers -------------------------------------------------------------------

    async def _on_prepare(self, packet: Packet) -> None:
        session = self.session
        sql = packet.payload[1:]
        c = classify(sql)
        conn, _ = await session._backend_for(session.route(c).target, c)
        prepared, reply = await _prepare_on(conn, sql)
        if prepared is None:
            session.client.write(reply)
            return
        statement = ClientStatement(self._next_id, sql, c, prepared.num_params)
        self._statements[statement.client_id] = statement
        self._next_id += 1
        # The reply's first packet is the prepare OK: its bytes 5..8 are the id.
        session.client.write(reply[:5] + statement.client_id.to_bytes(4, "little") + reply[9:])

    async def _on_execute(self, packet: Packet) -> None:
        statement = self._lookup(packet)
        session = self.session
        conn = statement.bound_to
        if conn is None or conn.broken:
            decision = session.route(statement.classification)
            conn, _ = await session._backend_for(decision.target, statement.classification)
        payload = await self._for_backend(conn, statement, packet.payload)
        cursor = (
            bool(packet.payload[5] & CURSOR_TYPE_READ_ONLY) if len(packet.payload) > 5 else False
        )
        tracker = await session._relay(
            conn,
            payload,
            Command.COM_STMT_EXECUTE,
            statement.classification,
            cursor=cursor,
        )
        session._after(conn, statement.classification, tracker.outcome)
        outcome = tracker.outcome
        has_cursor = outcome is not None and _has_cursor(outcome.status)
        statement.bound_to = conn if has_cursor else None

    async def _on_long_data(self, packet: Packet) -> None:
        statement = self._lookup(packet, reply_errors=False)
        session = self.session
        conn = statement.bound_to
        if conn is None or conn.broken:
            decision = session.route(statement.classification)
            conn, _ = await session._backend_for(decision.target, statement.classification)
        backend = await _ensure_prepared(conn, statement)
        statement.bound_to = conn
        data = cmd.rewrite_statement_id(packet.payload, backend.statement_id)
        await conn.request(frame(data, 0), Command.COM_STMT_SEND_LONG_DATA)

    async def _on_close(self, packet: Packet) -> None:
        statement = self._statements.pop(_statement_id(packet), None)
        if statement is None:
            return  # COM_STMT_CLOSE has no reply, not even an error
        if any(s.sql == statement.sql for s in self._statements.values()):
            return
        for conn in self.session.held_connections():
            backend = conn.server.prepared.pop(statement.sql, None)
            if backend is not None and not conn.busy and not conn.broken:
                await conn.request(
                    frame(cmd.build_stmt_close(backend.statement_id), 0), Command.COM_STMT_CLOSE
                )

    async def _on_reset(self, packet: Packet) -> None:
        statement = self._lookup(packet)
        conn = statement.bound_to
        statement.bound_to = None
        backend = conn.server.prepared.get(statement.sql) if conn is not None else None
        if conn is None or backend is None or conn.broken:
            self.session.send_ok()
            return
        data = cmd.rewrite_statement_id(packet.payload, backend.statement_id)
        tracker = await self.session._relay(conn, data, Command.COM_STMT_RESET, None)
        self.session._after(conn, None, tracker.outcome)

    async def _on_fetch(self, packet: Packet) -> None:
        statement = self._lookup(packet)
        conn = statement.bound_to
        backend = conn.server.prepared.get(statement.sql) if conn is not None else None
        if conn is None or backend is None:
            raise MySQLError(ErrorCode.ER_UNKNOWN_STMT_HANDLER, "no open cursor for statement")
        data = cmd.rewrite_statement_id(packet.payload, backend.statement_id)
        tracker = await self.session._relay(conn, data, Command.COM_STMT_FETCH, None)
        self.session._after(conn, None, tracker.outcome)
        outcome = tracker.outcome
        if outcome is None or not _has_cursor(outcome.status):
            statement.bound_to = None

    # -- helpers ----------------------------------------------------------------------

    def _lookup(self, packet: Packet, *, reply_errors: bool = True) -> ClientStatement:
        statement_id = _statement_id(packet)
        statement = self._statements.get(statement_id)
        if statement is None:
            raise MySQLError(
                ErrorCode.ER_UNKNOWN_STMT_HANDLER,
                f"Unknown prepared statement handler ({statement_id}) given to mysqld_stmt",
            )
        return statement

    async def _for_backend(
        self, conn: BackendConnection, statement: ClientStatement, payload: bytes
    ) -> bytes:
        """The EXECUTE payload as `conn` must see it: its id, and bound types."""
        backend = await _ensure_prepared(conn, statement)
        params = cmd.parse_stmt_execute_params(payload, statement.num_params)
        if params.new_params_bound:
            statement.param_types = params.param_types
        elif statement.num_params and not backend.types_bound:
            if statement.param_types is None:
                raise MySQLError(ErrorCode.ER_MALFORMED_PACKET, "parameter types were never bound")
            payload = cmd.with_param_types(payload, statement.num_params, statement.param_types)
        backend.types_bound = True
        return cmd.rewrite_statement_id(payload, backend.statement_id)


def _has_cursor(status: int | None) -> bool:
    return status is not None and bool(status & ServerStatus.SERVER_STATUS_CURSOR_EXISTS)


def _statement_id(packet: Packet) -> int:
    if len(packet.payload) < 5:
        raise MySQLError(ErrorCode.ER_MALFORMED_PACKET, "statement command too short")
    return int.from_bytes(packet.payload[1:5], "little")


async def _prepare_on(conn: BackendConnection, sql: bytes) -> tuple[BackendPrepared | None, bytes]:
    """Prepare `sql` on `conn`; returns the backend statement (None on ERR) and the reply."""
    tracker = await conn.request(frame(cmd.build_stmt_prepare(sql), 0), Command.COM_STMT_PREPARE)
    reply = conn.take_collected()
    ok = tracker.prepare_ok
    if ok is None:
        return None, reply
    prepared = BackendPrepared(ok.statement_id, ok.num_params, ok.num_columns)
    conn.server.prepared[sql] = prepared
    conn.server.needs_reset = True
    return prepared, reply


async def _ensure_prepared(conn: BackendConnection, statement: ClientStatement) -> BackendPrepared:
    backend = conn.server.prepared.get(statement.sql)
    if backend is not None:
        return backend
    backend, _reply = await _prepare_on(conn, statement.sql)
    if backend is None:
        raise MySQLError(ErrorCode.ER_UNKNOWN_ERROR, f"re-preparing on {conn.endpoint.pod} failed")
    return backend
