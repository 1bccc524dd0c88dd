"""TopologyManager with a fake DNS, a fake checker and a fake clock."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import dns.exception
import pytest

from proxy.config import Config, DiscoveryConfig, HealthConfig, MonitorConfig, UserConfig
from proxy.topology.discovery import Resolution
from proxy.topology.health import HealthChecker
from proxy.topology.manager import (
    ManagerConfig,
    TopologyManager,
    build_topology,
    select_readers,
    select_writer,
)
from proxy.topology.model import Endpoint, HealthState, PodHealth, Topology
from tests.unit.topology.fakes import (
    FakeChecker,
    FakeClock,
    FakeDns,
    FakeNetwork,
    FakeServer,
    cluster_dns,
    discovery,
    down,
    endpoint,
    primary,
    replica,
    slave_status,
)

PODS = {p: endpoint(p) for p in ("mysql-0", "mysql-1", "mysql-2")}


def health_of(pod: str, state: HealthState = HealthState.UP, **facts: Any) -> PodHealth:
    facts.setdefault("read_only", pod != "mysql-0")
    return PodHealth(pod, PODS[pod], state, reachable=True, **facts)


def cluster_health(**changes: PodHealth) -> dict[str, PodHealth]:
    healthy = {pod: health_of(pod) for pod in PODS}
    return {**healthy, **{pod.replace("_", "-"): h for pod, h in changes.items()}}


# -- writer and readers, pure ---------------------------------------------------------------------


def test_fixed_writer_is_the_named_pod() -> None:
    assert select_writer("mysql-0", PODS, cluster_health()) == (PODS["mysql-0"], None)


@pytest.mark.parametrize(
    "pods, health, problem",
    [
        ({"mysql-1": PODS["mysql-1"]}, cluster_health(), "mysql-0 not in DNS"),
        (PODS, cluster_health(mysql_0=health_of("mysql-0", read_only=True)),
         "mysql-0 reports read_only=1 (demoted?)"),
        (PODS, cluster_health(mysql_0=health_of("mysql-0", HealthState.DOWN)), "mysql-0 is down"),
        (PODS, cluster_health(mysql_0=health_of("mysql-0", HealthState.UNKNOWN, read_only=None)),
         "mysql-0 not reachable yet"),
        (PODS, {}, "mysql-0 not reachable yet"),
    ],
)  # fmt: skip
def test_fixed_writer_problems(
    pods: dict[str, Endpoint], health: dict[str, PodHealth], problem: str
) -> None:
    assert select_writer("mysql-0", pods, health) == (None, problem)


def test_auto_writer_is_the_one_read_write_pod() -> None:
    health = cluster_health(
        mysql_0=health_of("mysql-0", read_only=True), mysql_2=health_of("mysql-2", read_only=False)
    )
    assert select_writer("auto", PODS, health) == (PODS["mysql-2"], None)


def test_auto_writer_split_brain_names_the_pods() -> None:
    health = cluster_health(mysql_1=health_of("mysql-1", read_only=False))
    writer, problem = select_writer("auto", PODS, health)
    assert writer is None
    assert problem == "split brain: mysql-0, mysql-1 all report read_only=0"


def test_auto_writer_ignores_down_pods_and_may_find_none() -> None:
    health = cluster_health(mysql_0=health_of("mysql-0", HealthState.DOWN))
    assert select_writer("auto", PODS, health) == (None, "no reachable pod reports read_only=0")


@pytest.mark.parametrize(
    "state", [HealthState.LAGGING, HealthState.REPLICATION_STOPPED, HealthState.DOWN,
              HealthState.UNKNOWN],
)  # fmt: skip
def test_readers_are_the_up_replicas(state: HealthState) -> None:
    health = cluster_health(mysql_1=health_of("mysql-1", state))
    assert select_readers("mysql-0", PODS, health) == (PODS["mysql-2"],)
    assert select_readers("auto", PODS, health) == (PODS["mysql-2"],)


def test_readers_exclude_the_writer_and_pods_not_in_dns() -> None:
    health = cluster_health()
    assert select_readers("mysql-0", PODS, health) == (PODS["mysql-1"], PODS["mysql-2"])
    pods = {"mysql-0": PODS["mysql-0"], "mysql-2": PODS["mysql-2"]}
    assert select_readers("mysql-0", pods, health) == (PODS["mysql-2"],)


def test_no_usable_replica_means_no_readers_but_the_writer_stays() -> None:
    health = cluster_health(
        mysql_1=health_of("mysql-1", HealthState.LAGGING),
        mysql_2=health_of("mysql-2", HealthState.DOWN),
    )
    topology = build_topology("mysql-0", Resolution(PODS, True, None, 5), health, 1, 0.0)
    assert topology.writer == PODS["mysql-0"]
    assert topology.usable_readers() == ()


STRANDED = HealthState.REPLICATION_STOPPED


def test_replicas_cut_off_from_a_dead_primary_keep_serving_reads() -> None:
    health = cluster_health(
        mysql_0=PodHealth("mysql-0", PODS["mysql-0"], HealthState.DOWN, reachable=False),
        mysql_1=health_of("mysql-1", STRANDED, source_unreachable=True),
        mysql_2=health_of("mysql-2", STRANDED, source_unreachable=False),  # SQL thread stopped
    )
    topology = build_topology("mysql-0", Resolution(PODS, True, None, 5), health, 1, 0.0)
    assert topology.writer is None
    assert topology.usable_readers() == (PODS["mysql-1"],)


def test_stranded_replicas_are_not_used_while_the_writer_is_up() -> None:
    health = cluster_health(mysql_1=health_of("mysql-1", STRANDED, source_unreachable=True))
    topology = build_topology("mysql-0", Resolution(PODS, True, None, 5), health, 1, 0.0)
    assert topology.writer == PODS["mysql-0"]
    assert topology.usable_readers() == (PODS["mysql-2"],)


def test_health_of_an_old_address_is_ignored() -> None:
    moved = dict(PODS, **{"mysql-1": endpoint("mysql-1", host="10.0.0.21")})
    topology = build_topology("mysql-0", Resolution(moved, True, None, 5), cluster_health(), 1, 0)
    assert "mysql-1" not in topology.health
    assert topology.readers == (PODS["mysql-2"],)


# -- the manager ----------------------------------------------------------------------------------


class Harness:
    """A manager over a fake cluster of mysql-0 (primary) and two replicas."""

    def __init__(self, writer: str = "mysql-0", **config: float) -> None:
        self.dns: FakeDns = cluster_dns()
        self.clock = FakeClock()
        self.checker = FakeChecker(self.clock)
        self.checker.healthy_cluster()
        self.events: list[tuple[Topology, Topology]] = []
        settings = {"health_interval_seconds": 0.01, "min_refresh_gap_seconds": 0.0, **config}
        self.manager = TopologyManager(
            discovery(self.dns, writer=writer, resolve_interval_seconds=0.5),
            self.checker,
            ManagerConfig(writer=writer, **settings),
            clock=self.clock,
        )
        self.manager.subscribe(lambda old, new: self.events.append((old, new)))


async def eventually(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait, bounded, until `predicate()` holds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_first_refresh_publishes_writer_and_readers() -> None:
    h = Harness()
    topology = await h.manager.refresh_now()
    assert topology is h.manager.current
    assert topology.writer == PODS["mysql-0"] and topology.writer_problem is None
    assert topology.readers == (PODS["mysql-1"], PODS["mysql-2"])
    assert topology.dns_ok and topology.version == 1 and topology.built_at == h.clock.now
    assert [(old.version, new.version) for old, new in h.events] == [(0, 1)]


async def test_unchanged_refresh_keeps_the_snapshot_and_notifies_nobody() -> None:
    h = Harness()
    first = await h.manager.refresh_now()
    h.checker.facts["mysql-1"] = replica(lag_seconds=3.0, gtid_current_pos="0-1-99")
    second = await h.manager.refresh_now()
    assert second is first and len(h.events) == 1
    assert h.manager.gtid_positions()["mysql-1"] == "0-1-99"  # live value, no new snapshot
    assert h.manager.latest_health["mysql-1"].lag_seconds == 3.0


async def test_demoted_writer_has_no_writer_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness()
    await h.manager.refresh_now()
    h.checker.facts["mysql-0"] = primary(read_only=True)
    with caplog.at_level(logging.INFO, logger="proxy.topology.manager"):
        demoted = await h.manager.refresh_now()
        await h.manager.refresh_now()
        await h.manager.refresh_now()
    assert demoted.writer is None
    assert demoted.writer_problem == "mysql-0 reports read_only=1 (demoted?)"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["no writer: mysql-0 reports read_only=1 (demoted?)"]


async def test_auto_writer_split_brain() -> None:
    h = Harness(writer="auto")
    h.checker.facts["mysql-2"] = primary()
    topology = await h.manager.refresh_now()
    assert topology.writer is None
    assert topology.writer_problem == "split brain: mysql-0, mysql-2 all report read_only=0"
    assert topology.readers == (PODS["mysql-1"],)


async def test_auto_writer_follows_a_failover() -> None:
    h = Harness(writer="auto")
    await h.manager.refresh_now()
    h.checker.facts["mysql-0"] = down()
    h.checker.facts["mysql-1"] = primary()
    topology = await h.manager.refresh_now()
    assert topology.writer == PODS["mysql-1"] and topology.readers == (PODS["mysql-2"],)


@pytest.mark.parametrize(
    "state", [HealthState.LAGGING, HealthState.REPLICATION_STOPPED, HealthState.DOWN]
)
async def test_unhealthy_replica_leaves_the_readers(state: HealthState) -> None:
    h = Harness()
    await h.manager.refresh_now()
    h.checker.facts["mysql-1"] = replica(state)
    topology = await h.manager.refresh_now()
    assert topology.readers == (PODS["mysql-2"],) and topology.version == 2
    h.checker.facts["mysql-1"] = replica()
    assert (await h.manager.refresh_now()).readers == (PODS["mysql-1"], PODS["mysql-2"])


async def test_health_transitions_are_logged_one_line_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness()
    await h.manager.refresh_now()
    with caplog.at_level(logging.INFO, logger="proxy.topology.manager"):
        h.checker.facts["mysql-1"] = replica(HealthState.LAGGING, error="lag 30s > 10s")
        await h.manager.refresh_now()
    lines = [r.getMessage() for r in caplog.records]
    assert "pod mysql-1@10.0.0.11:3306: UP -> LAGGING: lag 30s > 10s" in lines
    assert any(line.startswith("topology v2: writer mysql-0@") for line in lines)
    assert len(lines) == 2


async def test_dns_failure_keeps_the_last_topology() -> None:
    h = Harness()
    before = await h.manager.refresh_now()
    h.dns.error = dns.exception.Timeout()  # type: ignore[no-untyped-call]
    during = await h.manager.refresh_now()
    assert not during.dns_ok and "timed out" in (during.dns_error or "")
    assert during.pods == before.pods
    assert (during.writer, during.readers) == (before.writer, before.readers)
    h.dns.error = None
    after = await h.manager.refresh_now()
    assert after.dns_ok and after.dns_error is None
    assert [new.dns_ok for _, new in h.events] == [True, False, True]


async def test_pod_gone_from_dns_is_removed() -> None:
    h = Harness()
    await h.manager.refresh_now()
    del h.dns.pods["mysql-2"]
    topology = await h.manager.refresh_now()
    assert sorted(topology.pods) == ["mysql-0", "mysql-1"]
    assert "mysql-2" not in topology.health and "mysql-2" not in h.manager.latest_health
    assert topology.readers == (PODS["mysql-1"],)
    assert h.checker.retained[-1] == {PODS["mysql-0"], PODS["mysql-1"]}
    old, new = h.events[-1]
    assert "mysql-2" in old.pods and "mysql-2" not in new.pods


async def test_address_change_notifies_with_old_and_new_endpoint() -> None:
    h = Harness()
    await h.manager.refresh_now()
    h.dns.pods["mysql-1"] = "10.0.0.21"
    topology = await h.manager.refresh_now()
    moved = endpoint("mysql-1", host="10.0.0.21")
    assert topology.pods["mysql-1"] == moved and moved in topology.readers
    assert topology.health["mysql-1"].endpoint == moved
    assert moved in h.checker.calls  # checked at the new address before publishing
    old, new = h.events[-1]
    assert old.pods["mysql-1"] == PODS["mysql-1"] and new.pods["mysql-1"] == moved


async def test_writer_moving_keeps_a_writer_throughout() -> None:
    h = Harness()
    await h.manager.refresh_now()
    h.dns.pods["mysql-0"] = "10.0.0.20"
    await h.manager.refresh_now()
    assert [new.writer for _, new in h.events][-1] == endpoint("mysql-0", host="10.0.0.20")
    assert all(new.writer is not None for _, new in h.events)


async def test_refresh_now_coalesces_concurrent_callers() -> None:
    h = Harness()
    await h.manager.refresh_now()
    h.checker.calls.clear()
    h.dns.queries.clear()
    h.checker.gate = asyncio.Event()
    first_wave = [asyncio.create_task(h.manager.refresh_now()) for _ in range(5)]
    await eventually(lambda: len(h.checker.calls) == 3)  # one refresh is running, held
    second_wave = [asyncio.create_task(h.manager.refresh_now()) for _ in range(5)]
    await asyncio.sleep(0.01)
    h.checker.gate.set()
    results = await asyncio.gather(*first_wave, *second_wave)
    # The first wave shared one refresh; the second, arriving mid-refresh, shared one more.
    assert h.checker.checked_pods() == ["mysql-0", "mysql-0", "mysql-1", "mysql-1", "mysql-2",
                                        "mysql-2"]  # fmt: skip
    assert sum(1 for q in h.dns.queries if q[1] == "SRV") == 2
    assert all(r is results[0] for r in results)


async def test_report_failure_triggers_a_refresh() -> None:
    h = Harness()
    await h.manager.refresh_now()
    h.checker.facts["mysql-1"] = down()
    h.manager.report_failure(PODS["mysql-1"])
    h.manager.report_failure(PODS["mysql-1"])  # coalesced with the first
    await eventually(lambda: h.manager.current.readers == (PODS["mysql-2"],))
    assert h.checker.checked_pods().count("mysql-1") == 2


async def test_report_failure_is_rate_limited() -> None:
    h = Harness(min_refresh_gap_seconds=0.2)
    await h.manager.refresh_now()
    calls = len(h.checker.calls)
    started = time.monotonic()
    h.manager.report_failure(PODS["mysql-1"])
    await asyncio.sleep(0.05)
    assert len(h.checker.calls) == calls  # too soon after the last refresh: delayed
    await eventually(lambda: len(h.checker.calls) > calls)
    assert time.monotonic() - started >= 0.15


async def test_wait_for_writer_returns_at_once_when_there_is_one() -> None:
    h = Harness()
    await h.manager.refresh_now()
    assert await h.manager.wait_for_writer(0.01) == PODS["mysql-0"]


async def test_wait_for_writer_returns_when_the_writer_appears() -> None:
    h = Harness()
    del h.dns.pods["mysql-0"]
    await h.manager.refresh_now()
    waiter = asyncio.create_task(h.manager.wait_for_writer(5.0))
    await asyncio.sleep(0.02)
    assert not waiter.done()
    h.dns.pods["mysql-0"] = "10.0.0.10"
    await h.manager.refresh_now()
    async with asyncio.timeout(1):
        assert await waiter == PODS["mysql-0"]


async def test_wait_for_writer_times_out() -> None:
    h = Harness()
    h.checker.facts["mysql-0"] = primary(read_only=True)
    started = time.monotonic()
    assert await h.manager.wait_for_writer(0.1) is None
    assert 0.09 <= time.monotonic() - started < 1.0
    assert h.manager.current.writer_problem == "mysql-0 reports read_only=1 (demoted?)"


async def test_wait_for_writer_is_served_by_the_running_loops() -> None:
    h = Harness()
    h.checker.facts["mysql-0"] = down()
    runner = asyncio.create_task(h.manager.run())
    try:
        waiter = asyncio.create_task(h.manager.wait_for_writer(5.0))
        await asyncio.sleep(0.05)
        h.checker.facts["mysql-0"] = primary()  # the health loop notices by itself
        async with asyncio.timeout(2):
            assert await waiter == PODS["mysql-0"]
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    assert h.checker.closed


async def test_run_loops_follow_dns_and_health() -> None:
    h = Harness()
    runner = asyncio.create_task(h.manager.run())
    try:
        await eventually(lambda: len(h.manager.current.readers) == 2)
        h.checker.facts["mysql-2"] = replica(HealthState.REPLICATION_STOPPED)
        await eventually(lambda: h.manager.current.readers == (PODS["mysql-1"],))
        del h.dns.pods["mysql-1"]  # TTL 5 s, resolve interval 0.5 s: the DNS loop's pace
        await eventually(lambda: "mysql-1" not in h.manager.current.pods)
        assert h.manager.current.readers == ()
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner


async def test_black_holed_pod_does_not_delay_the_others() -> None:
    network = FakeNetwork(
        mysql_0=FakeServer(),
        mysql_1=FakeServer(read_only=1, slave_status=slave_status()),
        mysql_2=FakeServer(hang=True),
    )
    checker = HealthChecker("monitor", "pw", 0.3, network.connect, failures_before_down=1)
    manager = TopologyManager(discovery(cluster_dns()), checker, ManagerConfig(), clock=FakeClock())
    started = time.monotonic()
    topology = await manager.refresh_now()
    assert time.monotonic() - started < 0.9  # one timeout, not one per pod in turn
    assert topology.writer == PODS["mysql-0"] and topology.readers == (PODS["mysql-1"],)
    assert topology.health["mysql-2"].state is HealthState.DOWN
    await manager.close()


async def test_failing_subscriber_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness()

    def broken(old: Topology, new: Topology) -> None:
        raise RuntimeError("boom")

    seen: list[int] = []
    h.manager.subscribe(broken)
    unsubscribe = h.manager.subscribe(lambda old, new: seen.append(new.version))
    await h.manager.refresh_now()
    unsubscribe()
    h.checker.facts["mysql-2"] = down()
    await h.manager.refresh_now()
    assert seen == [1] and len(h.events) == 2
    assert any("subscriber" in r.getMessage() for r in caplog.records)


async def test_config_from_the_whole_proxy_config() -> None:
    config = Config(
        users=(UserConfig(name="app", password="app-password"),),
        monitor=MonitorConfig(user="monitor", password="monitor-password"),
        discovery=DiscoveryConfig(writer="auto"),
        health=HealthConfig(interval_seconds=2.5),
    )
    assert ManagerConfig.from_config(config) == ManagerConfig(
        writer="auto", health_interval_seconds=2.5
    )
    checker = FakeChecker()
    checker.healthy_cluster()
    manager = TopologyManager(discovery(cluster_dns(), writer="auto"), checker, config)
    assert (await manager.refresh_now()).writer == PODS["mysql-0"]
