"""ResponseTracker: where one command's reply ends, and how it ended, without decoding rows.

https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response.html
https://mariadb.com/kb/en/result-set-packets/

Theory of operation
-------------------
The proxy forwards a backend's reply to the client as whole received chunks. To pipeline
its own commands, to know when a connection is free again, and to learn the transaction
state, it must know where each reply ends. `ResponseTracker` is fed those chunks
(`feed(data) -> consumed`) and walks them packet by packet, reading each 4-byte header and
at most the first payload byte. Only the few packets that decide the shape of the reply
are copied whole (`_capture`): the first packet (OK, ERR, LOCAL INFILE request, column
count, PREPARE-OK, statistics), the EOF after column definitions, and the terminator
(EOF / 0xFE-OK / ERR). Rows and column definitions are skipped by arithmetic; a row that
runs past the chunk leaves `_skip` bytes to jump over in the next one.

Each physical packet goes through two tables keyed by `ResponseState`:

* `_ON_HEADER[state](first_byte, length) -> bool`: decide from the header and the first
  byte alone; skip the packet (and count it) or ask for its payload.
* `_ON_PAYLOAD[state](payload)`: handle a captured payload and move the state on.

`ROWS` has an inlined fast loop (`_scan_rows`) for the common case of a chunk full of
small rows: one `struct` unpack and two comparisons per row (sequence id included), no
method calls. bench/tracker_bench.py measures it; re-run it after touching that loop.

Rules that must stay true (they are the protocol's traps):

* 0xFE starts a terminator only when the payload is shorter than 9 bytes (classic EOF) or
  than 0xFFFFFF (CLIENT_DEPRECATE_EOF, where the terminator is an OK with a 0xFE header);
  a text row whose first column is >= 2^24 bytes also starts with 0xFE.
* A packet of exactly 0xFFFFFF bytes continues in the next packet(s), whose first bytes
  are data; they are skipped verbatim (`_continued`), never interpreted.
* SERVER_MORE_RESULTS_EXISTS on a terminator means another result follows (multi-
  statements, CALL, OUT parameters); an ERR ends the whole reply, even in the middle of a
  result set, so the reply is complete (drained) once the ERR has been read.
* Sequence ids increase by one per packet from 1; a gap means we lost the boundary, and
  is reported instead of guessed around. After LOCAL INFILE the client's packets consumed
  sequence ids, so the next id is taken from `infile_sent(last_seq)` or accepted as is.
* MariaDB progress reports (ERR with code 0xFFFF, only with MARIADB_CLIENT_PROGRESS) are
  not terminal.

The tracker is sans-I/O and raises only `ProtocolError`; after one it is in `ERROR` and
refuses further use.
"""

from __future__ import annotations

import builtins
import enum
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, final

from proxy.protocol import codec
from proxy.protocol.constants import (
    EOF_HEADER,
    ERR_HEADER,
    HEADER_SIZE,
    LOCAL_INFILE_HEADER,
    MAX_PACKET_PAYLOAD,
    OK_HEADER,
    Capability,
    Command,
    ServerStatus,
)
from proxy.protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError

logger = logging.getLogger(__name__)

_unpack_u32 = struct.Struct("<I").unpack_from

CLASSIC_EOF_LIMIT = 9
"""A 0xFE packet shorter than this is an EOF_Packet (without CLIENT_DEPRECATE_EOF)."""

PROGRESS_REPORT_CODE = 0xFFFF
"""MariaDB sends progress reports as ERR packets with this code (MARIADB_CLIENT_PROGRESS)."""

MAX_COLUMNS = 0xFFFF
"""Sanity bound on a column count; a larger one means we are not reading a column count."""

PREPARE_OK_STATEMENT_ID_OFFSET = HEADER_SIZE + 1
"""Offset of the statement id (int<4>) in the reply stream of COM_STMT_PREPARE."""

_METADATA_FLAG_CAPS = int(
    Capability.CLIENT_OPTIONAL_RESULTSET_METADATA | Capability.MARIADB_CLIENT_CACHE_METADATA
)


_CURSOR_EXISTS = int(ServerStatus.SERVER_STATUS_CURSOR_EXISTS)
_PROGRESS = int(Capability.MARIADB_CLIENT_PROGRESS)
_OPTIONAL_METADATA = int(Capability.CLIENT_OPTIONAL_RESULTSET_METADATA)
_PROTOCOL_41 = int(Capability.CLIENT_PROTOCOL_41)
_TRANSACTIONS = int(Capability.CLIENT_TRANSACTIONS)
_MORE_RESULTS = int(ServerStatus.SERVER_MORE_RESULTS_EXISTS)


class ResponseState(enum.Enum):
    # Members are singletons compared by identity: hash them so too, in C (Enum's own
    # __hash__ is Python code, and these are dict keys on every statement).
    __hash__ = object.__hash__

    IDLE = enum.auto()  # no command started yet
    RESULT_HEADER = enum.auto()  # first packet of a (next) result: OK, ERR, 0xFB, column count
    PREPARE_OK = enum.auto()  # COM_STMT_PREPARE: OK with the statement id, or ERR
    STATISTICS = enum.auto()  # COM_STATISTICS: one string packet, or ERR
    SIMPLE = enum.auto()  # OK, ERR or EOF (ping, init db, set option, reset, ...)
    FIELD_LIST = enum.auto()  # COM_FIELD_LIST: column definitions until EOF
    DEFINITIONS = enum.auto()  # counting column / parameter definitions
    DEFINITIONS_EOF = enum.auto()  # the EOF after definitions (no CLIENT_DEPRECATE_EOF)
    ROWS = enum.auto()  # rows until a terminator
    LOCAL_INFILE_REQUESTED = enum.auto()  # paused: the client must send the file
    INFILE_RESULT = enum.auto()  # the OK/ERR after the client's file
    DONE = enum.auto()
    ERROR = enum.auto()


class OutcomeKind(enum.Enum):
    OK = enum.auto()  # ended with an OK (also: CALL's final OK, a successful PREPARE)
    ERR = enum.auto()  # ended with an ERR, possibly after rows or earlier results
    EOF = enum.auto()  # ended with an EOF outside a result set (FIELD_LIST, SET_OPTION)
    RESULT_SET = enum.auto()  # the last result was rows (also: cursor opened, FETCH)
    STATISTICS = enum.auto()  # COM_STATISTICS string
    LOCAL_INFILE_REQUESTED = enum.auto()  # provisional: waiting for the client's file


@final
class ResponseOutcome:
    """How a reply ended. (A plain class with Final attributes: one is built per
    statement, and compiled only a plain class gets a native constructor; see `Packet`.)

    `status` is the ServerStatus of the last OK/EOF of this reply (the truth for
    SERVER_STATUS_IN_TRANS, AUTOCOMMIT, CURSOR_EXISTS); None when no packet of the reply
    carried flags (an ERR first packet, statistics, a PREPARE without definitions). After
    an ERR that followed other results it is the status before the failing statement.
    `payload` is the raw payload of the final OK/EOF/ERR (or 0xFB, statistics, PREPARE-OK)
    packet, for the session to parse session-state changes or the error message from.
    """

    __slots__ = (
        "bytes",
        "error_code",
        "kind",
        "payload",
        "result_sets",
        "rows",
        "status",
        "warnings",
    )

    def __init__(
        self,
        kind: OutcomeKind,
        status: int | None,  # ServerStatus bits, as a plain int
        warnings: int,
        error_code: int | None,
        payload: builtins.bytes,
        result_sets: int,
        rows: int,
        bytes: int,
    ) -> None:
        self.kind: Final = kind
        self.status: Final = status
        self.warnings: Final = warnings
        self.error_code: Final = error_code
        self.payload: Final = payload
        self.result_sets: Final = result_sets
        self.rows: Final = rows
        self.bytes: Final = bytes

    def _fields(self) -> tuple[object, ...]:
        return (
            self.kind,
            self.status,
            self.warnings,
            self.error_code,
            self.payload,
            self.result_sets,
            self.rows,
            self.bytes,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResponseOutcome):
            return NotImplemented
        return self._fields() == other._fields()

    def __repr__(self) -> str:
        return (
            f"ResponseOutcome(kind={self.kind.name}, status={self.status}, "
            f"warnings={self.warnings}, error_code={self.error_code}, payload={self.payload!r}, "
            f"result_sets={self.result_sets}, rows={self.rows}, bytes={self.bytes})"
        )


@dataclass(frozen=True, slots=True)
class PrepareOk:
    """COM_STMT_PREPARE_OK. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_prepare.html"""

    statement_id: int
    num_columns: int
    num_params: int
    warnings: int


_START_STATES: dict[int, ResponseState] = {
    Command.COM_QUERY: ResponseState.RESULT_HEADER,
    Command.COM_STMT_EXECUTE: ResponseState.RESULT_HEADER,
    Command.COM_STMT_BULK_EXECUTE: ResponseState.RESULT_HEADER,
    Command.COM_PROCESS_INFO: ResponseState.RESULT_HEADER,
    Command.COM_STMT_PREPARE: ResponseState.PREPARE_OK,
    Command.COM_STMT_FETCH: ResponseState.ROWS,
    Command.COM_FIELD_LIST: ResponseState.FIELD_LIST,
    Command.COM_STATISTICS: ResponseState.STATISTICS,
    Command.COM_PING: ResponseState.SIMPLE,
    Command.COM_INIT_DB: ResponseState.SIMPLE,
    Command.COM_RESET_CONNECTION: ResponseState.SIMPLE,
    Command.COM_SET_OPTION: ResponseState.SIMPLE,
    Command.COM_PROCESS_KILL: ResponseState.SIMPLE,
    Command.COM_STMT_RESET: ResponseState.SIMPLE,
    Command.COM_REFRESH: ResponseState.SIMPLE,
    Command.COM_CREATE_DB: ResponseState.SIMPLE,
    Command.COM_DROP_DB: ResponseState.SIMPLE,
    Command.COM_DEBUG: ResponseState.SIMPLE,
    Command.COM_SHUTDOWN: ResponseState.SIMPLE,
}
_NO_REPLY = frozenset({Command.COM_STMT_CLOSE, Command.COM_STMT_SEND_LONG_DATA, Command.COM_QUIT})
_BINARY = frozenset(
    {Command.COM_STMT_EXECUTE, Command.COM_STMT_BULK_EXECUTE, Command.COM_STMT_FETCH}
)
_PAUSED = frozenset({ResponseState.DONE, ResponseState.LOCAL_INFILE_REQUESTED})


class ResponseTracker:
    """Follows the reply to one command at a time; `start()` again for the next one."""

    __slots__ = (
        "_binary",
        "_caps",
        "_capture",
        "_check_seq",
        "_continued",
        "_cursor",
        "_defs_left",
        "_eof_limit",
        "_error_code",
        "_final_kind",
        "_final_payload",
        "_groups",
        "_head",
        "_seq",
        "_skip",
        "_state",
        "_status",
        "_want",
        "_warnings",
        "bytes",
        "outcome",
        "prepare_ok",
        "result_sets",
        "rows",
    )

    def __init__(self, capabilities: Capability) -> None:
        self._caps = int(capabilities)  # a plain int, like the status: Flag `&` is slow
        deprecate_eof = capabilities & Capability.CLIENT_DEPRECATE_EOF
        self._eof_limit = MAX_PACKET_PAYLOAD if deprecate_eof else CLASSIC_EOF_LIMIT
        self._state = ResponseState.IDLE
        self._reset()

    def _reset(self) -> None:
        self._binary = self._cursor = self._continued = False
        self._check_seq = True
        self._seq = 1
        self._skip = self._want = self._defs_left = 0
        self._head = bytearray()
        self._capture: bytearray | None = None
        self._groups: list[int] = []
        self._status: int | None = None
        self._warnings = 0
        self._error_code: int | None = None
        self._final_kind = OutcomeKind.OK
        self._final_payload = b""
        self.rows = self.result_sets = self.bytes = 0
        self.outcome: ResponseOutcome | None = None
        self.prepare_ok: PrepareOk | None = None

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> ResponseState:
        return self._state

    @property
    def done(self) -> bool:
        """The whole reply has been received (immediately true for commands without one)."""
        return self._state is ResponseState.DONE

    @property
    def last_seq(self) -> int:
        """Sequence id of the last packet of the reply seen so far (0: none yet)."""
        return (self._seq - 1) & 0xFF

    def start(
        self,
        command: int,
        *,
        cursor: bool = False,
        expects_response: bool = True,
        first_seq: int = 1,
    ) -> None:
        """Begin tracking the reply to `command` (already sent with sequence id 0).

        `first_seq` is the sequence id of the reply's first packet: 1, unless the
        command was larger than 16 MiB - 1 and took several packets.

        COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA and COM_QUIT (or `expects_response=False`)
        have no reply: `done` at once, `outcome` None. Commands whose reply is another
        conversation (COM_CHANGE_USER, replication) raise LocalProtocolError.
        """
        if self._state not in (ResponseState.IDLE, ResponseState.DONE):
            raise LocalProtocolError(f"cannot start a command in state {self._state.name}")
        self._reset()
        self._seq = first_seq & 0xFF
        if not expects_response or command in _NO_REPLY:
            self._state = ResponseState.DONE
            return
        state = _START_STATES.get(command)
        if state is None:
            raise LocalProtocolError(f"no reply tracking for command 0x{command:02x}")
        self._state = state
        self._binary = command in _BINARY
        self._cursor = cursor and command == Command.COM_STMT_EXECUTE

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """Consume reply bytes; return how many belong to this reply.

        Less than `len(data)` only when the reply ended inside `data` (`done`) or paused
        for LOCAL INFILE (`state is LOCAL_INFILE_REQUESTED`); the rest belongs to the next
        reply. Feeding a finished tracker consumes nothing; feeding a paused one is a
        LocalProtocolError (the server sends nothing until `infile_sent()`).
        """
        if self._state is ResponseState.DONE:
            return 0
        if self._state in _NOT_FEEDABLE:
            raise LocalProtocolError(f"cannot feed a tracker in state {self._state.name}")
        if self._state is ResponseState.RESULT_HEADER and self._at_reply_start():
            used = self._whole_result_set(data)
            if used:
                self.bytes += used
                self.outcome = self._make_outcome()
                return used
        try:
            pos = self._consume(data)
        except ProtocolError:
            self._state = ResponseState.ERROR
            raise
        self.bytes += pos
        if self._state in _PAUSED:
            self.outcome = self._make_outcome()
        return pos

    def infile_sent(self, last_seq: int | None = None) -> None:
        """The client's file (ending with an empty packet) went to the server.

        `last_seq` is the sequence id of that empty packet, if the caller tracked it; the
        server's OK/ERR then must carry `last_seq + 1`.
        """
        if self._state is not ResponseState.LOCAL_INFILE_REQUESTED:
            raise LocalProtocolError(f"infile_sent() in state {self._state.name}")
        self._state = ResponseState.INFILE_RESULT
        self.outcome = None
        if last_seq is None:
            self._check_seq = False
        else:
            self._seq = (last_seq + 1) & 0xFF

    # ------------------------------------------------------------------ byte level

    def _consume(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        pos = 0
        while pos < n:
            if self._skip:
                step = min(self._skip, n - pos)
                self._skip -= step
                pos += step
            elif self._capture is not None:
                pos = self._fill_capture(data, pos, n)
            elif self._head:
                pos = self._fill_head(data, pos, n)
            elif self._state is ResponseState.ROWS and not self._continued:
                pos = self._scan_rows(data, pos, n)
                if pos < n and not self._skip:
                    pos = self._packet_at(data, pos, n)
            else:
                pos = self._packet_at(data, pos, n)
            if self._state in _PAUSED:
                break
        return pos

    def _at_reply_start(self) -> bool:
        return (
            not self.result_sets
            and not self._binary
            and self._check_seq
            and not self._head
            and self._capture is None
            and not self._skip
            and not self._continued
            and not self._caps & _METADATA_FLAG_CAPS
        )

    def _whole_result_set(self, data: bytes | bytearray | memoryview) -> int:
        """The commonest reply in one piece: a text result set (fewer than 251 columns, no
        further result) that `data` holds exactly, from its column count to its terminator.
        Walked in one loop over the headers; the state changes only if it all checks out.
        Otherwise 0, and the general path takes `data` from the start (and reports what is
        wrong with it, if anything)."""
        n = len(data)
        if n < 5:
            return 0
        seq = self._seq
        word = _unpack_u32(data, 0)[0]
        count = data[4]
        if word != (seq << 24 | 1) or not 0 < count < 251:
            return 0
        pos = 5
        seq += 1
        classic = self._eof_limit == CLASSIC_EOF_LIMIT
        packets = count + 1 if classic else count  # definitions (+ their EOF)
        while packets:  # definitions: any first byte but ERR (the EOF is checked below)
            if pos + 4 >= n:
                return 0
            word = _unpack_u32(data, pos)[0]
            length = word & 0xFFFFFF
            if word >> 24 != seq & 0xFF or not 0 < length < MAX_PACKET_PAYLOAD:
                return 0
            first = data[pos + 4]
            if first == ERR_HEADER or (packets == 1 and classic) != (first == EOF_HEADER):
                return 0
            if packets == 1 and classic and length >= CLASSIC_EOF_LIMIT:
                return 0
            pos += 4 + length
            seq += 1
            packets -= 1
        start = expected = seq << 24  # rows: as in _scan_rows (bits 24+ count them)
        while pos < n - 4:
            length = _unpack_u32(data, pos)[0] - (expected & 0xFF000000)
            if not 0 < length < MAX_PACKET_PAYLOAD or data[pos + 4] >= EOF_HEADER:
                break
            pos += 4 + length
            expected += 1 << 24
        rows = (expected - start) >> 24
        seq += rows
        if pos >= n - 4:
            return 0
        word = _unpack_u32(data, pos)[0]  # the terminator, exactly at the end of `data`
        length = word & 0xFFFFFF
        end = pos + 4 + length
        if word >> 24 != seq & 0xFF or data[pos + 4] != EOF_HEADER or end != n:
            return 0
        if length >= self._eof_limit:
            return 0
        payload = bytes(data[pos + 4 : end])
        try:
            status, warnings = self._eof_status(payload)
        except ProtocolError:
            return 0
        if status & _MORE_RESULTS:
            return 0
        self.result_sets = 1
        self.rows += rows
        self._seq = (seq + 1) & 0xFF
        self._set_status(status, warnings)
        self._finish(OutcomeKind.RESULT_SET, payload)
        return n

    def _scan_rows(self, data: bytes | bytearray | memoryview, pos: int, n: int) -> int:
        """Skip consecutive ordinary rows; stop before anything else (or a split header).

        `expected` holds the next sequence id in bits 24..31 (above them it counts rows).
        Subtracting those bits from the header word leaves the payload length when the id
        matches, and a value outside 1..0xFFFFFE when it does not, so one chained
        comparison checks the id, rules out empty and >= 16 MiB packets, and the first
        byte check sends terminators (0xFE, 0xFF) to the slow path.
        """
        last = n - HEADER_SIZE - 1
        start = expected = self._seq << 24
        while pos <= last:
            length: int = _unpack_u32(data, pos)[0] - (expected & 0xFF000000)
            if not 0 < length < MAX_PACKET_PAYLOAD or data[pos + 4] >= EOF_HEADER:
                break
            pos += length + HEADER_SIZE
            expected += 0x1000000
        rows = (expected - start) >> 24
        if rows:
            self.rows += rows
            self._seq = (expected >> 24) & 0xFF
            if pos > n:
                self._skip = pos - n
                pos = n
        return pos

    def _packet_at(self, data: bytes | bytearray | memoryview, pos: int, n: int) -> int:
        """Handle the packet whose header starts at `pos`; return where consumption stopped."""
        available = n - pos
        if available < HEADER_SIZE:
            self._head = bytearray(data[pos:n])
            return n
        word: int = _unpack_u32(data, pos)[0]
        length = word & 0xFFFFFF
        if length and available == HEADER_SIZE:
            self._head = bytearray(data[pos:n])
            return n
        first = data[pos + 4] if length else -1
        pos += HEADER_SIZE
        end = pos + length
        if not self._begin_packet(word, first):
            if end > n:
                self._skip = end - n
                return n
            return end
        if end <= n:
            self._deliver(bytes(data[pos:end]))
            return end
        self._capture = bytearray(data[pos:n])
        self._want = end - n
        return n

    def _fill_head(self, data: bytes | bytearray | memoryview, pos: int, n: int) -> int:
        """Complete a header (+ first payload byte) split across chunks."""
        head = self._head
        while pos < n and not _head_complete(head):
            head.append(data[pos])
            pos += 1
        if _head_complete(head):
            self._head = bytearray()
            self._packet_at(bytes(head), 0, len(head))
        return pos

    def _fill_capture(self, data: bytes | bytearray | memoryview, pos: int, n: int) -> int:
        assert self._capture is not None
        step = min(self._want, n - pos)
        self._capture += data[pos : pos + step]
        self._want -= step
        if not self._want:
            payload = bytes(self._capture)
            self._capture = None
            self._deliver(payload)
        return pos + step

    def _begin_packet(self, word: int, first: int) -> bool:
        """Check the sequence id and classify the packet; True: capture its payload."""
        seq = word >> 24
        if self._check_seq and seq != self._seq:
            raise RemoteProtocolError(
                f"packets out of order: expected sequence id {self._seq}, got {seq}"
            )
        self._check_seq = True
        self._seq = (seq + 1) & 0xFF
        length = word & 0xFFFFFF
        if self._continued:  # data of a >= 16 MiB packet: never interpreted
            self._continued = length == MAX_PACKET_PAYLOAD
            return False
        capture = _ON_HEADER[self._state](self, first, length)
        if capture and not 0 < length < MAX_PACKET_PAYLOAD:
            raise RemoteProtocolError(f"unexpected {length}-byte packet in {self._state.name}")
        self._continued = length == MAX_PACKET_PAYLOAD
        return capture

    def _deliver(self, payload: bytes) -> None:
        _ON_PAYLOAD[self._state](self, payload)

    # ------------------------------------------------------------------ header decisions

    def _is_terminator(self, first: int, length: int) -> bool:
        return first == ERR_HEADER or (first == EOF_HEADER and length < self._eof_limit)

    def _header_capture(self, first: int, length: int) -> bool:
        return True

    def _header_definition(self, first: int, length: int) -> bool:
        if first == ERR_HEADER:
            return True
        if self._is_terminator(first, length) or not length:
            raise RemoteProtocolError(f"expected {self._defs_left} more definitions")
        self._defs_left -= 1
        # The last one is captured (definitions are small) so that the transition after
        # it, possibly to DONE, happens only once the packet is complete.
        return not self._defs_left

    def _header_field_list(self, first: int, length: int) -> bool:
        if self._is_terminator(first, length):
            return True
        if not length:
            raise RemoteProtocolError("empty column definition")
        return False

    def _header_row(self, first: int, length: int) -> bool:
        if self._is_terminator(first, length):
            return True
        if not length:
            raise RemoteProtocolError("empty row packet")
        self.rows += 1
        return False

    # ------------------------------------------------------------------ payload handlers

    def _payload_result_header(self, payload: bytes) -> None:
        handler = _RESULT_HEADER_BY_BYTE.get(payload[0], ResponseTracker._on_column_count)
        handler(self, payload)

    def _on_column_count(self, payload: bytes) -> None:
        count, pos = codec.read_lenenc_int(payload, 0)
        follows = 1
        if self._caps & _METADATA_FLAG_CAPS:
            follows, pos = codec.read_int1(payload, pos)
        if pos != len(payload) or not 0 < count <= MAX_COLUMNS:
            raise RemoteProtocolError(f"invalid column count packet {payload[:12].hex()}")
        self.result_sets += 1
        self._begin_definitions([count] if follows else [])
        if not follows and self._eof_limit == CLASSIC_EOF_LIMIT:
            self._state = ResponseState.DEFINITIONS_EOF

    def _on_result_ok(self, payload: bytes) -> None:
        self._set_status(*self._ok_status(payload))
        self._end_result(OutcomeKind.OK, payload)

    def _on_local_infile(self, payload: bytes) -> None:
        if self._binary:
            raise RemoteProtocolError("LOCAL INFILE request in a binary-protocol reply")
        self._final_kind = OutcomeKind.LOCAL_INFILE_REQUESTED
        self._final_payload = payload
        self._state = ResponseState.LOCAL_INFILE_REQUESTED

    def _on_unexpected(self, payload: bytes) -> None:
        raise RemoteProtocolError(
            f"unexpected packet 0x{payload[0]:02x} in {self._state.name} ({len(payload)} bytes)"
        )

    def _on_err(self, payload: bytes) -> None:
        code, _ = codec.read_int(payload, 1, 2)
        if code == PROGRESS_REPORT_CODE and self._caps & _PROGRESS:
            return  # a progress report, not the end of anything
        self._error_code = code
        self._finish(OutcomeKind.ERR, payload)

    def _payload_prepare_ok(self, payload: bytes) -> None:
        if payload[0] == ERR_HEADER:
            self._on_err(payload)
        elif payload[0] == OK_HEADER:
            self._on_prepare_ok(payload)
        else:
            self._on_unexpected(payload)

    def _on_prepare_ok(self, payload: bytes) -> None:
        statement_id, pos = codec.read_int(payload, 1, 4)
        num_columns, pos = codec.read_int(payload, pos, 2)
        num_params, pos = codec.read_int(payload, pos, 2)
        warnings = 0
        if len(payload) >= pos + 3:  # reserved filler, then warning_count
            warnings, pos = codec.read_int(payload, pos + 1, 2)
        self.prepare_ok = PrepareOk(statement_id, num_columns, num_params, warnings)
        self._warnings = warnings
        self._final_payload = payload
        metadata = self._caps & _OPTIONAL_METADATA
        if metadata and len(payload) > pos and not payload[pos]:
            num_params = num_columns = 0  # metadata_follows = RESULTSET_METADATA_NONE
        self._begin_definitions([num_params, num_columns])

    def _payload_statistics(self, payload: bytes) -> None:
        if payload[0] == ERR_HEADER:
            self._on_err(payload)
        else:
            self._finish(OutcomeKind.STATISTICS, payload)

    def _payload_simple(self, payload: bytes) -> None:
        first = payload[0]
        if first == OK_HEADER:
            self._set_status(*self._ok_status(payload))
            self._finish(OutcomeKind.OK, payload)
        elif first == EOF_HEADER and len(payload) < self._eof_limit:
            self._set_status(*self._eof_status(payload))
            self._finish(OutcomeKind.EOF, payload)
        elif first == ERR_HEADER:
            self._on_err(payload)
        else:
            self._on_unexpected(payload)

    def _payload_field_list(self, payload: bytes) -> None:
        if payload[0] == ERR_HEADER:
            self._on_err(payload)
        else:
            self._set_status(*self._eof_status(payload))
            self._finish(OutcomeKind.EOF, payload)

    def _payload_definitions(self, payload: bytes) -> None:
        if payload[0] == ERR_HEADER:
            self._on_err(payload)
        else:
            self._definitions_done()

    def _payload_definitions_eof(self, payload: bytes) -> None:
        first = payload[0]
        if first == ERR_HEADER:
            self._on_err(payload)
        elif first != EOF_HEADER or len(payload) >= CLASSIC_EOF_LIMIT:
            self._on_unexpected(payload)
        else:
            self._on_definitions_eof(payload)

    def _on_definitions_eof(self, payload: bytes) -> None:
        status, warnings = self._eof_status(payload)
        self._set_status(status, warnings)
        if self._cursor and status & _CURSOR_EXISTS:
            self._finish(OutcomeKind.RESULT_SET, payload)  # rows come with COM_STMT_FETCH
        else:
            self._next_group()

    def _payload_rows(self, payload: bytes) -> None:
        if payload[0] == ERR_HEADER:
            self._on_err(payload)
        else:
            self._set_status(*self._eof_status(payload))
            self._end_result(OutcomeKind.RESULT_SET, payload)

    def _payload_infile_result(self, payload: bytes) -> None:
        first = payload[0]
        if first == ERR_HEADER:
            self._on_err(payload)
        elif first == OK_HEADER:
            self._on_result_ok(payload)
        else:
            self._on_unexpected(payload)

    # ------------------------------------------------------------------ transitions

    def _begin_definitions(self, groups: list[int]) -> None:
        """Definition groups (columns; or params then columns), each + EOF unless empty."""
        self._groups = groups
        self._next_group()

    def _next_group(self) -> None:
        while self._groups:
            count = self._groups.pop(0)
            if count:
                self._defs_left = count
                self._state = ResponseState.DEFINITIONS
                return
        if self.prepare_ok is not None:
            self._finish(OutcomeKind.OK, self._final_payload)
        else:
            self._state = ResponseState.ROWS

    def _definitions_done(self) -> None:
        if self._eof_limit == CLASSIC_EOF_LIMIT:
            self._state = ResponseState.DEFINITIONS_EOF
        else:
            self._next_group()

    def _end_result(self, kind: OutcomeKind, payload: bytes) -> None:
        """A terminator or OK: another result follows, or the reply is complete."""
        more = self._status is not None and self._status & _MORE_RESULTS
        if more:
            self._state = ResponseState.RESULT_HEADER
        else:
            self._finish(kind, payload)

    def _finish(self, kind: OutcomeKind, payload: bytes) -> None:
        self._final_kind = kind
        self._final_payload = payload
        self._state = ResponseState.DONE

    def _make_outcome(self) -> ResponseOutcome:
        return ResponseOutcome(
            self._final_kind,
            self._status,
            self._warnings,
            self._error_code,
            self._final_payload,
            self.result_sets,
            self.rows,
            self.bytes,
        )

    # ------------------------------------------------------------------ status flags

    def _set_status(self, status: int, warnings: int) -> None:
        self._status = status  # a plain int: IntFlag arithmetic costs microseconds per reply
        self._warnings = warnings

    def _ok_status(self, payload: bytes) -> tuple[int, int]:
        """(status, warnings) of an OK_Packet (header 0x00, or 0xFE with DEPRECATE_EOF)."""
        _, pos = codec.read_lenenc_int(payload, 1)  # affected_rows
        _, pos = codec.read_lenenc_int(payload, pos)  # last_insert_id
        if self._caps & _PROTOCOL_41:
            status, pos = codec.read_int(payload, pos, 2)
            return status, codec.read_int(payload, pos, 2)[0]
        if self._caps & _TRANSACTIONS:
            return codec.read_int(payload, pos, 2)[0], 0
        return 0, 0

    def _eof_status(self, payload: bytes) -> tuple[int, int]:
        """(status, warnings) of an EOF_Packet, or of the 0xFE-OK that replaces it."""
        if self._eof_limit != CLASSIC_EOF_LIMIT:
            return self._ok_status(payload)
        if not self._caps & _PROTOCOL_41:
            return 0, 0
        warnings, pos = codec.read_int(payload, 1, 2)
        return codec.read_int(payload, pos, 2)[0], warnings


def _head_complete(head: bytearray) -> bool:
    """A header plus the first payload byte (or just the header of an empty packet)."""
    return len(head) > HEADER_SIZE or (len(head) == HEADER_SIZE and not any(head[:3]))


_NOT_FEEDABLE = frozenset(
    {ResponseState.IDLE, ResponseState.ERROR, ResponseState.LOCAL_INFILE_REQUESTED}
)

_HeaderHandler = Callable[[ResponseTracker, int, int], bool]
_PayloadHandler = Callable[[ResponseTracker, bytes], None]

_ON_HEADER: dict[ResponseState, _HeaderHandler] = {
    ResponseState.RESULT_HEADER: ResponseTracker._header_capture,
    ResponseState.PREPARE_OK: ResponseTracker._header_capture,
    ResponseState.STATISTICS: ResponseTracker._header_capture,
    ResponseState.SIMPLE: ResponseTracker._header_capture,
    ResponseState.DEFINITIONS_EOF: ResponseTracker._header_capture,
    ResponseState.INFILE_RESULT: ResponseTracker._header_capture,
    ResponseState.DEFINITIONS: ResponseTracker._header_definition,
    ResponseState.FIELD_LIST: ResponseTracker._header_field_list,
    ResponseState.ROWS: ResponseTracker._header_row,
}

_ON_PAYLOAD: dict[ResponseState, _PayloadHandler] = {
    ResponseState.RESULT_HEADER: ResponseTracker._payload_result_header,
    ResponseState.PREPARE_OK: ResponseTracker._payload_prepare_ok,
    ResponseState.STATISTICS: ResponseTracker._payload_statistics,
    ResponseState.SIMPLE: ResponseTracker._payload_simple,
    ResponseState.DEFINITIONS_EOF: ResponseTracker._payload_definitions_eof,
    ResponseState.INFILE_RESULT: ResponseTracker._payload_infile_result,
    ResponseState.DEFINITIONS: ResponseTracker._payload_definitions,
    ResponseState.FIELD_LIST: ResponseTracker._payload_field_list,
    ResponseState.ROWS: ResponseTracker._payload_rows,
}

_RESULT_HEADER_BY_BYTE: dict[int, _PayloadHandler] = {
    OK_HEADER: ResponseTracker._on_result_ok,
    ERR_HEADER: ResponseTracker._on_err,
    LOCAL_INFILE_HEADER: ResponseTracker._on_local_infile,
    EOF_HEADER: ResponseTracker._on_unexpected,
}
