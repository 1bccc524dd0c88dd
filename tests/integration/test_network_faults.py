"""Network faults between rwproxy and one pod, under traffic: delay, drop mid-response, reset
and black-hole, for a replica (mysql-1) and for the writer (mysql-0).

A `FaultProxy` (tests/support/faultproxy.py) sits in front of mysql-0 and of mysql-1, on
127.0.1.10 and 127.0.1.11 (outside every address `rwproxy cluster move` may pick), and cluster
DNS names those pods at the fault proxies for the whole module (`ClusterHandle.redirect_dns`),
so that rwproxy's backend connections *and* its health checks go through them. One rwproxy
serves the module, with short timeouts (health checks every 0.25 s, 0.75 s each, down after
2 failures; backend connects 1 s; writes wait up to 8 s for a writer), so that eight scenarios
fit the file's time budget.

Each scenario runs `Traffic` from test_proxy_faults.py (writers with unique ids and their
acked / refused / maybe ledger, a transactional client, readers, session-state clients), then:

1. breaks the pod's network and waits until the proxy takes the pod out of the topology
   (the writer is gone, or the replica is no longer a reader): the ban;
2. waits until no backend connection to that pod has a command in flight for longer than a
   round trip can take (`STUCK_AFTER_SECONDS`): whatever is still in flight then would only
   end because the fault is lifted, i.e. not in bounded time;
3. lifts the fault, waits until the pod is back, and for acknowledged writes after that.

and checks: no statement in flight on the broken connections outlived the ban; every
statement ended within the scenario's bound; each client saw at most one error (the statement
it had in flight), and, for a replica fault in which no byte of a reply can reach the client,
readers saw none (a read that failed before any byte reached the client is retried elsewhere);
the ledger (every acknowledged id on the primary, no refused id, nothing untried, transactions
whole, replicas equal); no INSERT reached the primary twice (its general log, so that even a
re-send whose first attempt never applied would show); and the proxy back at rest.

Every wait is a deadline loop on something observable; the only sleeps are short pacing.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pymysql
import pytest

from proxy.app import Proxy
from proxy.config import Config, DiscoveryConfig, HealthConfig, HostPort, PoolConfig, RoutingConfig
from proxy.devcluster import spec
from proxy.topology.model import Endpoint, Topology
from tests.integration.cluster_fixture import ClusterHandle
from tests.integration.proxy_fixtures import GeneralLog
from tests.integration.test_proxy_faults import (
    ACKS_AFTER_RECOVERY,
    ACKS_BEFORE_FAULT,
    STATEMENT_DEADLINE_SECONDS,
    Fault,
    Traffic,
    check_baseline,
    check_errors,
    check_ledger,
    close,
    connect,
    eventually,
    rows,
    text,
)
from tests.support.backpressure import PROXY_HELD_BOUND, stream_until_stalled
from tests.support.faultproxy import FaultProxy
from tests.support.proxy_harness import ProxyThread, cluster_config

pytestmark = pytest.mark.integration

FAULTED = ("mysql-0", "mysql-1")
HEALTH_INTERVAL_SECONDS = 0.25
HEALTH_TIMEOUT_SECONDS = 0.75
FAILURES_BEFORE_DOWN = 2
CONNECT_TIMEOUT_SECONDS = 1.0
WRITER_WAIT_SECONDS = 8.0
DELAY_SECONDS = 0.4  # each way: a health check (2 round trips) takes 1.6 s > its timeout
DROP_KEEP_BYTES = 4  # the reply's first packet header reaches the client, then the cut
# Two failed checks, each started at most one interval after the previous one ended, plus
# a margin for a 2-core machine shared with the pods and the clients.
BAN_DEADLINE_SECONDS = FAILURES_BEFORE_DOWN * (HEALTH_INTERVAL_SECONDS + HEALTH_TIMEOUT_SECONDS) + 2
# A command in flight this long on a connection to a banned pod is not a slow round trip.
STUCK_AFTER_SECONDS = 2 * DELAY_SECONDS + 1.0
IN_FLIGHT_DEADLINE_SECONDS = STUCK_AFTER_SECONDS + 1.0
RECOVERY_DEADLINE_SECONDS = 10.0
# A replica fault never makes a statement wait for more than a failed connect or check.
REPLICA_FAULT_BOUND_SECONDS = CONNECT_TIMEOUT_SECONDS + BAN_DEADLINE_SECONDS
# A writer fault makes writes wait for the writer: until it is back, plus a margin.
WRITER_BACK_MARGIN_SECONDS = 3.0


def fault_address(pod: str) -> str:
    """127.0.1.(10+N): not a pod address (they are 127.0.0.x), nor DNS's."""
    return f"127.0.1.{spec.FIRST_POD_OCTET + spec.pod_ordinal(pod)}"


@dataclass
class Net:
    """The module's rwproxy and the fault proxies in front of mysql-0 and mysql-1."""

    proxy: ProxyThread
    faults: dict[str, FaultProxy]
    general_log: GeneralLog

    def endpoint(self, pod: str) -> Endpoint:
        host, port = self.faults[pod].address
        return Endpoint(pod, host, port)


@pytest.fixture(scope="module")
def net(cluster: ClusterHandle) -> Iterator[Net]:
    faults: dict[str, FaultProxy] = {}
    try:
        for pod in FAULTED:
            listen = (fault_address(pod), cluster.port)
            faults[pod] = FaultProxy(listen, (cluster.address(pod), cluster.port)).start()
        redirect = {pod: fault.address[0] for pod, fault in faults.items()}
        with cluster.redirect_dns(redirect), GeneralLog(cluster) as log:
            proxy = ProxyThread(net_config(cluster)).start()
            try:
                yield Net(proxy, faults, log)
            finally:
                proxy.stop()
    finally:
        for fault in faults.values():
            fault.stop()


def net_config(cluster: ClusterHandle, health: HealthConfig | None = None) -> Config:
    host, port = cluster.dns_server
    return cluster_config(
        shutdown_timeout_seconds=2.0,
        routing=RoutingConfig(writer_wait_timeout_seconds=WRITER_WAIT_SECONDS),
        health=health
        or HealthConfig(
            interval_seconds=HEALTH_INTERVAL_SECONDS,
            timeout_seconds=HEALTH_TIMEOUT_SECONDS,
            failures_before_down=FAILURES_BEFORE_DOWN,
        ),
        pool=PoolConfig(connect_timeout_seconds=CONNECT_TIMEOUT_SECONDS),
        discovery=DiscoveryConfig(
            nameservers=(HostPort(host, port),), resolve_interval_seconds=1.0
        ),
    )


@pytest.fixture
def table(cluster: ClusterHandle) -> Iterator[str]:
    """The ledger table of one scenario (id, client) on mysql-0, replicated."""
    name = cluster.unique_name("netfaults")
    cluster.query(
        cluster.primary,
        f"CREATE TABLE {cluster.database}.{name} (id BIGINT PRIMARY KEY, client VARCHAR(8))",
    )
    cluster.wait_replicated()
    yield name
    cluster.query(cluster.primary, f"DROP TABLE IF EXISTS {cluster.database}.{name}")


class NetTraffic(Traffic):
    """`Traffic`, except that a client setting up its session state stops at the first
    failed statement. `Traffic._enter_state` runs all three even after the first lost the
    connection, so the next ones fail too, with PyMySQL's `InterfaceError(0, '')`: a second
    error from one fault that is the client's doing, not the proxy's."""

    def _enter_state(self, log: Any, state: tuple[str, str, str]) -> Any:
        tag, sql_mode, schema = state
        setup = [(f"USE {schema}", None), ("SET @tag = %s", (tag,))]
        setup.append(("SET SESSION sql_mode = %s", (sql_mode,)))
        deadline = time.monotonic() + STATEMENT_DEADLINE_SECONDS
        while True:
            conn = self._connect(log, database=None)
            if all(
                not isinstance(self._run(log, conn, "read", sql, args), Exception)
                for sql, args in setup
            ):
                return conn
            close(conn)
            if time.monotonic() > deadline:
                raise AssertionError(f"{log.name} could not set its state: {log.errors[-1]}")


# -- the topology as the proxy sees it -------------------------------------------------------


def topology(proxy: ProxyThread) -> Topology:
    return proxy.call(lambda px: px.ctx.topology())


def serving(net: Net, pod: str) -> bool:
    """The proxy uses `pod` at its fault proxy's address (as the writer or as a reader)."""
    current = topology(net.proxy)
    endpoint = net.endpoint(pod)
    return current.writer == endpoint if pod == "mysql-0" else endpoint in current.readers


def all_serving(net: Net, cluster: ClusterHandle) -> bool:
    """mysql-0 writes, every replica reads, each at the address DNS gives it now."""
    current = topology(net.proxy)
    readers = {(e.pod, e.host) for e in current.readers}
    wanted = {
        (pod, net.endpoint(pod).host if pod in net.faults else cluster.address(pod))
        for pod in cluster.replicas
    }
    return current.writer == net.endpoint(cluster.primary) and readers == wanted


def wait_all_serving(net: Net, cluster: ClusterHandle) -> None:
    try:
        eventually(lambda: all_serving(net, cluster), RECOVERY_DEADLINE_SECONDS, "all pods serve")
    except AssertionError:
        answer = cluster.dns_query(cluster.service_fqdn).answer
        seen = topology(net.proxy).describe()
        raise AssertionError(f"the proxy does not use every pod: {seen}; DNS: {answer}") from None


def in_flight(proxy: ProxyThread, endpoint: Endpoint, older_than: float) -> list[str]:
    """Backend connections to `endpoint` held by a session with a command in flight for
    longer than `older_than` seconds."""

    def look(px: Proxy) -> list[str]:
        now = time.monotonic()
        found = []
        for number, session in px.ctx.sessions.items():
            for conn in session.held_connections():
                age = now - conn.last_used_at
                if conn.endpoint == endpoint and conn.busy and age > older_than:
                    found.append(f"session {number} (thread {conn.thread_id}): {age:.1f} s")
        return found

    return proxy.call(look)


# -- the faults ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetFault:
    name: str
    apply: Callable[[FaultProxy], None]
    reply_reaches_client: bool = False  # part of a reply may reach the client before the cut


FAULTS = {
    "delay": NetFault("delay", lambda fp: fp.delay(DELAY_SECONDS)),
    "drop_mid_response": NetFault(
        "drop_mid_response", lambda fp: fp.drop_mid_response(DROP_KEEP_BYTES), True
    ),
    "reset": NetFault("reset", lambda fp: fp.reset()),
    "blackhole": NetFault("blackhole", lambda fp: fp.blackhole()),
}


@dataclass
class Timeline:
    """When the fault began, the pod left the topology, the fault was lifted, the pod was back."""

    fault_at: float
    banned_at: float = 0.0
    lifted_at: float = 0.0
    back_at: float = 0.0
    stuck: tuple[str, ...] = ()


def break_and_heal(net: Net, pod: str, fault: NetFault, traffic: Traffic) -> Timeline:
    fp = net.faults[pod]
    endpoint = net.endpoint(pod)
    timeline = Timeline(time.monotonic())
    try:
        fault.apply(fp)
        eventually(
            lambda: not serving(net, pod),
            BAN_DEADLINE_SECONDS,
            f"the proxy takes {pod} out of the topology under {fault.name}",
        )
        timeline.banned_at = time.monotonic()
        deadline = timeline.banned_at + IN_FLIGHT_DEADLINE_SECONDS
        stuck: list[str] = []
        while in_flight(net.proxy, endpoint, 0.0):
            if time.monotonic() > deadline:
                stuck = in_flight(net.proxy, endpoint, STUCK_AFTER_SECONDS)
                break
            time.sleep(0.05)
        if stuck:
            running = [
                traffic.describe(log, timeline.fault_at)
                for log in traffic.logs
                if log.running is not None
            ]
            timeline.stuck = (*stuck, *running)
    finally:
        fp.restore()
        timeline.lifted_at = time.monotonic()
    eventually(
        lambda: serving(net, pod),
        RECOVERY_DEADLINE_SECONDS,
        f"{pod} back in the topology after {fault.name}",
    )
    timeline.back_at = time.monotonic()
    return timeline


# -- what must hold afterwards ---------------------------------------------------------------

INSERT_ID = re.compile(r"VALUES \((-?\d+),")


def check_sent_once(cluster: ClusterHandle, table: str) -> None:
    """No INSERT reached the primary twice: a re-sent statement shows even when its first
    attempt never applied (the general log has every statement a client session sent)."""
    with cluster.connect(cluster.primary, "admin") as conn, conn.cursor() as cursor:
        cursor.execute("SET SESSION sql_log_off = 1")
        cursor.execute(
            "SELECT CONVERT(argument USING utf8mb4) FROM mysql.general_log"
            " WHERE command_type = 'Query' AND argument LIKE %s AND user_host NOT LIKE %s",
            (f"INSERT INTO {table} %", "[%"),
        )
        statements = [str(sql) for (sql,) in cursor.fetchall()]
    sent: dict[int, int] = {}
    for sql in statements:
        found = INSERT_ID.search(sql)
        assert found is not None, f"not a ledger insert: {sql!r}"
        sent[int(found.group(1))] = sent.get(int(found.group(1)), 0) + 1
    assert sent, "the primary's general log has no insert of this scenario"
    twice = {row_id: n for row_id, n in sent.items() if n > 1}
    assert not twice, (
        f"inserts sent to the primary more than once: {dict(list(twice.items())[:10])}"
    )


def check_bounded(traffic: Traffic, pod: str, timeline: Timeline) -> None:
    assert not traffic.hung, f"client threads still running: {traffic.hung}"
    assert not timeline.stuck, (
        f"commands still in flight on connections to {pod} "
        f"{IN_FLIGHT_DEADLINE_SECONDS:g} s after it left the topology "
        f"({timeline.banned_at - timeline.fault_at:.1f} s after the fault), ended only by "
        f"lifting the fault: {list(timeline.stuck)}"
    )
    if pod == "mysql-0":
        bound = timeline.back_at - timeline.fault_at + WRITER_BACK_MARGIN_SECONDS
    else:
        bound = REPLICA_FAULT_BOUND_SECONDS
    for log in traffic.logs:
        assert not log.problems, f"{log.name}: {log.problems[:5]}"
        assert log.slowest <= bound, (
            f"{log.name}: a statement took {log.slowest:.1f} s > {bound:.1f}"
        )


def check_reads_retried(traffic: Traffic, fault: NetFault, timeline: Timeline) -> None:
    """A replica read that failed before any byte of its reply reached the client is
    retried elsewhere: readers see no error at all."""
    for log in traffic.readers:
        seen = [f"{e.at - timeline.fault_at:+.3f} s {e.kind}: {e.message}" for e in log.errors]
        assert not seen, f"{log.name}: reads failed under {fault.name} of a replica: {seen[:3]}"


# -- the scenarios ---------------------------------------------------------------------------


SCENARIOS = [
    pytest.param(pod, FAULTS[name], id=f"{pod}-{name}")
    for pod in ("mysql-1", "mysql-0")
    for name in FAULTS
]


@pytest.mark.parametrize(("pod", "fault"), SCENARIOS)
def test_network_fault_is_bounded_and_loses_no_write(
    pod: str, fault: NetFault, net: Net, cluster: ClusterHandle, table: str
) -> None:
    wait_all_serving(net, cluster)
    began = time.monotonic()
    with NetTraffic(net.proxy, cluster, table) as traffic:
        traffic.wait_for_acks(ACKS_BEFORE_FAULT, began, "before the fault")
        timeline = break_and_heal(net, pod, fault, traffic)
        traffic.wait_for_acks(ACKS_AFTER_RECOVERY, time.monotonic(), "after recovery")
    check_bounded(traffic, pod, timeline)
    check_ledger(cluster, table, traffic)
    check_sent_once(cluster, table)
    check_baseline(net.proxy)
    check_errors(traffic, Fault(fault.name, pod, lambda *_: None), timeline.fault_at)
    if pod != "mysql-0" and not fault.reply_reaches_client:
        check_reads_retried(traffic, fault, timeline)


# -- the read retry, deterministically -------------------------------------------------------


def client_reading_from(net: Net, cluster: ClusterHandle, pod: str) -> pymysql.Connection:
    """A client whose session holds its replica connection on `pod` (new sessions go to the
    replica with the fewest connections in use, so the others are kept open meanwhile)."""
    endpoint = net.endpoint(pod)
    others: list[pymysql.Connection] = []
    try:
        for _ in range(8):
            conn = connect(net.proxy, cluster)
            rows(conn, "SELECT 1")
            number = conn.thread_id()

            def held_by(px: Proxy, n: int = number) -> list[Endpoint]:
                return [c.endpoint for c in px.ctx.sessions[n].held_connections()]

            held = net.proxy.call(held_by)
            if endpoint in held:
                return conn
            others.append(conn)
        raise AssertionError(f"no new session read from {pod}")
    finally:
        for other in others:
            close(other)


def server_id(cluster: ClusterHandle, pod: str) -> int:
    ((found,),) = cluster.query(pod, "SELECT @@server_id")
    return int(found)


def read_under_cut(net: Net, cluster: ClusterHandle, before: str | None) -> tuple[Any, ...]:
    """On a session reading from mysql-1 (after running `before`, if given), cut mysql-1's
    replies before their first byte, then read: the row, or the error it failed with."""
    fp = net.faults["mysql-1"]
    conn = client_reading_from(net, cluster, "mysql-1")
    try:
        if before is not None:
            rows(conn, before)
        fp.drop_mid_response(0)
        try:
            return rows(conn, "SELECT @tag, @@server_id")[0]
        except pymysql.err.MySQLError as exc:
            return tuple(exc.args)
    finally:
        fp.restore()
        close(conn)
        wait_all_serving(net, cluster)


def test_replica_read_cut_before_any_reply_byte_is_answered_elsewhere(
    net: Net, cluster: ClusterHandle
) -> None:
    wait_all_serving(net, cluster)
    tag, answered_by = read_under_cut(net, cluster, before=None)
    assert tag is None and answered_by != server_id(cluster, "mysql-1"), (tag, answered_by)


def test_replica_read_whose_state_replay_is_cut_is_answered_elsewhere(
    net: Net, cluster: ClusterHandle
) -> None:
    wait_all_serving(net, cluster)
    # Set on the writer: the replica connection must replay it before the next read.
    seen = read_under_cut(net, cluster, before="/* rwproxy:primary */ SET @tag = 'tagged'")
    assert len(seen) == 2 and text(seen[0]) == "tagged", f"the read gave {seen}"
    assert seen[1] != server_id(cluster, "mysql-1"), f"answered by mysql-1: {seen}"


# -- back-pressure: LOAD DATA into a pod that stops reading ----------------------------------

INFILE_CHUNK_ROWS = 4000  # ~60 KB of "id,tag\n" per packet


def infile_packets(seq: int = 2) -> Iterator[tuple[bytes, int]]:
    """LOCAL INFILE data packets (sequence ids from 2, wrapping) and the rows in each."""
    first = 0
    while True:
        data = "".join(f"{i},x\n" for i in range(first, first + INFILE_CHUNK_ROWS)).encode()
        yield len(data).to_bytes(3, "little") + bytes((seq,)) + data, INFILE_CHUNK_ROWS
        first += INFILE_CHUNK_ROWS
        seq = (seq + 1) & 0xFF


def test_load_data_into_a_stalled_writer_waits_in_the_clients_buffers(
    net: Net, cluster: ClusterHandle, table: str
) -> None:
    """A client streams LOAD DATA LOCAL INFILE while mysql-0 stops reading (black-holed): the
    proxy stops reading the client instead of buffering the file (its pod and client buffers
    stay bounded, the client's socket stalls), and once the pod reads again, every row
    arrives. A proxy of its own, without health checks, so that no ban ends the load."""
    wait_all_serving(net, cluster)
    proxy = ProxyThread(net_config(cluster, HealthConfig(interval_seconds=3600.0))).start()
    fp = net.faults["mysql-0"]
    conn = connect(proxy, cluster, local_infile=True, read_timeout=30, write_timeout=30)
    try:
        sock: socket.socket = conn._sock
        query = f"LOAD DATA LOCAL INFILE 'stream' INTO TABLE {table} FIELDS TERMINATED BY ','"
        payload = b"\x03" + query.encode()
        sock.sendall(len(payload).to_bytes(3, "little") + b"\x00" + payload)
        header = sock.recv(4, socket.MSG_WAITALL)
        request = sock.recv(int.from_bytes(header[:3], "little"), socket.MSG_WAITALL)
        assert request[:1] == b"\xfb", f"no LOCAL INFILE request: {request!r}"
        fp.blackhole()
        try:
            stream = stream_until_stalled(sock, infile_packets(), proxy)
        finally:
            fp.restore()
        assert stream.stalled, "the proxy read the whole stream: nothing stopped it"
        assert 0 < stream.most_held <= PROXY_HELD_BOUND, f"the proxy held {stream.most_held} B"
        sock.sendall(stream.rest)
        final_seq = (2 + stream.packets) & 0xFF
        sock.sendall(b"\x00\x00\x00" + bytes((final_seq,)))  # the empty packet: end of file
        header = sock.recv(4, socket.MSG_WAITALL)
        reply = sock.recv(int.from_bytes(header[:3], "little"), socket.MSG_WAITALL)
        assert reply[:1] == b"\x00", f"LOAD DATA failed: {reply!r}"
    finally:
        conn._sock.close()
        proxy.stop()
    ((count,),) = cluster.query(cluster.primary, f"SELECT COUNT(*) FROM {cluster.database}.{table}")
    assert count == stream.items


# -- the pool after a failure ----------------------------------------------------------------


def idle_on(proxy: ProxyThread, pod: str) -> int:
    return int(
        proxy.call(
            lambda px: sum(p.stats().idle for p in px.ctx.pools.pools() if p.endpoint.pod == pod)
        )
    )


def test_idle_connections_to_a_pod_that_failed_are_pinged_before_reuse(
    net: Net, cluster: ClusterHandle, table: str
) -> None:
    """The cut kills a busy connection to mysql-0 and an idle one alike. After the busy one
    failed (one error, for its client), the idle one must not carry the next client's write
    (a second error from one fault): the pool pings it first, finds it dead, and the write
    waits for a fresh connection, which works once the fault is lifted. A proxy of its own,
    without health checks, so that no ban closes the pool meanwhile."""
    wait_all_serving(net, cluster)
    proxy = ProxyThread(net_config(cluster, HealthConfig(interval_seconds=3600.0))).start()
    fp = net.faults["mysql-0"]
    first, second = connect(proxy, cluster), connect(proxy, cluster)
    lift = threading.Timer(0.5, fp.restore)
    try:
        for n, conn in enumerate((first, second)):
            rows(conn, f"INSERT INTO {table} (id, client) VALUES ({n}, 'setup')")
        close(second)  # its writer connection goes back to the pool
        eventually(lambda: idle_on(proxy, "mysql-0") >= 1, 5.0, "an idle connection to mysql-0")
        fp.drop_mid_response(0)
        with pytest.raises(pymysql.err.OperationalError):
            rows(first, f"INSERT INTO {table} (id, client) VALUES (10, 'cut')")
        lift.start()
        third = connect(proxy, cluster)
        try:
            rows(third, f"INSERT INTO {table} (id, client) VALUES (20, 'after')")
        finally:
            close(third)
    finally:
        lift.cancel()
        fp.restore()
        close(first)
        proxy.stop()
    found = {i for (i,) in cluster.query(cluster.primary, f"SELECT id FROM app.{table}")}
    assert 20 in found
