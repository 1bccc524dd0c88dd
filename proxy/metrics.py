"""Every Prometheus metric of the proxy, declared once, with help text.

Theory of operation
-------------------
Two kinds of metric live here, and the split is the point of the module:

* **Events** (counters and histograms) are recorded by the code where they happen, through the
  small methods of `Metrics` (`error`, `pin`, `refused`, ...). Each caches
  its label children in a dict: one dict lookup and an `inc()`/`observe()` per call, never a
  `labels()` call (which takes a lock and builds a tuple). What every statement records goes
  further: the session adds to plain ints in `proxy.stats.StatementStats` (compiled with the
  data path), which `_StatementFamilies` turns into the counter and histogram families at
  scrape time (prometheus_client's own take a lock per inc: 2.5 us of every statement;
  plain ints in interpreted code took 0.6 us).
* **State** (pool sizes, pod health, open sessions) is never pushed from the hot path. A
  custom collector (`_StateCollector`) asks for one `ProxyStatus` snapshot per scrape (the same
  snapshot `/status` and `SHOW RWPROXY STATUS` show) and turns it into gauges, so a gauge can
  never drift from the truth and costs nothing between scrapes.

Client byte counters are a mix of both: bytes of live sessions come from the snapshot, bytes
of sessions that ended are added up here by `session_closed()` (the server calls it when a
session's task ends), so the sum only ever grows.

Labels come from bounded sets only: `route` (writer/reader/transaction/last), `pod` (the pods of
one StatefulSet), `command` (a fixed keyword list, else "other"), `reason`, `result`, `state`,
`kind`, `cause`: never SQL text, user names or client addresses. Each `Metrics` has its own
`CollectorRegistry`, so tests can run several proxies in one interpreter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from proxy import __version__, compiled
from proxy.protocol.constants import Command
from proxy.stats import COM_QUERY, COMMAND_KEYWORDS, STATEMENT_BUCKETS, StatementStats
from proxy.topology.discovery import Resolution
from proxy.topology.manager import PodChecker, PodSource
from proxy.topology.model import Endpoint, PodHealth

if TYPE_CHECKING:
    from proxy.admin import ProxyStatus

# The proxy's own ERR packets, by error code, as the `kind` of rwproxy_errors_total.
ERROR_KINDS: Final[dict[int, str]] = {
    1040: "pool_exhausted",  # ER_CON_COUNT_ERROR from a pool that stayed full
    1045: "auth",
    1047: "unsupported",
    1053: "shutdown",
    1094: "client",  # unknown thread id in KILL
    1105: "internal",
    1153: "protocol",
    1156: "protocol",
    1203: "user_limit",
    1235: "unsupported",
    1243: "client",  # unknown prepared statement handler
    1290: "read_only",  # the writer is read-only (demoted), or a misrouted write
    1835: "protocol",
    2002: "backend_unreachable",
    2003: "no_writer",
    2013: "backend_lost",
}

WAIT_BUCKETS: Final = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def route_label(target: object) -> str:
    """`Target.READER` -> "reader" (anything with a `value`, else its text)."""
    return str(getattr(target, "value", target))


def command_label(command: int, keyword: str) -> str:
    """The `command` label: the statement keyword for COM_QUERY, else the COM_* name."""
    if command == COM_QUERY:
        return keyword if keyword in COMMAND_KEYWORDS else "other"
    try:
        return Command(command).name.removeprefix("COM_").lower()
    except ValueError:
        return "other"


class Metrics:
    """The proxy's metrics and the small recording methods the hot path calls."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.started_at = time.time()
        self._declare_clients()
        self._declare_statements()
        self._declare_session_events()
        self._declare_topology()
        self._declare_operations()
        self._error_children: dict[int, Counter] = {}
        self._error_kind_children: dict[str, Counter] = {}
        self._pool_wait_children: dict[str, Histogram] = {}
        self.closed_bytes_in = 0
        self.closed_bytes_out = 0
        ProcessCollector(namespace="rwproxy", registry=self.registry)

    # -- declarations ----------------------------------------------------------------

    def _declare_clients(self) -> None:
        r = self.registry
        self.client_connections = Gauge(
            "rwproxy_client_connections_open", "Client connections open now", registry=r
        )
        self.client_connections_total = Counter(
            "rwproxy_client_connections_total", "Client connections accepted", registry=r
        )
        self.client_refused_total = Counter(
            "rwproxy_client_connections_refused_total",
            "Client connections refused, by reason (max_connections, max_connections_per_user, "
            "draining, auth_failed, host_blocked, handshake_timeout)",
            ["reason"],
            registry=r,
        )

    def _declare_statements(self) -> None:
        self.statements = StatementStats()
        self.registry.register(_StatementFamilies(self.statements))

    def _declare_session_events(self) -> None:
        r = self.registry
        self.errors_total = Counter(
            "rwproxy_errors_total",
            "Errors returned to clients, by kind (server: relayed from a pod; others: the "
            "proxy's own, e.g. no_writer, pool_exhausted, backend_lost, protocol)",
            ["kind"],
            registry=r,
        )
        self.transactions_total = Counter(
            "rwproxy_transactions_total",
            "Transactions that ended, by result (commit, rollback, implicit, aborted)",
            ["result"],
            registry=r,
        )
        self.pins_total = Counter(
            "rwproxy_session_pins_total",
            "Sessions pinned to the writer, by cause (temporary_table, lock_tables, ...)",
            ["cause"],
            registry=r,
        )
        self.ryw_waits_total = Counter(
            "rwproxy_read_your_writes_waits_total",
            "Replica reads that first waited for the session's last write, by result",
            ["result"],
            registry=r,
        )
        self.ryw_wait_seconds = Histogram(
            "rwproxy_read_your_writes_wait_seconds",
            "Time replica reads waited for the session's last write",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.retries_total = Counter(
            "rwproxy_retries_total",
            "Statements retried or moved after a backend failure, by reason",
            ["reason"],
            registry=r,
        )
        self.reclaims_total = Counter(
            "rwproxy_pool_reclaims_total",
            "Connections an idle session gave back because its pod's pool was exhausted",
            ["pod"],
            registry=r,
        )
        self.misroutes_total = Counter(
            "rwproxy_misrouted_statements_total",
            "Statements a pod refused as read-only (1290): stale topology or a wrong rule",
            ["pod"],
            registry=r,
        )
        self.pool_wait = Histogram(
            "rwproxy_pool_wait_seconds",
            "Time sessions waited for a backend connection from a pod's pool",
            ["pod"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )

    def _declare_topology(self) -> None:
        r = self.registry
        self.dns_resolutions_total = Counter(
            "rwproxy_dns_resolutions_total",
            "DNS resolutions of the headless Service, by result (ok, failed)",
            ["result"],
            registry=r,
        )
        self.dns_address_changes_total = Counter(
            "rwproxy_dns_address_changes_total",
            "Pods that appeared in, left, or moved within DNS, by change (added, removed, moved)",
            ["change"],
            registry=r,
        )
        self.health_checks_total = Counter(
            "rwproxy_health_checks_total",
            "Health checks of pods, by pod and result (ok, failed)",
            ["pod", "result"],
            registry=r,
        )
        self.pod_state_changes_total = Counter(
            "rwproxy_pod_state_changes_total",
            "Health state transitions, by pod and new state",
            ["pod", "state"],
            registry=r,
        )

    def _declare_operations(self) -> None:
        self.config_reloads_total = Counter(
            "rwproxy_config_reloads_total",
            "Configuration reloads, by result (applied, unchanged, rejected)",
            ["result"],
            registry=self.registry,
        )

    def bind(self, snapshot: Callable[[], ProxyStatus]) -> None:
        """Export state gauges computed from `snapshot()` at each scrape (call once)."""
        self.registry.register(_StateCollector(self, snapshot))

    # -- hot path: one dict lookup and an inc/observe each ----------------------------

    def error(self, code: int) -> None:
        """The proxy itself sent ERR `code` to a client."""
        child = self._error_children.get(code)
        if child is None:
            kind = ERROR_KINDS.get(code, "other")
            child = self._error_children[code] = self.errors_total.labels(kind)
        child.inc()

    def error_kind(self, kind: str) -> None:
        """An error of `kind` (a fixed name, e.g. "server") reached a client."""
        child = self._error_kind_children.get(kind)
        if child is None:
            child = self._error_kind_children[kind] = self.errors_total.labels(kind)
        child.inc()

    def pool_waited(self, pod: str, seconds: float) -> None:
        """A session got a connection from `pod`'s pool after `seconds`."""
        child = self._pool_wait_children.get(pod)
        if child is None:
            child = self._pool_wait_children[pod] = self.pool_wait.labels(pod)
        child.observe(seconds)

    # -- less frequent events ---------------------------------------------------------

    def refused(self, reason: str) -> None:
        self.client_refused_total.labels(reason).inc()

    def transaction_ended(self, kind: object | None = None) -> None:
        """A transaction ended with a reply: by COMMIT/ROLLBACK (`kind`), else implicitly."""
        name = getattr(kind, "value", None)
        self.transactions_total.labels(name if name in ("commit", "rollback") else "implicit").inc()

    def transaction_aborted(self) -> None:
        """A transaction ended without a reply: its backend failed, or the session ended."""
        self.transactions_total.labels("aborted").inc()

    def pin(self, cause: object) -> None:
        """A session became pinned to the writer by `cause` (a `PinCause`)."""
        self.pins_total.labels(route_label(cause)).inc()

    def ryw_wait(self, caught_up: bool, seconds: float | None = None) -> None:
        self.ryw_waits_total.labels("caught_up" if caught_up else "fell_back_to_writer").inc()
        if seconds is not None:
            self.ryw_wait_seconds.observe(seconds)

    def retry(self, reason: str) -> None:
        self.retries_total.labels(reason).inc()

    def reclaimed(self, pod: str) -> None:
        self.reclaims_total.labels(pod).inc()

    def misroute(self, pod: str) -> None:
        self.misroutes_total.labels(pod).inc()

    def session_closed(self, bytes_in: int, bytes_out: int) -> None:
        """A session ended: keep its byte counts in the totals."""
        self.closed_bytes_in += bytes_in
        self.closed_bytes_out += bytes_out

    def config_reload(self, result: str) -> None:
        self.config_reloads_total.labels(result).inc()


# -- the topology layer, observed from outside -------------------------------------------


class ObservedDiscovery:
    """A `PodSource` that counts the resolutions and pod changes of the one it wraps."""

    def __init__(self, inner: PodSource, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics
        self._pods: dict[str, Endpoint] | None = None

    async def poll(self) -> Resolution:
        resolution = await self._inner.poll()
        self._metrics.dns_resolutions_total.labels("ok" if resolution.dns_ok else "failed").inc()
        if resolution.dns_ok:
            self._count_changes(dict(resolution.pods))
        return resolution

    def _count_changes(self, pods: dict[str, Endpoint]) -> None:
        old, self._pods = self._pods, pods
        if old is None:
            return  # the first answer is where we start, not a change
        moved = sum(1 for pod in pods.keys() & old.keys() if pods[pod] != old[pod])
        changes = self._metrics.dns_address_changes_total
        changes.labels("added").inc(len(pods.keys() - old.keys()))
        changes.labels("removed").inc(len(old.keys() - pods.keys()))
        changes.labels("moved").inc(moved)


class ObservedChecker:
    """A `PodChecker` that counts checks and state changes; `inner` may be replaced live."""

    def __init__(self, inner: PodChecker, metrics: Metrics) -> None:
        self.inner = inner
        self._metrics = metrics

    async def check(self, endpoint: Endpoint, previous: PodHealth | None) -> PodHealth:
        health = await self.inner.check(endpoint, previous)
        result = "ok" if health.reachable else "failed"
        self._metrics.health_checks_total.labels(endpoint.pod, result).inc()
        if previous is None or previous.state is not health.state:
            state = health.state.value
            self._metrics.pod_state_changes_total.labels(endpoint.pod, state).inc()
        return health

    async def retain(self, endpoints: Iterable[Endpoint]) -> None:
        await self.inner.retain(endpoints)

    async def close(self) -> None:
        await self.inner.close()


# -- state, computed at scrape time -----------------------------------------------------


class _StatementFamilies(Collector):
    """`StatementStats` (proxy.stats) as Prometheus families, at scrape time: the counts
    summed into rwproxy_statements_total{route,pod} and rwproxy_commands_total{command},
    the buckets made cumulative into rwproxy_statement_duration_seconds{route}."""

    def __init__(self, stats: StatementStats) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        statements = CounterMetricFamily(
            "rwproxy_statements",
            "Statements relayed, by route (writer/reader/transaction/last) and pod",
            labels=["route", "pod"],
        )
        commands = CounterMetricFamily(
            "rwproxy_commands",
            "Statements relayed, by command (leading SQL keyword, or protocol command)",
            labels=["command"],
        )
        by_route: dict[tuple[str, str], int] = {}
        by_command: dict[str, int] = {}
        for (target, pod, command, keyword), n in list(self._stats.counts.items()):
            route = (route_label(target), pod)
            by_route[route] = by_route.get(route, 0) + n
            label = command_label(command, keyword)
            by_command[label] = by_command.get(label, 0) + n
        for labels, n in by_route.items():
            statements.add_metric(list(labels), n)
        for label, n in by_command.items():
            commands.add_metric([label], n)
        return [statements, commands, self._durations()]

    def _durations(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "rwproxy_statement_duration_seconds",
            "Time from a statement's arrival to the end of its reply, by route",
            labels=["route"],
        )
        bounds = [repr(b) for b in STATEMENT_BUCKETS] + ["+Inf"]  # as Histogram writes them
        for target, counts in list(self._stats.buckets.items()):
            cumulative, running = [], 0
            for bound, n in zip(bounds, counts, strict=True):
                running += n
                cumulative.append((bound, float(running)))
            family.add_metric([route_label(target)], cumulative, self._stats.sums[target])
        return family


class _StateCollector(Collector):
    """Gauges (and the byte counters) from one `ProxyStatus` snapshot per scrape."""

    def __init__(self, metrics: Metrics, snapshot: Callable[[], ProxyStatus]) -> None:
        self._metrics = metrics
        self._snapshot = snapshot

    def describe(self) -> Iterable[Metric]:
        return list(_families())

    def collect(self) -> Iterable[Metric]:
        status = self._snapshot()
        families = {family.name: family for family in _families()}
        _add_pods(families, status)
        _add_sessions(families, status, self._metrics)
        _add_process(families, status, self._metrics)
        return list(families.values())


_PodFamilies = dict[str, GaugeMetricFamily | CounterMetricFamily]

_GAUGES: Final[tuple[tuple[str, str, list[str]], ...]] = (
    ("rwproxy_pod_state", "Health state of each pod (1 for the current state)", ["pod", "state"]),
    ("rwproxy_pod_up", "1 if the pod's latest health check succeeded", ["pod"]),
    ("rwproxy_pod_read_only", "The pod's @@read_only at its latest check", ["pod"]),
    (
        "rwproxy_pod_replication_lag_seconds",
        "Seconds_Behind_Master of a replica at its latest check (absent when unknown)",
        ["pod"],
    ),
    ("rwproxy_pod_role", "How the proxy uses each pod (writer, reader, unused)", ["pod", "role"]),
    ("rwproxy_pool_connections", "Backend connections per pod, by state", ["pod", "state"]),
    ("rwproxy_pool_max_connections", "Pool capacity per pod (summed over users)", ["pod"]),
    ("rwproxy_pool_waiting", "Sessions waiting for a pool connection, per pod", ["pod"]),
    ("rwproxy_writer_available", "1 if a writer is known and reachable", []),
    ("rwproxy_readers_available", "Replicas usable for reads now", []),
    ("rwproxy_dns_ok", "1 if the latest DNS resolution succeeded", []),
    ("rwproxy_topology_version", "Version of the current topology snapshot", []),
    ("rwproxy_client_sessions", "Client sessions logged in or logging in", []),
    ("rwproxy_client_transactions_open", "Client sessions inside a transaction", []),
    ("rwproxy_draining", "1 while the proxy is shutting down", []),
    ("rwproxy_config_info", "The configuration in use (version: its redacted hash)", ["version"]),
    (
        "rwproxy_build_info",
        "rwproxy's version and build (compiled, partial or pure)",
        ["version", "build"],
    ),
    ("rwproxy_start_time_seconds", "When the proxy started, in seconds since the epoch", []),
)
_COUNTERS: Final = (
    ("rwproxy_client_received_bytes", "Bytes received from clients"),
    ("rwproxy_client_sent_bytes", "Bytes sent to clients"),
)


def _families() -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    for name, documentation, labels in _GAUGES:
        yield GaugeMetricFamily(name, documentation, labels=labels)
    for name, documentation in _COUNTERS:
        yield CounterMetricFamily(name, documentation, labels=[])


_STATES: Final = ("unknown", "up", "lagging", "replication_stopped", "down")
_ROLES: Final = ("writer", "reader", "unused")
_POOL_STATES: Final = ("idle", "in_use", "opening")
_BUILD: Final = compiled.build_label()  # for rwproxy_build_info


def _add_pods(f: _PodFamilies, status: ProxyStatus) -> None:
    for pod in status.pods:
        name = pod.pod
        for state in _STATES:
            f["rwproxy_pod_state"].add_metric([name, state], float(pod.state == state))
        for role in _ROLES:
            f["rwproxy_pod_role"].add_metric([name, role], float(pod.role == role))
        f["rwproxy_pod_up"].add_metric([name], float(pod.reachable))
        if pod.read_only is not None:
            f["rwproxy_pod_read_only"].add_metric([name], float(pod.read_only))
        if pod.lag_seconds is not None:
            f["rwproxy_pod_replication_lag_seconds"].add_metric([name], pod.lag_seconds)
        use = pod.pool
        for state, value in zip(_POOL_STATES, (use.idle, use.in_use, use.opening), strict=True):
            f["rwproxy_pool_connections"].add_metric([name, state], value)
        f["rwproxy_pool_max_connections"].add_metric([name], use.max_size)
        f["rwproxy_pool_waiting"].add_metric([name], use.waiting)
    f["rwproxy_writer_available"].add_metric([], float(status.writer is not None))
    f["rwproxy_readers_available"].add_metric([], len(status.readers))
    f["rwproxy_dns_ok"].add_metric([], float(status.dns_ok))
    f["rwproxy_topology_version"].add_metric([], status.topology_version)


def _add_sessions(f: _PodFamilies, status: ProxyStatus, metrics: Metrics) -> None:
    sessions = status.sessions
    f["rwproxy_client_sessions"].add_metric([], sessions.open)
    f["rwproxy_client_transactions_open"].add_metric([], sessions.in_transaction)
    received = metrics.closed_bytes_in + sessions.bytes_in
    f["rwproxy_client_received_bytes"].add_metric([], received)
    f["rwproxy_client_sent_bytes"].add_metric([], metrics.closed_bytes_out + sessions.bytes_out)


def _add_process(f: _PodFamilies, status: ProxyStatus, metrics: Metrics) -> None:
    f["rwproxy_draining"].add_metric([], float(status.draining))
    f["rwproxy_config_info"].add_metric([status.config_version], 1)
    f["rwproxy_build_info"].add_metric([__version__, _BUILD], 1)
    f["rwproxy_start_time_seconds"].add_metric([], metrics.started_at)
