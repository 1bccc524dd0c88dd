"""Load: 2,000 concurrent client connections through one rwproxy, mixed workload, no errors.

Theory of operation
-------------------
The clients are a minimal asyncio MySQL client (`AsyncClient`, below): the proxy's own
`ClientHandshake` to log in, then COM_QUERY packets whose replies are walked by header only
(`bench.wire.ReplyEnd`). A driver would not do: on 2 shared cores the client must
leave the CPU to the proxy and the pods, and aiomysql decodes every row in Python.

The proxy runs in-process (`start_proxy`), so it shares the test's RLIMIT_NOFILE: the soft
limit is raised to the hard one (it needs ~2 fds per client here, plus pools); production
needs the same (see docs: LimitNOFILE / the container runtime's nofile ulimit).

Clients here behave like an application's connection pool: every unit of work (a read, an
autocommit write, or a transaction) ends with COM_RESET_CONNECTION, so 2,000 client
connections share pools of `POOL_MAX` connections per pod and wait for one
(`pool_timeout_seconds`) when all are in use. Sessions that do *not* reset are multiplexed
too: when a pool is exhausted, the session idle the longest gives its connection back
(`ProxyContext.reclaim_idle`); `test_idle_autocommit_sessions_do_not_pin_backend_connections`
shows it.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable, Iterator

import pytest

from bench.wire import CAPABILITIES, ReplyEnd
from proxy.config import PoolConfig
from proxy.protocol import commands
from proxy.protocol.auth import BackendCredential
from proxy.protocol.framing import frame
from proxy.protocol.handshake import ClientHandshake, Failed, Ready
from proxy.protocol.packets import parse_err
from tests.fuzz import baseline
from tests.integration.cluster_fixture import ClusterHandle
from tests.support.proxy_harness import ProxyThread

pytestmark = pytest.mark.integration

CLIENTS = 2000
ROUNDS = 3
POOL_MAX = 60
MIN_HARD_NOFILE = 5000
CONNECT_CONCURRENCY = 200


class QueryError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class AsyncClient:
    """One connection: login, COM_QUERY, COM_RESET_CONNECTION, COM_QUIT."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, user: str, password: str, db: str) -> AsyncClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        handshake = ClientHandshake(
            user, BackendCredential(password=password.encode()), db, capabilities=CAPABILITIES
        )
        while True:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("closed during login")
            for event in handshake.receive_data(data):
                if isinstance(event, Failed):
                    raise QueryError(event.error.code, event.error.message)
                if isinstance(event, Ready):
                    return cls(reader, writer)
            writer.write(handshake.data_to_send())

    async def _reply(self) -> None:
        end = ReplyEnd()
        first = True
        while True:
            header = await self.reader.readexactly(4)
            payload = await self.reader.readexactly(int.from_bytes(header[:3], "little"))
            if first and payload[:1] == b"\xff":
                err = parse_err(payload)
                raise QueryError(err.code, err.message)
            first = False
            if end.done_after(payload[0] if payload else 0, len(payload)):
                return

    async def query(self, sql: str) -> None:
        self.writer.write(frame(commands.build_query(sql.encode()), 0))
        await self._reply()

    async def reset(self) -> None:
        self.writer.write(frame(commands.build_reset_connection(), 0))
        await self._reply()

    async def close(self) -> None:
        self.writer.write(frame(commands.build_quit(), 0))
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
def raised_fd_limit() -> Iterator[int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < MIN_HARD_NOFILE:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {MIN_HARD_NOFILE}: raise it (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def load_table(cluster: ClusterHandle) -> Iterator[str]:
    table = cluster.unique_name("load")
    cluster.query(cluster.primary, f"CREATE TABLE app.{table} (id INT PRIMARY KEY, n INT)")
    yield table
    cluster.query(cluster.primary, f"DROP TABLE IF EXISTS app.{table}")


async def unit(conn: AsyncClient, table: str, client_id: int, kind: int) -> int:
    """One unit of work, ended by a reset; the increments it made to the client's row."""
    row = f"WHERE id = {client_id}"
    if kind == 0:
        await conn.query(f"SELECT n FROM {table} {row}")
        made = 0
    elif kind == 1:
        await conn.query(f"UPDATE {table} SET n = n + 1 {row}")
        made = 1
    else:
        await conn.query("BEGIN")
        await conn.query(f"UPDATE {table} SET n = n + 1 {row}")
        await conn.query(f"SELECT n FROM {table} {row}")
        await conn.query("COMMIT")
        made = 1
    await conn.reset()
    return made


async def connect_all(port: int) -> list[AsyncClient]:
    """CLIENTS logins, CONNECT_CONCURRENCY at a time (the listen backlog is 1,024)."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect() -> AsyncClient:
        async with gate:
            return await AsyncClient.open(port, "app", "app-password", "app")

    return list(await asyncio.gather(*(connect() for _ in range(CLIENTS))))


async def work(conns: list[AsyncClient], table: str) -> tuple[list[int], list[str]]:
    made = [0] * len(conns)
    errors: list[str] = []

    async def client(i: int) -> None:
        try:
            await conns[i].query(f"INSERT INTO {table} VALUES ({i}, 0)")
            await conns[i].reset()
            for r in range(ROUNDS):
                made[i] += await unit(conns[i], table, i, (i + r) % 3)
        except (QueryError, ConnectionError, asyncio.IncompleteReadError) as exc:
            errors.append(f"client {i}: {exc!r}")

    await asyncio.gather(*(client(i) for i in range(len(conns))))
    return made, errors


def test_2000_clients_mixed_workload(
    start_proxy: Callable[..., ProxyThread],
    cluster: ClusterHandle,
    load_table: str,
    raised_fd_limit: int,
) -> None:
    proxy = start_proxy(pool=PoolConfig(max_size=POOL_MAX, pool_timeout_seconds=30.0))
    before = baseline.settle(lambda: baseline.inside(proxy))

    async def scenario() -> tuple[list[int], list[str], int, float]:
        started = time.monotonic()
        conns = await connect_all(proxy.port)
        logged_in = await asyncio.to_thread(lambda: baseline.inside(proxy).sessions)
        made, errors = await work(conns, load_table)
        await asyncio.gather(*(c.close() for c in conns))
        return made, errors, logged_in, time.monotonic() - started

    made, errors, logged_in, seconds = asyncio.run(scenario())
    assert errors == [], f"{len(errors)} clients failed, e.g. {errors[:5]}"
    assert logged_in == CLIENTS, "not every client was logged in at the same time"
    rows = dict(cluster.query(cluster.primary, f"SELECT id, n FROM app.{load_table}"))
    assert rows == {i: made[i] for i in range(CLIENTS)}
    after = baseline.restored(before, lambda: baseline.inside(proxy))
    assert baseline.problems(before, after, rss_slack_kib=256 * 1024) == []
    print(f"{CLIENTS} clients x {ROUNDS} units in {seconds:.1f} s; {after.describe()}")


def test_idle_autocommit_sessions_do_not_pin_backend_connections(
    start_proxy: Callable[..., ProxyThread], load_table: str, cluster: ClusterHandle
) -> None:
    """Five autocommit clients, a pool of four, no resets: every statement succeeds."""
    proxy = start_proxy(pool=PoolConfig(max_size=4, pool_timeout_seconds=2.0))

    async def scenario() -> None:
        conns = [await AsyncClient.open(proxy.port, "app", "app-password", "app") for _ in range(5)]
        try:
            for i, conn in enumerate(conns):  # one autocommit write each, then idle
                await conn.query(f"INSERT INTO {load_table} VALUES ({i}, 0)")
            for conn in conns:  # each again, on a connection an idle session gave back
                await conn.query(f"UPDATE {load_table} SET n = n + 1")
        finally:
            await asyncio.gather(*(c.close() for c in conns))

    asyncio.run(scenario())
    rows = dict(cluster.query(cluster.primary, f"SELECT id, n FROM app.{load_table}"))
    assert rows == dict.fromkeys(range(5), 5)
    reclaimed = proxy.call(lambda p: p.metrics.reclaims_total.labels("mysql-0")._value.get())
    assert reclaimed >= 1
