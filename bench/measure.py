"""One measurement at a time: a sysbench run, a streamed result, a crowd of idle clients.

Each function returns plain records; what they mean across rounds (medians, same-round
ratios) is `bench.report`'s business. CPU is the proxy process's utime + stime across the
run divided by the statements sysbench completed in it, so connection set-up and the proxy's
background health checks (a few per second) are included: that is what running it costs.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Final

from bench import procs, sysbench, wire
from bench.targets import APP_USER, Target

# Processes that are part of every measurement (the pods, cluster DNS, the load generator, the
# profiler); the proxies are known by pid.
OURS: Final = frozenset({"mariadbd", "sysbench", "haproxy", "py-spy", "dnsmasq"})
STREAM_ROWS: Final = 200_000
STREAM_SQL: Final = f"SELECT REPEAT('x', 1000) FROM seq_1_to_{STREAM_ROWS}"


@dataclass(frozen=True)
class Sample:
    """One sysbench run against one target in one round."""

    workload: str
    threads: int
    round: int
    target: str
    result: sysbench.Result
    cpu_seconds: float | None  # None: nothing between client and pod
    foreign_cpu_seconds: float = 0.0  # used meanwhile by processes not in the benchmark
    user_cpu_seconds: float | None = None  # the user-space part of cpu_seconds

    @property
    def foreign_percent(self) -> float:
        """How much of the machine others took during the run (100 = all cores)."""
        seconds = self.result.seconds or 1.0
        return 100 * self.foreign_cpu_seconds / (seconds * (os.cpu_count() or 1))

    @property
    def user_percent(self) -> float | None:
        """The share of the proxy's CPU spent in user space (the rest is the kernel's)."""
        if self.cpu_seconds is None or self.user_cpu_seconds is None or not self.cpu_seconds:
            return None
        return 100 * self.user_cpu_seconds / self.cpu_seconds

    @property
    def cpu_per_1k(self) -> float | None:
        """Proxy CPU seconds per 1,000 statements (per 1,000 connections for churn)."""
        count = self.result.events if self.workload == "churn" else self.result.queries
        if self.cpu_seconds is None or not count:
            return None
        return self.cpu_seconds / count * 1000


def run_sysbench(
    target: Target,
    workload: sysbench.Workload,
    data: sysbench.DataSet,
    *,
    threads: int,
    seconds: float,
    round_no: int = 0,
    bystanders: frozenset[int] = frozenset(),
) -> Sample:
    """One sysbench run; `bystanders` are our other processes (idle proxies), not "others"."""
    argv = sysbench.command(workload, target.address, data, threads=threads, seconds=seconds)
    pid = target.pid
    table = procs.cpu_table()
    before = procs.cpu_times(pid) if pid is not None else None
    result = sysbench.run(argv, timeout=seconds + 120)
    cpu = procs.cpu_times(pid).since(before) if pid is not None and before is not None else None
    # A proxy's worker processes (its children, with `workers: 2`) are part of it, not "others".
    proxies = {*bystanders, *([pid] if pid is not None else [])}
    ours = {os.getpid(), *proxies, *(child for p in proxies for child in procs.children(p))}
    foreign = procs.foreign_cpu(table, procs.cpu_table(), ours, OURS)
    return Sample(
        workload.name,
        threads,
        round_no,
        target.name,
        result,
        cpu.total if cpu is not None else None,
        foreign,
        cpu.user if cpu is not None else None,
    )


@dataclass(frozen=True)
class StreamSample:
    target: str
    round: int
    bytes: int
    seconds: float
    base_kib: int | None  # the proxy's RSS just before the query
    peak_kib: int | None  # its highest sampled RSS during the query
    cpu_seconds: float | None = None  # the proxy's CPU during the query

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6

    @property
    def growth_kib(self) -> int | None:
        if self.base_kib is None or self.peak_kib is None:
            return None
        return self.peak_kib - self.base_kib


def stream(target: Target, round_no: int, database: str = "app") -> StreamSample:
    """Read STREAM_SQL's ~200 MB through `target` with the raw client; sample the proxy's RSS."""
    conn = wire.Connection.open(target.address, *APP_USER, database, timeout=120)
    try:
        conn.query("SELECT 1")  # the session has its backend before the clock starts
        pid = target.pid
        if pid is None:
            return _timed_stream(conn, target.name, round_no)
        base, cpu = procs.rss_kib(pid), procs.cpu_seconds(pid)
        with procs.RssSampler(pid) as sampler:
            sample = _timed_stream(conn, target.name, round_no)
        cpu = procs.cpu_seconds(pid) - cpu
        return dataclasses.replace(
            sample, base_kib=base, peak_kib=sampler.peak_kib, cpu_seconds=cpu
        )
    finally:
        conn.close()


def _timed_stream(conn: wire.Connection, name: str, round_no: int) -> StreamSample:
    start = time.perf_counter()
    size = conn.query(STREAM_SQL)
    return StreamSample(name, round_no, size, time.perf_counter() - start, None, None)


@dataclass(frozen=True)
class IdleSample:
    clients: int
    base_kib: int
    rss_kib: int
    open_seconds: float  # how long logging them all in took

    @property
    def kib_per_client(self) -> float:
        return (self.rss_kib - self.base_kib) / self.clients


def idle_clients(target: Target, counts: tuple[int, ...], settle: float = 2.0) -> list[IdleSample]:
    """Log in `counts` clients (cumulatively) and let them sit; the proxy's RSS at each step."""
    pid = target.pid
    assert pid is not None, "idle cost is measured on a proxy"
    warm = wire.Connection.open(target.address, *APP_USER, "app")
    warm.query("SELECT 1")
    warm.close()
    time.sleep(settle)
    base = procs.rss_kib(pid)
    conns: list[wire.Connection] = []
    samples = []
    try:
        for count in sorted(counts):
            start = time.perf_counter()
            while len(conns) < count:
                conns.append(wire.Connection.open(target.address, *APP_USER, "app"))
            opened = time.perf_counter() - start
            time.sleep(settle)
            samples.append(IdleSample(count, base, procs.rss_kib(pid), opened))
    finally:
        for conn in conns:
            conn.close()
    return samples
