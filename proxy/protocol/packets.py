"""Packets of the connection phase and the generic responses: dataclasses + parse_*/build_*.

Theory of operation
-------------------
Each packet the proxy must *understand* (rather than forward as opaque bytes) is a frozen
dataclass named after the packet in the MySQL documentation, with a `parse_<name>(payload,
...)` that turns a payload (no 4-byte header: framing is `framing.py`'s job) into the
dataclass and a `build_<name>(...)` that turns it back into a payload. For every packet
`build(parse(p)) == p` for what real servers and clients send, which is how the tests check
them against the documentation's examples and against MariaDB captures.

Parsers trust nothing: every read goes through `codec.read_*`, so a short or lying payload
raises `RemoteProtocolError` and never `IndexError`. Text fields are decoded as UTF-8 with
`surrogateescape`, so any byte string survives a parse/build round trip unchanged and a
hostile peer cannot make us raise `UnicodeDecodeError`.

Several layouts depend on the capabilities both sides agreed on (`caps`), exactly as in the
documentation's `if capabilities & CLIENT_... {` rows; callers pass the *negotiated* flags.

MariaDB differences handled here: extended capabilities (bits 32-36 of `Capability`) travel in
the last 4 "reserved" bytes of HandshakeV10 and HandshakeResponse41 when the CLIENT_MYSQL bit
(`CLIENT_LONG_PASSWORD`, bit 0) is clear; MariaDB reports `last_gtid` through
SESSION_TRACK_SYSTEM_VARIABLES instead of SESSION_TRACK_GTIDS.

Result sets the proxy produces itself (`SHOW RWPROXY STATUS`, test servers) are built from
`build_column_definition`, `build_text_row` and `build_result_set`; result sets from backends
are never parsed here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from proxy.protocol.codec import (
    Buffer,
    read_bytes,
    read_eof_bytes,
    read_int,
    read_int1,
    read_lenenc_bytes,
    read_lenenc_int,
    read_nul_bytes,
    write_int,
    write_lenenc_bytes,
    write_lenenc_int,
    write_nul_bytes,
)
from proxy.protocol.constants import (
    AUTH_MORE_DATA_HEADER,
    AUTH_SWITCH_HEADER,
    EOF_HEADER,
    ERR_HEADER,
    OK_HEADER,
    Capability,
    CharacterSet,
    ColumnType,
    Command,
    ServerStatus,
    SessionTrackType,
    sqlstate_for,
)
from proxy.protocol.errors import LocalProtocolError, MySQLError, RemoteProtocolError

PROTOCOL_VERSION = 10
SSL_REQUEST_SIZE = 32
"""An SSLRequest is a HandshakeResponse41 cut right before the username: 4+4+1+23 bytes."""

_RESPONSE_FILLER = 23  # HandshakeResponse41: 19 reserved bytes + 4 (MariaDB extended caps)
_HANDSHAKE_RESERVED = 10  # HandshakeV10: 6 reserved bytes + 4 (MariaDB extended caps)
_AUTH_DATA_PART_1 = 8
_AUTH_DATA_PART_2_MIN = 13
_MARIADB_EXT_SHIFT = 32
_LOW32 = 0xFFFFFFFF
NOT_FIXED_DEC = 0x1F
"""`decimals` of a column that is not a fixed-point number (strings, computed values)."""

# The flags tested below as plain ints. Compiled with mypyc, `caps & _PROTOCOL_41` with `caps:
# int` is one machine instruction; with an IntFlag operand it runs enum's interpreted
# __and__ (0.5 us; a login tested about twenty).
_CONNECT_ATTRS: Final = int(Capability.CLIENT_CONNECT_ATTRS)
_CONNECT_WITH_DB: Final = int(Capability.CLIENT_CONNECT_WITH_DB)
_DEPRECATE_EOF: Final = int(Capability.CLIENT_DEPRECATE_EOF)
_LONG_PASSWORD: Final = int(Capability.CLIENT_LONG_PASSWORD)
_PLUGIN_AUTH: Final = int(Capability.CLIENT_PLUGIN_AUTH)
_PLUGIN_AUTH_LENENC_CLIENT_DATA: Final = int(Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA)
_PROTOCOL_41: Final = int(Capability.CLIENT_PROTOCOL_41)
_SECURE_CONNECTION: Final = int(Capability.CLIENT_SECURE_CONNECTION)
_SESSION_STATE_CHANGED: Final = int(ServerStatus.SERVER_SESSION_STATE_CHANGED)
_SESSION_TRACK: Final = int(Capability.CLIENT_SESSION_TRACK)
_SSL: Final = int(Capability.CLIENT_SSL)
_TRANSACTIONS: Final = int(Capability.CLIENT_TRANSACTIONS)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _expect_header(payload: Buffer, expected: int, what: str) -> int:
    header, pos = read_int1(payload, 0)
    if header != expected:
        raise RemoteProtocolError(f"{what}: expected header 0x{expected:02x}, got 0x{header:02x}")
    return pos


def _has_mariadb_ext_caps(caps: int) -> bool:
    """MariaDB sends extended capabilities when CLIENT_MYSQL (CLIENT_LONG_PASSWORD) is clear."""
    return not caps & _LONG_PASSWORD


def _split_caps(caps: int) -> tuple[int, int]:
    return int(caps) & _LOW32, int(caps) >> _MARIADB_EXT_SHIFT


# --------------------------------------------------------------------------------------
# Session state information (inside OK packets)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SystemVariableChange:
    """SESSION_TRACK_SYSTEM_VARIABLES: a tracked variable changed (MariaDB: `last_gtid`)."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """SESSION_TRACK_SCHEMA: the default database changed."""

    schema: str


@dataclass(frozen=True, slots=True)
class StateChanged:
    """SESSION_TRACK_STATE_CHANGE: some session state changed (data is the text '1')."""


@dataclass(frozen=True, slots=True)
class GtidsChange:
    """SESSION_TRACK_GTIDS (MySQL only): an encoding-spec byte, then the GTID set."""

    gtids: str
    encoding: int = 0


@dataclass(frozen=True, slots=True)
class TransactionCharacteristicsChange:
    """SESSION_TRACK_TRANSACTION_CHARACTERISTICS: SQL that recreates the transaction."""

    text: str


@dataclass(frozen=True, slots=True)
class TransactionStateChange:
    """SESSION_TRACK_TRANSACTION_STATE: 8 characters, e.g. 'T_______' inside BEGIN."""

    state: str


@dataclass(frozen=True, slots=True)
class UnknownStateChange:
    """A tracker type this module does not know; kept verbatim so it round-trips."""

    type: int
    data: bytes


SessionStateChange = (
    SystemVariableChange
    | SchemaChange
    | StateChanged
    | GtidsChange
    | TransactionCharacteristicsChange
    | TransactionStateChange
    | UnknownStateChange
)


def _parse_system_variables(data: bytes) -> list[SessionStateChange]:
    # MySQL sends one variable per block; MariaDB documents "while there is remaining data",
    # so a block may hold several name/value pairs.
    changes: list[SessionStateChange] = []
    pos = 0
    while pos < len(data):
        name, pos = read_lenenc_bytes(data, pos)
        value, pos = read_lenenc_bytes(data, pos)
        changes.append(SystemVariableChange(_text(name), _text(value)))
    return changes


def _parse_gtids(data: bytes) -> GtidsChange:
    encoding, pos = read_int1(data, 0)
    gtids, _ = read_lenenc_bytes(data, pos)
    return GtidsChange(_text(gtids), encoding)


def _parse_lenenc_text(data: bytes) -> str:
    value, _ = read_lenenc_bytes(data, 0)
    return _text(value)


def _parse_state_block(kind: int, data: bytes) -> list[SessionStateChange]:
    if kind == SessionTrackType.SESSION_TRACK_SYSTEM_VARIABLES:
        return _parse_system_variables(data)
    if kind == SessionTrackType.SESSION_TRACK_SCHEMA:
        return [SchemaChange(_parse_lenenc_text(data))]
    if kind == SessionTrackType.SESSION_TRACK_STATE_CHANGE:
        # Servers send the bare text '1' (no inner length), see Session_state_change_tracker.
        return [StateChanged()]
    if kind == SessionTrackType.SESSION_TRACK_GTIDS:
        return [_parse_gtids(data)]
    if kind == SessionTrackType.SESSION_TRACK_TRANSACTION_CHARACTERISTICS:
        return [TransactionCharacteristicsChange(_parse_lenenc_text(data))]
    if kind == SessionTrackType.SESSION_TRACK_TRANSACTION_STATE:
        return [TransactionStateChange(_parse_lenenc_text(data))]
    return [UnknownStateChange(kind, data)]


def parse_session_state(data: Buffer) -> tuple[SessionStateChange, ...]:
    """Session State Information: repeated `int<1> type, string<lenenc> data` blocks.

    https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_ok_packet.html#sect_protocol_basic_ok_packet_sessinfo
    """
    changes: list[SessionStateChange] = []
    pos = 0
    while pos < len(data):
        kind, pos = read_int1(data, pos)
        block, pos = read_lenenc_bytes(data, pos)
        changes.extend(_parse_state_block(kind, block))
    return tuple(changes)


def _state_block_data(change: SessionStateChange) -> tuple[int, bytes]:
    if isinstance(change, SystemVariableChange):
        data = write_lenenc_bytes(_raw(change.name)) + write_lenenc_bytes(_raw(change.value))
        return SessionTrackType.SESSION_TRACK_SYSTEM_VARIABLES, data
    if isinstance(change, SchemaChange):
        return SessionTrackType.SESSION_TRACK_SCHEMA, write_lenenc_bytes(_raw(change.schema))
    if isinstance(change, StateChanged):
        return SessionTrackType.SESSION_TRACK_STATE_CHANGE, b"1"
    if isinstance(change, GtidsChange):
        data = bytes((change.encoding,)) + write_lenenc_bytes(_raw(change.gtids))
        return SessionTrackType.SESSION_TRACK_GTIDS, data
    if isinstance(change, TransactionCharacteristicsChange):
        kind = SessionTrackType.SESSION_TRACK_TRANSACTION_CHARACTERISTICS
        return kind, write_lenenc_bytes(_raw(change.text))
    if isinstance(change, TransactionStateChange):
        kind = SessionTrackType.SESSION_TRACK_TRANSACTION_STATE
        return kind, write_lenenc_bytes(_raw(change.state))
    return change.type, change.data


def build_session_state(changes: Iterable[SessionStateChange]) -> bytes:
    """The inverse of `parse_session_state` (one block per change)."""
    parts = []
    for change in changes:
        kind, data = _state_block_data(change)
        parts.append(bytes((kind,)) + write_lenenc_bytes(data))
    return b"".join(parts)


# --------------------------------------------------------------------------------------
# OK / ERR / EOF
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OkPacket:
    """OK_Packet. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_ok_packet.html

    `info` is the human-readable text (bytes, as the server sent it); `session_state` is the
    decoded Session State Information, present only with CLIENT_SESSION_TRACK and
    SERVER_SESSION_STATE_CHANGED.
    """

    affected_rows: int = 0
    last_insert_id: int = 0
    status: ServerStatus = ServerStatus.SERVER_STATUS_AUTOCOMMIT
    warnings: int = 0
    info: bytes = b""
    session_state: tuple[SessionStateChange, ...] = ()


def _read_status_and_warnings(
    payload: Buffer, pos: int, caps: int
) -> tuple[ServerStatus, int, int]:
    if caps & _PROTOCOL_41:
        status, pos = read_int(payload, pos, 2)
        warnings, pos = read_int(payload, pos, 2)
        return ServerStatus(status), warnings, pos
    if caps & _TRANSACTIONS:
        status, pos = read_int(payload, pos, 2)
        return ServerStatus(status), 0, pos
    return ServerStatus(0), 0, pos


def _read_tracked_info(
    payload: Buffer, pos: int, status: int
) -> tuple[bytes, tuple[SessionStateChange, ...]]:
    info = b""
    if pos < len(payload):  # the info string is left out when it is empty and nothing changed
        info, pos = read_lenenc_bytes(payload, pos)
    if not status & _SESSION_STATE_CHANGED:
        return info, ()
    state, pos = read_lenenc_bytes(payload, pos)
    return info, parse_session_state(state)


def parse_ok(payload: Buffer, caps: int) -> OkPacket:
    """OK_Packet with header 0x00, or 0xFE when it ends a result set under DEPRECATE_EOF."""
    header, pos = read_int1(payload, 0)
    if header not in (OK_HEADER, EOF_HEADER):
        raise RemoteProtocolError(f"OK_Packet: unexpected header 0x{header:02x}")
    affected_rows, pos = read_lenenc_int(payload, pos)
    last_insert_id, pos = read_lenenc_int(payload, pos)
    status, warnings, pos = _read_status_and_warnings(payload, pos, caps)
    if caps & _SESSION_TRACK:
        info, state = _read_tracked_info(payload, pos, status)
    else:
        info, _ = read_eof_bytes(payload, pos)
        state = ()
    return OkPacket(affected_rows, last_insert_id, status, warnings, info, state)


def _write_status_and_warnings(status: int, warnings: int, caps: int) -> bytes:
    if caps & _PROTOCOL_41:
        return write_int(status, 2) + write_int(warnings, 2)
    if caps & _TRANSACTIONS:
        return write_int(status, 2)
    return b""


def _write_tracked_info(ok: OkPacket, status: int) -> bytes:
    # Same rule as the server's net_send_ok(): info only when non-empty or state changed.
    changed = bool(status & _SESSION_STATE_CHANGED)
    out = write_lenenc_bytes(ok.info) if changed or ok.info else b""
    if changed:
        out += write_lenenc_bytes(build_session_state(ok.session_state))
    return out


def build_ok(ok: OkPacket, caps: int, header: int = OK_HEADER) -> bytes:
    """Payload of `ok`. Pass header=0xFE for the OK that ends a result set (DEPRECATE_EOF).

    With CLIENT_SESSION_TRACK, a non-empty `session_state` sets SERVER_SESSION_STATE_CHANGED;
    without it, `session_state` cannot be sent and is dropped.
    """
    status = int(ok.status)
    if ok.session_state and caps & _SESSION_TRACK:
        status |= _SESSION_STATE_CHANGED
    out = (
        bytes((header,)) + write_lenenc_int(ok.affected_rows) + write_lenenc_int(ok.last_insert_id)
    )
    out += _write_status_and_warnings(status, ok.warnings, caps)
    if caps & _SESSION_TRACK:
        return out + _write_tracked_info(ok, status)
    return out + ok.info


@dataclass(frozen=True, slots=True)
class ErrPacket:
    """ERR_Packet. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_err_packet.html

    `sqlstate` is None when the packet carried no '#' marker (sent before capabilities were
    negotiated, or to a client without CLIENT_PROTOCOL_41).
    """

    code: int
    sqlstate: str | None
    message: str

    def to_error(self) -> MySQLError:
        return MySQLError(self.code, self.message, self.sqlstate)


def parse_err(payload: Buffer, caps: int = Capability.CLIENT_PROTOCOL_41) -> ErrPacket:
    """ERR_Packet, with or without the `'#' + 5-character SQLSTATE` marker.

    The marker is recognised by its '#' whatever `caps` says: servers send ERRs before the
    client's capabilities are known, and some send the marker there anyway.
    """
    pos = _expect_header(payload, ERR_HEADER, "ERR_Packet")
    code, pos = read_int(payload, pos, 2)
    sqlstate = None
    if pos < len(payload) and payload[pos] == ord("#"):
        state, pos = read_bytes(payload, pos + 1, 5)
        sqlstate = _text(state)
    message, _ = read_eof_bytes(payload, pos)
    return ErrPacket(code, sqlstate, _text(message))


def build_err(
    code: int,
    message: str,
    sqlstate: str | None = None,
    caps: int = Capability.CLIENT_PROTOCOL_41,
) -> bytes:
    """Payload of an ERR. With CLIENT_PROTOCOL_41 the SQLSTATE (default: from the code) is sent."""
    out = bytes((ERR_HEADER,)) + write_int(code, 2)
    if caps & _PROTOCOL_41:
        state = sqlstate or sqlstate_for(code)
        if len(state) != 5:
            raise LocalProtocolError(f"SQLSTATE must be 5 characters, got {state!r}")
        out += b"#" + _raw(state)
    return out + _raw(message)


def build_err_packet(err: ErrPacket, caps: int = Capability.CLIENT_PROTOCOL_41) -> bytes:
    """Payload of `err` exactly as parsed: the marker is written only if it had a SQLSTATE."""
    if err.sqlstate is None:
        caps &= ~_PROTOCOL_41
    return build_err(err.code, err.message, err.sqlstate, caps)


def err_from(error: MySQLError, caps: int = Capability.CLIENT_PROTOCOL_41) -> bytes:
    """Payload of the ERR that reports `error` to a peer that negotiated `caps`."""
    return build_err(error.code, error.message, error.sqlstate, caps)


@dataclass(frozen=True, slots=True)
class EofPacket:
    """EOF_Packet. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_eof_packet.html"""

    warnings: int = 0
    status: ServerStatus = ServerStatus.SERVER_STATUS_AUTOCOMMIT


def is_eof(payload: Buffer) -> bool:
    """0xFE starts an EOF only in a packet shorter than 9 bytes (else it is an int<lenenc>)."""
    return 0 < len(payload) < 9 and payload[0] == EOF_HEADER


def parse_eof(payload: Buffer, caps: int = Capability.CLIENT_PROTOCOL_41) -> EofPacket:
    if not is_eof(payload):
        raise RemoteProtocolError("EOF_Packet: expected 0xFE and a length below 9")
    if not caps & _PROTOCOL_41:
        return EofPacket(0, ServerStatus(0))
    warnings, pos = read_int(payload, 1, 2)
    status, _ = read_int(payload, pos, 2)
    return EofPacket(warnings, ServerStatus(status))


def build_eof(eof: EofPacket, caps: int = Capability.CLIENT_PROTOCOL_41) -> bytes:
    if not caps & _PROTOCOL_41:
        return bytes((EOF_HEADER,))
    return bytes((EOF_HEADER,)) + write_int(eof.warnings, 2) + write_int(int(eof.status), 2)


# --------------------------------------------------------------------------------------
# Connection phase
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeV10:
    """Protocol::HandshakeV10.
    https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_handshake_v10.html

    `auth_plugin_data` is the scramble without the NUL that servers append to it (20 bytes
    for mysql_native_password and caching_sha2_password). `capabilities` includes the MariaDB
    extended capabilities (bits 32-36) when the server sent them.
    """

    server_version: str
    connection_id: int
    auth_plugin_data: bytes
    capabilities: Capability
    character_set: int
    status: ServerStatus
    auth_plugin_name: str


def _read_server_caps(payload: Buffer, pos: int) -> tuple[Capability, int, int, int, int]:
    """capability_flags_1 .. reserved: returns (caps, charset, status, auth_data_len, pos)."""
    caps_low, pos = read_int(payload, pos, 2)
    charset, pos = read_int1(payload, pos)
    status, pos = read_int(payload, pos, 2)
    caps_high, pos = read_int(payload, pos, 2)
    data_len, pos = read_int1(payload, pos)
    _, pos = read_bytes(payload, pos, _HANDSHAKE_RESERVED - 4)
    ext_caps, pos = read_int(payload, pos, 4)
    caps = Capability(caps_low | caps_high << 16)
    if _has_mariadb_ext_caps(caps):
        caps |= Capability(ext_caps << _MARIADB_EXT_SHIFT)
    return caps, charset, status, data_len, pos


def _read_scramble_tail(payload: Buffer, pos: int, caps: int, data_len: int) -> tuple[bytes, str]:
    """auth-plugin-data-part-2 ($len = MAX(13, auth_plugin_data_len - 8)) and the plugin name."""
    part2 = b""
    if caps & _SECURE_CONNECTION:
        part2, pos = read_bytes(payload, pos, max(_AUTH_DATA_PART_2_MIN, data_len - 8))
    plugin = b""
    if caps & _PLUGIN_AUTH:
        plugin, pos = read_nul_bytes(payload, pos)
    return part2, _text(plugin)


def parse_handshake_v10(payload: Buffer) -> HandshakeV10:
    pos = _expect_header(payload, PROTOCOL_VERSION, "Protocol::HandshakeV10")
    version, pos = read_nul_bytes(payload, pos)
    connection_id, pos = read_int(payload, pos, 4)
    part1, pos = read_bytes(payload, pos, _AUTH_DATA_PART_1)
    caps, charset, status, data_len, pos = _read_server_caps(payload, pos + 1)  # + filler
    part2, plugin = _read_scramble_tail(payload, pos, caps, data_len)
    data = part1 + part2
    if data.endswith(b"\x00"):  # the scramble is sent NUL-terminated
        data = data[:-1]
    return HandshakeV10(
        _text(version), connection_id, data, caps, charset, ServerStatus(status), plugin
    )


def build_handshake_v10(handshake: HandshakeV10) -> bytes:
    caps = int(handshake.capabilities)
    low, ext = _split_caps(caps)
    data = handshake.auth_plugin_data + b"\x00"
    out = bytes((PROTOCOL_VERSION,)) + write_nul_bytes(_raw(handshake.server_version))
    out += write_int(handshake.connection_id, 4) + data[:8].ljust(8, b"\x00") + b"\x00"
    out += write_int(low & 0xFFFF, 2) + bytes((handshake.character_set,))
    out += write_int(int(handshake.status), 2) + write_int(low >> 16, 2)
    out += bytes((len(data) if caps & _PLUGIN_AUTH else 0,))
    out += bytes(6) + (write_int(ext, 4) if _has_mariadb_ext_caps(caps) else bytes(4))
    if caps & _SECURE_CONNECTION:
        out += data[8:].ljust(_AUTH_DATA_PART_2_MIN, b"\x00")
    if caps & _PLUGIN_AUTH:
        out += write_nul_bytes(_raw(handshake.auth_plugin_name))
    return out


@dataclass(frozen=True, slots=True)
class SslRequest:
    """Protocol::SSLRequest: the first 32 bytes of a HandshakeResponse41, with CLIENT_SSL.
    https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_ssl_request.html
    """

    capabilities: Capability
    max_packet_size: int
    character_set: int


def peek_capabilities(payload: Buffer) -> int:
    """The lower 16 capability bits, readable in any client response (even HandshakeResponse320)."""
    caps, _ = read_int(payload, 0, 2)
    return caps


def is_ssl_request(payload: Buffer) -> bool:
    return len(payload) == SSL_REQUEST_SIZE and bool(peek_capabilities(payload) & _SSL)


def _read_response_fixed(payload: Buffer) -> tuple[int, int, int, int]:
    caps, pos = read_int(payload, 0, 4)
    max_packet_size, pos = read_int(payload, pos, 4)
    charset, pos = read_int1(payload, pos)
    _, pos = read_bytes(payload, pos, _RESPONSE_FILLER - 4)
    ext_caps, pos = read_int(payload, pos, 4)
    if _has_mariadb_ext_caps(caps):
        caps |= ext_caps << _MARIADB_EXT_SHIFT
    return caps, max_packet_size, charset, pos


def parse_ssl_request(payload: Buffer) -> SslRequest:
    if not is_ssl_request(payload):
        raise RemoteProtocolError("Protocol::SSLRequest: expected 32 bytes with CLIENT_SSL")
    caps, max_packet_size, charset, _ = _read_response_fixed(payload)
    return SslRequest(Capability(caps), max_packet_size, charset)


def _write_response_fixed(caps: int, max_packet_size: int, charset: int) -> bytes:
    low, ext = _split_caps(caps)
    reserved = write_int(ext, 4) if _has_mariadb_ext_caps(caps) else bytes(4)
    return (
        write_int(low, 4)
        + write_int(max_packet_size, 4)
        + bytes((charset,))
        + bytes(_RESPONSE_FILLER - 4)
        + reserved
    )


def build_ssl_request(request: SslRequest) -> bytes:
    caps = request.capabilities | Capability.CLIENT_SSL
    return _write_response_fixed(caps, request.max_packet_size, request.character_set)


@dataclass(frozen=True, slots=True)
class HandshakeResponse41:
    """Protocol::HandshakeResponse41.
    https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_handshake_response.html

    `database` is None without CLIENT_CONNECT_WITH_DB; `auth_plugin_name` is None when the
    client did not send one (no CLIENT_PLUGIN_AUTH, or an old client that left it out).
    """

    capabilities: Capability
    max_packet_size: int
    character_set: int
    username: str
    auth_response: bytes
    database: str | None = None
    auth_plugin_name: str | None = None
    connect_attrs: dict[str, str] = field(default_factory=dict)


def _read_auth_response(payload: Buffer, pos: int, caps: int) -> tuple[bytes, int]:
    if caps & _PLUGIN_AUTH_LENENC_CLIENT_DATA:
        return read_lenenc_bytes(payload, pos)
    if caps & _SECURE_CONNECTION:
        size, pos = read_int1(payload, pos)
        return read_bytes(payload, pos, size)
    return read_nul_bytes(payload, pos)


def _write_auth_response(data: bytes, caps: int) -> bytes:
    if caps & _PLUGIN_AUTH_LENENC_CLIENT_DATA:
        return write_lenenc_bytes(data)
    if caps & _SECURE_CONNECTION:
        if len(data) > 0xFF:
            raise LocalProtocolError("auth response longer than 255 bytes needs LENENC_CLIENT_DATA")
        return bytes((len(data),)) + data
    return write_nul_bytes(data)


def parse_connect_attrs(payload: Buffer, pos: int) -> tuple[dict[str, str], int]:
    """`int<lenenc>` total length, then `string<lenenc>` key/value pairs filling it."""
    block, pos = read_lenenc_bytes(payload, pos)
    attrs: dict[str, str] = {}
    inner = 0
    while inner < len(block):
        key, inner = read_lenenc_bytes(block, inner)
        value, inner = read_lenenc_bytes(block, inner)
        attrs[_text(key)] = _text(value)
    return attrs, pos


def build_connect_attrs(attrs: Mapping[str, str]) -> bytes:
    block = b"".join(
        [
            write_lenenc_bytes(_raw(key)) + write_lenenc_bytes(_raw(value))
            for key, value in attrs.items()
        ]
    )
    return write_lenenc_bytes(block)


def _read_optional_nul_text(payload: Buffer, pos: int) -> tuple[str | None, int]:
    # The client library may leave the plugin name out entirely; a name that is present
    # must be NUL-terminated.
    if pos >= len(payload):
        return None, pos
    value, pos = read_nul_bytes(payload, pos)
    return _text(value), pos


def parse_handshake_response(payload: Buffer) -> HandshakeResponse41:
    """Protocol::HandshakeResponse41 (clients without CLIENT_PROTOCOL_41 are refused)."""
    caps, max_packet_size, charset, pos = _read_response_fixed(payload)
    if not caps & _PROTOCOL_41:
        raise RemoteProtocolError("HandshakeResponse320 (no CLIENT_PROTOCOL_41) is not supported")
    username, pos = read_nul_bytes(payload, pos)
    auth_response, pos = _read_auth_response(payload, pos, caps)
    database = None
    if caps & _CONNECT_WITH_DB:
        raw_db, pos = read_nul_bytes(payload, pos)
        database = _text(raw_db)
    plugin = None
    if caps & _PLUGIN_AUTH:
        plugin, pos = _read_optional_nul_text(payload, pos)
    attrs: dict[str, str] = {}
    if caps & _CONNECT_ATTRS:
        attrs, pos = parse_connect_attrs(payload, pos)
    return HandshakeResponse41(
        Capability(caps),
        max_packet_size,
        charset,
        _text(username),
        auth_response,
        database,
        plugin,
        attrs,
    )


def build_handshake_response(response: HandshakeResponse41) -> bytes:
    caps = int(response.capabilities)
    out = _write_response_fixed(caps, response.max_packet_size, response.character_set)
    out += write_nul_bytes(_raw(response.username))
    out += _write_auth_response(response.auth_response, caps)
    if caps & _CONNECT_WITH_DB:
        out += write_nul_bytes(_raw(response.database or ""))
    if caps & _PLUGIN_AUTH and response.auth_plugin_name is not None:
        out += write_nul_bytes(_raw(response.auth_plugin_name))
    if caps & _CONNECT_ATTRS:
        out += build_connect_attrs(response.connect_attrs)
    return out


@dataclass(frozen=True, slots=True)
class AuthSwitchRequest:
    """Protocol::AuthSwitchRequest (0xFE).
    https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_auth_switch_request.html

    `plugin_data` is kept verbatim: servers append a NUL to a 20-byte scramble.
    """

    plugin_name: str
    plugin_data: bytes


def parse_auth_switch_request(payload: Buffer) -> AuthSwitchRequest:
    pos = _expect_header(payload, AUTH_SWITCH_HEADER, "Protocol::AuthSwitchRequest")
    name, pos = read_nul_bytes(payload, pos)  # a lone 0xFE (OldAuthSwitchRequest) raises here
    data, _ = read_eof_bytes(payload, pos)
    return AuthSwitchRequest(_text(name), data)


def build_auth_switch_request(request: AuthSwitchRequest) -> bytes:
    return (
        bytes((AUTH_SWITCH_HEADER,))
        + write_nul_bytes(_raw(request.plugin_name))
        + request.plugin_data
    )


@dataclass(frozen=True, slots=True)
class AuthMoreData:
    """Protocol::AuthMoreData (0x01): plugin data from the server, wrapped so it is not an OK/ERR.
    https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_auth_more_data.html
    """

    data: bytes


def parse_auth_more_data(payload: Buffer) -> AuthMoreData:
    pos = _expect_header(payload, AUTH_MORE_DATA_HEADER, "Protocol::AuthMoreData")
    data, _ = read_eof_bytes(payload, pos)
    return AuthMoreData(data)


def build_auth_more_data(more: AuthMoreData) -> bytes:
    return bytes((AUTH_MORE_DATA_HEADER,)) + more.data


@dataclass(frozen=True, slots=True)
class ChangeUser:
    """COM_CHANGE_USER. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_change_user.html

    Unlike HandshakeResponse41, the auth data always has a 1-byte length (with
    CLIENT_SECURE_CONNECTION) and the character set is int<2>; both are optional trailers.
    """

    username: str
    auth_response: bytes
    database: str = ""
    character_set: int | None = None
    auth_plugin_name: str | None = None
    connect_attrs: dict[str, str] = field(default_factory=dict)


def _read_change_user_auth(payload: Buffer, pos: int, caps: int) -> tuple[bytes, int]:
    if caps & _SECURE_CONNECTION:
        size, pos = read_int1(payload, pos)
        return read_bytes(payload, pos, size)
    return read_nul_bytes(payload, pos)


def _read_change_user_tail(
    payload: Buffer, pos: int, caps: int
) -> tuple[int | None, str | None, dict[str, str]]:
    if pos >= len(payload):  # "if more data available"
        return None, None, {}
    charset, pos = read_int(payload, pos, 2)
    plugin = None
    if caps & _PLUGIN_AUTH:
        plugin, pos = _read_optional_nul_text(payload, pos)
    attrs: dict[str, str] = {}
    if caps & _CONNECT_ATTRS and pos < len(payload):
        attrs, pos = parse_connect_attrs(payload, pos)
    return charset, plugin, attrs


def parse_change_user(payload: Buffer, caps: int) -> ChangeUser:
    pos = _expect_header(payload, Command.COM_CHANGE_USER, "COM_CHANGE_USER")
    username, pos = read_nul_bytes(payload, pos)
    auth_response, pos = _read_change_user_auth(payload, pos, caps)
    database, pos = read_nul_bytes(payload, pos)
    charset, plugin, attrs = _read_change_user_tail(payload, pos, caps)
    return ChangeUser(_text(username), auth_response, _text(database), charset, plugin, attrs)


def build_change_user(change: ChangeUser, caps: int) -> bytes:
    out = bytes((Command.COM_CHANGE_USER,)) + write_nul_bytes(_raw(change.username))
    if caps & _SECURE_CONNECTION:
        out += bytes((len(change.auth_response),)) + change.auth_response
    else:
        out += write_nul_bytes(change.auth_response)
    out += write_nul_bytes(_raw(change.database))
    if change.character_set is None:
        return out
    out += write_int(change.character_set, 2)
    if caps & _PLUGIN_AUTH and change.auth_plugin_name is not None:
        out += write_nul_bytes(_raw(change.auth_plugin_name))
    if caps & _CONNECT_ATTRS:
        out += build_connect_attrs(change.connect_attrs)
    return out


# --------------------------------------------------------------------------------------
# Result sets the proxy answers by itself
# --------------------------------------------------------------------------------------


def build_column_definition(
    name: str,
    type: ColumnType = ColumnType.MYSQL_TYPE_VAR_STRING,
    *,
    catalog: str = "def",
    schema: str = "",
    table: str = "",
    org_table: str = "",
    org_name: str = "",
    character_set: int = CharacterSet.UTF8MB4_GENERAL_CI,
    column_length: int = 1024,
    flags: int = 0,
    decimals: int = NOT_FIXED_DEC,
) -> bytes:
    """Protocol::ColumnDefinition41 payload.
    https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response_text_resultset_column_definition.html
    """
    names = (catalog, schema, table, org_table, name, org_name)
    out = b"".join([write_lenenc_bytes(_raw(text)) for text in names])
    out += write_lenenc_int(0x0C)  # length of the fixed-length fields that follow
    out += write_int(character_set, 2) + write_int(column_length, 4) + bytes((type,))
    return out + write_int(flags, 2) + bytes((decimals,)) + bytes(2)


TextValue = bytes | str | int | None


def _text_value(value: TextValue) -> bytes:
    if value is None:
        return bytes((0xFB,))  # NULL, not a length
    if isinstance(value, bytes):
        return write_lenenc_bytes(value)
    if isinstance(value, int):  # bool included: True -> "1", like the server
        return write_lenenc_bytes(str(int(value)).encode())
    return write_lenenc_bytes(_raw(value))


def build_text_row(values: Sequence[TextValue]) -> bytes:
    """ResultsetRow (text protocol): each value a string<lenenc>, NULL as 0xFB.
    https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response_text_resultset_row.html
    """
    return b"".join([_text_value(value) for value in values])


def build_result_set(
    columns: Sequence[str | bytes],
    rows: Iterable[Sequence[TextValue]],
    caps: int,
    status: ServerStatus = ServerStatus.SERVER_STATUS_AUTOCOMMIT,
) -> list[bytes]:
    """Payloads of a whole text result set, to be framed from sequence id 1.
    https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response_text_resultset.html

    A column is a name (a VAR_STRING column) or an already built ColumnDefinition41 payload.
    Column definitions are followed by an EOF unless CLIENT_DEPRECATE_EOF; the rows end with
    an EOF, or with an OK whose header is 0xFE under CLIENT_DEPRECATE_EOF.
    """
    payloads = [write_lenenc_int(len(columns))]
    payloads += [c if isinstance(c, bytes) else build_column_definition(c) for c in columns]
    deprecate_eof = bool(caps & _DEPRECATE_EOF)
    if not deprecate_eof:
        payloads.append(build_eof(EofPacket(0, status), caps))
    payloads += [build_text_row(row) for row in rows]
    if deprecate_eof:
        payloads.append(build_ok(OkPacket(0, 0, status, 0), caps, header=EOF_HEADER))
    else:
        payloads.append(build_eof(EofPacket(0, status), caps))
    return payloads
