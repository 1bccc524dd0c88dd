"""ResponseTracker: captured MariaDB replies (fed three ways) + synthetic edge cases + fuzz.

Vectors live in tests/vectors/responses/ (see the README there): `<name>.<mode>.hex` is
the server's reply to one command, `<name>.<mode>.json` its capabilities, the offset
where the reply ends (found with a pipelined marker query, not by this tracker), the
LOCAL INFILE pause offset, and the expected outcome.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.protocol.constants import (
    MAX_PACKET_PAYLOAD,
    Capability,
    Command,
    ServerStatus,
)
from proxy.protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from proxy.protocol.framing import PacketFramer, frame
from proxy.protocol.response import (
    PREPARE_OK_STATEMENT_ID_OFFSET,
    OutcomeKind,
    PrepareOk,
    ResponseState,
    ResponseTracker,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "responses"
MAX = MAX_PACKET_PAYLOAD
NEXT_REPLY = b"\x07\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00"  # an OK, as a pipelined reply


@dataclass(frozen=True)
class Vector:
    name: str
    data: bytes
    meta: dict[str, Any]

    @property
    def caps(self) -> Capability:
        return Capability(self.meta["caps"])

    @property
    def command(self) -> int:
        return Command[self.meta["command"]]

    def tracker(self) -> ResponseTracker:
        tracker = ResponseTracker(self.caps)
        tracker.start(self.command, cursor=self.meta["cursor"])
        return tracker


def _load_vectors() -> list[Vector]:
    vectors = []
    for meta_path in sorted(VECTORS.glob("*.json")):
        hex_text = meta_path.with_suffix(".hex").read_text()
        data = bytes.fromhex("".join(hex_text.split()))
        vectors.append(Vector(meta_path.stem, data, json.loads(meta_path.read_text())))
    return vectors


ALL = _load_vectors()
SMALL = [v for v in ALL if len(v.data) < 20_000]


def test_corpus_is_present() -> None:
    names = {v.name for v in ALL}
    assert len(ALL) >= 90
    for required in (
        "query_select_1000.deprecate_eof",
        "error_mid_stream_signal.eof",
        "call_three_results.deprecate_eof",
        "execute_cursor.eof",
        "fetch_rest.deprecate_eof",
        "load_data_local_multi.eof",
        "field_list.deprecate_eof",
        "statistics.eof",
        "execute_call_out_params.deprecate_eof",
    ):
        assert required in names


def feed_in_chunks(vector: Vector, tracker: ResponseTracker, chunks: list[bytes]) -> int:
    """Feed `chunks` (which may run past the reply); handle the LOCAL INFILE pause."""
    consumed = 0
    for chunk in chunks:
        while chunk and not tracker.done:
            used = tracker.feed(chunk)
            consumed += used
            chunk = chunk[used:]
            if tracker.state is ResponseState.LOCAL_INFILE_REQUESTED:
                assert consumed == vector.meta["infile_at"]
                _check_infile_pause(tracker)
                tracker.infile_sent()
        if tracker.done:
            break
    return consumed


def _check_infile_pause(tracker: ResponseTracker) -> None:
    assert not tracker.done
    assert tracker.outcome is not None
    assert tracker.outcome.kind is OutcomeKind.LOCAL_INFILE_REQUESTED
    assert tracker.outcome.payload[:1] == b"\xfb"
    with pytest.raises(LocalProtocolError):
        tracker.feed(b"\x00")


def check_outcome(vector: Vector, tracker: ResponseTracker, consumed: int) -> None:
    assert consumed == vector.meta["end"] == len(vector.data)
    assert tracker.done
    outcome = tracker.outcome
    assert outcome is not None
    expect = vector.meta["expect"]
    got = {
        "kind": outcome.kind.name,
        "rows": outcome.rows,
        "result_sets": outcome.result_sets,
        "last_seq": tracker.last_seq,
        "error_code": outcome.error_code,
        "status": None if outcome.status is None else int(outcome.status),
        "warnings": outcome.warnings,
    }
    assert {k: got[k] for k in expect} == expect
    assert outcome.bytes == len(vector.data)
    if outcome.kind is not OutcomeKind.OK or vector.command != Command.COM_STMT_PREPARE:
        assert outcome.payload == PacketFramer().feed(vector.data)[-1].payload


@pytest.mark.parametrize("vector", ALL, ids=lambda v: v.name)
def test_vector_whole_with_next_reply_behind(vector: Vector) -> None:
    tracker = vector.tracker()
    consumed = feed_in_chunks(vector, tracker, [vector.data + NEXT_REPLY])
    check_outcome(vector, tracker, consumed)
    assert tracker.feed(NEXT_REPLY) == 0


@pytest.mark.parametrize("vector", ALL, ids=lambda v: v.name)
def test_vector_exactly_whole(vector: Vector) -> None:
    """One chunk that is the reply and nothing more: the shape the one-loop walk of a
    result set (`_whole_result_set`) takes; its answer must be the general path's."""
    tracker = vector.tracker()
    check_outcome(vector, tracker, feed_in_chunks(vector, tracker, [vector.data]))


@pytest.mark.parametrize("name", ["query_select_small", "query_select_1000", "query_select_empty"])
@pytest.mark.parametrize("mode", ["eof", "deprecate_eof"])
def test_a_whole_text_result_takes_the_one_loop_walk(name: str, mode: str) -> None:
    vector = next(v for v in ALL if v.name == f"{name}.{mode}")
    tracker = vector.tracker()
    assert tracker._whole_result_set(vector.data) == len(vector.data)


@pytest.mark.parametrize("vector", ALL, ids=lambda v: v.name)
def test_vector_byte_by_byte(vector: Vector) -> None:
    tracker = vector.tracker()
    data = vector.data + NEXT_REPLY
    consumed = feed_in_chunks(vector, tracker, [data[i : i + 1] for i in range(len(data))])
    check_outcome(vector, tracker, consumed)


@pytest.mark.parametrize("vector", ALL, ids=lambda v: v.name)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=12))
def test_vector_random_splits(vector: Vector, cuts: list[int]) -> None:
    data = vector.data + NEXT_REPLY
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    tracker = vector.tracker()
    check_outcome(vector, tracker, feed_in_chunks(vector, tracker, chunks))


@pytest.mark.parametrize("mode", ["eof", "deprecate_eof"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunk_size=st.sampled_from([1, 3, 7, 64, 1000, 65536]))
def test_pipelined_replies_split_at_each_boundary(mode: str, chunk_size: int) -> None:
    """All replies of one session back to back: each tracker stops exactly at its end."""
    vectors = [v for v in SMALL if v.name.endswith("." + mode)]
    stream = b"".join(v.data for v in vectors)
    chunks = [stream[i : i + chunk_size] for i in range(0, len(stream), chunk_size)]
    pending = list(vectors)
    tracker = pending[0].tracker()
    offset = 0
    for chunk in chunks:
        while chunk:
            used = tracker.feed(chunk)
            offset += used
            chunk = chunk[used:]
            if tracker.state is ResponseState.LOCAL_INFILE_REQUESTED:
                tracker.infile_sent()
            elif tracker.done:
                finished = pending.pop(0)
                assert tracker.outcome is not None
                assert tracker.outcome.bytes == len(finished.data)
                if pending:
                    tracker = pending[0].tracker()
    assert not pending
    assert offset == len(stream)


def test_prepare_ok_from_real_server() -> None:
    vector = next(v for v in ALL if v.name == "prepare_select.deprecate_eof")
    tracker = vector.tracker()
    tracker.feed(vector.data)
    statement_id = int.from_bytes(vector.data[PREPARE_OK_STATEMENT_ID_OFFSET:][:4], "little")
    assert tracker.prepare_ok == PrepareOk(statement_id, 2, 1, 0)


def test_cursor_open_status_from_real_server() -> None:
    for mode in ("eof", "deprecate_eof"):
        vector = next(v for v in ALL if v.name == f"execute_cursor.{mode}")
        tracker = vector.tracker()
        tracker.feed(vector.data)
        assert tracker.outcome is not None and tracker.outcome.status is not None
        assert tracker.outcome.status & ServerStatus.SERVER_STATUS_CURSOR_EXISTS


# --------------------------------------------------------------------------- synthetic

CLASSIC = Capability.CLIENT_PROTOCOL_41 | Capability.CLIENT_TRANSACTIONS
DEPRECATE = CLASSIC | Capability.CLIENT_DEPRECATE_EOF
MORE = ServerStatus.SERVER_MORE_RESULTS_EXISTS
AUTOCOMMIT = ServerStatus.SERVER_STATUS_AUTOCOMMIT
COLDEF = b"\x03def\x00\x00\x00\x01a\x00\x0c\x3f\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00"


def ok(status: int = AUTOCOMMIT, warnings: int = 0, header: int = 0x00) -> bytes:
    return bytes((header, 0, 0)) + status.to_bytes(2, "little") + warnings.to_bytes(2, "little")


def eof(status: int = AUTOCOMMIT, warnings: int = 0) -> bytes:
    return b"\xfe" + warnings.to_bytes(2, "little") + status.to_bytes(2, "little")


def terminator(caps: Capability, status: int = AUTOCOMMIT, warnings: int = 0) -> bytes:
    if caps & Capability.CLIENT_DEPRECATE_EOF:
        return ok(status, warnings, header=0xFE)
    return eof(status, warnings)


def err(code: int = 1064, message: bytes = b"bad") -> bytes:
    return b"\xff" + code.to_bytes(2, "little") + b"#42000" + message


class Stream:
    """Builds a reply: packets framed with consecutive sequence ids from 1."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.seq = 1

    def add(self, *payloads: bytes) -> Stream:
        for payload in payloads:
            wire = frame(payload, self.seq)
            self.seq = (self.seq + len(payload) // MAX + 1) & 0xFF
            self.parts.append(wire)
        return self

    def result_set(self, caps: Capability, rows: list[bytes], status: int = AUTOCOMMIT) -> Stream:
        self.add(b"\x01", COLDEF)
        if not caps & Capability.CLIENT_DEPRECATE_EOF:
            self.add(eof())
        return self.add(*rows, terminator(caps, status))

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)


def track(
    caps: Capability, command: int, data: bytes, *, cursor: bool = False, chunk: int = 0
) -> ResponseTracker:
    """Feed `data` + a next reply (whole, or in `chunk`-sized pieces); check the boundary."""
    tracker = ResponseTracker(caps)
    tracker.start(command, cursor=cursor)
    stream = data + NEXT_REPLY
    size = chunk or len(stream)
    consumed = 0
    for start in range(0, len(stream), size):
        consumed += tracker.feed(stream[start : start + size])
    assert tracker.done
    assert consumed == len(data)
    return tracker


BOTH = pytest.mark.parametrize("caps", [CLASSIC, DEPRECATE], ids=["eof", "deprecate_eof"])


def _outcome(tracker: ResponseTracker) -> Any:
    assert tracker.outcome is not None
    return tracker.outcome


@BOTH
@pytest.mark.parametrize("size", [MAX - 1, MAX, MAX + 1, 2 * MAX, 2 * MAX + 7])
def test_huge_rows_are_never_interpreted(caps: Capability, size: int) -> None:
    # A text row whose first column is >= 2^24 bytes starts with 0xFE (and is then at
    # least 0xFFFFFF long); its continuation packets start with bytes that look like
    # EOF / ERR / OK packets.
    if size >= MAX:
        prefix = b"\xfe" + (size - 9).to_bytes(8, "little")
    else:
        prefix = b"\xfd" + (size - 4).to_bytes(3, "little") + b"\x00" * 5
    body = bytearray(b"x" * (size - 9))
    for offset in (MAX - 9, 2 * MAX - 9):  # where continuation payloads begin
        if 0 <= offset < len(body) - 7:
            body[offset : offset + 7] = terminator(caps) if offset % 2 else err()[:7]
    row = prefix + bytes(body)
    data = Stream().result_set(caps, [b"\x01a", row, b"\x01b"]).data
    for chunk in (0, 65536, 1_000_003):
        tracker = track(caps, Command.COM_QUERY, data, chunk=chunk)
        assert _outcome(tracker).rows == 3
        assert _outcome(tracker).kind is OutcomeKind.RESULT_SET


@BOTH
def test_huge_binary_row_and_huge_last_row(caps: Capability) -> None:
    row = b"\x00\x00" + b"\xfe" * (MAX + 100)
    data = Stream().result_set(caps, [row, row]).data
    tracker = track(caps, Command.COM_STMT_EXECUTE, data, chunk=4 << 20)
    assert _outcome(tracker).rows == 2


def test_classic_fe_row_shorter_than_16mib_but_at_least_9_bytes_is_a_row() -> None:
    row = b"\xfe" + b"\x01" + b"\x00" * 7 + b"z"  # 10 bytes: not an EOF (< 9 rule)
    tracker = track(CLASSIC, Command.COM_QUERY, Stream().result_set(CLASSIC, [row]).data)
    assert _outcome(tracker).rows == 1


def test_deprecate_eof_fe_packet_below_16mib_is_the_terminator() -> None:
    long_ok = ok(AUTOCOMMIT, header=0xFE) + b"\x00" * 20  # session info: still an OK
    data = Stream().add(b"\x01", COLDEF, b"\x01a", long_ok).data
    tracker = track(DEPRECATE, Command.COM_QUERY, data)
    assert (_outcome(tracker).rows, _outcome(tracker).payload) == (1, long_ok)


@BOTH
def test_multi_results_status_of_last_terminator(caps: Capability) -> None:
    in_trans = ServerStatus.SERVER_STATUS_IN_TRANS
    stream = Stream().result_set(caps, [b"\x011"], MORE | AUTOCOMMIT)
    stream.add(ok(MORE | in_trans))
    stream.result_set(caps, [b"\x012", b"\x013"], in_trans)
    tracker = track(caps, Command.COM_QUERY, stream.data, chunk=3)
    outcome = _outcome(tracker)
    assert (outcome.kind, outcome.result_sets, outcome.rows) == (OutcomeKind.RESULT_SET, 2, 3)
    assert outcome.status == in_trans


@BOTH
def test_binary_out_params_then_ok(caps: Capability) -> None:
    out_params = ServerStatus.SERVER_PS_OUT_PARAMS | MORE | AUTOCOMMIT
    stream = Stream().result_set(caps, [b"\x00\x00\x01"], MORE | AUTOCOMMIT)
    stream.result_set(caps, [b"\x00\x00\x2a\x00\x00\x00"], out_params)
    stream.add(ok())
    tracker = track(caps, Command.COM_STMT_EXECUTE, stream.data)
    outcome = _outcome(tracker)
    assert (outcome.kind, outcome.result_sets, outcome.rows) == (OutcomeKind.OK, 2, 2)


@BOTH
def test_err_mid_stream_ends_reply(caps: Capability) -> None:
    stream = Stream().add(b"\x01", COLDEF)
    if caps == CLASSIC:
        stream.add(eof())
    stream.add(*[b"\x01x"] * 300, err(1242))
    tracker = track(caps, Command.COM_QUERY, stream.data, chunk=5)
    outcome = _outcome(tracker)
    assert (outcome.kind, outcome.error_code, outcome.rows) == (OutcomeKind.ERR, 1242, 300)
    assert tracker.last_seq == (2 + (caps == CLASSIC) + 300 + 1) & 0xFF


def test_err_during_column_definitions() -> None:
    data = Stream().add(b"\x02", COLDEF, err(1317)).data
    assert _outcome(track(CLASSIC, Command.COM_QUERY, data)).error_code == 1317
    data = Stream().add(b"\x01", COLDEF, err(1927)).data  # instead of the EOF
    assert _outcome(track(CLASSIC, Command.COM_QUERY, data)).error_code == 1927


def test_cursor_classic_eof_with_cursor_exists_ends_the_reply() -> None:
    status = ServerStatus.SERVER_STATUS_CURSOR_EXISTS | AUTOCOMMIT
    data = Stream().add(b"\x01", COLDEF, eof(status)).data
    tracker = track(CLASSIC, Command.COM_STMT_EXECUTE, data, cursor=True)
    assert _outcome(tracker).status == status


def test_cursor_requested_but_not_opened_sends_rows() -> None:
    data = Stream().result_set(CLASSIC, [b"\x00\x00\x01"]).data
    tracker = track(CLASSIC, Command.COM_STMT_EXECUTE, data, cursor=True)
    assert _outcome(tracker).rows == 1


@BOTH
def test_fetch(caps: Capability) -> None:
    last = ServerStatus.SERVER_STATUS_LAST_ROW_SENT | AUTOCOMMIT
    data = Stream().add(b"\x00\x00\x01", b"\x00\x00\x02", terminator(caps, last)).data
    tracker = track(caps, Command.COM_STMT_FETCH, data)
    outcome = _outcome(tracker)
    assert (outcome.rows, outcome.result_sets, outcome.status) == (2, 0, last)


@BOTH
@pytest.mark.parametrize("params, columns", [(0, 0), (2, 0), (0, 3), (2, 3)])
def test_prepare(caps: Capability, params: int, columns: int) -> None:
    head = b"\x00" + (9).to_bytes(4, "little") + columns.to_bytes(2, "little")
    stream = Stream().add(head + params.to_bytes(2, "little") + b"\x00\x01\x00")
    for count in (params, columns):
        if count:
            stream.add(*[COLDEF] * count)
            if caps == CLASSIC:
                stream.add(eof())
    tracker = track(caps, Command.COM_STMT_PREPARE, stream.data, chunk=2)
    assert tracker.prepare_ok == PrepareOk(9, columns, params, 1)
    assert _outcome(tracker).kind is OutcomeKind.OK


def test_prepare_last_definition_split_across_chunks_is_not_done_early() -> None:
    head = b"\x00" + (9).to_bytes(4, "little") + b"\x01\x00\x00\x00\x00\x00\x00"
    data = Stream().add(head, COLDEF).data
    tracker = ResponseTracker(DEPRECATE)
    tracker.start(Command.COM_STMT_PREPARE)
    assert tracker.feed(data[:-3]) == len(data) - 3
    assert not tracker.done
    assert tracker.feed(data[-3:] + NEXT_REPLY) == 3
    assert tracker.done


def test_prepare_err() -> None:
    tracker = track(CLASSIC, Command.COM_STMT_PREPARE, Stream().add(err()).data)
    assert (_outcome(tracker).kind, tracker.prepare_ok) == (OutcomeKind.ERR, None)


@BOTH
def test_field_list(caps: Capability) -> None:
    data = Stream().add(COLDEF, COLDEF, terminator(caps)).data
    outcome = _outcome(track(caps, Command.COM_FIELD_LIST, data))
    assert (outcome.kind, outcome.rows) == (OutcomeKind.EOF, 0)
    outcome = _outcome(track(caps, Command.COM_FIELD_LIST, Stream().add(err(1146)).data))
    assert outcome.error_code == 1146


@BOTH
@pytest.mark.parametrize(
    "command",
    [
        Command.COM_PING,
        Command.COM_INIT_DB,
        Command.COM_RESET_CONNECTION,
        Command.COM_PROCESS_KILL,
        Command.COM_STMT_RESET,
        Command.COM_SET_OPTION,
    ],
)
def test_simple_commands(caps: Capability, command: int) -> None:
    assert _outcome(track(caps, command, Stream().add(ok()).data)).kind is OutcomeKind.OK
    assert _outcome(track(caps, command, Stream().add(err()).data)).kind is OutcomeKind.ERR
    outcome = _outcome(track(caps, command, Stream().add(terminator(caps, warnings=2)).data))
    assert (outcome.kind, outcome.warnings) == (OutcomeKind.EOF, 2)


def test_statistics() -> None:
    text = b"Uptime: 5  Threads: 1  Questions: 2"
    outcome = _outcome(track(CLASSIC, Command.COM_STATISTICS, Stream().add(text).data))
    assert (outcome.kind, outcome.payload, outcome.status) == (OutcomeKind.STATISTICS, text, None)
    outcome = _outcome(track(CLASSIC, Command.COM_STATISTICS, Stream().add(err(1227)).data))
    assert (outcome.kind, outcome.error_code) == (OutcomeKind.ERR, 1227)


def test_prepare_ok_without_warning_count() -> None:
    head = b"\x00\x05\x00\x00\x00\x00\x00\x00\x00"  # 9 bytes: an old server's short form
    tracker = track(CLASSIC, Command.COM_STMT_PREPARE, Stream().add(head).data)
    assert tracker.prepare_ok == PrepareOk(5, 0, 0, 0)


@pytest.mark.parametrize(
    "caps, status, warnings",
    [
        (Capability.CLIENT_TRANSACTIONS, AUTOCOMMIT, 0),  # pre-4.1: status only
        (Capability(0), 0, 0),  # pre-4.1 without transactions: nothing
    ],
)
def test_pre_41_status_fields(caps: Capability, status: int, warnings: int) -> None:
    ok_packet = b"\x00\x00\x00" + AUTOCOMMIT.to_bytes(2, "little")
    outcome = _outcome(track(caps, Command.COM_PING, Stream().add(ok_packet).data))
    assert (outcome.status, outcome.warnings) == (status, warnings)
    data = Stream().add(b"\x01", COLDEF, b"\xfe", b"\x01a", b"\xfe").data
    outcome = _outcome(track(caps, Command.COM_QUERY, data))
    assert (outcome.rows, outcome.status) == (1, 0)


@pytest.mark.parametrize("command", [Command.COM_STMT_CLOSE, Command.COM_STMT_SEND_LONG_DATA])
def test_commands_without_reply(command: int) -> None:
    tracker = ResponseTracker(CLASSIC)
    tracker.start(command)
    assert tracker.done and tracker.outcome is None
    assert tracker.feed(NEXT_REPLY) == 0
    tracker.start(Command.COM_PING)
    assert tracker.feed(NEXT_REPLY) == len(NEXT_REPLY)
    tracker.start(Command.COM_QUERY, expects_response=False)
    assert tracker.done


@BOTH
def test_local_infile_with_client_sequence_ids(caps: Capability) -> None:
    tracker = ResponseTracker(caps)
    tracker.start(Command.COM_QUERY)
    request = frame(b"\xfbrows.csv", 1)
    assert tracker.feed(request + b"\x00") == len(request)
    assert tracker.state is ResponseState.LOCAL_INFILE_REQUESTED
    assert _outcome(tracker).payload == b"\xfbrows.csv"
    tracker.infile_sent(last_seq=4)  # client sent data with 2, 3 and the empty packet 4
    with pytest.raises(RemoteProtocolError, match="out of order"):
        tracker.feed(frame(ok(), 7))
    tracker = ResponseTracker(caps)
    tracker.start(Command.COM_QUERY)
    tracker.feed(request)
    tracker.infile_sent(last_seq=4)
    assert tracker.feed(frame(ok(warnings=3), 5)) == 11
    assert (_outcome(tracker).kind, _outcome(tracker).warnings) == (OutcomeKind.OK, 3)


def test_progress_reports_are_not_terminal() -> None:
    progress = b"\xff\xff\xff\x01\x01\x00\x10\x00\x05stage"
    caps = CLASSIC | Capability.MARIADB_CLIENT_PROGRESS
    tracker = track(caps, Command.COM_QUERY, Stream().add(progress, progress, ok()).data)
    assert _outcome(tracker).kind is OutcomeKind.OK
    tracker = track(CLASSIC, Command.COM_QUERY, Stream().add(progress).data)
    assert _outcome(tracker).error_code == 0xFFFF


@BOTH
def test_metadata_skipped_with_cache_metadata(caps: Capability) -> None:
    caps |= Capability.MARIADB_CLIENT_CACHE_METADATA
    stream = Stream().add(b"\x02\x00")  # two columns, metadata does not follow
    if not caps & Capability.CLIENT_DEPRECATE_EOF:
        stream.add(eof())
    stream.add(b"\x00\x00\x01\x02", terminator(caps))
    tracker = track(caps, Command.COM_STMT_EXECUTE, stream.data)
    assert _outcome(tracker).rows == 1
    stream = Stream().add(b"\x01\x01", COLDEF)  # metadata follows
    if not caps & Capability.CLIENT_DEPRECATE_EOF:
        stream.add(eof())
    stream.add(b"\x00\x00\x01", terminator(caps))
    assert _outcome(track(caps, Command.COM_STMT_EXECUTE, stream.data)).rows == 1


def test_prepare_without_metadata() -> None:
    caps = DEPRECATE | Capability.CLIENT_OPTIONAL_RESULTSET_METADATA
    head = b"\x00\x01\x00\x00\x00\x02\x00\x01\x00\x00\x00\x00\x00"  # metadata_follows = 0
    tracker = track(caps, Command.COM_STMT_PREPARE, Stream().add(head).data)
    assert tracker.prepare_ok == PrepareOk(1, 2, 1, 0)


def test_sequence_wraps_over_256_packets() -> None:
    data = Stream().result_set(DEPRECATE, [b"\x01r"] * 1000).data
    tracker = track(DEPRECATE, Command.COM_QUERY, data, chunk=777)
    assert (_outcome(tracker).rows, tracker.last_seq) == (1000, (1 + 1 + 1000 + 1) & 0xFF)


def test_counters_are_live_while_streaming() -> None:
    data = Stream().result_set(DEPRECATE, [b"\x01r"] * 100).data
    tracker = ResponseTracker(DEPRECATE)
    tracker.start(Command.COM_QUERY)
    tracker.feed(data[: len(data) // 2])
    assert 0 < tracker.rows < 100 and tracker.result_sets == 1
    assert tracker.outcome is None and not tracker.done


# --------------------------------------------------------------------------- misuse / malformed


def test_misuse_is_local() -> None:
    tracker = ResponseTracker(CLASSIC)
    with pytest.raises(LocalProtocolError):
        tracker.feed(b"\x00")
    with pytest.raises(LocalProtocolError):
        tracker.infile_sent()
    with pytest.raises(LocalProtocolError, match="no reply tracking"):
        tracker.start(Command.COM_BINLOG_DUMP)
    tracker.start(Command.COM_QUERY)
    with pytest.raises(LocalProtocolError):
        tracker.start(Command.COM_QUERY)


MALFORMED = [
    ("column count 0xFB in binary protocol", Command.COM_STMT_EXECUTE, [b"\xfbfile"]),
    ("column count with trailing bytes", Command.COM_QUERY, [b"\x01\x00"]),
    ("column count too large", Command.COM_QUERY, [b"\xfd\x00\x00\x01"]),
    ("column count 0xFC truncated", Command.COM_QUERY, [b"\xfc\x01"]),
    ("EOF as first packet of a query", Command.COM_QUERY, [eof()]),
    ("empty first packet", Command.COM_QUERY, [b""]),
    ("premature EOF in definitions", Command.COM_QUERY, [b"\x02", COLDEF, eof()]),
    ("empty definition", Command.COM_QUERY, [b"\x02", COLDEF, b""]),
    ("no EOF after definitions", Command.COM_QUERY, [b"\x01", COLDEF, b"\x01a"]),
    ("long 0xFE after definitions", Command.COM_QUERY, [b"\x01", COLDEF, b"\xfe" * 9]),
    ("empty row", Command.COM_QUERY, [b"\x01", COLDEF, eof(), b""]),
    ("short EOF", Command.COM_QUERY, [b"\x01", COLDEF, eof(), b"\xfe\x00"]),
    ("short ERR", Command.COM_QUERY, [b"\xff\x01"]),
    ("short OK", Command.COM_PING, [b"\x00\x00\x00\x02"]),
    ("OK with bad lenenc", Command.COM_PING, [b"\x00\xfb\x00\x02\x00\x00\x00"]),
    ("garbage reply to ping", Command.COM_PING, [b"\x05hello"]),
    ("0xFE row-size EOF to ping", Command.COM_PING, [b"\xfe" + b"\x00" * 9]),
    ("garbage reply to prepare", Command.COM_STMT_PREPARE, [b"\x01\x02"]),
    ("short prepare ok", Command.COM_STMT_PREPARE, [b"\x00\x01\x00\x00\x00\x01"]),
    ("empty field list entry", Command.COM_FIELD_LIST, [COLDEF, b""]),
    ("ERR of 16 MiB", Command.COM_QUERY, [b"\xff" * MAX, b""]),
    ("garbage after infile", Command.COM_QUERY, [b"\xfbf"]),
]


@pytest.mark.parametrize("case, command, payloads", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_streams_raise_remote(case: str, command: int, payloads: list[bytes]) -> None:
    tracker = ResponseTracker(CLASSIC)
    tracker.start(command)
    data = Stream().add(*payloads).data
    with pytest.raises(RemoteProtocolError):
        tracker.feed(data)
        if tracker.state is ResponseState.LOCAL_INFILE_REQUESTED:
            tracker.infile_sent()
            tracker.feed(frame(b"\x05junk", 3))
    assert tracker.state is ResponseState.ERROR
    with pytest.raises(LocalProtocolError):
        tracker.feed(b"\x00")
    with pytest.raises(LocalProtocolError):
        tracker.start(Command.COM_PING)


def test_out_of_order_sequence_id_raises() -> None:
    tracker = ResponseTracker(CLASSIC)
    tracker.start(Command.COM_QUERY)
    with pytest.raises(RemoteProtocolError, match="out of order"):
        tracker.feed(frame(b"\x01", 1) + frame(COLDEF, 3))
    tracker = ResponseTracker(CLASSIC)  # also inside the fast row loop
    tracker.start(Command.COM_QUERY)
    data = Stream().add(b"\x01", COLDEF, eof(), b"\x01a", b"\x01b").data
    with pytest.raises(RemoteProtocolError, match="out of order"):
        tracker.feed(data + frame(b"\x01c", 9))


def test_truncated_streams_never_claim_done() -> None:
    for vector in SMALL:
        data = vector.data[: vector.meta["infile_at"] or len(vector.data)]
        for cut in {0, 1, 3, 4, 5, len(data) // 2, len(data) - 1}:
            tracker = vector.tracker()
            if 0 < cut < len(data):
                assert tracker.feed(data[:cut]) == cut
                assert not tracker.done


@settings(max_examples=300, deadline=None)
@given(
    command=st.sampled_from(sorted(Command.__members__.values())),
    caps=st.sampled_from([CLASSIC, DEPRECATE]),
    data=st.binary(max_size=200),
)
def test_random_bytes_only_raise_remote(command: Command, caps: Capability, data: bytes) -> None:
    tracker = ResponseTracker(caps)
    try:
        tracker.start(command)
    except LocalProtocolError:
        return
    try:
        used = tracker.feed(data)
    except RemoteProtocolError:
        return
    assert 0 <= used <= len(data)


@settings(max_examples=300, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=len(SMALL) - 1),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=4),
)
def test_mutated_vectors_only_raise_remote(index: int, flips: list[tuple[int, int]]) -> None:
    vector = SMALL[index]
    data = bytearray(vector.data[: vector.meta["infile_at"] or len(vector.data)])
    for position, value in flips:
        data[position % len(data)] = value
    tracker = vector.tracker()
    try:
        used = tracker.feed(bytes(data))
    except RemoteProtocolError:
        return
    assert 0 <= used <= len(data)


def _outcome_of(vector: Vector, chunks: list[bytes]) -> object:
    tracker = vector.tracker()
    try:
        consumed = feed_in_chunks(vector, tracker, chunks)
    except ProtocolError:
        return "error"
    outcome = tracker.outcome
    return (consumed, tracker.state, outcome) if outcome is not None else (consumed, tracker.state)


_SMALL = [v for v in ALL if v.name.startswith(("query_select_small", "query_select_empty"))]


@pytest.mark.parametrize("vector", _SMALL, ids=lambda v: v.name)
@settings(max_examples=150, deadline=None)
@given(at=st.integers(min_value=0, max_value=1 << 16), value=st.integers(0, 255))
def test_one_loop_walk_agrees_with_the_general_path_on_mutations(
    vector: Vector, at: int, value: int
) -> None:
    """Any one byte changed: the whole chunk (one-loop walk, or its fall-back) and the same
    bytes one at a time (general path only) end the same way."""
    data = bytearray(vector.data)
    data[at % len(data)] = value
    whole = _outcome_of(vector, [bytes(data)])
    split = _outcome_of(vector, [bytes(data[i : i + 1]) for i in range(len(data))])
    assert whole == split
