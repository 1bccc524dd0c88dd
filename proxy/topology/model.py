"""Shared value types of the topology layer: who the pods are, how they are, who writes.

Theory of operation
-------------------
Three producers feed one immutable snapshot:

* `discovery.Discovery` turns the headless Service's DNS into `Endpoint`s, keyed by pod name
  (`mysql-0`). An `Endpoint` is the pod *at an address*: when a pod is rescheduled its name stays
  and its address changes, so the old and the new `Endpoint` compare unequal and pools keyed by
  `Endpoint` are retired and rebuilt by diffing (PgCat's `AddrSet`).
* `health.HealthChecker` logs in to each pod as the monitor user and produces a `PodHealth`.
* `manager.TopologyManager` combines both into a `Topology`, picks the writer and the readers,
  and publishes a new `Topology` (with a higher `version`) whenever its *shape* changes (pods,
  addresses, writer, readers, DNS status, a pod's state or read_only flag).

Everything here is frozen. A `Topology` is safe to keep and read from any coroutine; the router
reads `current` once per statement and never sees a half-built state. Values in `health` are
those of the snapshot's build; the manager exposes the very latest per-check values (lag, GTID
positions) separately so that a moving GTID does not churn snapshots.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One pod at one address. `pod` is the StatefulSet pod name (or `ip:port` if unnamed)."""

    pod: str
    host: str
    port: int

    @property
    def address(self) -> str:
        """`host:port`, with brackets around IPv6 hosts."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.pod}@{self.address}"


class HealthState(enum.Enum):
    """What the last checks say about a pod, from the router's point of view."""

    UNKNOWN = "unknown"  # never checked successfully, and not yet failed often enough for DOWN
    UP = "up"  # reachable; a replica that is replicating within the lag limit
    LAGGING = "lagging"  # replicating but too far behind (or lag unknown)
    REPLICATION_STOPPED = "replication_stopped"  # read_only, but an IO/SQL thread is not running
    DOWN = "down"  # unreachable for `failures_before_down` consecutive checks


@dataclass(frozen=True, slots=True)
class PodHealth:
    """The result of the latest check of one pod.

    On a failed check the facts of the last successful one (read_only, GTIDs, ...) are carried
    forward with `reachable=False`, so "last known" values stay available while a pod is down.
    """

    pod: str
    endpoint: Endpoint
    state: HealthState = HealthState.UNKNOWN
    reachable: bool = False
    read_only: bool | None = None
    server_id: int | None = None
    replicating: bool | None = None  # SHOW SLAVE/REPLICA STATUS returned a row
    io_running: bool | None = None
    sql_running: bool | None = None
    lag_seconds: float | None = None
    # The SQL thread runs but the IO thread keeps reconnecting: the replica cannot
    # reach its primary. Used for reads only while the proxy cannot reach it either.
    source_unreachable: bool = False
    gtid_current_pos: str | None = None  # MariaDB
    gtid_binlog_pos: str | None = None  # MariaDB
    gtid_executed: str | None = None  # MySQL
    flavor: str | None = None  # "mariadb" | "mysql"
    version: str | None = None
    error: str | None = None  # why the pod is not UP (or why the last check failed)
    checked_at: float = 0.0  # monotonic clock
    consecutive_failures: int = 0

    @property
    def gtid(self) -> str | None:
        """The GTID position this server has applied (MariaDB current pos, MySQL executed set)."""
        return self.gtid_executed if self.flavor == "mysql" else self.gtid_current_pos

    def summary(self) -> tuple[Endpoint, HealthState, bool | None]:
        """The part of the health that, when it changes, changes the topology's shape."""
        return (self.endpoint, self.state, self.read_only)


@dataclass(frozen=True, slots=True)
class Topology:
    """An immutable snapshot: the pods DNS knows, their health, the writer and the readers.

    Routing contract: writes go to `writer`; when it is None, `writer_problem` says why and the
    proxy waits for one (`TopologyManager.wait_for_writer`). Reads go to `usable_readers()`; when
    that is empty (every replica lagging, stopped or down) the router sends reads to the writer.
    The primary is never banned or filtered for lag.
    """

    pods: Mapping[str, Endpoint] = field(default_factory=dict)
    health: Mapping[str, PodHealth] = field(default_factory=dict)
    writer: Endpoint | None = None
    writer_problem: str | None = "topology not resolved yet"
    readers: tuple[Endpoint, ...] = ()
    dns_ok: bool = False
    dns_error: str | None = "not resolved yet"
    version: int = 0
    built_at: float = 0.0

    def __post_init__(self) -> None:
        # Read-only views: a snapshot handed to many coroutines must not be mutable by one.
        object.__setattr__(self, "pods", MappingProxyType(dict(self.pods)))
        object.__setattr__(self, "health", MappingProxyType(dict(self.health)))

    def usable_readers(self) -> tuple[Endpoint, ...]:
        """Replicas usable for reads right now; empty means "read from the writer"."""
        return self.readers

    def is_writer(self, endpoint: Endpoint) -> bool:
        """True if `endpoint` (pod *and* address) is the current writer."""
        return self.writer is not None and endpoint == self.writer

    @property
    def gtid_positions(self) -> dict[str, str]:
        """Pod name -> last known applied GTID position, for pods whose position is known."""
        return {pod: h.gtid for pod, h in self.health.items() if h.gtid is not None}

    def shape(self) -> tuple[object, ...]:
        """What subscribers care about; two snapshots with equal shapes route identically."""
        states = tuple(sorted((pod, h.summary()) for pod, h in self.health.items()))
        pods = tuple(sorted(self.pods.items()))
        return (pods, states, self.writer, self.writer_problem, self.readers, self.dns_ok)

    def describe(self) -> str:
        """One log line: writer, readers, DNS status."""
        writer = str(self.writer) if self.writer else f"none ({self.writer_problem})"
        readers = ", ".join(str(r) for r in self.readers) or "none (reads go to the writer)"
        dns = "ok" if self.dns_ok else f"FAILING ({self.dns_error})"
        return f"topology v{self.version}: writer {writer}; readers {readers}; dns {dns}"
