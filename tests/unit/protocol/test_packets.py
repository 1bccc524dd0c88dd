"""Byte vectors for proxy/protocol/packets.py.

Whole packets come from the MySQL documentation's examples (each vector names its page) and
from MariaDB 10.11 captures (tests/vectors/handshake/, see test_handshake_vectors below).
Each vector is checked three ways: parse(payload) == the expected dataclass, build(expected)
framed with the vector's sequence id == the wire bytes, and a truncated payload raises
RemoteProtocolError. Packets ending in a string<EOF> cannot tell they were truncated at the
end, so their vectors cut inside the fixed part instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.protocol.constants import Capability as C
from proxy.protocol.constants import CharacterSet, ColumnType, ServerStatus
from proxy.protocol.errors import LocalProtocolError, MySQLError, RemoteProtocolError
from proxy.protocol.framing import PacketFramer, frame
from proxy.protocol.packets import (
    AuthMoreData,
    AuthSwitchRequest,
    ChangeUser,
    EofPacket,
    ErrPacket,
    GtidsChange,
    HandshakeResponse41,
    HandshakeV10,
    OkPacket,
    SchemaChange,
    SslRequest,
    StateChanged,
    SystemVariableChange,
    TransactionCharacteristicsChange,
    TransactionStateChange,
    UnknownStateChange,
    build_auth_more_data,
    build_auth_switch_request,
    build_change_user,
    build_column_definition,
    build_eof,
    build_err,
    build_err_packet,
    build_handshake_response,
    build_handshake_v10,
    build_ok,
    build_result_set,
    build_session_state,
    build_ssl_request,
    build_text_row,
    err_from,
    is_eof,
    is_ssl_request,
    parse_auth_more_data,
    parse_auth_switch_request,
    parse_change_user,
    parse_eof,
    parse_err,
    parse_handshake_response,
    parse_handshake_v10,
    parse_ok,
    parse_session_state,
    parse_ssl_request,
)

AUTOCOMMIT = ServerStatus.SERVER_STATUS_AUTOCOMMIT
P41 = C.CLIENT_PROTOCOL_41
TRACK = C.CLIENT_PROTOCOL_41 | C.CLIENT_SESSION_TRACK
VECTORS_DIR = Path(__file__).parents[2] / "vectors" / "handshake"

DOCS_TLS = "https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_tls.html"
DOCS_INTERNALS = "https://dev.mysql.com/doc/internals/en/connection-phase-packets.html"
DOCS_RESPONSE = (
    "https://dev.mysql.com/doc/dev/mysql-server/latest/"
    "page_protocol_connection_phase_packets_protocol_handshake_response.html"
)
DOCS_OK = "https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_ok_packet.html"
DOCS_ERR = "https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_err_packet.html"
DOCS_EOF = "https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_eof_packet.html"


def unhex(text: str) -> bytes:
    """Hex dump (whitespace ignored) -> bytes."""
    return bytes.fromhex(text)


def split_wire(wire: bytes) -> tuple[int, bytes]:
    """One whole packet -> (sequence id, payload), checking the header's length."""
    (packet,) = PacketFramer().feed(wire)
    assert len(wire) == 4 + len(packet.payload)
    return packet.seq, packet.payload


@dataclass(frozen=True)
class Vector:
    name: str
    source: str
    wire: bytes
    parse: Callable[[bytes], Any]
    build: Callable[[Any], bytes]
    expected: Any
    cut: int = -1  # where to truncate the payload; parse must then raise


def _ok_parser(caps: C) -> Callable[[bytes], OkPacket]:
    return lambda payload: parse_ok(payload, caps)


def _ok_builder(caps: C, header: int = 0) -> Callable[[OkPacket], bytes]:
    return lambda ok: build_ok(ok, caps, header)


NATIVE = "mysql_native_password"

VECTORS = [
    Vector(
        "HandshakeV10 5.5.2-m2 (TLS exchange example)",
        DOCS_TLS,
        unhex(
            "36 00 00 00 0a 35 2e 35 2e 32 2d 6d 32 00 52 00 00 00 22 3d 4e 50 29 75 39 56 00 ff"
            " ff 08 02 00 00 00 00 00 00 00 00 00 00 00 00 00 00 29 64 40 52 5c 55 78 7a 7c 21 29"
            " 4b 00"
        ),
        parse_handshake_v10,
        build_handshake_v10,
        HandshakeV10("5.5.2-m2", 0x52, b'"=NP)u9V)d@R\\Uxz|!)K', C(0xFFFF), 8, AUTOCOMMIT, ""),
    ),
    Vector(
        "HandshakeV10 5.5.2-m2 (internals manual example)",
        DOCS_INTERNALS,
        unhex(
            "36 00 00 00 0a 35 2e 35 2e 32 2d 6d 32 00 0b 00 00 00 64 76 48 40 49 2d 43 4a 00 ff"
            " f7 08 02 00 00 00 00 00 00 00 00 00 00 00 00 00 00 2a 34 64 7c 63 5a 77 6b 34 5e 5d"
            " 3a 00"
        ),
        parse_handshake_v10,
        build_handshake_v10,
        HandshakeV10("5.5.2-m2", 11, b"dvH@I-CJ*4d|cZwk4^]:", C(0xF7FF), 8, AUTOCOMMIT, ""),
    ),
    Vector(
        "SSLRequest (TLS exchange example)",
        DOCS_TLS,
        unhex(
            "20 00 00 01 05 ae 03 00 00 00 00 01 08 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"
            " 00 00 00 00 00 00 00 00"
        ),
        parse_ssl_request,
        build_ssl_request,
        SslRequest(C(0x0003AE05), 0x01000000, 8),
    ),
    Vector(
        "HandshakeResponse41 root, no database (TLS exchange example)",
        DOCS_TLS,
        unhex(
            "3a 00 00 01 05 a6 03 00 00 00 00 01 08 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"
            " 00 00 00 00 00 00 00 00 72 6f 6f 74 00 14 14 63 6b 70 99 8a b6 9e 96 87 a2 30 9a 40"
            " 67 2b 83 38 85 4b"
        ),
        parse_handshake_response,
        build_handshake_response,
        HandshakeResponse41(
            C(0x0003A605),
            0x01000000,
            8,
            "root",
            unhex("14 63 6b 70 99 8a b6 9e 96 87 a2 30 9a 40 67 2b 83 38 85 4b"),
        ),
    ),
    Vector(
        "HandshakeResponse41 5.5.8 with PLUGIN_AUTH and CONNECT_WITH_DB",
        DOCS_INTERNALS,
        unhex(
            "54 00 00 01 8d a6 0f 00 00 00 00 01 08 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"
            " 00 00 00 00 00 00 00 00 70 61 6d 00 14 ab 09 ee f6 bc b1 32 3e 61 14 38 65 c0 99 1d"
            " 95 7d 75 d4 47 74 65 73 74 00 6d 79 73 71 6c 5f 6e 61 74 69 76 65 5f 70 61 73 73 77"
            " 6f 72 64 00"
        ),
        parse_handshake_response,
        build_handshake_response,
        HandshakeResponse41(
            C(0x000FA68D),
            0x01000000,
            8,
            "pam",
            unhex("ab 09 ee f6 bc b1 32 3e 61 14 38 65 c0 99 1d 95 7d 75 d4 47"),
            "test",
            NATIVE,
        ),
    ),
    Vector(
        "HandshakeResponse41 5.6.6 with CONNECT_ATTRS",
        DOCS_RESPONSE,
        unhex(
            "b2 00 00 01 85 a2 1e 00 00 00 00 40 08 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"
            " 00 00 00 00 00 00 00 00 72 6f 6f 74 00 14 22 50 79 a2 12 d4 e8 82 e5 b3 f4 1a 97 75"
            " 6b c8 be db 9f 80 6d 79 73 71 6c 5f 6e 61 74 69 76 65 5f 70 61 73 73 77 6f 72 64 00"
            " 61 03 5f 6f 73 09 64 65 62 69 61 6e 36 2e 30 0c 5f 63 6c 69 65 6e 74 5f 6e 61 6d 65"
            " 08 6c 69 62 6d 79 73 71 6c 04 5f 70 69 64 05 32 32 33 34 34 0f 5f 63 6c 69 65 6e 74"
            " 5f 76 65 72 73 69 6f 6e 08 35 2e 36 2e 36 2d 6d 39 09 5f 70 6c 61 74 66 6f 72 6d 06"
            " 78 38 36 5f 36 34 03 66 6f 6f 03 62 61 72"
        ),
        parse_handshake_response,
        build_handshake_response,
        HandshakeResponse41(
            C(0x001EA285),
            0x40000000,
            8,
            "root",
            unhex("22 50 79 a2 12 d4 e8 82 e5 b3 f4 1a 97 75 6b c8 be db 9f 80"),
            None,
            NATIVE,
            {
                "_os": "debian6.0",
                "_client_name": "libmysql",
                "_pid": "22344",
                "_client_version": "5.6.6-m9",
                "_platform": "x86_64",
                "foo": "bar",
            },
        ),
    ),
    Vector(
        "OK: 0 rows, AUTOCOMMIT, no info",
        DOCS_OK,
        unhex("07 00 00 02 00 00 00 02 00 00 00"),
        _ok_parser(P41),
        _ok_builder(P41),
        OkPacket(0, 0, AUTOCOMMIT, 0),
    ),
    Vector(
        "OK: the same bytes under CLIENT_SESSION_TRACK (info left out)",
        DOCS_OK,
        unhex("07 00 00 02 00 00 00 02 00 00 00"),
        _ok_parser(TRACK),
        _ok_builder(TRACK),
        OkPacket(0, 0, AUTOCOMMIT, 0),
    ),
    Vector(
        # The docs print this block as "00 0f1 0a ..."; the stray '1' is a typo.
        "OK: session state after SET autocommit = OFF",
        DOCS_OK,
        unhex("1a 00 00 01 00 00 00 00 40 00 00 00 11 00 0f 0a") + b"autocommit\x03OFF",
        _ok_parser(TRACK),
        _ok_builder(TRACK),
        OkPacket(
            0,
            0,
            ServerStatus.SERVER_SESSION_STATE_CHANGED,
            0,
            b"",
            (SystemVariableChange("autocommit", "OFF"),),
        ),
    ),
    Vector(
        "OK: session state after USE test, with info",
        DOCS_OK,
        unhex("12 00 00 01 00 00 00 02 40 00 00 02 6f 6b 07 01 05 04 74 65 73 74"),
        _ok_parser(TRACK),
        _ok_builder(TRACK),
        OkPacket(
            0,
            0,
            AUTOCOMMIT | ServerStatus.SERVER_SESSION_STATE_CHANGED,
            0,
            b"ok",
            (SchemaChange("test"),),
        ),
    ),
    Vector(
        "OK: info as string<EOF> without CLIENT_SESSION_TRACK",
        DOCS_OK,
        unhex("0d 00 00 01 00 fc 2c 01 07 02 00 01 00") + b"info",
        _ok_parser(P41),
        _ok_builder(P41),
        OkPacket(300, 7, AUTOCOMMIT, 1, b"info"),
        cut=5,
    ),
    Vector(
        "OK with header 0xFE ending a result set (DEPRECATE_EOF)",
        DOCS_OK,
        unhex("07 00 00 05 fe 00 00 02 00 00 00"),
        _ok_parser(TRACK | C.CLIENT_DEPRECATE_EOF),
        _ok_builder(TRACK | C.CLIENT_DEPRECATE_EOF, 0xFE),
        OkPacket(0, 0, AUTOCOMMIT, 0),
    ),
    Vector(
        "ERR 1096 No tables used",
        DOCS_ERR,
        unhex("17 00 00 01 ff 48 04 23 48 59 30 30 30") + b"No tables used",
        parse_err,
        build_err_packet,
        ErrPacket(1096, "HY000", "No tables used"),
        cut=2,
    ),
    Vector(
        "ERR without SQLSTATE marker (before capabilities are known)",
        DOCS_ERR,
        unhex("17 00 00 00 ff 10 04") + b"Too many connections",
        lambda payload: parse_err(payload, C(0)),
        build_err_packet,
        ErrPacket(1040, None, "Too many connections"),
        cut=2,
    ),
    Vector(
        "EOF: 0 warnings, AUTOCOMMIT",
        DOCS_EOF,
        unhex("05 00 00 05 fe 00 00 02 00"),
        parse_eof,
        build_eof,
        EofPacket(0, AUTOCOMMIT),
    ),
    Vector(
        "AuthMoreData fast_auth_success (caching_sha2_password)",
        "https://dev.mysql.com/doc/dev/mysql-server/latest/page_caching_sha2_authentication_exchanges.html",
        unhex("02 00 00 02 01 03"),
        parse_auth_more_data,
        build_auth_more_data,
        AuthMoreData(b"\x03"),
        cut=0,
    ),
]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_parse(vector: Vector) -> None:
    _, payload = split_wire(vector.wire)
    assert vector.parse(payload) == vector.expected


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_build(vector: Vector) -> None:
    seq, _ = split_wire(vector.wire)
    assert frame(vector.build(vector.expected), seq) == vector.wire


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_truncated(vector: Vector) -> None:
    _, payload = split_wire(vector.wire)
    with pytest.raises(RemoteProtocolError):
        vector.parse(payload[: vector.cut])


# -- session state ------------------------------------------------------------------

STATE_VECTORS = [
    (unhex("00 0f 0a") + b"autocommit\x03OFF", (SystemVariableChange("autocommit", "OFF"),)),
    (unhex("01 05 04 74 65 73 74"), (SchemaChange("test"),)),
    # Servers send the bare '1' (Session_state_change_tracker::store); the docs' example
    # "03 02 01 31" mislabels the type.
    (unhex("02 01 31"), (StateChanged(),)),
    (b"\x03\x0c\x00\x0a" + b"uuid:1-100", (GtidsChange("uuid:1-100"),)),
    (b"\x04\x13\x12START TRANSACTION;", (TransactionCharacteristicsChange("START TRANSACTION;"),)),
    (b"\x05\x09\x08T_______", (TransactionStateChange("T_______"),)),
    (b"\x09\x02ab", (UnknownStateChange(9, b"ab"),)),
    (
        b"\x00\x10\x09last_gtid\x050-1-5\x01\x05\x04test",
        (SystemVariableChange("last_gtid", "0-1-5"), SchemaChange("test")),
    ),
]


@pytest.mark.parametrize(("wire", "changes"), STATE_VECTORS)
def test_session_state(wire: bytes, changes: tuple[Any, ...]) -> None:
    assert parse_session_state(wire) == changes
    assert build_session_state(changes) == wire
    with pytest.raises(RemoteProtocolError):
        parse_session_state(wire[:-1])


def test_system_variables_block_with_several_pairs() -> None:
    # MariaDB documents "while there is remaining data" inside one block.
    block = b"\x03a=1\x011\x03b=2\x012"
    wire = bytes((0, len(block))) + block
    assert parse_session_state(wire) == (
        SystemVariableChange("a=1", "1"),
        SystemVariableChange("b=2", "2"),
    )


def test_malformed_schema_block() -> None:
    with pytest.raises(RemoteProtocolError):
        parse_session_state(unhex("01 05 09 74 65 73 74"))


def test_ok_sets_state_changed_flag_when_state_given() -> None:
    ok = OkPacket(session_state=(SchemaChange("app"),))
    parsed = parse_ok(build_ok(ok, TRACK), TRACK)
    assert parsed.status & ServerStatus.SERVER_SESSION_STATE_CHANGED
    assert parsed.session_state == (SchemaChange("app"),)


def test_ok_drops_state_without_session_track() -> None:
    ok = OkPacket(session_state=(SchemaChange("app"),))
    assert build_ok(ok, P41) == unhex("00 00 00 02 00 00 00")


def test_ok_without_protocol_41() -> None:
    assert build_ok(OkPacket(1, 2), C.CLIENT_TRANSACTIONS) == unhex("00 01 02 02 00")
    assert parse_ok(unhex("00 01 02 02 00"), C.CLIENT_TRANSACTIONS) == OkPacket(1, 2)
    assert parse_ok(unhex("00 01 02"), C(0)) == OkPacket(1, 2, ServerStatus(0))
    assert build_ok(OkPacket(1, 2), C(0)) == unhex("00 01 02")


def test_ok_rejects_other_headers() -> None:
    with pytest.raises(RemoteProtocolError):
        parse_ok(unhex("ff 00 00 02 00 00 00"), P41)


# -- ERR / EOF helpers ---------------------------------------------------------------


def test_build_err_defaults_sqlstate_from_code() -> None:
    assert build_err(1045, "denied") == unhex("ff 15 04 23") + b"28000denied"
    assert build_err(1045, "denied", caps=C(0)) == unhex("ff 15 04") + b"denied"


def test_build_err_refuses_bad_sqlstate() -> None:
    with pytest.raises(LocalProtocolError):
        build_err(1045, "denied", "280")


def test_err_from_mysql_error_and_back() -> None:
    error = MySQLError(1049, "Unknown database 'x'", "42000")
    parsed = parse_err(err_from(error))
    assert parsed == ErrPacket(1049, "42000", "Unknown database 'x'")
    back = parsed.to_error()
    assert (back.code, back.sqlstate, back.message) == (1049, "42000", "Unknown database 'x'")


def test_eof_without_protocol_41_and_is_eof() -> None:
    assert build_eof(EofPacket(), C(0)) == b"\xfe"
    assert parse_eof(b"\xfe", C(0)) == EofPacket(0, ServerStatus(0))
    assert is_eof(b"\xfe\x00\x00\x02\x00")
    assert not is_eof(b"\xfe" + bytes(8))  # 9 bytes: an int<lenenc>, not an EOF
    assert not is_eof(b"")
    with pytest.raises(RemoteProtocolError):
        parse_eof(b"\x00\x00\x00\x02\x00")


# -- connection phase ------------------------------------------------------------------


def test_handshake_v10_with_plugin_auth_and_mariadb_extended_caps() -> None:
    caps = (
        C(0xF7FE) | C.CLIENT_PLUGIN_AUTH | C.CLIENT_SECURE_CONNECTION
    ) | C.MARIADB_CLIENT_STMT_BULK_OPERATIONS
    handshake = HandshakeV10(
        "5.5.5-10.11.6-MariaDB", 7, b"12345678abcdefghijkl", caps, 45, AUTOCOMMIT, NATIVE
    )
    payload = build_handshake_v10(handshake)
    assert payload[-22:] == NATIVE.encode() + b"\x00"
    assert payload[payload.index(b"\x00", 1) + 1 + 4 + 8 + 1 + 7] == 21  # auth_plugin_data_len
    assert payload[payload.index(b"\x00", 1) + 1 + 4 + 8 + 1 + 8 + 6] == 4  # extended caps
    assert parse_handshake_v10(payload) == handshake


def test_handshake_v10_mysql_ignores_reserved_bytes() -> None:
    # With CLIENT_LONG_PASSWORD set (a MySQL server), the last 4 reserved bytes mean nothing.
    caps = C(0xFFFF) | C.CLIENT_PLUGIN_AUTH
    handshake = HandshakeV10("8.0.36", 9, b"A" * 20, caps, 255, AUTOCOMMIT, "caching_sha2_password")
    payload = bytearray(build_handshake_v10(handshake))
    start = payload.index(b"\x00", 1) + 1 + 4 + 8 + 1 + 8 + 6
    payload[start : start + 4] = b"\xff\xff\xff\xff"
    assert parse_handshake_v10(bytes(payload)) == handshake


def test_handshake_v10_rejects_other_protocol_versions() -> None:
    with pytest.raises(RemoteProtocolError):
        parse_handshake_v10(b"\x09" + b"5.0\x00" + bytes(40))


def test_handshake_response_mariadb_extended_caps() -> None:
    caps = (
        C.CLIENT_PROTOCOL_41
        | C.CLIENT_SECURE_CONNECTION
        | C.CLIENT_PLUGIN_AUTH
        | C.MARIADB_CLIENT_PROGRESS
        | C.MARIADB_CLIENT_EXTENDED_TYPE_INFO
    )
    response = HandshakeResponse41(caps, 1 << 24, 45, "u", b"x" * 20, None, NATIVE)
    payload = build_handshake_response(response)
    assert payload[28:32] == (0b01001).to_bytes(4, "little")
    assert parse_handshake_response(payload) == response


def test_handshake_response_auth_response_encodings() -> None:
    base = C.CLIENT_PROTOCOL_41 | C.CLIENT_LONG_PASSWORD
    long_reply = bytes(range(256)) + b"!"
    lenenc = HandshakeResponse41(
        base | C.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA, 0, 8, "u", long_reply
    )
    assert parse_handshake_response(build_handshake_response(lenenc)) == lenenc
    nul = HandshakeResponse41(base, 0, 8, "u", b"old-style")
    assert build_handshake_response(nul).endswith(b"u\x00old-style\x00")
    assert parse_handshake_response(build_handshake_response(nul)) == nul
    with pytest.raises(LocalProtocolError):
        build_handshake_response(
            HandshakeResponse41(base | C.CLIENT_SECURE_CONNECTION, 0, 8, "u", long_reply)
        )


def test_handshake_response_plugin_name_may_be_left_out() -> None:
    caps = C.CLIENT_PROTOCOL_41 | C.CLIENT_SECURE_CONNECTION | C.CLIENT_PLUGIN_AUTH
    response = HandshakeResponse41(caps | C.CLIENT_LONG_PASSWORD, 0, 8, "u", b"")
    assert parse_handshake_response(build_handshake_response(response)).auth_plugin_name is None


def test_handshake_response_320_is_refused() -> None:
    payload = unhex("85 24 00 00 00 6f 6c 64 00 47 44 53 43 51 59 52 5f") + bytes(20)
    with pytest.raises(RemoteProtocolError, match="CLIENT_PROTOCOL_41"):
        parse_handshake_response(payload)


def test_ssl_request_detection() -> None:
    _, payload = split_wire(VECTORS[2].wire)
    assert is_ssl_request(payload)
    assert not is_ssl_request(payload + b"root\x00")
    no_ssl = bytes([payload[0], payload[1] & ~0x08]) + payload[2:]
    assert not is_ssl_request(no_ssl)
    with pytest.raises(RemoteProtocolError):
        parse_ssl_request(no_ssl)


AUTH_SWITCH_WIRE = unhex("2c 00 00 02 fe") + b"mysql_native_password\x00" + b"A" * 20 + b"\x00"


def test_auth_switch_request() -> None:
    seq, payload = split_wire(AUTH_SWITCH_WIRE)
    request = parse_auth_switch_request(payload)
    assert request == AuthSwitchRequest(NATIVE, b"A" * 20 + b"\x00")
    assert frame(build_auth_switch_request(request), seq) == AUTH_SWITCH_WIRE
    with pytest.raises(RemoteProtocolError):
        parse_auth_switch_request(b"\xfe")  # OldAuthSwitchRequest: not supported
    with pytest.raises(RemoteProtocolError):
        parse_auth_switch_request(b"\x01abc\x00")


def test_auth_more_data_carrying_a_public_key() -> None:
    pem = b"-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n"
    assert parse_auth_more_data(b"\x01" + pem) == AuthMoreData(pem)
    assert build_auth_more_data(AuthMoreData(pem)) == b"\x01" + pem


CHANGE_USER_CAPS = (
    C.CLIENT_PROTOCOL_41
    | C.CLIENT_SECURE_CONNECTION
    | C.CLIENT_PLUGIN_AUTH
    | C.CLIENT_CONNECT_ATTRS
)
CHANGE_USER_WIRE = (
    unhex("11")
    + b"app\x00"
    + b"\x14"
    + bytes(range(20))
    + b"appdb\x00"
    + b"\x2d\x00"
    + b"mysql_native_password\x00"
    + b"\x0a\x04_pid\x041234"
)


def test_change_user_round_trip_and_truncation() -> None:
    change = parse_change_user(CHANGE_USER_WIRE, CHANGE_USER_CAPS)
    assert change == ChangeUser("app", bytes(range(20)), "appdb", 45, NATIVE, {"_pid": "1234"})
    assert build_change_user(change, CHANGE_USER_CAPS) == CHANGE_USER_WIRE
    with pytest.raises(RemoteProtocolError):
        parse_change_user(CHANGE_USER_WIRE[:-1], CHANGE_USER_CAPS)


def test_change_user_without_optional_trailer() -> None:
    wire = b"\x11app\x00\x00\x00"
    change = parse_change_user(wire, CHANGE_USER_CAPS)
    assert change == ChangeUser("app", b"", "", None, None, {})
    assert build_change_user(change, CHANGE_USER_CAPS) == wire
    old = ChangeUser("app", b"scramble", "db")
    assert build_change_user(old, C.CLIENT_PROTOCOL_41) == b"\x11app\x00scramble\x00db\x00"
    assert parse_change_user(b"\x11app\x00scramble\x00db\x00", C.CLIENT_PROTOCOL_41) == old
    with pytest.raises(RemoteProtocolError):
        parse_change_user(b"\x03select 1", CHANGE_USER_CAPS)


# -- result sets ------------------------------------------------------------------------

# Text result set of SELECT repeat("a", 50), from the compressed-protocol page's example.
REPEAT_A_RESULT = (
    unhex(
        "01 00 00 01 01"
        " 25 00 00 02 03 64 65 66 00 00 00 0f 72 65 70 65 61 74 28 22 61 22 2c 20 35 30 29 00 0c"
        " 08 00 32 00 00 00 fd 01 00 1f 00 00"
        " 05 00 00 03 fe 00 00 02 00"
        " 33 00 00 04 32"
    )
    + b"a" * 50
    + unhex("05 00 00 05 fe 00 00 02 00")
)


def framed(payloads: list[bytes], first_seq: int = 1) -> bytes:
    return b"".join(frame(p, seq) for seq, p in enumerate(payloads, first_seq))


def test_result_set_matches_docs_example() -> None:
    # https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_compression_packet.html
    column = build_column_definition(
        'repeat("a", 50)', character_set=CharacterSet.LATIN1_SWEDISH_CI, column_length=50, flags=1
    )
    assert framed(build_result_set([column], [["a" * 50]], P41)) == REPEAT_A_RESULT


def test_result_set_deprecate_eof_ends_with_fe_ok() -> None:
    caps = TRACK | C.CLIENT_DEPRECATE_EOF
    payloads = build_result_set(["x"], [[1], [None]], caps)
    assert payloads[0] == b"\x01"
    assert payloads[2:] == [b"\x011", b"\xfb", unhex("fe 00 00 02 00 00 00")]
    assert parse_ok(payloads[-1], caps) == OkPacket()


def test_column_definition_defaults() -> None:
    # utf8mb4_general_ci, length 1024, VAR_STRING, no flags, decimals 0x1f, filler.
    fixed = unhex("2d 00 00 04 00 00 fd 00 00 1f 00 00")
    assert build_column_definition("name") == b"\x03def\x00\x00\x00\x04name\x00\x0c" + fixed
    long = build_column_definition("n", ColumnType.MYSQL_TYPE_LONGLONG, flags=0x81, decimals=0)
    assert long[-6:] == unhex("08 81 00 00 00 00")


def test_text_row_values() -> None:
    row = build_text_row([None, b"\x00\xff", "é", 42, True, "x" * 300])
    assert row == b"\xfb\x02\x00\xff\x02\xc3\xa9\x0242\x011\xfc\x2c\x01" + b"x" * 300


# -- MariaDB captures ---------------------------------------------------------------------


def read_hex_vector(path: Path) -> bytes:
    lines = [line.split("#", 1)[0] for line in path.read_text().splitlines()]
    return unhex(" ".join(lines))


CAPTURE_PARSERS: dict[str, tuple[Callable[[bytes], Any], Callable[[Any], bytes]]] = {
    "handshake_v10": (parse_handshake_v10, build_handshake_v10),
    "handshake_response": (parse_handshake_response, build_handshake_response),
    "auth_switch_request": (parse_auth_switch_request, build_auth_switch_request),
    "err": (parse_err, build_err_packet),
    "ok_track": (_ok_parser(TRACK | C.CLIENT_DEPRECATE_EOF), _ok_builder(TRACK)),
}


def capture_files() -> list[Path]:
    return sorted(VECTORS_DIR.glob("*.hex"))


@pytest.mark.parametrize("path", capture_files(), ids=lambda p: p.stem)
def test_handshake_vectors(path: Path) -> None:
    kind = next(k for k in CAPTURE_PARSERS if path.stem.endswith(k))
    parse, build = CAPTURE_PARSERS[kind]
    seq, payload = split_wire(read_hex_vector(path))
    assert frame(build(parse(payload)), seq) == read_hex_vector(path)
    cut = {"err": 2, "auth_switch_request": 5}.get(kind, -1)  # string<EOF> tails
    with pytest.raises(RemoteProtocolError):
        parse(payload[:cut])


def capture(stem: str) -> bytes:
    return split_wire(read_hex_vector(VECTORS_DIR / f"{stem}.hex"))[1]


def test_mariadb_greeting_decodes() -> None:
    greeting = parse_handshake_v10(capture("mariadb_handshake_v10"))
    assert greeting.server_version.startswith("5.5.5-10.11.")
    assert not greeting.capabilities & C.CLIENT_LONG_PASSWORD  # CLIENT_MYSQL clear: MariaDB
    assert greeting.capabilities & C.MARIADB_CLIENT_STMT_BULK_OPERATIONS
    assert greeting.capabilities & C.CLIENT_SESSION_TRACK
    assert len(greeting.auth_plugin_data) == 20
    assert greeting.auth_plugin_name == NATIVE


def test_mariadb_session_tracking_decodes() -> None:
    track = TRACK | C.CLIENT_DEPRECATE_EOF
    assert parse_ok(capture("mariadb_login_ok_track"), track).session_state == (
        SchemaChange("app"),
    )
    assert parse_ok(capture("mariadb_state_change_ok_track"), track).session_state == (
        StateChanged(),
    )
    autocommit = parse_ok(capture("mariadb_autocommit_ok_track"), track)
    assert autocommit.session_state == (SystemVariableChange("autocommit", "OFF"), StateChanged())
    assert not autocommit.status & AUTOCOMMIT
    assert parse_ok(capture("mariadb_use_schema_ok_track"), track).session_state == (
        SchemaChange("app"),
        StateChanged(),
    )


def test_client_responses_decode() -> None:
    cli = parse_handshake_response(capture("mariadb_cli_handshake_response"))
    assert cli.capabilities & C.MARIADB_CLIENT_PROGRESS  # extended caps from the filler
    assert cli.connect_attrs["_client_name"] == "libmariadb"
    assert (cli.username, cli.database, cli.auth_plugin_name) == ("app", "app", NATIVE)
    pymysql = parse_handshake_response(capture("pymysql_handshake_response"))
    assert pymysql.connect_attrs["_client_name"] == "pymysql"
    assert pymysql.capabilities & C.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    ours = parse_handshake_response(capture("rwproxy_handshake_response"))
    assert ours.capabilities & C.CLIENT_SESSION_TRACK and ours.database == "app"


def test_mariadb_refusals_decode() -> None:
    err = parse_err(capture("mariadb_access_denied_err"))
    assert (err.code, err.sqlstate) == (1045, "28000")
    assert err.message.startswith("Access denied for user 'app'@")
    switch = parse_auth_switch_request(capture("mariadb_auth_switch_request"))
    assert switch.plugin_name == NATIVE
    assert len(switch.plugin_data) == 21 and switch.plugin_data.endswith(b"\x00")


# -- fuzz ---------------------------------------------------------------------------------

ALL_CAPS = st.integers(0, (1 << 37) - 1).map(C)


@given(st.binary(max_size=200), ALL_CAPS)
def test_parsers_only_raise_remote_protocol_error(payload: bytes, caps: C) -> None:
    parsers: list[Callable[[bytes], object]] = [
        lambda p: parse_ok(p, caps),
        lambda p: parse_err(p, caps),
        lambda p: parse_eof(p, caps),
        parse_handshake_v10,
        parse_handshake_response,
        parse_ssl_request,
        parse_auth_switch_request,
        parse_auth_more_data,
        lambda p: parse_change_user(p, caps),
        parse_session_state,
    ]
    for parse in parsers:
        with contextlib.suppress(RemoteProtocolError):
            parse(payload)


TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=20)


@given(
    caps=ALL_CAPS,
    max_packet=st.integers(0, 0xFFFFFFFF),
    charset=st.integers(0, 255),
    username=TEXT,
    auth=st.binary(max_size=255),
    database=TEXT,
    plugin=TEXT,
    attrs=st.dictionaries(TEXT, TEXT, max_size=4),
)
def test_handshake_response_round_trip(
    caps: C,
    max_packet: int,
    charset: int,
    username: str,
    auth: bytes,
    database: str,
    plugin: str,
    attrs: dict[str, str],
) -> None:
    caps = caps | C.CLIENT_PROTOCOL_41 | C.CLIENT_SECURE_CONNECTION
    if caps & C.CLIENT_LONG_PASSWORD:
        caps = C(int(caps) & 0xFFFFFFFF)  # no MariaDB extended caps from a MySQL client
    response = HandshakeResponse41(
        caps,
        max_packet,
        charset,
        username,
        auth,
        database if caps & C.CLIENT_CONNECT_WITH_DB else None,
        plugin if caps & C.CLIENT_PLUGIN_AUTH else None,
        attrs if caps & C.CLIENT_CONNECT_ATTRS else {},
    )
    assert parse_handshake_response(build_handshake_response(response)) == response


@given(
    affected=st.integers(0, (1 << 64) - 1),
    insert_id=st.integers(0, 1 << 40),
    status=st.integers(0, 0xFFFF).map(ServerStatus),
    warnings=st.integers(0, 0xFFFF),
    info=st.binary(max_size=30),
    schema=TEXT,
)
def test_ok_round_trip(
    affected: int, insert_id: int, status: ServerStatus, warnings: int, info: bytes, schema: str
) -> None:
    state = (SchemaChange(schema),) if status & ServerStatus.SERVER_SESSION_STATE_CHANGED else ()
    ok = OkPacket(affected, insert_id, status, warnings, info, state)
    assert parse_ok(build_ok(ok, TRACK), TRACK) == ok
    assert parse_ok(build_ok(ok, P41), P41) == OkPacket(affected, insert_id, status, warnings, info)


def test_handshake_v10_of_an_old_server() -> None:
    # No CLIENT_SECURE_CONNECTION: only the 8-byte scramble, no part 2, no plugin name.
    handshake = HandshakeV10("4.1.0", 3, b"abcdefgh", C(0x0200 | 1), 8, AUTOCOMMIT, "")
    payload = build_handshake_v10(handshake)
    assert payload.endswith(bytes(10))
    assert parse_handshake_v10(payload) == handshake


def test_change_user_trailer_without_plugin_auth() -> None:
    caps = C.CLIENT_PROTOCOL_41 | C.CLIENT_SECURE_CONNECTION
    change = ChangeUser("u", b"", "", 33, "ignored", {"ignored": "too"})
    wire = build_change_user(change, caps)
    assert wire == b"\x11u\x00\x00\x00\x21\x00"
    assert parse_change_user(wire, caps) == ChangeUser("u", b"", "", 33)
    with_plugin = C.CLIENT_PLUGIN_AUTH | C.CLIENT_CONNECT_ATTRS | caps
    assert parse_change_user(wire, with_plugin) == ChangeUser("u", b"", "", 33)
