"""Observability against the real cluster: /metrics moves with traffic, /readyz follows the
writer, /status and `SHOW RWPROXY STATUS|ROUTE` tell the truth (PyMySQL and the mariadb CLI).

Each test runs its own proxy in a thread (tests/support/proxy_harness.py) with the HTTP
endpoint on a free port. Every wait is a deadline loop on an observable condition.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.config import HealthConfig, HostPort, ReadinessConfig
from tests.integration.cluster_fixture import ClusterHandle
from tests.support.proxy_harness import ProxyThread, cluster_config

pytestmark = pytest.mark.integration

# DNS TTL is 5 s; a stopped pod fails its next check (every 0.2 s here) at once.
CHANGE_DEADLINE_SECONDS = 20.0
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def start_proxy(**overrides: Any) -> ProxyThread:
    health = HealthConfig(interval_seconds=0.2, timeout_seconds=1.0, failures_before_down=1)
    options: dict[str, Any] = {"http": HostPort("127.0.0.1", 0), "health": health}
    return ProxyThread(cluster_config(**(options | overrides))).start()


@pytest.fixture
def proxy(cluster: ClusterHandle) -> Iterator[ProxyThread]:
    started = start_proxy()
    try:
        yield started
    finally:
        started.stop()


def http_port(proxy: ProxyThread) -> int:
    assert proxy.proxy is not None and proxy.proxy.http_port is not None
    return proxy.proxy.http_port


def get(proxy: ProxyThread, path: str) -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{http_port(proxy)}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def scrape(proxy: ProxyThread) -> Samples:
    status, body = get(proxy, "/metrics")
    assert status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of `name` over the series whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def connect(proxy: ProxyThread, cluster: ClusterHandle, user: str = "app") -> pymysql.Connection:
    credentials = cluster.credentials(user)
    return pymysql.connect(
        host="127.0.0.1",
        port=proxy.port,
        user=credentials.user,
        password=credentials.password,
        database=cluster.database,
        autocommit=True,
        connect_timeout=5,
        read_timeout=30,
    )


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + CHANGE_DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {CHANGE_DEADLINE_SECONDS} s: {what}")
        time.sleep(0.1)


# -- /metrics ---------------------------------------------------------------------------------


def test_counters_move_with_traffic_to_writer_and_replicas(
    proxy: ProxyThread, cluster: ClusterHandle
) -> None:
    table = cluster.unique_name()
    before = scrape(proxy)
    with connect(proxy, cluster) as writer, writer.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY)")
        for i in range(5):
            cur.execute(f"INSERT INTO {table} VALUES ({i})")
    cluster.wait_replicated()
    with connect(proxy, cluster) as reader, reader.cursor() as cur:
        for _ in range(10):
            cur.execute(f"SELECT COUNT(*) FROM {table}")
        with pytest.raises(pymysql.err.ProgrammingError):
            cur.execute(f"SELECT * FROM {table}_missing")  # the pod answers ERR 1146
        during = scrape(proxy)
    after = scrape(proxy)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("rwproxy_statements_total", route="writer", pod=cluster.primary) >= 6
    replica_reads = sum(
        delta("rwproxy_statements_total", route="reader", pod=pod) for pod in cluster.replicas
    )
    assert replica_reads >= 11
    assert delta("rwproxy_commands_total") >= 17
    assert delta("rwproxy_errors_total", kind="server") == 1
    assert delta("rwproxy_client_connections_total") >= 2
    assert delta("rwproxy_client_sent_bytes_total") > 0
    # pool gauges while the reading session held its replica connection
    in_use = sum(
        value(during, "rwproxy_pool_connections", pod=pod, state="in_use")
        for pod in cluster.replicas
    )
    assert in_use >= 1
    assert value(during, "rwproxy_client_sessions") >= 1
    assert value(after, "rwproxy_client_connections_open") == 0


def test_session_hooks_feed_latency_commands_and_transactions(
    proxy: ProxyThread, cluster: ClusterHandle
) -> None:
    table = cluster.unique_name()
    before = scrape(proxy)
    with connect(proxy, cluster) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TEMPORARY TABLE {table} (id INT)")  # pins the session
        conn.begin()
        cur.execute(f"INSERT INTO {table} VALUES (1)")
        conn.commit()
        cur.execute("SELECT 1")
    after = scrape(proxy)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("rwproxy_statement_duration_seconds_count", route="writer") >= 3
    assert delta("rwproxy_commands_total", command="insert") == 1
    assert delta("rwproxy_commands_total", command="create") == 1
    assert delta("rwproxy_transactions_total", result="commit") == 1
    assert delta("rwproxy_session_pins_total", cause="temporary_table") == 1
    assert delta("rwproxy_client_received_bytes_total") > 0


def test_topology_metrics_describe_the_cluster(proxy: ProxyThread, cluster: ClusterHandle) -> None:
    samples = scrape(proxy)
    assert value(samples, "rwproxy_writer_available") == 1
    assert value(samples, "rwproxy_readers_available") == len(cluster.replicas)
    assert value(samples, "rwproxy_dns_ok") == 1
    assert total(samples, "rwproxy_dns_resolutions_total", result="ok") >= 1
    for pod in cluster.pods:
        assert value(samples, "rwproxy_pod_state", pod=pod, state="up") == 1
        assert value(samples, "rwproxy_pod_up", pod=pod) == 1
        assert total(samples, "rwproxy_health_checks_total", pod=pod, result="ok") >= 1
    assert value(samples, "rwproxy_pod_role", pod=cluster.primary, role="writer") == 1
    assert value(samples, "rwproxy_pod_read_only", pod=cluster.primary) == 0
    for pod in cluster.replicas:
        assert value(samples, "rwproxy_pod_read_only", pod=pod) == 1
        assert (("rwproxy_pod_replication_lag_seconds", frozenset({("pod", pod)}))) in samples


def test_nothing_secret_is_exposed(proxy: ProxyThread, cluster: ClusterHandle) -> None:
    with connect(proxy, cluster) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
    for path in ("/metrics", "/status", "/readyz", "/healthz"):
        status, body = get(proxy, path)
        assert status == 200
        for secret in (cluster.app.password, cluster.monitor.password, cluster.admin.password):
            assert secret.encode() not in body, path


# -- /readyz ----------------------------------------------------------------------------------


def ready(proxy: ProxyThread) -> tuple[int, dict[str, Any]]:
    status, body = get(proxy, "/readyz")
    return status, json.loads(body)


def test_readyz_fails_while_the_writer_is_stopped(disrupted_cluster: ClusterHandle) -> None:
    cluster = disrupted_cluster
    strict = start_proxy()
    try:
        assert ready(strict)[0] == 200
        cluster.cluster.stop(cluster.primary)
        wait_until(lambda: ready(strict)[0] == 503, "/readyz fails without the writer")
        _, body = ready(strict)
        assert body["ready"] is False and cluster.primary in body["reason"]
        wait_until(
            lambda: value(scrape(strict), "rwproxy_writer_available") == 0, "writer gauge at 0"
        )
        cluster.cluster.start(cluster.primary)
        wait_until(lambda: ready(strict)[0] == 200, "/readyz recovers when the writer is back")
        assert ready(strict)[1]["writer"] == cluster.primary
    finally:
        strict.stop()


def test_readyz_without_require_writer_accepts_replicas(disrupted_cluster: ClusterHandle) -> None:
    # A demoted primary (read_only=1) is no writer, but the replicas keep replicating from it.
    cluster = disrupted_cluster
    strict = start_proxy()
    reads_only = start_proxy(readiness=ReadinessConfig(require_writer=False))
    try:
        cluster.query(cluster.primary, "SET GLOBAL read_only = 1")
        wait_until(lambda: ready(strict)[0] == 503, "strict /readyz fails on a read-only writer")
        assert "read_only" in ready(strict)[1]["reason"]
        status, body = ready(reads_only)
        assert status == 200 and "reads only" in body["reason"], body
    finally:
        cluster.query(cluster.primary, "SET GLOBAL read_only = 0")
        strict.stop()
        reads_only.stop()


# -- /status and SHOW RWPROXY -----------------------------------------------------------------


def test_status_endpoint_and_show_status_agree(proxy: ProxyThread, cluster: ClusterHandle) -> None:
    status, body = get(proxy, "/status")
    data = json.loads(body)
    assert status == 200 and data["ready"] is True
    assert data["writer"] == cluster.primary
    assert data["config"]["health"]["interval_seconds"] == 0.2
    assert data["uptime_seconds"] >= 0 and len(data["config_version"]) == 12
    with connect(proxy, cluster) as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SHOW RWPROXY STATUS")
        rows = cur.fetchall()
    by_pod = {row["pod"]: row for row in rows}
    assert sorted(by_pod) == sorted(cluster.pods)
    for pod in data["pods"]:
        row = by_pod[pod["pod"]]
        assert (row["address"], row["role"], row["state"]) == (
            pod["address"],
            pod["role"],
            pod["state"],
        )
        assert pod["address"] == f"{cluster.address(pod['pod'])}:{cluster.port}"
    assert by_pod[cluster.primary]["role"] == "writer" and by_pod[cluster.primary]["read_only"] == 0
    assert by_pod[cluster.primary]["pool_in_use"] >= 0


def test_show_rwproxy_route_answers_without_running(
    proxy: ProxyThread, cluster: ClusterHandle
) -> None:
    table = cluster.unique_name()
    cluster.query(cluster.primary, f"CREATE TABLE app.{table} (id INT PRIMARY KEY)")
    with connect(proxy, cluster) as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(f"SHOW RWPROXY ROUTE INSERT INTO {table} VALUES (1)")
        (write,) = cur.fetchall()
        cur.execute("/* why? */ show rwproxy route SELECT * FROM t")
        (read,) = cur.fetchall()
        cur.execute("SHOW RWPROXY ROUTE /* rwproxy:primary */ SELECT 1")
        (hinted,) = cur.fetchall()
        conn.begin()
        cur.execute(f"SELECT * FROM {table} FOR UPDATE")
        cur.fetchall()
        cur.execute("SHOW RWPROXY ROUTE SELECT 1")
        (in_txn,) = cur.fetchall()
        conn.rollback()
    assert (write["target"], write["pod"], write["kind"]) == ("writer", cluster.primary, "write")
    assert read["target"] == "reader" and read["pod"] in cluster.replicas
    assert read["rule"] == "plain read"
    assert (hinted["target"], hinted["hint"]) == ("writer", "primary")
    assert (in_txn["target"], in_txn["pod"]) == ("transaction", cluster.primary)
    assert cluster.query(cluster.primary, f"SELECT COUNT(*) FROM app.{table}") == ((0,),)


def test_show_rwproxy_through_the_mariadb_cli(proxy: ProxyThread, cluster: ClusterHandle) -> None:
    command = [
        "mariadb",
        "--no-defaults",
        "--batch",
        "-h127.0.0.1",
        f"-P{proxy.port}",
        f"-u{cluster.app.user}",
        f"-p{cluster.app.password}",
        cluster.database,
        "-e",
        "SHOW RWPROXY STATUS; SHOW RWPROXY ROUTE DELETE FROM t",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert lines[0][:4] == ["pod", "address", "role", "state"]
    pods = [line[0] for line in lines[1 : 1 + len(cluster.pods)]]
    assert pods == sorted(cluster.pods)
    route_header = lines[1 + len(cluster.pods)]
    assert route_header == ["target", "pod", "kind", "rule", "pin", "hint"]
    assert lines[-1][:3] == ["writer", cluster.primary, "write"]
