"""End-to-end benchmarks of rwproxy on the local cluster, against direct and haproxy baselines.

    .venv/bin/python -m bench.run             # full: ~25 min   (make bench)
    .venv/bin/python -m bench.run --quick     # < 3 min         (make bench-quick)
    .venv/bin/python -m bench.run --profile-only   # py-spy on the proxy under point_select
    kill -TERM <pid>                               # stops cleanly: proxies, data set

What is measured, and how (details in each module's docstring):

- **sysbench** (Debian package) ``oltp_point_select``, ``oltp_read_only --skip_trx=on`` and
  ``oltp_read_write`` at 1, 8 and 32 threads (quick: point_select at 1 and 8), text protocol,
  against five targets: **direct** to the primary, **haproxy** (TCP mode, 1 thread) to the
  primary, **rwproxy** (routing.mode split), **rwproxy-writer-only** and
  **rwproxy-writer-only-2w** (the same with ``workers: 2``). Per run: QPS, p95
  latency, errors and the proxy's CPU seconds per 1,000 statements (utime + stime from
  /proc/<pid>/stat, for haproxy too). Targets are interleaved in each round (order rotated per
  round), 3 rounds (quick: 2); figures are medians, comparisons medians of same-round ratios.
- **connection churn**: connect + ``SELECT 1`` + close in a loop, 1 thread, 10 s (quick: 3 s),
  with a sysbench Lua script (``bench/churn.lua``): libmariadb is C, so the client takes far
  less of the 2 shared cores than a Python client would, and sysbench gives the same
  events/s and percentiles as the other runs.
- **streaming**: ``SELECT REPEAT('x', 1000) FROM seq_1_to_200000`` (~200 MB) through a fresh
  rwproxy vs directly from a replica, MB/s, with the proxy's peak VmRSS sampled every 10 ms.
- **idle cost**: the proxy's RSS with 1,000 and 5,000 (quick: 1,000) logged-in idle clients.
- **profile** (``--profile``, on by default): py-spy on the proxy under point_select, 8 threads.

Every block of measurements (one sysbench round, churn, streaming, ...) holds the integration
tests' machine-wide lock (/tmp/rwproxy-integration.lock), so that neither measures the other;
between blocks a waiting test session gets its turn (see `lab.ClusterTurns`). The report
(machine facts, tables, goals of the issue) is written to ``bench/results/<date>-<mode>.md``
with the raw samples as JSON beside it, and printed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from bench import lab, measure, procs, profile, report, sysbench, targets
from bench.report import DIRECT, HAPROXY, ROUTING, WORKERS, WRITER_ONLY, Results
from bench.targets import Target

RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"
ALL_TARGETS: Final = (DIRECT, HAPROXY, ROUTING, WRITER_ONLY, WORKERS)
_T = TypeVar("_T")


@dataclass(frozen=True)
class Plan:
    mode: str
    cases: tuple[tuple[sysbench.Workload, int], ...]
    rounds: int
    seconds: float
    churn_seconds: float
    stream_rounds: int
    idle_counts: tuple[int, ...]
    profile_seconds: float
    warmup_seconds: float = 2.0


def _all_cases() -> tuple[tuple[sysbench.Workload, int], ...]:
    workloads = (sysbench.POINT_SELECT, sysbench.READ_ONLY, sysbench.READ_WRITE)
    return tuple((w, t) for w in workloads for t in (1, 8, 32))


QUICK: Final = Plan(
    "quick",
    ((sysbench.POINT_SELECT, 1), (sysbench.POINT_SELECT, 8)),
    rounds=2,
    seconds=4,
    churn_seconds=3,
    stream_rounds=2,
    idle_counts=(1000,),
    profile_seconds=4,
)
FULL: Final = Plan(
    "full",
    _all_cases(),
    rounds=3,
    seconds=10,
    churn_seconds=10,
    stream_rounds=3,
    idle_counts=(1000, 5000),
    profile_seconds=10,
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rotated(items: Sequence[_T], by: int) -> list[_T]:
    """A B C -> B C A -> C A B: interleaved, and no target always runs first."""
    by %= len(items) or 1
    return [*items[by:], *items[:by]]


# -- targets -------------------------------------------------------------------------------


def start_targets(
    names: Sequence[str], workdir: Path, stack: contextlib.ExitStack, notes: list[str]
) -> list[Target]:
    starters: dict[str, Callable[[], Target]] = {
        DIRECT: targets.direct,
        HAPROXY: lambda: targets.start_haproxy(workdir),
        ROUTING: lambda: targets.start_rwproxy(ROUTING, workdir),
        WRITER_ONLY: lambda: targets.start_rwproxy(WRITER_ONLY, workdir, "writer_only"),
        WORKERS: lambda: targets.start_rwproxy(
            WORKERS, workdir, "writer_only", {"RWPROXY_WORKERS": "2"}
        ),
    }
    started = []
    for name in names:
        try:
            target = starters[name]()
        except targets.Unavailable as error:
            notes.append(f"{name} not available: {error}")
            log(f"skipping {name}: {error}")
            continue
        stack.callback(target.stop)
        started.append(target)
    return started


def idle_cpu(started: Sequence[Target], seconds: float = 2.0) -> dict[str, float]:
    """Each proxy's CPU at rest (health checks, DNS), in ms per second, over the same window."""
    proxies = [t for t in started if t.pid is not None]
    before = {t.name: procs.cpu_seconds(t.pid) for t in proxies if t.pid is not None}
    time.sleep(seconds)
    return {
        t.name: (procs.cpu_seconds(t.pid) - before[t.name]) / seconds * 1000
        for t in proxies
        if t.pid is not None
    }


# -- sysbench rounds -------------------------------------------------------------------------


def _one(
    target: Target,
    workload: sysbench.Workload,
    threads: int,
    seconds: float,
    round_no: int,
    bystanders: frozenset[int] = frozenset(),
) -> measure.Sample:
    sample = measure.run_sysbench(
        target,
        workload,
        lab.DATA,
        threads=threads,
        seconds=seconds,
        round_no=round_no,
        bystanders=bystanders,
    )
    r = sample.result
    cpu = report.fmt(sample.cpu_per_1k, ".4f")
    status = "" if r.ok else f" FAILED {r.detail}"
    log(
        f"  r{round_no} {workload.name} t{threads} {target.name}: {report.rate(sample):.0f}/s "
        f"p95 {r.p95_ms:.2f} ms errors {r.errors} cpu {cpu} s/1k"
        f" others {sample.foreign_percent:.0f}%{status}"
    )
    return sample


def warm_up(started: Sequence[Target], plan: Plan) -> None:
    log("warm-up")
    for target in started:
        _one(target, sysbench.POINT_SELECT, 8, plan.warmup_seconds, 0)


def pids(started: Sequence[Target]) -> frozenset[int]:
    return frozenset(t.pid for t in started if t.pid is not None)


def sysbench_round(plan: Plan, started: Sequence[Target], round_no: int) -> list[measure.Sample]:
    log(f"sysbench round {round_no}/{plan.rounds}")
    return [
        _one(target, workload, threads, plan.seconds, round_no, pids(started))
        for workload, threads in plan.cases
        for target in rotated(started, round_no - 1)
    ]


def churn_rounds(plan: Plan, started: Sequence[Target]) -> list[measure.Sample]:
    samples = []
    for round_no in range(1, plan.rounds + 1):
        log(f"churn round {round_no}/{plan.rounds}")
        for target in rotated(started, round_no - 1):
            sample = _one(target, sysbench.CHURN, 1, plan.churn_seconds, round_no, pids(started))
            samples.append(sample)
    return samples


# -- profile, streaming, idle ----------------------------------------------------------------


def profile_proxy(plan: Plan, started: Sequence[Target], workdir: Path, results: Results) -> None:
    by_name = {t.name: t for t in started}
    target = by_name.get(WRITER_ONLY) or by_name.get(ROUTING)
    if target is None or target.pid is None:
        results.notes.append("profile skipped: no rwproxy target running")
        return
    log(f"profiling {target.name} for {plan.profile_seconds:g} s")
    raw = workdir / "py-spy.txt"
    spy = profile.start(target.pid, plan.profile_seconds + 1, raw)
    time.sleep(0.5)  # py-spy attaches
    sample = _one(target, sysbench.POINT_SELECT, 8, plan.profile_seconds, 0)
    _, errors = spy.communicate(timeout=60)
    if spy.returncode != 0 or not raw.exists():
        results.notes.append(f"py-spy failed: {errors.decode(errors='replace').strip()[-300:]}")
        return
    results.profile = profile.parse(raw.read_text())
    results.profile_raw = raw.read_text()
    results.profile_qps = sample.result.qps
    results.profile_target = target.name


def streaming(plan: Plan, workdir: Path) -> list[measure.StreamSample]:
    log("streaming")
    proxy = targets.start_rwproxy("rwproxy-stream", workdir)
    pair = [targets.direct(DIRECT, targets.REPLICA), proxy]
    samples = []
    try:
        for round_no in range(1, plan.stream_rounds + 1):
            for target in rotated(pair, round_no - 1):
                sample = measure.stream(target, round_no)
                growth = report.fmt(report.mib(sample.growth_kib), ".1f", " MiB")
                log(f"  r{round_no} {target.name}: {sample.mb_per_s:.0f} MB/s, RSS +{growth}")
                samples.append(sample)
    finally:
        proxy.stop()
    return samples


def idle(plan: Plan, workdir: Path) -> list[measure.IdleSample]:
    log(f"idle clients {plan.idle_counts}")
    extra = {"RWPROXY_MAX_CONNECTIONS": str(max(plan.idle_counts) + 100)}
    proxy = targets.start_rwproxy("rwproxy-idle", workdir, extra_env=extra)
    try:
        samples = measure.idle_clients(proxy, plan.idle_counts)
    finally:
        proxy.stop()
    for s in samples:
        log(f"  {s.clients} clients: {s.kib_per_client:.1f} KiB each")
    return samples


# -- the run ---------------------------------------------------------------------------------


Turn = Callable[[], contextlib.AbstractContextManager[None]]


def ensure_ready(started: Sequence[Target]) -> None:
    """After a turn of someone else's, every proxy logs in again (rwproxy: all pods up)."""
    for target in started:
        if target.child is not None:
            targets.wait_ready(target)


def measure_targets(
    plan: Plan, names: Sequence[str], workdir: Path, results: Results, turn: Turn
) -> None:
    with contextlib.ExitStack() as stack:
        with turn():
            started = start_targets(names, workdir, stack, results.notes)
            results.targets = [t.name for t in started]
            warm_up(started, plan)
            results.idle_cpu_ms_per_s = idle_cpu(started)
        for round_no in range(1, plan.rounds + 1):
            with turn():
                ensure_ready(started)
                results.samples += sysbench_round(plan, started, round_no)
        with turn():
            ensure_ready(started)
            results.churn = churn_rounds(plan, started)
        if plan.profile_seconds:
            with turn():
                ensure_ready(started)
                profile_proxy(plan, started, workdir, results)


def run_all(plan: Plan, names: Sequence[str], workdir: Path, results: Results, turn: Turn) -> None:
    measure_targets(plan, names, workdir, results, turn)
    with turn():
        results.streams = streaming(plan, workdir)
    with turn():
        results.idle = idle(plan, workdir)


def run_profile_only(plan: Plan, workdir: Path, results: Results, turn: Turn) -> None:
    with contextlib.ExitStack() as stack, turn():
        started = start_targets((WRITER_ONLY, ROUTING), workdir, stack, results.notes)
        results.targets = [t.name for t in started]
        warm_up(started[:1], plan)
        profile_proxy(plan, started, workdir, results)


def parameters(plan: Plan) -> dict[str, str]:
    cases = ", ".join(f"{w.name} t{t}" for w, t in plan.cases)
    return {
        "cases": cases,
        "rounds": str(plan.rounds),
        "seconds per sysbench run": f"{plan.seconds:g}",
        "churn seconds": f"{plan.churn_seconds:g}",
        "data set": f"{lab.DATA.tables} tables x {lab.DATA.table_size} rows",
    }


def report_stem(output_dir: Path, mode: str) -> str:
    """``<date>-<mode>``, numbered when that report exists (`report.fresh_path`)."""
    return report.fresh_path(output_dir, f"{datetime.date.today().isoformat()}-{mode}").stem


def write_report(results: Results, output_dir: Path) -> Path:
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = report_stem(output_dir, results.mode)
    text = report.render(results)
    (output_dir / f"{stem}.md").write_text(text)
    data = dataclasses.asdict(dataclasses.replace(results, profile_raw=""))
    raw = json.dumps(data, indent=1, default=str)
    (output_dir / f"{stem}.json").write_text(raw + "\n")
    if results.profile_raw:  # collapsed stacks: flamegraph.pl / speedscope read them as they are
        (output_dir / f"{stem}-py-spy.txt").write_text(results.profile_raw)
    print(text)
    return output_dir / f"{stem}.md"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="point_select only, short runs")
    parser.add_argument("--profile-only", action="store_true", help="just the py-spy profile")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument("--rounds", type=int, help="override the plan's number of rounds")
    parser.add_argument("--seconds", type=float, help="override each sysbench run's length")
    parser.add_argument(
        "--targets", default=",".join(ALL_TARGETS), help="comma-separated subset of targets"
    )
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--lock-timeout", type=float, default=1800.0, help="seconds to wait")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    if args.rounds:
        plan = dataclasses.replace(plan, rounds=args.rounds)
    if args.seconds:
        plan = dataclasses.replace(plan, seconds=args.seconds)
        if args.profile_only:
            plan = dataclasses.replace(plan, profile_seconds=args.seconds)
    if args.no_profile:
        plan = dataclasses.replace(plan, profile_seconds=0)
    return plan


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    # SIGTERM (and SIGINT, which a shell's background job ignores) unwind like Ctrl-C, so the
    # proxies are stopped and the data set dropped on the way out.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    args = parse_args(argv)
    plan = make_plan(args)
    names = [n for n in ALL_TARGETS if n in args.targets.split(",")]
    results = Results("profile" if args.profile_only else plan.mode, parameters=parameters(plan))
    lab.raise_fd_limit()
    turns = lab.ClusterTurns(args.lock_timeout)
    with turns.turn():
        results.facts = lab.machine_facts()
        lab.create_dataset(lab.DATA)
    try:
        with tempfile.TemporaryDirectory(prefix="rwbench-") as tmp:
            if args.profile_only:
                run_profile_only(plan, Path(tmp), results, turns.turn)
            else:
                run_all(plan, names, Path(tmp), results, turns.turn)
    finally:
        with turns.turn():
            lab.drop_dataset(lab.DATA)
    results.steal_percent = turns.steal_percent
    results.parameters["waited for the cluster lock"] = f"{turns.waited_seconds:.0f} s"
    path = write_report(results, args.output_dir)
    log(f"report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
