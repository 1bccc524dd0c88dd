"""The things a benchmark connects to: the primary directly, haproxy, and rwproxy in two modes.

Theory of operation
-------------------
A `Target` is an address plus, for a proxy, the child process whose CPU and memory are
measured. The baselines are deliberately minimal:

- ``direct``: the primary pod (mysql-0, 127.0.0.10:3306); no process in between.
- ``haproxy``: the Debian haproxy in TCP mode in front of the primary, one thread (rwproxy
  runs one event loop, so both get one core's worth of parallelism), no health checks (a
  TCP check is a handshake-less connect, which MariaDB counts toward max_connect_errors).
- ``rwproxy``: ``python -m proxy serve --config config/local.yaml`` with
  ``RWPROXY_LISTEN=127.0.0.1:<free port>`` and ``RWPROXY_HTTP=null``; ``routing.mode`` is the
  default ``split`` (reads to the replicas) or ``writer_only``
  (``RWPROXY_ROUTING__MODE=writer_only``: everything to the primary, haproxy's job done at L7).

A proxy is ready when a real login through it works; an rwproxy additionally when
``SHOW RWPROXY STATUS`` reports every pod up, so no run starts before the replicas take reads.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pymysql

from bench import procs, wire

REPO: Final = Path(__file__).resolve().parents[1]
PRIMARY: Final = ("127.0.0.10", 3306)
REPLICA: Final = ("127.0.0.11", 3306)
APP_USER: Final = ("app", "app-password")
LISTEN_HOST: Final = "127.0.0.1"

HAPROXY_CONFIG: Final = """\
global
    maxconn 8000
    nbthread {threads}
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
listen mysql
    bind {listen_host}:{listen_port}
    server mysql-0 {host}:{port}
"""


class Unavailable(RuntimeError):
    """A target cannot run here (a missing option in this proxy version, say)."""


@dataclass
class Target:
    name: str
    address: tuple[str, int]
    child: procs.Child | None = None
    ready: procs.Probe | None = None  # True when the proxy serves (see the module docstring)

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None else None

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()


def direct(name: str = "direct", address: tuple[str, int] = PRIMARY) -> Target:
    return Target(name, address)


def can_log_in(address: tuple[str, int], database: str = "app") -> bool:
    wire.Connection.open(address, *APP_USER, database).close()
    return True


def start_haproxy(workdir: Path, threads: int = 1, backend: tuple[str, int] = PRIMARY) -> Target:
    port = procs.free_port()
    config = workdir / "haproxy.cfg"
    config.write_text(
        HAPROXY_CONFIG.format(
            threads=threads,
            listen_host=LISTEN_HOST,
            listen_port=port,
            host=backend[0],
            port=backend[1],
        )
    )
    child = procs.start_child("haproxy", ["haproxy", "-db", "-f", str(config)], workdir)
    address = (LISTEN_HOST, port)
    target = Target("haproxy", address, child, lambda: can_log_in(address))
    _ready_or_stop(target)
    return target


def rwproxy_env(port: int, mode: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "RWPROXY_LISTEN": f"{LISTEN_HOST}:{port}", "RWPROXY_HTTP": "null"}
    if mode is not None:
        env["RWPROXY_ROUTING__MODE"] = mode
    return {**env, **(extra or {})}


def start_rwproxy(
    name: str, workdir: Path, mode: str | None = None, extra_env: dict[str, str] | None = None
) -> Target:
    """Start `python -m proxy serve`; mode None keeps the configuration's routing mode."""
    port = procs.free_port()
    argv = [sys.executable, "-m", "proxy", "serve", "--config", str(REPO / "config/local.yaml")]
    child = procs.start_child(name, argv, workdir, rwproxy_env(port, mode, extra_env))
    address = (LISTEN_HOST, port)
    target = Target(name, address, child, lambda: all_pods_up(address))
    try:
        _ready_or_stop(target)
    except procs.StartError as error:
        if mode is not None and child.process.returncode and "ROUTING__MODE" in str(error):
            raise Unavailable(f"this rwproxy rejects RWPROXY_ROUTING__MODE={mode}") from error
        raise
    return target


def all_pods_up(address: tuple[str, int]) -> bool:
    """True when the proxy logs us in and `SHOW RWPROXY STATUS` says every pod is up."""
    conn = pymysql.connect(
        host=address[0],
        port=address[1],
        user=APP_USER[0],
        password=APP_USER[1],
        ssl_disabled=True,
        connect_timeout=5,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW RWPROXY STATUS")
            states = [row[3] for row in cur.fetchall()]
    finally:
        conn.close()
    return bool(states) and all(state == "up" for state in states)


def wait_ready(target: Target, timeout: float = 60.0) -> None:
    """A running proxy serves again (after another session's turn on the cluster)."""
    if target.child is not None and target.ready is not None:
        procs.wait_ready(target.child, target.ready, timeout)


def _ready_or_stop(target: Target) -> None:
    assert target.child is not None and target.ready is not None
    try:
        procs.wait_ready(target.child, target.ready)
    except procs.StartError as error:
        message = f"{error}\n{target.child.log_tail()}"
        target.child.stop()
        raise procs.StartError(message) from error
