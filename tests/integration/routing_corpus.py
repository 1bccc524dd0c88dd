"""Statements run through the proxy against the real cluster, with where each must run.

Each `Scenario` runs on one fresh client connection (autocommit on, CLIENT_MULTI_STATEMENTS
on), step by step, because routing depends on what the session did before (a transaction, a
pin, the previous statement's backend). Each `Step` names where the *servers* must log it:

* `PRIMARY`: on mysql-0 and on no replica;
* `REPLICA`: on exactly one replica and not on mysql-0;
* `SAME`: on the same pod as an earlier step of the scenario (`same_as`, default the
  previous one), e.g. FOUND_ROWS() after a read, or a read inside START TRANSACTION READ ONLY;
* `SESSION`: on mysql-0 (session state is set on the writer); copies replayed on the
  replica connection of the session are expected and allowed.

`write=True` marks statements that must never reach a replica whatever else happens
(data changes, DDL, locking reads, sequences, named locks...): the routing test scans the
replicas' logs for every one of them.

Placeholders, replaced per run with names no other test uses: ``{t}`` (a table with rows
1..3), ``{t2}`` (read-only table with rows 1..5), ``{seq}`` (a sequence), ``{fn}`` (a stored
function, DETERMINISTIC, created by admin), ``{proc}`` (a procedure returning a count),
``{proc_out}`` (a procedure with an OUT argument that sets it to 7), ``{db}`` (the
database), ``{new}`` (a fresh name for objects a scenario creates), ``{xid}`` (an XA id).
``{m}`` is where the marker comment goes; a step without ``{m}`` gets it appended at the
end (inside a trailing ``--``/``#`` comment it is still logged, and still only a comment).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Where(enum.Enum):
    PRIMARY = "primary"
    REPLICA = "replica"
    SAME = "same"
    SESSION = "session"


Rows = tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class Step:
    sql: str
    where: Where
    write: bool = False
    error: int | None = None  # the server error code this statement must fail with
    rows: Rows | Callable[[Rows], bool] | None = None  # first result with columns, or a check
    same_as: int = -1  # for SAME: index of the step (negative: relative to this one)


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: tuple[Step, ...]


def W(sql: str, **kw: Any) -> Step:
    """A write: on the primary, never on a replica."""
    return Step(sql, Where.PRIMARY, write=True, **kw)


def P(sql: str, **kw: Any) -> Step:
    """A read that must run on the primary (transaction, pin, cautious read, hint)."""
    return Step(sql, Where.PRIMARY, **kw)


def R(sql: str, **kw: Any) -> Step:
    """A read that must run on a replica."""
    return Step(sql, Where.REPLICA, **kw)


def S(sql: str, same_as: int = -1, **kw: Any) -> Step:
    """A statement that must run where an earlier step ran."""
    return Step(sql, Where.SAME, same_as=same_as, **kw)


def SET(sql: str, **kw: Any) -> Step:
    """Session state: set on the primary, replayed wherever the session reads."""
    return Step(sql, Where.SESSION, **kw)


def _one(name: str, step: Step) -> Scenario:
    return Scenario(name, (step,))


def _singles(prefix: str, steps: list[Step]) -> list[Scenario]:
    return [_one(f"{prefix}-{i:02d}", step) for i, step in enumerate(steps)]


def _positive(rows: Rows) -> bool:
    return bool(rows) and int(rows[0][0]) > 0


def _not_empty(rows: Rows) -> bool:
    return len(rows) > 0


# -- single statements on a fresh session ------------------------------------------------

PLAIN_READS = [
    R("SELECT 1", rows=((1,),)),
    R("select * from {t}", rows=_not_empty),
    R("SeLeCt v FrOm {t} WhErE id = 1"),
    R("  \n\t SELECT COUNT(*) FROM {t2}", rows=((5,),)),
    R("SELECT v FROM {t} ORDER BY v DESC LIMIT 2"),
    R("SELECT DISTINCT s FROM {t2}"),
    R("SELECT v, ROW_NUMBER() OVER (ORDER BY v) FROM {t2}"),
    R("SELECT id FROM {t2} GROUP BY id HAVING COUNT(*) > 0"),
    R("SELECT * FROM {t2} LIMIT 1 OFFSET 1"),
    R("SELECT SQL_NO_CACHE id FROM {t2}"),
    R("SELECT 1 FROM DUAL"),
    R("VALUES (1), (2)", rows=((1,), (2,))),
    R("SELECT NOW(), UUID(), RAND(), VERSION()"),
    R("SELECT CONCAT('a', 'b'), UPPER(s), LENGTH(s) FROM {t2}"),
    R("""SELECT JSON_EXTRACT('{"a": 1}', '$.a')""", rows=(("1",),)),
    R("SELECT GREATEST(1, 2), IF(1, 2, 3), COALESCE(NULL, 1), CASE WHEN 1 THEN 2 END"),
    R("SELECT CAST('1' AS SIGNED), CONVERT('a' USING utf8mb4)"),
    R("SELECT SLEEP(0)", rows=((0,),)),
    R("SELECT @@server_id, @@hostname, @@port", rows=lambda rows: rows[0][0] != 1),
    R("SELECT @@version_comment, @@session.sql_mode"),
    R("SELECT seq FROM seq_1_to_3", rows=((1,), (2,), (3,))),
    R("SELECT * FROM {seq}"),
    R("(SELECT 1)"),
    R("((SELECT 1))"),
    R("SELECT /*!100000 1 + */ 1", rows=((2,),)),
    R("SELECT 1--1", rows=((2,),)),
]

SUBQUERIES_CTES_UNIONS = [
    R("SELECT * FROM {t} WHERE id IN (SELECT id FROM {t2})"),
    R("SELECT * FROM {t} a WHERE EXISTS (SELECT 1 FROM {t2} b WHERE b.id = a.id)"),
    R("SELECT * FROM (SELECT id, v FROM {t2}) AS x WHERE x.v > 0"),
    R("SELECT (SELECT MAX(v) FROM {t2}) AS m", rows=((50,),)),
    R("SELECT a.id FROM {t} a JOIN {t2} b ON a.id = b.id"),
    R("WITH c AS (SELECT id FROM {t2}) SELECT COUNT(*) FROM c", rows=((5,),)),
    R(
        "WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) "
        "SELECT * FROM r",
        rows=((1,), (2,), (3,), (4,), (5,)),
    ),
    R("WITH a AS (SELECT 1 AS x), b AS (SELECT 2 AS x) SELECT * FROM a UNION SELECT * FROM b"),
    R("with cte as (select s from {t2}) select upper(s) from cte"),
    R("SELECT id FROM {t} UNION SELECT id FROM {t2}"),
    R("(SELECT id FROM {t}) UNION ALL (SELECT id FROM {t2})"),
    R("SELECT id FROM {t2} INTERSECT SELECT id FROM {t2}"),
    R("SELECT id FROM {t2} EXCEPT SELECT 5"),
    R("SELECT id FROM {t2} WHERE v = (SELECT MIN(v) FROM {t2})", rows=((1,),)),
]

SHOW_DESCRIBE_EXPLAIN = [
    R("SHOW TABLES"),
    R("SHOW FULL TABLES"),
    R("SHOW CREATE TABLE {t}"),
    R("SHOW COLUMNS FROM {t}"),
    R("SHOW INDEX FROM {t}"),
    R("SHOW DATABASES"),
    R("SHOW VARIABLES LIKE 'max_allowed_packet'"),
    R("SHOW SESSION VARIABLES LIKE 'autocommit'"),
    R("SHOW TABLE STATUS LIKE '{t}'"),
    R("SHOW GRANTS"),
    R("SHOW CHARACTER SET LIKE 'utf8mb4'"),
    R("SHOW COLLATION LIKE 'utf8mb4_bin'"),
    R("SHOW PLUGINS"),
    R("DESCRIBE {t}"),
    R("DESC {t}"),
    R("describe {t} v"),
    R("EXPLAIN SELECT * FROM {t} WHERE id = 1"),
    R("EXPLAIN FORMAT=JSON SELECT * FROM {t}"),
    R("EXPLAIN EXTENDED SELECT 1"),
    R("ANALYZE SELECT * FROM {t2}"),
    R("HELP 'SELECT'"),
    R("SET STATEMENT max_statement_time=60 FOR SELECT COUNT(*) FROM {t2}", rows=((5,),)),
]

# EXPLAIN of a data-changing statement is refused by a read_only server (ERROR 1290 for an
# ordinary user), although it changes nothing: it must run on the writer.
EXPLAIN_WRITES = [
    P("EXPLAIN UPDATE {t} SET v = v + 1"),
    P("EXPLAIN DELETE FROM {t} WHERE id = 1"),
    P("EXPLAIN INSERT INTO {t} (v, s) SELECT v, s FROM {t2}"),
]

CAUTIOUS_READS = [
    P("SELECT CONNECTION_ID()"),
    P("SELECT {fn}(1)", rows=((2,),)),
    P("SELECT {db}.{fn}(1)", rows=((2,),)),
    P("SELECT v, {fn}(v) FROM {t2}"),
    P("EXPLAIN SELECT {fn}(1)"),
    P("SELECT @@gtid_current_pos"),
    P("SELECT @@global.gtid_binlog_pos"),
    P("SELECT MASTER_GTID_WAIT('', 0)", rows=((0,),)),
    P("SHOW STATUS LIKE 'Threads_connected'"),
    P("SHOW GLOBAL STATUS LIKE 'Uptime'"),
    P("SHOW PROCESSLIST"),
    P("SHOW FULL PROCESSLIST"),
    P("SHOW OPEN TABLES"),
    P("SHOW ENGINE INNODB STATUS", error=1227),
    P("SHOW MASTER STATUS", error=1227),
    P("SHOW SLAVE STATUS", error=1227),
    P("CHECKSUM TABLE {t2}"),
]

HINTS = [
    R("/* rwproxy:replica */ SELECT {fn}(1)", rows=((2,),)),
    R("SELECT CONNECTION_ID() /* rwproxy:replica */"),
    R("SHOW STATUS LIKE 'Uptime' /* rwproxy:reader */"),
    R("SELECT 'rwproxy:primary' AS s", rows=(("rwproxy:primary",),)),
    P("SELECT /* rwproxy:primary */ 1"),
    P("/* rwproxy:writer */ SELECT * FROM {t2}"),
    P("SELECT * FROM {t2} /* rwproxy:primary */"),
    W("INSERT /* rwproxy:replica */ INTO {t} (v, s) VALUES (1, 'hinted')"),
    W("SELECT * FROM {t} WHERE id = 1 FOR UPDATE /* rwproxy:replica */"),
    W("/* rwproxy:reader */ UPDATE {t} SET v = v WHERE id = 2"),
]

LOCKING_READS = [
    W("SELECT * FROM {t} WHERE id = 1 FOR UPDATE"),
    W("select * from {t} for   update"),
    W("SELECT * FROM {t} FOR UPDATE NOWAIT"),
    W("SELECT * FROM {t} FOR UPDATE SKIP LOCKED"),
    W("SELECT * FROM {t} LOCK IN SHARE MODE"),
    W("SELECT * FROM {t}\n  LOCK\tIN  SHARE\nMODE"),
    W("SELECT * FROM {t} /*! FOR UPDATE */"),
    W("SELECT * FROM {t} /*!100000 FOR UPDATE */"),
    W("SELECT * FROM {t} /*M! LOCK IN SHARE MODE */"),
    W("SELECT * FROM {t} WHERE id IN (SELECT id FROM {t2} FOR UPDATE)"),
    W("(SELECT id FROM {t}) UNION (SELECT id FROM {t2} FOR UPDATE)"),
    W("SELECT * FROM {t} FOR SHARE", error=1064),  # MariaDB 10.11 has no FOR SHARE
    W("SELECT 1 INTO OUTFILE '/tmp/rwt-never-written'", error=1227),
    W("SELECT RELEASE_ALL_LOCKS()", rows=((0,),)),
    W("SELECT IS_FREE_LOCK('rwt-lock-free')", rows=((1,),)),
    W("DO 1"),
    W("SELECT LAST_INSERT_ID(42)"),
]

COMMENTS_AND_LITERALS = [
    R("SELECT 1 /* FOR UPDATE */"),
    R("SELECT * FROM {t2} -- FOR UPDATE\n"),
    R("SELECT * FROM {t2} # FOR UPDATE\n"),
    R("SELECT * FROM {t2} -- FOR UPDATE"),
    R("/* INSERT INTO x VALUES (1) */ SELECT 1"),
    R("-- leading comment\nSELECT 2", rows=((2,),)),
    R("# leading hash comment\nSELECT 3", rows=((3,),)),
    R("SELECT 'INSERT INTO x VALUES (1)'", rows=(("INSERT INTO x VALUES (1)",),)),
    R("SELECT 'a; DELETE FROM {t}'", rows=(("a; DELETE FROM {t}",),)),
    R("""SELECT "FOR UPDATE", 'LOCK IN SHARE MODE'"""),
    R("SELECT 'GET_LOCK(''x'', 1)', 'it''s; UPDATE {t} SET v = 0'"),
    R("SELECT 1 AS `for update`, 2 AS `insert`, 3 AS `get_lock(`"),
    R("SELECT 'NEXTVAL({seq})', 'LAST_INSERT_ID()'"),
    R("SELECT 'a:=b', '@v := 1'"),
    W("/* comment */ DELETE FROM {t} WHERE id = -1"),
    W("-- comment\nINSERT INTO {t} (v, s) VALUES (2, 'dash')"),
    W("# comment\nUPDATE {t} SET v = v WHERE id = 3"),
    W("/*! INSERT INTO {t} (v, s) VALUES (7, 'exec') */"),
    W("/*M! DELETE FROM {t} WHERE id = -2 */"),
    # A backslash: with NO_BACKSLASH_ESCAPES the literal ends early and a DELETE follows.
    W("SELECT 'a\\'; DELETE FROM {t} WHERE 0; -- '"),
    W("SELECT /* SELECT */ * FROM {t} /* FROM */ WHERE id = 1 FOR /* x */ UPDATE"),
]

DML = [
    W("INSERT INTO {t} (v, s) VALUES (10, 'a')"),
    W("insert into {t} (v, s) values (11, 'b'), (12, 'c')"),
    W("INSERT INTO {t} SET v = 13, s = 'd'"),
    W("INSERT INTO {t} (v, s) SELECT v, s FROM {t2}"),
    W("INSERT IGNORE INTO {t} (id, v, s) VALUES (1, 0, 'dup')"),
    W("INSERT INTO {t} (id, v, s) VALUES (1, 0, 'x') ON DUPLICATE KEY UPDATE v = v + 1"),
    W("REPLACE INTO {t} (id, v, s) VALUES (1000, 1, 'r')"),
    W("UPDATE {t} SET v = v + 1 WHERE id = 1"),
    W("UPDATE {t} a JOIN {t2} b ON a.id = b.id SET a.v = b.v"),
    W("DELETE FROM {t} WHERE id = 1000"),
    W("DELETE a FROM {t} a JOIN {t2} b ON a.id = b.id WHERE b.id > 100"),
    W("INSERT INTO {t} (v, s) VALUES (1, 'SELECT')"),
    W("UPDATE {t} SET s = 'SELECT * FROM x; ' WHERE id = 2"),
    W("\n\t  UpDaTe {t} SET v = v WHERE id = 2"),
    W("iNsErT INTO {t} (v, s) VALUES (3, 'case')"),
    W("INSERT INTO {t} (v, s) WITH c AS (SELECT 5 AS v) SELECT v, 'cte' FROM c"),
    W("SET STATEMENT max_statement_time=60 FOR UPDATE {t} SET v = v WHERE id = 2"),
    W("DELETE FROM {t} WHERE s = 'rwproxy:replica'"),
    W("UPDATE {t} SET v = {fn}(v) WHERE id = 2"),
    W("ANALYZE UPDATE {t} SET v = v WHERE id = 2"),
    W("CALL {proc}()", rows=_positive),
]

DDL_AND_ADMIN = [
    W("OPTIMIZE TABLE {t2}"),
    W("CHECK TABLE {t2}"),
    W("REPAIR TABLE {t2}"),
    W("ANALYZE TABLE {t2}"),
    W("FLUSH TABLES", error=1227),
    W("GRANT SELECT ON {db}.{t} TO 'rwt_nobody'@'%'", error=1142),
]

SINGLES = [
    *_singles("read", PLAIN_READS),
    *_singles("subquery-cte-union", SUBQUERIES_CTES_UNIONS),
    *_singles("show-describe-explain", SHOW_DESCRIBE_EXPLAIN),
    *_singles("explain-write", EXPLAIN_WRITES),
    *_singles("cautious-read", CAUTIOUS_READS),
    *_singles("hint", HINTS),
    *_singles("locking-read", LOCKING_READS),
    *_singles("comment-literal", COMMENTS_AND_LITERALS),
    *_singles("dml", DML),
    *_singles("ddl-admin", DDL_AND_ADMIN),
]

# -- sequences of statements in one session ----------------------------------------------

SEQUENCES = [
    Scenario(
        "ddl",
        (
            W("CREATE TABLE {new} (id INT PRIMARY KEY, v INT)"),
            W("ALTER TABLE {new} ADD COLUMN w INT"),
            W("CREATE INDEX {new}_i ON {new} (v)"),
            W("DROP INDEX {new}_i ON {new}"),
            W("INSERT INTO {new} (id, v, w) VALUES (1, 2, 3)"),
            R("SELECT * FROM {new}", rows=((1, 2, 3),)),
            W("RENAME TABLE {new} TO {new}_r"),
            W("TRUNCATE TABLE {new}_r"),
            W("CREATE VIEW {new}_v AS SELECT id FROM {t2}"),
            R("SELECT COUNT(*) FROM {new}_v", rows=((5,),)),
            W("DROP VIEW {new}_v"),
            W("CREATE TABLE {new}_c AS SELECT * FROM {t2}"),
            W("CREATE TABLE IF NOT EXISTS {new}_c (id INT)"),
            W("DROP TABLE {new}_r, {new}_c"),
            W("DROP TABLE IF EXISTS {new}_r"),
        ),
    ),
    Scenario(
        "last-insert-id-after-insert",
        (
            W("INSERT INTO {t} (v, s) VALUES (20, 'liid')"),
            S("SELECT LAST_INSERT_ID()", rows=_positive),
            S("SELECT @@last_insert_id, @@identity", rows=_positive),
            S("SELECT ROW_COUNT()", rows=((-1,),)),
        ),
    ),
    Scenario(
        "last-insert-id-set",
        (
            W("SELECT LAST_INSERT_ID(4242)"),
            S("SELECT LAST_INSERT_ID()", rows=((4242,),)),
        ),
    ),
    Scenario(
        "row-count-after-update",
        (
            W("UPDATE {t} SET v = v WHERE id = 1"),
            S("SELECT ROW_COUNT()", rows=((0,),)),
            W("INSERT INTO {t} (v, s) VALUES (21, 'rc'), (22, 'rc')"),
            S("SELECT ROW_COUNT()", rows=((2,),)),
        ),
    ),
    Scenario(
        "found-rows-on-replica",
        (
            R("SELECT SQL_CALC_FOUND_ROWS * FROM {t2} LIMIT 1"),
            S("SELECT FOUND_ROWS()", rows=((5,),)),
        ),
    ),
    Scenario(
        "warnings-on-replica",
        (
            R("SELECT 1 + 'x'"),
            S("SHOW WARNINGS", rows=lambda rows: rows[0][1] == 1292),
            S("SHOW COUNT(*) WARNINGS", rows=((1,),)),
            S("SELECT @@warning_count", rows=((1,),)),
            S("SHOW ERRORS"),
        ),
    ),
    Scenario(
        "warnings-on-writer",
        (
            W("DO 1 + 'x'"),
            S("SHOW WARNINGS", rows=lambda rows: rows[0][1] == 1292),
            S("GET DIAGNOSTICS @rwt_n = NUMBER"),
            # GET DIAGNOSTICS set a user variable on the writer: the session must stay there.
            P("SELECT @rwt_n", rows=((1,),)),
        ),
    ),
    Scenario(
        "sequence",
        (
            W("CREATE SEQUENCE {new}"),
            W("SELECT NEXTVAL({new})", rows=((1,),)),
            W("SELECT NEXT VALUE FOR {new}", rows=((2,),)),
            W("SELECT LASTVAL({new})", rows=((2,),)),
            W("SELECT PREVIOUS VALUE FOR {new}", rows=((2,),)),
            W("SELECT SETVAL({new}, 100)", rows=((100,),)),
            W("select nextval({new})", rows=((101,),)),
            W("INSERT INTO {t} (v, s) VALUES (NEXTVAL({new}), 'seq')"),
            R("SELECT COUNT(*) FROM {t} WHERE s = 'seq' AND v = 102", rows=((1,),)),
            W("DROP SEQUENCE {new}"),
        ),
    ),
    Scenario(
        "procedures",
        (
            W("CREATE PROCEDURE {new}() BEGIN SELECT 1; SELECT 2; END"),
            W("CALL {new}()", rows=((1,),)),
            W("CALL {proc_out}(@rwt_out)"),
            P("SELECT @rwt_out", rows=((7,),)),
            W("DROP PROCEDURE {new}"),
        ),
    ),
    Scenario(
        "transaction-begin-commit",
        (
            W("BEGIN"),
            P("SELECT * FROM {t2}"),
            W("INSERT INTO {t} (v, s) VALUES (30, 'txn')"),
            P("SELECT COUNT(*) FROM {t} WHERE v = 30", rows=_positive),
            P("SELECT @@server_id", rows=((1,),)),
            P("SELECT /* rwproxy:replica */ 1"),
            W("COMMIT"),
            R("SELECT @@server_id", rows=lambda rows: rows[0][0] != 1),
        ),
    ),
    Scenario(
        "transaction-start-rollback",
        (
            W("START TRANSACTION"),
            P("SELECT v FROM {t} WHERE id = 1"),
            W("UPDATE {t} SET v = -100 WHERE id = 1"),
            W("ROLLBACK"),
            R("SELECT COUNT(*) FROM {t} WHERE v = -100", rows=((0,),)),
        ),
    ),
    Scenario(
        "transaction-work",
        (
            W("begin work"),
            P("SELECT {fn}(2)"),
            P("SHOW TABLES"),
            P("SELECT * FROM {t2} -- in a transaction\n"),
            W("commit work"),
            R("SELECT 1"),
        ),
    ),
    Scenario(
        "transaction-consistent-snapshot",
        (
            W("START TRANSACTION WITH CONSISTENT SNAPSHOT"),
            P("SELECT COUNT(*) FROM {t2}", rows=((5,),)),
            W("COMMIT"),
        ),
    ),
    Scenario(
        "transaction-read-write",
        (
            W("START TRANSACTION READ WRITE"),
            P("SELECT 1"),
            W("INSERT INTO {t} (v, s) VALUES (31, 'rw')"),
            W("COMMIT"),
        ),
    ),
    Scenario(
        "transaction-read-only-on-replica",
        (
            R("START TRANSACTION READ ONLY"),
            S("SELECT COUNT(*) FROM {t2}", rows=((5,),)),
            S("SELECT @@server_id", rows=lambda rows: rows[0][0] != 1),
            S("SELECT @@in_transaction", rows=((1,),)),
            S("COMMIT"),
            R("SELECT 1"),
        ),
    ),
    Scenario(
        "transaction-read-only-snapshot",
        (
            R("START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT"),
            S("SELECT id FROM {t2} WHERE id = 1"),
            S("ROLLBACK"),
        ),
    ),
    Scenario(
        "autocommit-off",
        (
            SET("SET autocommit = 0"),
            P("SELECT * FROM {t2}"),
            W("INSERT INTO {t} (v, s) VALUES (32, 'ac0')"),
            W("COMMIT"),
            P("SELECT COUNT(*) FROM {t2}"),
            P("SELECT @@in_transaction", rows=((1,),)),
            W("ROLLBACK"),
            SET("SET autocommit = 1"),
            R("SELECT @@autocommit", rows=((1,),)),
        ),
    ),
    Scenario(
        "autocommit-off-at-session-scope",
        (
            SET("SET SESSION autocommit = OFF"),
            P("SHOW TABLES"),
            W("COMMIT"),
            SET("SET @@session.autocommit = ON"),
            R("SHOW TABLES"),
        ),
    ),
    Scenario(
        "savepoints",
        (
            W("BEGIN"),
            W("SAVEPOINT s1"),
            W("INSERT INTO {t} (v, s) VALUES (33, 'sp')"),
            W("ROLLBACK TO SAVEPOINT s1"),
            W("RELEASE SAVEPOINT s1"),
            W("COMMIT"),
        ),
    ),
    Scenario(
        "xa",
        (
            W("XA START '{xid}'"),
            P("SELECT * FROM {t2}"),
            W("INSERT INTO {t} (v, s) VALUES (34, 'xa')"),
            W("XA END '{xid}'"),
            W("XA PREPARE '{xid}'"),
            W("XA COMMIT '{xid}'"),
            R("SELECT 1"),
        ),
    ),
    Scenario(
        "commit-and-chain",
        (
            W("BEGIN"),
            W("INSERT INTO {t} (v, s) VALUES (35, 'chain')"),
            W("COMMIT AND CHAIN"),
            P("SELECT @@in_transaction", rows=((1,),)),
            W("COMMIT"),
            R("SELECT @@in_transaction", rows=((0,),)),
        ),
    ),
    Scenario(
        "isolation-level",
        (
            SET("SET TRANSACTION ISOLATION LEVEL READ COMMITTED"),
            W("BEGIN"),
            P("SELECT 1"),
            W("COMMIT"),
            R("SELECT 1"),
        ),
    ),
    Scenario(
        "locking-read-in-transaction",
        (
            W("BEGIN"),
            W("SELECT * FROM {t} WHERE id = 1 LOCK IN SHARE MODE"),
            W("COMMIT"),
        ),
    ),
    Scenario(
        "temporary-table",
        (
            W("CREATE TEMPORARY TABLE {new} (a INT)"),
            W("INSERT INTO {new} VALUES (1)"),
            P("SELECT * FROM {new}", rows=((1,),)),
            P("SELECT 1"),
            P("SHOW TABLES"),
            W("DROP TEMPORARY TABLE {new}"),
            P("SELECT 2"),
        ),
    ),
    Scenario(
        "temporary-table-as-select",
        (
            W("create temporary table {new} as select * from {t2}"),
            P("SELECT COUNT(*) FROM {new}", rows=((5,),)),
        ),
    ),
    Scenario(
        "lock-tables-read",
        (
            W("LOCK TABLES {t} READ"),
            P("SELECT COUNT(*) FROM {t}", rows=_positive),
            P("SELECT 1"),
            W("UNLOCK TABLES"),
            R("SELECT COUNT(*) FROM {t2}", rows=((5,),)),
        ),
    ),
    Scenario(
        "lock-tables-write",
        (
            W("LOCK TABLE {t} WRITE"),
            W("INSERT INTO {t} (v, s) VALUES (36, 'locked')"),
            P("SELECT COUNT(*) FROM {t} WHERE v = 36", rows=((1,),)),
            W("UNLOCK TABLES"),
            R("SELECT 1"),
        ),
    ),
    Scenario(
        "get-lock",
        (
            W("SELECT GET_LOCK('{new}', 0)", rows=((1,),)),
            P("SELECT 1"),
            W("SELECT IS_USED_LOCK('{new}')", rows=_positive),
            W("SELECT RELEASE_LOCK('{new}')", rows=((1,),)),
            P("SELECT 2"),
        ),
    ),
    Scenario(
        "get-lock-in-do",
        (
            W("DO GET_LOCK('{new}', 0)"),
            P("SELECT IS_USED_LOCK('{new}') = CONNECTION_ID()", rows=((1,),)),
        ),
    ),
    Scenario(
        "select-into-variable",
        (
            W("SELECT v INTO @rwt_v FROM {t2} WHERE id = 2"),
            P("SELECT @rwt_v", rows=((20,),)),
            P("SELECT * FROM {t2}"),
        ),
    ),
    Scenario(
        "assign-user-variable",
        (
            W("SELECT @rwt_w := 3"),
            P("SELECT @rwt_w", rows=((3,),)),
        ),
    ),
    Scenario(
        "set-user-variable-from-expression",
        (
            W("SET @rwt_u = (SELECT MAX(id) FROM {t2})"),
            P("SELECT @rwt_u", rows=((5,),)),
        ),
    ),
    Scenario(
        "sql-prepare",
        (
            W("PREPARE {new} FROM 'SELECT COUNT(*) FROM {t2}'"),
            W("EXECUTE {new}", rows=((5,),)),
            W("DEALLOCATE PREPARE {new}"),
            P("SELECT 1"),
        ),
    ),
    Scenario(
        "handler",
        (
            W("HANDLER {t2} OPEN"),
            W("HANDLER {t2} READ FIRST", rows=_not_empty),
            W("HANDLER {t2} CLOSE"),
            P("SELECT 1"),
        ),
    ),
    Scenario(
        "session-set-names",
        (
            SET("SET NAMES latin1"),
            R("SELECT @@character_set_client", rows=(("latin1",),)),
            SET("SET NAMES utf8mb4"),
            R("SELECT @@character_set_client, @@character_set_results", rows=_not_empty),
        ),
    ),
    Scenario(
        "session-variables",
        (
            SET("SET @rwt_x = 5"),
            SET("SET time_zone = '+02:00'"),
            SET("SET SESSION sql_mode = 'STRICT_TRANS_TABLES'"),
            R(
                "SELECT @rwt_x, @@time_zone, @@sql_mode",
                rows=((5, "+02:00", "STRICT_TRANS_TABLES"),),
            ),
            SET("SET @@session.max_statement_time = 30"),
            R("SELECT @@max_statement_time", rows=((30.0,),)),
        ),
    ),
    Scenario(
        "use-database",
        (
            SET("USE information_schema"),
            R("SELECT DATABASE()", rows=(("information_schema",),)),
            SET("USE `{db}`"),
            R("SELECT DATABASE(), COUNT(*) FROM {t2}", rows=(("{db}", 5),)),
            SET("USE rwt_no_such_database", error=1044),  # fails: the schema stays
            R("SELECT DATABASE(), COUNT(*) FROM {t2}", rows=(("{db}", 5),)),
        ),
    ),
    Scenario(
        "multi-reads",
        (
            R("SELECT 1 {m}; SELECT 2", rows=((1,),)),
            R("SELECT * FROM {t}; SELECT * FROM {t2}"),
            R("SELECT 'a;b'; SELECT \"c;d\"", rows=(("a;b",),)),
            R("SELECT 1;SELECT 2;SELECT 3"),
            R("SELECT 1 {m}; -- a comment\nSELECT 2"),
            R("SELECT 1; /* INSERT */ SELECT 2"),
            R("SELECT 1; SHOW TABLES; DESCRIBE {t}"),
        ),
    ),
    Scenario(
        "multi-writes",
        (
            W("SELECT 1; INSERT INTO {t} (v, s) VALUES (40, 'multi')"),
            W("INSERT INTO {t} (v, s) VALUES (41, 'multi'); SELECT COUNT(*) FROM {t}"),
            W("UPDATE {t} SET v = v WHERE id = 1; UPDATE {t} SET v = v WHERE id = 2"),
            W("SELECT 1; SELECT * FROM {t} FOR UPDATE"),
            W("DELETE FROM {t} WHERE id = -3; SELECT 1"),
            P("SELECT 1; SELECT {fn}(1)"),
            W("BEGIN; INSERT INTO {t} (v, s) VALUES (42, 'multi'); COMMIT"),
            R("SELECT 1"),
        ),
    ),
    Scenario(
        "multi-opens-transaction",
        (
            W("SELECT 1 {m}; BEGIN"),
            P("SELECT * FROM {t2}"),
            W("COMMIT"),
            R("SELECT 1"),
        ),
    ),
    Scenario(
        "multi-with-session-state",
        (
            W("SET @rwt_a = 1; SELECT @rwt_a", rows=((1,),)),
            P("SELECT @rwt_a", rows=((1,),)),
        ),
    ),
    Scenario(
        "reads-after-write-stay-correct",
        (
            W("INSERT INTO {t} (v, s) VALUES (50, 'ryw')"),
            R("SELECT COUNT(*) FROM {t} WHERE v = 50 AND s = 'ryw'", rows=((1,),)),
            R("SELECT COUNT(*) FROM {t2}", rows=((5,),)),
        ),
    ),
]

SCENARIOS: list[Scenario] = [*SINGLES, *SEQUENCES]


def statement_count() -> int:
    return sum(len(s.steps) for s in SCENARIOS)
