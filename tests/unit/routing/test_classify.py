"""Statement classifier: a table of SQL texts, then properties that must hold for any text."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from proxy.compiled import compiled_modules
from proxy.routing import classify as classify_module
from proxy.routing.classify import (
    Classification,
    Hint,
    PinCause,
    StatementKind,
    classify,
    classify_uncached,
)
from proxy.routing.lexer import _mask_literals, _Scanner, lex
from tests.unit.routing.corpus import CASES, Case

K = StatementKind


# ---------------------------------------------------------------------------------------
# The table


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_corpus(case: Case) -> None:
    got = classify(case.sql)
    assert got.kind is case.kind, got.rule
    assert got.pin is case.pin, got.rule
    assert got.unpin is case.unpin, got.rule
    assert got.hint is case.hint
    if case.replay is not None:
        assert got.replay is case.replay, got.rule
    if case.statements is not None:
        assert got.statements == case.statements
    assert got.rule


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 200


def test_corpus_covers_every_kind_and_pin() -> None:
    assert {c.kind for c in CASES} == set(StatementKind)
    assert {c.pin for c in CASES} >= set(PinCause)


@pytest.mark.parametrize(
    ("sql", "keyword", "statements"),
    [
        ("SELECT 1", "select", 1),
        ("  ( (select 1))", "select", 1),
        ("/* c */ UPDATE t SET a = 1", "update", 1),
        ("/*!40101 SET NAMES utf8 */", "set", 1),
        ("SELECT 1; SELECT 2; ", "select", 2),
        ("BEGIN; SELECT 1; COMMIT;", "begin", 3),
        ("", "", 0),
        ("/* nothing */ ;", "", 0),
        ("12345", "", 1),
    ],
)
def test_first_keyword_and_statement_count(sql: str, keyword: str, statements: int) -> None:
    got = classify(sql)
    assert (got.first_keyword, got.statements) == (keyword, statements)


def test_bytes_and_text_agree() -> None:
    for case in CASES:
        if isinstance(case.sql, str) and "\x00" not in case.sql:
            assert classify(case.sql.encode()).kind is classify(case.sql).kind, case.sql


def test_replay_only_for_session() -> None:
    assert not classify("SET GLOBAL x = 1, @a = 1").replay
    assert classify("SET @a = 1").replay


def test_result_is_cached_and_bounded() -> None:
    sql = "SELECT c FROM cache_test WHERE id = 7"
    assert classify(sql) is classify(sql)
    assert classify(sql.encode()) is classify(sql.encode())
    long_text = "SELECT '" + "x" * (classify_module.CACHE_TEXT_LIMIT + 1) + "'"
    before = classify_module._classify_cached.cache_info().currsize
    assert classify(long_text).kind is K.READ
    assert classify(long_text.encode()).kind is K.READ
    assert classify_module._classify_cached.cache_info().currsize == before
    assert long_text.encode() not in classify_module._exact


def test_bytes_caches_stay_bounded() -> None:
    for i in range(classify_module.CACHE_ENTRIES * 2 + 10):
        classify(f"SELECT c FROM bounded_{i} WHERE id = {i}".encode())
    assert len(classify_module._exact) <= classify_module.CACHE_ENTRIES
    assert len(classify_module._by_shape) <= classify_module.CACHE_ENTRIES


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        (b"SELECT c FROM sbtest1 WHERE id=4711", b"SELECT c FROM sbtest1 WHERE id=?"),
        (b"SELECT 'it''s', 12.5 FROM t9 WHERE a='b;c'", b"SELECT ??, ?.? FROM t9 WHERE a=?"),
        (
            b"INSERT INTO t (a, b) VALUES (1, 'x'), (22, '')",
            b"INSERT INTO t (a, b) VALUES (?, ?), (?, ?)",
        ),
        (b"SELECT 0x1F, 1e5, x'0A' FROM 1t", b"SELECT 0x1F, 1e5, x? FROM 1t"),
    ],
)
def test_statement_shape_replaces_plain_literals(text: bytes, shape: bytes) -> None:
    assert classify_module.statement_shape(text) == shape


@pytest.mark.parametrize(
    "text",
    [
        b"SELECT 1 /* ' */ FROM t",
        b"SELECT 1 -- it's\n",
        b"SELECT 1 # it's",
        b'SELECT "a\'b" FROM t',
        b"SELECT `it's` FROM t",
        b"SELECT 'a\\' ; DELETE FROM t; -- '",
    ],
)
def test_no_shape_where_quotes_or_digits_may_hide(text: bytes) -> None:
    assert classify_module.statement_shape(text) is None


def test_a_shape_never_carries_a_write_to_a_read() -> None:
    """Texts of one shape classify alike: the first one's answer serves the rest."""
    read = b"SELECT a FROM shape_t WHERE id = 1"
    assert classify(read).kind is K.READ
    assert classify(b"SELECT a FROM shape_t WHERE id = 2") is classify(read)
    # What a literal could hide never reaches the shape cache:
    hidden = b"SELECT a FROM shape_t WHERE id = 'x\\' ; DELETE FROM shape_t; -- '"
    assert classify(hidden).kind is K.WRITE
    # Session statements whose value matters are not cached by shape:
    assert classify(b"SET autocommit = 0").kind is classify_uncached(b"SET autocommit = 0").kind
    assert classify_module.statement_shape(b"SET autocommit = 1") not in classify_module._by_shape


@pytest.mark.skipif(
    "proxy.routing.classify" in compiled_modules(),
    reason="compiled, classify calls _classify_text directly: monkeypatch cannot reach it "
    "(make test runs the unit tests on pure Python first)",
)
def test_unexpected_internal_error_goes_to_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(text: str) -> Classification:
        raise RuntimeError("boom")

    monkeypatch.setattr(classify_module, "_classify_text", explode)
    got = classify_uncached("SELECT 1")
    assert got.kind is K.WRITE
    assert "could not be classified" in got.rule


@pytest.mark.parametrize("value", [None, 42, bytearray(b"SELECT 1"), memoryview(b"SELECT 1")])
def test_odd_argument_types_never_raise(value: object) -> None:
    got = classify(value)
    assert isinstance(got, Classification)


def test_deep_nesting_is_bounded() -> None:
    got = classify("ANALYZE " * 50 + "SELECT 1")
    assert got.kind is K.WRITE


def test_hint_without_hint_comment_is_none() -> None:
    assert classify("SELECT 1").hint is None
    assert classify("SELECT 1 /* rwproxy:replica */").hint is Hint.REPLICA


# ---------------------------------------------------------------------------------------
# Long texts: the bulk fast path must agree with the full analysis


def _long_insert(values: list[str]) -> str:
    rows = ",".join(f"({i}, '{v}')" for i, v in enumerate(values))
    return "INSERT INTO t (id, v) VALUES " + rows + " " * 3000


@pytest.mark.parametrize(
    ("tail", "kind", "pin"),
    [
        ("", K.WRITE, None),
        ("; SELECT 1", K.WRITE, None),
        ("; CREATE TEMPORARY TABLE x (a INT)", K.WRITE, PinCause.TEMPORARY_TABLE),
        (", (GET_LOCK('x', 1), 'y')", K.WRITE, PinCause.NAMED_LOCK),
        (" /* rwproxy:replica */", K.WRITE, None),
    ],
)
def test_long_dml(tail: str, kind: StatementKind, pin: PinCause | None) -> None:
    got = classify(_long_insert(["a"] * 500) + tail)
    assert (got.kind, got.pin) == (kind, pin)


def test_long_select_is_fully_analysed() -> None:
    values = ",".join(f"'v{i}'" for i in range(2000))
    assert classify(f"SELECT * FROM t WHERE v IN ({values})").kind is K.READ
    assert classify(f"SELECT * FROM t WHERE v IN ({values}) FOR UPDATE").kind is K.WRITE


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(alphabet="ab';\\\"`#-/*:=_lockGET() \n", max_size=8), max_size=20))
def test_bulk_fast_path_matches_full_analysis(values: list[str]) -> None:
    sql = "UPDATE t SET v = " + " + ".join(f"'{v}'" for v in values) + " " * 3000
    fast = classify_uncached(sql)
    full = classify_module._classify_text(sql)
    assert (fast.kind, fast.pin, fast.unpin, fast.hint) == (
        full.kind,
        full.pin,
        full.unpin,
        full.hint,
    )


# ---------------------------------------------------------------------------------------
# Properties

_FRAGMENTS = [
    "SELECT", "select", "INSERT", "UPDATE", "DELETE", "SET", "SHOW", "WITH", "ANALYZE",
    "EXPLAIN", "BEGIN", "START TRANSACTION", "READ ONLY", "COMMIT", "LOCK", "TABLES",
    "FOR UPDATE", "FOR", "INTO", "@a", "@@x", ":=", "=", "GET_LOCK(", "f(", "db.f(", "(",
    ")", ",", ";", " ", "\n", "\t", "'", '"', "`", "\\", "/*", "*/", "/*!", "/*!50700",
    "/*M!", "/*M!100100", "/*+", "--", "-- ", "#", "rwproxy:primary", "rwproxy:replica",
    "x", "1", "0x1F", "_utf8", "NEXT VALUE FOR", "STATEMENT", "\udcff", "\x00", "é",
]  # fmt: skip

sql_like = st.lists(st.sampled_from(_FRAGMENTS), max_size=40).map("".join)


def _check_invariants(got: Classification) -> None:
    assert isinstance(got.kind, StatementKind)
    assert got.rule
    # A pin comes with a write, or with GET DIAGNOSTICS @v (which must run where the
    # previous statement ran, and leaves @v there).
    assert got.pin is None or got.kind in (K.WRITE, K.SAME_BACKEND)
    assert not got.replay or got.kind is K.SESSION
    assert got.statements >= 0


@settings(max_examples=500)
@given(st.one_of(st.text(), sql_like))
@example("SELECT '\\")
@example("/*!")
@example("/*M!")
@example("--")
def test_never_raises_on_text(sql: str) -> None:
    _check_invariants(classify_uncached(sql))


@settings(max_examples=300)
@given(st.one_of(st.binary(), sql_like.map(lambda s: s.encode("utf-8", "surrogateescape"))))
def test_never_raises_on_bytes(sql: bytes) -> None:
    _check_invariants(classify_uncached(sql))


def test_never_raises_on_huge_input() -> None:
    for sql in ("'" * 200_000, "/*" * 100_000, "(" * 200_000, "SELECT " + "a" * 500_000 + "("):
        _check_invariants(classify_uncached(sql))


_WELL_FORMED = [c for c in CASES if not c.broken]
_WRITES = [c for c in _WELL_FORMED if c.kind is K.WRITE]

# Plain comment text: no `*/` (would end it), no leading `!`/`M!`/`+` (not plain).
comment_text = st.text(st.characters(codec="utf-8"), max_size=20).filter(
    lambda s: "*/" not in s and not s.startswith(("!", "M!", "+"))
)
line_comment_text = comment_text.map(lambda s: s.replace("\n", " ").replace("\r", " "))


def _join(case: Case, before: str, after: str) -> str | bytes:
    if isinstance(case.sql, bytes):
        return before.encode() + case.sql + after.encode()
    return before + case.sql + after


def _same_class(a: Classification, b: Classification) -> bool:
    return (a.kind, a.pin, a.unpin) == (b.kind, b.pin, b.unpin)


@given(st.sampled_from(_WELL_FORMED), comment_text, line_comment_text)
def test_plain_comments_never_change_the_class(case: Case, text: str, line: str) -> None:
    expected = classify(case.sql)
    for before, after in (
        (f"/*{text}*/ ", ""),
        ("", f" /*{text}*/"),
        (f"-- {line}\n", ""),
        (f"#{line}\n", ""),
        ("", f"\n-- {line}"),
        (f"/*{text}*/\n# {line}\n", f" /*{text}*/"),
    ):
        got = classify_uncached(_join(case, before, after))
        assert _same_class(got, expected), (before, after, got.rule)


def _flip_case(sql: str | bytes, rnd: random.Random) -> str | bytes:
    text = sql.decode("latin-1") if isinstance(sql, bytes) else sql
    chars = list(text)
    for i, ch in enumerate(chars):
        keep_mariadb_marker = ch == "M" and text[i + 1 : i + 2] == "!"
        if ch.isascii() and ch.isalpha() and not keep_mariadb_marker and rnd.random() < 0.5:
            chars[i] = ch.swapcase()
    flipped = "".join(chars)
    return flipped.encode("latin-1") if isinstance(sql, bytes) else flipped


@given(st.sampled_from(CASES), st.randoms(use_true_random=False))
def test_keyword_case_never_changes_the_class(case: Case, rnd: random.Random) -> None:
    got = classify_uncached(_flip_case(case.sql, rnd))
    assert _same_class(got, classify(case.sql)), got.rule


_SPACES = (" ", "\t", "  ", " \t ")


def _respace(sql: str | bytes, rnd: random.Random) -> str | bytes:
    """Change horizontal whitespace runs and add indentation after newlines.

    Newlines are never added or removed: `--` and `#` comments end at one.
    """
    text = sql.decode("latin-1") if isinstance(sql, bytes) else sql
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] in " \t":
            while i < len(text) and text[i] in " \t":
                i += 1
            out.append(rnd.choice(_SPACES))
            continue
        out.append(text[i])
        if text[i] == "\n" and rnd.random() < 0.5:
            out.append(rnd.choice(_SPACES))
        i += 1
    spaced = "".join(out)
    return spaced.encode("latin-1") if isinstance(sql, bytes) else spaced


@given(st.sampled_from(CASES), st.randoms(use_true_random=False))
def test_whitespace_never_changes_the_class(case: Case, rnd: random.Random) -> None:
    got = classify_uncached(_respace(case.sql, rnd))
    assert _same_class(got, classify(case.sql)), got.rule


@given(st.sampled_from(_WRITES), comment_text, st.sampled_from(["SELECT 1", "SELECT 'x' FROM t"]))
def test_a_write_cannot_hide_behind_a_read(case: Case, text: str, read: str) -> None:
    for before, after in (
        (f"/*{text}*/ ", ""),
        ("", f"; {read}"),
        (f"{read}; ", ""),
        (f"{read} /*{text}*/; ", f";{read};"),
    ):
        got = classify_uncached(_join(case, before, after))
        assert got.kind is K.WRITE, (before, after, got.rule)


@pytest.mark.parametrize("case", _WRITES, ids=[c.id for c in _WRITES])
def test_every_corpus_write_stays_a_write_in_a_batch(case: Case) -> None:
    for before, after in (("SELECT 1; ", ""), ("", "; SELECT 1"), ("/* c */ ", "")):
        assert classify_uncached(_join(case, before, after)).kind is K.WRITE


# ---------------------------------------------------------------------------------------
# Lexer: the fast literal-only pass and the scanner agree

literal_text = st.lists(
    st.sampled_from(["a", " ", "'", '"', "`", "\\", ";", "x", "''", "\n", "-", "/", "*"]),
    max_size=30,
).map("".join)


@given(literal_text, st.booleans())
def test_literal_fast_path_matches_scanner(text: str, escapes: bool) -> None:
    if any(marker in text for marker in ("#", "/*", "--")):
        return
    fast = _mask_literals(text, escapes)
    slow = _Scanner(text, escapes, True).run()
    assert (fast.code, fast.problem) == (slow.code, slow.problem)


def test_lexer_masks_literals_and_collects_hints() -> None:
    lexed = lex("SELECT 'a;b', \"c\", `d` /* rwproxy:reader */ -- x\n FROM t")
    assert lexed.code.split() == ["select", "'',", '"",', "``", "from", "t"]
    assert lexed.hints == frozenset({"replica"})
    assert lexed.problem is None


def test_lexer_keeps_executable_comments() -> None:
    assert lex("SELECT /*!50700 1 */").code.split() == ["select", "1"]
    assert lex("SELECT /*!50700 1 */", versioned_code=False).code.split() == ["select"]
    assert lex("SELECT /*! 1 */", versioned_code=False).code.split() == ["select", "1"]
    assert lex("SELECT /*M!100100 1 */").versioned


def _as_bytes(sql: str | bytes) -> bytes:
    return sql if isinstance(sql, bytes) else sql.encode("utf-8", "surrogateescape")


_SHAPED = [_as_bytes(c.sql) for c in CASES if classify_module.statement_shape(_as_bytes(c.sql))]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(min_value=0, max_value=len(_SHAPED) - 1),
    numbers=st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=8),
    strings=st.lists(
        st.text(st.characters(blacklist_characters="'\\", codec="utf-8"), max_size=12),
        min_size=1,
        max_size=8,
    ),
)
def test_texts_of_one_shape_classify_alike(
    index: int, numbers: list[int], strings: list[str]
) -> None:
    """Change every literal of a corpus statement: where the shape cache would answer
    (`_shape_decides`), the answer must be the one the text itself gets."""
    text = _SHAPED[index]
    counter = iter(range(10**6))

    def swap(match: re.Match[bytes]) -> bytes:
        i = next(counter)
        if match.group().startswith(b"'"):
            return b"'" + strings[i % len(strings)].encode() + b"'"
        return str(numbers[i % len(numbers)]).encode()

    other = classify_module._LITERALS.sub(swap, text)
    shape = classify_module.statement_shape(other)
    if shape is None:  # a quote or comment marker inside a literal: never shape-cached
        return
    assert shape == classify_module.statement_shape(text)
    first = classify_uncached(text)
    if classify_module._shape_decides(first):
        assert classify_uncached(other) == first, (text, other)
