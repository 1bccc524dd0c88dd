"""Sessions through a real proxy: consistency, state, statements, kills, departures, abuse.

* Read-your-writes: with both replicas' SQL threads stopped *after* the proxy saw them
  healthy (health checks every hour, so they stay readers), a write-then-read loop in one
  session always reads its write (the GTID wait times out, the read falls back to the
  writer), while the same loop with `read_your_writes: off` reads stale data: the setup
  really is stale, and the feature is what saves the reads.
* Session state (schema, SET NAMES, user variables) follows the session onto the replica.
* Server-side prepared statements are routed by the session's state at execute time
  (re-prepared, with the parameter types the client bound earlier, on a backend that has
  not seen them), long data and COM_STMT_CLOSE work, and so do cursors
  (COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY + COM_STMT_FETCH).
* KILL QUERY <proxy connection id> from another connection interrupts a running query
  within a second; KILL [CONNECTION] and COM_PROCESS_KILL end the session; another user's
  session cannot be killed.
* A client leaving mid-result or mid-transaction leaves nothing behind: pools, server
  threads and InnoDB transactions return to what they were.
* Hostile clients at the socket get an ERR or a closed connection, and the proxy keeps
  serving everyone else.

Every wait is a deadline loop on something observable. PyMySQL does the logins for the raw
protocol tests (its capabilities: no CLIENT_DEPRECATE_EOF, so replies end in EOF packets),
then `RawClient` speaks the protocol on its socket.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pymysql
import pytest

from proxy.config import HealthConfig, RoutingConfig
from tests.integration.cluster_fixture import ClusterHandle
from tests.support.backpressure import PROXY_HELD_BOUND, stream_until_stalled
from tests.support.proxy_harness import ProxyThread

pytestmark = pytest.mark.integration

StartProxy = Callable[..., ProxyThread]
T = TypeVar("T")

RYW_ROUNDS = 50
CLEANUP_DEADLINE_SECONDS = 5.0
SLOW_RESULT = "SELECT seq, REPEAT('x', 20000), SLEEP(0.01) /* {} */ FROM seq_1_to_2000"  # 20 s
KILL_DEADLINE_SECONDS = 1.0
HANDSHAKE_TIMEOUT_SECONDS = 0.5
SMALL_MAX_PACKET = 1 << 20
NO_HEALTH_CHECKS = HealthConfig(interval_seconds=3600.0)


COM_QUERY = 0x03
COM_STMT_PREPARE = 0x16
COM_STMT_EXECUTE = 0x17
COM_STMT_SEND_LONG_DATA = 0x18
COM_STMT_CLOSE = 0x19
COM_STMT_FETCH = 0x1C
COM_RESET_CONNECTION = 0x1F
TYPE_VAR_STRING = 0xFD
TYPE_BLOB = 0xFC
LONG_DATA = None  # a parameter whose value went with COM_STMT_SEND_LONG_DATA
CURSOR_TYPE_READ_ONLY = 0x01
SERVER_STATUS_CURSOR_EXISTS = 0x0040
SERVER_STATUS_LAST_ROW_SENT = 0x0080


def eventually(check: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll `check()` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what} (last: {result!r})")
        time.sleep(interval)


def connect(proxy: ProxyThread, cluster: ClusterHandle, **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": proxy.port,
        "user": cluster.app.user,
        "password": cluster.app.password,
        "database": cluster.database,
        "ssl_disabled": True,
        "autocommit": True,
        "read_timeout": 30,
    }
    return pymysql.connect(**(options | kwargs))


def one(conn: Any, sql: str, args: Any = None) -> Any:
    with conn.cursor() as cursor:
        cursor.execute(sql, args)
        return cursor.fetchone()


@pytest.fixture
def table(cluster: ClusterHandle) -> Iterator[str]:
    name = cluster.unique_name("rwt")
    cluster.query(
        cluster.primary,
        f"CREATE TABLE {cluster.database}.{name} (id INT PRIMARY KEY, v VARCHAR(64))",
    )
    cluster.wait_replicated()
    yield name
    cluster.query(cluster.primary, f"DROP TABLE IF EXISTS {cluster.database}.{name}")


def pool_use(proxy: ProxyThread) -> dict[str, int]:
    """Backend connections in use per pod, summed over the proxy's pools."""

    def read(px: Any) -> dict[str, int]:
        use: dict[str, int] = {}
        for pool in px.ctx.pools.pools():
            stats = pool.stats()
            use[pool.endpoint.pod] = use.get(pool.endpoint.pod, 0) + stats.in_use + stats.opening
        return use

    return proxy.call(read)


def session_count(proxy: ProxyThread) -> int:
    return proxy.call(lambda px: len(px.ctx.sessions))


# -- read-your-writes -----------------------------------------------------------------


def write_then_read(conn: Any, table: str, first: int, rounds: int) -> list[tuple[int, Any, int]]:
    """Insert row n then read it back at once; (n, what the read saw, @@server_id)."""
    seen = []
    with conn.cursor() as cursor:
        for n in range(first, first + rounds):
            cursor.execute(f"INSERT INTO {table} (id, v) VALUES (%s, %s)", (n, f"v{n}"))
            cursor.execute(f"SELECT (SELECT v FROM {table} WHERE id = %s), @@server_id", (n,))
            value, server_id = cursor.fetchone()
            seen.append((n, value, server_id))
    return seen


def prepared_write_then_read(
    raw: RawClient, table: str, first: int, rounds: int
) -> list[tuple[int, Any, int]]:
    """`write_then_read` with server-side prepared statements (COM_STMT_EXECUTE)."""
    insert = raw.prepare(f"INSERT INTO {table} (id, v) VALUES (?, ?)")
    select = raw.prepare(f"SELECT (SELECT v FROM {table} WHERE id = ?), CAST(@@server_id AS CHAR)")
    seen = []
    for n in range(first, first + rounds):
        raw.execute(insert, [str(n).encode(), f"v{n}".encode()])
        ((value, server_id),) = raw.execute(select, [str(n).encode()])
        seen.append((n, value and value.decode(), int(server_id)))
    return seen


def reset_between_write_and_reads(
    raw: RawClient, table: str, first: int, rounds: int
) -> list[tuple[int, Any, int]]:
    """Insert row n, COM_RESET_CONNECTION (the writer connection goes back to the pool),
    then read it twice: the second read runs after the session took a fresh writer
    connection, whose own last GTID knows nothing of the write."""
    seen = []
    for n in range(first, first + rounds):
        raw.query(f"INSERT INTO {table} (id, v) VALUES ({n}, 'v{n}')")
        raw.send(bytes((COM_RESET_CONNECTION,)))
        assert raw.read()[:1] == b"\x00"
        for _ in range(2):
            ((value, server_id),) = raw.query(
                f"SELECT (SELECT v FROM {table} WHERE id = {n}), @@server_id"
            )
            seen.append((n, value and value.decode(), int(server_id or 0)))
    return seen


def test_read_your_writes_while_every_replica_lags(
    start_proxy: StartProxy,
    disrupted_cluster: ClusterHandle,
    table: str,
    primary_id: int,
) -> None:
    cluster = disrupted_cluster
    ryw = start_proxy(
        health=NO_HEALTH_CHECKS, routing=RoutingConfig(read_your_writes_timeout_seconds=0.05)
    )
    off = start_proxy(health=NO_HEALTH_CHECKS, routing=RoutingConfig(read_your_writes="off"))
    for replica in cluster.replicas:
        cluster.cluster.lag(replica, on=True)

    with connect(off, cluster) as conn:
        stale = write_then_read(conn, table, 1000, 5)
    assert all(value is None and server_id != primary_id for _, value, server_id in stale), (
        f"without read-your-writes the reads should be stale on a lagging replica: {stale}"
    )
    with connect(ryw, cluster) as conn:
        seen = write_then_read(conn, table, 1, RYW_ROUNDS)
    raw = RawClient(ryw, cluster)
    try:
        seen += prepared_write_then_read(raw, table, 500, 10)
        seen += reset_between_write_and_reads(raw, table, 600, 5)
    finally:
        raw.close()
    wrong = [(n, value) for n, value, _ in seen if value != f"v{n}"]
    assert not wrong, f"stale reads: {wrong}"
    assert {server_id for _, _, server_id in seen} == {primary_id}


def test_read_your_writes_on_healthy_replicas(
    proxy: ProxyThread, cluster: ClusterHandle, table: str, primary_id: int
) -> None:
    """Caught-up replicas confirm the write: the read runs there, and sees it."""
    with connect(proxy, cluster) as conn:
        seen = write_then_read(conn, table, 1, 20)
    wrong = [(n, value) for n, value, _ in seen if value != f"v{n}"]
    assert not wrong, f"stale reads: {wrong}"
    on_writer = [n for n, _, server_id in seen if server_id == primary_id]
    assert len(on_writer) <= 2, f"reads fell back to the writer: {on_writer}"


# -- session state --------------------------------------------------------------------


@pytest.fixture
def other_db(cluster: ClusterHandle) -> Iterator[str]:
    """A second database the app user may use, with a table `only_here` holding one row."""
    name = cluster.unique_name("rwt_db")
    with cluster.connect(cluster.primary, "admin") as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
        cursor.execute(f"CREATE TABLE {name}.only_here (x INT)")
        cursor.execute(f"INSERT INTO {name}.only_here VALUES (42)")
        cursor.execute(f"GRANT ALL ON {name}.* TO %s@'%%'", (cluster.app.user,))
    cluster.wait_replicated()
    yield name
    with cluster.connect(cluster.primary, "admin") as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        cursor.execute(f"REVOKE ALL ON {name}.* FROM %s@'%%'", (cluster.app.user,))


def test_session_state_follows_onto_the_replica(
    proxy: ProxyThread, cluster: ClusterHandle, other_db: str, primary_id: int
) -> None:
    with connect(proxy, cluster) as conn:
        with conn.cursor() as cursor:
            cursor.execute(f"USE {other_db}")
            cursor.execute("SET NAMES latin1")
            cursor.execute("SET @x = 5")
            cursor.execute("SET SESSION sql_mode = 'ANSI_QUOTES'")
        row = one(
            conn,
            "SELECT DATABASE(), @@character_set_client, @x, @@sql_mode, @@server_id,"
            " (SELECT x FROM only_here)",
        )
        assert row[:4] == (other_db, "latin1", 5, "ANSI_QUOTES")
        assert row[4] != primary_id and row[5] == 42
        conn.select_db(cluster.database)  # COM_INIT_DB
        assert one(conn, "SELECT DATABASE(), @x, @@server_id")[:2] == (cluster.database, 5)
        with pytest.raises(pymysql.err.OperationalError):
            conn.select_db("rwt_no_such_database")  # fails: the schema stays
        row = one(conn, "SELECT DATABASE(), @@server_id")
        assert row[0] == cluster.database and row[1] != primary_id


# -- prepared statements and cursors --------------------------------------------------


def lenenc_int(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 0xFB:
        return first, pos + 1
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}[first]
    return int.from_bytes(data[pos + 1 : pos + 1 + size], "little"), pos + 1 + size


def lenenc_str(data: bytes, pos: int) -> tuple[bytes | None, int]:
    if data[pos] == 0xFB:
        return None, pos + 1
    size, pos = lenenc_int(data, pos)
    return data[pos : pos + size], pos + size


class ServerError(Exception):
    def __init__(self, payload: bytes) -> None:
        self.code = struct.unpack_from("<H", payload, 1)[0]
        super().__init__(self.code, payload[9:].decode(errors="replace"))


class RawClient:
    """PyMySQL logs in, then this speaks the protocol on its socket (no DEPRECATE_EOF)."""

    def __init__(self, proxy: ProxyThread, cluster: ClusterHandle) -> None:
        self.conn = connect(proxy, cluster)
        self.sock: socket.socket = self.conn._sock
        self.sock.settimeout(10)
        self.buf = b""

    def close(self) -> None:
        if self.conn._sock is not None:
            self.conn.close()

    def send(self, payload: bytes, seq: int = 0) -> None:
        self.sock.sendall(len(payload).to_bytes(3, "little") + bytes((seq,)) + payload)

    def read(self) -> bytes:
        while True:
            if len(self.buf) >= 4:
                size = int.from_bytes(self.buf[:3], "little")
                if len(self.buf) >= 4 + size:
                    payload, self.buf = self.buf[4 : 4 + size], self.buf[4 + size :]
                    return payload
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the proxy")
            self.buf += data

    def _first(self) -> bytes:
        payload = self.read()
        if payload[0] == 0xFF:
            raise ServerError(payload)
        return payload

    def _skip_to_eof(self) -> int:
        """Skip definitions up to an EOF packet; its status flags."""
        while True:
            payload = self.read()
            if payload[0] == 0xFE and len(payload) < 9:
                return int(struct.unpack_from("<H", payload, 3)[0])

    def _rows(self, binary: bool, columns: int) -> tuple[list[list[bytes | None]], int]:
        rows: list[list[bytes | None]] = []
        while True:
            payload = self.read()
            if payload[0] == 0xFE and len(payload) < 9:
                return rows, int(struct.unpack_from("<H", payload, 3)[0])
            if payload[0] == 0xFF:
                raise ServerError(payload)
            rows.append(self._binary_row(payload, columns) if binary else self._text_row(payload))

    @staticmethod
    def _text_row(payload: bytes) -> list[bytes | None]:
        values, pos = [], 0
        while pos < len(payload):
            value, pos = lenenc_str(payload, pos)
            values.append(value)
        return values

    @staticmethod
    def _binary_row(payload: bytes, columns: int) -> list[bytes | None]:
        """A binary row whose columns are all strings (the tests CAST to CHAR)."""
        bitmap = payload[1 : 1 + (columns + 9) // 8]
        pos = 1 + len(bitmap)
        values: list[bytes | None] = []
        for i in range(columns):
            if bitmap[(i + 2) // 8] & (1 << ((i + 2) % 8)):
                values.append(None)
            else:
                value, pos = lenenc_str(payload, pos)
                values.append(value)
        return values

    def query(self, sql: str) -> list[list[bytes | None]]:
        self.send(bytes((COM_QUERY,)) + sql.encode())
        return self.result()

    def result(self) -> list[list[bytes | None]]:
        """The rows of the next text-protocol reply (none for an OK)."""
        first = self._first()
        if first[0] == 0x00:
            return []
        columns, _ = lenenc_int(first, 0)
        self._skip_to_eof()
        return self._rows(False, columns)[0]

    def prepare(self, sql: str) -> tuple[int, int]:
        self.send(bytes((COM_STMT_PREPARE,)) + sql.encode())
        ok = self._first()
        statement_id, columns, params = struct.unpack_from("<IHH", ok, 1)
        for count in (params, columns):
            if count:
                self._skip_to_eof()
        return statement_id, columns

    def execute(
        self,
        statement: tuple[int, int],
        params: Sequence[bytes | None] = (),
        *,
        bind_types: bool = True,
        cursor: bool = False,
    ) -> Any:
        """Rows (no cursor), or the status flags of the reply that opened a cursor.

        `params` are strings (or LONG_DATA: already sent); `bind_types=False` relies on the
        types bound by an earlier execute (new_params_bound_flag = 0).
        """
        statement_id, columns = statement
        flags = CURSOR_TYPE_READ_ONLY if cursor else 0
        payload = struct.pack("<BIBI", COM_STMT_EXECUTE, statement_id, flags, 1)
        if params:
            payload += bytes((len(params) + 7) // 8) + bytes((int(bind_types),))
            if bind_types:
                for value in params:
                    payload += bytes((TYPE_BLOB if value is LONG_DATA else TYPE_VAR_STRING, 0))
            for value in params:
                if value is not LONG_DATA:
                    payload += bytes((len(value),)) + value  # short strings only
        self.send(payload)
        first = self._first()
        if first[0] == 0x00:
            return []
        status = self._skip_to_eof()
        if cursor:
            return status
        return self._rows(True, columns)[0]

    def send_long_data(self, statement: tuple[int, int], param: int, data: bytes) -> None:
        self.send(struct.pack("<BIH", COM_STMT_SEND_LONG_DATA, statement[0], param) + data)

    def close_statement(self, statement: tuple[int, int]) -> None:
        self.send(struct.pack("<BI", COM_STMT_CLOSE, statement[0]))

    def fetch(self, statement: tuple[int, int], rows: int) -> tuple[list[Any], int]:
        statement_id, columns = statement
        self.send(struct.pack("<BII", COM_STMT_FETCH, statement_id, rows))
        return self._rows(True, columns)


@pytest.fixture
def raw(proxy: ProxyThread, cluster: ClusterHandle) -> Iterator[RawClient]:
    client = RawClient(proxy, cluster)
    yield client
    client.close()


def test_prepared_statement_follows_the_transaction(raw: RawClient, primary_id: int) -> None:
    """Prepared outside a transaction; executed inside one it runs on the writer."""
    statement = raw.prepare("SELECT CAST(@@server_id AS CHAR)")
    (outside,) = raw.execute(statement)
    assert int(outside[0]) != primary_id
    raw.query("BEGIN")
    (inside,) = raw.execute(statement)
    assert int(inside[0]) == primary_id
    raw.query("COMMIT")
    (after,) = raw.execute(statement)
    assert int(after[0]) != primary_id


def test_prepared_statement_types_bound_once_then_run_on_another_backend(
    raw: RawClient, primary_id: int
) -> None:
    """Types are bound on the first execute only; the writer, seeing the statement for the
    first time later, must still get them (the proxy inserts the ones it remembered)."""
    statement = raw.prepare("SELECT CAST(? AS CHAR), CAST(@@server_id AS CHAR)")
    ((value, server_id),) = raw.execute(statement, [b"first"])
    assert value == b"first" and int(server_id) != primary_id
    raw.query("START TRANSACTION")
    ((value, server_id),) = raw.execute(statement, [b"second"], bind_types=False)
    assert value == b"second" and int(server_id) == primary_id
    raw.query("COMMIT")
    ((value, server_id),) = raw.execute(statement, [b"third"], bind_types=False)
    assert value == b"third" and int(server_id) != primary_id


def test_prepared_statement_long_data_and_close(raw: RawClient, primary_id: int) -> None:
    statement = raw.prepare("SELECT CAST(LENGTH(?) AS CHAR), CAST(@@server_id AS CHAR)")
    for chunk in (b"a" * 70000, b"b" * 70000):
        raw.send_long_data(statement, 0, chunk)  # no reply
    ((length, server_id),) = raw.execute(statement, [LONG_DATA])
    assert int(length) == 140000 and int(server_id) != primary_id
    raw.close_statement(statement)  # no reply either
    with pytest.raises(ServerError) as unknown:
        raw.execute(statement, [b"x"])
    assert unknown.value.code == 1243  # ER_UNKNOWN_STMT_HANDLER
    assert raw.query("SELECT 'next'") == [[b"next"]]


def test_prepared_statement_cursor_fetch(raw: RawClient, primary_id: int) -> None:
    statement = raw.prepare(
        "SELECT CAST(seq AS CHAR), CAST(@@server_id AS CHAR) FROM seq_1_to_25 ORDER BY seq"
    )
    status = raw.execute(statement, cursor=True)
    assert status & SERVER_STATUS_CURSOR_EXISTS
    fetched: list[Any] = []
    while True:
        rows, status = raw.fetch(statement, 10)
        fetched += rows
        if status & SERVER_STATUS_LAST_ROW_SENT or not rows:
            break
    assert [int(row[0]) for row in fetched] == list(range(1, 26))
    assert {int(row[1]) for row in fetched} != {primary_id}
    assert raw.query("SELECT 'after the cursor'") == [[b"after the cursor"]]


# -- KILL -----------------------------------------------------------------------------


def running_on_pods(cluster: ClusterHandle, pods: tuple[str, ...], needle: str) -> list[str]:
    """Pods where a query containing `needle` is running (admin SHOW PROCESSLIST)."""
    found = []
    for pod in pods:
        for row in cluster.query(pod, "SELECT info FROM information_schema.processlist"):
            if row[0] and needle in row[0] and "processlist" not in row[0]:
                found.append(pod)
    return found


class Sleeper:
    """A connection running `SELECT SLEEP(10)` in a thread; records how and when it ended."""

    def __init__(self, proxy: ProxyThread, cluster: ClusterHandle, user: str = "app") -> None:
        self.marker = cluster.unique_name("rwt_sleep")
        credentials = cluster.credentials(user)
        self.conn = connect(proxy, cluster, user=credentials.user, password=credentials.password)
        self.outcome: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        eventually(lambda: running_on_pods(cluster, cluster.pods, self.marker), 5, "SLEEP running")

    def _run(self) -> None:
        try:
            self.outcome["rows"] = one(self.conn, f"SELECT SLEEP(10) /* {self.marker} */")
        except pymysql.err.MySQLError as exc:
            self.outcome["error"] = exc.args[0]
        self.outcome["at"] = time.monotonic()

    def ended_within(self, since: float, seconds: float) -> bool:
        self.thread.join(max(0.0, since + seconds + 0.5 - time.monotonic()))
        return "at" in self.outcome and self.outcome["at"] - since < seconds

    def close(self) -> None:
        self.thread.join(10)
        if self.conn._sock is not None:
            self.conn.close()


def kill(proxy: ProxyThread, cluster: ClusterHandle, how: str, target: int) -> float:
    """Kill `target` from a second connection; when the kill was sent."""
    with connect(proxy, cluster) as killer:
        sent = time.monotonic()
        if how == "COM_PROCESS_KILL":
            killer.kill(target)
        else:
            with killer.cursor() as cursor:
                cursor.execute(how.format(target))
    return sent


def test_kill_query_interrupts_a_running_select(proxy: ProxyThread, cluster: ClusterHandle) -> None:
    sleeper = Sleeper(proxy, cluster)
    try:
        sent = kill(proxy, cluster, "KILL QUERY {}", sleeper.conn.thread_id())
        assert sleeper.ended_within(sent, KILL_DEADLINE_SECONDS), sleeper.outcome
        # SLEEP() returns 1 when interrupted; some servers report ER_QUERY_INTERRUPTED.
        assert sleeper.outcome.get("rows") == (1,) or sleeper.outcome.get("error") == 1317
        assert one(sleeper.conn, "SELECT 'still usable'") == ("still usable",)
    finally:
        sleeper.close()


@pytest.mark.parametrize("how", ["KILL {}", "KILL CONNECTION {}", "COM_PROCESS_KILL"])
def test_kill_connection_ends_the_other_session(
    proxy: ProxyThread, cluster: ClusterHandle, how: str
) -> None:
    sleeper = Sleeper(proxy, cluster)
    try:
        sent = kill(proxy, cluster, how, sleeper.conn.thread_id())
        assert sleeper.ended_within(sent, KILL_DEADLINE_SECONDS), sleeper.outcome
        assert sleeper.outcome.get("error") in (2013, 1317), sleeper.outcome
        eventually(
            lambda: not running_on_pods(cluster, cluster.pods, sleeper.marker),
            CLEANUP_DEADLINE_SECONDS,
            "the killed query stopped",
        )
        victim = sleeper.conn.thread_id()
        eventually(
            lambda: proxy.call(lambda px: victim not in px.ctx.sessions),
            CLEANUP_DEADLINE_SECONDS,
            "the killed session ended",
        )
        with pytest.raises(pymysql.err.MySQLError):  # the proxy closed it
            one(sleeper.conn, "SELECT 1")
    finally:
        sleeper.close()


def test_kill_of_another_users_session_is_refused(
    proxy: ProxyThread, cluster: ClusterHandle
) -> None:
    sleeper = Sleeper(proxy, cluster, user="admin")
    try:
        with pytest.raises(pymysql.err.MySQLError) as refused:
            kill(proxy, cluster, "KILL QUERY {}", sleeper.conn.thread_id())
        assert refused.value.args[0] == 1094  # ER_NO_SUCH_THREAD
        assert running_on_pods(cluster, cluster.pods, sleeper.marker)
        kill_as_admin = connect(proxy, cluster, user="admin", password=cluster.admin.password)
        with kill_as_admin, kill_as_admin.cursor() as cursor:
            cursor.execute(f"KILL QUERY {sleeper.conn.thread_id()}")
    finally:
        sleeper.close()


# -- clients that leave ---------------------------------------------------------------


def hard_close(conn: Any) -> None:
    """Close a PyMySQL connection's socket with RST, as a crashed client does.

    `socket.close()` alone keeps the descriptor open while PyMySQL's `makefile()` reader
    exists, so that goes first.
    """
    conn._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn._rfile.close()
    conn._force_close()


def test_client_leaving_mid_result_leaves_nothing_behind(
    start_proxy: StartProxy, cluster: ClusterHandle
) -> None:
    proxy = start_proxy()
    before = pool_use(proxy)
    marker = cluster.unique_name("rwt_gone")
    raw = RawClient(proxy, cluster)
    raw.send(bytes((COM_QUERY,)) + SLOW_RESULT.format(marker).encode())
    for _ in range(5):
        raw.read()  # column count, definitions, first rows
    hard_close(raw.conn)
    eventually(lambda: session_count(proxy) == 0, CLEANUP_DEADLINE_SECONDS, "session ended")
    eventually(
        lambda: not running_on_pods(cluster, cluster.pods, marker),
        CLEANUP_DEADLINE_SECONDS,
        "the abandoned query stopped on the server",
    )
    eventually(
        lambda: sum(pool_use(proxy).values()) == sum(before.values()),
        CLEANUP_DEADLINE_SECONDS,
        "pools back to their prior use",
    )


def test_drain_cancelling_a_streaming_session_leaves_nothing_behind(
    start_proxy: StartProxy, cluster: ClusterHandle, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopping the proxy while a session streams a reply: the drain timeout cancels the
    session, and its half-read backend connection must be closed, not pooled and reset."""
    proxy = start_proxy(shutdown_timeout_seconds=0.3)
    marker = cluster.unique_name("rwt_drain")
    raw = RawClient(proxy, cluster)
    try:
        raw.send(bytes((COM_QUERY,)) + SLOW_RESULT.format(marker).encode())
        for _ in range(5):
            raw.read()
        proxy.stop()
        eventually(
            lambda: not running_on_pods(cluster, cluster.pods, marker),
            CLEANUP_DEADLINE_SECONDS,
            "the cancelled session's query stopped on the server",
        )
    finally:
        raw.sock.close()
    problems = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert not problems, problems


def test_client_leaving_mid_transaction_leaves_nothing_behind(
    start_proxy: StartProxy, cluster: ClusterHandle, table: str
) -> None:
    proxy = start_proxy()
    before = pool_use(proxy)
    conn = connect(proxy, cluster)
    with conn.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute(f"INSERT INTO {table} (id, v) VALUES (1, 'uncommitted')")
        cursor.execute("SELECT CONNECTION_ID()")  # the writer's server thread
        (thread,) = cursor.fetchone()
    assert cluster.query(
        cluster.primary,
        "SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = %s",
        (thread,),
    ) == ((1,),)
    hard_close(conn)

    def transaction_gone() -> bool:
        rows = cluster.query(
            cluster.primary,
            "SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = %s",
            (thread,),
        )
        return rows == ((0,),)

    # InnoDB refreshes information_schema.innodb_trx only when the last read is over 0.1 s old.
    eventually(transaction_gone, CLEANUP_DEADLINE_SECONDS, "the open transaction ended", 0.15)
    eventually(lambda: session_count(proxy) == 0, CLEANUP_DEADLINE_SECONDS, "session ended")
    eventually(
        lambda: sum(pool_use(proxy).values()) == sum(before.values()),
        CLEANUP_DEADLINE_SECONDS,
        "pools back to their prior use",
    )
    assert cluster.query(cluster.primary, f"SELECT COUNT(*) FROM app.{table}") == ((0,),)


# -- hostile clients ------------------------------------------------------------------


@pytest.fixture
def strict_proxy(start_proxy: StartProxy) -> ProxyThread:
    return start_proxy(
        handshake_timeout_seconds=HANDSHAKE_TIMEOUT_SECONDS, max_allowed_packet=SMALL_MAX_PACKET
    )


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the proxy sends until it closes the connection (fails after `timeout`)."""
    sock.settimeout(0.1)
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return received
        if not data:
            return received
        received += data
    raise AssertionError(f"the proxy kept the connection open for {timeout} s: {received[:80]!r}")


def error_code(stream: bytes) -> int | None:
    """The code of the first ERR packet in a packet stream, if any."""
    pos = 0
    while pos + 4 <= len(stream):
        size = int.from_bytes(stream[pos : pos + 3], "little")
        payload = stream[pos + 4 : pos + 4 + size]
        if payload[:1] == b"\xff" and len(payload) >= 3:
            return int(struct.unpack_from("<H", payload, 1)[0])
        pos += 4 + size
    return None


def raw_socket(proxy: ProxyThread) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=5)


def greeting(sock: socket.socket) -> bytes:
    header = sock.recv(4, socket.MSG_WAITALL)
    return sock.recv(int.from_bytes(header[:3], "little"), socket.MSG_WAITALL)


def still_serving(proxy: ProxyThread, cluster: ClusterHandle) -> None:
    with connect(proxy, cluster) as conn:
        assert one(conn, "SELECT 'fine'") == ("fine",)


def test_garbage_before_the_handshake(strict_proxy: ProxyThread, cluster: ClusterHandle) -> None:
    with raw_socket(strict_proxy) as sock:
        sock.sendall(os.urandom(200))
        read_until_closed(sock, 3)
    still_serving(strict_proxy, cluster)


def test_http_request_instead_of_mysql(strict_proxy: ProxyThread, cluster: ClusterHandle) -> None:
    with raw_socket(strict_proxy) as sock:
        greeting(sock)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        read_until_closed(sock, 3)
    still_serving(strict_proxy, cluster)


def test_truncated_handshake_packet(strict_proxy: ProxyThread, cluster: ClusterHandle) -> None:
    with raw_socket(strict_proxy) as sock:
        greeting(sock)
        sock.sendall((100).to_bytes(3, "little") + b"\x01" + b"\x8d\xa6\x0f\x00" + b"x" * 6)
        started = time.monotonic()
        read_until_closed(sock, HANDSHAKE_TIMEOUT_SECONDS + 2)
        assert time.monotonic() - started < HANDSHAKE_TIMEOUT_SECONDS + 1
    still_serving(strict_proxy, cluster)


def test_slow_handshake_is_cut_at_the_timeout(
    strict_proxy: ProxyThread, cluster: ClusterHandle
) -> None:
    """A client dripping its login one byte at a time: the timeout covers the whole login."""
    with raw_socket(strict_proxy) as sock:
        started = time.monotonic()
        greeting(sock)
        sock.settimeout(0.1)
        closed = False
        while time.monotonic() - started < HANDSHAKE_TIMEOUT_SECONDS + 2:
            try:
                sock.sendall(b"\x00")
                if sock.recv(65536) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        assert closed, "the dripping client was not disconnected"
        assert time.monotonic() - started < HANDSHAKE_TIMEOUT_SECONDS + 1
        still_serving(strict_proxy, cluster)  # while it was dripping, others got in


def test_silent_client_is_cut_at_the_handshake_timeout(
    strict_proxy: ProxyThread, cluster: ClusterHandle
) -> None:
    with raw_socket(strict_proxy) as sock:
        started = time.monotonic()
        greeting(sock)
        still_serving(strict_proxy, cluster)
        read_until_closed(sock, HANDSHAKE_TIMEOUT_SECONDS + 2)
        assert time.monotonic() - started < HANDSHAKE_TIMEOUT_SECONDS + 1


def test_wrong_sequence_id_after_login(strict_proxy: ProxyThread, cluster: ClusterHandle) -> None:
    raw = RawClient(strict_proxy, cluster)
    try:
        raw.send(bytes((COM_QUERY,)) + b"SELECT 1", seq=3)
        assert error_code(read_until_closed(raw.sock, 3)) == 1156  # ER_NET_PACKETS_OUT_OF_ORDER
    finally:
        raw.close()
    still_serving(strict_proxy, cluster)


def test_length_header_beyond_max_allowed_packet(
    strict_proxy: ProxyThread, cluster: ClusterHandle
) -> None:
    """A header claiming a 16 MiB packet (and more to follow) against a 1 MiB limit."""
    raw = RawClient(strict_proxy, cluster)
    try:
        raw.sock.sendall(b"\xff\xff\xff\x00" + bytes((COM_QUERY,)) + b"SELECT 1")
        assert error_code(read_until_closed(raw.sock, 3)) == 1153  # ER_NET_PACKET_TOO_LARGE
    finally:
        raw.close()
    still_serving(strict_proxy, cluster)


def test_length_header_beyond_max_allowed_packet_before_login(
    strict_proxy: ProxyThread, cluster: ClusterHandle
) -> None:
    with raw_socket(strict_proxy) as sock:
        greeting(sock)
        sock.sendall(b"\xff\xff\xff\x01" + b"\x00" * 64)
        started = time.monotonic()
        read_until_closed(sock, HANDSHAKE_TIMEOUT_SECONDS + 2)
        assert time.monotonic() - started < HANDSHAKE_TIMEOUT_SECONDS + 1
    still_serving(strict_proxy, cluster)


def test_truncated_command_then_disconnect(
    strict_proxy: ProxyThread, cluster: ClusterHandle
) -> None:
    before = session_count(strict_proxy)
    raw = RawClient(strict_proxy, cluster)
    raw.sock.sendall((1000).to_bytes(3, "little") + b"\x00" + bytes((COM_QUERY,)) + b"SELECT")
    hard_close(raw.conn)
    eventually(
        lambda: session_count(strict_proxy) == before, CLEANUP_DEADLINE_SECONDS, "session ended"
    )
    still_serving(strict_proxy, cluster)


@pytest.mark.parametrize(
    ("trailer", "last_error"),
    [(b"", None), (b"\x01\x00\x00\x05\x0e", 1156), (b"\x0b\x00\x00\x006M", None)],
    ids=["clean", "jumped-seq", "truncated"],
)
def test_pipelined_commands_then_half_close_get_every_reply(
    strict_proxy: ProxyThread, cluster: ClusterHandle, trailer: bytes, last_error: int | None
) -> None:
    """A client that sends several commands at once and shuts down its sending side gets
    a whole reply to each, in order, as from mysqld, before the proxy closes (found by the
    fuzzer: a 70 kB reply was cut when the EOF came while it streamed). A complete packet
    with a wrong sequence id after them gets its ERR; a truncated one is dropped."""
    raw = RawClient(strict_proxy, cluster)
    try:
        big = bytes((COM_QUERY,)) + b"SELECT REPEAT('x', 70000)"
        bad_execute = struct.pack("<BIBI", COM_STMT_EXECUTE, 0xDEAD, 0, 1)
        small = bytes((COM_QUERY,)) + b"SELECT 'after'"
        stream = b"".join(
            len(p).to_bytes(3, "little") + b"\x00" + p for p in (big, bad_execute, small)
        )
        raw.sock.sendall(stream + trailer)
        raw.sock.shutdown(socket.SHUT_WR)
        raw.buf = read_until_closed(raw.sock, 5)
        assert raw.result() == [[b"x" * 70000]]
        with pytest.raises(ServerError) as refused:
            raw.result()
        assert refused.value.code == 1243  # ER_UNKNOWN_STMT_HANDLER
        assert raw.result() == [[b"after"]]
        if last_error is not None:
            assert error_code(raw.buf) == last_error
            raw.read()
        assert raw.buf == b""
    finally:
        raw.close()
    still_serving(strict_proxy, cluster)


def test_client_pipelining_without_reading_replies_waits_in_its_own_buffers(
    strict_proxy: ProxyThread, cluster: ClusterHandle
) -> None:
    """A client sends statement after statement and reads no reply: once its replies back up,
    the proxy stops reading it rather than queueing its statements without end; when it reads
    again, every statement is answered, in order."""
    raw = RawClient(strict_proxy, cluster)
    padding = b"p" * 16000

    def statements() -> Iterator[tuple[bytes, int]]:
        for n in itertools.count():
            payload = b"%cSELECT %d, REPEAT('r', 16000) /* %s */" % (COM_QUERY, n, padding)
            yield len(payload).to_bytes(3, "little") + b"\x00" + payload, 1

    try:
        stream = stream_until_stalled(raw.sock, statements(), strict_proxy)
        assert stream.stalled, "the proxy read the whole stream: nothing stopped it"
        assert 0 < stream.most_held <= PROXY_HELD_BOUND, f"the proxy held {stream.most_held} B"
        rest = threading.Thread(target=raw.sock.sendall, args=(stream.rest,))
        rest.start()
        answered = [raw.result()[0][0] for _ in range(stream.packets)]
        rest.join()
        assert answered == [str(n).encode() for n in range(stream.packets)]
    finally:
        raw.close()
    still_serving(strict_proxy, cluster)


def test_reply_before_a_too_large_packet_arrives_whole_before_the_close(
    strict_proxy: ProxyThread, cluster: ClusterHandle
) -> None:
    """A 70 kB result, then a header announcing 16 MiB (over max_allowed_packet) and bytes
    the proxy never reads: the client gets the whole result and ERR 1153, then the close.
    (Found by the fuzzer: closing a socket with unread input sends RST, which cut the
    result; the proxy now lingers, reading and dropping input, before it closes.)"""
    raw = RawClient(strict_proxy, cluster)
    try:
        big = bytes((COM_QUERY,)) + b"SELECT REPEAT('x', 70000)"
        junk = b"\xff\xff\xff\x00" + os.urandom(200_000)
        raw.sock.sendall(len(big).to_bytes(3, "little") + b"\x00" + big + junk)
        raw.buf = read_until_closed(raw.sock, 5)
        assert raw.result() == [[b"x" * 70000]]
        assert error_code(raw.buf) == 1153  # ER_NET_PACKET_TOO_LARGE
        raw.read()
        assert raw.buf == b""
    finally:
        raw.close()
    still_serving(strict_proxy, cluster)


@pytest.mark.parametrize(
    "tail",
    [b"", b"\x00", b"\x00\x01"],
    ids=["no-null-bitmap", "no-bound-flag", "no-types"],
)
def test_truncated_execute_of_a_real_statement_gets_1835_and_the_session_goes_on(
    raw: RawClient, tail: bytes
) -> None:
    """COM_STMT_EXECUTE for a statement with a parameter, cut short inside its parameter
    block (found by the fuzzer: the parse error ended the session with a traceback)."""
    statement_id, _ = raw.prepare("SELECT CAST(? AS CHAR)")
    raw.send(struct.pack("<BIBI", COM_STMT_EXECUTE, statement_id, 0, 1) + tail)
    with pytest.raises(ServerError) as refused:
        raw._first()
    assert refused.value.code == 1835  # ER_MALFORMED_PACKET
    assert raw.query("SELECT 'still here'") == [[b"still here"]]
