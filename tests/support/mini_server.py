"""A minimal MySQL server built from `ServerHandshake`, for tests.

It proves the sans-I/O handshake against real client libraries (PyMySQL, aiomysql, the
`mariadb` CLI): an asyncio server that logs clients in with `ServerHandshake`, then answers
just enough of the command phase for them to run `SELECT 1` and leave:

* COM_QUERY `SELECT <x>` / `SHOW ...`: a one-column, one-row text result set: a BIGINT `<x>`
  when `<x>` is an integer literal, else the string "mini";
* any other COM_QUERY (SET, USE, ...): an OK (`SET autocommit = 0/1` also flips
  SERVER_STATUS_AUTOCOMMIT, which aiomysql checks);
* COM_PING, COM_INIT_DB: OK; COM_QUIT: close; anything else: ERR 1047.

Every login outcome is kept in `events` (Authenticated / Rejected) so tests can check what
the proxy would have learnt, e.g. the recovered SHA1(password) of a hash-only user.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from proxy.protocol.auth import NATIVE_PASSWORD, StoredCredential
from proxy.protocol.constants import (
    Capability,
    CharacterSet,
    ColumnType,
    Command,
    ErrorCode,
    ServerStatus,
)
from proxy.protocol.framing import Packet, PacketFramer, frame
from proxy.protocol.handshake import Authenticated, Rejected, ServerEvent, ServerHandshake
from proxy.protocol.packets import (
    OkPacket,
    build_column_definition,
    build_err,
    build_ok,
    build_result_set,
)

SERVER_VERSION = "5.5.5-10.11.0-rwproxy-mini"
_SELECT = re.compile(rb"^\s*select\s+(.*?)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_NOT_NULL_BINARY = 0x0001 | 0x0080  # column flags, as the server sets them for SELECT 1
_AUTOCOMMIT = re.compile(rb"^\s*set\s+(?:@@session\.)?autocommit\s*=\s*(\w+)", re.IGNORECASE)


class MiniServer:
    """`async with MiniServer(users) as server:` ... connect to 127.0.0.1:`server.port`."""

    def __init__(
        self,
        users: Mapping[str, StoredCredential],
        *,
        default_auth_plugin: str = NATIVE_PASSWORD,
        rsa_key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        self.users = dict(users)
        self.default_auth_plugin = default_auth_plugin
        self.rsa_key = rsa_key
        self.events: list[ServerEvent] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._next_id = 1

    async def __aenter__(self) -> MiniServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def logins(self) -> list[Authenticated]:
        return [e for e in self.events if isinstance(e, Authenticated)]

    @property
    def rejections(self) -> list[Rejected]:
        return [e for e in self.events if isinstance(e, Rejected)]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            login = await self._login(reader, writer)
            if login is not None:
                session = _Session(login, reader, writer)
                await session.run()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _handshake(self, peer: Any) -> ServerHandshake:
        self._next_id += 1
        return ServerHandshake(
            SERVER_VERSION,
            self._next_id,
            self.users.get,
            default_auth_plugin=self.default_auth_plugin,
            rsa_key=self.rsa_key,
            client_host=peer[0] if peer else "localhost",
        )

    async def _login(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[Authenticated, bytes] | None:
        handshake = self._handshake(writer.get_extra_info("peername"))
        writer.write(handshake.data_to_send())
        while True:
            data = await reader.read(65536)
            if not data:
                return None
            events = handshake.receive_data(data)
            writer.write(handshake.data_to_send())
            await writer.drain()
            self.events += events
            for event in events:
                if isinstance(event, Authenticated):
                    return event, handshake.trailing_data
                if isinstance(event, Rejected):
                    return None


class _Session:
    """The command phase: one reply per command, sequence ids restarting at 0."""

    def __init__(
        self,
        login: tuple[Authenticated, bytes],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.auth, self.pending = login
        self.caps: Capability = self.auth.capabilities
        self.status = ServerStatus.SERVER_STATUS_AUTOCOMMIT
        self.reader = reader
        self.writer = writer
        self.framer = PacketFramer()

    async def run(self) -> None:
        packets = self.framer.feed(self.pending)
        while True:
            for packet in packets:
                if not self._answer(packet):
                    await self.writer.drain()
                    return
            await self.writer.drain()
            data = await self.reader.read(65536)
            if not data:
                return
            packets = self.framer.feed(data)

    def _answer(self, packet: Packet) -> bool:
        command, body = packet.payload[0], packet.payload[1:]
        if command == Command.COM_QUIT:
            return False
        if command == Command.COM_QUERY:
            self._send(packet.next_seq, *self._query(body))
        elif command in (Command.COM_PING, Command.COM_INIT_DB):
            self._send(packet.next_seq, self._ok())
        else:
            error = build_err(ErrorCode.ER_UNKNOWN_COM_ERROR, "Unknown command", caps=self.caps)
            self._send(packet.next_seq, error)
        return True

    def _query(self, sql: bytes) -> list[bytes]:
        autocommit = _AUTOCOMMIT.match(sql)
        if autocommit is not None:
            on = autocommit.group(1).lower() in (b"1", b"on", b"true")
            flag = ServerStatus.SERVER_STATUS_AUTOCOMMIT
            self.status = self.status | flag if on else self.status & ~flag
        select = _SELECT.match(sql)
        if select is None and not sql.lstrip().lower().startswith(b"show"):
            return [self._ok()]
        expression = select.group(1).decode() if select else "Value"
        if not expression.isdigit():
            return build_result_set([expression], [["mini"]], self.caps, self.status)
        column = build_column_definition(
            expression,
            ColumnType.MYSQL_TYPE_LONGLONG,
            character_set=CharacterSet.BINARY,
            column_length=len(expression),
            flags=_NOT_NULL_BINARY,
            decimals=0,
        )
        return build_result_set([column], [[int(expression)]], self.caps, self.status)

    def _ok(self) -> bytes:
        return build_ok(OkPacket(0, 0, self.status, 0), self.caps)

    def _send(self, seq: int, *payloads: bytes) -> None:
        self.writer.write(b"".join(frame(p, (seq + i) & 0xFF) for i, p in enumerate(payloads)))
