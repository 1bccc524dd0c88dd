"""Routing rules as a table: (classification, session) -> target, one row per rule."""

from __future__ import annotations

import dataclasses

import pytest

from proxy.routing.classify import Classification, Hint, PinCause, StatementKind
from proxy.routing.router import SessionView, Target, route

K = StatementKind
IDLE = SessionView()
NO_READERS = SessionView(readers_available=False)
IN_TXN = SessionView(in_transaction=True)
IN_RO_TXN = SessionView(in_transaction=True, transaction_on_reader=True)
AUTOCOMMIT_OFF = SessionView(autocommit=False)
PINNED = SessionView(pins=frozenset({PinCause.TEMPORARY_TABLE}))
WITH_LAST = SessionView(has_last_backend=True)


def c(kind: StatementKind, **kw: object) -> Classification:
    return Classification(kind=kind, rule=f"rule for {kind.value}", **kw)  # type: ignore[arg-type]


CASES = [
    # (classification, session, target, words the rule must contain)
    (c(K.READ), IDLE, Target.READER, "read"),
    (c(K.READ), NO_READERS, Target.WRITER, "no healthy replica"),
    (c(K.WRITE), IDLE, Target.WRITER, "writer"),
    (c(K.WRITE, hint=Hint.REPLICA), IDLE, Target.WRITER, "writer"),
    (c(K.READ, hint=Hint.PRIMARY), IDLE, Target.WRITER, "rwproxy:primary"),
    (c(K.READ_ON_WRITER), IDLE, Target.WRITER, "read_on_writer"),
    (c(K.READ_ON_WRITER, hint=Hint.REPLICA), IDLE, Target.READER, "rwproxy:replica"),
    (c(K.READ_ON_WRITER, hint=Hint.REPLICA), NO_READERS, Target.WRITER, "no healthy replica"),
    (c(K.READ), IN_TXN, Target.TRANSACTION, "the writer"),
    (c(K.WRITE), IN_TXN, Target.TRANSACTION, "the writer"),
    (c(K.READ), IN_RO_TXN, Target.TRANSACTION, "the replica"),
    (c(K.READ, hint=Hint.REPLICA), IN_TXN, Target.TRANSACTION, "inside a transaction"),
    (c(K.READ), AUTOCOMMIT_OFF, Target.WRITER, "autocommit=0"),
    (c(K.SESSION), AUTOCOMMIT_OFF, Target.WRITER, "session state"),
    (c(K.READ), PINNED, Target.WRITER, "temporary_table"),
    (c(K.READ, hint=Hint.REPLICA), PINNED, Target.WRITER, "pinned"),
    (c(K.WRITE, pin=PinCause.LOCK_TABLES), IDLE, Target.WRITER, "pins"),
    (c(K.BEGIN), IDLE, Target.WRITER, "transactions"),
    (c(K.BEGIN_READ_ONLY), IDLE, Target.READER, "read-only transaction"),
    (c(K.BEGIN_READ_ONLY), NO_READERS, Target.WRITER, "no healthy replica"),
    (c(K.COMMIT), IDLE, Target.WRITER, "transaction control"),
    (c(K.ROLLBACK), IDLE, Target.WRITER, "transaction control"),
    (c(K.SESSION), IDLE, Target.WRITER, "replayed"),
    (c(K.SAME_BACKEND), WITH_LAST, Target.LAST, "previous statement"),
    (c(K.SAME_BACKEND), IDLE, Target.WRITER, "no previous statement"),
    (c(K.SESSION), SessionView(writer_available=False), Target.READER, "writer unavailable"),
    (c(K.WRITE), SessionView(writer_available=False), Target.WRITER, "writer"),
    (c(K.READ), SessionView(writer_only=True), Target.WRITER, "writer_only"),
    (c(K.BEGIN_READ_ONLY), SessionView(writer_only=True), Target.WRITER, "writer_only"),
    (c(K.READ, hint=Hint.REPLICA), SessionView(writer_only=True), Target.WRITER, "writer_only"),
    (
        c(K.SESSION),
        SessionView(writer_only=True, writer_available=False),
        Target.WRITER,
        "session state",
    ),
]


@pytest.mark.parametrize(("classification", "session", "target", "words"), CASES)
def test_route(
    classification: Classification, session: SessionView, target: Target, words: str
) -> None:
    decision = route(classification, session)
    assert decision.target is target
    assert words in decision.rule


@pytest.mark.parametrize("hint", [None, Hint.REPLICA, Hint.PRIMARY])
@pytest.mark.parametrize("session", [IDLE, NO_READERS, AUTOCOMMIT_OFF, PINNED, WITH_LAST])
def test_a_write_never_goes_to_a_reader(hint: Hint | None, session: SessionView) -> None:
    for kind in (K.WRITE, K.BEGIN, K.COMMIT, K.ROLLBACK, K.SESSION):
        assert route(c(kind, hint=hint), session).target is not Target.READER


def test_session_view_fields_are_the_ones_session_route_remembers() -> None:
    """Session.route() memoises decisions on a key it builds by hand from the same facts
    as Session.view(); a new SessionView field must be added to that key too."""
    assert [f.name for f in dataclasses.fields(SessionView)] == [
        "in_transaction",
        "transaction_on_reader",
        "autocommit",
        "pins",
        "readers_available",
        "writer_available",
        "writer_only",
        "has_last_backend",
    ]
