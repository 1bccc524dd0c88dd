"""The bench's surroundings: the machine-wide lock, the local cluster, the data set, machine facts.

Theory of operation
-------------------
The local cluster's addresses are fixed, so a machine has one cluster, shared with whoever runs
the integration tests. Their pytest sessions hold an flock on ``/tmp/rwproxy-integration.lock``
while they use it; the benchmark takes the same lock (`ClusterTurns`) whenever it measures, so
neither measures (or breaks) the other. Under the lock the cluster is brought up (a running,
healthy cluster is reused as is; pods are never stopped or moved), and sysbench gets a database
of its own, ``rwbench`` (its table names are fixed), filled from scratch and dropped at the end.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import importlib.metadata
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pymysql

from bench import sysbench
from bench.procs import steal_and_total_ticks
from bench.targets import PRIMARY, REPO
from proxy import compiled

LOCK_PATH: Final = Path(tempfile.gettempdir()) / "rwproxy-integration.lock"
REPLICAS: Final = (("127.0.0.11", 3306), ("127.0.0.12", 3306))
ADMIN: Final = ("admin", "admin-password")
DATA: Final = sysbench.DataSet("app", "app-password", "rwbench")


LOCK_POLL_SECONDS = 1.0  # how often a waiter tries the lock (test sessions: every 0.2 s)
TURN_GAP_SECONDS = 2.5 * LOCK_POLL_SECONDS


@contextlib.contextmanager
def exclusive_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold an flock on `path`, waiting up to `timeout` seconds for the current holder."""
    with open(path, "a") as lock:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} still held after {timeout:.0f} s") from None
                if not told:
                    print(f"waiting for {path} (an integration test session holds it)")
                    told = True
                time.sleep(LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (children inherit it); returns the new value."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def cluster_up() -> None:
    """`rwproxy cluster up`: starts what is missing, leaves a healthy cluster alone."""
    rwproxy = Path(sys.executable).parent / "rwproxy"
    subprocess.run([str(rwproxy), "cluster", "up"], cwd=REPO, check=True, capture_output=True)


def admin(address: tuple[str, int] = PRIMARY) -> pymysql.Connection:
    return pymysql.connect(
        host=address[0],
        port=address[1],
        user=ADMIN[0],
        password=ADMIN[1],
        ssl_disabled=True,
        autocommit=True,
    )


def _execute(address: tuple[str, int], *statements: str) -> list[tuple[object, ...]]:
    conn = admin(address)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
            return list(cur.fetchall())
    finally:
        conn.close()


def wait_replicated(timeout: float = 60.0) -> None:
    """Every replica has applied everything the primary has written (MASTER_GTID_WAIT)."""
    ((position,),) = _execute(PRIMARY, "SELECT @@gtid_binlog_pos")
    for replica in REPLICAS:
        ((waited,),) = _execute(replica, f"SELECT MASTER_GTID_WAIT('{position}', {timeout})")
        if waited != 0:
            raise RuntimeError(f"replica {replica} did not reach {position} in {timeout:.0f} s")


def create_dataset(data: sysbench.DataSet) -> None:
    """A fresh sysbench database on the primary, filled and replicated."""
    _execute(
        PRIMARY,
        f"DROP DATABASE IF EXISTS {data.database}",
        f"CREATE DATABASE {data.database}",
        f"GRANT ALL ON {data.database}.* TO '{data.user}'@'%'",
    )
    sysbench.prepare(data, PRIMARY)
    wait_replicated()


def drop_dataset(data: sysbench.DataSet) -> None:
    _execute(
        PRIMARY,
        f"DROP DATABASE IF EXISTS {data.database}",
        f"REVOKE ALL ON {data.database}.* FROM '{data.user}'@'%'",
    )


class ClusterTurns:
    """Turns on the shared cluster: each holds the lock, with the cluster up, for one block.

    Integration test sessions wait at most 15 minutes for the lock, so a long benchmark
    does not hold it from start to end: it takes a turn per block (set-up, one sysbench
    round, churn, profile, streaming, idle clients; each well under 15 minutes) and lets a
    waiting test session run in between. Targets within a round, and so every same-round
    ratio, are always measured inside one turn. CPU steal is summed over the turns only.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.waited_seconds = 0.0
        self._steal = self._ticks = 0
        self._last_ended: float | None = None

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        # Waiters poll the lock every second; taking it again at once after a turn would
        # starve them (seen: a test session waited out a whole fuzz run). So a turn that
        # follows another one starts TURN_GAP_SECONDS after it at the earliest.
        if self._last_ended is not None:
            time.sleep(max(0.0, self._last_ended + TURN_GAP_SECONDS - time.monotonic()))
        asked = time.monotonic()
        with exclusive_lock(LOCK_PATH, self.timeout):
            self.waited_seconds += time.monotonic() - asked
            cluster_up()
            steal, ticks = steal_and_total_ticks()
            try:
                yield
            finally:
                steal_after, ticks_after = steal_and_total_ticks()
                self._steal += steal_after - steal
                self._ticks += ticks_after - ticks
        self._last_ended = time.monotonic()

    @property
    def steal_percent(self) -> float | None:
        return 100 * self._steal / self._ticks if self._ticks else None


def _command_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not installed"
    return (done.stdout or done.stderr).strip().splitlines()[0]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git_commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    dirty = " (uncommitted changes)" if git("status", "--porcelain", "--", "proxy") else ""
    return git("log", "-1", "--format=%h %s") + dirty


def machine_facts() -> dict[str, str]:
    ((mariadb,),) = _execute(PRIMARY, "SELECT VERSION()")
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "rwproxy commit": git_commit(),
        "rwproxy build": compiled.describe(),
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "MariaDB": str(mariadb),
        "haproxy": _command_line(["haproxy", "-v"]),
        "sysbench": sysbench.version(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "event loop": _event_loop(),
        "open files limit": str(resource.getrlimit(resource.RLIMIT_NOFILE)[0]),
    }


def _event_loop() -> str:
    try:
        return f"uvloop {importlib.metadata.version('uvloop')}"
    except importlib.metadata.PackageNotFoundError:
        return "asyncio"
