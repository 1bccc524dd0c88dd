"""Start, find and stop the cluster's daemons by PID, and wait with deadlines.

Theory of operation: each daemon (mariadbd, dnsmasq) is spawned detached in its own session, so
it outlives the command or test run that started it, with its output appended to a log file in
the state dir; its PID goes into the state file. A later command, maybe in another process,
finds it again by that PID. PIDs get reused, so a PID counts as ours only while its command
line still holds the daemon's config-file argument (the *marker*, e.g.
`--defaults-file=/tmp/rwproxy-cluster/pods/mysql-0/my.cnf`): stopping never signals a stranger,
and nothing is ever killed by name. The marker is unique to one daemon of one state dir, so a
daemon the state lost track of (a crash between spawn and save) can be found again by it.
Zombies (a daemon that died while its starter, e.g. a pytest process, is still alive) count as
not running, and are reaped when they are our children.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from proxy.devcluster.errors import ClusterError

logger = logging.getLogger(__name__)

POLL_INTERVAL_SECONDS = 0.02
_EXEC_TIMEOUT_SECONDS = 5.0
# Debian puts daemons in /usr/sbin, which is not on every user's PATH.
_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def find_executable(name: str, package: str) -> str:
    """Locate a required program, or explain which package provides it."""
    found = shutil.which(name) or shutil.which(name, path=_SBIN_PATH)
    if found is None:
        raise ClusterError(f"{name} is not installed; install it with `apt-get install {package}`")
    return found


def spawn(argv: Sequence[str], log_path: Path) -> int:
    """Start argv detached (new session, stdin from /dev/null, output appended to log_path)."""
    with open(log_path, "ab") as log, open(os.devnull, "rb") as null:
        actions = [
            (os.POSIX_SPAWN_DUP2, null.fileno(), 0),
            (os.POSIX_SPAWN_DUP2, log.fileno(), 1),
            (os.POSIX_SPAWN_DUP2, log.fileno(), 2),
            *_close_inherited(),
        ]
        # posix_spawn rather than Popen: no Popen object to warn "still running" when it is
        # garbage-collected, which is exactly what a daemon we leave behind should be doing.
        pid = os.posix_spawn(
            argv[0], list(argv), dict(os.environ), file_actions=actions, setsid=True
        )
    logger.debug("spawned pid %d: %s", pid, " ".join(argv))
    # posix_spawn returns once the child has begun exec, but /proc/PID/cmdline stays empty
    # until the kernel has set up the new argv; until then is_running() would say "not ours".
    if not wait_until(lambda: _exec_done(pid, argv), timeout=_EXEC_TIMEOUT_SECONDS):
        logger.warning("pid %d has not finished exec of %s", pid, argv[0])
    return pid


def _close_inherited() -> list[tuple[int, int]]:
    """Close every other fd in the child, as Popen's close_fds does.

    Python opens its own files close-on-exec, but fds inherited from whoever ran us are not:
    a daemon keeping, say, the caller's flock fd open would hold that lock for its lifetime.
    """
    fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    # Closing an fd that is gone by then (the listing's own) is not an error for posix_spawn.
    return [(os.POSIX_SPAWN_CLOSE, fd) for fd in fds if fd > 2]


def _exec_done(pid: int, argv: Sequence[str]) -> bool:
    """The child shows its new argv, or is already gone (callers notice that by themselves)."""
    seen = _proc_view(pid)
    if seen is None or seen[0] == "Z":
        return True
    return seen[1][: len(argv)] == [arg.encode() for arg in argv]


def is_running(pid: int | None, marker: str) -> bool:
    """True while pid is alive, not a zombie, and still has `marker` among its arguments."""
    if pid is None:
        return False
    _reap(pid)
    seen = _proc_view(pid)
    return seen is not None and seen[0] != "Z" and marker.encode() in seen[1]


def find(marker: str) -> int | None:
    """A live process carrying marker, for when the state file lost track of one of ours."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and is_running(int(entry.name), marker):
            return int(entry.name)
    return None


def _proc_view(pid: int) -> tuple[str, list[bytes]] | None:
    """(state letter, argv) of pid from /proc, or None when there is no such process."""
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    # The state follows the parenthesised command name, which may itself contain ")".
    return stat.rpartition(")")[2].split()[0], argv


def _reap(pid: int) -> None:
    """Collect the exit status if pid is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def terminate(daemons: Iterable[tuple[int | None, str]], timeout: float) -> None:
    """SIGTERM each (pid, marker) still ours, wait for all, SIGKILL what outlives the timeout."""
    alive = [
        (pid, marker) for pid, marker in daemons if pid is not None and is_running(pid, marker)
    ]
    _signal_all(alive, signal.SIGTERM)
    if wait_until(lambda: not _any_running(alive), timeout):
        return
    logger.warning("still running after %.0f s, sending SIGKILL: %s", timeout, alive)
    _signal_all(alive, signal.SIGKILL)
    wait_until(lambda: not _any_running(alive), timeout)


def _signal_all(daemons: Iterable[tuple[int, str]], signum: signal.Signals) -> None:
    for pid, marker in daemons:
        if is_running(pid, marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


def _any_running(daemons: Iterable[tuple[int, str]]) -> bool:
    return any(is_running(pid, marker) for pid, marker in daemons)


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll condition until it holds (True) or the deadline passes (False); never sleeps blind."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL_SECONDS)


def is_free(address: str, port: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> bool:
    """Whether a daemon could bind address:port now (TCP ignores TIME_WAIT leftovers)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        if kind == socket.SOCK_STREAM:
            # Only for TCP: on UDP, SO_REUSEADDR would let us share a port another
            # SO_REUSEADDR socket (dnsmasq's, say) holds, and report it free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def wait_free(address: str, port: int, kinds: Sequence[socket.SocketKind], timeout: float) -> None:
    """`ensure_free` for each kind, after waiting up to `timeout` for a holder that is on
    its way out (a daemon we just stopped can hold its port a moment longer)."""
    wait_until(lambda: all(is_free(address, port, kind) for kind in kinds), timeout)
    for kind in kinds:
        ensure_free(address, port, kind)


def ensure_free(address: str, port: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> None:
    """Fail up front, naming the address, rather than leave a daemon to die on bind."""
    if not is_free(address, port, kind):
        proto = "udp" if kind == socket.SOCK_DGRAM else "tcp"
        raise ClusterError(
            f"{address}:{port}/{proto} is already in use by another process "
            f"(find it with `ss -lntup | grep :{port}`)"
        )


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log, for error messages; empty if the log does not exist."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
