"""Cluster fixtures: the local cluster (real mariadbd pods and dnsmasq on loopback).

A plugin module (tests/conftest.py: pytest_plugins), so that every folder (integration, fuzz)
shares one `cluster` fixture: importing it into another conftest would define it twice, and
the second definition would wait for the machine-wide lock the first one holds.

`cluster` (session): brought up once per run in `$RWPROXY_CLUSTER_DIR` or /tmp/rwproxy-cluster,
the state dir the CLI uses, so a cluster already running is reused, and left running at the end
(CI's `.ci/run` stops it). `disrupted_cluster` (function): the same handle, for tests that stop,
move or lag pods; its finalizer restores a healthy cluster so tests pass in any order.
When a test using the cluster fails, the tail of each pod's error log is added to its report.

The pods' addresses are fixed, so a machine has one cluster: a test session holds a machine-wide
lock while it uses it, and a second session (another engineer's, say) waits for its turn rather
than stopping and moving pods under the first one's feet.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from proxy.devcluster import process, spec
from proxy.devcluster.cluster import Cluster
from proxy.devcluster.errors import ClusterError
from tests.integration.cluster_fixture import ClusterHandle

_LOG_TAIL_LINES = 15
SESSION_LOCK = Path(tempfile.gettempdir()) / "rwproxy-integration.lock"
SESSION_LOCK_TIMEOUT_SECONDS = 900.0


@contextmanager
def exclusive_use(path: Path, timeout: float) -> Iterator[None]:
    """Hold an flock on path, waiting at most timeout for another test session to finish."""
    with open(path, "a") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    pytest.fail(f"another test session held {path} for {timeout:.0f} s")
                time.sleep(0.2)
        yield


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterHandle]:
    """The running cluster, healthy at the start of the session and ours until its end."""
    with exclusive_use(SESSION_LOCK, SESSION_LOCK_TIMEOUT_SECONDS):
        dev_cluster = Cluster(spec.default_state_dir(os.environ))
        try:
            dev_cluster.up()
            handle = ClusterHandle(dev_cluster)
            handle.restore()  # undo what an interrupted earlier run left stopped, moved or lagging
        except ClusterError as exc:
            failure = f"cannot bring the local cluster up: {exc}"
        else:
            yield handle
            return
        pytest.fail(failure, pytrace=False)  # outside `except`: no chained traceback


@pytest.fixture
def disrupted_cluster(cluster: ClusterHandle) -> Iterator[ClusterHandle]:
    """The cluster, for a test that breaks it; restored to health afterwards."""
    yield cluster
    cluster.restore()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    """Attach the pods' error-log tails to the report of a failed test that used the cluster."""
    report = yield
    if report.failed and "cluster" in getattr(item, "fixturenames", ()):
        state_dir = spec.default_state_dir(os.environ)
        for pod in sorted((state_dir / "pods").glob("*/error.log")):
            text = process.tail(pod, _LOG_TAIL_LINES)
            report.sections.append((f"{pod.parent.name} error.log (tail)", text))
    return report
