"""The proxy as an operator runs it: a `python -m proxy serve` subprocess with a YAML file.

SIGTERM drains (an open transaction still commits, new connections are refused, exit 0),
an edited config file takes effect without a restart (a ConfigMap-style symlink swap too),
SIGHUP reloads, a broken edit is rejected and the proxy keeps serving, and `rwproxy check`
reports the cluster. Ports are 0 in the file; the real ones are read from the proxy's log.
Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests.integration.cluster_fixture import ClusterHandle

pytestmark = pytest.mark.integration

START_SECONDS = 20.0
REPO = Path(__file__).resolve().parents[2]


def config_yaml(
    cluster: ClusterHandle,
    *,
    users: tuple[str, ...] = ("app",),
    lag: float = 10,
    extra: str = "",
) -> str:
    host, port = cluster.dns_server
    lines = [
        "listen: 127.0.0.1:0",
        "http: 127.0.0.1:0",
        "shutdown_timeout_seconds: 15",
        "discovery:",
        f'  nameservers: ["{host}:{port}"]',
        "users:",
        *(f"  - {{name: {u}, password: {cluster.credentials(u).password}}}" for u in users),
        "monitor:",
        f"  user: {cluster.monitor.user}",
        f"  password: {cluster.monitor.password}",
        "health:",
        "  interval_seconds: 0.5",
        f"  max_replication_lag_seconds: {lag}",
    ]
    return "\n".join(lines) + "\n" + extra


class ProxyProcess:
    """`python -m proxy serve --config PATH`, its log lines, and its ports."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", str(config_path)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = int(self.wait_for_log(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        self.http_port = int(self.wait_for_log(r"http endpoint on 127\.0\.0\.1:(\d+)").group(1))

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for_log(self, pattern: str, timeout: float = START_SECONDS, start: int = 0) -> Any:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    if match := regex.search(line):
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    log = "\n".join(self.lines)
                    raise AssertionError(f"no log line matching {pattern!r}:\n{log}")
                self._changed.wait(min(left, 0.2))

    def log(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def get(self, path: str) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def connect(self, cluster: ClusterHandle, user: str = "app") -> pymysql.Connection:
        credentials = cluster.credentials(user)
        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user=credentials.user,
            password=credentials.password,
            database=cluster.database,
            autocommit=True,
            connect_timeout=5,
            read_timeout=30,
        )

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def run_proxy(cluster: ClusterHandle, tmp_path: Path) -> Iterator[Any]:
    started: list[ProxyProcess] = []

    def run(text: str, name: str = "rwproxy.yaml") -> ProxyProcess:
        path = tmp_path / name
        if not path.exists():
            path.write_text(text)
        started.append(ProxyProcess(path))
        return started[-1]

    yield run
    for proxy in started:
        proxy.kill()


def wait_until(
    condition: Any, what: str, timeout: float = 20.0, proxy: ProxyProcess | None = None
) -> None:
    """Poll `condition`; on failure the message carries `proxy`'s log, if given."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            log = f"\nproxy log:\n{proxy.log()}" if proxy is not None else ""
            raise AssertionError(f"not within {timeout} s: {what}{log}")
        time.sleep(0.1)


def refused(proxy: ProxyProcess, cluster: ClusterHandle, user: str = "app") -> bool:
    try:
        proxy.connect(cluster, user).close()
    except pymysql.err.OperationalError:
        return True
    return False


# -- graceful shutdown ------------------------------------------------------------------------


def test_sigterm_lets_an_open_transaction_commit(
    run_proxy: Any, cluster: ClusterHandle, tmp_path: Path
) -> None:
    table = cluster.unique_name()
    cluster.query(cluster.primary, f"CREATE TABLE app.{table} (id INT PRIMARY KEY)")
    proxy = run_proxy(config_yaml(cluster))
    busy = proxy.connect(cluster)
    idle = proxy.connect(cluster)
    with busy.cursor() as cur:
        busy.begin()
        cur.execute(f"INSERT INTO {table} VALUES (1)")
        started = time.monotonic()
        proxy.signal(signal.SIGTERM)
        proxy.wait_for_log(r"drain: closed 1 idle clients, waiting for 1 busy ones")
        assert proxy.get("/readyz")[0] == 503, "not ready as soon as draining starts"
        assert refused(proxy, cluster), "new connections are refused while draining"
        cur.execute(f"INSERT INTO {table} VALUES (2)")
        busy.commit()
    assert proxy.wait(15) == 0
    assert time.monotonic() - started < 10, "the idle client did not hold the drain"
    assert cluster.query(cluster.primary, f"SELECT id FROM app.{table} ORDER BY id") == (
        (1,),
        (2,),
    )
    with pytest.raises(pymysql.err.OperationalError):
        idle.ping(reconnect=False)
    assert "received SIGTERM" in proxy.log() and "stopped" in proxy.log()


def test_sigterm_ends_a_transaction_that_never_ends_at_the_timeout(
    run_proxy: Any, cluster: ClusterHandle
) -> None:
    table = cluster.unique_name()
    cluster.query(cluster.primary, f"CREATE TABLE app.{table} (id INT PRIMARY KEY)")
    proxy = run_proxy(
        config_yaml(cluster).replace("shutdown_timeout_seconds: 15", "shutdown_timeout_seconds: 1")
    )
    stuck = proxy.connect(cluster)
    with stuck.cursor() as cur:
        stuck.begin()
        cur.execute(f"INSERT INTO {table} VALUES (1)")
    proxy.signal(signal.SIGTERM)
    assert proxy.wait(10) == 0
    assert "still busy after 1 s" in proxy.log()
    assert cluster.query(cluster.primary, f"SELECT COUNT(*) FROM app.{table}") == ((0,),)
    stuck.close()


# -- live reload ------------------------------------------------------------------------------


def test_edited_config_takes_effect_without_restart(run_proxy: Any, cluster: ClusterHandle) -> None:
    proxy = run_proxy(config_yaml(cluster, users=("app",), lag=10))
    assert refused(proxy, cluster, "admin")
    mark = len(proxy.lines)
    proxy.config_path.write_text(config_yaml(cluster, users=("app", "admin"), lag=3))
    proxy.wait_for_log(
        r"configuration reloaded .*: health\.max_replication_lag_seconds, users", start=mark
    )
    with proxy.connect(cluster, "admin") as conn, conn.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        assert cur.fetchone()[0].startswith("admin@")
    status = proxy.get("/status")[1]
    assert status["config"]["health"]["max_replication_lag_seconds"] == 3
    assert status["reload"]["result"] == "applied"

    mark = len(proxy.lines)
    proxy.config_path.write_text(config_yaml(cluster, users=("app", "admin"), lag=-5))
    line = proxy.wait_for_log(r"WARNING .*configuration reload rejected.*", start=mark).group(0)
    assert "health.max_replication_lag_seconds: must be at least 0" in line
    assert cluster.app.password not in line
    with proxy.connect(cluster, "admin") as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
    status = proxy.get("/status")[1]
    assert status["config"]["health"]["max_replication_lag_seconds"] == 3
    assert status["reload"]["result"] == "rejected"
    assert proxy.get("/readyz")[0] == 200


def test_sighup_reloads_and_restart_only_keys_are_kept(
    run_proxy: Any, cluster: ClusterHandle
) -> None:
    proxy = run_proxy(config_yaml(cluster, lag=10))
    before = os.stat(proxy.config_path)
    text = config_yaml(cluster, lag=20).replace("listen: 127.0.0.1:0", "listen: 127.0.0.1:1")
    proxy.config_path.write_text(text)
    # The same size is not guaranteed, so SIGHUP may race the poller: either is fine, the
    # point is that the change is applied and that the listener is kept.
    os.utime(proxy.config_path, ns=(before.st_atime_ns, before.st_mtime_ns))
    mark = len(proxy.lines)
    proxy.signal(signal.SIGHUP)
    proxy.wait_for_log(r"listen changed in .* but needs a restart", start=mark)
    wait_until(
        lambda: proxy.get("/status")[1]["config"]["health"]["max_replication_lag_seconds"] == 20,
        "the new lag limit is in force",
    )
    status = proxy.get("/status")[1]
    assert status["config"]["listen"] == "127.0.0.1:0"  # what is actually in force
    with proxy.connect(cluster) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")


def test_configmap_symlink_swap_is_noticed(
    run_proxy: Any, cluster: ClusterHandle, tmp_path: Path
) -> None:
    # The kubelet layout: config.yaml -> ..data/config.yaml, ..data -> ..<timestamp>/
    for version, lag in (("..2024_01", 10), ("..2024_02", 7)):
        (tmp_path / version).mkdir()
        (tmp_path / version / "config.yaml").write_text(config_yaml(cluster, lag=lag))
    os.symlink("..2024_01", tmp_path / "..data")
    os.symlink("..data/config.yaml", tmp_path / "config.yaml")
    proxy = run_proxy("", name="config.yaml")
    mark = len(proxy.lines)
    os.symlink("..2024_02", tmp_path / "..data_tmp")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    proxy.wait_for_log(r"configuration reloaded .*file changed", start=mark)
    assert proxy.get("/status")[1]["config"]["health"]["max_replication_lag_seconds"] == 7


# -- rwproxy check ----------------------------------------------------------------------------


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--config", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_reports_every_pod(cluster: ClusterHandle, tmp_path: Path) -> None:
    path = tmp_path / "rwproxy.yaml"
    path.write_text(config_yaml(cluster))
    result = run_check(path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[3:-1]}
    assert sorted(rows) == sorted(cluster.pods)
    assert rows[cluster.primary][2:6] == ["yes", "no", "-", "writer"]
    for pod in cluster.replicas:
        assert rows[pod][2] == "yes" and rows[pod][3] == "yes" and rows[pod][5] == "replica"


def test_check_fails_when_the_monitor_cannot_log_in(cluster: ClusterHandle, tmp_path: Path) -> None:
    path = tmp_path / "rwproxy.yaml"
    path.write_text(config_yaml(cluster).replace(cluster.monitor.password, "wrong-password"))
    result = run_check(path)
    assert result.returncode == 1
    assert "FAILED: not reachable" in result.stdout
    assert "wrong-password" not in result.stdout + result.stderr


def test_check_rejects_an_invalid_file(tmp_path: Path) -> None:
    path = tmp_path / "rwproxy.yaml"
    path.write_text("listen: nowhere\n")
    result = run_check(path)
    assert result.returncode == 2
    assert "listen" in result.stderr


# -- workers ------------------------------------------------------------------------------------


def free_port() -> int:
    """A port nothing listens on now (several workers cannot share port 0: each would get
    a port of its own)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_workers_share_the_port_and_stop_together(run_proxy: Any, cluster: ClusterHandle) -> None:
    port, http = free_port(), free_port()
    text = config_yaml(cluster).replace("listen: 127.0.0.1:0", f"listen: 127.0.0.1:{port}")
    text = text.replace("http: 127.0.0.1:0", f"http: 127.0.0.1:{http}") + "workers: 2\n"
    proxy = run_proxy(text)
    proxy.wait_for_log(r"worker 1 started")
    # Both workers listen (two log lines) and answer HTTP on port + index.
    proxy.wait_for_log(rf"listening on 127\.0\.0\.1:{port}")
    listening = f"listening on 127.0.0.1:{port}"
    wait_until(lambda: proxy.log().count(listening) == 2, "two listeners", proxy=proxy)
    for offset in (0, 1):
        with urllib.request.urlopen(f"http://127.0.0.1:{http + offset}/healthz", timeout=5) as r:
            assert r.status == 200
    # The kernel spreads connections over both: proxy ids are odd from worker 0, even
    # from worker 1 (unique across workers).
    seen: set[int] = set()
    for _ in range(40):
        conn = proxy.connect(cluster)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1")
                assert cursor.fetchall() == ((1,),)
            seen.add(conn.thread_id())
        finally:
            conn.close()
    assert len(seen) == 40, "proxy connection ids repeat across workers"
    assert {i % 2 for i in seen} == {0, 1}, f"one worker took every connection: {sorted(seen)}"
    proxy.signal(signal.SIGTERM)
    assert proxy.wait(20) == 0
    assert not accepting(port), "a worker still listens after the parent exited"


def test_a_worker_that_cannot_start_stops_the_rest(cluster: ClusterHandle, tmp_path: Path) -> None:
    """A port already taken (without SO_REUSEPORT) fails every worker at start: the parent
    stops and exits 1 instead of restarting them forever."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = config_yaml(cluster).replace("listen: 127.0.0.1:0", f"listen: 127.0.0.1:{port}")
        path = tmp_path / "rwproxy.yaml"
        path.write_text(text + "workers: 2\n")
        done = subprocess.run(
            [sys.executable, "-m", "proxy", "serve", "--config", str(path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=START_SECONDS,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    assert "exited at start" in done.stderr, done.stderr


def accepting(port: int) -> bool:
    """True when something still accepts connections on `port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
