"""`rwproxy demo`: the local cluster, the proxy, and a short mixed workload through it.

The workload makes each statement report where it ran, so the table the demo prints
is evidence, not bookkeeping: reads select `@@server_id`, and writes insert
`@@server_id` into the row they write (the value is computed by the server that runs
the INSERT; row-based replication copies the value, not the expression). The pods'
server ids are learned by asking each pod directly.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql

from proxy.config import load_file

Cursor = Any  # PyMySQL ships no type information
Step = Callable[[Cursor], list[int]]

TABLE = "rwproxy_demo"


def run_demo(config_path: str) -> int:
    config = load_file(config_path, os.environ)
    _run([sys.executable, "-m", "proxy", "cluster", "up"])
    pods = _pod_server_ids()
    log = Path(os.environ.get("RWPROXY_CLUSTER_DIR", "/tmp/rwproxy-cluster")) / "demo-proxy.log"
    pid = _start_proxy(config_path, log, config.listen.host, config.listen.port)
    print(f"\nrwproxy is running as PID {pid} on {config.listen} (log: {log})\n")
    user = config.users[0]
    conn = pymysql.connect(
        host=config.listen.host,
        port=config.listen.port,
        user=user.name,
        password=user.password or "",
        database="app",
        autocommit=True,
    )
    with conn.cursor() as cur:
        results = [(name, Counter(step(cur))) for name, step in _workload()]
    conn.close()
    _print_table(results, pods)
    print(
        f"\nConnect yourself:  mariadb --no-defaults -h {config.listen.host} "
        f"-P {config.listen.port} -u {user.name} -p{user.password} app\n"
        f"Stop the proxy:    kill {pid}      Stop the cluster:  rwproxy cluster down"
    )
    return 0


def _workload() -> list[tuple[str, Step]]:
    return [
        ("setup: CREATE TABLE (DDL)", _create_table),
        ("INSERT, autocommit", lambda cur: _insert(cur, 20)),
        ("plain SELECT", lambda cur: _select(cur, "SELECT @@server_id", 40)),
        ("SELECT right after an INSERT", _read_after_write),
        ("BEGIN ... SELECT ... COMMIT", _in_transaction),
        ("SELECT ... FOR UPDATE", lambda cur: _select(cur, _for_update(), 10)),
        ("START TRANSACTION READ ONLY", _read_only_transaction),
        ("/* rwproxy:primary */ SELECT", lambda cur: _select(cur, _hinted(), 10)),
    ]


def _create_table(cur: Cursor) -> list[int]:
    cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
    cur.execute(f"CREATE TABLE {TABLE} (id INT AUTO_INCREMENT PRIMARY KEY, server_id INT)")
    return _written_by(cur, 0)


def _insert(cur: Cursor, count: int) -> list[int]:
    for _ in range(count):
        cur.execute(f"INSERT INTO {TABLE} (server_id) VALUES (@@server_id)")
    return _written_by(cur, count)


def _written_by(cur: Cursor, count: int) -> list[int]:
    if not count:
        cur.execute("SELECT @@server_id /* rwproxy:primary */")
        return [int(cur.fetchone()[0])]
    cur.execute(f"SELECT server_id FROM {TABLE} ORDER BY id DESC LIMIT {count}")
    return [int(row[0]) for row in cur.fetchall()]


def _select(cur: Cursor, sql: str, count: int) -> list[int]:
    served = []
    for _ in range(count):
        cur.execute(sql)
        served.append(int(cur.fetchone()[0]))
    return served


def _read_after_write(cur: Cursor) -> list[int]:
    served = []
    for _ in range(10):
        cur.execute(f"INSERT INTO {TABLE} (server_id) VALUES (@@server_id)")
        new_id = cur.lastrowid
        cur.execute(f"SELECT @@server_id, COUNT(*) FROM {TABLE} WHERE id = {new_id}")
        server_id, found = cur.fetchone()
        if found != 1:
            raise SystemExit(f"read-your-writes violated: row {new_id} not visible")
        served.append(int(server_id))
    return served


def _in_transaction(cur: Cursor) -> list[int]:
    served = []
    for _ in range(5):
        cur.execute("BEGIN")
        cur.execute("SELECT @@server_id")
        served.append(int(cur.fetchone()[0]))
        cur.execute("COMMIT")
    return served


def _read_only_transaction(cur: Cursor) -> list[int]:
    served = []
    for _ in range(5):
        cur.execute("START TRANSACTION READ ONLY")
        cur.execute("SELECT @@server_id")
        served.append(int(cur.fetchone()[0]))
        cur.execute("COMMIT")
    return served


def _for_update() -> str:
    return f"SELECT @@server_id FROM {TABLE} ORDER BY id LIMIT 1 FOR UPDATE"


def _hinted() -> str:
    return "SELECT /* rwproxy:primary */ @@server_id"


def _print_table(results: list[tuple[str, Counter[int]]], pods: dict[int, str]) -> None:
    width = max(len(name) for name, _ in results)
    print(f"{'statement kind':<{width}}  statements  served by")
    print(f"{'-' * width}  ----------  ---------")
    for name, served in results:
        where = ", ".join(
            f"{pods.get(sid, f'server_id {sid}')} x{n}" for sid, n in sorted(served.items())
        )
        print(f"{name:<{width}}  {sum(served.values()):>10}  {where}")


def _pod_server_ids() -> dict[int, str]:
    """server_id -> pod name, asking each pod found in the cluster DNS."""
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.2"]
    resolver.port = 5353
    pods: dict[int, str] = {}
    for i in range(16):
        name = f"mysql-{i}"
        try:
            answer = resolver.resolve(f"{name}.mysql-h.default.svc.cluster.local", "A")
        except Exception:
            break
        conn = pymysql.connect(
            host=str(answer[0]), port=3306, user="monitor", password="monitor-password"
        )
        with conn.cursor() as cur:
            cur.execute("SELECT @@server_id")
            pods[int(cur.fetchone()[0])] = name
        conn.close()
    return pods


def _start_proxy(config_path: str, log: Path, host: str, port: int) -> int:
    if _listening(host, port):
        raise SystemExit(f"something already listens on {host}:{port}: stop it first")
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", config_path],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the proxy exited with {process.returncode}; see {log}")
        if _listening(host, port):
            return process.pid
        time.sleep(0.1)
    process.terminate()
    raise SystemExit(f"the proxy did not listen on {host}:{port} within 20 s; see {log}")


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, check=False)
    if result.returncode != 0:
        raise SystemExit(result.returncode)
