"""HealthChecker against fake servers: states, flavors, failures, the persistent connection."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from proxy.config import HealthConfig, MonitorConfig
from proxy.topology.health import HealthChecker, Replication, classify
from proxy.topology.model import HealthState
from tests.unit.topology.fakes import (
    FakeClock,
    FakeNetwork,
    FakeServer,
    endpoint,
    replica_status,
    slave_status,
)


def checker(network: FakeNetwork, clock: FakeClock | None = None, **kw: Any) -> HealthChecker:
    return HealthChecker(
        "monitor", "monitor-password", 0.2, network.connect, clock=clock or FakeClock(), **kw
    )


def repl(io: bool = True, sql: bool = True, lag: float | None = 0.0) -> Replication:
    return Replication(io_running=io, sql_running=sql, lag_seconds=lag, last_error=None)


@pytest.mark.parametrize(
    "read_only, replication, state",
    [
        (False, None, HealthState.UP),  # a primary
        (True, None, HealthState.REPLICATION_STOPPED),  # read_only but not replicating
        (True, repl(), HealthState.UP),
        (True, repl(lag=10.0), HealthState.UP),  # at the limit is fine
        (True, repl(lag=10.5), HealthState.LAGGING),
        (True, repl(lag=None), HealthState.LAGGING),  # running but lag unknown
        (True, repl(io=False, lag=None), HealthState.REPLICATION_STOPPED),
        (True, repl(sql=False, lag=None), HealthState.REPLICATION_STOPPED),
        (False, repl(), HealthState.UP),  # a replica someone forgot to make read_only
    ],
)
def test_classify(read_only: bool, replication: Replication | None, state: HealthState) -> None:
    assert classify(read_only, replication, 10.0)[0] is state


def test_replication_reads_both_column_spellings() -> None:
    mariadb = Replication.from_row(slave_status(io="Connecting", lag=None))
    mysql = Replication.from_row(replica_status(lag=3))
    assert (mariadb.io_running, mariadb.sql_running, mariadb.lag_seconds) == (False, True, None)
    assert (mysql.io_running, mysql.sql_running, mysql.lag_seconds) == (True, True, 3.0)
    assert mariadb.io_connecting and not mysql.io_connecting


def test_replication_keeps_the_last_error() -> None:
    row = slave_status(sql="No", Last_SQL_Error="Duplicate entry '1' for key 'PRIMARY'")
    state, why = classify(True, Replication.from_row(row), 10.0)
    assert state is HealthState.REPLICATION_STOPPED
    assert why == "replication stopped (io=Yes, sql=No): Duplicate entry '1' for key 'PRIMARY'"


async def test_mariadb_primary() -> None:
    network = FakeNetwork(mysql_0=FakeServer(server_id=1))
    health = await checker(network).check(endpoint("mysql-0"), None)
    assert health.state is HealthState.UP and health.reachable
    assert (health.read_only, health.server_id, health.replicating) == (False, 1, False)
    assert (health.gtid_current_pos, health.gtid_binlog_pos, health.gtid) == ("0-1-42",) * 3
    assert health.flavor == "mariadb" and health.gtid_executed is None
    assert health.error is None and health.consecutive_failures == 0


async def test_mariadb_replica_up_and_checked_at_from_the_clock() -> None:
    server = FakeServer(read_only=1, server_id=2, slave_status=slave_status(lag=1))
    health = await checker(FakeNetwork(mysql_1=server), FakeClock(55.0)).check(
        endpoint("mysql-1"), None
    )
    assert health.state is HealthState.UP
    assert (health.read_only, health.io_running, health.sql_running) == (True, True, True)
    assert health.lag_seconds == 1.0 and health.checked_at == 55.0
    assert "SHOW SLAVE STATUS" in server.statements


async def test_lagging_replica() -> None:
    server = FakeServer(read_only=1, slave_status=slave_status(lag=11))
    health = await checker(FakeNetwork(mysql_1=server)).check(endpoint("mysql-1"), None)
    assert health.state is HealthState.LAGGING
    assert health.error == "lag 11s > 10s"


async def test_stopped_sql_thread() -> None:
    server = FakeServer(read_only=1, slave_status=slave_status(sql="No", lag=None))
    health = await checker(FakeNetwork(mysql_1=server)).check(endpoint("mysql-1"), None)
    assert health.state is HealthState.REPLICATION_STOPPED
    assert health.sql_running is False and health.io_running is True


async def test_mysql_uses_gtid_executed_and_show_replica_status() -> None:
    server = FakeServer(version="8.0.36", read_only=1, slave_status=replica_status(lag=2))
    health = await checker(FakeNetwork(mysql_1=server)).check(endpoint("mysql-1"), None)
    assert health.flavor == "mysql" and health.state is HealthState.UP
    assert health.gtid == health.gtid_executed == server.gtid_executed
    assert health.gtid_current_pos is None and health.lag_seconds == 2.0
    assert "SHOW REPLICA STATUS" in server.statements
    assert not any("gtid_current_pos" in s for s in server.statements)


async def test_old_mysql_uses_show_slave_status() -> None:
    server = FakeServer(version="5.7.44-log", read_only=1, slave_status=slave_status())
    await checker(FakeNetwork(mysql_1=server)).check(endpoint("mysql-1"), None)
    assert "SHOW SLAVE STATUS" in server.statements
    assert "SHOW REPLICA STATUS" not in server.statements


async def test_parse_error_falls_back_to_show_slave_status_for_good() -> None:
    server = FakeServer(version="8.0.30", read_only=1, slave_status=slave_status())
    server.knows_replica_status = False
    check = checker(FakeNetwork(mysql_1=server))
    first = await check.check(endpoint("mysql-1"), None)
    await check.check(endpoint("mysql-1"), first)
    assert first.state is HealthState.UP
    assert server.statements.count("SHOW REPLICA STATUS") == 1
    assert server.statements.count("SHOW SLAVE STATUS") == 2


async def test_one_persistent_connection_per_pod() -> None:
    network = FakeNetwork(mysql_0=FakeServer())
    check = checker(network)
    health = None
    for _ in range(5):
        health = await check.check(endpoint("mysql-0"), health)
    assert len(network.connections) == 1
    assert network.servers["mysql-0"].statements.count("SELECT @@version") == 1
    kwargs = network.kwargs[0]
    assert (kwargs["user"], kwargs["password"], kwargs["autocommit"]) == (
        "monitor",
        "monitor-password",
        True,
    )


async def test_down_only_after_consecutive_failures_keeping_last_facts() -> None:
    server = FakeServer(read_only=1, slave_status=slave_status())
    network = FakeNetwork(mysql_1=server)
    check = checker(network, failures_before_down=2)
    up = await check.check(endpoint("mysql-1"), None)
    server.refuse = True  # the pod died: its connection is gone, reconnects are refused
    network.connections[0].close()
    network_blip = await check.check(endpoint("mysql-1"), up)
    gone = await check.check(endpoint("mysql-1"), network_blip)
    assert network_blip.state is HealthState.UP and not network_blip.reachable
    assert network_blip.consecutive_failures == 1
    assert "OperationalError" in (network_blip.error or "")
    assert gone.state is HealthState.DOWN and gone.consecutive_failures == 2
    assert gone.gtid_current_pos == up.gtid_current_pos  # last known, for read-your-writes


async def test_first_check_failing_is_unknown_then_down() -> None:
    server = FakeServer(refuse=True)
    check = checker(FakeNetwork(mysql_0=server), failures_before_down=2)
    first = await check.check(endpoint("mysql-0"), None)
    second = await check.check(endpoint("mysql-0"), first)
    assert first.state is HealthState.UNKNOWN and second.state is HealthState.DOWN


async def test_stale_connection_is_replaced_within_the_same_check() -> None:
    network = FakeNetwork(mysql_0=FakeServer())
    check = checker(network)
    ok = await check.check(endpoint("mysql-0"), None)
    network.connections[0].close()  # e.g. wait_timeout closed it between two checks
    again = await check.check(endpoint("mysql-0"), ok)
    assert again.reachable and again.consecutive_failures == 0
    assert len(network.connections) == 2


async def test_reconnects_after_a_failed_check() -> None:
    server = FakeServer(refuse=True)
    network = FakeNetwork(mysql_0=server)
    check = checker(network)
    failed = await check.check(endpoint("mysql-0"), None)
    server.refuse = False
    back = await check.check(endpoint("mysql-0"), failed)
    assert not failed.reachable
    assert back.state is HealthState.UP and back.consecutive_failures == 0
    assert len(network.connections) == 1


async def test_black_holed_pod_costs_at_most_the_timeout() -> None:
    network = FakeNetwork(mysql_0=FakeServer(hang=True))
    started = time.monotonic()
    health = await checker(network).check(endpoint("mysql-0"), None)
    assert time.monotonic() - started < 1.0
    assert health.error == "check timed out after 0.2s"


async def test_query_that_hangs_drops_the_connection() -> None:
    server = FakeServer()
    network = FakeNetwork(mysql_0=server)
    check = checker(network)
    ok = await check.check(endpoint("mysql-0"), None)
    server.hang = True
    failed = await check.check(endpoint("mysql-0"), ok)
    assert not failed.reachable and network.connections[0].closed


async def test_address_change_reconnects_and_forgets_old_facts() -> None:
    network = FakeNetwork(mysql_1=FakeServer(), mysql_2=FakeServer(refuse=True))
    check = checker(network)
    before = await check.check(endpoint("mysql-1"), None)
    moved = endpoint("mysql-1", host="10.0.0.12")  # now where mysql-2's server refuses
    after = await check.check(moved, before)
    assert network.connections[0].closed
    assert after.endpoint == moved and after.state is HealthState.UNKNOWN
    assert after.consecutive_failures == 1 and after.read_only is None


async def test_retain_and_close_quit_monitor_connections() -> None:
    network = FakeNetwork(mysql_0=FakeServer(), mysql_1=FakeServer())
    check = checker(network)
    await check.check(endpoint("mysql-0"), None)
    await check.check(endpoint("mysql-1"), None)
    await check.retain([endpoint("mysql-0")])
    assert [c.quit for c in network.connections] == [False, True]
    await check.close()
    assert all(c.quit for c in network.connections)


async def test_cancelled_check_drops_the_connection() -> None:
    server = FakeServer()
    network = FakeNetwork(mysql_0=server)
    check = checker(network)
    await check.check(endpoint("mysql-0"), None)
    server.hang = True
    task = asyncio.create_task(check.check(endpoint("mysql-0"), None))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert network.connections[0].closed


def test_from_config() -> None:
    health = HealthConfig(
        timeout_seconds=0.5, max_replication_lag_seconds=3, failures_before_down=4
    )
    check = HealthChecker.from_config(MonitorConfig(user="monitor", password="pw"), health)
    assert check.timeout == 0.5
