"""What the proxy says about itself: the status snapshot and the `SHOW RWPROXY` statements.

Theory of operation
-------------------
`status_snapshot(ctx)` reads, once, the current topology, the latest health check of each pod,
the pools and the session registry, and returns a frozen `ProxyStatus`. Three readers share it
so they can never disagree: `/status` (JSON), the scrape-time gauges in `metrics`, and
`SHOW RWPROXY STATUS`. Health comes from `manager.latest_health` (fresher lag than the
topology snapshot) as long as it is for the pod's current address; the role (writer, reader,
unused) comes from the topology the router uses.

Statements addressed to the proxy are answered by the proxy and never reach a pod:

* `SHOW RWPROXY STATUS`: the pods as a result set (pod, address, role, state, read_only, lag,
  pool use, error).
* `SHOW RWPROXY ROUTE <statement>`: where `<statement>` would go in this session right now,
  WITHOUT running it: the same `classify` + `route` the session uses, fed the session's own
  `view()`; the pod is the connection it holds for that route, or the one it would pick.

`answer()` runs for every COM_QUERY, so `parse()` rejects ordinary statements on their first
bytes: only a text that starts with `show` (or with blanks/comments) and has `rwproxy` in its
first few hundred bytes is parsed at all. Keywords are case-insensitive, blanks and comments
(`/* */`, `-- `, `#`) may precede and separate them, a trailing `;` is ignored. Executable
comments (`/*! ... */`) are code, not comments, so they are not skipped.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from proxy.config import Config
from proxy.protocol import packets
from proxy.protocol.constants import CharacterSet, ColumnType, ServerStatus
from proxy.protocol.framing import frame
from proxy.routing.classify import classify
from proxy.routing.router import Target, route
from proxy.topology.model import Endpoint, PodHealth, Topology

if TYPE_CHECKING:
    from proxy.pool import Pool
    from proxy.server import ProxyContext
    from proxy.session import Session

ER_PARSE_ERROR: Final = 1064


# -- the status snapshot ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolUse:
    """Backend connections to one pod, summed over its pools (one per user and flavour)."""

    idle: int = 0
    in_use: int = 0
    opening: int = 0
    max_size: int = 0
    waiting: int = 0


@dataclass(frozen=True, slots=True)
class PodStatus:
    """One pod in DNS, as the proxy sees it now."""

    pod: str
    address: str
    role: str  # writer | reader | unused
    state: str  # HealthState value: unknown, up, lagging, replication_stopped, down
    reachable: bool
    read_only: bool | None
    lag_seconds: float | None
    error: str | None
    pool: PoolUse


@dataclass(frozen=True, slots=True)
class SessionTotals:
    open: int = 0
    in_transaction: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass(frozen=True, slots=True)
class ProxyStatus:
    """Everything /status, the gauges and SHOW RWPROXY STATUS report."""

    pods: tuple[PodStatus, ...]
    writer: str | None
    writer_problem: str | None
    readers: tuple[str, ...]
    dns_ok: bool
    dns_error: str | None
    topology_version: int
    sessions: SessionTotals
    draining: bool
    config_version: str


def status_snapshot(ctx: ProxyContext) -> ProxyStatus:
    topology = ctx.topology()
    latest = ctx.manager.latest_health
    pools = pool_use(ctx.pools.pools())
    pods = tuple(
        _pod_status(endpoint, _health(endpoint, latest, topology), topology, pools)
        for _, endpoint in sorted(topology.pods.items())
    )
    return ProxyStatus(
        pods=pods,
        writer=topology.writer.pod if topology.writer is not None else None,
        writer_problem=topology.writer_problem,
        readers=tuple(reader.pod for reader in topology.readers),
        dns_ok=topology.dns_ok,
        dns_error=topology.dns_error,
        topology_version=topology.version,
        sessions=session_totals(ctx.sessions.values()),
        draining=ctx.draining,
        config_version=config_version(ctx.config),
    )


def pool_use(pools: Iterable[Pool]) -> dict[Endpoint, PoolUse]:
    use: dict[Endpoint, PoolUse] = {}
    for pool in pools:
        s = pool.stats()
        u = use.get(pool.endpoint, PoolUse())
        use[pool.endpoint] = PoolUse(
            u.idle + s.idle,
            u.in_use + s.in_use,
            u.opening + s.opening,
            u.max_size + s.max_size,
            u.waiting + s.waiting,
        )
    return use


def session_totals(sessions: Iterable[Session]) -> SessionTotals:
    count = in_transaction = bytes_in = bytes_out = 0
    for session in sessions:
        count += 1
        in_transaction += session.view().in_transaction
        bytes_in += session.client.bytes_in
        bytes_out += session.client.bytes_out
    return SessionTotals(count, in_transaction, bytes_in, bytes_out)


@functools.lru_cache(maxsize=8)
def config_version(config: Config) -> str:
    """A short hash of the redacted configuration: equal configs, equal versions."""
    text = json.dumps(config.redacted(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _health(
    endpoint: Endpoint, latest: Mapping[str, PodHealth], topology: Topology
) -> PodHealth | None:
    health = latest.get(endpoint.pod)
    if health is not None and health.endpoint == endpoint:
        return health
    return topology.health.get(endpoint.pod)


def _pod_status(
    endpoint: Endpoint,
    health: PodHealth | None,
    topology: Topology,
    pools: Mapping[Endpoint, PoolUse],
) -> PodStatus:
    if topology.is_writer(endpoint):
        role = "writer"
    else:
        role = "reader" if endpoint in topology.readers else "unused"
    return PodStatus(
        pod=endpoint.pod,
        address=endpoint.address,
        role=role,
        state=health.state.value if health is not None else "unknown",
        reachable=health is not None and health.reachable,
        read_only=health.read_only if health is not None else None,
        lag_seconds=health.lag_seconds if health is not None else None,
        error=health.error if health is not None else "not checked yet",
        pool=pools.get(endpoint, PoolUse()),
    )


def status_json(status: ProxyStatus) -> dict[str, Any]:
    """`status` as plain JSON data (the body of /status, minus process facts)."""
    return {
        "writer": status.writer,
        "writer_problem": status.writer_problem,
        "readers": list(status.readers),
        "dns": {"ok": status.dns_ok, "error": status.dns_error},
        "topology_version": status.topology_version,
        "pods": [_pod_json(pod) for pod in status.pods],
        "sessions": {
            "open": status.sessions.open,
            "in_transaction": status.sessions.in_transaction,
        },
        "draining": status.draining,
        "config_version": status.config_version,
    }


def _pod_json(pod: PodStatus) -> dict[str, Any]:
    p = pod.pool
    return {
        "pod": pod.pod,
        "address": pod.address,
        "role": pod.role,
        "state": pod.state,
        "reachable": pod.reachable,
        "read_only": pod.read_only,
        "lag_seconds": pod.lag_seconds,
        "error": pod.error,
        "pool": {
            "idle": p.idle,
            "in_use": p.in_use,
            "opening": p.opening,
            "max": p.max_size,
            "waiting": p.waiting,
        },
    }


# -- parsing SHOW RWPROXY ... ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShowStatus:
    """SHOW RWPROXY STATUS"""


@dataclass(frozen=True, slots=True)
class ShowRoute:
    """SHOW RWPROXY ROUTE <statement>"""

    statement: bytes


@dataclass(frozen=True, slots=True)
class BadAdmin:
    """SHOW RWPROXY followed by something we do not know: answered with an error."""

    message: str


AdminCommand = ShowStatus | ShowRoute | BadAdmin

_HEAD_BYTES: Final = 512  # comments before SHOW longer than this are not looked at
_BLANK_OR_COMMENT: Final = frozenset(b" \t\r\n\f\v/-#(")
# A blank or a comment; not /*! ... */, which is code.
_GAP: Final = rb"(?:\s|/\*(?!!).*?\*/|--(?:[ \t\r\n\f\v][^\n]*|$)|#[^\n]*)"
_SHOW_RWPROXY: Final = re.compile(rb"%s*show%s+rwproxy(?![\w$])" % (_GAP, _GAP), re.I | re.S)
_STATUS: Final = re.compile(rb"%s+status(?:%s|;)*" % (_GAP, _GAP), re.I | re.S)
# Only blanks end ROUTE: a comment after it belongs to the statement (it may be a hint).
_ROUTE: Final = re.compile(rb"%s+route(?![\w$])\s*" % _GAP, re.I | re.S)
_TRAILER: Final = b" \t\r\n\f\v;"
_USAGE: Final = "rwproxy: expected SHOW RWPROXY STATUS or SHOW RWPROXY ROUTE <statement>"


def maybe_admin(sql: bytes) -> bool:
    """Cheap first test on a COM_QUERY text: could it be SHOW RWPROXY at all?"""
    first = sql[:1]
    if first in (b"s", b"S"):
        return sql[1:4].lower() == b"how" and b"rwproxy" in sql[4:_HEAD_BYTES].lower()
    return bool(first) and first[0] in _BLANK_OR_COMMENT and b"rwproxy" in sql[:_HEAD_BYTES].lower()


def parse(sql: bytes) -> AdminCommand | None:
    """The proxy statement in `sql`, or None when it is an ordinary statement."""
    if not maybe_admin(sql):
        return None
    head = _SHOW_RWPROXY.match(sql)
    if head is None:
        return None
    rest = sql[head.end() :]
    if _STATUS.fullmatch(rest):
        return ShowStatus()
    route_kw = _ROUTE.match(rest)
    if route_kw is None:
        return BadAdmin(_USAGE)
    statement = rest[route_kw.end() :].rstrip(_TRAILER)
    if not statement:
        return BadAdmin("rwproxy: SHOW RWPROXY ROUTE needs a statement after ROUTE")
    return ShowRoute(statement)


# -- answering ------------------------------------------------------------------------------


def answer(ctx: ProxyContext, session: Session, sql: bytes) -> bool:
    """Answer `sql` if it is addressed to the proxy; False (and nothing sent) otherwise."""
    command = parse(sql)
    if command is None:
        return False
    if isinstance(command, ShowStatus):
        payloads = status_result_set(status_snapshot(ctx), session)
    elif isinstance(command, ShowRoute):
        payloads = route_result_set(ctx, session, command.statement)
    else:
        payloads = [
            packets.build_err(ER_PARSE_ERROR, command.message, "42000", session.capabilities)
        ]
    session.client.write(b"".join(frame(p, seq) for seq, p in enumerate(payloads, start=1)))
    return True


def _text_column(name: str) -> bytes:
    return packets.build_column_definition(name)


def _number_column(name: str, kind: ColumnType = ColumnType.MYSQL_TYPE_LONGLONG) -> bytes:
    decimals = 0 if kind is ColumnType.MYSQL_TYPE_LONGLONG else packets.NOT_FIXED_DEC
    return packets.build_column_definition(
        name, kind, character_set=CharacterSet.BINARY, column_length=21, decimals=decimals
    )


STATUS_COLUMNS: Final = (
    _text_column("pod"),
    _text_column("address"),
    _text_column("role"),
    _text_column("state"),
    _number_column("read_only"),
    _number_column("lag_seconds", ColumnType.MYSQL_TYPE_DOUBLE),
    _number_column("pool_idle"),
    _number_column("pool_in_use"),
    _number_column("pool_max"),
    _text_column("error"),
)
ROUTE_COLUMNS: Final = ("target", "pod", "kind", "rule", "pin", "hint")


def status_result_set(status: ProxyStatus, session: Session) -> list[bytes]:
    rows = [_status_row(pod) for pod in status.pods]
    return packets.build_result_set(
        STATUS_COLUMNS, rows, session.capabilities, ServerStatus(session.status)
    )


def _status_row(pod: PodStatus) -> Sequence[packets.TextValue]:
    lag = None if pod.lag_seconds is None else f"{pod.lag_seconds:g}"
    read_only = None if pod.read_only is None else int(pod.read_only)
    use = pod.pool
    row = (pod.pod, pod.address, pod.role, pod.state, read_only, lag)
    return (*row, use.idle, use.in_use, use.max_size, pod.error)


def route_result_set(ctx: ProxyContext, session: Session, statement: bytes) -> list[bytes]:
    c = classify(statement)
    decision = route(c, session.view())
    pod = preview_pod(ctx, session, decision.target)
    row = (
        decision.target.value,
        pod,
        c.kind.value,
        decision.rule,
        c.pin.value if c.pin is not None else None,
        c.hint.value if c.hint is not None else None,
    )
    return packets.build_result_set(
        ROUTE_COLUMNS, [row], session.capabilities, ServerStatus(session.status)
    )


def preview_pod(ctx: ProxyContext, session: Session, target: Target) -> str | None:
    """The pod a statement routed to `target` would run on now, without acquiring anything."""
    topology = ctx.topology()
    held = session.held_connections()
    writer = topology.writer.pod if topology.writer is not None else None
    if target is Target.TRANSACTION:
        return next((c.endpoint.pod for c in held if c.in_transaction), writer)
    if target is Target.LAST:
        last = session.last_endpoint
        return last.pod if last is not None else writer
    if target is Target.READER and topology.readers:
        kept = next((c.endpoint for c in held if c.endpoint in topology.readers), None)
        chosen = kept or ctx.pick_reader(topology.readers)
        return chosen.pod if chosen is not None else writer
    return writer
