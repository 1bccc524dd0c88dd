"""Record real MariaDB reply streams, one file per command, for the ResponseTracker tests.

Usage (against the local cluster's primary, or any MariaDB 10.11)::

    .venv/bin/python -m tests.vectors.responses.capture --host 127.0.0.10 --port 3306

How a reply's end is found without trusting the code under test: the recording client
logs in with PyMySQL (so the capabilities are chosen by us: CLIENT_DEPRECATE_EOF on or
off), then takes over the raw socket. Each recorded command is sent *pipelined* with a
marker query, ``SELECT 1 AS `rwproxy_marker_<random>```. The server answers commands in
order, so the recorded reply is every byte before the marker's reply, which is located by
its unique column name and then checked byte for byte (column count packet ``01 00 00 01
01``, a column definition ``03 'def'``). LOCAL INFILE is the one interactive case: the
server stops and waits after its 0xFB request, so the client reads until the stream ends
in a complete 0xFB packet, sends the file, and only then pipelines the marker.

Expected outcomes come from two independent places: the corpus below states the kind,
row and result-set counts that the SQL must produce, and the status / warnings / error
code / last sequence id are read from the reply's final packet (walking the headers).
`write_vector` stores ``<name>.<mode>.hex`` (the bytes) and ``<name>.<mode>.json`` (the
capabilities, end offset, LOCAL INFILE pause offset and expectations).

`RawClient` and `corpus()` are reused by tests/integration/test_response_real.py, which
runs the same corpus (plus big replies that are too large to keep in the repository)
against the live server at test time.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
from pymysql.constants import CLIENT

from proxy.protocol import commands
from proxy.protocol.constants import Capability, Command, CursorType, SetOption
from proxy.protocol.framing import frame

HERE = Path(__file__).resolve().parent
MODES = {"eof": False, "deprecate_eof": True}

_CLIENT_FLAGS = (
    CLIENT.MULTI_STATEMENTS
    | CLIENT.MULTI_RESULTS
    | CLIENT.PS_MULTI_RESULTS
    | CLIENT.LOCAL_FILES
    | CLIENT.SESSION_TRACK
)


class CaptureError(Exception):
    pass


@dataclass
class Recorded:
    """One command's reply as the server sent it."""

    name: str
    command: int
    cursor: bool
    reply: bytes
    caps: Capability
    infile_at: int | None = None
    expect: dict[str, Any] = field(default_factory=dict)


class RawClient:
    """A PyMySQL login, then raw packets on the socket."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        password: str,
        database: str,
        *,
        deprecate_eof: bool,
    ) -> None:
        flags = _CLIENT_FLAGS | (CLIENT.DEPRECATE_EOF if deprecate_eof else 0)
        self.conn = pymysql.connect(
            host=host,
            port=port,
            user=user,
            password=password,
            database=database,
            client_flag=flags,
            autocommit=None,
            local_infile=True,
            charset="utf8mb4",
            max_allowed_packet=64 << 20,
        )
        self.sock: socket.socket = self.conn._sock
        self.sock.settimeout(60)
        self.caps = Capability(self.conn.client_flag & self.conn.server_capabilities)
        self._buf = bytearray()
        self.recv_log: list[bytes] | None = None  # set to [] to keep each recv() chunk

    def close(self) -> None:
        try:
            self.sock.sendall(frame(commands.build_quit(), 0))
        finally:
            self.sock.close()

    def send(self, payload: bytes, seq: int = 0) -> None:
        self.sock.sendall(frame(payload, seq))

    def _recv(self) -> None:
        data = self.sock.recv(4 << 20)
        if not data:
            raise CaptureError("server closed the connection")
        if self.recv_log is not None:
            self.recv_log.append(data)
        self._buf += data

    def exchange(self, payload: bytes) -> bytes:
        """Send one command, return its complete reply (found with a pipelined marker)."""
        self.send(payload)
        return self._reply_before_marker()

    def _reply_before_marker(self) -> bytes:
        marker = f"rwproxy_marker_{secrets.token_hex(12)}"
        self.send(commands.build_query(f"SELECT 1 AS `{marker}`".encode()))
        hit = scanned = 0
        while True:
            hit = self._buf.find(marker.encode(), scanned)
            if hit >= 0:
                break
            scanned = max(0, len(self._buf) - len(marker))  # keep the search linear
            self._recv()
        while (found := _marker_reply(self._buf, hit, self.caps)) is None:
            self._recv()
        start, end = found
        reply = bytes(self._buf[:start])
        del self._buf[:end]
        return reply

    def infile_exchange(self, payload: bytes, file_data: bytes) -> tuple[bytes, int]:
        """Send a command that requests LOCAL INFILE; answer with `file_data`.

        Returns the reply and the offset just past the server's 0xFB request.
        """
        self.send(payload)
        request_end, seq = self._await_infile_request()
        chunks = [file_data[i : i + 65536] for i in range(0, len(file_data), 65536)]
        for chunk in [*chunks, b""]:
            seq = (seq + 1) & 0xFF
            self.send(chunk, seq)
        return self._reply_before_marker(), request_end

    def _await_infile_request(self) -> tuple[int, int]:
        """Read until the stream ends with a complete 0xFB packet (the server then waits)."""
        while True:
            self._recv()
            last = _last_packet(self._buf)
            if last is not None and last[2][:1] == b"\xfb":
                return len(self._buf), last[1]


def _packets(stream: bytes | bytearray) -> Iterator[tuple[int, int, int]]:
    """(offset, seq, length) of each physical packet; stops at an incomplete one."""
    pos = 0
    while pos + 4 <= len(stream):
        length = int.from_bytes(stream[pos : pos + 3], "little")
        if pos + 4 + length > len(stream):
            return
        yield pos, stream[pos + 3], length
        pos += 4 + length


def _last_packet(stream: bytes | bytearray) -> tuple[int, int, bytes, int] | None:
    """(offset, seq, payload, packet count) of the last packet, if `stream` ends with it."""
    last = None
    count = end = 0
    for offset, seq, length in _packets(stream):
        last = (offset, seq, length)
        count += 1
        end = offset + 4 + length
    if last is None or end != len(stream):
        return None
    offset, seq, length = last
    return offset, seq, bytes(stream[offset + 4 : end]), count


def _marker_reply(buf: bytearray, hit: int, caps: Capability) -> tuple[int, int] | None:
    """(start, end) of the marker query's reply in `buf` (its name is at `hit`), once complete."""
    # column count (5 bytes) + column definition header (4) + "\x03def\x00\x00\x00" + len
    start = hit - 5 - 4 - 7 - 1
    if buf[start : start + 5] != b"\x01\x00\x00\x01\x01" or buf[start + 9 : start + 13] != (
        b"\x03def"
    ):
        raise CaptureError(f"marker found at {hit} but not inside a marker reply")
    wanted = 4 if caps & Capability.CLIENT_DEPRECATE_EOF else 5
    packets = list(_packets(buf[start:]))
    if len(packets) < wanted:
        return None
    offset, _, length = packets[wanted - 1]
    if buf[start + offset + 4] != 0xFE:
        raise CaptureError("marker reply does not end with a terminator")
    return start, start + offset + 4 + length


def final_packet_facts(reply: bytes, caps: Capability, command: int) -> dict[str, Any]:
    """status / warnings / error code / last seq, read from the final packet only."""
    last = _last_packet(reply)
    if last is None:
        raise CaptureError("reply does not end with a complete packet")
    _, seq, payload, count = last
    facts: dict[str, Any] = {"last_seq": seq}
    if count == 1 and command == Command.COM_STMT_PREPARE and payload[:1] == b"\x00":
        pass  # COM_STMT_PREPARE_OK: no status flags
    elif payload[:1] == b"\xff":
        facts["error_code"] = int.from_bytes(payload[1:3], "little")
    elif payload[:1] == b"\x00" or (
        payload[:1] == b"\xfe" and caps & Capability.CLIENT_DEPRECATE_EOF
    ):
        status, warnings = _ok_status_warnings(payload)
        facts.update(status=status, warnings=warnings)
    elif payload[:1] == b"\xfe" and len(payload) < 9:
        warnings = int.from_bytes(payload[1:3], "little")
        facts.update(status=int.from_bytes(payload[3:5], "little"), warnings=warnings)
    return facts


def _ok_status_warnings(payload: bytes) -> tuple[int, int]:
    pos = 1
    for _ in range(2):  # affected_rows, last_insert_id
        first = payload[pos]
        pos += {0xFC: 3, 0xFD: 4, 0xFE: 9}.get(first, 1)
    status = int.from_bytes(payload[pos : pos + 2], "little")
    return status, int.from_bytes(payload[pos + 2 : pos + 4], "little")


def _default_counts(command: int, expect: dict[str, Any]) -> dict[str, int]:
    """rows / result_sets implied by the kind when the corpus entry does not say."""
    if expect["kind"] != "RESULT_SET":
        return {"rows": 0, "result_sets": 0}
    return {"result_sets": 0 if command == Command.COM_STMT_FETCH else 1}


# --------------------------------------------------------------------------- corpus

DdlRunner = Callable[[str], None]


def admin_ddl(host: str, port: int, user: str, password: str, database: str) -> DdlRunner:
    """Run setup DDL as an admin: with binary logging on, creating routines and triggers
    needs SUPER (error 1419), which the app user does not have."""

    def run(text: str) -> None:
        conn = pymysql.connect(
            host=host, port=port, user=user, password=password, database=database, autocommit=True
        )
        try:
            with conn.cursor() as cursor:
                cursor.execute(text)
        finally:
            conn.close()

    return run


class Session:
    """Runs corpus steps on one RawClient, remembering statement ids between steps."""

    def __init__(self, client: RawClient, prefix: str, ddl: DdlRunner | None = None) -> None:
        self.client = client
        self.prefix = prefix
        self.ddl = ddl
        self.stmts: dict[str, int] = {}

    def sql(self, text: str) -> bytes:
        return text.replace("{p}", self.prefix).encode()

    def setup(self, text: str) -> None:
        if self.ddl is not None:
            self.ddl(self.sql(text).decode())
            return
        reply = self.client.exchange(commands.build_query(self.sql(text)))
        facts = final_packet_facts(reply, self.client.caps, Command.COM_QUERY)
        if "error_code" in facts:
            raise CaptureError(f"setup failed ({facts['error_code']}): {text}")

    def record(self, name: str, payload: bytes, *, cursor: bool = False, **expect: Any) -> Recorded:
        reply = self.client.exchange(payload)
        return self._recorded(name, payload, reply, cursor, None, expect)

    def record_infile(self, name: str, payload: bytes, data: bytes, **expect: Any) -> Recorded:
        reply, infile_at = self.client.infile_exchange(payload, data)
        return self._recorded(name, payload, reply, False, infile_at, expect)

    def _recorded(
        self,
        name: str,
        payload: bytes,
        reply: bytes,
        cursor: bool,
        infile_at: int | None,
        expect: dict[str, Any],
    ) -> Recorded:
        facts = final_packet_facts(reply, self.client.caps, payload[0])
        if "error_code" in expect and expect["error_code"] != facts.get("error_code"):
            raise CaptureError(f"{name}: expected error {expect['error_code']}, got {facts}")
        recorded = Recorded(name, payload[0], cursor, reply, self.client.caps, infile_at)
        recorded.expect = {**_default_counts(payload[0], expect), **facts, **expect}
        return recorded

    def prepare(self, key: str, name: str, text: str, **expect: Any) -> Recorded:
        recorded = self.record(name, commands.build_stmt_prepare(self.sql(text)), **expect)
        self.stmts[key] = int.from_bytes(recorded.reply[5:9], "little")
        return recorded


_DROP_SCHEMA = (
    "DROP TABLE IF EXISTS {p}t, {p}load, {p}strict",
    "DROP PROCEDURE IF EXISTS {p}three",
    "DROP PROCEDURE IF EXISTS {p}out",
    "DROP FUNCTION IF EXISTS {p}fail_at",
)


def drop_schema(ddl: DdlRunner, prefix: str) -> None:
    for text in _DROP_SCHEMA:
        ddl(text.replace("{p}", prefix))


def setup_schema(s: Session) -> None:
    """Tables, a trigger, procedures and a function the corpus uses (`{p}` = prefix)."""
    for text in (
        *_DROP_SCHEMA,
        "CREATE TABLE {p}t (id INT PRIMARY KEY, name VARCHAR(40), price DECIMAL(10,2),"
        " note TEXT, born DATE)",
        "INSERT INTO {p}t VALUES (1,'one',1.50,NULL,'2001-01-01'),(2,'two',2.50,'x',NULL),"
        "(3,'three',NULL,REPEAT('y',300),'2003-03-03'),(4,'four',4.00,'',NULL),"
        "(5,'five',5.25,'z','2005-05-05')",
        "CREATE TABLE {p}load (a INT, b VARCHAR(20))",
        "CREATE TABLE {p}strict (a INT)",
        "CREATE TRIGGER {p}strict_bi BEFORE INSERT ON {p}strict FOR EACH ROW"
        " IF NEW.a = 3 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'no threes'; END IF",
        "CREATE PROCEDURE {p}three() BEGIN SELECT 1 AS a; SELECT id, name FROM {p}t;"
        " SELECT 'x' AS c, 'y' AS d FROM DUAL WHERE 0; END",
        "CREATE PROCEDURE {p}out(IN x INT, OUT y INT) BEGIN SELECT x AS input; SET y = x * 2; END",
        "CREATE FUNCTION {p}fail_at(v INT, at INT) RETURNS INT DETERMINISTIC BEGIN"
        " IF v = at THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'failed mid-stream';"
        " END IF; RETURN v; END",
    ):
        s.setup(text)


def _simple_commands(s: Session) -> Iterator[Recorded]:
    yield s.record("ping", commands.build_ping(), kind="OK")
    yield s.record("init_db", commands.build_init_db(b"app"), kind="OK")
    yield s.record("init_db_err", commands.build_init_db(b"no_such_db"), kind="ERR")
    yield s.record("statistics", commands.build_statistics(), kind="STATISTICS")
    off = SetOption.MYSQL_OPTION_MULTI_STATEMENTS_OFF
    yield s.record("set_option_off", commands.build_set_option(off), kind="EOF")
    on = SetOption.MYSQL_OPTION_MULTI_STATEMENTS_ON
    yield s.record("set_option_on", commands.build_set_option(on), kind="EOF")
    kill = commands.build_process_kill(0x7FFFFFF0)
    yield s.record("process_kill_err", kill, kind="ERR", error_code=1094)
    yield s.record("field_list", commands.build_field_list(s.sql("{p}t")), kind="EOF")
    missing = commands.build_field_list(s.sql("{p}missing"))
    yield s.record("field_list_err", missing, kind="ERR", error_code=1146)


def _queries(s: Session) -> Iterator[Recorded]:
    q = commands.build_query
    insert = q(s.sql("INSERT INTO {p}load VALUES (1,'a'),(2,'b')"))
    yield s.record("query_ok_insert", insert, kind="OK")
    yield s.record("query_err_syntax", q(b"SELEC 1"), kind="ERR", error_code=1064)
    yield s.record("query_select_small", q(s.sql("SELECT * FROM {p}t")), kind="RESULT_SET", rows=5)
    yield s.record(
        "query_select_1000",
        q(b"SELECT seq, REPEAT('x', seq % 50), NULL FROM seq_1_to_1000"),
        kind="RESULT_SET",
        rows=1000,
    )
    empty = q(s.sql("SELECT * FROM {p}t WHERE id < 0"))
    yield s.record("query_select_empty", empty, kind="RESULT_SET", rows=0)
    yield s.record("query_warnings", q(b"SELECT 1/0"), kind="RESULT_SET", rows=1, warnings=1)
    yield s.record(
        "query_wide_rows",
        q(b"SELECT seq, REPEAT('w', 65534 + seq) FROM seq_1_to_2"),  # int<lenenc> 0xFC, 0xFD
        kind="RESULT_SET",
        rows=2,
    )
    yield s.record("query_begin", q(b"BEGIN"), kind="OK")
    in_trans = q(s.sql("SELECT id FROM {p}t FOR UPDATE"))
    yield s.record("query_select_in_trans", in_trans, kind="RESULT_SET", rows=5)
    yield s.record("query_commit", q(b"COMMIT"), kind="OK")
    tz = q(b"SET time_zone = '+00:00', autocommit = 1")
    yield s.record("query_set_session_track", tz, kind="OK")


def _multi_results(s: Session) -> Iterator[Recorded]:
    q = commands.build_query
    multi = "SELECT 1; SELECT 'a','b' UNION ALL SELECT 'c','d'; INSERT INTO {p}load VALUES (3,'c');"
    yield s.record(
        "multi_statements",
        q(s.sql(multi + " SELECT 2")),
        kind="RESULT_SET",
        result_sets=3,
        rows=4,
    )
    yield s.record("multi_statements_ends_ok", q(s.sql(multi)), kind="OK", result_sets=2, rows=3)
    yield s.record(
        "multi_statements_error",
        q(b"SELECT 1; SELEC 2; SELECT 3"),
        kind="ERR",
        error_code=1064,
        result_sets=1,
        rows=1,
    )
    yield s.record(
        "call_three_results", q(s.sql("CALL {p}three()")), kind="OK", result_sets=3, rows=6
    )


def _errors_mid_stream(s: Session) -> Iterator[Recorded]:
    q = commands.build_query
    yield s.record(
        "error_mid_stream_signal",
        q(s.sql("SELECT seq, {p}fail_at(seq, 700) FROM seq_1_to_1000")),
        kind="ERR",
        error_code=1644,
        result_sets=1,
        rows=699,
    )
    yield s.record(
        "error_mid_stream_subquery",
        q(s.sql("SELECT seq, (SELECT id FROM {p}t WHERE seq >= 300 OR id = 1) FROM seq_1_to_500")),
        kind="ERR",
        error_code=1242,
        result_sets=1,
        rows=299,
    )


def _prepared(s: Session) -> Iterator[Recorded]:
    yield s.prepare("select", "prepare_select", "SELECT id, name FROM {p}t WHERE id > ?", kind="OK")
    yield s.prepare("insert", "prepare_insert", "INSERT INTO {p}load VALUES (?, ?)", kind="OK")
    yield s.prepare("plain", "prepare_no_params", "SELECT 1, 2, 3", kind="OK")
    yield s.prepare("do", "prepare_nothing", "DO 1", kind="OK")
    bad = commands.build_stmt_prepare(b"SELEC ?")
    yield s.record("prepare_err", bad, kind="ERR", error_code=1064)
    yield s.prepare("call", "prepare_call_out", "CALL {p}out(?, ?)", kind="OK")
    yield s.prepare("three", "prepare_call_three", "CALL {p}three()", kind="OK")


def _int_param(value: int) -> bytes:
    """Parameter block for one INT parameter: null bitmap, bound flag, type LONG, value."""
    return b"\x00\x01\x03\x00" + value.to_bytes(4, "little")


def _executes(s: Session) -> Iterator[Recorded]:
    ex = commands.build_stmt_execute
    select = s.stmts["select"]
    yield s.record("execute_select", ex(select, params=_int_param(1)), kind="RESULT_SET", rows=4)
    # new_params_bound_flag = 0: types from the previous EXECUTE
    reuse = ex(select, params=b"\x00\x00" + (3).to_bytes(4, "little"))
    yield s.record("execute_select_reuse_types", reuse, kind="RESULT_SET", rows=2)
    insert = b"\x00\x01\x03\x00\xfd\x00" + (7).to_bytes(4, "little") + b"\x03abc"
    yield s.record("execute_insert", ex(s.stmts["insert"], params=insert), kind="OK")
    yield s.record("execute_plain", ex(s.stmts["plain"]), kind="RESULT_SET", rows=1)
    yield s.record("execute_nothing", ex(s.stmts["do"]), kind="OK")
    out = b"\x02\x01\x03\x00\x03\x00" + (21).to_bytes(4, "little")  # y is NULL (bit 1)
    yield s.record(
        "execute_call_out_params",
        ex(s.stmts["call"], params=out),
        kind="OK",
        result_sets=2,
        rows=2,
    )
    yield s.record(
        "execute_call_three",
        ex(s.stmts["three"]),
        kind="OK",
        result_sets=3,
        rows=6,
    )
    yield s.record("execute_unknown_stmt", ex(0x7FFFFFF0), kind="ERR", error_code=1243)


def _cursors(s: Session) -> Iterator[Recorded]:
    ro = CursorType.CURSOR_TYPE_READ_ONLY
    select = s.stmts["select"]
    execute = commands.build_stmt_execute(select, ro, _int_param(0))
    yield s.record("execute_cursor", execute, cursor=True, kind="RESULT_SET", rows=0)
    fetch = commands.build_stmt_fetch
    yield s.record("fetch_2", fetch(select, 2), kind="RESULT_SET", rows=2)
    yield s.record("fetch_rest", fetch(select, 100), kind="RESULT_SET", rows=3)
    yield s.record("fetch_after_end", fetch(select, 100), kind="ERR")
    reset = commands.build_stmt_reset(select)
    yield s.record("stmt_reset", reset, kind="OK")
    plain = commands.build_stmt_execute(s.stmts["do"], ro)
    yield s.record("execute_cursor_no_result", plain, cursor=True, kind="OK")


def _local_infile(s: Session) -> Iterator[Recorded]:
    q = commands.build_query
    load = "LOAD DATA LOCAL INFILE 'rows.csv' INTO TABLE {p}load FIELDS TERMINATED BY ','"
    data = b"".join(b"%d,row %d\n" % (i, i) for i in range(1, 201))
    yield s.record_infile("load_data_local", q(s.sql(load)), data, kind="OK")
    yield s.record_infile(
        "load_data_local_multi",
        q(s.sql(f"SELECT 1; {load}; SELECT 2")),
        b"10,x\n",
        kind="RESULT_SET",
        result_sets=2,
        rows=2,
    )
    strict = "LOAD DATA LOCAL INFILE 'threes.csv' INTO TABLE {p}strict"
    yield s.record_infile(
        "load_data_local_err", q(s.sql(strict)), b"1\n2\n3\n", kind="ERR", error_code=1644
    )


def _last(s: Session) -> Iterator[Recorded]:
    yield s.record("reset_connection", commands.build_reset_connection(), kind="OK")


GROUPS: tuple[Callable[[Session], Iterator[Recorded]], ...] = (
    _simple_commands,
    _queries,
    _multi_results,
    _errors_mid_stream,
    _prepared,
    _executes,
    _cursors,
    _local_infile,
    _last,
)


def corpus(client: RawClient, prefix: str, ddl: DdlRunner | None = None) -> Iterator[Recorded]:
    """Run the whole corpus on `client`; tables and routines are named `<prefix>...`."""
    session = Session(client, prefix, ddl)
    setup_schema(session)
    for group in GROUPS:
        yield from group(session)


def big_corpus(client: RawClient) -> Iterator[Recorded]:
    """Replies too large for the repository: 100k rows, a > 16 MiB row, a 32 MiB row."""
    s = Session(client, "")
    q = commands.build_query
    yield s.record(
        "select_100k",
        q(b"SELECT seq, CONCAT('row-', seq), seq * 1.5 FROM seq_1_to_100000"),
        kind="RESULT_SET",
        rows=100_000,
    )
    yield s.record(
        "row_over_16mib",
        q(b"SELECT REPEAT('x', 17*1024*1024), 1 UNION ALL SELECT 'y', 2"),
        kind="RESULT_SET",
        rows=2,
    )
    yield s.record(
        "row_exactly_two_packets",
        q(b"SELECT REPEAT('z', 2 * 16777215 - 4)"),
        kind="RESULT_SET",
        rows=1,
    )
    sql = b"SELECT REPEAT('x', 17*1024*1024), 1 UNION ALL SELECT 'y', 2"
    prepared = s.record("prepare_big", commands.build_stmt_prepare(sql), kind="OK")
    stmt = int.from_bytes(prepared.reply[5:9], "little")
    execute = commands.build_stmt_execute(stmt)
    yield s.record("execute_big", execute, kind="RESULT_SET", rows=2)


# --------------------------------------------------------------------------- storage


def write_vector(directory: Path, mode: str, recorded: Recorded) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{recorded.name}.{mode}"
    hex_text = recorded.reply.hex()
    lines = [hex_text[i : i + 128] for i in range(0, len(hex_text), 128)]
    (directory / f"{stem}.hex").write_text("\n".join(lines) + "\n")
    meta = {
        "command": Command(recorded.command).name,
        "cursor": recorded.cursor,
        "caps": int(recorded.caps),
        "caps_names": [c.name for c in Capability if c in recorded.caps],
        "end": len(recorded.reply),
        "infile_at": recorded.infile_at,
        "expect": recorded.expect,
    }
    (directory / f"{stem}.json").write_text(json.dumps(meta, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.10")
    parser.add_argument("--port", type=int, default=3306)
    parser.add_argument("--user", default="app")
    parser.add_argument("--password", default="app-password")
    parser.add_argument("--database", default="app")
    parser.add_argument("--admin-user", default="admin")
    parser.add_argument("--admin-password", default="admin-password")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    ddl = admin_ddl(args.host, args.port, args.admin_user, args.admin_password, args.database)
    try:
        for mode, deprecate_eof in MODES.items():
            client = RawClient(
                args.host,
                args.port,
                args.user,
                args.password,
                args.database,
                deprecate_eof=deprecate_eof,
            )
            try:
                for recorded in corpus(client, "vec_", ddl):
                    write_vector(args.out, mode, recorded)
                    print(f"{mode:14} {recorded.name:32} {len(recorded.reply):8} bytes")
            finally:
                client.close()
    finally:
        drop_schema(ddl, "vec_")
    return 0


if __name__ == "__main__":
    sys.exit(main())
