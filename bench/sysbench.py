"""sysbench (the Debian package, 1.0.x) as a load generator: command lines and output parsing.

Every workload runs with ``--db-ps-mode=disable``: statements travel as ``COM_QUERY`` text, the
path most applications (PyMySQL, mysqlclient, most ORMs) use. Deadlocks (1213) and lock wait
timeouts (1205) are the OLTP workloads' own on a small data set; sysbench is told to ignore
them and they are counted as errors. The churn workload is ``bench/churn.lua``: one event is
connect + ``SELECT 1`` + disconnect, so events/s are connections/s.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

HERE: Final = Path(__file__).resolve().parent
IGNORED_ERRORS: Final = "1213,1205"


@dataclass(frozen=True)
class Workload:
    """A sysbench script and its extra options; `oltp` scripts also get the data set options."""

    name: str
    script: str
    args: tuple[str, ...] = ()
    oltp: bool = True


POINT_SELECT: Final = Workload("point_select", "oltp_point_select")
READ_ONLY: Final = Workload("read_only", "oltp_read_only", ("--skip_trx=on",))
READ_WRITE: Final = Workload("read_write", "oltp_read_write")
CHURN: Final = Workload("churn", str(HERE / "churn.lua"), oltp=False)


@dataclass(frozen=True)
class DataSet:
    """Where sysbench's tables live and who logs in."""

    user: str
    password: str
    database: str
    tables: int = 4
    table_size: int = 10000


@dataclass(frozen=True)
class Result:
    """One sysbench run. `ok` is False when sysbench failed; `detail` then says why."""

    events: int = 0
    queries: int = 0
    seconds: float = 0.0
    p95_ms: float = 0.0
    errors: int = 0
    ok: bool = True
    detail: str = ""

    @property
    def qps(self) -> float:
        return self.queries / self.seconds if self.seconds else 0.0

    @property
    def eps(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def command(
    workload: Workload,
    address: tuple[str, int],
    data: DataSet,
    *,
    threads: int = 1,
    seconds: float = 10,
    action: str = "run",
) -> list[str]:
    host, port = address
    argv = [
        "sysbench",
        workload.script,
        "--db-driver=mysql",
        f"--mysql-host={host}",
        f"--mysql-port={port}",
        f"--mysql-user={data.user}",
        f"--mysql-password={data.password}",
        f"--mysql-db={data.database}",
        "--db-ps-mode=disable",
        f"--mysql-ignore-errors={IGNORED_ERRORS}",
        f"--threads={threads}",
        f"--time={seconds:g}",
        "--percentile=95",
        *workload.args,
    ]
    if workload.oltp:
        argv += [f"--tables={data.tables}", f"--table-size={data.table_size}"]
    return [*argv, action]


def run(argv: list[str], timeout: float) -> Result:
    """Run sysbench; a failure (exit status, timeout) is a Result with ok=False, not an error."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return Result(ok=False, detail=f"timed out after {timeout:.0f} s")
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        return Result(ok=False, detail=f"exit {done.returncode}: " + " | ".join(tail))
    return parse(done.stdout)


def _number(output: str, label: str) -> float:
    found = re.search(rf"^\s*{re.escape(label)}:\s+([0-9.]+)", output, re.MULTILINE)
    if found is None:
        raise ValueError(f"sysbench output has no {label!r}")
    return float(found.group(1))


def parse(output: str) -> Result:
    """The figures of a sysbench 1.0 report (`run` output)."""
    return Result(
        events=int(_number(output, "total number of events")),
        queries=int(_number(output, "queries")),
        seconds=_number(output, "total time"),
        p95_ms=_number(output, "95th percentile"),
        errors=int(_number(output, "ignored errors") + _number(output, "reconnects")),
    )


def prepare(data: DataSet, address: tuple[str, int]) -> None:
    """Create and fill the tables (oltp_common's `prepare`), raising if sysbench fails."""
    argv = command(READ_WRITE, address, data, action="prepare")
    subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True)


def version() -> str:
    done = subprocess.run(["sysbench", "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip()
