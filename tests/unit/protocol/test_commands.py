"""commands: client command packets <-> typed commands; statement id / type rewriting."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.protocol import commands as c
from proxy.protocol.constants import Capability, Command, CursorType, SetOption
from proxy.protocol.errors import LocalProtocolError, RemoteProtocolError

CAPS = Capability.CLIENT_PROTOCOL_41
ATTRS = CAPS | Capability.CLIENT_QUERY_ATTRIBUTES

# (built payload, wire, parsed command, whether dropping the last byte must raise)
VECTORS = [
    (c.build_query(b"SELECT 1"), b"\x03SELECT 1", c.ComQuery(b"SELECT 1"), False),
    (c.build_query(b""), b"\x03", c.ComQuery(b""), False),
    (c.build_init_db(b"app"), b"\x02app", c.ComInitDb(b"app"), False),
    (c.build_ping(), b"\x0e", c.ComPing(), False),
    (c.build_quit(), b"\x01", c.ComQuit(), False),
    (c.build_statistics(), b"\x09", c.ComStatistics(), False),
    (c.build_reset_connection(), b"\x1f", c.ComResetConnection(), False),
    (c.build_field_list(b"t1"), b"\x04t1\x00", c.ComFieldList(b"t1", b""), True),
    (c.build_field_list(b"t1", b"a%"), b"\x04t1\x00a%", c.ComFieldList(b"t1", b"a%"), False),
    (c.build_process_kill(0x0A0B0C0D), b"\x0c\x0d\x0c\x0b\x0a", c.ComProcessKill(0x0A0B0C0D), True),
    (c.build_set_option(1), b"\x1b\x01\x00", c.ComSetOption(1), True),
    (c.build_stmt_prepare(b"SELECT ?"), b"\x16SELECT ?", c.ComStmtPrepare(b"SELECT ?"), False),
    (c.build_stmt_close(7), b"\x19\x07\x00\x00\x00", c.ComStmtClose(7), True),
    (c.build_stmt_reset(7), b"\x1a\x07\x00\x00\x00", c.ComStmtReset(7), True),
    (
        c.build_stmt_fetch(7, 100),
        b"\x1c\x07\x00\x00\x00\x64\x00\x00\x00",
        c.ComStmtFetch(7, 100),
        True,
    ),
    (
        c.build_stmt_execute(7, CursorType.CURSOR_TYPE_READ_ONLY),
        b"\x17\x07\x00\x00\x00\x01\x01\x00\x00\x00",
        c.ComStmtExecute(7, CursorType.CURSOR_TYPE_READ_ONLY, 1),
        True,
    ),
]


@pytest.mark.parametrize("built, wire, parsed, short_raises", VECTORS, ids=lambda v: repr(v)[:30])
def test_vectors(built: bytes, wire: bytes, parsed: c.ClientCommand, short_raises: bool) -> None:
    assert built == wire
    command = c.parse_command(wire, CAPS)
    assert command == parsed
    assert command.code == wire[0]
    if short_raises:
        with pytest.raises(RemoteProtocolError):
            c.parse_command(wire[:-1], CAPS)


def test_empty_payload_raises() -> None:
    with pytest.raises(RemoteProtocolError, match="empty"):
        c.parse_command(b"", CAPS)


@pytest.mark.parametrize("code", [0x00, 0x0F, 0x1D, 0x20, 0x7F, 0xFA, 0xFE, 0xFF])
def test_unknown_commands(code: int) -> None:
    assert c.parse_command(bytes((code,)) + b"junk", CAPS) == c.UnknownCommand(code)


def test_change_user_keeps_raw_payload() -> None:
    payload = b"\x11bob\x00\x14" + b"s" * 20 + b"app\x00"
    assert c.parse_command(payload, CAPS) == c.ComChangeUser(payload)


def test_set_option_meaning() -> None:
    on = c.parse_command(c.build_set_option(SetOption.MYSQL_OPTION_MULTI_STATEMENTS_ON), CAPS)
    off = c.parse_command(c.build_set_option(SetOption.MYSQL_OPTION_MULTI_STATEMENTS_OFF), CAPS)
    other = c.parse_command(c.build_set_option(9), CAPS)
    assert isinstance(on, c.ComSetOption)
    assert isinstance(off, c.ComSetOption)
    assert isinstance(other, c.ComSetOption)
    assert (on.multi_statements, off.multi_statements, other.multi_statements) == (
        True,
        False,
        None,
    )


def test_send_long_data_is_a_view_not_a_copy() -> None:
    payload = c.build_stmt_send_long_data(3, 1, b"chunk of blob")
    assert payload == b"\x18\x03\x00\x00\x00\x01\x00chunk of blob"
    command = c.parse_command(payload, CAPS)
    assert isinstance(command, c.ComStmtSendLongData)
    assert (command.statement_id, command.param_id) == (3, 1)
    assert bytes(command.data) == b"chunk of blob"
    assert command.data.obj is payload
    with pytest.raises(RemoteProtocolError):
        c.parse_command(payload[:6], CAPS)


@pytest.mark.parametrize(
    "flags, cursor",
    [
        (CursorType.CURSOR_TYPE_NO_CURSOR, False),
        (CursorType.CURSOR_TYPE_READ_ONLY, True),
        (CursorType.CURSOR_TYPE_FOR_UPDATE, True),
        (CursorType.CURSOR_TYPE_SCROLLABLE, True),
        (CursorType.PARAMETER_COUNT_AVAILABLE, False),
    ],
)
def test_execute_cursor_flag(flags: CursorType, cursor: bool) -> None:
    command = c.parse_command(c.build_stmt_execute(1, flags), CAPS)
    assert isinstance(command, c.ComStmtExecute)
    assert command.cursor is cursor


# --------------------------------------------------------------------------- EXECUTE params

LONG, VAR_STRING, UNSIGNED = b"\x03\x00", b"\xfd\x00", 0x80
TWO_PARAMS = b"\x02" + b"\x01" + LONG + VAR_STRING + b"\x07\x00\x00\x00"  # 2nd is NULL


def test_execute_params_with_types() -> None:
    payload = c.build_stmt_execute(5, params=TWO_PARAMS)
    params = c.parse_stmt_execute_params(payload, 2)
    assert params == c.StmtExecuteParams(2, b"\x02", True, LONG + VAR_STRING, 16)
    assert payload[params.values_offset :] == b"\x07\x00\x00\x00"


def test_execute_params_without_types() -> None:
    payload = c.build_stmt_execute(5, params=b"\x00\x00" + b"\x07\x00\x00\x00\x03abc")
    params = c.parse_stmt_execute_params(payload, 2)
    assert params == c.StmtExecuteParams(2, b"\x00", False, b"", 12)


def test_execute_params_none() -> None:
    payload = c.build_stmt_execute(5)
    assert c.parse_stmt_execute_params(payload, 0) == c.StmtExecuteParams(0, b"", False, b"", 10)


def test_execute_params_bitmap_for_nine_params() -> None:
    payload = c.build_stmt_execute(5, params=b"\xff\x01\x00")
    params = c.parse_stmt_execute_params(payload, 9)
    assert (params.null_bitmap, params.new_params_bound, params.values_offset) == (
        b"\xff\x01",
        False,
        13,
    )


@pytest.mark.parametrize("cut", [10, 11, 12, 14])
def test_execute_params_short_raise(cut: int) -> None:
    payload = c.build_stmt_execute(5, params=TWO_PARAMS)
    with pytest.raises(RemoteProtocolError):
        c.parse_stmt_execute_params(payload[:cut], 2)


def test_execute_params_with_query_attributes() -> None:
    flags = CursorType.PARAMETER_COUNT_AVAILABLE
    block = b"\x02\x00\x01" + LONG + b"\x00" + VAR_STRING + b"\x02id" + b"\x01\x00\x00\x00"
    payload = c.build_stmt_execute(5, flags, block)
    params = c.parse_stmt_execute_params(payload, 1, ATTRS)
    assert params.num_params == 2
    assert params.param_names == (b"", b"id")
    assert params.param_types == LONG + b"\x00" + VAR_STRING + b"\x02id"
    assert payload[params.values_offset :] == b"\x01\x00\x00\x00"


# --------------------------------------------------------------------------- query attributes


def test_query_attributes_prefix() -> None:
    values = b"\x05\x00\x00\x00" + b"\x03abc"
    prefix = b"\x03\x01" + b"\x04" + b"\x01" + LONG + b"\x01n" + VAR_STRING + b"\x01s"
    prefix += bytes((0x01 | UNSIGNED, 0x00)) + b"\x01z" + values  # third is NULL (bit 2)
    payload = c.build_query(prefix + b"SELECT 1")
    command = c.parse_command(payload, ATTRS)
    assert command == c.ComQuery(b"SELECT 1", (b"n", b"s", b"z"), (0x03, 0xFD, 0x81))
    assert c.parse_command(payload, CAPS) == c.ComQuery(prefix + b"SELECT 1")


@pytest.mark.parametrize(
    "type_code, value",
    [
        (0x06, b""),
        (0x01, b"\x01"),
        (0x02, b"\x01\x02"),
        (0x0D, b"\xe8\x07"),
        (0x09, b"\x01\x02\x03\x04"),
        (0x05, b"\x00" * 8),
        (0x0A, b"\x04\xe8\x07\x01\x02"),
        (0x0C, b"\x00"),
        (0x0B, b"\x08" + b"\x00" * 8),
        (0xF6, b"\x041.50"),
        (0xFC, b"\xfc\x00\x01" + b"b" * 256),
    ],
)
def test_query_attribute_value_sizes(type_code: int, value: bytes) -> None:
    prefix = b"\x01\x01\x00\x01" + bytes((type_code, 0)) + b"\x01a" + value
    command = c.parse_command(c.build_query(prefix + b"DO 1"), ATTRS)
    assert command == c.ComQuery(b"DO 1", (b"a",), (type_code,))
    with pytest.raises(RemoteProtocolError):
        c.parse_command(c.build_query(prefix[:-1]), ATTRS)


def test_query_attributes_none_and_unbound() -> None:
    assert c.parse_command(b"\x03\x00\x01DO 1", ATTRS) == c.ComQuery(b"DO 1")
    with pytest.raises(RemoteProtocolError, match="without types"):
        c.parse_command(b"\x03\x01\x01\x00\x00DO 1", ATTRS)


# --------------------------------------------------------------------------- replication


def test_binlog_dump() -> None:
    payload = b"\x12" + b"\x04\x00\x00\x00" + b"\x00\x00" + b"\x02\x00\x00\x00" + b"bin.000001"
    command = c.parse_command(payload, CAPS)
    assert command == c.ComBinlogDump(4, 0, 2, b"bin.000001")
    assert isinstance(command, c.ReplicationCommand)
    with pytest.raises(RemoteProtocolError):
        c.parse_command(payload[:10], CAPS)


def test_binlog_dump_gtid() -> None:
    head = b"\x1e" + b"\x04\x00" + b"\x02\x00\x00\x00" + b"\x03\x00\x00\x00" + b"bin"
    payload = head + (4).to_bytes(8, "little") + b"\x02\x00\x00\x00" + b"gt"
    command = c.parse_command(payload, CAPS)
    assert command == c.ComBinlogDumpGtid(4, 2, b"bin", 4, b"gt")
    assert isinstance(command, c.ReplicationCommand)
    without = b"\x1e\x00\x00" + head[3:] + (4).to_bytes(8, "little")
    assert c.parse_command(without, CAPS) == c.ComBinlogDumpGtid(0, 2, b"bin", 4, b"")
    with pytest.raises(RemoteProtocolError):
        c.parse_command(payload[:-1], CAPS)


def test_register_slave() -> None:
    payload = (
        (b"\x15" + b"\x09\x00\x00\x00" + b"\x04host" + b"\x04repl" + b"\x00" + b"\xea\x0c")
        + b"\x00\x00\x00\x00"
        + b"\x01\x00\x00\x00"
    )
    command = c.parse_command(payload, CAPS)
    assert command == c.ComRegisterSlave(9, b"host", b"repl", b"", 3306, 0, 1)
    assert isinstance(command, c.ReplicationCommand)
    assert "not supported through rwproxy" in c.REPLICATION_NOT_SUPPORTED
    with pytest.raises(RemoteProtocolError):
        c.parse_command(payload[:-1], CAPS)


# --------------------------------------------------------------------------- rewriting

STATEMENT_COMMANDS = (
    c.ComStmtExecute,
    c.ComStmtSendLongData,
    c.ComStmtClose,
    c.ComStmtReset,
    c.ComStmtFetch,
)


@pytest.mark.parametrize(
    "payload",
    [
        c.build_stmt_execute(1, params=TWO_PARAMS),
        c.build_stmt_send_long_data(1, 0, b"data"),
        c.build_stmt_close(1),
        c.build_stmt_reset(1),
        c.build_stmt_fetch(1, 10),
    ],
    ids=lambda p: Command(p[0]).name,
)
def test_rewrite_statement_id(payload: bytes) -> None:
    rewritten = c.rewrite_statement_id(payload, 0xDEADBEEF)
    assert rewritten[1:5] == b"\xef\xbe\xad\xde"
    assert rewritten[:1] + rewritten[5:] == payload[:1] + payload[5:]
    original = c.parse_command(payload, CAPS)
    assert isinstance(original, STATEMENT_COMMANDS)
    assert c.parse_command(rewritten, CAPS) == replace(original, statement_id=0xDEADBEEF)


def test_rewrite_statement_id_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        c.rewrite_statement_id(c.build_query(b"SELECT 1"), 1)
    with pytest.raises(LocalProtocolError):
        c.rewrite_statement_id(b"", 1)
    with pytest.raises(RemoteProtocolError):
        c.rewrite_statement_id(b"\x19\x01\x00", 1)


def test_with_param_types_binds_types() -> None:
    unbound = c.build_stmt_execute(5, params=b"\x02\x00" + b"\x07\x00\x00\x00")
    bound = c.with_param_types(unbound, 2, LONG + VAR_STRING)
    assert bound == c.build_stmt_execute(5, params=TWO_PARAMS)
    params = c.parse_stmt_execute_params(bound, 2)
    assert params.new_params_bound and params.param_types == LONG + VAR_STRING
    assert c.with_param_types(bound, 2, LONG + VAR_STRING) is bound


def test_with_param_types_no_params_and_misuse() -> None:
    plain = c.build_stmt_execute(5)
    assert c.with_param_types(plain, 0, b"") is plain
    with pytest.raises(LocalProtocolError):
        c.with_param_types(plain, 1, b"\x03")
    with pytest.raises(LocalProtocolError):
        c.with_param_types(c.build_stmt_close(5), 0, b"")


# --------------------------------------------------------------------------- fuzz


@given(st.binary(max_size=64), st.sampled_from([CAPS, ATTRS]))
def test_random_payloads_parse_or_raise_remote(payload: bytes, caps: Capability) -> None:
    with contextlib.suppress(RemoteProtocolError):
        c.parse_command(payload, caps)


@given(st.binary(max_size=64), st.integers(min_value=0, max_value=20), st.booleans())
def test_random_execute_params_parse_or_raise_remote(
    tail: bytes, num_params: int, attributes: bool
) -> None:
    payload = b"\x17\x01\x00\x00\x00" + tail
    try:
        params = c.parse_stmt_execute_params(payload, num_params, ATTRS if attributes else CAPS)
    except RemoteProtocolError:
        return
    assert params.values_offset <= len(payload)
