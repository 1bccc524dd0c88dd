"""Pod faults during traffic: `rwproxy cluster stop|move|lag` under load, through a real proxy.

Each scenario runs a fresh proxy (writer wait 8 s; health checks every 0.5 s and DNS looked up
at least every second, so that recovery fits the file's time budget) and `Traffic` through it:

* **Writer-id ledger**: `WRITERS` autocommit clients insert ids no one else uses (id mod
  WRITERS names the client) and record each insert as acknowledged (OK), *refused* (an ERR
  from a server or from the proxy: the statement did not run) or *maybe* (the connection was
  lost in flight: it may or may not have run). A fifth client inserts pairs of negative ids,
  one transaction per pair. After the scenario, on mysql-0 as admin: every acknowledged id is
  there, no refused id is there, nothing is there that was never tried, no transaction is
  there in part, and the replicas hold exactly the same ids. The PRIMARY KEY means a write
  applied twice (a retried insert) cannot hide: its second apply is a 1062 refusal of an id
  that is there. Every few acknowledged inserts a client reads its id back at once
  (read-your-writes).
* **Reads**: `READERS` clients count rows and read random ids. Every reply must echo the
  statement's nonce (a reply meant for another statement or client is caught), a count never
  exceeds the inserts tried so far, and a row is the one its id names.
* **Session state**: two clients with their own `@tag`, `sql_mode` and schema (`USE`) read
  them back, from a replica and with a `rwproxy:primary` hint, all along; a third keeps
  logging in with other state and leaving, so that pooled connections change hands.
* **Errors**: a client that loses its connection logs in again (and sets its state again),
  as applications do. Per fault, a client may see one error: for the statement it had in
  flight when its connection broke. Errors name the pod, a lost connection or a shutdown.
* **Bounded time**: no statement takes longer than the writer wait plus a margin, the client
  threads stop within a deadline, writes resume after the fault, and afterwards the proxy's
  sessions and pools are back to idle, with no pool left for an address that is gone.

Two further tests restart the writer under a client that holds what cannot be moved to another
connection (an open transaction; state that pins the session to the writer): it must never be
carried on without it. A third, with no fault, checks that a session without a default schema
does not inherit a pooled connection's one.

Every wait is a deadline loop on something observable (the proxy's topology, the ledger);
the only sleeps are short pacing inside loops.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeGuard, TypeVar

import pymysql
import pytest

from proxy.config import DiscoveryConfig, HealthConfig, HostPort, RoutingConfig
from proxy.devcluster.errors import ClusterError
from proxy.topology.model import Topology
from tests.integration.cluster_fixture import ClusterHandle
from tests.support.proxy_harness import ProxyThread

pytestmark = pytest.mark.integration

StartProxy = Callable[..., ProxyThread]
T = TypeVar("T")

WRITERS = 4
TXN_CLIENT = "txn"
READERS = 2
WRITER_WAIT_SECONDS = 8.0
STATEMENT_DEADLINE_SECONDS = WRITER_WAIT_SECONDS + 4.0  # the slowest acceptable statement
CLIENT_READ_TIMEOUT_SECONDS = 20  # PyMySQL gives up later than the deadline: a hang shows
JOIN_DEADLINE_SECONDS = CLIENT_READ_TIMEOUT_SECONDS + 5.0
SCENARIO_DEADLINE_SECONDS = 45.0
RECOVERY_DEADLINE_SECONDS = 20.0
ACKS_BEFORE_FAULT = 5
ACKS_AFTER_RECOVERY = 20
WRITER_OUTAGE_SECONDS = 2.0
BASELINE_DEADLINE_SECONDS = 5.0
# Each client session holds at most one connection per pod; connections being reset after a
# churning session left are not idle yet, so a pool may open a few more. A leak grows with the
# sessions served (dozens), not with the clients.
MAX_IDLE_PER_POD = 2 * (WRITERS + READERS + 3)
PACING_SECONDS = 0.002

# Client-side codes for "the connection went away in flight": the statement may have run.
LOST_CONNECTION = frozenset({2006, 2013, 2055})
# What a pod says to the statements it is running when it shuts down.
POD_GOING_AWAY = frozenset({1053, 1927})  # ER_SERVER_SHUTDOWN, ER_CONNECTION_KILLED
ER_DUP_ENTRY = 1062

STATE_A = ("A", "NO_ENGINE_SUBSTITUTION", "app")
STATE_B = ("B", "STRICT_ALL_TABLES,NO_ZERO_DATE", "information_schema")
STATE_CHURN = ("C", "ALLOW_INVALID_DATES", "information_schema")


# -- small helpers ---------------------------------------------------------------------------


def eventually(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `check()` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what} (last: {result!r})")
        time.sleep(interval)


def connect(proxy: ProxyThread, cluster: ClusterHandle, **kwargs: Any) -> pymysql.Connection:
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": proxy.port,
        "user": cluster.app.user,
        "password": cluster.app.password,
        "database": cluster.database,
        "ssl_disabled": True,
        "autocommit": True,
        "connect_timeout": 5,
        "read_timeout": CLIENT_READ_TIMEOUT_SECONDS,
        "write_timeout": CLIENT_READ_TIMEOUT_SECONDS,
    }
    return pymysql.connect(**(options | kwargs))


def close(conn: pymysql.Connection) -> None:
    """Close, whether or not the connection is still open (PyMySQL raises if it is not)."""
    if conn.open:
        conn.close()


@contextmanager
def client(proxy: ProxyThread, cluster: ClusterHandle, **kwargs: Any) -> Iterator[Any]:
    conn = connect(proxy, cluster, **kwargs)
    try:
        yield conn
    finally:
        close(conn)


def rows(conn: pymysql.Connection, sql: str, args: Any = None) -> tuple[tuple[Any, ...], ...]:
    with conn.cursor() as cursor:
        cursor.execute(sql, args)
        return tuple(cursor.fetchall())


def text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def nonce() -> str:
    return uuid.uuid4().hex[:12]


def owner(row_id: int) -> str:
    """Who inserts this id: writer w<id mod WRITERS>, or the transactional client (< 0)."""
    return TXN_CLIENT if row_id < 0 else f"w{row_id % WRITERS}"


def pod_command(command: Callable[[], T]) -> T:
    """Run one `rwproxy cluster` command; once more if it lost the dev cluster's DNS restart
    race (dnsmasq's UDP port can still be bound for a moment after `process.is_running` stops
    seeing the old dnsmasq: its /proc cmdline empties before its sockets close). That is a flaw
    of the stand-in for Kubernetes, not of the proxy, and the retry keeps it out of these tests.
    """
    try:
        return command()
    except ClusterError as exc:
        if "already in use" not in str(exc):
            raise
        return command()


def fault_proxy(start_proxy: StartProxy, cluster: ClusterHandle) -> ProxyThread:
    host, port = cluster.dns_server
    return start_proxy(
        routing=RoutingConfig(writer_wait_timeout_seconds=WRITER_WAIT_SECONDS),
        health=HealthConfig(interval_seconds=0.5),
        discovery=DiscoveryConfig(
            nameservers=(HostPort(host, port),), resolve_interval_seconds=1.0
        ),
    )


def topology(proxy: ProxyThread) -> Topology:
    return proxy.call(lambda px: px.ctx.topology())


def healthy(proxy: ProxyThread, cluster: ClusterHandle) -> bool:
    """The proxy sees mysql-0 as the writer and every replica as a reader, at today's address."""
    addresses = cluster.addresses()
    current = topology(proxy)
    writer = current.writer
    readers = {(e.pod, e.host) for e in current.readers}
    return (
        writer is not None
        and (writer.pod, writer.host) == (cluster.primary, addresses[cluster.primary])
        and readers == {(pod, addresses[pod]) for pod in cluster.replicas}
    )


def wait_healthy(proxy: ProxyThread, cluster: ClusterHandle) -> None:
    eventually(
        lambda: healthy(proxy, cluster),
        RECOVERY_DEADLINE_SECONDS,
        "the proxy sees the healthy cluster",
    )


@pytest.fixture
def ledger(disrupted_cluster: ClusterHandle) -> Iterator[str]:
    """A table of (id, client) on mysql-0, replicated; dropped after the cluster is healed.

    It heals the cluster itself, before `disrupted_cluster` does (which then has nothing to
    do), so that the table can be dropped and the DNS restart race is retried (`pod_command`).
    """
    cluster = disrupted_cluster
    name = cluster.unique_name("faults")
    cluster.query(
        cluster.primary,
        f"CREATE TABLE {cluster.database}.{name} (id BIGINT PRIMARY KEY, client VARCHAR(8))",
    )
    cluster.wait_replicated()
    yield name
    pod_command(cluster.restore)
    cluster.query(cluster.primary, f"DROP TABLE IF EXISTS {cluster.database}.{name}")


# -- the traffic -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A statement (or login) that raised: what it was, the error, and when."""

    kind: str  # insert, read, connect
    code: int
    message: str
    at: float  # time.monotonic()

    def __str__(self) -> str:
        return f"{self.kind} at {self.at:.2f}: {self.message}"


@dataclass
class ClientLog:
    """What one client thread did and saw."""

    name: str
    started: int = 0  # inserts tried (writers)
    acked: set[int] = field(default_factory=set)
    maybe: set[int] = field(default_factory=set)
    refused: dict[int, str] = field(default_factory=dict)
    pairs: list[tuple[int, int]] = field(default_factory=list)  # ids inserted by one transaction
    acked_at: list[float] = field(default_factory=list)  # monotonic times of the acks
    statements: int = 0
    errors: list[Failure] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # wrong results
    slowest: float = 0.0
    slowest_ack: float = 0.0  # the longest statement that succeeded
    connections: int = 0
    running: tuple[str, float] | None = None  # the statement in flight, since when

    def acks_after(self, moment: float) -> int:
        return sum(1 for at in list(self.acked_at) if at > moment)


Result: TypeAlias = tuple[tuple[Any, ...], ...] | pymysql.err.MySQLError


class Traffic:
    """Writers, readers and session-state clients through one proxy, until `stop()`.

    A client whose statement failed with a lost connection (or whose connection is closed)
    drops it and logs in again, as applications do.
    """

    def __init__(self, proxy: ProxyThread, cluster: ClusterHandle, table: str) -> None:
        self.proxy = proxy
        self.cluster = cluster
        self.table = table
        self.writers = [ClientLog(f"w{i}") for i in range(WRITERS)]
        self.transactions = ClientLog(TXN_CLIENT)
        self.readers = [ClientLog(f"r{i}") for i in range(READERS)]
        self.stateful = [ClientLog("state-A"), ClientLog("state-B"), ClientLog("churn-C")]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.hung: list[str] = []

    @property
    def inserters(self) -> list[ClientLog]:
        return [*self.writers, self.transactions]

    @property
    def logs(self) -> list[ClientLog]:
        return [*self.inserters, *self.readers, *self.stateful]

    def __enter__(self) -> Traffic:
        targets: list[tuple[Callable[..., None], tuple[Any, ...]]] = [
            *((self._write, (log, i)) for i, log in enumerate(self.writers)),
            (self._transact, (self.transactions,)),
            *((self._read, (log,)) for log in self.readers),
            (self._keep_state, (self.stateful[0], STATE_A)),
            (self._keep_state, (self.stateful[1], STATE_B)),
            (self._churn, (self.stateful[2], STATE_CHURN)),
        ]
        for target, args in targets:
            name = f"client-{args[0].name}"
            thread = threading.Thread(target=self._guard, args=(target, *args), name=name)
            thread.daemon = True
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        deadline = time.monotonic() + JOIN_DEADLINE_SECONDS
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.hung = [t.name for t in self._threads if t.is_alive()]

    def wait_for_acks(self, count: int, after: float, what: str) -> None:
        """Every inserting client had `count` writes acknowledged after `after` (monotonic)."""
        try:
            eventually(
                lambda: all(w.acks_after(after) >= count for w in self.inserters),
                RECOVERY_DEADLINE_SECONDS,
                f"every inserting client has {count} acknowledged writes {what}",
            )
        except AssertionError as exc:
            seen = [self.describe(w, after) for w in self.inserters]
            raise AssertionError(f"{exc}: {seen}") from None

    @staticmethod
    def describe(log: ClientLog, after: float) -> str:
        """Acks since `after`, the statement in flight and the last errors (for failures)."""
        running, now = log.running, time.monotonic()
        doing = f"running {running[0]!r} for {now - running[1]:.1f} s" if running else "idle"
        return f"{log.name}: {log.acks_after(after)} acks, {doing}, {log.errors[-2:]}"

    def attempted(self) -> int:
        return sum(w.started for w in self.inserters)

    # -- the threads -----------------------------------------------------------------------

    def _guard(self, target: Callable[..., None], log: ClientLog, *args: Any) -> None:
        try:
            target(log, *args)
        except Exception as exc:  # reported by the test, never lost with the thread
            log.problems.append(f"client thread crashed: {exc!r}")

    def _connect(self, log: ClientLog, **kwargs: Any) -> pymysql.Connection:
        deadline = time.monotonic() + STATEMENT_DEADLINE_SECONDS
        while True:
            try:
                conn = connect(self.proxy, self.cluster, **kwargs)
            except pymysql.err.MySQLError as exc:
                log.errors.append(Failure("connect", _code(exc), str(exc), time.monotonic()))
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
                continue
            log.connections += 1
            return conn

    def _run(
        self, log: ClientLog, conn: pymysql.Connection, kind: str, sql: str, args: Any = None
    ) -> Result:
        """One statement, timed; its rows, or the error it raised (recorded)."""
        started = time.monotonic()
        log.running = (sql, started)
        try:
            result = rows(conn, sql, args)
        except pymysql.err.MySQLError as exc:
            log.errors.append(Failure(kind, _code(exc), str(exc), time.monotonic()))
            return exc
        finally:
            log.running = None
            log.statements += 1
            log.slowest = max(log.slowest, time.monotonic() - started)
        log.slowest_ack = max(log.slowest_ack, time.monotonic() - started)
        return result

    def _usable(self, log: ClientLog, conn: pymysql.Connection, *results: Result) -> bool:
        """False (and the connection closed) when it was lost: the caller logs in again."""
        if conn.open and not any(_is_error(r) and _lost(r) for r in results):
            return True
        close(conn)
        return False

    def _write(self, log: ClientLog, index: int) -> None:
        conn = self._connect(log)
        insert = f"INSERT INTO {self.table} (id, client) VALUES (%s, %s)"
        read_back = f"SELECT %s, client FROM {self.table} WHERE id = %s"
        n = 0
        while not self._stop.is_set():
            row_id = n * WRITERS + index
            n += 1
            log.started += 1
            result = seen = self._run(log, conn, "insert", insert, (row_id, log.name))
            if _is_error(result):
                if _lost(result):
                    log.maybe.add(row_id)
                else:
                    log.refused[row_id] = str(result)
            else:
                log.acked.add(row_id)
                log.acked_at.append(time.monotonic())
                if n % 3 == 0:
                    token = nonce()
                    seen = self._run(log, conn, "read", read_back, (token, row_id))
                    if not _is_error(seen) and seen != ((token, log.name),):
                        log.problems.append(f"read-your-writes: id {row_id} read back as {seen}")
            if not self._usable(log, conn, result, seen):
                conn = self._connect(log)
            time.sleep(PACING_SECONDS)
        close(conn)

    def _transact(self, log: ClientLog) -> None:
        """Two inserts per transaction (negative ids), committed together or not at all."""
        conn = self._connect(log, autocommit=False)
        insert = f"INSERT INTO {self.table} (id, client) VALUES (%s, %s)"
        k = 0
        while not self._stop.is_set():
            pair = (-2 * k - 1, -2 * k - 2)
            k += 1
            log.started += 2
            log.pairs.append(pair)
            steps = [("BEGIN", None), *((insert, (i, log.name)) for i in pair), ("COMMIT", None)]
            failed: Result = ()
            for sql, args in steps:
                failed = self._run(log, conn, "insert", sql, args)
                if _is_error(failed):
                    break
            if not _is_error(failed):
                log.acked.update(pair)
                log.acked_at.append(time.monotonic())
            elif _lost(failed) or not conn.open:
                log.maybe.update(pair)
            else:  # a definitive error inside the transaction: roll it back
                undone = self._run(log, conn, "insert", "ROLLBACK")
                if _is_error(undone):
                    log.maybe.update(pair)
                else:
                    log.refused.update(dict.fromkeys(pair, str(failed)))
                failed = undone
            if not self._usable(log, conn, failed):
                conn = self._connect(log, autocommit=False)
            time.sleep(PACING_SECONDS)
        close(conn)

    def _read(self, log: ClientLog) -> None:
        conn = self._connect(log)
        count = f"SELECT %s, COUNT(*) FROM {self.table}"
        point = f"SELECT %s, id, client FROM {self.table} WHERE id = %s"
        while not self._stop.is_set():
            token = nonce()
            counted = self._run(log, conn, "read", count, (token,))
            if not self._usable(log, conn, counted):  # lost: a second read would fail too
                conn = self._connect(log)
                continue
            if not _is_error(counted):
                attempted = self.attempted()
                if len(counted) != 1 or counted[0][0] != token or counted[0][1] > attempted:
                    log.problems.append(f"count read {counted}, {attempted} inserts tried")
            row_id = random.randrange(-self.transactions.started, max(1, self.attempted()))
            token = nonce()
            found = self._run(log, conn, "read", point, (token, row_id))
            if not _is_error(found) and found not in ((), ((token, row_id, owner(row_id)),)):
                log.problems.append(f"point read of id {row_id} ({token}) gave {found}")
            if not self._usable(log, conn, found):
                conn = self._connect(log)
            time.sleep(PACING_SECONDS)
        close(conn)

    def _enter_state(self, log: ClientLog, state: tuple[str, str, str]) -> pymysql.Connection:
        """A connection with `state` (tag, sql_mode, schema) set through the proxy."""
        tag, sql_mode, schema = state
        setup = [(f"USE {schema}", None), ("SET @tag = %s", (tag,))]
        setup.append(("SET SESSION sql_mode = %s", (sql_mode,)))
        deadline = time.monotonic() + STATEMENT_DEADLINE_SECONDS
        while True:
            conn = self._connect(log, database=None)
            failed = False
            for sql, args in setup:  # stop at the first error: the rest would fail too
                failed = _is_error(self._run(log, conn, "read", sql, args))
                if failed:
                    break
            if not failed:
                return conn
            close(conn)
            if time.monotonic() > deadline:
                raise AssertionError(f"{log.name} could not set its state: {log.errors[-1]}")

    def _check_state(
        self, log: ClientLog, conn: pymysql.Connection, state: tuple[str, str, str]
    ) -> bool:
        """Read the state back from a replica and from the writer; False: log in again."""
        for hint in ("", "/* rwproxy:primary */ "):
            token = nonce()
            sql = f"{hint}SELECT %s, @tag, @@sql_mode, DATABASE()"
            result = self._run(log, conn, "read", sql, (token,))
            if not self._usable(log, conn, result):
                return False
            if _is_error(result):
                continue
            seen = tuple(text(v) for v in result[0]) if len(result) == 1 else result
            if seen != (token, *state):
                log.problems.append(f"{hint or 'replica '}read of own state gave {seen}")
        return True

    def _keep_state(self, log: ClientLog, state: tuple[str, str, str]) -> None:
        conn = self._enter_state(log, state)
        while not self._stop.is_set():
            if not self._check_state(log, conn, state):
                conn = self._enter_state(log, state)
            time.sleep(PACING_SECONDS)
        close(conn)

    def _churn(self, log: ClientLog, state: tuple[str, str, str]) -> None:
        while not self._stop.is_set():
            conn = self._enter_state(log, state)
            try:
                self._check_state(log, conn, state)
            finally:
                close(conn)
            time.sleep(PACING_SECONDS)


def _is_error(result: Result) -> TypeGuard[pymysql.err.MySQLError]:
    return isinstance(result, pymysql.err.MySQLError)


def _code(exc: pymysql.err.MySQLError) -> int:
    return int(exc.args[0]) if exc.args and isinstance(exc.args[0], int) else 0


def _lost(exc: pymysql.err.MySQLError) -> bool:
    return isinstance(exc, pymysql.err.InterfaceError) or _code(exc) in LOST_CONNECTION


# -- the faults ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One disruption: `run(cluster, proxy)` breaks something and repairs it."""

    name: str
    pod: str
    run: Callable[[ClusterHandle, ProxyThread], None]
    breaks: int = 1  # errors a client may see from it: the statement it had in flight
    waits: float = 0.0  # some insert must have waited this long for the writer, then succeeded


def _stop_start_replica(cluster: ClusterHandle, proxy: ProxyThread) -> None:
    pod_command(lambda: cluster.cluster.stop("mysql-1"))
    eventually(
        lambda: "mysql-1" not in {e.pod for e in topology(proxy).readers},
        RECOVERY_DEADLINE_SECONDS,
        "the proxy stops reading from the stopped replica",
    )
    pod_command(lambda: cluster.cluster.start("mysql-1"))


def _move_replica(cluster: ClusterHandle, proxy: ProxyThread) -> None:
    pod_command(lambda: cluster.cluster.move("mysql-2"))


def _lag_replica(cluster: ClusterHandle, proxy: ProxyThread) -> None:
    pod_command(lambda: cluster.cluster.lag("mysql-1", on=True))
    eventually(
        lambda: "mysql-1" not in {e.pod for e in topology(proxy).readers},
        RECOVERY_DEADLINE_SECONDS,
        "the proxy stops reading from the lagging replica",
    )
    pod_command(lambda: cluster.cluster.lag("mysql-1", on=False))


def _stop_start_writer(cluster: ClusterHandle, proxy: ProxyThread) -> None:
    pod_command(lambda: cluster.cluster.stop("mysql-0"))
    stopped = time.monotonic()
    eventually(
        lambda: topology(proxy).writer is None,
        RECOVERY_DEADLINE_SECONDS,
        "the proxy notices that the writer is gone",
    )
    while time.monotonic() - stopped < WRITER_OUTAGE_SECONDS:
        time.sleep(0.05)  # pacing: the outage lasts about 2 s while the clients keep going
    pod_command(lambda: cluster.cluster.start("mysql-0"))


def _move_writer(cluster: ClusterHandle, proxy: ProxyThread) -> None:
    pod_command(lambda: cluster.cluster.move("mysql-0"))


FAULTS = [
    pytest.param(
        Fault("stop_start_replica", "mysql-1", _stop_start_replica), id="stop_start_replica"
    ),
    pytest.param(Fault("move_replica", "mysql-2", _move_replica), id="move_replica"),
    pytest.param(Fault("lag_replica", "mysql-1", _lag_replica), id="lag_replica"),
    pytest.param(
        Fault("stop_start_writer", "mysql-0", _stop_start_writer, waits=1.0),
        id="stop_start_writer",
    ),
    pytest.param(Fault("move_writer", "mysql-0", _move_writer), id="move_writer"),
]


# -- what must hold afterwards ---------------------------------------------------------------


def check_ledger(cluster: ClusterHandle, table: str, traffic: Traffic) -> None:
    """Every acknowledged id, no refused id, nothing untried, transactions whole; replicas
    the same."""
    found = dict(cluster.query(cluster.primary, f"SELECT id, client FROM app.{table}"))
    present = set(found)
    acked = set().union(*(w.acked for w in traffic.inserters))
    maybe = set().union(*(w.maybe for w in traffic.inserters))
    refused: dict[int, str] = {}
    for w in traffic.inserters:
        refused.update(w.refused)
    assert acked, "no insert was acknowledged at all"
    assert not acked - present, f"acknowledged inserts lost: {sorted(acked - present)[:20]}"
    wrongly = {i: refused[i] for i in sorted(present & refused.keys())[:10]}
    assert not wrongly, f"inserts refused with an ERR are there anyway: {wrongly}"
    assert not present - acked - maybe, f"ids never tried: {sorted(present - acked - maybe)}"
    assert all(client == owner(i) for i, client in found.items()), "a row names the wrong client"
    duplicates = [str(e) for w in traffic.inserters for e in w.errors if e.code == ER_DUP_ENTRY]
    assert not duplicates, f"an insert was applied twice: {duplicates[:5]}"
    halves = [pair for pair in traffic.transactions.pairs if len(present & set(pair)) == 1]
    assert not halves, f"transactions committed in part: {halves[:5]}"

    cluster.wait_replicated(timeout=10.0)
    for replica in cluster.replicas:
        replica_ids = {i for (i,) in cluster.query(replica, f"SELECT id FROM app.{table}")}
        missing, extra = sorted(present - replica_ids)[:10], sorted(replica_ids - present)[:10]
        assert not (missing or extra), f"{replica}: missing {missing}, extra {extra}"


def check_results(traffic: Traffic, fault: Fault) -> None:
    """No wrong result, no hang, no statement slower than the writer wait allows."""
    assert not traffic.hung, f"client threads still running: {traffic.hung}"
    waited = max(w.slowest_ack for w in traffic.writers)
    assert waited >= fault.waits, f"no insert waited for the writer (longest: {waited:.2f} s)"
    for log in traffic.logs:
        assert not log.problems, f"{log.name}: {log.problems[:5]}"
        assert log.slowest <= STATEMENT_DEADLINE_SECONDS, (
            f"{log.name}: a statement took {log.slowest:.1f} s"
        )


def check_errors(traffic: Traffic, fault: Fault, fault_at: float) -> None:
    """Errors name the pod, a lost connection or a shutdown; at most `fault.breaks` per
    client: the statement it had in flight (a client logs in again after a lost connection,
    and the new connection must not fail too)."""
    for log in traffic.logs:
        for e in log.errors:
            clean = e.code in LOST_CONNECTION | POD_GOING_AWAY or fault.pod in e.message
            assert clean, f"{log.name}: an error that does not name {fault.pod}: {e}"
    for log in traffic.logs:
        if len(log.errors) > fault.breaks:
            seen = [f"{e.at - fault_at:+.3f} s {e.kind}: {e.message}" for e in log.errors[:4]]
            raise AssertionError(f"{log.name}: {len(log.errors)} errors from one fault: {seen}")


def check_baseline(proxy: ProxyThread) -> None:
    """No session left; every pool idle, within its bounds, for an address that exists."""

    def snapshot(px: Any) -> dict[str, Any]:
        pods = {(e.pod, e.host) for e in px.ctx.topology().pods.values()}
        pools = [(p.endpoint.pod, p.endpoint.host, p.stats()) for p in px.ctx.pools.pools()]
        return {"sessions": len(px.ctx.sessions), "pods": pods, "pools": pools}

    last: list[dict[str, Any]] = [{}]

    def at_rest() -> dict[str, Any]:
        seen = last[0] = proxy.call(snapshot)
        busy = [p for p in seen["pools"] if p[2].in_use or p[2].opening or p[2].waiting]
        return {} if seen["sessions"] or busy else seen

    try:
        seen = eventually(at_rest, BASELINE_DEADLINE_SECONDS, "sessions gone and pools idle")
    except AssertionError:
        raise AssertionError(f"not back to baseline: {last[0]}") from None
    stale = [(pod, host) for pod, host, _ in seen["pools"] if (pod, host) not in seen["pods"]]
    assert not stale, f"pools kept for addresses that are gone: {stale}"
    idle: dict[str, int] = {}
    for pod, _, stats in seen["pools"]:
        idle[pod] = idle.get(pod, 0) + stats.idle
    assert all(n <= MAX_IDLE_PER_POD for n in idle.values()), f"idle connections: {idle}"


# -- the scenarios ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_during_traffic_loses_no_write_and_shows_no_foreign_state(
    fault: Fault, ledger: str, disrupted_cluster: ClusterHandle, start_proxy: StartProxy
) -> None:
    cluster = disrupted_cluster
    proxy = fault_proxy(start_proxy, cluster)
    wait_healthy(proxy, cluster)
    began = time.monotonic()
    with Traffic(proxy, cluster, ledger) as traffic:
        traffic.wait_for_acks(ACKS_BEFORE_FAULT, began, "before the fault")
        fault_at = time.monotonic()
        fault.run(cluster, proxy)
        wait_healthy(proxy, cluster)
        traffic.wait_for_acks(ACKS_AFTER_RECOVERY, time.monotonic(), "after recovery")
    elapsed = time.monotonic() - began
    assert elapsed <= SCENARIO_DEADLINE_SECONDS, f"the scenario took {elapsed:.1f} s"
    check_results(traffic, fault)
    check_ledger(cluster, ledger, traffic)
    check_baseline(proxy)
    check_errors(traffic, fault, fault_at)


# -- what a fault must not leave behind silently ---------------------------------------------


def restart_writer(cluster: ClusterHandle, proxy: ProxyThread) -> None:
    """Stop and start mysql-0 while the client is idle; back when the proxy sees it again."""
    pod_command(lambda: cluster.cluster.stop(cluster.primary))
    pod_command(lambda: cluster.cluster.start(cluster.primary))
    wait_healthy(proxy, cluster)


def outcome(conn: pymysql.Connection, sql: str) -> tuple[tuple[Any, ...], ...] | int:
    """The statement's rows, or the error code it failed with."""
    try:
        return rows(conn, sql)
    except pymysql.err.MySQLError as exc:
        return _code(exc)


def test_transaction_cut_by_a_writer_restart_never_commits_half(
    ledger: str, disrupted_cluster: ClusterHandle, start_proxy: StartProxy
) -> None:
    """Found by this file (fixed in e4746f8): the next statement ran in autocommit on a new
    connection and COMMIT answered OK, so the first insert was lost and the second kept."""
    cluster = disrupted_cluster
    proxy = fault_proxy(start_proxy, cluster)
    with client(proxy, cluster) as conn:
        rows(conn, "BEGIN")
        rows(conn, f"INSERT INTO {ledger} (id, client) VALUES (1, 'txn')")
        restart_writer(cluster, proxy)
        second = outcome(conn, f"INSERT INTO {ledger} (id, client) VALUES (2, 'txn')")
        commit = outcome(conn, "COMMIT")
    present = {i for (i,) in cluster.query(cluster.primary, f"SELECT id FROM app.{ledger}")}
    # All or nothing; and if neither the second INSERT nor COMMIT failed, all.
    told = f"INSERT: {second}, COMMIT: {commit}, committed: {sorted(present)}"
    assert present in (set(), {1, 2}), f"half a transaction committed ({told})"
    assert (second, commit) != ((), ()) or present == {1, 2}, f"OK but ids lost ({told})"


def test_state_pinned_to_a_restarted_writer_is_never_silently_lost(
    disrupted_cluster: ClusterHandle, start_proxy: StartProxy
) -> None:
    """Found by this file (fixed in e4746f8): the session carried on, on a new writer
    connection, and `SELECT @tag` read NULL."""
    cluster = disrupted_cluster
    proxy = fault_proxy(start_proxy, cluster)
    with client(proxy, cluster) as conn:
        rows(conn, "SET @tag = CONCAT('pinned-', 'A')")  # from an expression: pins the session
        assert text(rows(conn, "SELECT @tag")[0][0]) == "pinned-A"
        restart_writer(cluster, proxy)
        seen = outcome(conn, "SELECT @tag")
    # Either the state survived, or the client is told it is gone (as a direct connection
    # to a restarted server would be): never a quiet NULL.
    assert seen == (("pinned-A",),) or isinstance(seen, int), f"SELECT @tag after restart: {seen}"


def test_session_without_a_schema_never_gets_another_sessions_schema(
    proxy: ProxyThread, cluster: ClusterHandle
) -> None:
    """Found by this file (fixed in e4746f8): COM_RESET_CONNECTION keeps the schema and
    COM_INIT_DB cannot unselect it, so a pooled connection carried another session's."""
    primary = "/* rwproxy:primary */ SELECT DATABASE()"
    with client(proxy, cluster, database="information_schema") as other:
        assert rows(other, primary) == (("information_schema",),)
    check_baseline(proxy)  # its writer connection is idle in the pool, next in line
    with client(proxy, cluster, database=None) as conn:
        assert rows(conn, primary) == ((None,),)
