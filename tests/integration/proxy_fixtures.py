"""Fixtures that run a real rwproxy (in a thread) in front of the local cluster.

`proxy`: a proxy on a free port for one test. `start_proxy`: a factory for proxies with
configuration overrides (`start_proxy(routing=RoutingConfig(...))`), all stopped at the end
of the test, with a short drain so that a stuck session cannot stall the teardown.
`general_log`: every pod's general log switched to `log_output=TABLE` for one test, so that
a test can prove which server ran a statement by looking up a unique marker comment in each
pod's `mysql.general_log` (MariaDB keeps comments there). `GeneralLog` is also usable
directly, as a context manager, by module-scoped fixtures.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pytest

from tests.integration.cluster_fixture import ClusterHandle
from tests.support.proxy_harness import ProxyThread, cluster_config

LOG_WAIT_SECONDS = 2.0


@pytest.fixture
def proxy(cluster: object) -> Iterator[ProxyThread]:
    """A proxy on a free port for one test, stopped (drained) afterwards."""
    started = ProxyThread(cluster_config()).start()
    try:
        yield started
    finally:
        started.stop()


TEST_DRAIN_SECONDS = 2.0


@pytest.fixture
def start_proxy(cluster: object) -> Iterator[Callable[..., ProxyThread]]:
    """`start_proxy(**config_overrides)`: a started proxy, stopped after the test."""
    started: list[ProxyThread] = []

    def start(**overrides: Any) -> ProxyThread:
        overrides.setdefault("shutdown_timeout_seconds", TEST_DRAIN_SECONDS)
        started.append(ProxyThread(cluster_config(**overrides)).start())
        return started[-1]

    try:
        yield start
    finally:
        for running in reversed(started):
            running.stop()


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One statement a pod logged: which pod, which server thread, what text."""

    pod: str
    thread_id: int
    command: str
    argument: str


class GeneralLog:
    """The pods' general logs as tables, with markers unique to one user of this object.

    `marker()` returns a fresh comment such as ``/* rwt-3f9a0c1b2d-17 */`` to put in a
    statement; `where(markers)` reads every pod's log once (one query per pod, however many
    markers) and says on which pods each marker was logged. Statements applied by a
    replica's replication threads are not counted: only client sessions (`user_host` of a
    real account) are, so "on a replica" always means "a client sent it there".
    """

    def __init__(self, cluster: ClusterHandle) -> None:
        self.cluster = cluster
        self.run = uuid.uuid4().hex[:10]
        self._count = 0
        self._saved: dict[str, tuple[Any, Any]] = {}
        self._pattern = re.compile(rf"rwt-{self.run}-(\d+)")

    def __enter__(self) -> GeneralLog:
        self.enable()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.disable()

    def enable(self) -> None:
        for pod in self.cluster.pods:
            with self._admin(pod) as cursor:
                cursor.execute("SELECT @@global.general_log, @@global.log_output")
                self._saved[pod] = cursor.fetchone()
                cursor.execute("SET GLOBAL log_output = 'TABLE', general_log = ON")

    def disable(self) -> None:
        """Restore each pod's settings and empty its log table (never replicated)."""
        for pod, (enabled, output) in self._saved.items():
            with self._admin(pod) as cursor:
                cursor.execute("SET GLOBAL general_log = %s, log_output = %s", (enabled, output))
                cursor.execute("SET SESSION sql_log_bin = 0")
                cursor.execute("TRUNCATE TABLE mysql.general_log")
        self._saved.clear()

    def marker(self) -> str:
        """A comment no other statement carries: ``/* rwt-<run>-<n> */``."""
        self._count += 1
        return f"/* rwt-{self.run}-{self._count} */"

    def key(self, marker: str) -> int:
        """The number in a marker (how `where()` names it)."""
        found = self._pattern.search(marker)
        assert found is not None, f"not a marker of this log: {marker!r}"
        return int(found.group(1))

    def entries(self) -> list[LogEntry]:
        """Every client statement carrying one of this object's markers, on every pod."""
        found = []
        for pod in self.cluster.pods:
            with self._admin(pod) as cursor:
                cursor.execute(
                    "SELECT thread_id, command_type, CONVERT(argument USING utf8mb4)"
                    " FROM mysql.general_log"
                    " WHERE argument LIKE %s AND user_host NOT LIKE %s",
                    (f"%rwt-{self.run}-%", "[%"),
                )
                found += [LogEntry(pod, int(t), str(c), str(a)) for t, c, a in cursor.fetchall()]
        return found

    def where(
        self, markers: Iterable[str], timeout: float = LOG_WAIT_SECONDS
    ) -> dict[int, list[LogEntry]]:
        """For each marker's number, the log entries carrying it (waits until all appear)."""
        wanted = {self.key(m) for m in markers}
        deadline = time.monotonic() + timeout
        while True:
            seen: dict[int, list[LogEntry]] = {key: [] for key in wanted}
            for entry in self.entries():
                for number in {int(n) for n in self._pattern.findall(entry.argument)}:
                    seen.setdefault(number, []).append(entry)
            if all(seen[key] for key in wanted) or time.monotonic() > deadline:
                return seen
            time.sleep(0.05)

    def _admin(self, pod: str) -> Any:
        return _AdminCursor(self.cluster, pod)


class _AdminCursor:
    """An admin cursor on one pod whose own statements stay out of the general log."""

    def __init__(self, cluster: ClusterHandle, pod: str) -> None:
        self._conn = cluster.connect(pod, "admin")

    def __enter__(self) -> Any:
        cursor = self._conn.cursor()
        cursor.execute("SET SESSION sql_log_off = 1")
        return cursor

    def __exit__(self, *exc: object) -> None:
        self._conn.close()


@pytest.fixture
def general_log(cluster: ClusterHandle) -> Iterator[GeneralLog]:
    """Every pod's general log in `mysql.general_log` for one test; emptied afterwards."""
    with GeneralLog(cluster) as log:
        yield log


@pytest.fixture(scope="module")
def primary_id(cluster: ClusterHandle) -> int:
    """mysql-0's @@server_id: a statement that answers with it ran on the writer."""
    ((server_id,),) = cluster.query(cluster.primary, "SELECT @@server_id")
    return int(server_id)
