"""proxy/auth_guard.py: per-address failed-login backoff, with a fake clock.

Examples pin the schedule (threshold, doubling, cap, forgiveness, reset on success, the
1129 text); hypothesis checks the two promises for any sequence of calls: another address
never makes an address more restricted, and memory never exceeds the capacity.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.auth_guard import GuardStats, LoginGuard, blocked_error, blocked_greeting
from proxy.protocol.constants import ErrorCode
from proxy.protocol.errors import MySQLError
from tests.unit.topology.fakes import FakeClock

A = "10.0.0.1"
B = "10.0.0.2"


def guard(clock: FakeClock, **kwargs: float) -> LoginGuard:
    options: dict[str, float] = {
        "max_failures": 3,
        "window_seconds": 100.0,
        "base_backoff_seconds": 1.0,
        "max_backoff_seconds": 8.0,
        "tracked_addresses": 100,
    }
    options.update(kwargs)
    return LoginGuard(clock=clock, **options)  # type: ignore[arg-type]


# -- the schedule ---------------------------------------------------------------------------


def test_failures_below_the_threshold_cost_nothing() -> None:
    clock = FakeClock()
    g = guard(clock)
    assert g.failed(A) == 0.0
    assert g.failed(A) == 0.0
    assert g.check(A) == 0.0


def test_backoff_doubles_from_the_threshold_up_to_the_cap() -> None:
    clock = FakeClock()
    g = guard(clock)
    g.failed(A)
    g.failed(A)
    delays = []
    for _ in range(6):
        delays.append(g.failed(A))
        assert g.check(A) == delays[-1]
        clock.advance(delays[-1])  # wait out the block, then guess again
        assert g.check(A) == 0.0
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_a_blocked_address_is_told_how_long_is_left() -> None:
    clock = FakeClock()
    g = guard(clock, max_failures=1, base_backoff_seconds=4.0)
    assert g.failed(A) == 4.0
    clock.advance(1.5)
    assert g.check(A) == pytest.approx(2.5)
    clock.advance(2.5)
    assert g.check(A) == 0.0


def test_refusals_do_not_lengthen_the_block() -> None:
    clock = FakeClock()
    g = guard(clock, max_failures=1)
    g.failed(A)
    for _ in range(50):
        assert g.check(A) > 0
    clock.advance(1.0)
    assert g.check(A) == 0.0
    assert g.failed(A) == 2.0  # the second real guess, not the 52nd call
    assert g.stats().refusals_total == 50


def test_failures_are_forgiven_after_a_quiet_window() -> None:
    clock = FakeClock()
    g = guard(clock)
    for _ in range(5):
        g.failed(A)
    clock.advance(100.0)
    assert g.check(A) == 0.0
    assert g.stats().tracked == 0  # forgotten on the way
    assert g.failed(A) == 0.0  # counting starts again


def test_failures_closer_than_the_window_keep_counting() -> None:
    clock = FakeClock()
    g = guard(clock)
    g.failed(A)
    clock.advance(99.0)
    g.failed(A)
    clock.advance(99.0)
    assert g.failed(A) == 1.0


def test_success_forgets_the_address() -> None:
    clock = FakeClock()
    g = guard(clock, max_failures=2)
    g.failed(A)
    g.failed(A)
    clock.advance(1.0)
    g.succeeded(A)
    assert g.check(A) == 0.0
    assert g.failed(A) == 0.0
    assert g.stats().tracked == 1


def test_other_addresses_go_on_while_one_is_blocked() -> None:
    clock = FakeClock()
    g = guard(clock, max_failures=1)
    g.failed(A)
    assert g.check(A) > 0
    assert g.check(B) == 0.0
    assert g.failed(B) == 1.0  # B's own first block, not A's longer one


def test_huge_failure_counts_do_not_overflow() -> None:
    g = guard(FakeClock(), max_failures=1)
    assert g.backoff(10_000) == 8.0
    for _ in range(2_000):
        g.failed(A)
    assert g.check(A) == 8.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_failures": 0},
        {"base_backoff_seconds": 0},
        {"base_backoff_seconds": 9.0},  # above the cap
        {"max_backoff_seconds": 200.0},  # longer than the window: a block would outlive it
        {"tracked_addresses": 1},
    ],
)
def test_invalid_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        guard(FakeClock(), **kwargs)


def test_stats() -> None:
    clock = FakeClock()
    g = guard(clock, max_failures=2)
    g.failed(A)
    g.failed(B)
    g.failed(B)
    g.check(B)
    assert g.stats() == GuardStats(
        tracked=2, penalized=1, failures_total=3, refusals_total=1, evictions_total=0
    )


def test_blocked_error_text() -> None:
    error = blocked_error("10.1.2.3", 2.2)
    assert isinstance(error, MySQLError)
    assert error.code == ErrorCode.ER_HOST_IS_BLOCKED
    assert int(error.code) == 1129
    assert error.sqlstate == "HY000"
    assert error.message == (
        "Host '10.1.2.3' is blocked because of many connection errors; retry in 3 s"
    )
    assert blocked_error("h", 0.01).message.endswith("retry in 1 s")
    assert blocked_error("h", 60.0).message.endswith("retry in 60 s")


# -- memory ------------------------------------------------------------------------------


def test_spraying_new_addresses_never_evicts_a_blocked_one() -> None:
    clock = FakeClock()
    g = guard(clock, max_failures=2, tracked_addresses=8)
    g.failed(A)
    g.failed(A)
    for i in range(10_000):
        g.failed(f"203.0.113.{i}")
    assert g.check(A) > 0
    assert g.stats().tracked <= 8
    assert g.stats().evictions_total > 0


def test_blocked_addresses_evict_each_other_oldest_first() -> None:
    clock = FakeClock()
    g = guard(clock, max_failures=1, tracked_addresses=8)  # room for 2 blocked addresses
    for address in ("x", "y", "z"):
        g.failed(address)
        clock.advance(0.1)
    assert g.check("x") == 0.0  # evicted: the least recently seen
    assert g.check("y") > 0 and g.check("z") > 0


def test_a_refused_address_that_keeps_trying_stays_tracked() -> None:
    clock = FakeClock()
    g = guard(clock, max_failures=1, tracked_addresses=8)
    g.failed("x")
    g.failed("y")
    g.check("x")  # x is refused again: now the most recent
    g.failed("z")
    assert g.check("x") > 0
    assert g.check("y") == 0.0


# -- properties --------------------------------------------------------------------------

ADDRESSES = [f"10.0.0.{i}" for i in range(12)]
VICTIM = ADDRESSES[0]


@dataclass(frozen=True)
class Step:
    op: str  # check | failed | succeeded
    address: str
    advance: float


steps = st.lists(
    st.builds(
        Step,
        st.sampled_from(["check", "failed", "succeeded"]),
        st.sampled_from(ADDRESSES),
        st.sampled_from([0.0, 0.0, 0.3, 1.0, 5.0, 40.0]),
    ),
    max_size=120,
)


def apply(g: LoginGuard, clock: FakeClock, step: Step) -> float:
    clock.advance(step.advance)
    return float(getattr(g, step.op)(step.address) or 0.0)


@settings(max_examples=300, deadline=None)
@given(steps, st.sampled_from([4, 8, 40]))
def test_another_address_never_makes_one_more_restricted(script: list[Step], capacity: int) -> None:
    """The victim's wait with everyone's traffic is never longer than with its own alone;
    with room for every address it is exactly the same."""
    shared_clock, alone_clock = FakeClock(), FakeClock()
    shared = guard(shared_clock, max_failures=2, tracked_addresses=capacity)
    alone = guard(alone_clock, max_failures=2, tracked_addresses=capacity)
    roomy = guard(FakeClock(), max_failures=2, tracked_addresses=100)
    roomy_clock: FakeClock = roomy._clock  # type: ignore[assignment]
    pending = 0.0
    for step in script:
        shared_result = apply(shared, shared_clock, step)
        roomy_result = apply(roomy, roomy_clock, step)
        pending += step.advance
        if step.address != VICTIM:
            continue
        alone_result = apply(alone, alone_clock, Step(step.op, VICTIM, pending))
        pending = 0.0
        assert shared_result <= alone_result
        assert roomy_result == alone_result
        assert shared.check(VICTIM) <= alone.check(VICTIM)
        assert roomy.check(VICTIM) == alone.check(VICTIM)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["check", "failed", "succeeded"]), st.integers(0, 10_000)),
        max_size=400,
    ),
    st.integers(2, 30),
)
def test_memory_is_bounded(calls: list[tuple[str, int]], capacity: int) -> None:
    clock = FakeClock()
    g = guard(clock, max_failures=2, tracked_addresses=capacity)
    for op, n in calls:
        getattr(g, op)(f"2001:db8::{n:x}")
        clock.advance(0.5)
        stats = g.stats()
        assert stats.tracked <= g.capacity == capacity
        assert stats.penalized <= max(1, capacity // 4)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_waits_are_never_negative_nor_above_the_cap(script: list[Step]) -> None:
    clock = FakeClock()
    g = guard(clock, max_failures=2)
    for step in script:
        result = apply(g, clock, step)
        assert 0.0 <= result <= g.max_backoff_seconds


# -- what a blocked client sees ---------------------------------------------------------------


def test_blocked_greeting_is_an_err_a_client_reads_in_place_of_the_greeting() -> None:
    from proxy.protocol.auth import BackendCredential
    from proxy.protocol.handshake import ClientHandshake, Failed

    wire = blocked_greeting("10.1.2.3", 4.0)
    assert wire[:4] == len(wire[4:]).to_bytes(3, "little") + b"\x00"  # one packet, seq 0
    assert wire[4:7] == b"\xff\x69\x04"  # ERR 1129, no '#' SQLSTATE marker before the handshake
    client = ClientHandshake("app", BackendCredential(password=b"pw"))
    (failed,) = client.receive_data(wire)
    assert isinstance(failed, Failed)
    assert failed.error.code == 1129
    assert failed.error.message == (
        "Host '10.1.2.3' is blocked because of many connection errors; retry in 4 s"
    )
