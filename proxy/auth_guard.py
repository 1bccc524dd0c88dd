"""Failed-login limiting per client address: exponential backoff, bounded memory.

Theory of operation
-------------------
A `LoginGuard` counts failed logins (ER_ACCESS_DENIED_ERROR, wrong password or unknown user)
per client address. Failures are forgiven after `window_seconds` without a new one. From the
`max_failures`-th failure on, the address is *blocked* for

    delay = min(base_backoff_seconds * 2 ** (failures - max_failures), max_backoff_seconds)

seconds after its latest failure: 1 s, 2 s, 4 s, ... up to the cap. A blocked address is
refused at once, before any authentication work, and the refusal does not count as a
failure, so the delay grows only with real guesses, one per block at most. A successful login
forgets the address. Nothing is ever permanent: unlike MariaDB's `max_connect_errors`
(ER_HOST_IS_BLOCKED until `FLUSH HOSTS`), a block ends by itself.

The caller (the session) asks twice per login:

* `check(address)` when the connection arrives: a blocked address gets ERR 1129
  (`blocked_greeting`) instead of the greeting, and costs no handshake, no hashing, no slot
  for longer than one write.
* `check(address)` again when the verdict is known, *before* answering it. Concurrent logins
  from one address all pass the first check before any of them fails; asking again means
  that once the block starts, every verdict still in flight is answered with the same 1129
  whether the password was right or wrong, so a burst of parallel guesses learns nothing
  past the `max_failures`-th one (`ServerHandshake.refuse_instead(blocked_error(...))`
  swaps the verdict for the 1129). Otherwise `failed(address)` for a 1045,
  `succeeded(address)` for an accepted login. Only 1045s count: a TCP probe, a TLS mistake
  or a handshake timeout must never block an address.

Why refuse instead of delaying the 1045 (a tarpit): the MySQL protocol allows one password
per connection, so guesses are connections. Holding a connection open for the delay costs
the proxy a connection slot (`max_connections` is global), a task and a timer per guess, so
a tarpit lets one address fill the table and lock everyone else out. An immediate refusal
costs nothing and gives the same bound on the guessing rate. The 1129 message says when to
retry, so a legitimate client behind the same address (every sidecar client is 127.0.0.1)
knows what happened and for how long.

Other addresses are never affected: an address's state changes only through calls for that
address, except eviction, which can only *forget* an address (make it less restricted).

Memory is bounded: at most `tracked_addresses` records, in two LRU tiers (an
`OrderedDict` each, O(1) per call):

* *probation*: addresses below `max_failures` (3/4 of the capacity);
* *penalty*: addresses at or over it, i.e. blocked or recently blocked (1/4).

New addresses only ever evict probation records, so an attacker spraying source addresses
can push out other attackers' first few failures, never a blocked address: to evict one of
those they must first get a whole penalty tier's worth of their own addresses blocked, which
costs `max_failures` guesses per address, more than the eviction gives back. The trade-off
of any per-address limit remains: an attacker with many addresses (an IPv6 /64 has 2**64)
gets `max_failures` guesses per address per window. Per-address limiting slows a single
source down; it is no substitute for strong passwords and for keeping the port private
(docs/security.md). Likewise a success forgets the address, so an attacker who owns one
valid account can interleave its logins with guesses (`max_failures - 1` per success).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from proxy.protocol.constants import Capability, ErrorCode
from proxy.protocol.errors import MySQLError
from proxy.protocol.framing import frame
from proxy.protocol.packets import err_from

__all__ = ["GuardStats", "LoginGuard", "blocked_error", "blocked_greeting"]

_MAX_DOUBLINGS: Final = 64  # 2**64 times any base exceeds every sane cap; avoids overflow
_PENALTY_SHARE: Final = 4  # 1/4 of the capacity holds blocked addresses


@dataclass(frozen=True, slots=True)
class GuardStats:
    """Counters for metrics and /status (no addresses: they are unbounded labels)."""

    tracked: int  # addresses with a record now
    penalized: int  # of which at or over max_failures (blocked now or recently)
    failures_total: int
    refusals_total: int  # check() calls answered with a wait
    evictions_total: int  # records dropped for room, not for being forgiven


class _Record:
    __slots__ = ("blocked_until", "failures", "last_failure")

    def __init__(self, now: float) -> None:
        self.failures = 0
        self.last_failure = now
        self.blocked_until = 0.0


class LoginGuard:
    """See the module docstring. All times come from `clock` (monotonic seconds)."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window_seconds: float = 300.0,
        base_backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 60.0,
        tracked_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if not 0 < base_backoff_seconds <= max_backoff_seconds <= window_seconds:
            raise ValueError(
                "need 0 < base_backoff_seconds <= max_backoff_seconds <= window_seconds"
            )
        if tracked_addresses < 2:
            raise ValueError("tracked_addresses must be at least 2")
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self.base_backoff_seconds = base_backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._clock = clock
        self._penalty_cap = max(1, tracked_addresses // _PENALTY_SHARE)
        self._probation_cap = tracked_addresses - self._penalty_cap
        self._probation: OrderedDict[str, _Record] = OrderedDict()
        self._penalty: OrderedDict[str, _Record] = OrderedDict()
        self._failures_total = 0
        self._refusals_total = 0
        self._evictions_total = 0

    # -- the three calls ----------------------------------------------------------------

    def check(self, address: str) -> float:
        """Seconds `address` must still wait before it may log in; 0.0 to go ahead."""
        now = self._clock()
        record = self._penalty.get(address)
        if record is None:
            record = self._probation.get(address)
            if record is not None and self._forgiven(record, now):
                del self._probation[address]
            return 0.0
        wait = record.blocked_until - now
        if wait > 0:
            self._penalty.move_to_end(address)  # a blocked address that keeps trying stays
            self._refusals_total += 1
            return wait
        if self._forgiven(record, now):
            del self._penalty[address]
        return 0.0

    def failed(self, address: str) -> float:
        """Record a failed login; returns the block it starts (0.0 below `max_failures`)."""
        now = self._clock()
        self._failures_total += 1
        record = self._penalty.pop(address, None) or self._probation.pop(address, None)
        if record is None or self._forgiven(record, now):
            record = _Record(now)
        record.failures += 1
        record.last_failure = now
        over = record.failures - self.max_failures
        if over < 0:
            self._insert(self._probation, self._probation_cap, address, record)
            return 0.0
        delay = self.backoff(over)
        record.blocked_until = now + delay
        self._insert(self._penalty, self._penalty_cap, address, record)
        return delay

    def succeeded(self, address: str) -> None:
        """A login from `address` succeeded: forget its failures."""
        self._penalty.pop(address, None)
        self._probation.pop(address, None)

    # -- facts --------------------------------------------------------------------------

    def backoff(self, over: int) -> float:
        """The block after the (max_failures + over)-th failure."""
        doublings = min(over, _MAX_DOUBLINGS)
        return min(self.base_backoff_seconds * 2.0**doublings, self.max_backoff_seconds)

    def stats(self) -> GuardStats:
        return GuardStats(
            tracked=len(self._probation) + len(self._penalty),
            penalized=len(self._penalty),
            failures_total=self._failures_total,
            refusals_total=self._refusals_total,
            evictions_total=self._evictions_total,
        )

    @property
    def capacity(self) -> int:
        return self._probation_cap + self._penalty_cap

    # -- helpers ------------------------------------------------------------------------

    def _forgiven(self, record: _Record, now: float) -> bool:
        return now >= record.blocked_until and now - record.last_failure >= self.window_seconds

    def _insert(
        self, tier: OrderedDict[str, _Record], cap: int, address: str, record: _Record
    ) -> None:
        if len(tier) >= cap:
            tier.popitem(last=False)
            self._evictions_total += 1
        tier[address] = record


def blocked_error(host: str, wait_seconds: float) -> MySQLError:
    """ERR 1129 for a blocked address, saying when it may retry (whole seconds, rounded up).

    MariaDB's text is "Host '%s' is blocked because of many connection errors; unblock with
    'mariadb-admin flush-hosts'"; ours ends by itself, so it says when instead.
    """
    seconds = max(1, int(-(-wait_seconds // 1)))
    message = f"Host '{host}' is blocked because of many connection errors; retry in {seconds} s"
    return MySQLError(ErrorCode.ER_HOST_IS_BLOCKED, message, "HY000")


def blocked_greeting(host: str, wait_seconds: float) -> bytes:
    """The framed ERR 1129 (sequence id 0) to send *instead of* the greeting, as MariaDB does
    for a blocked host: nothing is negotiated yet, so no SQLSTATE marker."""
    return frame(err_from(blocked_error(host, wait_seconds), Capability(0)), 0)
