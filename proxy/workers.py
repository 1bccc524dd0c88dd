"""`workers: N`: N proxy processes sharing the listen port (SO_REUSEPORT).

Theory of operation
-------------------
The parent forks N children before any event loop or thread exists, then only supervises:
it forwards SIGTERM/SIGINT/SIGHUP to every child (each drains and reloads on its own) and
starts a new child in place of one that died while no shutdown was asked for. Each child
is a whole proxy: its own event loop, pools, health checks and topology view, listening on
the same address with SO_REUSEPORT, so the kernel spreads new client connections across
the children. What that means for users (documented in docs/operating.md):

- limits (`max_connections`, `pool.max_size`) hold per worker;
- proxy connection ids are unique across workers (worker i hands out i+1, i+1+N, ...),
  but `KILL <id>` only reaches sessions of the worker the killer is connected to;
- worker i serves HTTP on the configured port + i: worker 0's answers /readyz for the pod.

A child that exits within `_FATAL_WITHIN_SECONDS` of its start (a port in use, a bad
certificate) would only fail again: the parent then stops the others and exits 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_FATAL_WITHIN_SECONDS = 5.0
_RESTART_PAUSE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    """Which of `count` workers this process is (0 of 1 without `workers`)."""

    index: int = 0
    count: int = 1

    @property
    def shares_port(self) -> bool:
        return self.count > 1

    def first_connection_id(self) -> int:
        return self.index + 1


SOLE_WORKER = WorkerSlot()  # the default: `workers: 1`


def run_workers(count: int, run_one: Callable[[WorkerSlot], int]) -> int:
    """Run `run_one(slot)` in `count` child processes until they all exit; the exit code."""
    supervisor = _Supervisor(count, run_one)
    return supervisor.run()


class _Supervisor:
    def __init__(self, count: int, run_one: Callable[[WorkerSlot], int]) -> None:
        self.count = count
        self.run_one = run_one
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (index, started at)
        self.stopping = False
        self.failed = False

    def run(self) -> int:
        for index in range(self.count):
            self._spawn(index)
        previous = {sig: signal.signal(sig, self._forward) for sig in _FORWARDED}
        try:
            while self.children:
                self._reap(*os.waitpid(-1, 0))
        except ChildProcessError:
            pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 1 if self.failed else 0

    def _spawn(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the child: default signal handling until its own loop installs some
            for sig in _FORWARDED:
                signal.signal(sig, signal.SIG_DFL)
            code = 1
            try:
                code = self.run_one(WorkerSlot(index, self.count))
            except BaseException:
                logger.exception("worker %d failed", index)
            finally:
                os._exit(code)
        self.children[pid] = (index, time.monotonic())
        logger.info("worker %d started (pid %d)", index, pid)

    def _reap(self, pid: int, status: int) -> None:
        entry = self.children.pop(pid, None)
        if entry is None:
            return
        index, started = entry
        code = os.waitstatus_to_exitcode(status)
        if self.stopping:
            self.failed = self.failed or code != 0
            return
        if time.monotonic() - started < _FATAL_WITHIN_SECONDS:
            logger.error("worker %d (pid %d) exited at start (%s): stopping", index, pid, code)
            self.failed = True
            self._stop_all(signal.SIGTERM)
            return
        logger.error("worker %d (pid %d) exited (%s): starting a new one", index, pid, code)
        time.sleep(_RESTART_PAUSE_SECONDS)
        self._spawn(index)

    def _forward(self, sig: int, _frame: object) -> None:
        if sig != signal.SIGHUP:
            self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _stop_all(self, sig: int) -> None:
        self.stopping = True
        self._forward(sig, None)
