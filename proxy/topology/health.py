"""Health checks: log in to each pod as the monitor user and say what it is and how it is.

Theory of operation
-------------------
A check is a real MySQL login plus two queries, never a bare TCP probe: connections closed
without a handshake count toward the server's `max_connect_errors` and can get the proxy's own
address blocked. To keep checks cheap, `HealthChecker` keeps ONE monitor connection per pod and
reuses it. When the kept connection fails, the check retries once on a new one (a connection
closed by `wait_timeout` or a quick restart is not a pod failure); any other failure, or an
address change, closes it and the next check reconnects.

Per connection, `SELECT @@version` decides the flavor once. Then every check runs

* MariaDB: `SELECT @@read_only, @@server_id, @@version, @@gtid_current_pos, @@gtid_binlog_pos`
  and `SHOW SLAVE STATUS`;
* MySQL: `SELECT @@read_only, @@server_id, @@version, @@gtid_executed` (the MariaDB variables
  do not exist there) and `SHOW REPLICA STATUS` from 8.0.22 on (`Replica_*` and
  `Seconds_Behind_Source` columns), `SHOW SLAVE STATUS` before, or after error 1064.

The whole check runs under `asyncio.timeout(timeout)`, so a black-holed pod costs at most
`timeout` and never delays checks of other pods (the manager runs them concurrently).

States (`classify`): a reachable pod with no replication and read_only=0 is a primary: UP.
A replica whose IO or SQL thread is not running, or a read_only pod with no replication at all,
is REPLICATION_STOPPED. Replication running with lag above the limit, or with the lag NULL, is
LAGGING. Otherwise UP. A failed check keeps the previous state (and the last known facts, with
`reachable=False`) until `failures_before_down` consecutive failures make the pod DOWN; one
dropped packet does not empty the reader set.

TLS (`MonitorTls`, from ``backend_tls``): monitor connections use the proxy's backend context,
asked per new connection (rotation), and verify the pod's FQDN while connecting to its IP.
aiomysql passes the host it connected to as ``server_hostname``, so `connect_monitor` (the
default connect function) hands it the FQDN just for the TLS switch (`_MonitorConnection`), and
refuses a pod that offers no TLS when the mode requires it, before any credential is sent.
Without TLS to the pod nothing changes: aiomysql only switches when given a context.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiomysql
from pymysql.constants import CLIENT, CR

from proxy.topology.model import Endpoint, HealthState, PodHealth

logger = logging.getLogger(__name__)


class MonitorSettings(Protocol):
    """The fields of `proxy.config.MonitorConfig` used here."""

    @property
    def user(self) -> str: ...
    @property
    def password(self) -> str | None: ...


class HealthSettings(Protocol):
    """The fields of `proxy.config.HealthConfig` used here."""

    @property
    def timeout_seconds(self) -> float: ...
    @property
    def max_replication_lag_seconds(self) -> float: ...
    @property
    def failures_before_down(self) -> int: ...


class MonitorCursor(Protocol):
    """What we use of an aiomysql cursor."""

    @property
    def description(self) -> Sequence[Sequence[Any]] | None: ...
    async def execute(self, query: str) -> Any: ...
    async def fetchall(self) -> Sequence[Sequence[Any]]: ...
    async def close(self) -> None: ...


class MonitorConnection(Protocol):
    """What we use of an aiomysql connection."""

    def cursor(self) -> Awaitable[MonitorCursor]: ...
    def close(self) -> None: ...
    async def ensure_closed(self) -> None: ...


ConnectFn = Callable[..., Awaitable[Any]]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class MonitorTls:
    """TLS for monitor connections: the context (asked per connection), the name to verify."""

    context: Callable[[], ssl.SSLContext]
    server_name: Callable[[Endpoint], str]
    required: bool  # refuse a pod that does not offer TLS


class _MonitorConnection(aiomysql.Connection):  # type: ignore[misc]
    """aiomysql's connection, verifying ``server_hostname`` rather than the address it dialled."""

    def __init__(self, *, server_hostname: str | None, tls_required: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._server_hostname = server_hostname
        self._tls_required = tls_required

    async def _request_authentication(self) -> None:
        if self._tls_required and not self.server_capabilities & CLIENT.SSL:
            raise aiomysql.OperationalError(
                CR.CR_SSL_CONNECTION_ERROR, "TLS is required but the server does not offer it"
            )
        if self._server_hostname is None:
            await super()._request_authentication()
            return
        # aiomysql uses self._host as server_hostname when it switches to TLS, and only there
        dialled = str(getattr(self, "_host", ""))
        self._host = self._server_hostname
        try:
            await super()._request_authentication()
        finally:
            self._host = dialled


async def connect_monitor(
    *, server_hostname: str | None = None, tls_required: bool = False, **kwargs: Any
) -> Any:
    """`aiomysql.connect(**kwargs)`, with TLS checking ``server_hostname`` (see the docstring)."""
    conn = _MonitorConnection(server_hostname=server_hostname, tls_required=tls_required, **kwargs)
    await conn._connect()
    return conn


@dataclass(frozen=True, slots=True)
class Replication:
    """One row of SHOW SLAVE/REPLICA STATUS, reduced to what decides a replica's state."""

    io_running: bool
    sql_running: bool
    lag_seconds: float | None
    last_error: str | None
    io_connecting: bool = False  # the IO thread is retrying: its source is unreachable

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Replication:
        def col(slave: str, replica: str) -> Any:
            return row.get(slave, row.get(replica))

        lag = col("Seconds_Behind_Master", "Seconds_Behind_Source")
        errors = [row.get("Last_IO_Error"), row.get("Last_SQL_Error")]
        return cls(
            io_running=_text(col("Slave_IO_Running", "Replica_IO_Running")) == "Yes",
            sql_running=_text(col("Slave_SQL_Running", "Replica_SQL_Running")) == "Yes",
            lag_seconds=None if lag is None else float(lag),
            last_error="; ".join(_text(e) for e in errors if e) or None,
            io_connecting=_text(col("Slave_IO_Running", "Replica_IO_Running")) == "Connecting",
        )


@dataclass(frozen=True, slots=True)
class Probe:
    """What one successful check saw."""

    flavor: str
    version: str
    read_only: bool
    server_id: int
    gtid_current_pos: str | None
    gtid_binlog_pos: str | None
    gtid_executed: str | None
    replication: Replication | None


def classify(
    read_only: bool, replication: Replication | None, max_lag: float
) -> tuple[HealthState, str | None]:
    """The state of a reachable pod, and why it is not UP (None when it is)."""
    if replication is None:
        if read_only:
            return HealthState.REPLICATION_STOPPED, "read_only=1 but not replicating"
        return HealthState.UP, None  # a primary
    if not (replication.io_running and replication.sql_running):
        io, sql = replication.io_running, replication.sql_running
        why = f"replication stopped (io={_yes(io)}, sql={_yes(sql)})"
        return HealthState.REPLICATION_STOPPED, _join(why, replication.last_error)
    if replication.lag_seconds is None:
        return HealthState.LAGGING, "replication running but lag is NULL"
    if replication.lag_seconds > max_lag:
        return HealthState.LAGGING, f"lag {replication.lag_seconds:g}s > {max_lag:g}s"
    return HealthState.UP, None


@dataclass(slots=True)
class _Monitor:
    """The persistent monitor connection to one pod."""

    endpoint: Endpoint
    conn: MonitorConnection
    flavor: str
    status_sql: str


class HealthChecker:
    """Checks pods over one persistent monitor connection each (see the module docstring)."""

    ER_PARSE_ERROR = 1064
    SLAVE_STATUS = "SHOW SLAVE STATUS"
    REPLICA_STATUS = "SHOW REPLICA STATUS"
    MARIADB_VARIABLES = (
        "SELECT @@read_only, @@server_id, @@version, @@gtid_current_pos, @@gtid_binlog_pos"
    )
    MYSQL_VARIABLES = "SELECT @@read_only, @@server_id, @@version, @@gtid_executed"

    def __init__(
        self,
        monitor_user: str,
        monitor_password: str,
        timeout: float,
        connect: ConnectFn = connect_monitor,
        *,
        max_replication_lag_seconds: float = 10.0,
        failures_before_down: int = 2,
        clock: Clock = time.monotonic,
        tls: MonitorTls | None = None,
    ) -> None:
        self._tls = tls
        self._user = monitor_user
        self._password = monitor_password
        self._timeout = timeout
        self._connect = connect
        self._max_lag = max_replication_lag_seconds
        self._failures_before_down = failures_before_down
        self._clock = clock
        self._monitors: dict[str, _Monitor] = {}

    @classmethod
    def from_config(
        cls,
        monitor: MonitorSettings,
        health: HealthSettings,
        connect: ConnectFn = connect_monitor,
        clock: Clock = time.monotonic,
        tls: MonitorTls | None = None,
    ) -> HealthChecker:
        return cls(
            monitor.user,
            monitor.password or "",
            health.timeout_seconds,
            connect,
            max_replication_lag_seconds=health.max_replication_lag_seconds,
            failures_before_down=health.failures_before_down,
            clock=clock,
            tls=tls,
        )

    @property
    def timeout(self) -> float:
        return self._timeout

    # -- checking ------------------------------------------------------------------------------

    async def check(self, endpoint: Endpoint, previous: PodHealth | None) -> PodHealth:
        """Check one pod; never raises (except CancelledError) and takes at most `timeout`."""
        if previous is not None and previous.endpoint != endpoint:
            previous = None  # the pod moved: nothing known about the new address yet
        try:
            async with asyncio.timeout(self._timeout):
                probe = await self._probe(endpoint)
        except asyncio.CancelledError:
            self._drop(endpoint.pod)  # it may be half-way through a query
            raise
        except Exception as exc:  # any failure means "not healthy now"; keep it in the record
            self._drop(endpoint.pod)
            return self._failed(endpoint, previous, self._describe(exc))
        return self._succeeded(endpoint, probe)

    def _succeeded(self, endpoint: Endpoint, probe: Probe) -> PodHealth:
        state, problem = classify(probe.read_only, probe.replication, self._max_lag)
        repl = probe.replication
        return PodHealth(
            pod=endpoint.pod,
            endpoint=endpoint,
            state=state,
            reachable=True,
            read_only=probe.read_only,
            server_id=probe.server_id,
            replicating=repl is not None,
            io_running=None if repl is None else repl.io_running,
            sql_running=None if repl is None else repl.sql_running,
            lag_seconds=None if repl is None else repl.lag_seconds,
            source_unreachable=repl is not None and repl.io_connecting and repl.sql_running,
            gtid_current_pos=probe.gtid_current_pos,
            gtid_binlog_pos=probe.gtid_binlog_pos,
            gtid_executed=probe.gtid_executed,
            flavor=probe.flavor,
            version=probe.version,
            error=problem,
            checked_at=self._clock(),
        )

    def _failed(self, endpoint: Endpoint, previous: PodHealth | None, error: str) -> PodHealth:
        base = previous or PodHealth(pod=endpoint.pod, endpoint=endpoint)
        failures = base.consecutive_failures + 1
        down = failures >= self._failures_before_down
        return dataclasses.replace(
            base,
            state=HealthState.DOWN if down else base.state,
            reachable=False,
            error=error,
            checked_at=self._clock(),
            consecutive_failures=failures,
        )

    def _describe(self, exc: Exception) -> str:
        if isinstance(exc, TimeoutError):
            return f"check timed out after {self._timeout:g}s"
        text = f"{type(exc).__name__}: {exc}"
        cause = exc.__cause__  # aiomysql reports a failed TLS handshake as "Can't connect"
        if isinstance(cause, ssl.SSLCertVerificationError):
            text += f" (TLS: certificate verify failed: {cause.verify_message})"
        elif isinstance(cause, ssl.SSLError):
            text += f" (TLS: {cause.reason or cause})"
        return text

    # -- probing -------------------------------------------------------------------------------

    async def _probe(self, endpoint: Endpoint) -> Probe:
        """Probe over the kept connection; if that one went stale, once more over a new one."""
        monitor, fresh = await self._monitor(endpoint)
        try:
            return await self._probe_on(monitor)
        except Exception:
            if fresh:
                raise
        # e.g. wait_timeout closed it, or the server restarted between two checks
        self._drop(endpoint.pod)
        monitor, _ = await self._monitor(endpoint)
        return await self._probe_on(monitor)

    async def _probe_on(self, monitor: _Monitor) -> Probe:
        if monitor.flavor == "mysql":
            row = await _query_one(monitor.conn, self.MYSQL_VARIABLES)
            gtid_current, gtid_binlog, gtid_executed = None, None, _text(row[3])
        else:
            row = await _query_one(monitor.conn, self.MARIADB_VARIABLES)
            gtid_current, gtid_binlog, gtid_executed = _text(row[3]), _text(row[4]), None
        return Probe(
            flavor=monitor.flavor,
            version=_text(row[2]),
            read_only=bool(int(row[0])),
            server_id=int(row[1]),
            gtid_current_pos=gtid_current,
            gtid_binlog_pos=gtid_binlog,
            gtid_executed=gtid_executed,
            replication=await self._replication(monitor),
        )

    async def _replication(self, monitor: _Monitor) -> Replication | None:
        try:
            rows = await _query(monitor.conn, monitor.status_sql)
        except Exception as exc:
            if _error_code(exc) != self.ER_PARSE_ERROR or monitor.status_sql == self.SLAVE_STATUS:
                raise
            monitor.status_sql = self.SLAVE_STATUS  # an older server than its version suggested
            rows = await _query(monitor.conn, monitor.status_sql)
        return Replication.from_row(rows[0]) if rows else None

    async def _monitor(self, endpoint: Endpoint) -> tuple[_Monitor, bool]:
        """The pod's monitor connection, and whether it was opened just now."""
        monitor = self._monitors.get(endpoint.pod)
        if monitor is not None and monitor.endpoint == endpoint:
            return monitor, False
        self._drop(endpoint.pod)
        conn = await self._connect(
            host=endpoint.host,
            port=endpoint.port,
            user=self._user,
            password=self._password,
            connect_timeout=self._timeout,
            autocommit=True,
            **self._tls_arguments(endpoint),
        )
        try:
            version = _text((await _query_one(conn, "SELECT @@version"))[0])
        except BaseException:
            conn.close()
            raise
        flavor = "mariadb" if "mariadb" in version.lower() else "mysql"
        monitor = _Monitor(endpoint, conn, flavor, self._status_sql(flavor, version))
        self._monitors[endpoint.pod] = monitor
        logger.debug("monitor connection to %s (%s %s)", endpoint, flavor, version)
        return monitor, True

    def _tls_arguments(self, endpoint: Endpoint) -> dict[str, Any]:
        tls = self._tls
        if tls is None:
            return {}
        return {
            "ssl": tls.context(),
            "server_hostname": tls.server_name(endpoint),
            "tls_required": tls.required,
        }

    @classmethod
    def _status_sql(cls, flavor: str, version: str) -> str:
        """MySQL 8.0.22 renamed SHOW SLAVE STATUS; MariaDB keeps the old name (and columns)."""
        if flavor == "mysql" and _version_tuple(version) >= (8, 0, 22):
            return cls.REPLICA_STATUS
        return cls.SLAVE_STATUS

    # -- connections ---------------------------------------------------------------------------

    def _drop(self, pod: str) -> None:
        monitor = self._monitors.pop(pod, None)
        if monitor is not None:
            monitor.conn.close()

    async def retain(self, endpoints: Iterable[Endpoint]) -> None:
        """Close the monitor connections of pods not in `endpoints` (gone or moved)."""
        keep = set(endpoints)
        gone = [m for m in self._monitors.values() if m.endpoint not in keep]
        for monitor in gone:
            del self._monitors[monitor.endpoint.pod]
        await asyncio.gather(*(self._quit(m.conn) for m in gone))

    async def close(self) -> None:
        """Close every monitor connection (COM_QUIT when the server answers in time)."""
        await self.retain(())

    async def _quit(self, conn: MonitorConnection) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await conn.ensure_closed()
        except Exception:
            conn.close()


def _version_tuple(version: str) -> tuple[int, ...]:
    """`8.0.36-log` -> (8, 0, 36)."""
    numbers = version.split("-", 1)[0].split(".")
    return tuple(int(n) for n in numbers if n.isdigit())


async def _fetch(conn: MonitorConnection, sql: str) -> tuple[list[str], list[Sequence[Any]]]:
    """Column names and rows of one statement."""
    cursor = await conn.cursor()
    try:
        await cursor.execute(sql)
        rows = list(await cursor.fetchall())
        names = [str(column[0]) for column in cursor.description or ()]
    finally:
        await cursor.close()
    return names, rows


async def _query(conn: MonitorConnection, sql: str) -> list[dict[str, Any]]:
    """Rows as column-name dicts (SHOW ... STATUS)."""
    names, rows = await _fetch(conn, sql)
    return [dict(zip(names, row, strict=True)) for row in rows]


async def _query_one(conn: MonitorConnection, sql: str) -> Sequence[Any]:
    """The first row, by position (SELECT @@a, @@b)."""
    _, rows = await _fetch(conn, sql)
    if not rows:
        raise RuntimeError(f"{sql!r} returned no row")
    return rows[0]


def _error_code(exc: BaseException) -> int | None:
    """The MySQL error number of a PyMySQL/aiomysql error (args = (code, message))."""
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def _yes(flag: bool) -> str:
    return "Yes" if flag else "No"


def _join(first: str, second: str | None) -> str:
    return f"{first}: {second}" if second else first
