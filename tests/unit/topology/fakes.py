"""Fakes for the topology tests: a CoreDNS-like resolver, a scripted checker, a clock, a server.

Each fake is passed into a constructor (STYLE section 3); none patches a module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import dns.resolver
import pymysql

from proxy.config import DiscoveryConfig
from proxy.topology.discovery import Discovery
from proxy.topology.model import Endpoint, HealthState, PodHealth

SERVICE = "mysql-h.default.svc.cluster.local"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeAnswer:
    records: list[Any]
    ttl: int

    @property
    def rrset(self) -> SimpleNamespace:
        return SimpleNamespace(ttl=self.ttl)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.records)


@dataclass
class FakeDns:
    """Answers like CoreDNS for a headless Service: per-pod A, service A, SRV (named port)."""

    pods: dict[str, str] = field(default_factory=dict)  # pod -> IP (ready pods)
    ttl: int = 5
    named_port: bool = True
    error: Exception | None = None
    extra_service_ips: list[str] = field(default_factory=list)  # pods without a hostname
    queries: list[tuple[str, str]] = field(default_factory=list)

    async def resolve(self, qname: str, rdtype: str, *, lifetime: float | None = None) -> Any:
        self.queries.append((qname, rdtype))
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        records = self._records(qname.rstrip("."), rdtype)
        if records is None:
            raise dns.resolver.NXDOMAIN()  # type: ignore[no-untyped-call]
        if not records:
            raise dns.resolver.NoAnswer()  # type: ignore[no-untyped-call]
        return FakeAnswer(records, self.ttl)

    def _records(self, name: str, rdtype: str) -> list[Any] | None:
        if name == f"_mysql._tcp.{SERVICE}":
            return self._srv(rdtype) if self.named_port else None
        if name == SERVICE:
            ips = [*self.pods.values(), *self.extra_service_ips]
            return [SimpleNamespace(address=ip) for ip in ips] if rdtype == "A" else []
        pod = name.removesuffix(f".{SERVICE}")
        if pod not in self.pods:
            return None
        return [SimpleNamespace(address=self.pods[pod])] if rdtype == "A" else []

    def _srv(self, rdtype: str) -> list[Any]:
        if rdtype != "SRV":
            return []
        return [SimpleNamespace(target=f"{pod}.{SERVICE}.", port=3306) for pod in self.pods]


def cluster_dns(**pods: str) -> FakeDns:
    """`cluster_dns()` is mysql-0..2 on 10.0.0.10..12; keyword arguments replace that set."""
    if not pods:
        pods = {"mysql-0": "10.0.0.10", "mysql-1": "10.0.0.11", "mysql-2": "10.0.0.12"}
    return FakeDns(pods={name.replace("_", "-"): ip for name, ip in pods.items()})


def discovery(fake: FakeDns, writer: str = "mysql-0", **settings: Any) -> Discovery:
    return Discovery(DiscoveryConfig(writer=writer, **settings), resolver=fake)


def endpoint(pod: str, host: str | None = None) -> Endpoint:
    ordinal = pod.rsplit("-", 1)[-1]
    return Endpoint(pod, host or f"10.0.0.{10 + int(ordinal)}", 3306)


# -- health --------------------------------------------------------------------------------------


def primary(**facts: Any) -> dict[str, Any]:
    return {"state": HealthState.UP, "reachable": True, "read_only": False, **facts}


def replica(state: HealthState = HealthState.UP, **facts: Any) -> dict[str, Any]:
    return {"state": state, "reachable": True, "read_only": True, "replicating": True, **facts}


def down() -> dict[str, Any]:
    return {"state": HealthState.DOWN, "reachable": False, "error": "connection refused"}


class FakeChecker:
    """Returns the configured facts per pod; can hold checks at a gate or delay one pod."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.facts: dict[str, dict[str, Any]] = {}
        self.calls: list[Endpoint] = []
        self.delays: dict[str, float] = {}
        self.gate: asyncio.Event | None = None
        self.retained: list[set[Endpoint]] = []
        self.closed = False
        self.clock = clock or FakeClock()

    def healthy_cluster(self, pods: Iterable[str] = ("mysql-0", "mysql-1", "mysql-2")) -> None:
        for pod in pods:
            self.facts[pod] = primary() if pod == "mysql-0" else replica()

    async def check(self, endpoint: Endpoint, previous: PodHealth | None) -> PodHealth:
        self.calls.append(endpoint)
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.delays.get(endpoint.pod, 0))
        facts = self.facts.get(endpoint.pod, down())
        return PodHealth(pod=endpoint.pod, endpoint=endpoint, checked_at=self.clock(), **facts)

    async def retain(self, endpoints: Iterable[Endpoint]) -> None:
        self.retained.append(set(endpoints))

    async def close(self) -> None:
        self.closed = True

    def checked_pods(self) -> list[str]:
        return sorted(e.pod for e in self.calls)


# -- a fake MariaDB/MySQL server for HealthChecker -------------------------------------------------


@dataclass
class FakeServer:
    """What the monitor user sees on one pod."""

    version: str = "10.11.6-MariaDB-0+deb12u1-log"
    read_only: int = 0
    server_id: int = 1
    gtid_current_pos: str = "0-1-42"
    gtid_binlog_pos: str = "0-1-42"
    gtid_executed: str = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42"
    slave_status: dict[str, Any] | None = None
    knows_replica_status: bool = True
    refuse: bool = False
    hang: bool = False
    statements: list[str] = field(default_factory=list)
    connects: int = 0

    @property
    def is_mysql(self) -> bool:
        return "mariadb" not in self.version.lower()

    def answer(self, sql: str) -> tuple[list[str], list[Sequence[Any]]]:
        self.statements.append(sql)
        if sql == "SELECT @@version":
            return ["@@version"], [(self.version,)]
        if "@@gtid_current_pos" in sql:
            if self.is_mysql:
                raise pymysql.err.OperationalError(1193, "Unknown system variable")
            common = (self.read_only, self.server_id, self.version)
            gtids = (self.gtid_current_pos, self.gtid_binlog_pos)
            return ["a", "b", "c", "d", "e"], [(*common, *gtids)]
        if "@@gtid_executed" in sql:
            common = (self.read_only, self.server_id, self.version)
            return ["a", "b", "c", "d"], [(*common, self.gtid_executed)]
        if sql == "SHOW REPLICA STATUS" and not self.knows_replica_status:
            raise pymysql.err.ProgrammingError(1064, "You have an error in your SQL syntax")
        if sql in ("SHOW SLAVE STATUS", "SHOW REPLICA STATUS"):
            status = self.slave_status
            return (list(status), [tuple(status.values())]) if status else ([], [])
        raise AssertionError(f"unexpected statement {sql!r}")


def slave_status(
    io: str = "Yes", sql: str = "Yes", lag: int | None = 0, **extra: Any
) -> dict[str, Any]:
    return {
        "Slave_IO_Running": io,
        "Slave_SQL_Running": sql,
        "Seconds_Behind_Master": lag,
        "Last_IO_Error": "",
        "Last_SQL_Error": "",
        **extra,
    }


def replica_status(io: str = "Yes", sql: str = "Yes", lag: int | None = 0) -> dict[str, Any]:
    """MySQL 8.0.22+ column names."""
    return {
        "Replica_IO_Running": io,
        "Replica_SQL_Running": sql,
        "Seconds_Behind_Source": lag,
        "Last_IO_Error": "",
        "Last_SQL_Error": "",
    }


class FakeCursor:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.description: list[tuple[str]] | None = None
        self._rows: list[Sequence[Any]] = []

    async def execute(self, sql: str) -> int:
        await asyncio.sleep(0)
        if self.server.hang:
            await asyncio.Event().wait()
        names, self._rows = self.server.answer(sql)
        self.description = [(name,) for name in names]
        return len(self._rows)

    async def fetchall(self) -> list[Sequence[Any]]:
        return self._rows

    async def close(self) -> None:
        pass


class FakeConnection:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.closed = False
        self.quit = False

    async def cursor(self) -> FakeCursor:
        if self.closed:
            raise pymysql.err.InterfaceError(0, "Not connected")
        return FakeCursor(self.server)

    def close(self) -> None:
        self.closed = True

    async def ensure_closed(self) -> None:
        self.quit = True
        self.closed = True


class FakeNetwork:
    """`connect=` for HealthChecker: routes host:port to a FakeServer."""

    def __init__(self, **servers: FakeServer) -> None:
        self.servers = {name.replace("_", "-"): s for name, s in servers.items()}
        self.connections: list[FakeConnection] = []
        self.kwargs: list[dict[str, Any]] = []

    def server_at(self, host: str) -> FakeServer:
        for pod, server in self.servers.items():
            if endpoint(pod).host == host:
                return server
        raise OSError(f"no route to {host}")

    async def connect(self, **kwargs: Any) -> FakeConnection:
        self.kwargs.append(kwargs)
        server = self.server_at(kwargs["host"])
        await asyncio.sleep(0)
        if server.hang:
            await asyncio.Event().wait()
        if server.refuse:
            raise pymysql.err.OperationalError(2003, "Can't connect to MySQL server")
        server.connects += 1
        connection = FakeConnection(server)
        self.connections.append(connection)
        return connection
