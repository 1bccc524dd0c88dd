"""Soak: sysbench oltp_read_write through rwproxy for a long time, with replicas disrupted.

    .venv/bin/python -m bench.soak                  # SOAK_MINUTES (default 30)   (make soak)
    .venv/bin/python -m bench.soak --minutes 3 --threads 8

Theory of operation
-------------------
Pieces of the benchmark harness, reused: the cluster lock and data set (bench/lab.py), an
rwproxy child on ``config/local.yaml`` (bench/targets.py), /proc readings (bench/procs.py)
and the sysbench command line (bench/sysbench.py: text protocol, deadlocks 1213 and lock
wait timeouts 1205 ignored and counted, nothing else: any other error stops sysbench and
fails the soak).

sysbench runs for the whole duration with ``--report-interval=10``. A disruptor thread acts
every `--disrupt-seconds` (default 75 s), cycling through ``rwproxy cluster stop mysql-1``,
``start mysql-1``, ``lag mysql-2 on``, ``lag mysql-2 off`` (the primary is never touched):
reads must move to the remaining replica or the writer without an error reaching sysbench.
Every minute the proxy's VmRSS and open fds are sampled and the minute's sysbench lines
(QPS, ignored errors, reconnects) are summed.

Verdict, after a warm-up (`--warmup-minutes`, default 2, or the first third of a shorter
run): **flat** means, over the samples after warm-up,
RSS max - min < 32 MiB and the least-squares slope over the last 10 minutes < 1 MiB/min;
fds max - min <= 2 x threads + 16 (pools open and retire connections as pods come and go)
and slope over the last 10 minutes < 1 fd/min. Slopes are judged only over 5 or more
minutes after warm-up (shorter runs: the spreads alone).
PASS = sysbench exited 0, RSS flat, fds flat.

The run holds /tmp/rwproxy-integration.lock for its whole length (a soak cannot pause): a
test session that waits more than 15 minutes gives up. The report (per-minute table,
disruptions, verdict) goes to bench/results/soak-<date>.md and stdout.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench import lab, procs, sysbench, targets
from bench.report import fresh_path

RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"
RWPROXY: Final = Path(sys.executable).parent / "rwproxy"
DISRUPTIONS: Final = (
    ("stop", "mysql-1"),
    ("start", "mysql-1"),
    ("lag", "mysql-2", "on"),
    ("lag", "mysql-2", "off"),
)
RESTORE: Final = (("start", "mysql-1"), ("lag", "mysql-2", "off"))
INTERVAL_LINE: Final = re.compile(
    r"\[\s*(\d+)s\s*\].*?qps:\s*([0-9.]+).*?err/s:\s*([0-9.]+)\s+reconn/s:\s*([0-9.]+)"
)
REPORT_INTERVAL: Final = 10
RSS_SPREAD_KIB: Final = 32 * 1024
RSS_SLOPE_KIB_PER_MIN: Final = 1024
FD_SLOPE_PER_MIN: Final = 1.0
MIN_SLOPE_POINTS: Final = 5


@dataclass
class Minute:
    minute: int
    qps: float = 0.0
    errors: float = 0.0
    reconnects: float = 0.0
    rss_kib: int = 0
    fds: int = 0
    events: list[str] = field(default_factory=list)


@dataclass
class Soak:
    started: float
    minutes: list[Minute] = field(default_factory=list)
    intervals: list[tuple[int, float, float, float]] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def cluster(*args: str) -> str:
    done = subprocess.run(
        [str(RWPROXY), "cluster", *args], capture_output=True, text=True, timeout=120, check=False
    )
    return "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()}"


def disrupt(soak: Soak, every: float, stop: threading.Event) -> None:
    step = 0
    while not stop.wait(every):
        action = DISRUPTIONS[step % len(DISRUPTIONS)]
        result = cluster(*action)
        with soak.lock:
            soak.events.append((time.monotonic() - soak.started, f"{' '.join(action)}: {result}"))
        step += 1


def read_sysbench(process: subprocess.Popen[str], soak: Soak, log: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        log.append(line.rstrip())
        found = INTERVAL_LINE.search(line)
        if found:
            second, qps, err, reconn = found.groups()
            with soak.lock:
                soak.intervals.append((int(second), float(qps), float(err), float(reconn)))


def sample_minutes(soak: Soak, pid: int, stop: threading.Event) -> None:
    number = 0
    while not stop.wait(60.0 - (time.monotonic() - soak.started) % 60.0):
        number += 1
        minute = Minute(number)
        try:
            minute.rss_kib, minute.fds = procs.rss_kib(pid), len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, RuntimeError):
            minute.events.append("proxy gone")
        with soak.lock:
            lines = [i for i in soak.intervals if (number - 1) * 60 < i[0] <= number * 60]
            if lines:
                minute.qps = sum(i[1] for i in lines) / len(lines)
                minute.errors = sum(i[2] for i in lines) * REPORT_INTERVAL
                minute.reconnects = sum(i[3] for i in lines) * REPORT_INTERVAL
            minute.events = [e for t, e in soak.events if (number - 1) * 60 < t <= number * 60]
            soak.minutes.append(minute)
        print(
            f"minute {number}: {minute.qps:.0f} qps, errors {minute.errors:.0f}, RSS "
            f"{minute.rss_kib / 1024:.1f} MiB, fds {minute.fds} {minute.events}",
            file=sys.stderr,
            flush=True,
        )


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 for fewer than two points)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def verdict(minutes: list[Minute], warmup: int, threads: int) -> tuple[bool, bool, list[str]]:
    steady = [m for m in minutes if m.minute > warmup and m.rss_kib]
    if len(steady) < 2:
        return False, False, ["fewer than two samples after warm-up: nothing to judge"]
    tail = steady[-10:]
    rss = [m.rss_kib for m in steady]
    fds = [m.fds for m in steady]
    rss_slope = slope([(m.minute, m.rss_kib) for m in tail])
    fd_slope = slope([(m.minute, m.fds) for m in tail])
    fd_spread_limit = 2 * threads + 16
    # A slope needs enough points to mean anything: with fewer than MIN_SLOPE_POINTS minutes
    # (a short run) only the spread is judged; one fd more in minute 3 is not a trend.
    judged = len(tail) >= MIN_SLOPE_POINTS
    rss_flat = max(rss) - min(rss) < RSS_SPREAD_KIB and (
        not judged or rss_slope < RSS_SLOPE_KIB_PER_MIN
    )
    fds_flat = max(fds) - min(fds) <= fd_spread_limit and (
        not judged or fd_slope < FD_SLOPE_PER_MIN
    )
    notes = [
        f"RSS after warm-up: {min(rss) / 1024:.1f}-{max(rss) / 1024:.1f} MiB (spread "
        f"< {RSS_SPREAD_KIB // 1024} MiB required), slope over the last {len(tail)} minutes "
        f"{rss_slope:.0f} KiB/min (< {RSS_SLOPE_KIB_PER_MIN} required): "
        + ("flat" if rss_flat else "NOT flat"),
        f"fds after warm-up: {min(fds)}-{max(fds)} (spread <= {fd_spread_limit} required), "
        f"slope {fd_slope:.2f}/min (< {FD_SLOPE_PER_MIN:g} required): "
        + ("flat" if fds_flat else "NOT flat"),
    ]
    return rss_flat, fds_flat, notes


def render(args: argparse.Namespace, soak: Soak, exit_code: int | None, tail: list[str]) -> str:
    warmup = args.warmup_minutes
    rss_flat, fds_flat, notes = verdict(soak.minutes, warmup, args.threads)
    passed = exit_code == 0 and rss_flat and fds_flat
    errors = sum(m.errors for m in soak.minutes)
    out = [
        f"# rwproxy soak, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"**{'PASS' if passed else 'FAIL'}**: sysbench oltp_read_write, {args.threads} threads, "
        f"{args.minutes:g} min through rwproxy, disruption every {args.disrupt_seconds:g} s, "
        f"warm-up {warmup} min. sysbench exit status {exit_code}; ignored errors "
        f"(deadlocks 1213, lock wait timeouts 1205) {errors:.0f}.",
        "",
        *(f"- {note}" for note in notes),
        "",
        "| minute | QPS | ignored errors | reconnects | RSS MiB | fds | disruptions |",
        "|---:|---:|---:|---:|---:|---:|---|",
        *(
            f"| {m.minute} | {m.qps:.0f} | {m.errors:.0f} | {m.reconnects:.0f} | "
            f"{m.rss_kib / 1024:.1f} | {m.fds} | {'; '.join(m.events)} |"
            for m in soak.minutes
        ),
        "",
        "sysbench's last lines:",
        "",
        "```",
        *tail,
        "```",
    ]
    return "\n".join(out) + "\n"


def output_path(directory: Path) -> Path:
    return fresh_path(directory, f"soak-{datetime.date.today().isoformat()}")


def run(args: argparse.Namespace, workdir: Path) -> str:
    proxy = targets.start_rwproxy("rwproxy-soak", workdir)
    assert proxy.pid is not None
    soak = Soak(time.monotonic())
    stop = threading.Event()
    log: list[str] = []
    argv = sysbench.command(
        sysbench.READ_WRITE,
        proxy.address,
        lab.DATA,
        threads=args.threads,
        seconds=args.minutes * 60,
    )
    argv.insert(-1, f"--report-interval={REPORT_INTERVAL}")
    exit_code = None
    threads = [
        threading.Thread(target=disrupt, args=(soak, args.disrupt_seconds, stop), daemon=True),
        threading.Thread(target=sample_minutes, args=(soak, proxy.pid, stop), daemon=True),
    ]
    try:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        reader = threading.Thread(target=read_sysbench, args=(process, soak, log), daemon=True)
        reader.start()
        for thread in threads:
            thread.start()
        exit_code = process.wait(timeout=args.minutes * 60 + 300)
        reader.join(10)
        deadline = time.monotonic() + 70
        while len(soak.minutes) < int(args.minutes) and time.monotonic() < deadline:
            time.sleep(1.0)  # the last minute's sample
    finally:
        stop.set()
        for action in RESTORE:
            cluster(*action)
        proxy.stop()
    return render(args, soak, exit_code, log[-25:])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", 30)))
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--disrupt-seconds", type=float, default=75.0)
    parser.add_argument("--warmup-minutes", type=int, default=None)
    parser.add_argument("--lock-timeout", type=float, default=1800.0)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.warmup_minutes is None:
        args.warmup_minutes = 2 if args.minutes >= 10 else max(0, int(args.minutes // 3))
    return args


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    args = parse_args(argv)
    lab.raise_fd_limit()
    with lab.exclusive_lock(lab.LOCK_PATH, args.lock_timeout):
        lab.cluster_up()
        lab.create_dataset(lab.DATA)
        try:
            with tempfile.TemporaryDirectory(prefix="rwsoak-") as tmp:
                text = run(args, Path(tmp))
        finally:
            lab.drop_dataset(lab.DATA)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = output_path(args.output_dir)
    path.write_text(text)
    print(text)
    print(f"report written to {path}", file=sys.stderr)
    return 0 if text.split("**")[1] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
