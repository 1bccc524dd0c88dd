"""Lexical pass of the statement classifier: separate SQL code from comments and literals.

Theory of operation
-------------------
`lex(text)` returns the statement text with everything that is *not code* neutralised,
so that the classifier can search the result with plain regular expressions and never be
fooled by a keyword inside a string or a comment:

* ordinary comments (``/* */``, ``-- `` up to the end of the line, ``#`` up to the end of
  the line) become one space; a ``rwproxy:primary|replica|writer|reader`` inside one is
  collected as a routing hint;
* executable comments ``/*! ... */``, ``/*!50700 ... */``, ``/*M! ... */`` and
  ``/*M!100100 ... */`` are code: only their markers are removed;
* string literals become ``''`` (single quotes) or ``""`` (double quotes, which are strings
  unless ``ANSI_QUOTES`` is set), quoted identifiers become two backticks: their content is
  gone, their kind remains (``@''`` is still a user variable, ``_utf8''`` still a literal);
* the result is lowercased.

The scanner follows the server's lexer (``sql_lex.cc``): ``--`` starts a comment only when
followed by a space or control character (``1--1`` is arithmetic); ``''``/``""``/
``````\\`````` double a quote; a backslash escapes the next character in strings (not in
identifiers); ``*/`` ends an executable comment even when it is glued to code.

Some texts mean different things on different servers or sessions. The classifier asks
for the other readings and keeps the most cautious verdict, so `Lexed` reports when one
exists:

* ``versioned``: a versioned (``/*!50700``) or MariaDB-only (``/*M!``) executable comment
  is code on some servers and a comment on others; ``lex(..., versioned_code=False)`` is
  the "comment" reading;
* ``escaped``: a backslash occurs inside a literal, which is an escape unless the session
  has ``NO_BACKSLASH_ESCAPES``; ``lex(..., backslash_escapes=False)`` is that reading.

Nothing here raises: an unterminated literal or comment swallows the rest of the text, as
it does in the server, is reported in ``problem``, and leaves ``''`` in the code so that
the statement it broke is never empty (the server rejects that one and runs the earlier
ones).

Must stay in sync with: the hint vocabulary documented in `proxy.routing.classify`.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["Lexed", "lex", "split_statements"]

# A cheap pre-filter: without any of these characters the text is all code.
_MAYBE_SPECIAL = re.compile(r"""['"`#/-]""")
# Where something other than plain code may start. `--` is a comment only before a space,
# a control character or the end of the text (the server peeks at the NUL terminator).
_SPECIAL = re.compile(r"""['"`#]|/\*|--(?=[\x00-\x20\x7f]|\Z)""")
# Inside an executable comment, `*/` closes it and is therefore special too.
_SPECIAL_IN_EXEC = re.compile(r"""\*/|['"`#]|/\*|--(?=[\x00-\x20\x7f]|\Z)""")

# Literal bodies, matched at their opening quote. Possessive quantifiers: a missing closing
# quote fails in linear time instead of backtracking over every doubled quote.
_SINGLE_ESC = re.compile(r"'[^'\\]*+(?:(?:\\.|'')[^'\\]*+)*+'", re.S)
_DOUBLE_ESC = re.compile(r'"[^"\\]*+(?:(?:\\.|"")[^"\\]*+)*+"', re.S)
_SINGLE_RAW = re.compile(r"'[^']*+(?:''[^']*+)*+'")
_DOUBLE_RAW = re.compile(r'"[^"]*+(?:""[^"]*+)*+"')
_BACKTICK = re.compile(r"`[^`]*+(?:``[^`]*+)*+`")

# Texts without comment markers only need their literals emptied: one `re.sub` pass. The
# last alternative is an unterminated literal, which swallows the rest of the text.
_LITERALS_ONLY = {
    escapes: re.compile(
        "|".join(p.pattern for p in (single, double, _BACKTICK)) + r"""|(?P<open>['"`].*)""",
        re.S,
    )
    for escapes, single, double in (
        (True, _SINGLE_ESC, _DOUBLE_ESC),
        (False, _SINGLE_RAW, _DOUBLE_RAW),
    )
}
_COMMENT_MARKERS = ("#", "/*", "--")

_EXEC_MARKER = re.compile(r"/\*(M?)!(\d*)")
_HINT = re.compile(r"rwproxy\s*:\s*(primary|replica|writer|reader)\b", re.I)
_HINT_NAMES = {"primary": "primary", "writer": "primary", "replica": "replica", "reader": "replica"}

# Left in the code where an unterminated literal or comment starts, so that the broken
# statement is never empty and callers can drop exactly the statement the server rejects.
_BROKEN = "''"
_MASKS = {"'": "''", '"': '""', "`": "``"}
_LITERALS = {
    (True, "'"): _SINGLE_ESC,
    (True, '"'): _DOUBLE_ESC,
    (False, "'"): _SINGLE_RAW,
    (False, '"'): _DOUBLE_RAW,
    (True, "`"): _BACKTICK,
    (False, "`"): _BACKTICK,
}


class Lexed(NamedTuple):
    """One reading of a statement text (a tuple: built on every statement, it must be cheap)."""

    code: str  # lowercased code, comments replaced by a space and literals emptied
    hints: frozenset[str] = frozenset()  # "primary" / "replica" from ordinary comments
    problem: str | None = None  # why the text cannot be trusted (unterminated ...)
    versioned: bool = False  # has a versioned or /*M! executable comment
    escaped: bool = False  # has a backslash inside a string literal


def lex(text: str, *, backslash_escapes: bool = True, versioned_code: bool = True) -> Lexed:
    """Split `text` into code and non-code; see the module docstring."""
    if _MAYBE_SPECIAL.search(text) is None:  # the common case: nothing to strip
        return Lexed(text.lower())
    if not any(marker in text for marker in _COMMENT_MARKERS):
        return _mask_literals(text, backslash_escapes)
    return _Scanner(text, backslash_escapes, versioned_code).run()


def split_statements(code: str) -> list[str]:
    """The non-empty `;`-separated statements of lexed code (literals are already masked)."""
    if ";" not in code:
        return [code] if code.strip() else []
    return [part for part in code.split(";") if part.strip()]


def _mask_literals(text: str, backslash_escapes: bool) -> Lexed:
    """`lex` for a text without comments (several times faster than `_Scanner`)."""
    problem: str | None = None
    escaped = False

    def mask(m: re.Match[str]) -> str:
        nonlocal problem, escaped
        token = m.group()
        escaped = escaped or "\\" in token
        if m.lastgroup == "open":
            problem = _unterminated(token[0])
            return _BROKEN
        return _MASKS[token[0]]

    code = _LITERALS_ONLY[backslash_escapes].sub(mask, text)
    return Lexed(code.lower(), frozenset(), problem, False, escaped)


def _unterminated(quote: str) -> str:
    return "unterminated identifier" if quote == "`" else "unterminated quoted literal"


class _Scanner:
    """A single left-to-right pass; `pos` only moves forward, so the work is linear."""

    __slots__ = (
        "escaped",
        "escapes",
        "hints",
        "in_exec",
        "out",
        "pos",
        "problem",
        "text",
        "versioned",
        "versioned_code",
    )

    def __init__(self, text: str, backslash_escapes: bool, versioned_code: bool) -> None:
        self.text = text
        self.escapes = backslash_escapes
        self.versioned_code = versioned_code
        self.out: list[str] = []
        self.pos = 0
        self.in_exec = False
        self.hints: set[str] = set()
        self.problem: str | None = None
        self.versioned = False
        self.escaped = False

    def run(self) -> Lexed:
        text = self.text
        while self.problem is None:
            pattern = _SPECIAL_IN_EXEC if self.in_exec else _SPECIAL
            m = pattern.search(text, self.pos)
            if m is None:
                self.out.append(text[self.pos :])
                break
            self.out.append(text[self.pos : m.start()])
            self._special(m.group(), m.start())
        if self.in_exec and self.problem is None:
            self._fail("unterminated executable comment")
        return Lexed(
            "".join(self.out).lower(),
            frozenset(self.hints),
            self.problem,
            self.versioned,
            self.escaped,
        )

    def _fail(self, problem: str) -> None:
        self.problem = problem
        self.out.append(_BROKEN)

    def _special(self, token: str, start: int) -> None:
        if token == "*/":
            self.in_exec = False
            self.out.append(" ")
            self.pos = start + 2
        elif token == "/*":
            self._block_comment(start)
        elif token in _MASKS:
            self._literal(token, start)
        else:  # "#" or "--"
            self._line_comment(start)

    def _literal(self, quote: str, start: int) -> None:
        m = _LITERALS[self.escapes, quote].match(self.text, start)
        if m is None:
            self._fail(_unterminated(quote))
            self.escaped = self.escaped or "\\" in self.text[start:]
            return
        if quote != "`" and "\\" in m.group():
            self.escaped = True
        self.out.append(_MASKS[quote])
        self.pos = m.end()

    def _block_comment(self, start: int) -> None:
        marker = _EXEC_MARKER.match(self.text, start)
        if marker is not None and not self.in_exec:
            self._executable_comment(marker)
            return
        end = self.text.find("*/", start + 2)
        if end < 0:
            self._fail("unterminated comment")
            return
        self._collect_hints(self.text[start + 2 : end])
        self.out.append(" ")
        self.pos = end + 2

    def _executable_comment(self, marker: re.Match[str]) -> None:
        conditional = bool(marker.group(1) or marker.group(2))
        self.versioned = self.versioned or conditional
        if conditional and not self.versioned_code:
            end = self.text.find("*/", marker.end())
            if end < 0:
                self._fail("unterminated comment")
                return
            self.out.append(" ")
            self.pos = end + 2
            return
        self.in_exec = True
        self.out.append(" ")
        self.pos = marker.end()

    def _line_comment(self, start: int) -> None:
        end = self.text.find("\n", start)
        stop = len(self.text) if end < 0 else end
        self._collect_hints(self.text[start:stop])
        self.out.append(" ")
        self.pos = stop

    def _collect_hints(self, comment: str) -> None:
        if "rwproxy" in comment.lower():
            for word in _HINT.findall(comment):
                self.hints.add(_HINT_NAMES[word.lower()])
