"""Operations without a cluster: SHOW RWPROXY parsing and replies, readiness, the HTTP endpoint,
reload planning and watching, and `rwproxy check` against fake DNS and pods."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy import admin
from proxy.admin import BadAdmin, ShowRoute, ShowStatus, parse
from proxy.check import check
from proxy.config import (
    Config,
    DiscoveryConfig,
    HealthConfig,
    HostPort,
    MonitorConfig,
    ReadinessConfig,
    UserConfig,
)
from proxy.files import fingerprint
from proxy.http import HttpServer, ProbeEndpoints, readiness
from proxy.metrics import Metrics
from proxy.protocol.constants import Capability, ServerStatus
from proxy.protocol.framing import PacketFramer
from proxy.protocol.resultset import decode_text_rows
from proxy.reload import ConfigWatcher, plan_reload
from proxy.routing.router import SessionView
from proxy.topology.model import Endpoint, HealthState, PodHealth, Topology
from tests.unit.topology.fakes import FakeChecker, cluster_dns, discovery

PROTOCOL_41 = Capability.CLIENT_PROTOCOL_41
DEPRECATE_EOF = Capability.CLIENT_PROTOCOL_41 | Capability.CLIENT_DEPRECATE_EOF

W = Endpoint("mysql-0", "10.0.0.10", 3306)
R1 = Endpoint("mysql-1", "10.0.0.11", 3306)
R2 = Endpoint("mysql-2", "10.0.0.12", 3306)


# -- fakes ------------------------------------------------------------------------------------


def config(**overrides: Any) -> Config:
    base = Config(
        http=HostPort("127.0.0.1", 0),
        users=(UserConfig(name="app", password="s3cret-app"),),
        monitor=MonitorConfig(user="monitor", password="s3cret-monitor"),
    )
    return dataclasses.replace(base, **overrides)


def health(ep: Endpoint, **facts: Any) -> PodHealth:
    base: dict[str, Any] = {"state": HealthState.UP, "reachable": True, "read_only": True}
    return PodHealth(pod=ep.pod, endpoint=ep, **(base | facts))


def topology(writer: Endpoint | None = W, readers: tuple[Endpoint, ...] = (R1, R2)) -> Topology:
    pods = {ep.pod: ep for ep in (W, R1, R2)}
    healths = {
        W.pod: health(W, read_only=False),
        R1.pod: health(R1, lag_seconds=0.0),
        R2.pod: health(R2, lag_seconds=42.0, state=HealthState.LAGGING, error="lag 42 s"),
    }
    return Topology(
        pods=pods,
        health=healths,
        writer=writer,
        writer_problem=None if writer else "mysql-0 is down",
        readers=readers,
        dns_ok=True,
        dns_error=None,
        version=7,
    )


class FakeConn:
    def __init__(self, endpoint: Endpoint, in_transaction: bool = False) -> None:
        self.endpoint = endpoint
        self.in_transaction = in_transaction


class FakePool:
    def __init__(self, endpoint: Endpoint, idle: int, in_use: int) -> None:
        self.endpoint = endpoint
        self._stats = SimpleNamespace(idle=idle, in_use=in_use, opening=0, max_size=64, waiting=0)

    def stats(self) -> SimpleNamespace:
        return self._stats


class FakeClient:
    def __init__(self) -> None:
        self.sent = bytearray()
        self.bytes_out = 0
        self.bytes_in = 0

    def write(self, data: bytes) -> None:
        self.sent += data
        self.bytes_out += len(data)


class FakeSession:
    def __init__(
        self, caps: Capability = DEPRECATE_EOF, view: SessionView | None = None, held: Any = ()
    ) -> None:
        self.client = FakeClient()
        self.capabilities = caps
        self.status = ServerStatus.SERVER_STATUS_AUTOCOMMIT
        self._view = view or SessionView()
        self._held = list(held)

    def view(self) -> SessionView:
        return self._view

    def held_connections(self) -> list[FakeConn]:
        return self._held


class FakeCtx:
    def __init__(self, topo: Topology | None = None, cfg: Config | None = None) -> None:
        self.current = topo or topology()
        self.config = cfg or config()
        self.draining = False
        self.metrics = Metrics()
        self.sessions: dict[int, FakeSession] = {}
        self.manager = SimpleNamespace(latest_health={})
        self.pools = SimpleNamespace(pools=lambda: [FakePool(W, 2, 1), FakePool(W, 0, 1)])

    def topology(self) -> Topology:
        return self.current

    def pick_reader(self, readers: tuple[Endpoint, ...]) -> Endpoint | None:
        return readers[0] if readers else None


def packets_of(data: bytes | bytearray) -> list[tuple[int, bytes]]:
    return [(p.seq, p.payload) for p in PacketFramer().feed(bytes(data))]


def rows_of(data: bytes | bytearray, caps: Capability = DEPRECATE_EOF) -> list[list[str | None]]:
    rows = decode_text_rows(bytes(data), caps)
    return [[None if v is None else v.decode() for v in row] for row in rows]


# -- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql, expected",
    [
        (b"SHOW RWPROXY STATUS", ShowStatus()),
        (b"show rwproxy status", ShowStatus()),
        (b"ShOw  RwProxy\tStatus ;", ShowStatus()),
        (b"SHOW RWPROXY STATUS;\n", ShowStatus()),
        (b"  /* comment */ SHOW RWPROXY STATUS", ShowStatus()),
        (b"-- note\nSHOW RWPROXY STATUS", ShowStatus()),
        (b"# note\nshow rwproxy status", ShowStatus()),
        (b"SHOW /* between */ RWPROXY /* and */ STATUS", ShowStatus()),
        (b"SHOW RWPROXY ROUTE SELECT 1", ShowRoute(b"SELECT 1")),
        (
            b"show rwproxy route   insert into t values (1);  ",
            ShowRoute(b"insert into t values (1)"),
        ),
        (
            b"SHOW RWPROXY ROUTE /* rwproxy:primary */ SELECT 1",
            ShowRoute(b"/* rwproxy:primary */ SELECT 1"),
        ),
        (b"SHOW RWPROXY ROUTE\n/*x*/SELECT 1", ShowRoute(b"/*x*/SELECT 1")),
        (b"SHOW RWPROXY ROUTE/*x*/SELECT 1", ShowRoute(b"/*x*/SELECT 1")),
        (
            b"SHOW RWPROXY ROUTE",
            BadAdmin("rwproxy: SHOW RWPROXY ROUTE needs a statement after ROUTE"),
        ),
        (b"SHOW RWPROXY", BadAdmin(admin._USAGE)),
        (b"SHOW RWPROXY STATUSES", BadAdmin(admin._USAGE)),
        (b"SHOW RWPROXY ROUTES SELECT 1", BadAdmin(admin._USAGE)),
    ],
)
def test_parse_admin_statements(sql: bytes, expected: object) -> None:
    assert parse(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        b"SELECT 1",
        b"SELECT 'show rwproxy status'",
        b"SHOW TABLES",
        b"SHOW rwproxyx STATUS",
        b"SHOWRWPROXY STATUS",
        b"/*! SHOW RWPROXY STATUS */",
        b"/* rwproxy:primary */ SELECT 1",
        b"INSERT INTO rwproxy VALUES (1)",
        b"",
        b"s",
        b"--x\nSHOW RWPROXY STATUS",  # '--x' is not a comment in MariaDB
    ],
)
def test_ordinary_statements_are_not_admin(sql: bytes) -> None:
    assert parse(sql) is None


def test_fast_path_rejects_on_first_bytes() -> None:
    assert not admin.maybe_admin(b"SELECT * FROM rwproxy")  # 'S' but not 'SHOW'
    assert not admin.maybe_admin(b"insert into t values ('rwproxy')")
    assert admin.maybe_admin(b"show rwproxy status")
    assert not admin.maybe_admin(b"show tables")
    long_comment = b"/*" + b"x" * 1000 + b"*/ SHOW RWPROXY STATUS"
    assert not admin.maybe_admin(long_comment)  # bounded look-ahead


def test_route_statement_keeps_its_comments() -> None:
    command = parse(b"SHOW RWPROXY ROUTE SELECT /* rwproxy:primary */ 1")
    assert command == ShowRoute(b"SELECT /* rwproxy:primary */ 1")


# -- replies ----------------------------------------------------------------------------------


@pytest.mark.parametrize("caps", [PROTOCOL_41, DEPRECATE_EOF])
def test_show_status_result_set(caps: Capability) -> None:
    ctx, session = FakeCtx(), FakeSession(caps)
    assert admin.answer(ctx, session, b"SHOW RWPROXY STATUS")  # type: ignore[arg-type]
    framed = packets_of(session.client.sent)
    assert [seq for seq, _ in framed] == list(range(1, len(framed) + 1))
    assert framed[0][1] == bytes([len(admin.STATUS_COLUMNS)])
    assert rows_of(session.client.sent, caps) == [
        ["mysql-0", "10.0.0.10:3306", "writer", "up", "0", None, "2", "2", "128", None],
        ["mysql-1", "10.0.0.11:3306", "reader", "up", "1", "0", "0", "0", "0", None],
        ["mysql-2", "10.0.0.12:3306", "reader", "lagging", "1", "42", "0", "0", "0", "lag 42 s"],
    ]
    last = framed[-1][1]
    assert last[0] == 0xFE and (len(last) > 5) == bool(caps & Capability.CLIENT_DEPRECATE_EOF)


def test_show_status_column_definitions_name_the_columns() -> None:
    session = FakeSession(PROTOCOL_41)
    admin.answer(FakeCtx(), session, b"show rwproxy status")  # type: ignore[arg-type]
    framed = packets_of(session.client.sent)
    names = [_column_name(payload) for _, payload in framed[1:11]]
    assert names == [
        "pod",
        "address",
        "role",
        "state",
        "read_only",
        "lag_seconds",
        "pool_idle",
        "pool_in_use",
        "pool_max",
        "error",
    ]
    assert framed[11][1][:1] == b"\xfe"  # EOF after the definitions without DEPRECATE_EOF


def _column_name(payload: bytes) -> str:
    from proxy.protocol.codec import read_lenenc_bytes

    pos = 0
    for _ in range(4):  # catalog, schema, table, org_table
        _, pos = read_lenenc_bytes(payload, pos)
    name, _ = read_lenenc_bytes(payload, pos)
    return name.decode()


def route_row(ctx: FakeCtx, session: FakeSession, statement: bytes) -> list[str | None]:
    assert admin.answer(ctx, session, b"SHOW RWPROXY ROUTE " + statement)  # type: ignore[arg-type]
    (row,) = rows_of(session.client.sent)
    return row


def test_route_of_a_plain_read_names_the_replica_and_rule() -> None:
    row = route_row(FakeCtx(), FakeSession(), b"SELECT * FROM t")
    assert row == ["reader", "mysql-1", "read", "plain read", None, None]


def test_route_prefers_the_replica_the_session_holds() -> None:
    session = FakeSession(held=[FakeConn(W), FakeConn(R2)])
    assert route_row(FakeCtx(), session, b"SELECT 1")[:2] == ["reader", "mysql-2"]


def test_route_of_a_write_goes_to_the_writer() -> None:
    row = route_row(FakeCtx(), FakeSession(), b"UPDATE t SET a = 1")
    assert row[:3] == ["writer", "mysql-0", "write"]


def test_route_inside_a_transaction_stays_on_its_connection() -> None:
    session = FakeSession(view=SessionView(in_transaction=True), held=[FakeConn(W, True)])
    row = route_row(FakeCtx(), session, b"SELECT 1")
    assert row[:2] == ["transaction", "mysql-0"]
    assert "inside a transaction" in (row[3] or "")


def test_route_shows_pin_and_hint() -> None:
    assert route_row(FakeCtx(), FakeSession(), b"CREATE TEMPORARY TABLE x (a INT)")[4] == (
        "temporary_table"
    )
    row = route_row(FakeCtx(), FakeSession(), b"SELECT /* rwproxy:primary */ 1")
    assert row[0] == "writer" and row[5] == "primary"


def test_route_without_writer_has_no_pod() -> None:
    ctx = FakeCtx(topology(writer=None))
    assert route_row(ctx, FakeSession(), b"DELETE FROM t")[:2] == ["writer", None]


def test_route_does_not_run_anything_or_change_the_session() -> None:
    session = FakeSession()
    before = session.view()
    route_row(FakeCtx(), session, b"BEGIN")
    assert session.view() == before


def test_unknown_show_rwproxy_is_an_error_packet() -> None:
    session = FakeSession()
    assert admin.answer(FakeCtx(), session, b"SHOW RWPROXY NONSENSE")  # type: ignore[arg-type]
    ((seq, payload),) = packets_of(session.client.sent)
    assert seq == 1 and payload[:3] == b"\xff\x28\x04"  # ERR 1064
    assert b"#42000" in payload


def test_ordinary_statements_are_left_alone() -> None:
    session = FakeSession()
    assert not admin.answer(FakeCtx(), session, b"SELECT 1")  # type: ignore[arg-type]
    assert session.client.sent == b""


def test_status_snapshot_sums_pools_and_sessions() -> None:
    ctx = FakeCtx()
    ctx.sessions = {1: FakeSession(view=SessionView(in_transaction=True)), 2: FakeSession()}
    ctx.sessions[1].client.bytes_out = 100
    status = admin.status_snapshot(ctx)  # type: ignore[arg-type]
    assert status.pods[0].pool == admin.PoolUse(idle=2, in_use=2, max_size=128)
    assert status.sessions == admin.SessionTotals(2, 1, 0, 100)
    assert (status.writer, status.readers) == ("mysql-0", ("mysql-1", "mysql-2"))
    assert status.config_version == admin.config_version(ctx.config)


def test_latest_health_wins_only_for_the_current_address() -> None:
    ctx = FakeCtx()
    moved = Endpoint("mysql-1", "10.9.9.9", 3306)
    ctx.manager.latest_health = {
        "mysql-1": health(moved, lag_seconds=99.0),
        "mysql-2": health(R2, lag_seconds=3.0),
    }
    pods = {p.pod: p for p in admin.status_snapshot(ctx).pods}  # type: ignore[arg-type]
    assert pods["mysql-1"].lag_seconds == 0.0
    assert pods["mysql-2"].lag_seconds == 3.0


def test_config_version_follows_settings_not_identity() -> None:
    assert admin.config_version(config()) == admin.config_version(config())
    changed = config(health=HealthConfig(max_replication_lag_seconds=3))
    assert admin.config_version(changed) != admin.config_version(config())


# -- readiness and HTTP -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "writer, readers, require_writer, draining, listening, ready",
    [
        (W, (R1,), True, False, True, True),
        (None, (R1,), True, False, True, False),
        (None, (R1,), False, False, True, True),
        (None, (), False, False, True, False),
        (W, (R1,), True, True, True, False),
        (W, (R1,), True, False, False, False),
    ],
)
def test_readiness(
    writer: Endpoint | None,
    readers: tuple[Endpoint, ...],
    require_writer: bool,
    draining: bool,
    listening: bool,
    ready: bool,
) -> None:
    ctx = FakeCtx(
        topology(writer, readers), config(readiness=ReadinessConfig(require_writer=require_writer))
    )
    ctx.draining = draining
    answer, reason = readiness(ctx, listening)  # type: ignore[arg-type]
    assert answer is ready and reason


async def fetch(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    def call() -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    return await asyncio.to_thread(call)


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[tuple[FakeCtx, int]]:
    ctx = FakeCtx()
    server = HttpServer(ProbeEndpoints(ctx, lambda: True).routes())  # type: ignore[arg-type]
    await server.start("127.0.0.1", 0)
    try:
        yield ctx, server.port
    finally:
        await server.close()


async def test_http_healthz_and_readyz() -> None:
    async with serving() as (ctx, port):
        status, headers, body = await fetch(port, "/healthz")
        assert status == 200 and headers["content-type"] == "application/json"
        assert json.loads(body)["status"] == "ok"
        status, _, body = await fetch(port, "/readyz")
        assert status == 200 and json.loads(body)["writer"] == "mysql-0"
        ctx.draining = True
        status, _, body = await fetch(port, "/readyz")
        assert status == 503 and json.loads(body)["reason"].startswith("draining")


async def test_http_metrics_parse() -> None:
    async with serving() as (ctx, port):
        ctx.metrics.statements.record("writer", "mysql-0", 3, "insert", 0.001)
        status, headers, body = await fetch(port, "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        names = {f.name for f in text_string_to_metric_families(body.decode())}
        assert "rwproxy_statements" in names


async def test_http_status_has_no_secrets() -> None:
    async with serving() as (_, port):
        status, _, body = await fetch(port, "/status")
        data = json.loads(body)
        assert status == 200
        assert data["config"]["health"]["max_replication_lag_seconds"] == 10.0
        assert data["config"]["users"][0] == {
            "name": "app",
            "password": "<redacted>",
            "password_hash": None,
            "password_file": None,
            "max_connections": 0,
        }
        assert b"s3cret" not in body
        assert [p["pod"] for p in data["pods"]] == ["mysql-0", "mysql-1", "mysql-2"]


async def test_http_errors_and_head() -> None:
    async with serving() as (_, port):
        assert (await fetch(port, "/nope"))[0] == 404
        assert (await fetch(port, "/healthz", "POST"))[0] == 405
        status, headers, body = await fetch(port, "/healthz", "HEAD")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 0


async def test_http_keep_alive_serves_several_requests() -> None:
    async with serving() as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        writer.write(request * 2)
        await writer.drain()
        data = b""
        async with asyncio.timeout(5):
            while data.count(b"HTTP/1.1 200 OK") < 2:
                chunk = await reader.read(4096)
                assert chunk, data
                data += chunk
        writer.close()


async def test_http_rejects_garbage_and_closes() -> None:
    async with serving() as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x00\x01 not http\r\n\r\n")
        async with asyncio.timeout(5):
            rest = await reader.read()
        assert b"200" not in rest
        writer.close()


# -- reload -----------------------------------------------------------------------------------


def test_plan_keeps_restart_only_settings() -> None:
    old = config()
    new = config(
        listen=HostPort("127.0.0.1", 7000),
        discovery=DiscoveryConfig(writer="auto"),
        health=HealthConfig(max_replication_lag_seconds=2),
        users=(UserConfig(name="app", password="other"),),
    )
    plan = plan_reload(old, new)
    assert plan.changed == ("health.max_replication_lag_seconds", "users")
    assert plan.needs_restart == ("discovery.writer", "listen")
    assert (plan.config.listen, plan.config.discovery) == (old.listen, old.discovery)
    assert plan.config.health.max_replication_lag_seconds == 2
    assert plan.config.users == new.users


def test_plan_of_equal_configs_changes_nothing() -> None:
    plan = plan_reload(config(), config())
    assert plan.changed == () and plan.needs_restart == ()


def test_fingerprint_sees_a_configmap_symlink_swap(tmp_path: Path) -> None:
    # kubelet: config.yaml -> ..data/config.yaml, ..data -> ..<timestamp>; updates swap ..data
    for version in ("..v1", "..v2"):
        (tmp_path / version).mkdir()
        (tmp_path / version / "config.yaml").write_text("listen: 127.0.0.1:1\n")
    os.symlink("..v1", tmp_path / "..data")
    os.symlink("..data/config.yaml", tmp_path / "config.yaml")
    before = fingerprint([tmp_path / "config.yaml"])
    os.symlink("..v2", tmp_path / "..data_tmp")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert fingerprint([tmp_path / "config.yaml"]) != before


YAML = """\
listen: 127.0.0.1:0
http: null
users:
  - name: app
    password: app-password{extra}
monitor:
  user: monitor
  password: monitor-password
health:
  max_replication_lag_seconds: {lag}
"""


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[Path, list[Config], ConfigWatcher, Metrics]]:
    path = tmp_path / "rwproxy.yaml"
    path.write_text(YAML.format(extra="", lag=10))
    from proxy.config import load_file

    applied = [load_file(path, {})]
    metrics = Metrics()
    watcher = ConfigWatcher(path, lambda: applied[-1], applied.append, metrics, environ={})
    yield path, applied, watcher, metrics


def reloads(metrics: Metrics, result: str) -> float:
    value = metrics.registry.get_sample_value("rwproxy_config_reloads_total", {"result": result})
    return value or 0.0


def test_reload_applies_a_changed_file(watched: Any, caplog: pytest.LogCaptureFixture) -> None:
    path, applied, watcher, metrics = watched
    path.write_text(YAML.format(extra="\n  - name: new\n    password: pw", lag=3))
    with caplog.at_level(logging.INFO, "proxy.reload"):
        assert watcher.reload("test") == "applied"
    assert applied[-1].health.max_replication_lag_seconds == 3
    assert [u.name for u in applied[-1].users] == ["app", "new"]
    assert "health.max_replication_lag_seconds, users changed" in caplog.text
    assert "pw" not in caplog.text.replace("password", "")
    assert reloads(metrics, "applied") == 1


def test_reload_rejects_a_broken_file(watched: Any, caplog: pytest.LogCaptureFixture) -> None:
    path, applied, watcher, metrics = watched
    path.write_text(YAML.format(extra="", lag="-1"))
    with caplog.at_level(logging.WARNING, "proxy.reload"):
        assert watcher.reload("test") == "rejected"
    assert len(applied) == 1
    (record,) = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "health.max_replication_lag_seconds: must be at least 0" in record.getMessage()
    assert watcher.last["result"] == "rejected"
    assert reloads(metrics, "rejected") == 1


def test_reload_of_a_touched_file_is_unchanged(watched: Any) -> None:
    _, applied, watcher, metrics = watched
    assert watcher.reload("test") == "unchanged"
    assert len(applied) == 1 and reloads(metrics, "unchanged") == 1


async def test_watcher_polls_the_file_and_answers_requests(watched: Any) -> None:
    path, applied, _, metrics = watched
    watcher = ConfigWatcher(
        path, lambda: applied[-1], applied.append, metrics, environ={}, interval=0.05, settle=0
    )
    task = asyncio.create_task(watcher.run())
    try:
        path.write_text(YAML.format(extra="", lag=4))
        os.utime(path, ns=(1, 1))  # a new mtime even on coarse clocks
        await _until(lambda: applied[-1].health.max_replication_lag_seconds == 4)
        watcher.request()
        await _until(lambda: watcher.last["trigger"] == "SIGHUP")
    finally:
        task.cancel()


async def _until(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


# -- rwproxy check ----------------------------------------------------------------------------


def check_config() -> Config:
    return config()


async def test_check_prints_every_pod_and_succeeds() -> None:
    fake = FakeChecker()
    fake.healthy_cluster()
    out = io.StringIO()
    code = await check(check_config(), out, discovery(cluster_dns()), fake)
    text = out.getvalue()
    assert code == 0, text
    assert "mysql-0" in text and "writer" in text and "replica" in text
    assert text.splitlines()[-1].startswith("OK: writer mysql-0")
    assert fake.closed


async def test_check_fails_when_a_pod_is_unreachable() -> None:
    fake = FakeChecker()
    fake.healthy_cluster(("mysql-0", "mysql-1"))
    out = io.StringIO()
    assert await check(check_config(), out, discovery(cluster_dns()), fake) == 1
    assert "FAILED: not reachable: mysql-2" in out.getvalue()


async def test_check_fails_without_writer() -> None:
    fake = FakeChecker()
    fake.healthy_cluster(("mysql-1", "mysql-2"))
    out = io.StringIO()
    assert await check(check_config(), out, discovery(cluster_dns()), fake) == 1
    assert "FAILED: no writer" in out.getvalue()
