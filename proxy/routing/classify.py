"""Statement classifier: what one COM_QUERY / COM_STMT_PREPARE text asks the server to do.

Theory of operation
-------------------
`classify(sql)` runs on every statement, so it is built like a sieve, cheapest test first
(Vitess ``sqlparser.Preview``; MaxScale readwritesplit and ProxySQL decide the same way):

1. **Cache.** Results are memoised by exact text (LRU, `CACHE_ENTRIES` entries, only for
   texts up to `CACHE_TEXT_LIMIT` characters, so bulk INSERTs cannot fill the memory).
2. **Lexing** (`proxy.routing.lexer`): comments become spaces, literals lose their content,
   executable comments ``/*! */`` ``/*!50700 */`` ``/*M! */`` ``/*M!100100 */`` keep theirs
   (they are code), ``rwproxy:primary|replica`` (or ``writer|reader``) in an ordinary comment
   becomes the hint. A text without quotes or comment markers skips this step.
3. **Statements.** The code is split on ``;``; each statement is dispatched on its first
   keyword (leading parentheses skipped) through `_HANDLERS`, a dict, to a small handler.
4. **A closer look** only where the first keyword is not enough: a read is searched for
   locking clauses, ``INTO``, ``:=``, sequences, ``@@`` variables and ``name(`` calls only
   when one compiled regex finds one of those tokens; SET, SHOW, START, ... parse their
   own few words.
5. **Pins anywhere.** ``GET_LOCK(`` or ``@v :=`` in any statement pins the session.
6. **Other readings.** When the text means different things on different servers or
   sessions, each reading is classified and the verdicts must agree, otherwise the text is
   a WRITE: versioned ``/*!50700``/``/*M!`` comments (code on one server, comment on
   another), backslashes in literals (``NO_BACKSLASH_ESCAPES`` changes where a string
   ends) and bytes that are not UTF-8 (in GBK/SJIS/BIG5 a multi-byte character may end in
   a backslash or a backtick). Without this, ``SELECT 'a\\'; DELETE FROM t; -- '`` would be
   one harmless read for us and a DELETE for a server running without backslash escapes.

Nothing raises: garbage, an unterminated literal or comment, an empty text or an internal
error all give WRITE with a rule that says why. When in doubt, the writer.

Rule table
----------
=====================================================  ==================================
Statement                                              Classification
=====================================================  ==================================
SELECT, (SELECT ...) UNION ..., VALUES, TABLE, read    READ
  WITH [RECURSIVE] ... SELECT
... FOR UPDATE / FOR SHARE / LOCK IN SHARE MODE        WRITE (locking read)
SELECT ... INTO OUTFILE / DUMPFILE / local variable    WRITE
SELECT ... INTO @v, ``@v := expr`` anywhere            WRITE, pin USER_VARIABLE
GET_LOCK( anywhere                                     WRITE, pin NAMED_LOCK
RELEASE_LOCK, RELEASE_ALL_LOCKS, IS_FREE_LOCK,         WRITE
  IS_USED_LOCK, NEXTVAL, SETVAL, LASTVAL,
  NEXT/PREVIOUS VALUE FOR, seq.nextval,
  LAST_INSERT_ID(expr)
LAST_INSERT_ID(), FOUND_ROWS(), ROW_COUNT(),           SAME_BACKEND
  @@identity, @@last_insert_id, @@warning_count,
  @@error_count, @@last_gtid
CONNECTION_ID(), MASTER_POS_WAIT, MASTER_GTID_WAIT,    READ_ON_WRITER
  SOURCE_POS_WAIT, WAIT_FOR_EXECUTED_GTID_SET,
  BINLOG_GTID_POS, WSREP_*, @@gtid_current_pos ...
call of a non-built-in function, db.func(...)         READ_ON_WRITER (may write); WRITE if
                                                       it also needs the previous backend
WITH ... UPDATE / DELETE / INSERT / REPLACE            WRITE
EXPLAIN / DESCRIBE / DESC anything, HELP               READ (READ_ON_WRITER when it calls a
                                                       stored function: EXPLAIN may run
                                                       constant subqueries)
EXPLAIN INSERT / REPLACE / UPDATE / DELETE             READ_ON_WRITER (a read_only replica
                                                       refuses it with ERROR 1290)
EXPLAIN ANALYZE <stmt>, ANALYZE [FORMAT=..] <stmt>     class of <stmt> (it is executed)
EXPLAIN ... FOR CONNECTION n                           READ_ON_WRITER
SHOW (most), SHOW [SESSION|GLOBAL] VARIABLES           READ (SHOW ... WHERE f(): as EXPLAIN)
SHOW [FULL] PROCESSLIST, MASTER, BINARY, BINLOG,       READ_ON_WRITER
  SLAVE, REPLICA, RELAYLOG, ENGINE, [..] STATUS,
  OPEN TABLES, EXPLAIN/ANALYZE FOR, *_STATISTICS
SHOW WARNINGS / ERRORS / COUNT(*) ..., PROFILE(S),     SAME_BACKEND
  GET DIAGNOSTICS
CHECKSUM TABLE                                         READ_ON_WRITER
BEGIN [WORK], START TRANSACTION [READ WRITE]           BEGIN
  [, WITH CONSISTENT SNAPSHOT], XA START/BEGIN
START TRANSACTION READ ONLY (any order)                BEGIN_READ_ONLY
COMMIT [WORK] [AND [NO] CHAIN] [[NO] RELEASE],         COMMIT
  XA COMMIT
ROLLBACK [WORK] [AND ...], XA ROLLBACK                 ROLLBACK
ROLLBACK [WORK] TO [SAVEPOINT], SAVEPOINT, RELEASE     WRITE
SET [SESSION|LOCAL] v=..., SET @@[session.]v=...,      SESSION (replay when every value
  SET @u=<literal>, SET NAMES, SET CHARACTER SET,        is a literal; otherwise the
  SET ROLE, SET TRANSACTION ..., USE db                  server-reported value is replayed)
SET @u = <expression>                                  WRITE, pin USER_VARIABLE
SET GLOBAL / PERSIST / @@global., SET PASSWORD,        WRITE
  SET DEFAULT ROLE, SET GLOBAL TRANSACTION
SET STATEMENT v=x FOR <stmt>                           class of <stmt> (WRITE if that
                                                       would be SESSION or transaction)
LOCK TABLE(S), LOCK INSTANCE, FLUSH ... WITH READ      WRITE, pin LOCK_TABLES
  LOCK / FOR EXPORT, BACKUP LOCK / STAGE
UNLOCK TABLE(S)                                        WRITE, unpin LOCK_TABLES
CREATE [OR REPLACE] TEMPORARY ...                      WRITE, pin TEMPORARY_TABLE
PREPARE name FROM ...                                  WRITE, pin SQL_PREPARE
HANDLER t OPEN / READ (not CLOSE)                      WRITE, pin HANDLER
CALL p(..@v..)                                         WRITE, pin USER_VARIABLE (OUT args)
DO expr                                                WRITE (pins from expr)
INSERT, REPLACE, UPDATE, DELETE, MERGE, TRUNCATE,      WRITE
  CREATE/ALTER/DROP/RENAME, GRANT/REVOKE, CALL, LOAD,
  OPTIMIZE/REPAIR/ANALYZE/CHECK TABLE, FLUSH, RESET,
  PURGE, KILL, INSTALL, UNINSTALL, CHANGE MASTER,
  START/STOP SLAVE|REPLICA, EXECUTE, DEALLOCATE,
  BEGIN NOT ATOMIC, XA END/PREPARE/RECOVER, anything
  unknown, empty or unterminated
several statements                                     all READ: READ; READ and
                                                       READ_ON_WRITER: READ_ON_WRITER;
                                                       anything else: WRITE (SESSION parts
                                                       also pin USER_VARIABLE: their
                                                       state cannot be replayed)
=====================================================  ==================================

``@@hostname``, ``@@port`` and ``@@server_id`` stay plain reads on purpose: asking where a
read ran is a legitimate read, and the integration tests use it.

Must stay in sync with: `proxy.routing.router` (consumes every enum member and field),
`proxy.routing.functions` (names before ``(``), `proxy.routing.lexer` (hint vocabulary).
"""

from __future__ import annotations

import enum
import functools
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from proxy.routing import functions as fn
from proxy.routing.lexer import Lexed, lex, split_statements

__all__ = [
    "CACHE_ENTRIES",
    "CACHE_TEXT_LIMIT",
    "Classification",
    "Hint",
    "PinCause",
    "StatementKind",
    "classify",
    "classify_uncached",
    "statement_shape",
]

logger = logging.getLogger(__name__)

CACHE_ENTRIES = 4096
CACHE_TEXT_LIMIT = 4096  # characters (or bytes); longer texts are classified every time


class StatementKind(enum.Enum):
    __hash__ = object.__hash__  # identity, in C: see ResponseState

    READ = "read"  # safe on a replica
    READ_ON_WRITER = "read_on_writer"  # a read kept on the writer out of caution; hint may move
    WRITE = "write"  # must run on the writer; no hint can move it
    SAME_BACKEND = "same_backend"  # must run where the previous statement ran
    BEGIN = "begin"
    BEGIN_READ_ONLY = "begin_read_only"
    COMMIT = "commit"
    ROLLBACK = "rollback"
    SESSION = "session"  # session state, replayed on every backend connection of the session


class PinCause(enum.Enum):
    """State that cannot be reproduced on another connection: pins the session."""

    TEMPORARY_TABLE = "temporary_table"
    LOCK_TABLES = "lock_tables"
    NAMED_LOCK = "named_lock"
    SQL_PREPARE = "sql_prepare"
    USER_VARIABLE = "user_variable"
    HANDLER = "handler"


class Hint(enum.Enum):
    PRIMARY = "primary"
    REPLICA = "replica"


@dataclass(frozen=True, slots=True)
class Classification:
    kind: StatementKind
    rule: str  # short text naming the deciding rule; a bounded set (no SQL in it)
    pin: PinCause | None = None  # this statement creates unreproducible state
    unpin: PinCause | None = None  # this statement releases it (UNLOCK TABLES)
    hint: Hint | None = None  # from a /* rwproxy:primary|replica */ comment
    replay: bool = False  # SESSION only: replaying the text verbatim reproduces the state
    statements: int = 1  # statements in a multi-statement text
    first_keyword: str = ""  # lowercased leading keyword, for metrics by command


K = StatementKind


class Verdict(NamedTuple):
    """What one handler decided; `Classification` adds what concerns the whole text."""

    kind: StatementKind
    rule: str
    pin: PinCause | None = None
    unpin: PinCause | None = None
    replay: bool = False


class _Stmt(NamedTuple):
    keyword: str
    code: str  # the whole statement, lexed and lowercased
    rest: str  # what follows the keyword
    depth: int  # nesting of ANALYZE / EXPLAIN ANALYZE / SET STATEMENT ... FOR


Handler = Callable[[_Stmt], Verdict]

# ---------------------------------------------------------------------------------------
# Public entry points


def classify(sql: object) -> Classification:
    """Classify one statement text (bytes are decoded as UTF-8, bad bytes kept). Cached,
    for plain statements by their *shape* (see `statement_shape`), so that
    `... WHERE id = 1` and `... WHERE id = 2` are classified once.

    `sql` is typed `object`, not `str | bytes`, because a compiled build checks declared
    types at the call: whatever a caller passes must reach the writer, not raise."""
    if isinstance(sql, str | bytes) and len(sql) <= CACHE_TEXT_LIMIT:
        if isinstance(sql, bytes):
            return _exact.get(sql) or _classify_bytes(sql)
        return _classify_cached(sql)
    return classify_uncached(sql)


def _classify_bytes(sql: bytes) -> Classification:
    shape = statement_shape(sql)
    c = _by_shape.get(shape) if shape is not None else None
    if c is None:
        c = classify_uncached(sql)
        if shape is not None and _shape_decides(c):
            _remember(_by_shape, shape, c)
    _remember(_exact, sql, c)
    return c


def _remember(cache: dict[bytes, Classification], key: bytes, c: Classification) -> None:
    if len(cache) >= CACHE_ENTRIES:
        cache.clear()  # cheaper than LRU bookkeeping on every hit; refills in a moment
    cache[key] = c


# Integers and single-quoted strings without a backslash or a quote inside.
_LITERALS = re.compile(rb"'[^'\\]*'|\b[0-9]+\b")
# Texts where a literal may not be what `_LITERALS` sees: a quote or a digit inside a
# comment, a double-quoted string or a quoted identifier, or backslash escapes (whose
# meaning depends on sql_mode NO_BACKSLASH_ESCAPES).
_SHAPE_UNSAFE = re.compile(rb'/\*|--|#|"|`|\\')
_by_shape: dict[bytes, Classification] = {}
_exact: dict[bytes, Classification] = {}
_SHAPE_KEYWORDS = frozenset({"select", "insert", "update", "delete", "replace"})


def statement_shape(sql: bytes) -> bytes | None:
    """`sql` with its literals replaced by `?`, or None when that could change what the
    text means (comments, other quoting, escapes): then only the exact text is cached.

    Two texts of one shape differ only in literal values, and a literal's value never
    decides where a plain SELECT/INSERT/UPDATE/DELETE/REPLACE goes (`_shape_decides`);
    session statements (`SET autocommit = 0` vs `= 1`) are never cached by shape.
    """
    if _SHAPE_UNSAFE.search(sql) is not None:
        return None
    return _LITERALS.sub(b"?", sql)


def _shape_decides(c: Classification) -> bool:
    return (
        c.first_keyword in _SHAPE_KEYWORDS
        and c.kind in (StatementKind.READ, StatementKind.WRITE)
        and c.pin is None
        and c.unpin is None
    )


def classify_uncached(sql: object) -> Classification:
    """`classify` without the cache (benchmarks, tests)."""
    try:
        text = _as_text(sql)
        if len(text) > _BULK_TEXT:
            bulk = _bulk_dml(text)
            if bulk is not None:
                return bulk
        return _classify_text(text)
    except Exception:  # never raise on a client's text: the writer is always safe
        logger.exception("statement classifier failed; routing to the writer")
        return _INTERNAL_ERROR


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def _classify_cached(sql: str | bytes) -> Classification:
    return classify_uncached(sql)


def _as_text(sql: object) -> str:
    if isinstance(sql, str):
        return sql
    if isinstance(sql, bytes | bytearray | memoryview):
        return bytes(sql).decode("utf-8", errors="surrogateescape")
    raise TypeError(f"cannot classify {type(sql).__name__}")


_INTERNAL_ERROR = Classification(K.WRITE, "statement could not be classified", statements=0)

# Long INSERT/REPLACE/UPDATE/DELETE texts (bulk loads) skip the lexer when nothing could
# hide behind the first keyword: no `;` (a single statement), no comment markers (no
# hint, no executable comment) and no `_lock`/`:=` (no pin). Quotes and backslashes then
# cannot change anything, and the keyword is read before the first quote.
_BULK_TEXT = 2048
_BULK_KEYWORDS = frozenset(("insert", "replace", "update", "delete"))
_BULK_MARKERS = (";", "#", "--", "/*", ":=")
_LOCK_ANY_CASE = re.compile(r"_(?i:lock)")
_BULK_DML = Verdict(K.WRITE, "DML goes to the writer")


def _bulk_dml(text: str) -> Classification | None:
    if any(marker in text for marker in _BULK_MARKERS) or _LOCK_ANY_CASE.search(text):
        return None
    m = _FIRST_WORD.match(text[:256].lower())
    if m is None or m.end() >= 256 or m.group(1) not in _BULK_KEYWORDS:
        return None
    return _classification(_BULK_DML, None, 1, m.group(1))


# ---------------------------------------------------------------------------------------
# Whole text: readings, statements, hint

_SURROGATE = re.compile(r"[\udc80-\udcff]")
# A lead byte of GBK/SJIS/BIG5/GB18030/CP932 and the trail byte it would swallow.
_MULTIBYTE_PAIR = re.compile(r"[\udc81-\udcfe][\x40-\x7e\udc80-\udcfe]")
_RULE_EMPTY = "empty statement goes to the writer"
_RULE_AMBIGUOUS = "text means different things on different servers ({}); writer"


class _Outcome(NamedTuple):
    verdict: Verdict
    keyword: str
    statements: int


def _classify_text(text: str) -> Classification:
    lexed = lex(text)
    outcome = _outcome(lexed)
    verdict = outcome.verdict
    if lexed.versioned or lexed.escaped or not text.isascii():
        for reason, reading in _other_readings(text, lexed):
            verdict = _reconcile(verdict, reading, reason)
    return _classification(verdict, _hint(lexed.hints), outcome.statements, outcome.keyword)


@functools.lru_cache(maxsize=1024)
def _classification(
    verdict: Verdict, hint: Hint | None, statements: int, keyword: str
) -> Classification:
    """Shared instances: verdicts come from a small set, and building a dataclass is slow."""
    replay = verdict.replay and verdict.kind is K.SESSION
    return Classification(
        verdict.kind, verdict.rule, verdict.pin, verdict.unpin, hint, replay, statements, keyword
    )


def _outcome(lexed: Lexed) -> _Outcome:
    statements = split_statements(lexed.code)
    if not statements:
        rule = f"{lexed.problem} goes to the writer" if lexed.problem else _RULE_EMPTY
        return _Outcome(Verdict(K.WRITE, rule), "", 0)
    keyword, verdict = _classify_statements(statements)
    if lexed.problem is not None:
        verdict = _broken(statements, verdict, lexed.problem)
    return _Outcome(verdict, keyword, len(statements))


def _broken(statements: list[str], verdict: Verdict, problem: str) -> Verdict:
    """An unterminated literal or comment: the server runs the statements before it."""
    unpin = _classify_statements(statements[:-1])[1].unpin if len(statements) > 1 else None
    return Verdict(K.WRITE, f"{problem} goes to the writer", verdict.pin, unpin)


def _other_readings(text: str, lexed: Lexed) -> Iterator[tuple[str, Lexed]]:
    if lexed.versioned:
        yield "versioned executable comment", lex(text, versioned_code=False)
    if lexed.escaped:
        yield "NO_BACKSLASH_ESCAPES", lex(text, backslash_escapes=False)
    if _SURROGATE.search(text):
        yield "multi-byte client character set", lex(_MULTIBYTE_PAIR.sub("x", text))


def _reconcile(verdict: Verdict, reading: Lexed, reason: str) -> Verdict:
    statements = split_statements(reading.code)
    if reading.problem is not None:
        statements = statements[:-1]  # the server stops at the broken statement
    if not statements:
        return verdict
    other = _classify_statements(statements)[1]
    pin = verdict.pin or other.pin
    if other.kind is verdict.kind:
        return verdict._replace(pin=pin, replay=verdict.replay and other.replay)
    unpin = verdict.unpin if verdict.unpin is other.unpin else None
    return Verdict(K.WRITE, _RULE_AMBIGUOUS.format(reason), pin, unpin)


def _hint(hints: frozenset[str]) -> Hint | None:
    if not hints:
        return None
    return Hint.PRIMARY if "primary" in hints else Hint.REPLICA


# ---------------------------------------------------------------------------------------
# Several statements

_RULE_MULTI_READ = "multi-statement of reads"
_RULE_MULTI_WRITE = "multi-statement with a write goes to the writer ({})"
_READ_KINDS = (K.READ, K.READ_ON_WRITER)


def _classify_statements(statements: list[str]) -> tuple[str, Verdict]:
    if len(statements) == 1:
        return _classify_code(statements[0], 0)
    results = [_classify_code(code, 0) for code in statements]
    return results[0][0], _combine([verdict for _, verdict in results])


def _combine(verdicts: list[Verdict]) -> Verdict:
    strong = next((v for v in verdicts if v.kind is K.WRITE), None) or next(
        (v for v in verdicts if v.kind not in _READ_KINDS), None
    )
    if strong is None:
        cautious = next((v for v in verdicts if v.kind is K.READ_ON_WRITER), None)
        return cautious or Verdict(K.READ, _RULE_MULTI_READ)
    pin, unpin = _net_pins(verdicts)
    if pin is None and any(v.kind is K.SESSION for v in verdicts):
        pin = PinCause.USER_VARIABLE  # session state set here is never replayed elsewhere
    return Verdict(K.WRITE, _RULE_MULTI_WRITE.format(strong.rule), pin, unpin)


def _net_pins(verdicts: list[Verdict]) -> tuple[PinCause | None, PinCause | None]:
    """Pins in statement order: UNLOCK TABLES after LOCK TABLES cancels it, and back."""
    pins: list[PinCause] = []
    unpin: PinCause | None = None
    for v in verdicts:
        if v.unpin is not None:
            pins = [p for p in pins if p is not v.unpin]
            unpin = v.unpin
        if v.pin is not None:
            pins.append(v.pin)
            unpin = None if v.pin is unpin else unpin
    return (pins[0] if pins else None), unpin


# ---------------------------------------------------------------------------------------
# One statement

_FIRST_WORD = re.compile(r"[\s(]*+([^\W\d][\w$]*+)")
_MAX_DEPTH = 8
_RULE_UNKNOWN = "unknown statement goes to the writer"
_RULE_NO_KEYWORD = "statement without a keyword goes to the writer"
_RULE_TOO_DEEP = "statement nested too deeply goes to the writer"


def _classify_code(code: str, depth: int) -> tuple[str, Verdict]:
    """(first keyword, verdict) of one lexed statement."""
    m = _FIRST_WORD.match(code)
    if m is None:
        return "", Verdict(K.WRITE, _RULE_NO_KEYWORD)
    keyword = m.group(1)
    if depth > _MAX_DEPTH:
        return keyword, Verdict(K.WRITE, _RULE_TOO_DEEP)
    handler = _HANDLERS.get(keyword, _unknown)
    verdict = handler(_Stmt(keyword, code, code[m.end() :], depth))
    return keyword, _with_pins(code, verdict)


def _unknown(stmt: _Stmt) -> Verdict:
    return Verdict(K.WRITE, _RULE_UNKNOWN)


_GET_LOCK_CALL = re.compile(r"(?<![\w$.])get_lock\s*+\(")
_USER_ASSIGN = re.compile(r"@(?:[\w$.]++|''|\"\"|``)\s*+:=")
_RULE_GET_LOCK = "GET_LOCK() takes a named lock"
_RULE_USER_ASSIGN = "@var := assigns a user variable"


def _with_pins(code: str, verdict: Verdict) -> Verdict:
    """GET_LOCK( and @v := pin the session whatever statement they appear in."""
    if verdict.pin is not None:
        return verdict
    if "get_lock" in code and _GET_LOCK_CALL.search(code):
        rule = verdict.rule if verdict.kind is K.WRITE else _RULE_GET_LOCK
        return Verdict(K.WRITE, rule, PinCause.NAMED_LOCK, verdict.unpin)
    if verdict.kind is not K.SESSION and ":=" in code and _USER_ASSIGN.search(code):
        rule = verdict.rule if verdict.kind is K.WRITE else _RULE_USER_ASSIGN
        return Verdict(K.WRITE, rule, PinCause.USER_VARIABLE, verdict.unpin)
    return verdict


# ---------------------------------------------------------------------------------------
# Reads: SELECT, VALUES, TABLE, WITH

_RANK = {K.READ: 0, K.READ_ON_WRITER: 1, K.SAME_BACKEND: 2, K.WRITE: 3}
# Everything the closer look reacts to; a read without any of these is a plain read.
# No word boundaries: they make the search three times slower, and a false alarm
# (`format` contains `for`) only costs the closer look.
_SUSPECT = re.compile(r"[(@]|:=|into|for|lock|next|previous|currval")
_PLAIN_READ = Verdict(K.READ, "plain read")
_RULE_STORED = "user-defined function may write"
_RULE_STORED_SAME = "user-defined function may write; also needs the previous backend"


def _read(stmt: _Stmt) -> Verdict:
    return _inspect_read(stmt.code) or _PLAIN_READ


def _inspect_read(code: str) -> Verdict | None:
    """The strongest reason found in a read's code to leave the replicas, if any."""
    if _SUSPECT.search(code) is None:
        return None
    found = [v for check in _READ_CHECKS if (v := check(code)) is not None]
    return _strongest(found)


def _strongest(found: list[Verdict]) -> Verdict | None:
    if not found:
        return None
    best = max(found, key=lambda v: _RANK.get(v.kind, 3))
    if best.kind is K.SAME_BACKEND and any(v.rule == _RULE_STORED for v in found):
        return Verdict(K.WRITE, _RULE_STORED_SAME)
    pin = next((v.pin for v in found if v.pin is not None), None)
    return best if best.pin is pin else best._replace(pin=pin)


_LOCKING = re.compile(r"\bfor\s++(?:update|share)\b|\block\s++in\s++share\s++mode\b")
_LOCKING_READ = Verdict(K.WRITE, "select with FOR UPDATE / FOR SHARE is a locking read")
_INTO = re.compile(r"\binto\b\s*+(outfile|dumpfile|@)?")
_INTO_VERDICTS = {
    "@": Verdict(K.WRITE, "SELECT ... INTO @var sets a user variable", PinCause.USER_VARIABLE),
    "outfile": Verdict(K.WRITE, "SELECT ... INTO OUTFILE writes a file"),
    "dumpfile": Verdict(K.WRITE, "SELECT ... INTO DUMPFILE writes a file"),
    None: Verdict(K.WRITE, "SELECT ... INTO assigns variables"),
}
_USER_ASSIGN_READ = Verdict(K.WRITE, _RULE_USER_ASSIGN, PinCause.USER_VARIABLE)
_SEQUENCE = re.compile(r"\b(?:next|previous)\s++value\s++for\b|\.\s*+(?:nextval|currval)\b")
_SEQUENCE_READ = Verdict(K.WRITE, "sequence access changes or reads sequence state")


def _check_locking(code: str) -> Verdict | None:
    maybe = "for" in code or "lock" in code  # substring tests first: the regex is slower
    return _LOCKING_READ if maybe and _LOCKING.search(code) else None


def _check_into(code: str) -> Verdict | None:
    m = _INTO.search(code) if "into" in code else None
    return None if m is None else _INTO_VERDICTS[m.group(1)]


def _check_user_assign(code: str) -> Verdict | None:
    return _USER_ASSIGN_READ if ":=" in code else None


def _check_sequence(code: str) -> Verdict | None:
    return _SEQUENCE_READ if "val" in code and _SEQUENCE.search(code) else None


_SYSVAR = re.compile(r"@@(?:(?:global|session|local)\s*+\.\s*+)?([\w$]++)")
_SAME_BACKEND_VAR = Verdict(K.SAME_BACKEND, "reads the previous statement's result state")
_SERVER_VAR = Verdict(K.READ_ON_WRITER, "reads one server's replication position")
_SYSVAR_VERDICTS = {
    **dict.fromkeys(
        ("identity", "last_insert_id", "warning_count", "error_count", "last_gtid"),
        _SAME_BACKEND_VAR,
    ),
    **dict.fromkeys(
        (
            "gtid_current_pos",
            "gtid_binlog_pos",
            "gtid_slave_pos",
            "gtid_binlog_state",
            "gtid_executed",
        ),
        _SERVER_VAR,
    ),
}


def _check_sysvars(code: str) -> Verdict | None:
    if "@@" not in code:
        return None
    found = [_SYSVAR_VERDICTS.get(name) for name in _SYSVAR.findall(code)]
    return _strongest([v for v in found if v is not None])


# Calls are found backwards: searching the reversed code for "(" + name (+ "." when
# qualified) starts with a literal, which the regex engine scans for quickly, while a
# forward pattern starting with a name must be tried at every character.
# The optional reversed "as" before the name spots a derived table's column list,
# `AS x (a, b)`; a CTE's column list `WITH x (a, b) AS (` is recognised by what follows.
_CALL_REVERSED = re.compile(r"\(\s*+([\w$]++|``|\"\")(\s*+\.)?(\s++sa(?![\w$]))?")
_CTE_COLUMNS = re.compile(r"\s*+(?:[\w$]++|``)(?:\s*+,\s*+(?:[\w$]++|``))*+\s*+\)\s*+as\s*+\(")
_EMPTY_ARGS = re.compile(r"\s*+\)")
_STORED_CALL = Verdict(K.READ_ON_WRITER, _RULE_STORED)
_LAST_INSERT_ID_READ = Verdict(K.SAME_BACKEND, "LAST_INSERT_ID() needs the previous backend")
_LAST_INSERT_ID_SET = Verdict(K.WRITE, "LAST_INSERT_ID(expr) sets the session's insert id")
_SPECIAL_CALLS = {
    **dict.fromkeys(fn.NAMED_LOCK_FUNCTIONS, Verdict(K.WRITE, _RULE_GET_LOCK, PinCause.NAMED_LOCK)),
    **dict.fromkeys(fn.LOCK_FUNCTIONS, Verdict(K.WRITE, "named-lock functions act on one server")),
    **dict.fromkeys(fn.SEQUENCE_FUNCTIONS, _SEQUENCE_READ),
    **dict.fromkeys(
        fn.SAME_BACKEND_FUNCTIONS,
        Verdict(K.SAME_BACKEND, "FOUND_ROWS() / ROW_COUNT() need the previous backend"),
    ),
    **dict.fromkeys(
        fn.SERVER_SPECIFIC_FUNCTIONS,
        Verdict(K.READ_ON_WRITER, "function answers for one server or connection"),
    ),
}


def _check_calls(code: str) -> Verdict | None:
    return _strongest(_call_verdicts(code)) if "(" in code else None


def _call_verdicts(code: str) -> list[Verdict]:
    backwards, end = code[::-1], len(code)
    found = []
    for m in _CALL_REVERSED.finditer(backwards):
        args = end - m.start()  # where the argument list starts in `code`
        if m.group(3) is None and not _CTE_COLUMNS.match(code, args):
            verdict = _call_verdict(m.group(1)[::-1], m.group(2), code, args)
            if verdict is not None:
                found.append(verdict)
    return found


def _call_verdict(name: str, qualifier: str | None, code: str, args: int) -> Verdict | None:
    """What calling `name` means."""
    if qualifier is not None or name in ("``", '""'):
        return _STORED_CALL
    if name in fn.PAREN_KEYWORDS or name.isdigit():
        return None
    if name == "last_insert_id":
        empty = _EMPTY_ARGS.match(code, args) is not None
        return _LAST_INSERT_ID_READ if empty else _LAST_INSERT_ID_SET
    special = _SPECIAL_CALLS.get(name)
    if special is not None or name in fn.BUILTIN_FUNCTIONS:
        return special
    return _STORED_CALL


_READ_CHECKS: tuple[Callable[[str], Verdict | None], ...] = (
    _check_locking,
    _check_into,
    _check_user_assign,
    _check_sequence,
    _check_calls,
    _check_sysvars,
)

# `FOR UPDATE` is a locking read, not a data-changing statement; INSERT( and REPLACE( are
# string functions.
_WITH_DML = re.compile(r"\b(for\s++)?(update|delete|insert|replace)\b(?!\s*+\()")
_WITH_DML_VERDICTS = {
    verb: Verdict(K.WRITE, f"WITH ... {verb.upper()} modifies data")
    for verb in ("update", "delete", "insert", "replace")
}


def _with(stmt: _Stmt) -> Verdict:
    for m in _WITH_DML.finditer(stmt.code):
        if m.group(1) is None:
            return _WITH_DML_VERDICTS[m.group(2)]
    return _read(stmt)


# ---------------------------------------------------------------------------------------
# EXPLAIN, ANALYZE, SHOW

_EXPLAIN_ANALYZE = re.compile(r"\s*+analyze\b(?:\s*+format\s*+=\s*+[\w$]++)?")
_EXPLAIN_FOR_CONNECTION = re.compile(
    r"\s*+(?:(?:format\s*+=\s*+[\w$]++|extended|partitions)\s*+)*for\s++connection\b"
)
_EXPLAIN = Verdict(K.READ, "EXPLAIN does not execute the statement")
_EXPLAINED_DML = re.compile(
    r"\s*+(?:(?:extended|partitions|format\s*+=\s*+[\w$]++)\s++)*+[\s(]*+"
    r"(?:insert|replace|update|delete)\b"
)
# A read_only server refuses to EXPLAIN a data-changing statement (ERROR 1290), although
# nothing changes.
_EXPLAIN_DML = Verdict(K.READ_ON_WRITER, "EXPLAIN of DML is refused by a read_only replica")
_EXPLAIN_CONNECTION = Verdict(K.READ_ON_WRITER, "EXPLAIN FOR CONNECTION inspects one server")
_ANALYZE_TABLE = re.compile(r"\s*+(?:(?:no_write_to_binlog|local)\s++)?tables?\b")
_ANALYZE_FORMAT = re.compile(r"\s*+format\s*+=\s*+[\w$]++")
_RUNNABLE = (K.READ, K.READ_ON_WRITER, K.SAME_BACKEND, K.WRITE)


def _explain(stmt: _Stmt) -> Verdict:
    m = _EXPLAIN_ANALYZE.match(stmt.rest)
    if m is not None:
        return _analyzed(stmt.rest[m.end() :], stmt.depth)
    if _EXPLAIN_FOR_CONNECTION.match(stmt.rest):
        return _EXPLAIN_CONNECTION
    if _EXPLAINED_DML.match(stmt.rest):
        return _EXPLAIN_DML
    return _with_stored_calls(_EXPLAIN, stmt.rest)


def _with_stored_calls(verdict: Verdict, code: str) -> Verdict:
    """A read that does not execute its expressions may still evaluate constant ones
    (EXPLAIN runs uncorrelated subqueries; SHOW ... WHERE runs its filter): keep a stored
    function call on the writer there too."""
    if verdict.kind is K.READ and "(" in code and _STORED_CALL in _call_verdicts(code):
        return _STORED_CALL
    return verdict


def _analyze(stmt: _Stmt) -> Verdict:
    if _ANALYZE_TABLE.match(stmt.rest):
        return Verdict(K.WRITE, "ANALYZE TABLE updates statistics")
    m = _ANALYZE_FORMAT.match(stmt.rest)
    return _analyzed(stmt.rest if m is None else stmt.rest[m.end() :], stmt.depth)


def _analyzed(inner: str, depth: int) -> Verdict:
    """ANALYZE <stmt> (MariaDB) and EXPLAIN ANALYZE <stmt> (MySQL) execute <stmt>."""
    _, verdict = _classify_code(inner, depth + 1)
    if verdict.kind not in _RUNNABLE:
        return Verdict(K.WRITE, "ANALYZE of a non-query statement goes to the writer")
    return verdict._replace(rule=f"ANALYZE executes the statement: {verdict.rule}")


_SHOW_WORD = re.compile(r"\s*+(?:(?:full|global|session|local|all|extended)\s++)*+([\w$]++)")
_SHOW = Verdict(K.READ, "SHOW reads metadata")
_SHOW_SERVER = Verdict(K.READ_ON_WRITER, "SHOW of one server's threads, logs or status")
_SHOW_SAME = Verdict(K.SAME_BACKEND, "SHOW WARNINGS / ERRORS / PROFILE need the previous backend")
_SHOW_KINDS = {
    **dict.fromkeys(
        (
            "processlist",
            "master",
            "binary",
            "binlog",
            "slave",
            "slaves",
            "replica",
            "replicas",
            "relaylog",
            "engine",
            "status",
            "open",
            "explain",
            "analyze",
            "innodb",
            "mutex",
            "user_statistics",
            "client_statistics",
            "index_statistics",
            "table_statistics",
            "query_response_time",
            "wsrep_membership",
            "wsrep_status",
        ),
        _SHOW_SERVER,
    ),
    **dict.fromkeys(("warnings", "errors", "count", "profile", "profiles"), _SHOW_SAME),
}


def _show(stmt: _Stmt) -> Verdict:
    m = _SHOW_WORD.match(stmt.rest)
    verdict = _SHOW if m is None else _SHOW_KINDS.get(m.group(1), _SHOW)
    return _with_stored_calls(verdict, stmt.rest)


# ---------------------------------------------------------------------------------------
# Transactions

_BEGIN_PLAIN = re.compile(r"\s*+(?:work\s*+)?\Z")
_NOT_ATOMIC = re.compile(r"\s*+not\s++atomic\b")
_BEGIN = Verdict(K.BEGIN, "BEGIN starts a transaction")
_START_TRANSACTION = re.compile(r"\s*+transaction\b")
_TRANSACTION_MODES = frozenset(("read only", "read write", "with consistent snapshot"))
_START = Verdict(K.BEGIN, "START TRANSACTION starts a transaction")
_START_READ_ONLY = Verdict(K.BEGIN_READ_ONLY, "START TRANSACTION READ ONLY")
_END_TRANSACTION = re.compile(
    r"\s*+(?:work\b\s*+)?(?:and\s++(?:no\s++)?chain\b\s*+)?(?:(?:no\s++)?release\b\s*+)?\Z"
)
_COMMIT = Verdict(K.COMMIT, "COMMIT ends the transaction")
_ROLLBACK = Verdict(K.ROLLBACK, "ROLLBACK ends the transaction")
_ROLLBACK_TO = re.compile(r"\s*+(?:work\s++)?to\b")
_XA_WORD = re.compile(r"\s*+([\w$]++)")
_XA_KINDS = {
    "start": Verdict(K.BEGIN, "XA START starts a transaction"),
    "begin": Verdict(K.BEGIN, "XA BEGIN starts a transaction"),
    "commit": Verdict(K.COMMIT, "XA COMMIT ends the transaction"),
    "rollback": Verdict(K.ROLLBACK, "XA ROLLBACK ends the transaction"),
}


def _begin(stmt: _Stmt) -> Verdict:
    if _BEGIN_PLAIN.match(stmt.rest):
        return _BEGIN
    if _NOT_ATOMIC.match(stmt.rest):
        return Verdict(K.WRITE, "BEGIN NOT ATOMIC is a compound statement")
    return Verdict(K.WRITE, "unrecognised BEGIN goes to the writer")


def _start(stmt: _Stmt) -> Verdict:
    m = _START_TRANSACTION.match(stmt.rest)
    if m is None:
        return Verdict(K.WRITE, "START SLAVE / REPLICA controls replication")
    modes = {" ".join(mode.split()) for mode in stmt.rest[m.end() :].split(",")} - {""}
    if not modes <= _TRANSACTION_MODES:
        return Verdict(K.WRITE, "unrecognised START TRANSACTION goes to the writer")
    if "read only" in modes and "read write" not in modes:
        return _START_READ_ONLY
    return _START


def _commit(stmt: _Stmt) -> Verdict:
    if _END_TRANSACTION.match(stmt.rest):
        return _COMMIT
    return Verdict(K.WRITE, "unrecognised COMMIT goes to the writer")


def _rollback(stmt: _Stmt) -> Verdict:
    if _ROLLBACK_TO.match(stmt.rest):
        return Verdict(K.WRITE, "ROLLBACK TO SAVEPOINT stays in the transaction")
    if _END_TRANSACTION.match(stmt.rest):
        return _ROLLBACK
    return Verdict(K.WRITE, "unrecognised ROLLBACK goes to the writer")


def _xa(stmt: _Stmt) -> Verdict:
    m = _XA_WORD.match(stmt.rest)
    verdict = _XA_KINDS.get(m.group(1)) if m is not None else None
    return verdict or Verdict(K.WRITE, "XA END / PREPARE / RECOVER go to the writer")


# ---------------------------------------------------------------------------------------
# SET and USE

_SET_WORD = re.compile(r"\s*+([\w$]++)")
_SET_TRANSACTION = re.compile(
    r"\s*+(?:(global|persist|persist_only|session|local)\s++)?transaction\b"
)
_GLOBAL_SCOPES = frozenset(("global", "persist", "persist_only"))
_SESSION_LITERAL = Verdict(K.SESSION, "SET of session state, replayed verbatim", replay=True)
_SESSION_EXPRESSION = Verdict(K.SESSION, "SET from an expression: the resulting value is replayed")
_SET_GLOBAL = Verdict(K.WRITE, "SET GLOBAL / PERSIST changes server state")
_SET_UNPARSED = Verdict(K.WRITE, "unrecognised SET goes to the writer")
_SET_USER_EXPRESSION = Verdict(
    K.WRITE, "user variable set from an expression cannot be replayed", PinCause.USER_VARIABLE
)
_SET_FORMS: dict[str, Verdict] = {
    "names": Verdict(K.SESSION, "SET NAMES", replay=True),
    "character": Verdict(K.SESSION, "SET CHARACTER SET", replay=True),
    "charset": Verdict(K.SESSION, "SET CHARSET", replay=True),
    "role": Verdict(K.SESSION, "SET ROLE", replay=True),
    "password": Verdict(K.WRITE, "SET PASSWORD changes an account"),
    "default": Verdict(K.WRITE, "SET DEFAULT ROLE changes an account"),
    "resource": Verdict(K.WRITE, "SET RESOURCE GROUP goes to the writer"),
}


def _set(stmt: _Stmt) -> Verdict:
    m = _SET_WORD.match(stmt.rest)
    word = "" if m is None else m.group(1)
    if word == "statement":
        return _set_statement(stmt.rest[m.end() :] if m else "", stmt.depth)
    transaction = _SET_TRANSACTION.match(stmt.rest)
    if transaction is not None:
        if transaction.group(1) in _GLOBAL_SCOPES:
            return Verdict(K.WRITE, "SET GLOBAL TRANSACTION changes server defaults")
        return Verdict(K.SESSION, "SET TRANSACTION sets the next transaction", replay=True)
    return _SET_FORMS.get(word) or _set_assignments(stmt.rest)


_ASSIGNMENT = re.compile(
    r"""\s*+(?:(?P<scope>global|session|local|persist|persist_only)\s++)?
    (?P<target>
        @@(?:(?P<sysscope>global|session|local|persist|persist_only)\.)?
            (?:[\w$]++|``)(?:\.(?:[\w$]++|``))*+
      | @(?:[\w$.]++|''|""|``)
      | (?:[\w$]++|``)(?:\s*+\.\s*+(?:[\w$]++|``))?+
    )
    \s*+:?=(?P<value>.*)\Z""",
    re.S | re.X,
)
# A value that replays to the same result anywhere.
_LITERAL = re.compile(
    r"""\s*+(?:[-+]\s*+)*+(?:
        (?:\d++(?:\.\d*+)?+|\.\d++)(?:e[-+]?\d++)?+
      | (?:_[\w$]++\s*+)?(?:0x[0-9a-f]++|0b[01]++|[nxb]?''(?:\s*+'')*+)
      | ""(?:\s*+"")*+
      | (?:date|time|timestamp)\s*+''
      | null|true|false|default|on|off
    )(?:\s*+collate\s++[\w$]++)?\s*+\Z""",
    re.X,
)
_IDENTIFIER_VALUE = re.compile(r"\s*+(?:[\w$]++|``)\s*+\Z")  # SET sql_mode = ANSI


def _set_assignments(rest: str) -> Verdict:
    """SET a=1, @b=2, ...: the most cautious assignment decides."""
    replay, pin = True, None
    for part in _split_top_level(rest):
        m = _ASSIGNMENT.match(part)
        if m is None:
            return _SET_UNPARSED
        if (m["scope"] or m["sysscope"]) in _GLOBAL_SCOPES:
            return _SET_GLOBAL
        verdict = _assignment(m["target"], m["value"])
        if verdict.kind is K.WRITE:
            pin = pin or verdict.pin
            return verdict._replace(pin=pin) if pin else verdict
        replay = replay and verdict.replay
    return _SESSION_LITERAL if replay else _SESSION_EXPRESSION


def _assignment(target: str, value: str) -> Verdict:
    user = target.startswith("@") and not target.startswith("@@")
    if _LITERAL.match(value) or (not user and _IDENTIFIER_VALUE.match(value)):
        return _SESSION_LITERAL
    found = _inspect_read(value)
    if found is not None and found.kind is K.WRITE:
        return found._replace(pin=found.pin or PinCause.USER_VARIABLE)
    return _SET_USER_EXPRESSION if user else _SESSION_EXPRESSION


_PAREN_OR_COMMA = re.compile(r"[(),]")
_TOP_LEVEL_FOR = re.compile(r"[()]|\bfor\b")


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    if "(" not in text:
        return text.split(",")
    parts, depth, start = [], 0, 0
    for m in _PAREN_OR_COMMA.finditer(text):
        if m.group() == "(":
            depth += 1
        elif m.group() == ")":
            depth = max(depth - 1, 0)
        elif depth == 0:
            parts.append(text[start : m.start()])
            start = m.end()
    parts.append(text[start:])
    return parts


def _set_statement(rest: str, depth: int) -> Verdict:
    """SET STATEMENT var=value[, ...] FOR <stmt>: a one-shot setting around <stmt>."""
    level = 0
    for m in _TOP_LEVEL_FOR.finditer(rest):
        token = m.group()
        level += 1 if token == "(" else -1 if token == ")" else 0
        if token == "for" and level <= 0:
            return _set_statement_parts(rest[: m.start()], rest[m.end() :], depth)
    return Verdict(K.WRITE, "SET STATEMENT without FOR goes to the writer")


def _set_statement_parts(settings: str, inner: str, depth: int) -> Verdict:
    found = _inspect_read(settings)
    if found is not None and found.kind is K.WRITE:
        return found
    _, verdict = _classify_code(inner, depth + 1)
    if verdict.kind not in _RUNNABLE:
        return Verdict(K.WRITE, "SET STATEMENT ... FOR a non-query statement goes to the writer")
    return verdict


def _use(stmt: _Stmt) -> Verdict:
    if stmt.rest.strip():
        return Verdict(K.SESSION, "USE changes the default database", replay=True)
    return Verdict(K.WRITE, "USE without a database goes to the writer")


# ---------------------------------------------------------------------------------------
# Writes with pins, and the rest of the table

_TABLES = re.compile(r"\s*+tables?\b")
_FLUSH_LOCK = re.compile(r"\bwith\s++read\s++lock\b|\bfor\s++export\b")
_CREATE_TEMPORARY = re.compile(r"\s*+(?:or\s++replace\s++)?temporary\b")
_HANDLER_CLOSE = re.compile(r"\bclose\s*+\Z")
_BACKUP_RELEASE = re.compile(r"\s*+(?:unlock\b|stage\s++end\b)")
_USER_VARIABLE_REF = re.compile(r"(?<!@)@(?!@)")
_GET_DIAGNOSTICS = re.compile(r"\s*+(?:(?:current|stacked)\s++)?diagnostics\b")


def _lock(stmt: _Stmt) -> Verdict:
    if _TABLES.match(stmt.rest):
        return Verdict(K.WRITE, "LOCK TABLES holds locks on the writer", PinCause.LOCK_TABLES)
    return Verdict(K.WRITE, "LOCK INSTANCE holds a lock on the writer", PinCause.LOCK_TABLES)


def _unlock(stmt: _Stmt) -> Verdict:
    if _TABLES.match(stmt.rest):
        return Verdict(K.WRITE, "UNLOCK TABLES releases table locks", unpin=PinCause.LOCK_TABLES)
    return Verdict(K.WRITE, "UNLOCK goes to the writer")


def _flush(stmt: _Stmt) -> Verdict:
    if _FLUSH_LOCK.search(stmt.rest):
        return Verdict(K.WRITE, "FLUSH TABLES ... WITH READ LOCK holds locks", PinCause.LOCK_TABLES)
    return Verdict(K.WRITE, "FLUSH changes server state")


def _backup(stmt: _Stmt) -> Verdict:
    if _BACKUP_RELEASE.match(stmt.rest):
        return Verdict(K.WRITE, "BACKUP UNLOCK / STAGE END goes to the writer")
    return Verdict(K.WRITE, "BACKUP LOCK / STAGE holds locks", PinCause.LOCK_TABLES)


def _create(stmt: _Stmt) -> Verdict:
    if _CREATE_TEMPORARY.match(stmt.rest):
        return Verdict(
            K.WRITE, "CREATE TEMPORARY TABLE lives on one connection", PinCause.TEMPORARY_TABLE
        )
    return Verdict(K.WRITE, "DDL goes to the writer")


def _handler(stmt: _Stmt) -> Verdict:
    if _HANDLER_CLOSE.search(stmt.rest):
        return Verdict(K.WRITE, "HANDLER CLOSE goes to the writer")
    return Verdict(K.WRITE, "HANDLER keeps a cursor on one connection", PinCause.HANDLER)


def _do(stmt: _Stmt) -> Verdict:
    found = _inspect_read(stmt.rest)
    if found is not None and found.pin is not None:
        return Verdict(K.WRITE, found.rule, found.pin)
    return Verdict(K.WRITE, "DO evaluates expressions for their side effects")


def _call(stmt: _Stmt) -> Verdict:
    if _USER_VARIABLE_REF.search(stmt.rest):
        return Verdict(
            K.WRITE, "CALL may set user variables through OUT parameters", PinCause.USER_VARIABLE
        )
    return Verdict(K.WRITE, "CALL runs a stored procedure")


def _get(stmt: _Stmt) -> Verdict:
    if _GET_DIAGNOSTICS.match(stmt.rest):
        # It runs where the previous statement ran; the @variables it sets live there.
        pin = PinCause.USER_VARIABLE if _USER_VARIABLE_REF.search(stmt.rest) else None
        return Verdict(K.SAME_BACKEND, "GET DIAGNOSTICS needs the previous backend", pin)
    return Verdict(K.WRITE, _RULE_UNKNOWN)


def _always(verdict: Verdict) -> Handler:
    return lambda stmt: verdict


def _writes(rule: str, *keywords: str) -> dict[str, Handler]:
    return dict.fromkeys(keywords, _always(Verdict(K.WRITE, rule)))


_HANDLERS: dict[str, Handler] = {
    **_writes("DML goes to the writer", "insert", "replace", "update", "delete", "merge"),
    **_writes("DDL goes to the writer", "alter", "drop", "rename", "truncate"),
    **_writes("account management goes to the writer", "grant", "revoke"),
    **_writes("LOAD DATA / LOAD XML write", "load"),
    **_writes("table maintenance goes to the writer", "optimize", "repair", "check"),
    **_writes("server administration goes to the writer", "reset", "purge", "kill"),
    **_writes("server administration goes to the writer", "install", "uninstall", "shutdown"),
    **_writes("replication control goes to the writer", "change", "stop", "binlog"),
    **_writes("savepoints live in the writer's transaction", "savepoint", "release"),
    **_writes("prepared statements live on the writer", "execute", "deallocate"),
    "prepare": _always(
        Verdict(K.WRITE, "PREPARE keeps a statement on one connection", PinCause.SQL_PREPARE)
    ),
    "select": _read,
    "values": _read,
    "table": _read,
    "with": _with,
    "explain": _explain,
    "describe": _explain,
    "desc": _explain,
    "analyze": _analyze,
    "help": _always(Verdict(K.READ, "HELP reads the help tables")),
    "show": _show,
    "checksum": _always(Verdict(K.READ_ON_WRITER, "CHECKSUM TABLE answers for one server")),
    "begin": _begin,
    "start": _start,
    "commit": _commit,
    "rollback": _rollback,
    "xa": _xa,
    "set": _set,
    "use": _use,
    "lock": _lock,
    "unlock": _unlock,
    "flush": _flush,
    "backup": _backup,
    "create": _create,
    "handler": _handler,
    "do": _do,
    "call": _call,
    "get": _get,
}
