"""Topology against the real dev cluster: dnsmasq as CoreDNS, mariadbd pods on loopback.

Discovery, health checks and the manager run unmodified (real resolver, aiomysql, clock). Pod
faults go through the `disrupted_cluster` fixture, whose finalizer restores a healthy cluster;
its blocking calls run in a thread so the manager's loops keep running meanwhile. Every wait is
a deadline loop on an observable condition.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiomysql
import pytest

from proxy.config import DiscoveryConfig, HostPort
from proxy.topology.discovery import Discovery
from proxy.topology.health import HealthChecker
from proxy.topology.manager import ManagerConfig, TopologyManager
from proxy.topology.model import Endpoint, HealthState, Topology
from tests.integration.cluster_fixture import ClusterHandle

pytestmark = pytest.mark.integration

# DNS TTL is 5 s and the manager re-resolves at most that late; pods take ~1 s to stop/start.
CHANGE_DEADLINE_SECONDS = 20.0


def discovery_config(cluster: ClusterHandle, **overrides: Any) -> DiscoveryConfig:
    host, port = cluster.dns_server
    return DiscoveryConfig(nameservers=(HostPort(host, port),), **overrides)


def health_checker(cluster: ClusterHandle, connect: Any = aiomysql.connect) -> HealthChecker:
    monitor = cluster.monitor
    return HealthChecker(monitor.user, monitor.password, 2.0, connect)


def expected_endpoints(cluster: ClusterHandle) -> dict[str, Endpoint]:
    return {
        pod: Endpoint(pod, address, cluster.port) for pod, address in cluster.addresses().items()
    }


@asynccontextmanager
async def running_manager(
    cluster: ClusterHandle, events: list[tuple[Topology, Topology]] | None = None
) -> AsyncIterator[TopologyManager]:
    """A manager with `run()` going, checking every 0.2 s, started from a healthy cluster."""
    manager = TopologyManager(
        Discovery(discovery_config(cluster)),
        health_checker(cluster),
        ManagerConfig(writer=cluster.primary, health_interval_seconds=0.2),
    )
    if events is not None:
        manager.subscribe(lambda old, new: events.append((old, new)))
    runner = asyncio.create_task(manager.run())
    try:
        await eventually(lambda: len(manager.current.readers) == len(cluster.replicas), manager)
        yield manager
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner


async def eventually(
    predicate: Callable[[], bool],
    manager: TopologyManager | None = None,
    timeout: float = CHANGE_DEADLINE_SECONDS,
) -> None:
    """Wait until `predicate()` holds; fail after `timeout` seconds, saying what was seen."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        seen = "" if manager is None else f": {manager.current.describe()}, {_states(manager)}"
        raise AssertionError(f"condition not met within {timeout:g} s{seen}") from None


def _states(manager: TopologyManager) -> str:
    return ", ".join(f"{p} {h.state.name} ({h.error})" for p, h in manager.latest_health.items())


def reader_pods(manager: TopologyManager) -> list[str]:
    return [e.pod for e in manager.current.readers]


# -- discovery ------------------------------------------------------------------------------------


async def test_resolve_finds_every_pod_at_its_address(cluster: ClusterHandle) -> None:
    pods = await Discovery(discovery_config(cluster)).resolve()
    assert pods == expected_endpoints(cluster)
    assert sorted(pods) == ["mysql-0", "mysql-1", "mysql-2"]


async def test_resolve_without_srv_walks_the_pod_names(cluster: ClusterHandle) -> None:
    # An unnamed Service port publishes no SRV records: the `<statefulset>-N` walk finds the pods.
    config = discovery_config(cluster, port_name="no-such-port")
    assert await Discovery(config).resolve() == expected_endpoints(cluster)


async def test_poll_reports_the_ttl(cluster: ClusterHandle) -> None:
    resolution = await Discovery(discovery_config(cluster)).poll()
    assert resolution.dns_ok and 0.5 <= resolution.refresh_in <= 5.0


async def test_unreachable_dns_server_is_not_pod_loss(cluster: ClusterHandle) -> None:
    host, _ = cluster.dns_server
    config = DiscoveryConfig(nameservers=(HostPort(host, 5399),), dns_timeout_seconds=0.3)
    resolution = await Discovery(config).poll()
    assert not resolution.dns_ok and "timed out" in (resolution.dns_error or "")


# -- health ---------------------------------------------------------------------------------------


async def test_health_of_each_pod(cluster: ClusterHandle) -> None:
    await asyncio.to_thread(cluster.wait_replicated)
    ((primary_pos,),) = await asyncio.to_thread(
        cluster.query, cluster.primary, "SELECT @@gtid_binlog_pos"
    )
    checker = health_checker(cluster)
    try:
        endpoints = expected_endpoints(cluster)
        primary = await checker.check(endpoints[cluster.primary], None)
        replicas = [await checker.check(endpoints[pod], None) for pod in cluster.replicas]
    finally:
        await checker.close()
    assert (primary.state, primary.read_only, primary.replicating) == (HealthState.UP, False, False)
    assert primary.flavor == "mariadb" and "MariaDB" in (primary.version or "")
    assert primary.gtid_binlog_pos == primary_pos
    for replica in replicas:
        assert replica.state is HealthState.UP, replica.error
        assert (replica.read_only, replica.io_running, replica.sql_running) == (True, True, True)
        assert replica.lag_seconds == 0.0
        assert replica.gtid_current_pos == primary_pos
    assert len({h.server_id for h in [primary, *replicas]}) == 3


async def test_checks_reuse_one_monitor_connection_per_pod(cluster: ClusterHandle) -> None:
    connects: list[str] = []

    def counting_connect(**kwargs: Any) -> Any:
        connects.append(kwargs["host"])
        return aiomysql.connect(**kwargs)

    checker = health_checker(cluster, counting_connect)
    try:
        endpoint = expected_endpoints(cluster)[cluster.primary]
        health = None
        for _ in range(5):
            health = await checker.check(endpoint, health)
    finally:
        await checker.close()
    assert health is not None and health.state is HealthState.UP
    assert connects == [endpoint.host]


# -- the manager against pod faults ---------------------------------------------------------------


async def test_manager_sees_the_healthy_cluster(cluster: ClusterHandle) -> None:
    async with running_manager(cluster) as manager:
        topology = manager.current
        endpoints = expected_endpoints(cluster)
        assert topology.writer == endpoints[cluster.primary] and topology.dns_ok
        assert topology.readers == tuple(endpoints[pod] for pod in cluster.replicas)
        assert set(manager.gtid_positions()) == set(cluster.pods)


async def test_stopped_sql_thread_takes_the_replica_out_of_readers(
    disrupted_cluster: ClusterHandle,
) -> None:
    cluster, lagging = disrupted_cluster, "mysql-1"
    table = cluster.unique_name("topology")
    async with running_manager(cluster) as manager:
        await asyncio.to_thread(cluster.cluster.lag, lagging, on=True)
        await asyncio.to_thread(cluster.query, cluster.primary, f"CREATE TABLE {table} (id INT)")
        await eventually(lambda: lagging not in reader_pods(manager), manager)
        health = manager.latest_health[lagging]
        assert health.state is HealthState.REPLICATION_STOPPED
        assert (health.io_running, health.sql_running) == (True, False)
        assert manager.current.writer is not None  # the primary is never affected

        await asyncio.to_thread(cluster.cluster.lag, lagging, on=False)
        await eventually(lambda: lagging in reader_pods(manager), manager)
        assert manager.latest_health[lagging].state is HealthState.UP
    await asyncio.to_thread(cluster.query, cluster.primary, f"DROP TABLE {table}")


async def test_stopped_pod_leaves_dns_and_readers(disrupted_cluster: ClusterHandle) -> None:
    cluster, stopped = disrupted_cluster, "mysql-2"
    async with running_manager(cluster) as manager:
        await asyncio.to_thread(cluster.cluster.stop, stopped)
        await eventually(lambda: stopped not in manager.current.pods, manager)
        assert stopped not in reader_pods(manager) and stopped not in manager.current.health
        assert manager.current.dns_ok and manager.current.writer is not None

        await asyncio.to_thread(cluster.cluster.start, stopped)
        await eventually(lambda: stopped in reader_pods(manager), manager)
        assert manager.current.pods[stopped] == expected_endpoints(cluster)[stopped]


async def test_moved_pod_gets_a_new_endpoint_and_subscribers_hear_of_it(
    disrupted_cluster: ClusterHandle,
) -> None:
    cluster, moving = disrupted_cluster, "mysql-1"
    events: list[tuple[Topology, Topology]] = []
    async with running_manager(cluster, events) as manager:
        old_address = cluster.address(moving)
        new_address = await asyncio.to_thread(cluster.cluster.move, moving)
        assert new_address != old_address
        moved = Endpoint(moving, new_address, cluster.port)
        await eventually(lambda: moved in manager.current.readers, manager)
        assert manager.latest_health[moving].endpoint == moved
    # Subscribers heard of the new address (directly, or after the pod left DNS for a moment).
    arrivals = [old.pods.get(moving) for old, new in events if new.pods.get(moving) == moved]
    assert arrivals and arrivals[0] in (None, Endpoint(moving, old_address, cluster.port))


async def test_moved_writer_keeps_being_the_writer(disrupted_cluster: ClusterHandle) -> None:
    cluster = disrupted_cluster
    async with running_manager(cluster) as manager:
        new_address = await asyncio.to_thread(cluster.cluster.move, cluster.primary)
        moved = Endpoint(cluster.primary, new_address, cluster.port)
        async with asyncio.timeout(CHANGE_DEADLINE_SECONDS):
            while manager.current.writer != moved:
                assert await manager.wait_for_writer(CHANGE_DEADLINE_SECONDS) is not None
                await asyncio.sleep(0.05)
        await eventually(lambda: len(manager.current.readers) == len(cluster.replicas), manager)
