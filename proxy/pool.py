"""Pools of authenticated backend connections, one per (pod, user, wire flavour).

Theory of operation
-------------------
A `Pool` owns every connection it opened: idle ones sit in a LIFO stack (the most
recently used connection is the warmest, and the coldest ones age out through
`idle_timeout`), busy ones are counted. `acquire()` pops an idle connection that is
still alive and young enough, opens a new one while the pool is under `max_size`,
or waits in line (FIFO) up to `pool_timeout` and then fails with a clear 1040 error
naming the pod and the limit: never an unbounded queue.

`release()` takes a connection back only in a known clean state. The session says
whether the server-side state was touched (`needs_reset`); such a connection is sent
COM_RESET_CONNECTION first, in a background task shielded from the releasing
session's cancellation, and closed if the reset fails, times out, or leaves a
transaction open. Broken connections (cut mid-reply) are closed at once.

`suspect()` is called when a connection to the pod failed: a cut or partitioned network
does not close the idle connections, and a statement sent on one would be the client's
second error from one fault (a write cannot be retried: the pod may have run it). Each
connection idle at that moment is pinged (COM_PING, within `connect_timeout`) before its
next use and closed if it does not answer; one round trip, paid only after a failure.

`retire()` is called when the pod's address changed, the pod left, or it stopped
being the writer: idle connections close now, busy ones close when they come back.
`maintain()` runs every few seconds: it closes idle connections past their time and
opens new ones in the background up to `min_idle` (never past `max_size`).

`PoolSet` maps (endpoint, key) to pools and is what the sessions talk to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from proxy.backend import BackendConnection, BackendError, PoolKey
from proxy.protocol import commands as cmd
from proxy.protocol.constants import Command, ErrorCode
from proxy.protocol.errors import MySQLError, ProtocolError
from proxy.protocol.framing import frame
from proxy.topology.model import Endpoint

logger = logging.getLogger(__name__)

Opener = Callable[[Endpoint, PoolKey], Awaitable[BackendConnection]]


@dataclass(frozen=True, slots=True)
class PoolLimits:
    max_size: int = 64
    min_idle: int = 0
    connect_timeout: float = 3.0
    pool_timeout: float = 5.0
    idle_timeout: float = 300.0
    max_lifetime: float = 3600.0
    reset_timeout: float = 2.0


@dataclass(frozen=True, slots=True)
class PoolStats:
    idle: int
    in_use: int
    opening: int
    max_size: int
    waiting: int


class Pool:
    """Connections to one pod for one `PoolKey`; see the module docstring."""

    def __init__(
        self,
        endpoint: Endpoint,
        key: PoolKey,
        opener: Opener,
        limits: PoolLimits,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self.key = key
        self.limits = limits
        self._opener = opener
        self._clock = clock
        # Called when every connection is taken, before waiting: the proxy asks an idle
        # session to give one back (see ProxyContext.reclaim_idle).
        self.on_exhausted: Callable[[Pool], None] | None = None
        self._idle: list[BackendConnection] = []
        self._in_use = 0
        self._opening = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self.retired = False

    @property
    def size(self) -> int:
        return len(self._idle) + self._in_use + self._opening

    def stats(self) -> PoolStats:
        return PoolStats(
            len(self._idle), self._in_use, self._opening, self.limits.max_size, len(self._waiters)
        )

    async def acquire(self) -> BackendConnection:
        if self.retired:
            raise BackendError(self.endpoint, "pod left the topology")
        deadline = self._clock() + self.limits.pool_timeout
        while True:
            conn = self._pop_idle()
            if conn is not None:
                self._in_use += 1
                if conn.unverified and not await self._answers_ping(conn):
                    continue
                return conn
            if self.size < self.limits.max_size:
                return await self._open()
            if self.on_exhausted is not None:
                self.on_exhausted(self)
                conn = self._pop_idle()  # given back, already clean
                if conn is not None:
                    self._in_use += 1
                    return conn
            await self._wait_turn(deadline)

    def _pop_idle(self) -> BackendConnection | None:
        while self._idle:
            conn = self._idle.pop()
            if self._usable(conn):
                return conn
            conn.close("expired in pool")
        return None

    def _usable(self, conn: BackendConnection) -> bool:
        return (
            not conn.broken
            and conn.age() < self.limits.max_lifetime
            and conn.idle_for() < self.limits.idle_timeout
        )

    async def _open(self) -> BackendConnection:
        self._opening += 1
        try:
            conn = await self._opener(self.endpoint, self.key)
        finally:
            self._opening -= 1
        self._in_use += 1
        return conn

    async def _wait_turn(self, deadline: float) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(max(0.0, deadline - self._clock())):
                await waiter
        except TimeoutError:
            raise MySQLError(
                ErrorCode.ER_CON_COUNT_ERROR,
                f"rwproxy: no free connection to {self.endpoint.pod} within "
                f"{self.limits.pool_timeout:g} s (pool max_size {self.limits.max_size} "
                f"for user '{self.key.user}')",
            ) from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def release(self, conn: BackendConnection) -> None:
        """Give `conn` back; it is reset first if its session state was touched."""
        self._in_use -= 1
        if self.retired or not self._reusable(conn):
            conn.close("not reusable")
            self._wake_one()
            return
        if conn.server.needs_reset or conn.in_transaction:
            self._in_use += 1
            self._spawn(self._reset_then_keep(conn))
            return
        self._keep(conn)

    def _reusable(self, conn: BackendConnection) -> bool:
        return not conn.busy and self._usable(conn)

    def _keep(self, conn: BackendConnection) -> None:
        conn.server.owner = None
        self._idle.append(conn)
        self._wake_one()

    async def _reset_then_keep(self, conn: BackendConnection) -> None:
        try:
            async with asyncio.timeout(self.limits.reset_timeout):
                tracker = await conn.request(
                    frame(cmd.build_reset_connection(), 0), Command.COM_RESET_CONNECTION
                )
            conn.take_collected()
            ok = tracker.outcome is not None and not tracker.outcome.error_code
        except (TimeoutError, BackendError, ProtocolError):
            ok = False
        self._in_use -= 1
        if not ok or conn.in_transaction or self.retired:
            conn.close("reset failed")
            self._wake_one()
            return
        conn.server.needs_reset = False
        conn.server.prepared.clear()
        conn.server.applied.clear()
        conn.server.state_version = -1
        conn.server.confirmed_gtid = None
        self._keep(conn)

    def suspect(self) -> None:
        """A connection to this pod failed: ping each idle one before its next use."""
        for conn in self._idle:
            conn.unverified = True

    async def _answers_ping(self, conn: BackendConnection) -> bool:
        """Ping a suspect connection taken from the pool; closed and counted out if dead."""
        try:
            async with asyncio.timeout(self.limits.connect_timeout):
                tracker = await conn.request(frame(cmd.build_ping(), 0), Command.COM_PING)
            conn.take_collected()
            alive = tracker.outcome is not None and not tracker.outcome.error_code
        except (TimeoutError, BackendError, ProtocolError):
            alive = False
        if not alive:
            self.discard(conn, "did not answer a ping after a failure on its pod")
            return False
        conn.unverified = False
        return True

    def discard(self, conn: BackendConnection, reason: str) -> None:
        """A busy connection is broken or must not come back: close and forget it."""
        self._in_use -= 1
        conn.close(reason)
        self._wake_one()

    def retire(self) -> None:
        self.retired = True
        for conn in self._idle:
            conn.close("pod retired")
        self._idle.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def prune(self) -> None:
        """Close idle connections past their idle timeout or lifetime."""
        keep = [c for c in self._idle if self._usable(c)]
        for conn in self._idle:
            if conn not in keep:
                conn.close("idle timeout")
        self._idle = keep

    def maintain(self) -> None:
        """Prune, then open connections in the background up to `min_idle` idle ones."""
        self.prune()
        missing = min(
            self.limits.min_idle - len(self._idle) - self._opening,
            self.limits.max_size - self.size,
        )
        for _ in range(max(0, missing)):
            self._spawn(self._open_idle())

    async def _open_idle(self) -> None:
        try:
            conn = await self._open()
        except (BackendError, MySQLError) as exc:
            logger.debug("pre-opening a connection to %s failed: %s", self.endpoint.pod, exc)
            return
        self._in_use -= 1
        if self.retired:
            conn.close("pod retired")
            return
        self._keep(conn)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class PoolSet:
    """All pools, by endpoint and key, created on first use."""

    def __init__(
        self,
        opener: Opener,
        limits: PoolLimits,
        on_exhausted: Callable[[Pool], None] | None = None,
    ) -> None:
        self._opener = opener
        self.limits = limits
        self.on_exhausted = on_exhausted
        self._pools: dict[tuple[Endpoint, PoolKey], Pool] = {}

    def pool(self, endpoint: Endpoint, key: PoolKey) -> Pool:
        pool = self._pools.get((endpoint, key))
        if pool is None or pool.retired:
            pool = self._pools[(endpoint, key)] = Pool(endpoint, key, self._opener, self.limits)
            pool.on_exhausted = self.on_exhausted
        return pool

    def suspect_endpoint(self, endpoint: Endpoint) -> None:
        for (ep, _), pool in self._pools.items():
            if ep == endpoint:
                pool.suspect()

    def retire_endpoint(self, endpoint: Endpoint) -> None:
        for (ep, key), pool in list(self._pools.items()):
            if ep == endpoint:
                pool.retire()
                del self._pools[(ep, key)]

    def maintain(self) -> None:
        for pool in self._pools.values():
            pool.maintain()

    def pools(self) -> list[Pool]:
        return list(self._pools.values())

    def close_all(self) -> None:
        for pool in self._pools.values():
            pool.retire()
        self._pools.clear()
