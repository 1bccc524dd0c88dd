"""Routing through a real proxy, proven by the servers: which pod logged each statement.

The corpus (`routing_corpus.py`) runs once per module through one proxy, each scenario on a
fresh PyMySQL connection with CLIENT_MULTI_STATEMENTS. Every statement carries a unique
marker comment; MariaDB keeps comments in its general log, so after the run one query per
pod (`GeneralLog.where`) says where each statement ran. Nothing here asks the proxy where
it sent anything: the proxy's classifier is only used to measure that the corpus covers
every kind, pin and hint it knows.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pymysql
import pytest
from pymysql.constants import CLIENT

from proxy.routing.classify import Hint, PinCause, StatementKind, classify
from tests.integration.cluster_fixture import ClusterHandle
from tests.integration.proxy_fixtures import GeneralLog, LogEntry
from tests.integration.routing_corpus import SCENARIOS, Rows, Scenario, Step, Where
from tests.support.proxy_harness import ProxyThread, cluster_config

pytestmark = pytest.mark.integration

MIN_STATEMENTS = 150


@dataclass
class StepRun:
    """One step as it ran: its final text, marker, and what the client saw."""

    step: Step
    sql: str
    key: int
    error: int | None = None
    error_text: str = ""
    rows: Rows | None = None


@dataclass
class CorpusRun:
    names: dict[str, str]
    runs: dict[str, list[StepRun]]
    seen: dict[int, list[LogEntry]] = field(default_factory=dict)
    primary: str = ""
    replicas: tuple[str, ...] = ()

    def pods(self, run: StepRun) -> list[str]:
        return [entry.pod for entry in self.seen.get(run.key, [])]


# -- running the corpus ------------------------------------------------------------------


def _object_names(run: str) -> dict[str, str]:
    base = f"rwt_{run}"
    return {
        "t": f"{base}_t",
        "t2": f"{base}_t2",
        "seq": f"{base}_seq",
        "fn": f"{base}_fn",
        "proc": f"{base}_proc",
        "proc_out": f"{base}_proc_out",
    }


def _setup(cluster: ClusterHandle, names: dict[str, str]) -> None:
    statements = [
        "CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, v INT, s VARCHAR(100))",
        "INSERT INTO {t} (v, s) VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        "CREATE TABLE {t2} (id INT PRIMARY KEY, v INT, s VARCHAR(100))",
        "INSERT INTO {t2} VALUES (1, 10, 'one'), (2, 20, 'two'), (3, 30, 'three'),"
        " (4, 40, 'four'), (5, 50, 'five')",
        "CREATE SEQUENCE {seq}",
        "CREATE FUNCTION {fn}(x INT) RETURNS INT DETERMINISTIC RETURN x + 1",
        "CREATE PROCEDURE {proc}() SELECT COUNT(*) FROM {t}",
        "CREATE PROCEDURE {proc_out}(OUT x INT) SET x = 7",
    ]
    with cluster.connect(cluster.primary, "admin") as conn, conn.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql.format(**names))
    cluster.wait_replicated()


def _teardown(cluster: ClusterHandle, names: dict[str, str], run: str) -> None:
    with cluster.connect(cluster.primary, "admin") as conn, conn.cursor() as cursor:
        cursor.execute("XA RECOVER")  # a scenario that failed between XA PREPARE and COMMIT
        for *_, xid in cursor.fetchall():
            if xid.startswith(f"rwt-{run}-".encode()):
                # 1402 XA_RBROLLBACK: rolled back (its session is gone), which is the point.
                with contextlib.suppress(pymysql.err.OperationalError):
                    cursor.execute("XA ROLLBACK %s", (xid.decode(),))
        cursor.execute("DROP FUNCTION IF EXISTS {fn}".format(**names))
        cursor.execute("DROP PROCEDURE IF EXISTS {proc}".format(**names))
        cursor.execute("DROP PROCEDURE IF EXISTS {proc_out}".format(**names))
        cursor.execute(
            "SELECT table_name, table_type FROM information_schema.tables"
            " WHERE table_schema = %s AND table_name LIKE %s",
            (cluster.database, f"rwt\\_{run}\\_%"),
        )
        for name, kind in cursor.fetchall():
            what = {"VIEW": "VIEW", "SEQUENCE": "SEQUENCE"}.get(kind, "TABLE")
            cursor.execute(f"DROP {what} IF EXISTS `{name}`")
        cursor.execute(
            "SELECT routine_name, routine_type FROM information_schema.routines"
            " WHERE routine_schema = %s AND routine_name LIKE %s",
            (cluster.database, f"rwt\\_{run}\\_%"),
        )
        for name, kind in cursor.fetchall():
            cursor.execute(f"DROP {kind} IF EXISTS `{name}`")


def render(text: str, names: dict[str, str]) -> str:
    for key, value in names.items():
        text = text.replace("{" + key + "}", value)
    return text


def _render_rows(rows: Any, names: dict[str, str]) -> Any:
    if isinstance(rows, tuple):
        return tuple(_render_rows(item, names) for item in rows)
    return render(rows, names) if isinstance(rows, str) else rows


def _run_scenario(
    port: int, cluster: ClusterHandle, scenario: Scenario, names: dict[str, str], log: GeneralLog
) -> list[StepRun]:
    runs = []
    conn = pymysql.connect(
        host="127.0.0.1",
        port=port,
        user=cluster.app.user,
        password=cluster.app.password,
        database=cluster.database,
        autocommit=True,
        ssl_disabled=True,
        client_flag=CLIENT.MULTI_STATEMENTS,
        read_timeout=30,
    )
    try:
        for step in scenario.steps:
            marker = log.marker()
            text = step.sql if "{m}" in step.sql else f"{step.sql} {{m}}"
            run = StepRun(step, render(text, {**names, "m": marker}), log.key(marker))
            runs.append(run)
            try:
                with conn.cursor() as cursor:
                    cursor.execute(run.sql)
                    while True:
                        if run.rows is None and cursor.description is not None:
                            run.rows = tuple(cursor.fetchall())
                        if not cursor.nextset():
                            break
            except pymysql.err.MySQLError as exc:
                run.error = int(exc.args[0]) if exc.args else -1
                run.error_text = str(exc)
    finally:
        conn.close()
    return runs


@pytest.fixture(scope="module")
def corpus_run(cluster: ClusterHandle) -> Iterator[CorpusRun]:
    log = GeneralLog(cluster)
    names = _object_names(log.run)
    _setup(cluster, names)
    proxy = ProxyThread(cluster_config()).start()
    names["db"] = cluster.database
    result = CorpusRun(names, {}, primary=cluster.primary, replicas=cluster.replicas)
    try:
        with log:
            for index, scenario in enumerate(SCENARIOS):
                per_scenario = {
                    **names,
                    "new": f"rwt_{log.run}_n{index}",
                    "xid": f"rwt-{log.run}-x{index}",
                }
                result.runs[scenario.name] = _run_scenario(
                    proxy.port, cluster, scenario, per_scenario, log
                )
            markers = [f"rwt-{log.run}-{r.key}" for runs in result.runs.values() for r in runs]
            result.seen = log.where(markers)
        yield result
    finally:
        proxy.stop()
        _teardown(cluster, names, log.run)


# -- checking one scenario ---------------------------------------------------------------


def _placement_problem(corpus: CorpusRun, runs: list[StepRun], index: int) -> str | None:
    run = runs[index]
    pods = corpus.pods(run)
    where = run.step.where
    if not pods:
        return "not logged by any pod"
    if where is Where.PRIMARY and set(pods) != {corpus.primary}:
        return f"must run on {corpus.primary} only, ran on {sorted(pods)}"
    if where is Where.REPLICA and (len(pods) != 1 or pods[0] not in corpus.replicas):
        return f"must run once on one replica, ran on {sorted(pods)}"
    if where is Where.SESSION and corpus.primary not in pods:
        return f"session state must be set on {corpus.primary}, ran on {sorted(pods)}"
    if where is Where.SAME:
        reference = runs[index + run.step.same_as if run.step.same_as < 0 else run.step.same_as]
        expected = set(corpus.pods(reference))
        if len(pods) != 1 or set(pods) != expected:
            return f"must run where {reference.sql!r} ran ({sorted(expected)}), ran on {pods}"
    return None


def _outcome_problem(run: StepRun, names: dict[str, str]) -> str | None:
    step = run.step
    if step.error is None and run.error is not None:
        return f"failed: {run.error_text}"
    if step.error is not None and run.error != step.error:
        return f"must fail with {step.error}, got {run.error or 'success'} {run.error_text}"
    if step.rows is None or run.error is not None:
        return None
    rows = run.rows or ()
    if callable(step.rows):
        return None if step.rows(rows) else f"unexpected rows {rows!r}"
    expected = _render_rows(step.rows, names)
    return None if rows == expected else f"rows {rows!r}, expected {expected!r}"


def _scenario_problems(corpus: CorpusRun, runs: list[StepRun]) -> list[str]:
    names = corpus.names
    problems = []
    for index, run in enumerate(runs):
        for problem in (_outcome_problem(run, names), _placement_problem(corpus, runs, index)):
            if problem is not None:
                problems.append(f"step {index} {run.sql!r}: {problem}")
    writer_threads = {
        entry.thread_id
        for run in runs
        for entry in corpus.seen.get(run.key, [])
        if entry.pod == corpus.primary
    }
    if len(writer_threads) > 1:
        problems.append(f"the session used {len(writer_threads)} writer connections")
    return problems


# -- tests -------------------------------------------------------------------------------


def test_corpus_is_large_and_covers_every_rule() -> None:
    steps = [step for scenario in SCENARIOS for step in scenario.steps]
    assert len(steps) >= MIN_STATEMENTS
    assert len({scenario.name for scenario in SCENARIOS}) == len(SCENARIOS)
    verdicts = [classify(step.sql.replace("{m}", "")) for step in steps]
    assert {v.kind for v in verdicts} == set(StatementKind)
    assert {v.pin for v in verdicts} - {None} == set(PinCause)
    assert {v.hint for v in verdicts} - {None} == set(Hint)
    assert any(v.statements > 1 for v in verdicts)
    assert {step.where for step in steps} == set(Where)


# Proxy bugs the corpus found (see the report); remove an entry when its bug is fixed.
KNOWN_BUGS: dict[str, str] = {}


def _scenario_param(scenario: Scenario) -> Any:
    bug = KNOWN_BUGS.get(scenario.name)
    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
    return pytest.param(scenario, id=scenario.name, marks=marks)


@pytest.mark.parametrize("scenario", [_scenario_param(s) for s in SCENARIOS])
def test_statement_lands_where_the_rules_say(corpus_run: CorpusRun, scenario: Scenario) -> None:
    problems = _scenario_problems(corpus_run, corpus_run.runs[scenario.name])
    assert not problems, "\n".join(problems)


def test_no_write_ever_reaches_a_replica(corpus_run: CorpusRun) -> None:
    """Every write of the corpus, looked up in both replicas' logs at once: none is there."""
    writes = {r.key: r.sql for runs in corpus_run.runs.values() for r in runs if r.step.write}
    assert len(writes) >= 100
    leaked = [
        f"{entry.pod}: {writes[key]!r}"
        for key in writes
        for entry in corpus_run.seen.get(key, [])
        if entry.pod != corpus_run.primary
    ]
    assert not leaked, "writes reached a replica:\n" + "\n".join(leaked)


def test_reads_use_every_healthy_replica(corpus_run: CorpusRun) -> None:
    """Plain reads go to the replicas, and to both of them (sessions are spread)."""
    reads = [r for runs in corpus_run.runs.values() for r in runs if r.step.where is Where.REPLICA]
    pods = Counter(pod for r in reads for pod in corpus_run.pods(r))
    assert set(pods) == set(corpus_run.replicas), pods
    assert min(pods.values()) >= len(reads) // 5, pods
