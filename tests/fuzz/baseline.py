"""What must be back at rest after hostile clients: sessions, pools, tasks, fds, RSS.

Theory of operation
-------------------
Two ways to look, one `Snapshot`:

- `inside(proxy_thread)`: the proxy runs in the test process (tests/support/proxy_harness.py),
  so its internals are readable on its own loop: the session registry, every pool's
  idle/in-use/opening counts, and `asyncio.all_tasks()`. File descriptors and RSS are the
  *process's* (/proc/self), the test's own included: the fuzz client closes every socket it
  opens, so comparing before and after is still fair, and the in-process figure is only
  used for fds (RSS in-process also counts hypothesis; its bound is loose).
- `outside(pid, http)`: a `python -m proxy serve` child: /proc/<pid>/fd and VmRSS, which
  are the proxy's alone, and sessions and pools from its /status JSON. Tasks are not visible
  from outside; the in-process run covers them.

Idle pool connections are sockets too, and a pool may legitimately keep more of them after
a burst than before (up to max_size); `fds_less_idle` removes them from the comparison.
`settle()` polls until nothing is in use, opening or open as a session (pool resets run in
background tasks after a session ends), then takes the snapshot.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.proxy_harness import ProxyThread


@dataclass(frozen=True)
class Snapshot:
    sessions: int
    pool_idle: int
    pool_in_use: int
    pool_opening: int
    pools_over_max: int  # pools holding more idle connections than their max_size
    tasks: int | None
    fds: int
    rss_kib: int

    @property
    def fds_less_idle(self) -> int:
        return self.fds - self.pool_idle

    @property
    def at_rest(self) -> bool:
        return self.sessions == 0 and self.pool_in_use == 0 and self.pool_opening == 0

    def describe(self) -> str:
        tasks = "?" if self.tasks is None else str(self.tasks)
        return (
            f"sessions {self.sessions}, pool idle {self.pool_idle} in use {self.pool_in_use} "
            f"opening {self.pool_opening}, tasks {tasks}, fds {self.fds} "
            f"({self.fds_less_idle} without idle pool connections), RSS {self.rss_kib} KiB"
        )


def fd_count(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def inside(proxy: ProxyThread) -> Snapshot:
    def read(p: Any) -> tuple[int, list[Any], int]:
        stats = [pool.stats() for pool in p.ctx.pools.pools()]
        return len(p.ctx.sessions), stats, len(asyncio.all_tasks())

    sessions, stats, tasks = proxy.call(read)
    return Snapshot(
        sessions,
        sum(s.idle for s in stats),
        sum(s.in_use for s in stats),
        sum(s.opening for s in stats),
        sum(1 for s in stats if s.idle > s.max_size),
        tasks - 1,  # the `call()` task itself
        fd_count(),
        rss_kib(),
    )


def outside(pid: int, http: tuple[str, int]) -> Snapshot:
    url = f"http://{http[0]}:{http[1]}/status"
    with urllib.request.urlopen(url, timeout=10) as answer:
        status = json.load(answer)
    pools = [pod["pool"] for pod in status["pods"]]
    return Snapshot(
        int(status["sessions"]["open"]),
        sum(p["idle"] for p in pools),
        sum(p["in_use"] for p in pools),
        sum(p["opening"] for p in pools),
        sum(1 for p in pools if p["idle"] > p["max"]),
        None,
        fd_count(pid),
        rss_kib(pid),
    )


def settle(look: Callable[[], Snapshot], timeout: float = 15.0) -> Snapshot:
    """The first snapshot at rest (see the module docstring), or the last one at `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        snap = look()
        if snap.at_rest or time.monotonic() > deadline:
            return snap
        time.sleep(0.1)


def restored(before: Snapshot, look: Callable[[], Snapshot], timeout: float = 15.0) -> Snapshot:
    """Poll until fds and tasks are back to `before` (or `timeout`); the last snapshot."""
    deadline = time.monotonic() + timeout
    while True:
        snap = settle(look, timeout)
        same_fds = snap.fds_less_idle <= before.fds_less_idle
        same_tasks = snap.tasks is None or before.tasks is None or snap.tasks <= before.tasks
        if (snap.at_rest and same_fds and same_tasks) or time.monotonic() > deadline:
            return snap
        time.sleep(0.2)


def problems(before: Snapshot, after: Snapshot, rss_slack_kib: int) -> list[str]:
    """What is not back at rest, in words (empty: all restored)."""
    found = []
    if not after.at_rest:
        found.append(f"not at rest: {after.describe()}")
    if after.pools_over_max:
        found.append(f"{after.pools_over_max} pools keep more idle connections than max_size")
    if after.fds_less_idle > before.fds_less_idle:
        found.append(f"fds grew: {before.describe()} -> {after.describe()}")
    if after.tasks is not None and before.tasks is not None and after.tasks > before.tasks:
        found.append(f"asyncio tasks grew: {before.tasks} -> {after.tasks}")
    if after.rss_kib - before.rss_kib > rss_slack_kib:
        found.append(f"RSS grew by {after.rss_kib - before.rss_kib} KiB (> {rss_slack_kib})")
    return found
