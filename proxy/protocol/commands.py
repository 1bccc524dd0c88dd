"""Client command-phase packets: payload bytes -> typed commands, plus the builders the proxy needs.

https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase.html

Theory of operation
-------------------
After the handshake every client packet is one command: its first payload byte is the
`Command` code, the rest are that command's fields. `parse_command(payload, caps)` looks
the code up in `_PARSERS` and returns a frozen dataclass; codes we do not know become
`UnknownCommand(code)` so the session can answer ER_UNKNOWN_COM_ERROR instead of dying.
Replication commands are parsed too (`ReplicationCommand`) so the session can reject them
with `REPLICATION_NOT_SUPPORTED` rather than a generic error.

`COM_STMT_EXECUTE` is parsed in two steps because its tail cannot be read without the
statement's parameter count, which only the session knows (from the PREPARE reply):
`parse_command` reads the fixed head (id, flags, iteration count) and
`parse_stmt_execute_params(payload, num_params)` reads the null bitmap, the
new-params-bound flag and the types, and says where the values start. Values themselves
are forwarded as opaque bytes.

Statement ids are per backend connection, so the proxy rewrites them in place:
`rewrite_statement_id` patches bytes 1..4 of any statement command, and `with_param_types`
turns an EXECUTE that relies on types bound by an earlier EXECUTE (flag 0) into a
self-contained one (flag 1 + types) for a backend that has just prepared the statement.

All parsing goes through `codec`, so a short payload raises `RemoteProtocolError`, never
`IndexError`. Builders return payloads; framing (`framing.frame`) is the caller's job.

Keep `_PARSERS` in sync with `Command`, and `_STATEMENT_ID_COMMANDS` with the commands
whose bytes 1..4 are a statement id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from proxy.protocol import codec
from proxy.protocol.constants import Capability, ColumnType, Command, CursorType, SetOption
from proxy.protocol.errors import LocalProtocolError, RemoteProtocolError

REPLICATION_NOT_SUPPORTED = "replication protocol is not supported through rwproxy"

BINLOG_THROUGH_GTID = 0x04
"""COM_BINLOG_DUMP_GTID flag: the GTID set (`data`) follows the position."""

_NO_CAPS = Capability(0)

_CURSOR_FLAGS = (
    CursorType.CURSOR_TYPE_READ_ONLY
    | CursorType.CURSOR_TYPE_FOR_UPDATE
    | CursorType.CURSOR_TYPE_SCROLLABLE
)


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class ComQuery:
    """COM_QUERY. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query.html

    `attribute_names`/`attribute_types` are the query attributes sent before the SQL when
    CLIENT_QUERY_ATTRIBUTES was negotiated (their values are skipped, not kept).
    """

    code: ClassVar[Command] = Command.COM_QUERY
    sql: bytes
    attribute_names: tuple[bytes, ...] = ()
    attribute_types: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ComInitDb:
    """COM_INIT_DB. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_init_db.html"""

    code: ClassVar[Command] = Command.COM_INIT_DB
    schema: bytes


@dataclass(frozen=True, slots=True)
class ComPing:
    """COM_PING. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_ping.html"""

    code: ClassVar[Command] = Command.COM_PING


@dataclass(frozen=True, slots=True)
class ComQuit:
    """COM_QUIT. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_quit.html"""

    code: ClassVar[Command] = Command.COM_QUIT


@dataclass(frozen=True, slots=True)
class ComFieldList:
    """COM_FIELD_LIST. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_field_list.html"""

    code: ClassVar[Command] = Command.COM_FIELD_LIST
    table: bytes
    wildcard: bytes = b""


@dataclass(frozen=True, slots=True)
class ComStatistics:
    """COM_STATISTICS. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_statistics.html"""

    code: ClassVar[Command] = Command.COM_STATISTICS


@dataclass(frozen=True, slots=True)
class ComProcessKill:
    """COM_PROCESS_KILL. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_process_kill.html"""

    code: ClassVar[Command] = Command.COM_PROCESS_KILL
    connection_id: int


@dataclass(frozen=True, slots=True)
class ComChangeUser:
    """COM_CHANGE_USER. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_change_user.html

    The whole payload is kept: its fields depend on capabilities and auth plugins, and the
    handshake module parses them.
    """

    code: ClassVar[Command] = Command.COM_CHANGE_USER
    payload: bytes


@dataclass(frozen=True, slots=True)
class ComResetConnection:
    """COM_RESET_CONNECTION. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_reset_connection.html"""

    code: ClassVar[Command] = Command.COM_RESET_CONNECTION


@dataclass(frozen=True, slots=True)
class ComSetOption:
    """COM_SET_OPTION. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_set_option.html

    `option` is kept as sent; the server answers ER_UNKNOWN_COM_ERROR to values outside
    `SetOption`, and the session may want to do the same.
    """

    code: ClassVar[Command] = Command.COM_SET_OPTION
    option: int

    @property
    def multi_statements(self) -> bool | None:
        """True/False for MULTI_STATEMENTS_ON/OFF, None for an unknown option."""
        if self.option == SetOption.MYSQL_OPTION_MULTI_STATEMENTS_ON:
            return True
        if self.option == SetOption.MYSQL_OPTION_MULTI_STATEMENTS_OFF:
            return False
        return None


@dataclass(frozen=True, slots=True)
class ComStmtPrepare:
    """COM_STMT_PREPARE. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_prepare.html"""

    code: ClassVar[Command] = Command.COM_STMT_PREPARE
    sql: bytes


@dataclass(frozen=True, slots=True)
class ComStmtExecute:
    """COM_STMT_EXECUTE (fixed head). https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_execute.html

    The parameter part needs the statement's parameter count: `parse_stmt_execute_params`.
    """

    code: ClassVar[Command] = Command.COM_STMT_EXECUTE
    statement_id: int
    flags: CursorType
    iteration_count: int

    @property
    def cursor(self) -> bool:
        """The client asked for a cursor: the reply stops after the column definitions."""
        return bool(self.flags & _CURSOR_FLAGS)


@dataclass(frozen=True, slots=True)
class StmtExecuteParams:
    """The parameter block of a COM_STMT_EXECUTE, up to (not including) the values.

    `param_types` is the raw `int<2>` type-and-flag pairs (2 bytes per parameter), empty
    when `new_params_bound` is False (the server reuses the types of the previous EXECUTE).
    `param_names` is only filled with CLIENT_QUERY_ATTRIBUTES.
    """

    num_params: int
    null_bitmap: bytes
    new_params_bound: bool
    param_types: bytes
    values_offset: int
    param_names: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class ComStmtSendLongData:
    """COM_STMT_SEND_LONG_DATA. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_send_long_data.html

    `data` is a view into the payload: long data can be large, and it is only forwarded.
    """

    code: ClassVar[Command] = Command.COM_STMT_SEND_LONG_DATA
    statement_id: int
    param_id: int
    data: memoryview


@dataclass(frozen=True, slots=True)
class ComStmtClose:
    """COM_STMT_CLOSE. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_close.html"""

    code: ClassVar[Command] = Command.COM_STMT_CLOSE
    statement_id: int


@dataclass(frozen=True, slots=True)
class ComStmtReset:
    """COM_STMT_RESET. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_reset.html"""

    code: ClassVar[Command] = Command.COM_STMT_RESET
    statement_id: int


@dataclass(frozen=True, slots=True)
class ComStmtFetch:
    """COM_STMT_FETCH. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_fetch.html"""

    code: ClassVar[Command] = Command.COM_STMT_FETCH
    statement_id: int
    num_rows: int


@dataclass(frozen=True, slots=True)
class ComBinlogDump:
    """COM_BINLOG_DUMP. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_binlog_dump.html"""

    code: ClassVar[Command] = Command.COM_BINLOG_DUMP
    binlog_pos: int
    flags: int
    server_id: int
    binlog_filename: bytes


@dataclass(frozen=True, slots=True)
class ComBinlogDumpGtid:
    """COM_BINLOG_DUMP_GTID. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_binlog_dump_gtid.html"""

    code: ClassVar[Command] = Command.COM_BINLOG_DUMP_GTID
    flags: int
    server_id: int
    binlog_filename: bytes
    binlog_pos: int
    gtid_data: bytes


@dataclass(frozen=True, slots=True)
class ComRegisterSlave:
    """COM_REGISTER_SLAVE. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_register_slave.html"""

    code: ClassVar[Command] = Command.COM_REGISTER_SLAVE
    server_id: int
    hostname: bytes
    user: bytes
    password: bytes
    port: int
    replication_rank: int
    master_id: int


@dataclass(frozen=True, slots=True)
class UnknownCommand:
    """Any command byte rwproxy does not handle (COM_TIME, COM_DAEMON, COM_MULTI, ...)."""

    code: int


ReplicationCommand = ComBinlogDump | ComBinlogDumpGtid | ComRegisterSlave

ClientCommand = (
    ComQuery
    | ComInitDb
    | ComPing
    | ComQuit
    | ComFieldList
    | ComStatistics
    | ComProcessKill
    | ComChangeUser
    | ComResetConnection
    | ComSetOption
    | ComStmtPrepare
    | ComStmtExecute
    | ComStmtSendLongData
    | ComStmtClose
    | ComStmtReset
    | ComStmtFetch
    | ComBinlogDump
    | ComBinlogDumpGtid
    | ComRegisterSlave
    | UnknownCommand
)


# --------------------------------------------------------------------------- parsing


def parse_command(payload: bytes, caps: Capability) -> ClientCommand:
    """Parse one command-phase payload (without the packet header)."""
    if not payload:
        raise RemoteProtocolError("empty command packet")
    parser = _PARSERS.get(payload[0])
    if parser is None:
        return UnknownCommand(payload[0])
    return parser(payload, caps)


def _parse_query(payload: bytes, caps: Capability) -> ComQuery:
    if not caps & Capability.CLIENT_QUERY_ATTRIBUTES:
        return ComQuery(payload[1:])
    names, types, pos = _read_query_attributes(payload, 1)
    return ComQuery(payload[pos:], names, types)


def _read_query_attributes(
    payload: bytes, pos: int
) -> tuple[tuple[bytes, ...], tuple[int, ...], int]:
    """The CLIENT_QUERY_ATTRIBUTES prefix of COM_QUERY: count, set count, bitmap, types, values."""
    count, pos = codec.read_lenenc_int(payload, pos)
    _, pos = codec.read_lenenc_int(payload, pos)  # parameter_set_count, always 1
    if not count:
        return (), (), pos
    bitmap, pos = codec.read_bytes(payload, pos, (count + 7) // 8)
    bound, pos = codec.read_int1(payload, pos)
    if not bound:
        raise RemoteProtocolError("query attributes without types cannot be parsed")
    types, names, pos = _read_typed_names(payload, pos, count)
    pos = _skip_binary_values(payload, pos, bitmap, types)
    return names, types, pos


def _read_typed_names(
    payload: bytes, pos: int, count: int
) -> tuple[tuple[int, ...], tuple[bytes, ...], int]:
    """`count` x (int<2> type and flag, string<lenenc> name): the CLIENT_QUERY_ATTRIBUTES form."""
    types: list[int] = []
    names: list[bytes] = []
    for _ in range(count):
        type_code, pos = codec.read_int(payload, pos, 2)
        name, pos = codec.read_lenenc_bytes(payload, pos)
        types.append(type_code)
        names.append(name)
    return tuple(types), tuple(names), pos


_FIXED_BINARY_SIZES: dict[int, int] = {
    ColumnType.MYSQL_TYPE_NULL: 0,
    ColumnType.MYSQL_TYPE_TINY: 1,
    ColumnType.MYSQL_TYPE_SHORT: 2,
    ColumnType.MYSQL_TYPE_YEAR: 2,
    ColumnType.MYSQL_TYPE_LONG: 4,
    ColumnType.MYSQL_TYPE_INT24: 4,
    ColumnType.MYSQL_TYPE_FLOAT: 4,
    ColumnType.MYSQL_TYPE_LONGLONG: 8,
    ColumnType.MYSQL_TYPE_DOUBLE: 8,
}
_TEMPORAL_TYPES: frozenset[int] = frozenset(
    {
        ColumnType.MYSQL_TYPE_DATE,
        ColumnType.MYSQL_TYPE_NEWDATE,
        ColumnType.MYSQL_TYPE_TIME,
        ColumnType.MYSQL_TYPE_TIME2,
        ColumnType.MYSQL_TYPE_DATETIME,
        ColumnType.MYSQL_TYPE_DATETIME2,
        ColumnType.MYSQL_TYPE_TIMESTAMP,
        ColumnType.MYSQL_TYPE_TIMESTAMP2,
    }
)


def _skip_binary_value(payload: bytes, pos: int, type_code: int) -> int:
    """End of one binary-protocol value: fixed size, int<1>-prefixed temporal, or lenenc string.

    https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_binary_resultset.html
    """
    column_type = type_code & 0xFF  # the high byte holds the UNSIGNED flag
    size = _FIXED_BINARY_SIZES.get(column_type)
    if size is None:
        if column_type in _TEMPORAL_TYPES:
            size, pos = codec.read_int1(payload, pos)
        else:
            size, pos = codec.read_lenenc_int(payload, pos)
    _, pos = codec.read_bytes(payload, pos, size)
    return pos


def _skip_binary_values(payload: bytes, pos: int, bitmap: bytes, types: tuple[int, ...]) -> int:
    for index, type_code in enumerate(types):
        if not bitmap[index >> 3] & (1 << (index & 7)):
            pos = _skip_binary_value(payload, pos, type_code)
    return pos


def _parse_init_db(payload: bytes, caps: Capability) -> ComInitDb:
    return ComInitDb(payload[1:])


def _parse_field_list(payload: bytes, caps: Capability) -> ComFieldList:
    table, pos = codec.read_nul_bytes(payload, 1)
    return ComFieldList(table, payload[pos:])


def _parse_process_kill(payload: bytes, caps: Capability) -> ComProcessKill:
    connection_id, _ = codec.read_int(payload, 1, 4)
    return ComProcessKill(connection_id)


def _parse_set_option(payload: bytes, caps: Capability) -> ComSetOption:
    option, _ = codec.read_int(payload, 1, 2)
    return ComSetOption(option)


def _parse_stmt_prepare(payload: bytes, caps: Capability) -> ComStmtPrepare:
    return ComStmtPrepare(payload[1:])


def _parse_stmt_execute(payload: bytes, caps: Capability) -> ComStmtExecute:
    statement_id, pos = codec.read_int(payload, 1, 4)
    flags, pos = codec.read_int1(payload, pos)
    iteration_count, pos = codec.read_int(payload, pos, 4)
    return ComStmtExecute(statement_id, CursorType(flags), iteration_count)


def parse_stmt_execute_params(
    payload: bytes, num_params: int, caps: Capability = _NO_CAPS
) -> StmtExecuteParams:
    """Read the parameter block of a COM_STMT_EXECUTE whose statement has `num_params`.

    With CLIENT_QUERY_ATTRIBUTES and PARAMETER_COUNT_AVAILABLE the payload carries its own
    count (prepared parameters + attributes), which wins over `num_params`.
    """
    head = _parse_stmt_execute(payload, caps)
    pos = 10
    attributes = bool(caps & Capability.CLIENT_QUERY_ATTRIBUTES)
    if attributes and head.flags & CursorType.PARAMETER_COUNT_AVAILABLE:
        num_params, pos = codec.read_lenenc_int(payload, pos)
    if num_params <= 0:
        return StmtExecuteParams(0, b"", False, b"", pos)
    bitmap, pos = codec.read_bytes(payload, pos, (num_params + 7) // 8)
    bound, pos = codec.read_int1(payload, pos)
    if not bound:
        return StmtExecuteParams(num_params, bitmap, False, b"", pos)
    if not attributes:
        types, pos = codec.read_bytes(payload, pos, 2 * num_params)
        return StmtExecuteParams(num_params, bitmap, True, types, pos)
    start = pos
    _, names, pos = _read_typed_names(payload, pos, num_params)
    return StmtExecuteParams(num_params, bitmap, True, payload[start:pos], pos, names)


def _parse_send_long_data(payload: bytes, caps: Capability) -> ComStmtSendLongData:
    statement_id, pos = codec.read_int(payload, 1, 4)
    param_id, pos = codec.read_int(payload, pos, 2)
    return ComStmtSendLongData(statement_id, param_id, memoryview(payload)[pos:])


def _parse_stmt_close(payload: bytes, caps: Capability) -> ComStmtClose:
    return ComStmtClose(codec.read_int(payload, 1, 4)[0])


def _parse_stmt_reset(payload: bytes, caps: Capability) -> ComStmtReset:
    return ComStmtReset(codec.read_int(payload, 1, 4)[0])


def _parse_stmt_fetch(payload: bytes, caps: Capability) -> ComStmtFetch:
    statement_id, pos = codec.read_int(payload, 1, 4)
    num_rows, _ = codec.read_int(payload, pos, 4)
    return ComStmtFetch(statement_id, num_rows)


def _parse_binlog_dump(payload: bytes, caps: Capability) -> ComBinlogDump:
    binlog_pos, pos = codec.read_int(payload, 1, 4)
    flags, pos = codec.read_int(payload, pos, 2)
    server_id, pos = codec.read_int(payload, pos, 4)
    return ComBinlogDump(binlog_pos, flags, server_id, payload[pos:])


def _parse_binlog_dump_gtid(payload: bytes, caps: Capability) -> ComBinlogDumpGtid:
    flags, pos = codec.read_int(payload, 1, 2)
    server_id, pos = codec.read_int(payload, pos, 4)
    name_size, pos = codec.read_int(payload, pos, 4)
    filename, pos = codec.read_bytes(payload, pos, name_size)
    binlog_pos, pos = codec.read_int(payload, pos, 8)
    gtid_data = b""
    if flags & BINLOG_THROUGH_GTID:
        data_size, pos = codec.read_int(payload, pos, 4)
        gtid_data, pos = codec.read_bytes(payload, pos, data_size)
    return ComBinlogDumpGtid(flags, server_id, filename, binlog_pos, gtid_data)


def _read_short_string(payload: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = codec.read_int1(payload, pos)
    return codec.read_bytes(payload, pos, size)


def _parse_register_slave(payload: bytes, caps: Capability) -> ComRegisterSlave:
    server_id, pos = codec.read_int(payload, 1, 4)
    hostname, pos = _read_short_string(payload, pos)
    user, pos = _read_short_string(payload, pos)
    password, pos = _read_short_string(payload, pos)
    port, pos = codec.read_int(payload, pos, 2)
    rank, pos = codec.read_int(payload, pos, 4)
    master_id, pos = codec.read_int(payload, pos, 4)
    return ComRegisterSlave(server_id, hostname, user, password, port, rank, master_id)


_PARSERS: dict[int, Callable[[bytes, Capability], ClientCommand]] = {
    Command.COM_QUERY: _parse_query,
    Command.COM_INIT_DB: _parse_init_db,
    Command.COM_PING: lambda payload, caps: ComPing(),
    Command.COM_QUIT: lambda payload, caps: ComQuit(),
    Command.COM_FIELD_LIST: _parse_field_list,
    Command.COM_STATISTICS: lambda payload, caps: ComStatistics(),
    Command.COM_PROCESS_KILL: _parse_process_kill,
    Command.COM_CHANGE_USER: lambda payload, caps: ComChangeUser(bytes(payload)),
    Command.COM_RESET_CONNECTION: lambda payload, caps: ComResetConnection(),
    Command.COM_SET_OPTION: _parse_set_option,
    Command.COM_STMT_PREPARE: _parse_stmt_prepare,
    Command.COM_STMT_EXECUTE: _parse_stmt_execute,
    Command.COM_STMT_SEND_LONG_DATA: _parse_send_long_data,
    Command.COM_STMT_CLOSE: _parse_stmt_close,
    Command.COM_STMT_RESET: _parse_stmt_reset,
    Command.COM_STMT_FETCH: _parse_stmt_fetch,
    Command.COM_BINLOG_DUMP: _parse_binlog_dump,
    Command.COM_BINLOG_DUMP_GTID: _parse_binlog_dump_gtid,
    Command.COM_REGISTER_SLAVE: _parse_register_slave,
}


# --------------------------------------------------------------------------- building


def _command(code: Command, body: bytes = b"") -> bytes:
    return bytes((code,)) + body


def build_query(sql: bytes) -> bytes:
    return _command(Command.COM_QUERY, sql)


def build_init_db(schema: bytes) -> bytes:
    return _command(Command.COM_INIT_DB, schema)


def build_ping() -> bytes:
    return _command(Command.COM_PING)


def build_quit() -> bytes:
    return _command(Command.COM_QUIT)


def build_statistics() -> bytes:
    return _command(Command.COM_STATISTICS)


def build_reset_connection() -> bytes:
    return _command(Command.COM_RESET_CONNECTION)


def build_field_list(table: bytes, wildcard: bytes = b"") -> bytes:
    return _command(Command.COM_FIELD_LIST, codec.write_nul_bytes(table) + wildcard)


def build_process_kill(connection_id: int) -> bytes:
    return _command(Command.COM_PROCESS_KILL, codec.write_int(connection_id, 4))


def build_set_option(option: int) -> bytes:
    return _command(Command.COM_SET_OPTION, codec.write_int(option, 2))


def build_stmt_prepare(sql: bytes) -> bytes:
    return _command(Command.COM_STMT_PREPARE, sql)


def build_stmt_execute(
    statement_id: int,
    flags: CursorType = CursorType.CURSOR_TYPE_NO_CURSOR,
    params: bytes = b"",
) -> bytes:
    """COM_STMT_EXECUTE head (iteration count 1) + an already encoded parameter block."""
    head = codec.write_int(statement_id, 4) + bytes((flags,)) + codec.write_int(1, 4)
    return _command(Command.COM_STMT_EXECUTE, head + params)


def build_stmt_send_long_data(statement_id: int, param_id: int, data: bytes) -> bytes:
    head = codec.write_int(statement_id, 4) + codec.write_int(param_id, 2)
    return _command(Command.COM_STMT_SEND_LONG_DATA, head + data)


def build_stmt_close(statement_id: int) -> bytes:
    return _command(Command.COM_STMT_CLOSE, codec.write_int(statement_id, 4))


def build_stmt_reset(statement_id: int) -> bytes:
    return _command(Command.COM_STMT_RESET, codec.write_int(statement_id, 4))


def build_stmt_fetch(statement_id: int, num_rows: int) -> bytes:
    body = codec.write_int(statement_id, 4) + codec.write_int(num_rows, 4)
    return _command(Command.COM_STMT_FETCH, body)


# --------------------------------------------------------------------------- rewriting

_STATEMENT_ID_COMMANDS = frozenset(
    {
        Command.COM_STMT_EXECUTE,
        Command.COM_STMT_SEND_LONG_DATA,
        Command.COM_STMT_CLOSE,
        Command.COM_STMT_RESET,
        Command.COM_STMT_FETCH,
    }
)


def rewrite_statement_id(payload: bytes, new_id: int) -> bytes:
    """The same statement command with bytes 1..4 (the statement id) set to `new_id`."""
    if not payload or payload[0] not in _STATEMENT_ID_COMMANDS:
        raise LocalProtocolError("not a command that carries a statement id")
    if len(payload) < 5:
        raise RemoteProtocolError("statement command too short for a statement id")
    return payload[:1] + codec.write_int(new_id, 4) + payload[5:]


def with_param_types(payload: bytes, num_params: int, types: bytes) -> bytes:
    """Make an EXECUTE self-contained: new_params_bound_flag=1 followed by `types`.

    Used when a backend connection has just prepared the statement and never saw the
    EXECUTE that bound the types. `types` is 2 bytes per parameter (as kept from that
    earlier EXECUTE). An EXECUTE that already binds types is returned unchanged.
    """
    if not payload or payload[0] != Command.COM_STMT_EXECUTE:
        raise LocalProtocolError("not a COM_STMT_EXECUTE")
    if len(types) != 2 * num_params:
        raise LocalProtocolError(f"{len(types)} type bytes for {num_params} parameters")
    params = parse_stmt_execute_params(payload, num_params)
    if params.num_params == 0 or params.new_params_bound:
        return payload
    flag_pos = params.values_offset - 1
    return payload[:flag_pos] + b"\x01" + types + payload[flag_pos + 1 :]
