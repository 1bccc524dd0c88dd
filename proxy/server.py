"""The listener, the registry of sessions, and what sessions share (`ProxyContext`).

Theory of operation
-------------------
`ProxyServer` accepts TCP connections, gives each a proxy connection id (what the
client sees as `CONNECTION_ID()` in the handshake and what `KILL` names) and a
`Session` task, and keeps a registry of them (on Python 3.11 `Server.wait_closed()`
does not wait for connections, so draining needs its own list). Connections over
`max_connections` get ERR 1040 before the handshake.

`ProxyContext` is the one object sessions reach the rest of the proxy through:
configuration, pools, the current topology, credentials learned at login (to log in
to the pods as the same user), metrics, and the proxy's own statements. Sessions do
not import the topology manager or the server: tests can build a context by hand.

TLS: `TlsContexts` holds the two `ReloadingContext`s (toward applications when
``tls`` has a certificate, toward the pods unless ``backend_tls.mode`` is disabled).
Each new connection asks for ``current()``, so rotated certificate files are used from
the next connection on; open connections keep theirs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from proxy.auth_guard import LoginGuard
from proxy.backend import (
    BASE_CAPABILITIES,
    BackendConnection,
    BackendError,
    BackendTls,
    PoolKey,
    open_backend,
    tls_server_name,
)
from proxy.client import ClientConnection
from proxy.config import Config
from proxy.metrics import Metrics
from proxy.pool import Pool, PoolLimits, PoolSet
from proxy.protocol import packets
from proxy.protocol.auth import BackendCredential, StoredCredential
from proxy.protocol.constants import Capability, ErrorCode
from proxy.protocol.errors import MySQLError
from proxy.protocol.framing import frame
from proxy.protocol.handshake import ClientHandshake, ServerHandshake
from proxy.routing.classify import Classification
from proxy.ryw import ReadYourWrites
from proxy.session import Session
from proxy.tls import (
    ReloadingContext,
    may_use_tls,
    needs_tls,
    reloading_backend_context,
    reloading_client_context,
)
from proxy.topology.manager import TopologyManager
from proxy.topology.model import Endpoint, HealthState, Topology
from proxy.workers import SOLE_WORKER, WorkerSlot

logger = logging.getLogger(__name__)

DOWN = HealthState.DOWN

DEFAULT_SERVER_VERSION = "5.5.5-10.11.0-MariaDB-rwproxy"


def greeting_version(version: str) -> str:
    """`@@version` as the server would put it in its handshake."""
    if "mariadb" in version.lower() and not version.startswith("5.5.5-"):
        return "5.5.5-" + version
    return version


@dataclass(frozen=True, slots=True)
class TlsContexts:
    """The TLS contexts of both legs; None where that leg does not use TLS."""

    client: ReloadingContext | None = None
    backend: ReloadingContext | None = None

    @classmethod
    def from_config(cls, config: Config) -> TlsContexts:
        """Read the files now (`ConfigError` if they do not load: start-up fails)."""
        return cls(
            client=reloading_client_context(config.tls),
            # backend_tls has no interval of its own: the same as for the proxy's certificate
            backend=reloading_backend_context(
                config.backend_tls, interval=config.tls.reload_interval_seconds
            ),
        )


class ProxyContext:
    """Everything a session needs from the rest of the proxy; see the module docstring."""

    def __init__(
        self,
        config: Config,
        topology: TopologyManager,
        credentials: Callable[[str], StoredCredential | None],
        metrics: Metrics | None = None,
        tls: TlsContexts | None = None,
    ) -> None:
        self.config = config
        self.tls = tls if tls is not None else TlsContexts.from_config(config)
        self.manager = topology
        # The manager's latest snapshot, kept here by `_topology_changed`: sessions read it
        # for every statement, and an attribute costs less than a call into the manager.
        self.current_topology = topology.current
        self.metrics = metrics or Metrics()
        self.draining = False
        self.sessions: dict[int, Session] = {}
        self.user_sessions: dict[str, int] = {}
        self._user_limits = {u.name: u.max_connections for u in config.users}
        self.login_guard = login_guard(config)
        self._stored_credentials = credentials
        self._backend_credentials: dict[str, BackendCredential] = {}
        self._round_robin = itertools.count()
        self._greeting_version = ""
        pool = config.pool
        self.pools = PoolSet(
            self._open_backend,
            PoolLimits(
                max_size=pool.max_size,
                min_idle=pool.min_idle,
                connect_timeout=pool.connect_timeout_seconds,
                pool_timeout=pool.pool_timeout_seconds,
                idle_timeout=pool.idle_timeout_seconds,
                max_lifetime=pool.max_lifetime_seconds,
            ),
            on_exhausted=self.reclaim_idle,
        )
        routing = config.routing
        self.ryw = ReadYourWrites(
            routing.read_your_writes_timeout_seconds, pool.connect_timeout_seconds
        )
        topology.subscribe(self._topology_changed)

    # -- topology ---------------------------------------------------------------------

    def topology(self) -> Topology:
        return self.current_topology

    async def wait_for_writer(self, within: float | None = None) -> Endpoint:
        """The writer, waiting up to `within` seconds (default: `writer_wait_timeout`)."""
        timeout = self.config.routing.writer_wait_timeout_seconds
        endpoint = await self.manager.wait_for_writer(timeout if within is None else within)
        if endpoint is None:
            problem = self._writer_problem()
            writer = self.config.discovery.writer
            raise MySQLError(
                ErrorCode.ER_OPTION_PREVENTS_STATEMENT
                if "read_only" in problem
                else ErrorCode.CR_CONN_HOST_ERROR,
                f"rwproxy: no writer available after {timeout:g} s (writer: {writer}; {problem})",
            )
        return endpoint

    def _writer_problem(self) -> str:
        """Why there is no writer, with the last check's error when it says more (a TLS
        certificate that does not verify, an access denied)."""
        topology = self.topology()
        problem = topology.writer_problem or "unknown"
        pod = self.config.discovery.writer
        health = topology.health.get(pod)
        if health is not None and health.error and not health.reachable:
            problem += f": {health.error}"
        return problem

    def pick_reader(self, readers: tuple[Endpoint, ...]) -> Endpoint | None:
        """Least outstanding connections first, round-robin among equals."""
        if not readers:
            return None
        load = {ep: 0 for ep in readers}
        for pool in self.pools.pools():
            if pool.endpoint in load:
                load[pool.endpoint] += pool.stats().in_use
        start = next(self._round_robin) % len(readers)
        ordered = readers[start:] + readers[:start]
        return min(ordered, key=load.__getitem__)

    async def maintain_pools(self, interval: float = 5.0) -> None:
        """Forever: close idle connections past their time, keep `min_idle` open."""
        while True:
            await asyncio.sleep(interval)
            self.pools.maintain()

    def reclaim_idle(self, pool: Pool) -> None:
        """Every connection of `pool` is taken: the session idle the longest that holds one
        between statements (no transaction, nothing pinned) gives it back, the way
        ProxySQL multiplexes. It takes one again, and replays its state, at its next
        statement; so a pool of N serves many more than N mostly idle clients."""
        candidates = [s for s in self.sessions.values() if s.can_give_back(pool)]
        if candidates:
            oldest = min(candidates, key=lambda s: s.client.last_activity)
            oldest.give_back(pool)
            self.metrics.reclaimed(pool.endpoint.pod)

    def report_failure(self, endpoint: Endpoint) -> None:
        self.manager.report_failure(endpoint)

    def _topology_changed(self, old: Topology, new: Topology) -> None:
        """Retire pools of pods that moved or left, and of a writer that is no longer
        the writer (demoted, read_only=1): its pooled connections must not serve writes."""
        self.current_topology = new
        for pod, endpoint in old.pods.items():
            if new.pods.get(pod) != endpoint:
                logger.info("pod %s left %s: retiring its pools", pod, endpoint.address)
                self.pools.retire_endpoint(endpoint)
        if old.writer is not None and old.writer != new.writer:
            logger.warning("%s is no longer the writer: closing its pooled connections", old.writer)
            self.pools.retire_endpoint(old.writer)
        for pod, health in new.health.items():
            was = old.health.get(pod)
            if health.state is DOWN and (was is None or was.state is not DOWN):
                self._abandon(health.endpoint)

    def _abandon(self, endpoint: Endpoint) -> None:
        """Health checks find `endpoint` unreachable. A statement in flight on it may wait
        for ever (a black-holed peer sends neither data nor RST), so every connection to it
        is aborted now: a replica read with nothing sent to its client yet is retried
        elsewhere, anything else gets one error (a transaction or pinned state there is
        lost, and the client is told so)."""
        logger.warning("%s is down: aborting its connections", endpoint)
        self.pools.retire_endpoint(endpoint)
        for session in list(self.sessions.values()):
            for conn in session.held_connections():
                if conn.endpoint == endpoint:
                    conn.abort(f"{endpoint.pod} is down (health checks)")

    # -- logins -----------------------------------------------------------------------

    def new_server_handshake(self, connection_id: int, peer: str) -> ServerHandshake:
        return ServerHandshake(
            server_version=self.server_version(),
            connection_id=connection_id,
            credentials_for=self._stored_credentials,
            client_host=peer,
            max_packet_size=self.config.max_allowed_packet,
            auto_ok=False,
            tls_available=self.tls.client is not None,
        )

    def server_version(self) -> str:
        """What the primary says in its own greeting, so version-sniffing clients behave.

        Until a backend greeting was seen, the health checks' `@@version`, with the
        "5.5.5-" prefix MariaDB puts in its greeting (without it, clients that see
        "10.11" think it is MySQL >= 8 and ask for MySQL-only collations).
        """
        if self._greeting_version:
            return self._greeting_version
        topology = self.topology()
        pods = [topology.writer.pod] if topology.writer is not None else []
        for pod in [*pods, *topology.health]:
            health = topology.health.get(pod)
            if health is not None and health.version:
                return greeting_version(health.version)
        return DEFAULT_SERVER_VERSION

    def user_connection_limit(self, user: str) -> int:
        """The user's own limit, else the global per-user one; 0 means none."""
        return self._user_limits.get(user) or self.config.max_connections_per_user

    def remember_credential(self, user: str, credential: BackendCredential) -> None:
        self._backend_credentials[user] = credential

    async def _open_backend(self, endpoint: Endpoint, key: PoolKey) -> BackendConnection:
        credential = self._backend_credentials.get(key.user)
        if credential is None:
            raise BackendError(endpoint, f"no credential for user '{key.user}'")
        tls = self._backend_tls(endpoint)
        mode = self.config.backend_tls.mode
        handshake = ClientHandshake(
            username=key.user,
            credential=credential,
            database=None,
            capabilities=BASE_CAPABILITIES | Capability(key.wire_capabilities),
            character_set=key.character_set,
            connect_attrs={"program_name": "rwproxy"},
            tls_possible=tls is not None and may_use_tls(mode),
            tls_required=tls is not None and needs_tls(mode),
        )
        try:
            conn = await open_backend(
                endpoint,
                key,
                handshake,
                connect_timeout=self.config.pool.connect_timeout_seconds,
                tls=tls,
            )
        except BackendError as exc:
            if exc.error is not None and exc.error.code == ErrorCode.ER_ACCESS_DENIED_ERROR:
                raise MySQLError(exc.error.code, exc.error.message) from None
            raise
        if self.topology().is_writer(endpoint):
            self._greeting_version = conn.server_version
        return conn

    def _backend_tls(self, endpoint: Endpoint) -> BackendTls | None:
        if self.tls.backend is None:
            return None
        return BackendTls(
            self.tls.backend.current(),
            tls_server_name(self.config.discovery, endpoint),
            self.config.pool.connect_timeout_seconds,
        )

    # -- the proxy's own statements and KILL ----------------------------------------

    def admin_statement(self, session: Session, sql: bytes, c: Classification) -> bool:
        """Answer statements addressed to the proxy itself; False: not one of those.

        Runs on every COM_QUERY: anything whose first keyword is not SHOW leaves at once.
        """
        if c.first_keyword != "show":
            return False
        from proxy import admin  # here, not at the top: admin imports this module's types

        return admin.answer(self, session, sql)

    async def kill(self, session: Session, target_id: int, *, query_only: bool) -> None:
        target = self.sessions.get(target_id)
        if target is None or target.user != session.user:
            raise MySQLError(ErrorCode.ER_NO_SUCH_THREAD, f"Unknown thread id: {target_id}")
        for conn in target.held_connections():
            if conn.busy:
                await self._kill_on_backend(conn, session)
        if not query_only and target is not session:
            target.client.abort()

    async def _kill_on_backend(self, conn: BackendConnection, session: Session) -> None:
        assert session.key is not None
        pool = self.pools.pool(conn.endpoint, session.key)
        killer = await pool.acquire()
        try:
            await killer.query(f"KILL QUERY {conn.thread_id}".encode(), 5.0)
        finally:
            pool.release(killer)


class ProxyServer:
    """The listening socket and the sessions it started."""

    def __init__(self, ctx: ProxyContext, worker: WorkerSlot = SOLE_WORKER) -> None:
        self.ctx = ctx
        self.worker = worker
        self._ids = itertools.count(worker.first_connection_id(), worker.count)
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        listen = self.ctx.config.listen
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_client,
            listen.host,
            listen.port,
            reuse_address=True,
            reuse_port=self.worker.shares_port or None,
            backlog=1024,
        )
        logger.info("listening on %s:%d", listen.host, self.port)

    def _new_client(self) -> ClientConnection:
        return ClientConnection(self._start_session, self.ctx.config.max_allowed_packet)

    def _start_session(self, client: ClientConnection) -> None:
        metrics = self.ctx.metrics
        if self.ctx.draining or len(self.ctx.sessions) >= self.ctx.config.max_connections:
            self._refuse(client, "draining" if self.ctx.draining else "max_connections")
            return
        connection_id = next(self._ids)
        session = Session(client, self.ctx, connection_id)
        self.ctx.sessions[connection_id] = session
        metrics.client_connections_total.inc()
        metrics.client_connections.inc()
        task = asyncio.get_running_loop().create_task(session.run())
        self._tasks.add(task)

        def done(task: asyncio.Task[None]) -> None:
            # One callback, so that no scrape sees the bytes both live and closed (or neither).
            metrics.session_closed(client.bytes_in, client.bytes_out)
            self._session_done(task, connection_id)

        task.add_done_callback(done)

    def _refuse(self, client: ClientConnection, reason: str) -> None:
        self.ctx.metrics.refused(reason)
        if reason == "draining":
            code, message = ErrorCode.ER_SERVER_SHUTDOWN, "rwproxy is shutting down"
        else:
            code, message = ErrorCode.ER_CON_COUNT_ERROR, "Too many connections"
        client.write(frame(packets.build_err(code, message, None, Capability(0)), 0))
        client.close()

    def _session_done(self, task: asyncio.Task[None], connection_id: int) -> None:
        self._tasks.discard(task)
        self.ctx.sessions.pop(connection_id, None)
        self.ctx.metrics.client_connections.dec()

    async def stop_accepting(self) -> None:
        """Close the listening socket: new connections are refused by the kernel from now on."""
        if self._server is not None:
            self._server.close()

    async def drain(self, timeout: float) -> None:
        """Refuse new clients, close idle ones, let busy ones finish up to `timeout`, cancel others.

        A session leaves by itself after its current command once no transaction is open
        (`ctx.draining`), so only transactions the client never ends reach the timeout.
        """
        self.ctx.draining = True
        await self.stop_accepting()
        idle = [s for s in self.ctx.sessions.values() if not s.busy]
        for session in idle:
            session.client.close()
        busy = len(self.ctx.sessions) - len(idle)
        logger.info("drain: closed %d idle clients, waiting for %d busy ones", len(idle), busy)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            if pending:
                logger.warning(
                    "drain: %d sessions still busy after %g s, closing them", len(pending), timeout
                )
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        self.ctx.pools.close_all()


def login_guard(config: Config) -> LoginGuard | None:
    """The failed-login limiter `config.auth` asks for (None: `max_failures: 0`)."""
    a = config.auth
    if not a.max_failures:
        return None
    return LoginGuard(
        max_failures=a.max_failures,
        window_seconds=a.window_seconds,
        base_backoff_seconds=a.base_backoff_seconds,
        max_backoff_seconds=a.max_backoff_seconds,
        tracked_addresses=a.tracked_addresses,
    )
