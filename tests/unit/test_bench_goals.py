"""The goals table of a benchmark report (bench/report.py), from synthetic runs."""

from __future__ import annotations

from bench.measure import Sample
from bench.report import DIRECT, HAPROXY, ROUTING, WRITER_ONLY, Results, goals_section
from bench.sysbench import Result


def run(threads: int, target: str, qps: float, p95_ms: float) -> Sample:
    cpu = None if target == DIRECT else 0.03 * qps / 1000 * 10  # 30 us per statement, 10 s
    result = Result(events=int(qps * 10), queries=int(qps * 10), seconds=10.0, p95_ms=p95_ms)
    return Sample("point_select", threads, 1, target, result, cpu)


def goals(*samples: Sample) -> dict[str, tuple[str, str]]:
    results = Results(mode="test", targets=[DIRECT, HAPROXY, ROUTING, WRITER_ONLY])
    results.samples = list(samples)
    rows = [line for line in goals_section(results) if line.startswith("| ")][1:]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    return {what: (measured, verdict) for what, measured, verdict in cells}


def test_routing_against_writer_only_and_latency_over_haproxy() -> None:
    table = goals(
        run(8, DIRECT, 40000, 0.3),
        run(8, HAPROXY, 24000, 0.6),
        run(8, ROUTING, 15000, 0.9),
        run(8, WRITER_ONLY, 18000, 0.7),
        run(1, DIRECT, 8000, 0.17),
        run(1, HAPROXY, 7000, 0.19),
        run(1, ROUTING, 5000, 0.32),
        run(1, WRITER_ONLY, 5100, 0.26),
    )
    assert table["routing point_select t8 QPS vs writer-only >= 1.0x"] == ("0.83x", "**not met**")
    assert table["rwproxy point_select t1 p95 minus haproxy's <= 0.10 ms"] == (
        "0.13 ms",
        "**not met**",
    )
    assert table["rwproxy-writer-only point_select t1 p95 minus haproxy's <= 0.10 ms"] == (
        "0.07 ms",
        "met",
    )
    assert table["writer-only point_select t8 QPS vs haproxy >= 0.9x"] == ("0.75x", "**not met**")


def test_goals_without_runs_say_so() -> None:
    table = goals()
    assert table["routing point_select t8 QPS vs writer-only >= 1.0x"] == ("n/a", "n/a")
    assert table["rwproxy point_select t1 p95 minus haproxy's <= 0.10 ms"] == ("n/a", "n/a")
