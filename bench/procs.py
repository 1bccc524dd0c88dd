"""Child processes under test (haproxy, rwproxy) and what /proc says about them.

Theory of operation
-------------------
Each proxy runs as a child of the harness, in the foreground, with its output in a log file
under the run's temporary directory, listening on 127.0.0.1:<a free port>. What the proxies
cost is read from /proc, the same way for both, so the comparison is like for like:

- CPU: utime + stime of the process and its children (``/proc/<pid>/stat`` fields 14 and 15,
  in clock ticks), read before and after a run; threads are included by the kernel.
- Memory: ``VmRSS`` from ``/proc/<pid>/status``; `RssSampler` polls it from a thread to catch
  the peak during a run.

Readiness is a real MySQL login (never a bare port probe: the pods count handshake-less
connections toward ``max_connect_errors``), retried until a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, NamedTuple

_TICKS: Final = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    return text[text.rindex(")") + 2 :].split()


def children(pid: int) -> list[int]:
    """The live direct children of `pid` (a proxy's worker processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(_stat_fields(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
    return found


class CpuTimes(NamedTuple):
    """CPU seconds in user space and in the kernel (syscalls: the part an L4 proxy pays too)."""

    user: float
    system: float

    @property
    def total(self) -> float:
        return self.user + self.system

    def since(self, before: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user - before.user, self.system - before.system)


def cpu_times(pid: int) -> CpuTimes:
    """utime and stime of `pid` and its live children."""
    user = system = 0
    for each in [pid, *children(pid)]:
        with contextlib.suppress(OSError):
            fields = _stat_fields(each)
            user += int(fields[11])  # utime (field 14)
            system += int(fields[12])  # stime (field 15)
    return CpuTimes(user / _TICKS, system / _TICKS)


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its live children, in seconds."""
    return cpu_times(pid).total


def rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class RssSampler:
    """Samples VmRSS of one process every `interval` seconds in a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kib = rss_kib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError, RuntimeError):
                self.peak_kib = max(self.peak_kib, rss_kib(self.pid))


CpuTable = dict[int, tuple[str, float]]


def cpu_table() -> CpuTable:
    """utime + stime in seconds of every user-space process, by pid, with its command name."""
    table: CpuTable = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            text = (entry / "stat").read_text()
            fields = text[text.rindex(")") + 2 :].split()
            if fields[1] in ("0", "2"):  # init's parent or kthreadd: a kernel thread
                continue
            comm = text[text.index("(") + 1 : text.rindex(")")]
            table[int(entry.name)] = (comm, (int(fields[11]) + int(fields[12])) / _TICKS)
    return table


def foreign_cpu(before: CpuTable, after: CpuTable, pids: set[int], names: frozenset[str]) -> float:
    """CPU seconds that processes other than ours (`pids`, or named in `names`) used between
    two tables: other people's tests and builds competing for the cores. Processes that both
    started and ended in between are missed; it is an indicator, not an account."""
    total = 0.0
    for pid, (comm, seconds) in after.items():
        if pid not in pids and comm not in names:
            total += seconds - before.get(pid, (comm, 0.0))[1]
    return total


def steal_and_total_ticks() -> tuple[int, int]:
    """(steal, all) jiffies of the whole machine since boot, from the `cpu` line of /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[7], sum(fields[:8])


@dataclass
class Child:
    """A process started by the harness; `stop()` ends it (SIGTERM, then SIGKILL)."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        if not self.log_file.closed:
            self.log_file.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()


def start_child(
    name: str, argv: Sequence[str], log_dir: Path, env: Mapping[str, str] | None = None
) -> Child:
    log_path = log_dir / f"{name}.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed by Child.stop()
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None,
    )
    return Child(name, process, log_path, log_file)


Probe = Callable[[], bool]


class StartError(RuntimeError):
    """A child exited or never became ready; the message carries its log's tail."""


def wait_ready(child: Child, probe: Probe, timeout: float = 30.0) -> None:
    """Call `probe` until it returns True; fail early if the child exits."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        if not child.alive():
            raise StartError(f"{child.name} exited with {child.process.returncode}")
        try:
            if probe():
                return
            last = "not ready yet"
        except Exception as error:  # any failure of a probe just means "not yet"
            last = f"{type(error).__name__}: {error}"
        time.sleep(0.2)
    raise StartError(f"{child.name} not ready after {timeout:.0f} s ({last})")
