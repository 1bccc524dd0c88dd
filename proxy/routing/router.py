"""Where one classified statement goes, given what the session is doing right now.

Theory of operation
-------------------
`route()` is a pure function of the statement's `Classification` and a small
`SessionView` (transaction state from the server's status flags, pins, autocommit,
whether replicas are usable). Its rules, in order (MaxScale readwritesplit's, with
read-your-writes added by the session):

1. Inside a transaction everything stays on the connection that holds it
   (the writer, or the replica of a `START TRANSACTION READ ONLY`).
2. A `/* rwproxy:primary */` hint sends anything to the writer.
3. A session pinned by unreproducible state (temporary table, LOCK TABLES, named
   lock, SQL PREPARE, user variable from an expression) stays on the writer.
4. With autocommit off every statement opens a transaction: writer.
5. Writes, BEGIN, and state changes go to the writer; SESSION statements run where
   the session's state lives and are replayed on its other connections.
6. Statements that must see the previous statement's connection (FOUND_ROWS(),
   SHOW WARNINGS, ...) go to the last backend.
7. Cautious reads go to the writer unless a replica hint says otherwise.
8. Plain reads go to a replica, or to the writer when none is usable.

The returned `rule` text is what `SHOW RWPROXY ROUTE` prints: users ask "why did this
go there?" and the answer must name the rule.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from proxy.routing.classify import Classification, Hint, PinCause, StatementKind


class Target(enum.Enum):
    __hash__ = object.__hash__  # identity, in C: see ResponseState

    WRITER = "writer"
    READER = "reader"
    TRANSACTION = "transaction"
    LAST = "last"


@dataclass(frozen=True, slots=True)
class SessionView:
    """What routing needs to know about a session."""

    in_transaction: bool = False
    transaction_on_reader: bool = False
    autocommit: bool = True
    pins: frozenset[PinCause] = frozenset()
    readers_available: bool = True
    writer_available: bool = True
    writer_only: bool = False
    has_last_backend: bool = False


@dataclass(frozen=True, slots=True)
class RouteDecision:
    target: Target
    rule: str


_WRITER_KINDS = {
    StatementKind.WRITE: "writes go to the writer",
    StatementKind.BEGIN: "transactions run on the writer",
    StatementKind.COMMIT: "transaction control goes to the writer",
    StatementKind.ROLLBACK: "transaction control goes to the writer",
    StatementKind.SESSION: "session state is set on the writer and replayed elsewhere",
}


def route(c: Classification, s: SessionView) -> RouteDecision:
    if s.in_transaction:
        where = "the replica" if s.transaction_on_reader else "the writer"
        return RouteDecision(Target.TRANSACTION, f"inside a transaction: stays on {where}")
    if c.hint is Hint.PRIMARY:
        return RouteDecision(Target.WRITER, "hint rwproxy:primary")
    if s.pins:
        causes = ", ".join(sorted(p.value for p in s.pins))
        return RouteDecision(Target.WRITER, f"session pinned to the writer by {causes}")
    if c.pin is not None and c.kind is not StatementKind.SAME_BACKEND:
        return RouteDecision(Target.WRITER, f"{c.rule}; pins the session to the writer")
    if not s.autocommit and c.kind is not StatementKind.SESSION:
        return RouteDecision(Target.WRITER, "autocommit=0: every statement opens a transaction")
    return _route_by_kind(c, s)


def _route_by_kind(c: Classification, s: SessionView) -> RouteDecision:
    kind = c.kind
    if (
        kind is StatementKind.SESSION
        and not s.writer_available
        and s.readers_available
        and not s.writer_only
    ):
        # A session that only reads must not fail at `SET NAMES` while the writer is
        # away: set the state on a replica; it is replayed on the writer later.
        return RouteDecision(Target.READER, f"{c.rule} (writer unavailable: set on a replica)")
    if kind in _WRITER_KINDS:
        return RouteDecision(Target.WRITER, f"{c.rule} ({_WRITER_KINDS[kind]})")
    if kind is StatementKind.SAME_BACKEND:
        if s.has_last_backend:
            return RouteDecision(Target.LAST, f"{c.rule} (runs where the previous statement ran)")
        return RouteDecision(Target.WRITER, f"{c.rule} (no previous statement: writer)")
    if kind is StatementKind.READ_ON_WRITER and c.hint is not Hint.REPLICA:
        return RouteDecision(Target.WRITER, c.rule)
    return _route_read(c, s)


def _route_read(c: Classification, s: SessionView) -> RouteDecision:
    if s.writer_only:
        return RouteDecision(Target.WRITER, f"{c.rule}; routing.mode writer_only")
    if not s.readers_available:
        return RouteDecision(Target.WRITER, f"{c.rule}; no healthy replica: writer")
    if c.kind is StatementKind.BEGIN_READ_ONLY:
        return RouteDecision(Target.READER, "read-only transaction runs on one replica")
    if c.hint is Hint.REPLICA:
        return RouteDecision(Target.READER, "hint rwproxy:replica")
    return RouteDecision(Target.READER, c.rule)
