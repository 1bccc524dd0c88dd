"""Metrics and logs without a cluster: declarations, hot-path recorders, scrape-time state,
the observed topology adapters, and one-line log formatting."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy import __version__, compiled
from proxy.admin import PodStatus, PoolUse, ProxyStatus, SessionTotals
from proxy.logs import JsonFormatter, SampledLog, TextFormatter, one_line, setup_logging
from proxy.metrics import Metrics, ObservedChecker, ObservedDiscovery
from proxy.protocol.constants import Command
from proxy.routing.classify import PinCause, StatementKind
from proxy.routing.router import Target
from proxy.stats import COMMAND_KEYWORDS
from proxy.topology.discovery import Resolution
from proxy.topology.model import Endpoint, HealthState, PodHealth
from tests.unit.topology.fakes import FakeClock

QUERY = int(Command.COM_QUERY)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def status(**overrides: Any) -> ProxyStatus:
    pods = (
        PodStatus("mysql-0", "10.0.0.10:3306", "writer", "up", True, False, None, None,
                  PoolUse(idle=3, in_use=2, opening=1, max_size=64, waiting=0)),
        PodStatus("mysql-1", "10.0.0.11:3306", "unused", "lagging", True, True, 42.5, "lag",
                  PoolUse()),
    )  # fmt: skip
    base: dict[str, Any] = {
        "pods": pods,
        "writer": "mysql-0",
        "writer_problem": None,
        "readers": (),
        "dns_ok": True,
        "dns_error": None,
        "topology_version": 3,
        "sessions": SessionTotals(open=5, in_transaction=2, bytes_in=100, bytes_out=1000),
        "draining": False,
        "config_version": "abc123",
    }
    return ProxyStatus(**(base | overrides))


def scrape(metrics: Metrics) -> dict[str, Any]:
    text = generate_latest(metrics.registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


# -- declarations -----------------------------------------------------------------------------


def test_every_metric_is_prefixed_and_documented() -> None:
    metrics = Metrics()
    metrics.bind(status)
    families = scrape(metrics)
    assert len(families) > 40
    for name, family in families.items():
        assert name.startswith("rwproxy_"), name
        assert family.documentation, name
        if family.type == "counter":
            assert not name.endswith("_total")  # the parser strips it; the text has it


def test_two_proxies_in_one_process_have_separate_registries() -> None:
    first, second = Metrics(), Metrics()
    first.statements.record(Target.WRITER, "mysql-0", QUERY, "select", 0.001)
    labels = {"route": "writer", "pod": "mysql-0"}
    assert sample(first, "rwproxy_statements_total", **labels) == 1
    assert sample(second, "rwproxy_statements_total", **labels) == 0


# -- hot path ---------------------------------------------------------------------------------


def test_statement_counts_route_pod_and_command() -> None:
    metrics = Metrics()
    metrics.statements.record(Target.READER, "mysql-1", QUERY, "select", 0.001)
    metrics.statements.record(Target.READER, "mysql-1", QUERY, "select", 0.001)
    metrics.statements.record(
        Target.WRITER, "mysql-0", int(Command.COM_STMT_EXECUTE), "insert", 0.001
    )
    assert sample(metrics, "rwproxy_statements_total", route="reader", pod="mysql-1") == 2
    assert sample(metrics, "rwproxy_commands_total", command="select") == 2
    assert sample(metrics, "rwproxy_commands_total", command="stmt_execute") == 1


def test_command_label_is_bounded() -> None:
    metrics = Metrics()
    for i in range(100):
        metrics.statements.record(Target.WRITER, "mysql-0", QUERY, f"garbage{i}", 0.001)
    metrics.statements.record(Target.WRITER, "mysql-0", 0x99, "", 0.001)
    assert sample(metrics, "rwproxy_commands_total", command="other") == 101
    assert len(metrics.statements.counts) == 2  # the counts do not grow either
    assert "select" in COMMAND_KEYWORDS


def test_statement_durations() -> None:
    metrics = Metrics()
    metrics.statements.record(Target.WRITER, "mysql-0", QUERY, "select", 0.003)
    metrics.statements.record(Target.WRITER, "mysql-0", QUERY, "update", 0.2)
    name = "rwproxy_statement_duration_seconds"
    assert sample(metrics, f"{name}_count", route="writer") == 2
    assert sample(metrics, f"{name}_bucket", route="writer", le="0.005") == 1
    assert sample(metrics, f"{name}_bucket", route="writer", le="0.0025") == 0
    assert sample(metrics, f"{name}_bucket", route="writer", le="0.25") == 2
    assert sample(metrics, f"{name}_bucket", route="writer", le="+Inf") == 2
    assert sample(metrics, f"{name}_sum", route="writer") == pytest.approx(0.203)


@pytest.mark.parametrize(
    "code, kind",
    [(1040, "pool_exhausted"), (2003, "no_writer"), (2013, "backend_lost"), (9, "other")],
)
def test_proxy_errors_by_kind(code: int, kind: str) -> None:
    metrics = Metrics()
    metrics.error(code)
    metrics.error(code)
    assert sample(metrics, "rwproxy_errors_total", kind=kind) == 2


def test_less_frequent_events() -> None:
    metrics = Metrics()
    metrics.transaction_ended(StatementKind.COMMIT)
    metrics.transaction_ended(StatementKind.ROLLBACK)
    metrics.transaction_ended(StatementKind.WRITE)
    metrics.transaction_aborted()
    metrics.pin(PinCause.TEMPORARY_TABLE)
    metrics.ryw_wait(True, 0.01)
    metrics.ryw_wait(False)
    metrics.retry("reader_failed")
    metrics.misroute("mysql-1")
    metrics.refused("auth_failed")
    metrics.pool_waited("mysql-0", 0.002)
    metrics.config_reload("applied")
    for result in ("commit", "rollback", "implicit", "aborted"):
        assert sample(metrics, "rwproxy_transactions_total", result=result) == 1
    assert sample(metrics, "rwproxy_session_pins_total", cause="temporary_table") == 1
    assert sample(metrics, "rwproxy_read_your_writes_waits_total", result="caught_up") == 1
    assert sample(metrics, "rwproxy_read_your_writes_wait_seconds_count") == 1
    assert sample(metrics, "rwproxy_retries_total", reason="reader_failed") == 1
    assert sample(metrics, "rwproxy_misrouted_statements_total", pod="mysql-1") == 1
    assert sample(metrics, "rwproxy_client_connections_refused_total", reason="auth_failed") == 1
    assert sample(metrics, "rwproxy_pool_wait_seconds_count", pod="mysql-0") == 1
    assert sample(metrics, "rwproxy_config_reloads_total", result="applied") == 1


# -- state at scrape time ---------------------------------------------------------------------


def test_state_gauges_come_from_the_snapshot() -> None:
    metrics = Metrics()
    snapshots = [status()]
    metrics.bind(lambda: snapshots[-1])
    assert sample(metrics, "rwproxy_pod_state", pod="mysql-1", state="lagging") == 1
    assert sample(metrics, "rwproxy_pod_state", pod="mysql-1", state="up") == 0
    assert sample(metrics, "rwproxy_pod_role", pod="mysql-0", role="writer") == 1
    assert sample(metrics, "rwproxy_pod_read_only", pod="mysql-0") == 0
    assert sample(metrics, "rwproxy_pod_replication_lag_seconds", pod="mysql-1") == 42.5
    assert (
        metrics.registry.get_sample_value("rwproxy_pod_replication_lag_seconds", {"pod": "mysql-0"})
        is None
    )  # unknown is absent, not 0
    assert sample(metrics, "rwproxy_pool_connections", pod="mysql-0", state="opening") == 1
    assert sample(metrics, "rwproxy_pool_max_connections", pod="mysql-0") == 64
    assert sample(metrics, "rwproxy_writer_available") == 1
    assert sample(metrics, "rwproxy_client_transactions_open") == 2
    assert sample(metrics, "rwproxy_config_info", version="abc123") == 1
    build = compiled.build_label()
    assert sample(metrics, "rwproxy_build_info", version=__version__, build=build) == 1
    snapshots.append(status(writer=None, draining=True))
    assert sample(metrics, "rwproxy_writer_available") == 0
    assert sample(metrics, "rwproxy_draining") == 1


def test_client_bytes_never_go_down_when_a_session_ends() -> None:
    metrics = Metrics()
    snapshots = [status()]
    metrics.bind(lambda: snapshots[-1])
    assert sample(metrics, "rwproxy_client_sent_bytes_total") == 1000
    metrics.session_closed(bytes_in=100, bytes_out=1000)
    snapshots.append(status(sessions=SessionTotals()))
    assert sample(metrics, "rwproxy_client_sent_bytes_total") == 1000
    assert sample(metrics, "rwproxy_client_received_bytes_total") == 100


# -- observed topology ------------------------------------------------------------------------


class ScriptedDns:
    def __init__(self, *answers: Resolution) -> None:
        self.answers = list(answers)

    async def poll(self) -> Resolution:
        return self.answers.pop(0)


def resolution(pods: Mapping[str, str] | None = None, *, ok: bool = True) -> Resolution:
    endpoints = {pod: Endpoint(pod, host, 3306) for pod, host in (pods or {}).items()}
    return Resolution(endpoints, ok, None if ok else "timeout", 5.0)


async def test_observed_discovery_counts_resolutions_and_changes() -> None:
    metrics = Metrics()
    dns = ObservedDiscovery(
        ScriptedDns(
            resolution({"mysql-0": "10.0.0.10", "mysql-1": "10.0.0.11"}),
            resolution(ok=False),
            resolution({"mysql-0": "10.0.0.10", "mysql-1": "10.0.0.99", "mysql-2": "10.0.0.12"}),
            resolution({"mysql-0": "10.0.0.10"}),
        ),
        metrics,
    )
    for _ in range(4):
        await dns.poll()
    assert sample(metrics, "rwproxy_dns_resolutions_total", result="ok") == 3
    assert sample(metrics, "rwproxy_dns_resolutions_total", result="failed") == 1
    changes = {
        change: sample(metrics, "rwproxy_dns_address_changes_total", change=change)
        for change in ("added", "removed", "moved")
    }
    assert changes == {"added": 1, "removed": 2, "moved": 1}


class ScriptedChecker:
    def __init__(self, *states: HealthState) -> None:
        self.states = list(states)
        self.closed = False

    async def check(self, endpoint: Endpoint, previous: PodHealth | None) -> PodHealth:
        state = self.states.pop(0)
        return PodHealth(endpoint.pod, endpoint, state, reachable=state is not HealthState.DOWN)

    async def retain(self, endpoints: Any) -> None:
        pass

    async def close(self) -> None:
        self.closed = True


async def test_observed_checker_counts_checks_and_transitions() -> None:
    metrics = Metrics()
    checker = ObservedChecker(ScriptedChecker(HealthState.UP, HealthState.UP), metrics)
    ep = Endpoint("mysql-1", "10.0.0.11", 3306)
    first = await checker.check(ep, None)
    second = await checker.check(ep, first)
    checker.inner = ScriptedChecker(HealthState.DOWN)  # a reload swaps the checker
    await checker.check(ep, second)
    assert sample(metrics, "rwproxy_health_checks_total", pod="mysql-1", result="ok") == 2
    assert sample(metrics, "rwproxy_health_checks_total", pod="mysql-1", result="failed") == 1
    assert sample(metrics, "rwproxy_pod_state_changes_total", pod="mysql-1", state="up") == 1
    assert sample(metrics, "rwproxy_pod_state_changes_total", pod="mysql-1", state="down") == 1


# -- logs -------------------------------------------------------------------------------------


def record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    rec = logging.LogRecord("proxy.test", logging.WARNING, __file__, 1, msg, args, exc_info)
    rec.__dict__.update(extra)
    return rec


def test_text_lines_are_single_lines() -> None:
    line = TextFormatter().format(record("refused login from %s", "evil\nINFO forged", exc=True))
    assert "\n" not in line
    assert "evil\\nINFO forged" in line
    assert "ValueError: boom\\nsecond line" in line


def test_json_lines_carry_extras() -> None:
    line = JsonFormatter().format(record("pod %s down", "mysql-1", exc=True, pod="mysql-1"))
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["message"] == "pod mysql-1 down"
    assert entry["level"] == "warning" and entry["pod"] == "mysql-1"
    assert "ValueError" in entry["exception"]


def test_setup_logging_replaces_its_own_handler() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("info", "text")
        setup_logging("debug", "json")
        ours = [h for h in root.handlers if type(h).__name__ == "_ProxyHandler"]
        assert len(ours) == 1 and isinstance(ours[0].formatter, JsonFormatter)
        assert root.level == logging.DEBUG
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def test_sampled_log_is_rate_limited_and_counts_drops() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("proxy.test.sampled")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    clock = FakeClock()
    log = SampledLog(logger, per_second=2, clock=clock)
    try:
        for i in range(10):
            log.debug("statement %d", i)
        clock.advance(1.0)
        log.debug("statement %d", 10)
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines == ["statement 0", "statement 1", "statement 10 (8 similar lines dropped)"]


def test_sampled_log_costs_nothing_when_debug_is_off() -> None:
    logger = logging.getLogger("proxy.test.quiet")
    logger.setLevel(logging.INFO)
    clock = FakeClock()
    log = SampledLog(logger, clock=clock)
    log.debug("x")
    assert log._dropped == 0


def test_one_line_escapes_controls() -> None:
    assert one_line("a\r\nb\tc\x00") == "a\\r\\nb\\tc\\x00"
