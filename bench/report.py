"""From raw samples to the Markdown report: medians, same-round ratios, verdicts on the goals.

Theory of operation
-------------------
The machines are noisy (other tenants, CPU steal), so a figure is never one run: each is the
median over rounds, and a comparison between targets is the median of the ratios *measured
in the same round*, when both ran within seconds of each other. A failed run is left out of
medians and listed at the end of the report.

The goals are the issue's ("Benchmarks and speed"): rwproxy writer-only point_select at
8 threads >= 0.9x haproxy's throughput at <= 1.3x its CPU per statement; connection churn
>= 1.5x direct; streaming >= 0.8x direct MB/s with < 32 MiB RSS growth; <= 20 KiB RSS per
idle client at 5,000 clients.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench.measure import IdleSample, Sample, StreamSample
from bench.profile import Profile

DIRECT: Final = "direct"
HAPROXY: Final = "haproxy"
WRITER_ONLY: Final = "rwproxy-writer-only"
WORKERS: Final = "rwproxy-writer-only-2w"  # the same with `workers: 2` (SO_REUSEPORT)
ROUTING: Final = "rwproxy"


def fresh_path(directory: Path, base: str) -> Path:
    """``<base>.md``, or ``<base>-2.md``, ``-3``...: a report already written (and perhaps
    committed and cited) is never overwritten."""
    stem, number = base, 1
    while (directory / f"{stem}.md").exists():
        number += 1
        stem = f"{base}-{number}"
    return directory / f"{stem}.md"


@dataclass
class Results:
    """Everything one benchmark run produced; serialised as JSON next to the report."""

    mode: str
    facts: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    churn: list[Sample] = field(default_factory=list)
    streams: list[StreamSample] = field(default_factory=list)
    idle: list[IdleSample] = field(default_factory=list)
    profile: Profile | None = None
    profile_qps: float | None = None
    profile_target: str = ""
    profile_raw: str = ""
    idle_cpu_ms_per_s: dict[str, float] = field(default_factory=dict)
    steal_percent: float | None = None
    notes: list[str] = field(default_factory=list)


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def rate(sample: Sample) -> float:
    """What throughput means for the sample's workload: connections/s or statements/s."""
    return sample.result.eps if sample.workload == "churn" else sample.result.qps


@dataclass(frozen=True)
class Row:
    """One target in one (workload, threads) case, summarised over rounds."""

    workload: str
    threads: int
    target: str
    rate: float | None
    p95_ms: float | None
    errors: int
    failed: int
    cpu_per_1k: float | None
    user_percent: float | None
    x_direct: float | None
    x_haproxy: float | None
    cpu_x_haproxy: float | None


Key = tuple[str, int, int, str]  # workload, threads, round, target


def _ratio(
    samples: dict[Key, Sample], s: Sample, other: str, value: Callable[[Sample], float | None]
) -> float | None:
    peer = samples.get((s.workload, s.threads, s.round, other))
    if peer is None or not peer.result.ok or not s.result.ok:
        return None
    mine, theirs = value(s), value(peer)
    return mine / theirs if mine is not None and theirs else None


def summarize(samples: Sequence[Sample], targets: Sequence[str]) -> list[Row]:
    by_key = {(s.workload, s.threads, s.round, s.target): s for s in samples}
    cases = list(dict.fromkeys((s.workload, s.threads) for s in samples))
    return [
        _row(by_key, [s for s in samples if (s.workload, s.threads, s.target) == (w, t, name)])
        for w, t in cases
        for name in targets
        if any((s.workload, s.threads, s.target) == (w, t, name) for s in samples)
    ]


def _row(by_key: dict[Key, Sample], runs: list[Sample]) -> Row:
    ok = [s for s in runs if s.result.ok]
    first = runs[0]
    return Row(
        first.workload,
        first.threads,
        first.target,
        median(rate(s) for s in ok),
        median(s.result.p95_ms for s in ok),
        sum(s.result.errors for s in ok),
        len(runs) - len(ok),
        median(s.cpu_per_1k for s in ok),
        median(s.user_percent for s in ok),
        median(_ratio(by_key, s, DIRECT, rate) for s in ok) if first.target != DIRECT else None,
        median(_ratio(by_key, s, HAPROXY, rate) for s in ok) if first.target != HAPROXY else None,
        median(_ratio(by_key, s, HAPROXY, lambda x: x.cpu_per_1k) for s in ok)
        if first.target != HAPROXY
        else None,
    )


# -- formatting ------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".0f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _facts(results: Results) -> list[str]:
    rows = [(k, v) for k, v in results.facts.items()]
    rows += [(k, v) for k, v in results.parameters.items()]
    if results.steal_percent is not None:
        rows.append(("CPU steal during the run", f"{results.steal_percent:.1f} %"))
    return table(("machine and run", ""), rows)


METHOD: Final = """\
How it was measured:

- Targets: **direct** = the primary pod (mysql-0, 127.0.0.10:3306); **haproxy** = Debian haproxy,
  TCP mode, 1 thread, in front of the primary; **rwproxy** = `python -m proxy serve --config
  config/local.yaml` with the default `routing.mode: split` (reads to the two replicas, writes and
  transactions to the primary); **rwproxy-writer-only** = the same with
  `RWPROXY_ROUTING__MODE=writer_only` (everything to the primary: the like-for-like comparison with
  haproxy). Proxies listen on 127.0.0.1 and run as children of the harness (`RWPROXY_HTTP=null`).
- sysbench 1.0 (Debian), `--db-ps-mode=disable` (text protocol), 4 tables x 10,000 rows in a
  database of its own, deadlocks/lock-wait timeouts ignored and counted as errors. `read_only`
  runs with `--skip_trx=on`: without it oltp_read_only wraps each event's reads in BEGIN/COMMIT,
  and a correct splitter keeps all of them on the writer, so `skip_trx` is what exercises
  replica reads.
- Targets are interleaved in every round (their order rotates from round to round); every figure
  is the median over rounds; "x direct" / "x haproxy" are medians of ratios measured in the same
  round.
- Proxy CPU = utime + stime of the proxy process (/proc/<pid>/stat) over the whole sysbench run,
  divided by the statements it completed, per 1,000 statements (0.050 s/1k = 50 us per
  statement); read the same way for haproxy and rwproxy. Direct has no process in between: n/a.
  "of it user %" is the utime share: the rest is the kernel's (reads, writes, epoll), which
  every proxy pays alike, so the difference between proxies is mostly in user space.
- Churn: `bench/churn.lua` under sysbench, 1 thread: each event connects, runs `SELECT 1`, reads
  it and disconnects (libmariadb, C), so the client's own cost is small next to a Python
  client's; events/s = connections/s.
- Streaming: `SELECT REPEAT('x', 1000) FROM seq_1_to_200000` (~203 MB on the wire) read by a
  raw-socket client that only walks packet headers (bench/wire.py), through a fresh rwproxy
  (split: the read goes to a replica) and directly from a replica (mysql-1); the proxy's VmRSS
  is sampled every 10 ms. MB = 10^6 bytes.
- Idle clients: a fresh rwproxy; clients log in with the proxy's own `ClientHandshake` on raw
  sockets and then sit idle; RSS (VmRSS, KiB) before and with them, after 2 s to settle.
"""


def _noise_section(results: Results) -> list[str]:
    runs = results.samples + results.churn
    if not runs:
        return []
    rows = []
    for round_no in sorted({s.round for s in runs}):
        shares = [s.foreign_percent for s in runs if s.round == round_no]
        rows.append(
            [str(round_no), str(len(shares)), fmt(median(shares), ".1f"), f"{max(shares):.1f}"]
        )
    lines = [
        "## Noise: CPU taken by other processes during the runs",
        "",
        "Share of the whole machine (100 % = all cores) used meanwhile by processes that are",
        "not part of the benchmark (other engineers' unit tests, builds); the lock keeps only",
        "integration test sessions away. In noisy rounds, trust same-round ratios over rates.",
        "",
    ]
    return lines + table(("round", "runs", "median %", "max %"), rows) + [""]


def _sysbench_section(results: Results) -> list[str]:
    lines = ["## sysbench", ""]
    header = ["threads", "target", "QPS", "x direct", "x haproxy", "p95 ms", "errors"]
    header += ["proxy CPU s/1k stmts", "of it user %", "CPU x haproxy"]
    rows = summarize(results.samples, results.targets)
    for workload in dict.fromkeys(r.workload for r in rows):
        lines += [f"### {workload}", ""]
        lines += table(header, [_sysbench_cells(r) for r in rows if r.workload == workload])
        lines.append("")
    return lines


def _errors(r: Row) -> str:
    return str(r.errors) + (f" ({r.failed} runs failed)" if r.failed else "")


def _sysbench_cells(r: Row) -> list[str]:
    return [
        str(r.threads),
        r.target,
        fmt(r.rate),
        fmt(r.x_direct, ".2f", "x"),
        fmt(r.x_haproxy, ".2f", "x"),
        fmt(r.p95_ms, ".2f"),
        _errors(r),
        fmt(r.cpu_per_1k, ".4f"),
        fmt(r.user_percent, ".0f"),
        fmt(r.cpu_x_haproxy, ".2f", "x"),
    ]


def _churn_cells(r: Row) -> list[str]:
    return [
        r.target,
        fmt(r.rate),
        fmt(r.x_direct, ".2f", "x"),
        fmt(r.p95_ms, ".2f"),
        _errors(r),
        fmt(r.cpu_per_1k, ".3f"),
        fmt(r.user_percent, ".0f"),
    ]


def _churn_section(results: Results) -> list[str]:
    if not results.churn:
        return []
    header = ["target", "connections/s", "x direct", "p95 ms", "errors"]
    header += ["proxy CPU s/1k conns", "of it user %"]
    rows = summarize(results.churn, results.targets)
    cells = [_churn_cells(r) for r in rows]
    return [
        "## Connection churn (connect, SELECT 1, close; 1 thread)",
        "",
        *table(header, cells),
        "",
    ]


def stream_summary(streams: Sequence[StreamSample]) -> dict[str, float | None]:
    direct = {s.round: s.mb_per_s for s in streams if s.target == DIRECT}
    proxy = [s for s in streams if s.target != DIRECT]
    return {
        "direct_mb_s": median(direct.values()),
        "proxy_mb_s": median(s.mb_per_s for s in proxy),
        "x_direct": median(s.mb_per_s / direct[s.round] for s in proxy if s.round in direct),
        "base_kib": float(proxy[0].base_kib) if proxy and proxy[0].base_kib is not None else None,
        "peak_kib": max((s.peak_kib or 0 for s in proxy), default=None),
        "growth_kib": max((s.growth_kib or 0 for s in proxy), default=None),
    }


def _stream_section(results: Results) -> list[str]:
    if not results.streams:
        return []
    rows = [
        [
            str(s.round),
            s.target,
            f"{s.bytes / 1e6:.0f}",
            f"{s.mb_per_s:.0f}",
            fmt(None if s.base_kib is None else s.base_kib / 1024, ".1f"),
            fmt(None if s.peak_kib is None else s.peak_kib / 1024, ".1f"),
            fmt(None if s.growth_kib is None else s.growth_kib / 1024, ".1f"),
            fmt(s.cpu_seconds, ".2f"),
        ]
        for s in results.streams
    ]
    header = ["round", "target", "MB", "MB/s", "RSS before MiB", "peak MiB", "growth MiB"]
    header.append("proxy CPU s")
    summary = stream_summary(results.streams)
    total = (
        f"Median: direct {fmt(summary['direct_mb_s'])} MB/s, rwproxy {fmt(summary['proxy_mb_s'])}"
        f" MB/s = **{fmt(summary['x_direct'], '.2f')}x direct**; largest RSS growth "
        f"**{fmt(mib(summary['growth_kib']), '.1f')} MiB**."
    )
    return ["## Streaming a ~200 MB result", "", *table(header, rows), "", total, ""]


def mib(kib: float | None) -> float | None:
    return None if kib is None else kib / 1024


def _idle_section(results: Results) -> list[str]:
    if not results.idle:
        return []
    header = ("idle clients", "RSS before MiB", "RSS with them MiB", "KiB per client", "login s")
    rows = [
        [
            str(s.clients),
            f"{s.base_kib / 1024:.1f}",
            f"{s.rss_kib / 1024:.1f}",
            f"{s.kib_per_client:.1f}",
            f"{s.open_seconds:.1f}",
        ]
        for s in results.idle
    ]
    return ["## Idle authenticated clients (rwproxy RSS)", "", *table(header, rows), ""]


def _profile_section(results: Results) -> list[str]:
    p = results.profile
    if p is None:
        return []
    during = fmt(results.profile_qps)
    lines = [
        f"## Profile: {results.profile_target}, oltp_point_select, 8 threads (py-spy)",
        "",
        f"{p.samples} samples on CPU at 100 Hz; {during} QPS while profiled (py-spy pauses the"
        " proxy for each sample). uvloop's own C time shows as `Runner.run`.",
        "",
        "Top functions by self time:",
        "",
    ]
    pct = 100 / p.samples if p.samples else 0.0
    lines += table(("self %", "function"), [[f"{n * pct:.1f}", f"`{k}`"] for k, n in p.self_top])
    lines += ["", "By inclusive time:", ""]
    lines += table(
        ("incl %", "function"), [[f"{n * pct:.1f}", f"`{k}`"] for k, n in p.inclusive_top]
    )
    lines += [
        "",
        "Self time by source line (a C call such as `transport.write` is charged here):",
        "",
    ]
    lines += table(("self %", "line"), [[f"{n * pct:.1f}", f"`{k}`"] for k, n in p.line_top[:10]])
    return [*lines, ""]


def _failures(results: Results) -> list[str]:
    failed = [s for s in results.samples + results.churn if not s.result.ok]
    lines = [f"- {note}" for note in results.notes]
    lines += [
        f"- {s.workload} t{s.threads} r{s.round} {s.target}: {s.result.detail}" for s in failed
    ]
    return ["## Notes, skipped targets and failed runs", "", *lines, ""] if lines else []


# -- the goals ------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    what: str
    value: float | None
    unit: str  # "x" for a ratio, " ms", " MiB" or " KiB"
    limit: float
    at_least: bool  # True: value >= limit; False: value <= limit (< for strict)
    strict: bool = False

    def verdict(self) -> str:
        if self.value is None:
            return "n/a"
        if self.at_least:
            met = self.value >= self.limit
        else:
            met = self.value < self.limit if self.strict else self.value <= self.limit
        return "met" if met else "**not met**"


def _find(rows: Sequence[Row], workload: str, threads: int, target: str) -> Row | None:
    wanted = (workload, threads, target)
    return next((r for r in rows if (r.workload, r.threads, r.target) == wanted), None)


def _sysbench_goals(results: Results) -> list[Goal]:
    rows = summarize(results.samples, results.targets)
    row = _find(rows, "point_select", 8, WRITER_ONLY)
    qps = row.x_haproxy if row else None
    cpu = row.cpu_x_haproxy if row else None
    return [
        Goal("writer-only point_select t8 QPS vs haproxy >= 0.9x", qps, "x", 0.9, True),
        Goal("writer-only point_select t8 CPU/stmt vs haproxy <= 1.3x", cpu, "x", 1.3, False),
        Goal(
            "routing point_select t8 QPS vs writer-only >= 1.0x",
            _rate_ratio(_find(rows, "point_select", 8, ROUTING), row),
            "x",
            1.0,
            True,
        ),
        *_latency_goals(rows),
    ]


def _latency_goals(rows: Sequence[Row]) -> list[Goal]:
    haproxy = _find(rows, "point_select", 1, HAPROXY)
    return [
        Goal(
            f"{name} point_select t1 p95 minus haproxy's <= 0.10 ms",
            _p95_excess(_find(rows, "point_select", 1, name), haproxy),
            " ms",
            0.10,
            False,
        )
        for name in (ROUTING, WRITER_ONLY)
    ]


def _rate_ratio(row: Row | None, base: Row | None) -> float | None:
    """Medians' ratio (the two targets do not share a same-round ratio column)."""
    if row is None or base is None or row.rate is None or not base.rate:
        return None
    return row.rate / base.rate


def _p95_excess(row: Row | None, base: Row | None) -> float | None:
    if row is None or base is None or row.p95_ms is None or base.p95_ms is None:
        return None
    return row.p95_ms - base.p95_ms


def _churn_goals(results: Results) -> list[Goal]:
    rows = summarize(results.churn, results.targets)
    goals = []
    for name in (ROUTING, WRITER_ONLY):
        row = _find(rows, "churn", 1, name)
        ratio = row.x_direct if row else None
        goals.append(Goal(f"{name} churn vs direct >= 1.5x", ratio, "x", 1.5, True))
    return goals


def _stream_goals(results: Results) -> list[Goal]:
    summary = stream_summary(results.streams) if results.streams else {}
    growth = mib(summary.get("growth_kib"))
    return [
        Goal("streaming vs direct >= 0.8x", summary.get("x_direct"), "x", 0.8, True),
        Goal("streaming RSS growth < 32 MiB", growth, " MiB", 32, False, strict=True),
    ]


def _idle_goals(results: Results) -> list[Goal]:
    most = max(results.idle, key=lambda s: s.clients, default=None)
    what = "idle RSS per client at 5,000 <= 20 KiB"
    if most is not None and most.clients != 5000:
        what += f" (measured at {most.clients:,} only)"
    return [Goal(what, most.kib_per_client if most else None, " KiB", 20, False)]


def goals_section(results: Results) -> list[str]:
    goals = [
        *_sysbench_goals(results),
        *_churn_goals(results),
        *_stream_goals(results),
        *_idle_goals(results),
    ]
    rows = [
        [g.what, fmt(g.value, ".1f" if "iB" in g.unit else ".2f", g.unit), g.verdict()]
        for g in goals
    ]
    return ["## Goals of the issue", "", *table(("goal", "measured", "verdict"), rows), ""]


def render(results: Results) -> str:
    lines = [f"# rwproxy benchmarks ({results.mode})", "", *_facts(results), "", METHOD]
    if results.idle_cpu_ms_per_s:
        idle = ", ".join(f"{k} {v:.1f}" for k, v in results.idle_cpu_ms_per_s.items())
        lines += [f"Proxy CPU at rest (health checks etc.), ms per second: {idle}.", ""]
    lines += goals_section(results)
    sections = (_noise_section, _sysbench_section, _churn_section, _stream_section, _idle_section)
    for section in sections:
        lines += section(results)
    lines += _profile_section(results) + _failures(results)
    return "\n".join(lines).rstrip() + "\n"
