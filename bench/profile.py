"""Sampling profile of the running proxy with py-spy, reduced to its top functions.

``py-spy record --format raw`` writes one line per distinct stack: ``frame;frame;...;frame N``,
outermost first, each frame ``function (file:line)``, N the samples that saw that stack. Idle
samples (the loop waiting in epoll) are left out by py-spy, so the shares are of the time the
proxy was on a CPU. py-spy pauses the proxy for each sample (``--nonblocking`` would not, but
then stacks come out torn); at 200 Hz that costs the proxy a few percent, which the report
shows as the QPS measured while profiling.

uvloop is C and not seen (no ``--native``), nor are the modules mypyc compiled (make bench
runs the compiled build; `make clean-compiled bench-profile` profiles the pure one, function
by function): time in their code is charged to the Python line that called into it, so
``transport.write()`` (the send syscall) shows as the self time of the line that calls it,
and the loop's own work (epoll, reads, scheduling) as ``Runner.run``.
The frames every stack shares (runpy, cli, app, the loop runner) are left out of the
inclusive table: they would top it at ~100 % and say nothing.

A function is keyed by name and file (line numbers dropped): *self* counts the samples where
it was the innermost frame, *inclusive* the samples where it was anywhere on the stack (once
per stack, so recursion is not counted twice). *Lines* is self time per source line, which
tells a function's syscall apart from its Python work.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.targets import REPO

# Start-up frames every callback stack shares: not informative in the inclusive table.
_SPINE: Final = (
    "<frozen runpy>",
    "proxy/__main__.py",
    "proxy/cli.py",
    "run_serve",
    "run_event_loop",
    "uvloop/__init__.py",
    "asyncio/runners.py",
)
_FRAME: Final = re.compile(r"^(?P<name>.*) \((?P<file>.*?)(?P<line>:\d+)?\)$")


def py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise FileNotFoundError("py-spy is not installed (.venv/bin/pip install py-spy)")
    return found


def start(pid: int, seconds: float, output: Path, rate: int = 100) -> subprocess.Popen[bytes]:
    argv = [
        py_spy(),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(output),
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@dataclass(frozen=True)
class Profile:
    samples: int
    self_top: list[tuple[str, int]]
    inclusive_top: list[tuple[str, int]]
    line_top: list[tuple[str, int]]


def _short(path: str) -> str:
    for root in (str(REPO) + "/", "site-packages/", "lib/python"):
        if root in path:
            return path.split(root, 1)[1]
    return path


def frame_key(frame: str, with_line: bool = False) -> str:
    found = _FRAME.match(frame.strip())
    if found is None:
        return frame.strip()
    line = found["line"] if with_line and found["line"] else ""
    return f"{found['name']} ({_short(found['file'])}{line})"


def parse(raw: str, limit: int = 15) -> Profile:
    """Top functions by self and by inclusive samples, from py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if frame]
        keys = [frame_key(frame) for frame in frames]
        total += count
        own[keys[-1]] += count
        lines[frame_key(frames[-1], with_line=True)] += count
        for key in set(keys):
            if not any(marker in key for marker in _SPINE):
                inclusive[key] += count
    return Profile(
        total, own.most_common(limit), inclusive.most_common(limit), lines.most_common(limit)
    )
