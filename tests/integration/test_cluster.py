"""The local cluster behaves like StatefulSet `mysql` behind headless Service `mysql-h`.

Replication (GTID, read-only replicas), cluster DNS (A, SRV, TTL, NXDOMAIN, over UDP and TCP), and
the fault commands the proxy's tests rely on: stop/start, move, lag, and an idempotent `up`.
Every wait is bounded; tests that break the cluster use `disrupted_cluster`, which heals it
(listed after `table`, so the cluster is healed before the table is dropped).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import dns.rcode
import dns.rdatatype
import pymysql
import pytest

from proxy.devcluster.process import wait_until
from proxy.devcluster.state import StateStore
from tests.integration.cluster_fixture import ClusterHandle

pytestmark = pytest.mark.integration

REPLICATION_DEADLINE_SECONDS = 1.0
TTL_SECONDS = 5
ER_OPTION_PREVENTS_STATEMENT = 1290


@pytest.fixture
def table(cluster: ClusterHandle) -> Iterator[str]:
    """A fresh table on the primary, already on every replica; dropped after the test."""
    name = cluster.unique_name()
    cluster.query(cluster.primary, f"CREATE TABLE {name} (i INT PRIMARY KEY)", user="app")
    cluster.wait_replicated()
    yield name
    cluster.query(cluster.primary, f"DROP TABLE IF EXISTS {name}", user="app")


def rows(cluster: ClusterHandle, pod: str, table: str) -> list[int]:
    return [row[0] for row in cluster.query(pod, f"SELECT i FROM {table} ORDER BY i", user="app")]


def insert(cluster: ClusterHandle, table: str, value: int) -> None:
    cluster.query(cluster.primary, f"INSERT INTO {table} VALUES (%s)", (value,), user="app")


def a_records(cluster: ClusterHandle, name: str) -> set[str]:
    answer = cluster.dns_query(name, "A")
    return {item.address for rrset in answer.answer for item in rrset}


def srv_targets(cluster: ClusterHandle) -> set[str]:
    answer = cluster.dns_query(cluster.srv_name, "SRV")
    return {item.target.to_text(omit_final_dot=True) for rrset in answer.answer for item in rrset}


def rcode(cluster: ClusterHandle, name: str) -> int:
    return cluster.dns_query(name, "A").rcode()


def test_primary_writes_reach_every_replica_within_a_second(
    table: str, cluster: ClusterHandle
) -> None:
    with cluster.connect(cluster.primary) as conn, conn.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} VALUES (1)")

    def everywhere() -> bool:
        return all(rows(cluster, replica, table) == [1] for replica in cluster.replicas)

    assert wait_until(everywhere, REPLICATION_DEADLINE_SECONDS)


def test_replica_refuses_writes_from_the_app_user(table: str, cluster: ClusterHandle) -> None:
    with pytest.raises(pymysql.MySQLError) as refused:
        cluster.query(cluster.replicas[0], f"INSERT INTO {table} VALUES (1)", user="app")

    assert refused.value.args[0] == ER_OPTION_PREVENTS_STATEMENT


def test_replicas_are_read_only_and_primary_is_not(cluster: ClusterHandle) -> None:
    read_only = {pod: cluster.query(pod, "SELECT @@read_only")[0][0] for pod in cluster.pods}

    assert read_only == {pod: int(pod != cluster.primary) for pod in cluster.pods}


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_dns_has_an_a_record_per_ready_pod(cluster: ClusterHandle, tcp: bool) -> None:
    for pod, address in cluster.addresses().items():
        answer = cluster.dns_query(cluster.pod_fqdn(pod), "A", tcp=tcp)

        assert [item.address for rrset in answer.answer for item in rrset] == [address]
        assert [rrset.ttl for rrset in answer.answer] == [TTL_SECONDS]


def test_dns_service_name_has_every_ready_pod(cluster: ClusterHandle) -> None:
    answer = cluster.dns_query(cluster.service_fqdn, "A")

    assert a_records(cluster, cluster.service_fqdn) == set(cluster.addresses().values())
    assert {rrset.ttl for rrset in answer.answer} == {TTL_SECONDS}


def test_dns_srv_names_every_pod_on_port_3306(cluster: ClusterHandle) -> None:
    answer = cluster.dns_query(cluster.srv_name, "SRV")
    records = [item for rrset in answer.answer for item in rrset]

    assert srv_targets(cluster) == {cluster.pod_fqdn(pod) for pod in cluster.pods}
    assert {(r.priority, r.weight, r.port) for r in records} == {
        (0, 100 // len(cluster.pods), 3306)
    }
    assert {rrset.ttl for rrset in answer.answer} == {TTL_SECONDS}
    assert {rrset.rdtype for rrset in answer.additional} <= {dns.rdatatype.A}


@pytest.mark.parametrize(
    "name",
    [
        "mysql-9.mysql-h.default.svc.cluster.local",
        "nope.default.svc.cluster.local",
        "mysql-h.other.svc.cluster.local",
        "_postgres._tcp.mysql-h.default.svc.cluster.local",
    ],
)
def test_dns_unknown_cluster_names_are_nxdomain(cluster: ClusterHandle, name: str) -> None:
    assert rcode(cluster, name) == dns.rcode.NXDOMAIN


def test_stopped_pod_leaves_dns_and_returns_caught_up(
    table: str, disrupted_cluster: ClusterHandle
) -> None:
    cluster, pod = disrupted_cluster, "mysql-2"
    address = cluster.address(pod)

    cluster.cluster.stop(pod)
    insert(cluster, table, 1)

    assert rcode(cluster, cluster.pod_fqdn(pod)) == dns.rcode.NXDOMAIN
    assert address not in a_records(cluster, cluster.service_fqdn)
    assert cluster.pod_fqdn(pod) not in srv_targets(cluster)

    cluster.cluster.start(pod)

    assert a_records(cluster, cluster.pod_fqdn(pod)) == {address}
    assert address in a_records(cluster, cluster.service_fqdn)
    assert cluster.pod_fqdn(pod) in srv_targets(cluster)
    cluster.wait_replicated((pod,))
    assert rows(cluster, pod, table) == [1]


@pytest.mark.parametrize("pod", ["mysql-1", "mysql-0"], ids=["replica", "primary"])
def test_moved_pod_gets_a_new_address_and_keeps_replicating(
    table: str, disrupted_cluster: ClusterHandle, pod: str
) -> None:
    cluster = disrupted_cluster
    old = cluster.address(pod)

    new = cluster.cluster.move(pod)
    insert(cluster, table, 1)

    assert new != old
    assert cluster.address(pod) == new
    assert a_records(cluster, cluster.pod_fqdn(pod)) == {new}
    assert old not in a_records(cluster, cluster.service_fqdn)
    cluster.wait_replicated(cluster.replicas)
    assert all(rows(cluster, replica, table) == [1] for replica in cluster.replicas)


def test_lagging_replica_applies_nothing_until_lag_is_off(
    table: str, disrupted_cluster: ClusterHandle
) -> None:
    cluster, lagging, healthy = disrupted_cluster, "mysql-1", "mysql-2"

    cluster.cluster.lag(lagging, on=True)
    insert(cluster, table, 1)
    cluster.wait_replicated((healthy,))

    assert rows(cluster, healthy, table) == [1]
    assert rows(cluster, lagging, table) == []
    replication = cluster.status().pod(lagging).replication
    assert replication is not None
    assert (replication.io_running, replication.sql_running) == ("Yes", "No")

    cluster.cluster.lag(lagging, on=False)

    cluster.wait_replicated((lagging,))
    assert rows(cluster, lagging, table) == [1]


def test_up_on_a_running_cluster_changes_nothing(cluster: ClusterHandle) -> None:
    store = StateStore(cluster.state_dir)
    before = store.load()

    started = cluster.cluster.up()

    assert started == ()
    assert store.load() == before  # same PIDs, addresses, ready flags and dnsmasq PID


def rwproxy(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "proxy", "cluster", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_cli_status_lists_every_pod(cluster: ClusterHandle) -> None:
    done = rwproxy("status", "--state-dir", str(cluster.state_dir))

    assert done.returncode == 0, done.stderr
    for pod, address in cluster.addresses().items():
        assert f"{address}:3306" in done.stdout
        assert pod in done.stdout


def test_cli_explains_errors_without_a_traceback(cluster: ClusterHandle) -> None:
    done = rwproxy("stop", "mysql-7", "--state-dir", str(cluster.state_dir))

    assert done.returncode == 1
    assert "unknown pod 'mysql-7'" in done.stderr
    assert "Traceback" not in done.stderr
