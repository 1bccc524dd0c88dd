"""Pool behaviour with a fake connection: LIFO reuse, limits, timeouts, reset on release."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, cast

import pytest

from proxy.backend import BackendError, PoolKey, ServerSession
from proxy.pool import Pool, PoolLimits, PoolStats
from proxy.protocol.constants import Command
from proxy.protocol.errors import MySQLError
from proxy.topology.model import Endpoint

POD = Endpoint("mysql-1", "127.0.0.11", 3306)
KEY = PoolKey("app", 0, 45)


class FakeOutcome:
    def __init__(self, error_code: int | None = None) -> None:
        self.error_code = error_code


class FakeTracker:
    def __init__(self, error_code: int | None) -> None:
        self.outcome = FakeOutcome(error_code)


class FakeConn:
    """Just what the pool looks at; `reset_error` makes its requests (COM_RESET_CONNECTION,
    COM_PING) fail."""

    def __init__(self, number: int, clock: list[float]) -> None:
        self.number = number
        self.server = ServerSession()
        self.broken = False
        self.unverified = False
        self.commands: list[int] = []
        self.busy = False
        self.in_transaction = False
        self.closed_because = ""
        self.resets = 0
        self.reset_error: int | None = None
        self._clock = clock
        self.created_at = clock[0]
        self.last_used_at = clock[0]

    def age(self) -> float:
        return self._clock[0] - self.created_at

    def idle_for(self) -> float:
        return self._clock[0] - self.last_used_at

    def close(self, reason: str = "") -> None:
        self.broken = True
        self.closed_because = reason

    def request(self, data: bytes, command: int) -> asyncio.Future[FakeTracker]:
        self.resets += 1
        self.commands.append(command)
        future: asyncio.Future[FakeTracker] = asyncio.get_running_loop().create_future()
        future.set_result(FakeTracker(self.reset_error))
        return future

    def take_collected(self) -> bytes:
        return b""


class FakePool(Protocol):
    """The `Pool` as these tests see it: what it hands out is what `Harness.open` made."""

    async def acquire(self) -> FakeConn: ...
    def release(self, conn: FakeConn) -> None: ...
    def stats(self) -> PoolStats: ...
    def suspect(self) -> None: ...
    def retire(self) -> None: ...
    def maintain(self) -> None: ...


class Harness:
    def __init__(self, **limits: Any) -> None:
        self.clock = [0.0]
        self.opened: list[FakeConn] = []
        self.fail_open = False
        pool = Pool(POD, KEY, self.open, PoolLimits(**limits), clock=lambda: self.clock[0])
        self.pool = cast(FakePool, pool)

    async def open(self, endpoint: Endpoint, key: PoolKey) -> Any:
        if self.fail_open:
            raise BackendError(endpoint, "connection refused")
        conn = FakeConn(len(self.opened), self.clock)
        self.opened.append(conn)
        return conn


async def test_reuses_the_most_recently_released_connection() -> None:
    h = Harness()
    a, b = await h.pool.acquire(), await h.pool.acquire()
    h.pool.release(a)
    h.pool.release(b)
    assert await h.pool.acquire() is b
    assert len(h.opened) == 2


async def test_waits_for_a_release_when_full_then_times_out_with_1040() -> None:
    h = Harness(max_size=1, pool_timeout=0.05)
    conn = await h.pool.acquire()
    waiter = asyncio.create_task(h.pool.acquire())
    await asyncio.sleep(0)
    h.pool.release(conn)
    assert await waiter is conn
    with pytest.raises(MySQLError) as error:
        await h.pool.acquire()
    assert error.value.code == 1040
    assert "mysql-1" in error.value.message and "max_size 1" in error.value.message


async def test_dirty_connection_is_reset_before_reuse() -> None:
    h = Harness(max_size=1)
    conn = await h.pool.acquire()
    conn.server.needs_reset = True
    h.pool.release(conn)  # the reset runs in the background; acquire waits for it
    again = await h.pool.acquire()
    assert again is conn and conn.resets == 1 and not conn.server.needs_reset


async def test_failed_reset_closes_the_connection() -> None:
    h = Harness()
    conn = await h.pool.acquire()
    conn.server.needs_reset = True
    conn.reset_error = 1105
    h.pool.release(conn)
    await asyncio.sleep(0.01)
    assert conn.broken and conn.closed_because == "reset failed"
    assert await h.pool.acquire() is not conn
    assert h.pool.stats().in_use == 1


async def test_after_a_failure_idle_connections_are_pinged_once_and_dead_ones_dropped() -> None:
    h = Harness()
    first, second = await h.pool.acquire(), await h.pool.acquire()
    h.pool.release(first)
    h.pool.release(second)  # LIFO: `second` is handed out next
    second.reset_error = 2013
    h.pool.suspect()
    assert await h.pool.acquire() is first
    assert second.closed_because.startswith("did not answer a ping")
    assert first.commands == [Command.COM_PING] and h.pool.stats().in_use == 1
    h.pool.release(first)
    assert await h.pool.acquire() is first and first.commands == [Command.COM_PING]


async def test_connections_busy_at_the_failure_are_not_pinged() -> None:
    h = Harness()
    busy = await h.pool.acquire()
    h.pool.suspect()
    h.pool.release(busy)
    assert await h.pool.acquire() is busy and busy.commands == []


async def test_expired_connections_are_not_handed_out() -> None:
    h = Harness(idle_timeout=10, max_lifetime=100)
    conn = await h.pool.acquire()
    h.pool.release(conn)
    h.clock[0] = 11
    assert await h.pool.acquire() is not conn
    assert conn.broken


async def test_broken_or_busy_connections_never_return() -> None:
    h = Harness()
    broken, busy = await h.pool.acquire(), await h.pool.acquire()
    broken.broken = True
    busy.busy = True
    h.pool.release(broken)
    h.pool.release(busy)
    assert h.pool.stats().idle == 0 and h.pool.stats().in_use == 0


async def test_retire_closes_idle_and_refuses_new_acquires() -> None:
    h = Harness()
    conn = await h.pool.acquire()
    h.pool.release(conn)
    h.pool.retire()
    assert conn.broken
    with pytest.raises(BackendError):
        await h.pool.acquire()


async def test_maintain_keeps_min_idle_open_and_prunes_expired() -> None:
    h = Harness(min_idle=2, max_size=3, idle_timeout=10)
    h.pool.maintain()
    await asyncio.sleep(0.01)
    assert h.pool.stats().idle == 2 and len(h.opened) == 2
    h.clock[0] = 11  # both idle past the timeout
    h.pool.maintain()
    await asyncio.sleep(0.01)
    assert all(c.broken for c in h.opened[:2])
    assert h.pool.stats().idle == 2 and len(h.opened) == 4


async def test_open_failure_leaves_counts_unchanged() -> None:
    h = Harness()
    h.fail_open = True
    with pytest.raises(BackendError):
        await h.pool.acquire()
    assert h.pool.stats() == h.pool.stats().__class__(0, 0, 0, 64, 0)
