"""What one hostile connection sends: `FuzzInput`, and the generators that make them.

Theory of operation
-------------------
A `FuzzInput` is a recipe, not bytes: a mutated HandshakeResponse41 needs the nonce of the
greeting the proxy sends at run time, so `Login` parts are built (then mutated) by the
player in `client.py`. Everything else is bytes decided here.

Every random decision goes through a `Chooser`. `RandomChooser` wraps `random.Random` (the
long run: fast, seeded, reproducible per worker); `HypothesisChooser` wraps hypothesis'
`data.draw`, so a failing example shrinks towards fewer parts, shorter payloads and
smaller numbers. The generators therefore exist once and serve both.

Families (`FAMILIES`), each a function of a chooser:

- ``pre_raw``: random bytes, or random packet headers (lying lengths, any sequence id) with
  random payloads, before any login.
- ``pre_login``: a HandshakeResponse41 for a real or unknown user, right or wrong password,
  odd capability bits (SSL without TLS, compression, no PROTOCOL_41), then byte-level
  mutations (flip, insert, delete, truncate, rewrite the length header or sequence id),
  sometimes followed by early command bytes.
- ``commands``: a valid login, then one to four command packets: every command byte with a
  random payload, statements from a small safe corpus (mutated or not), COM_STMT_* with
  bad ids, flags and parameter blocks, COM_CHANGE_USER garbage, and framing faults (sequence
  id jumps, declared lengths longer or shorter than the payload, lengths over
  max_allowed_packet, empty packets, truncation).
- ``half_close``: like ``commands`` or ``pre_raw``, with `shutdown(SHUT_WR)` at a random
  point (the proxy sees EOF in the middle of whatever it was reading).

What is never generated: statements that sleep or wait by design, writes to permanent
tables, DDL other than temporary tables, and KILL of small connection ids (in a concurrent
run that could be another worker's session or the liveness probe).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from proxy.protocol.constants import Capability, Command
from proxy.protocol.framing import frame

T = TypeVar("T")

# The fuzzed proxy runs with a small max_allowed_packet, so that "too large" is cheap to hit.
FUZZ_MAX_ALLOWED_PACKET: Final = 64 * 1024


class Chooser(Protocol):
    def integer(self, low: int, high: int) -> int: ...
    def binary(self, max_size: int) -> bytes: ...
    def choice(self, items: Sequence[T]) -> T: ...


class RandomChooser:
    """Choices from a seeded `random.Random` (the long run)."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def binary(self, max_size: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, max_size))

    def choice(self, items: Sequence[T]) -> T:
        return items[self.rng.randrange(len(items))]


class HypothesisChooser:
    """Choices drawn from hypothesis' `st.data()`, so that failures shrink."""

    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self._st = st
        self.data = data

    def integer(self, low: int, high: int) -> int:
        return int(self.data.draw(self._st.integers(low, high)))

    def binary(self, max_size: int) -> bytes:
        return bytes(self.data.draw(self._st.binary(max_size=max_size)))

    def choice(self, items: Sequence[T]) -> T:
        return items[self.integer(0, len(items) - 1)]


# -- parts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """Bytes sent as they are."""

    data: bytes


@dataclass(frozen=True)
class Login:
    """A HandshakeResponse41 (sequence id 1) built against the greeting, then mutated."""

    user: str = "app"
    password: str = "app-password"
    database: str | None = "app"
    caps_xor: int = 0
    plugin: str | None = "mysql_native_password"
    attrs: tuple[tuple[str, str], ...] = ()
    mutations: tuple[Mutation, ...] = ()


@dataclass(frozen=True)
class HalfClose:
    """`shutdown(SHUT_WR)`: the proxy reads EOF here; nothing more is sent."""


Part = Raw | Login | HalfClose


@dataclass(frozen=True)
class Mutation:
    """One byte-level edit of a packet's wire bytes (header included); positions wrap."""

    kind: str  # flip | insert | delete | truncate | length | seq
    position: int = 0
    value: int = 0
    data: bytes = b""

    def apply(self, wire: bytes) -> bytes:
        size = len(wire)
        at = self.position % (size + 1)
        if self.kind == "flip" and size:
            at %= size
            return wire[:at] + bytes((self.value & 0xFF,)) + wire[at + 1 :]
        if self.kind == "insert":
            return wire[:at] + self.data + wire[at:]
        if self.kind == "delete":
            return wire[:at] + wire[at + 1 + self.value % 8 :]
        if self.kind == "truncate":
            return wire[:at]
        if self.kind == "length" and size >= 4:
            return (self.value & 0xFFFFFF).to_bytes(3, "little") + wire[3:]
        if self.kind == "seq" and size >= 4:
            return wire[:3] + bytes((self.value & 0xFF,)) + wire[4:]
        return wire


@dataclass(frozen=True)
class FuzzInput:
    """One connection's worth of hostility. `login`: log in validly before `parts`."""

    family: str
    login: bool
    parts: tuple[Part, ...] = field(default_factory=tuple)

    @property
    def half_closes(self) -> bool:
        return any(isinstance(p, HalfClose) for p in self.parts)


# -- building blocks -------------------------------------------------------------------------

SAFE_SQL: Final[tuple[bytes, ...]] = (
    b"SELECT 1",
    b"SELECT @@server_id, @@read_only",
    b"SELECT CONNECTION_ID()",
    b"SELECT * FROM seq_1_to_200",
    b"SELECT REPEAT('x', 70000)",
    b"SELECT 1; SELECT 2",
    b"SELECT 1 FROM DUAL WHERE 1 = 0",
    b"SELECT * FROM app.no_such_table",
    b"/* rwproxy:primary */ SELECT 1",
    b"/*!50000 SELECT 1 */",
    b"BEGIN",
    b"START TRANSACTION READ ONLY",
    b"COMMIT",
    b"ROLLBACK",
    b"SET autocommit = 0",
    b"SET autocommit = 1",
    b"SET @fuzz = 1",
    b"SET @fuzz = (SELECT 2)",
    b"SET NAMES latin1",
    b"SET sql_mode = 'ANSI'",
    b"USE app",
    b"USE no_such_db",
    b"CREATE TEMPORARY TABLE fuzz_tmp (a INT)",
    b"INSERT INTO fuzz_tmp VALUES (1), (2)",
    b"SELECT * FROM fuzz_tmp",
    b"SELECT GET_LOCK('rwfuzz', 0)",
    b"SELECT RELEASE_LOCK('rwfuzz')",
    b"PREPARE s FROM 'SELECT 1'",
    b"EXECUTE s",
    b"LOAD DATA LOCAL INFILE '/nonexistent' INTO TABLE fuzz_tmp",
    b"SHOW RWPROXY STATUS",
    b"SHOW RWPROXY ROUTE SELECT 1",
    b"SHOW RWPROXY ROUTE",
    b"KILL QUERY 4000000000",
    b"KILL",
    b"DO 1",
    b"CALL no_such_procedure()",
    b"XA START 'rwfuzz'",
    b"",
)
PREPARED_SQL: Final = (b"SELECT ?", b"SELECT ? + ?", b"INSERT INTO fuzz_tmp VALUES (?)")
STMT_COMMANDS: Final = (
    Command.COM_STMT_EXECUTE,
    Command.COM_STMT_SEND_LONG_DATA,
    Command.COM_STMT_CLOSE,
    Command.COM_STMT_RESET,
    Command.COM_STMT_FETCH,
)
_CAP_BITS: Final = (
    Capability.CLIENT_SSL,
    Capability.CLIENT_COMPRESS,
    Capability.CLIENT_PROTOCOL_41,
    Capability.CLIENT_PLUGIN_AUTH,
    Capability.CLIENT_CONNECT_WITH_DB,
    Capability.CLIENT_CONNECT_ATTRS,
    Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
    Capability.CLIENT_SECURE_CONNECTION,
    Capability.CLIENT_DEPRECATE_EOF,
    Capability.CLIENT_MULTI_STATEMENTS,
    Capability.CLIENT_ZSTD_COMPRESSION_ALGORITHM,
)


def header(length: int, seq: int) -> bytes:
    return (length & 0xFFFFFF).to_bytes(3, "little") + bytes((seq & 0xFF,))


def mutation(choose: Chooser) -> Mutation:
    kind = choose.choice(("flip", "insert", "delete", "truncate", "length", "seq"))
    value = choose.integer(0, 0xFFFFFF) if kind == "length" else choose.integer(0, 255)
    data = choose.binary(16) if kind == "insert" else b""
    return Mutation(kind, choose.integer(0, 4096), value, data)


def mutations(choose: Chooser, most: int = 4) -> tuple[Mutation, ...]:
    return tuple(mutation(choose) for _ in range(choose.integer(0, most)))


def mutate_bytes(data: bytes, edits: Sequence[Mutation]) -> bytes:
    for edit in edits:
        data = edit.apply(data)
    return data


# -- families --------------------------------------------------------------------------------


def pre_raw(choose: Chooser) -> FuzzInput:
    parts: list[Part] = []
    for _ in range(choose.integer(1, 3)):
        if choose.integer(0, 1):
            parts.append(Raw(choose.binary(64)))
        else:
            payload = choose.binary(48)
            length = choose.choice((len(payload), choose.integer(0, 0xFFFFFF)))
            parts.append(Raw(header(length, choose.integer(0, 255)) + payload))
    return FuzzInput("pre_raw", login=False, parts=tuple(parts))


def login_part(choose: Chooser) -> Login:
    user = choose.choice(("app", "app", "nobody", "", "admin", "x" * 300))
    password = choose.choice(("app-password", "wrong", ""))
    caps = 0
    for _ in range(choose.integer(0, 2)):
        caps ^= int(choose.choice(_CAP_BITS))
    attrs = tuple((f"k{i}", "v" * choose.integer(0, 300)) for i in range(choose.integer(0, 2)))
    return Login(
        user=user,
        password=password,
        database=choose.choice(("app", None, "no_such_db", "")),
        caps_xor=caps,
        plugin=choose.choice(("mysql_native_password", "caching_sha2_password", None, "x")),
        attrs=attrs,
        mutations=mutations(choose),
    )


def pre_login(choose: Chooser) -> FuzzInput:
    parts: list[Part] = [login_part(choose)]
    if choose.integer(0, 3) == 0:
        parts.append(Raw(command(choose)))  # early command bytes right behind the login
    return FuzzInput("pre_login", login=False, parts=tuple(parts))


def query_payload(choose: Chooser) -> bytes:
    sql = choose.choice(SAFE_SQL)
    if choose.integer(0, 2) == 0:
        sql = mutate_bytes(sql, mutations(choose, 2))
    return bytes((Command.COM_QUERY,)) + sql


def stmt_payload(choose: Chooser) -> bytes:
    if choose.integer(0, 3) == 0:
        return bytes((Command.COM_STMT_PREPARE,)) + choose.choice(PREPARED_SQL)
    code = choose.choice(STMT_COMMANDS)
    stmt_id = choose.choice((0, 1, 2, choose.integer(0, 0xFFFFFFFF)))
    body = stmt_id.to_bytes(4, "little")
    if code == Command.COM_STMT_EXECUTE:
        body += bytes((choose.integer(0, 255),)) + (1).to_bytes(4, "little")
    return bytes((code,)) + body + choose.binary(24)


def any_command_payload(choose: Chooser) -> bytes:
    code = choose.integer(0, 255)
    if code == Command.COM_PROCESS_KILL:
        return bytes((code,)) + choose.integer(1_000_000_000, 0xFFFFFFFF).to_bytes(4, "little")
    if code == Command.COM_SHUTDOWN and choose.integer(0, 1):
        return bytes((code, 0))
    return bytes((code,)) + choose.binary(32)


def payload(choose: Chooser) -> bytes:
    maker: Callable[[Chooser], bytes] = choose.choice(
        (query_payload, query_payload, stmt_payload, any_command_payload)
    )
    return maker(choose)


def command(choose: Chooser) -> bytes:
    """One command on the wire: usually well framed, sometimes not."""
    body = payload(choose)
    fault = choose.integer(0, 9)
    if fault == 0:  # sequence id jump
        return header(len(body), choose.integer(1, 255)) + body
    if fault == 1:  # declared longer than sent: what follows is swallowed into it
        return header(len(body) + choose.integer(1, 64), 0) + body
    if fault == 2:  # declared shorter: the rest is read as the next packet's header
        return header(max(0, len(body) - choose.integer(1, 8)), 0) + body
    if fault == 3:  # over max_allowed_packet (or a 16 MiB continuation start)
        huge = choose.choice((FUZZ_MAX_ALLOWED_PACKET + 1, 0xFFFFFF, choose.integer(1, 0xFFFFFF)))
        return header(huge, 0) + body
    if fault == 4:  # empty packet
        return header(0, 0)
    if fault == 5:  # truncated on the wire
        wire = frame(body, 0)
        return wire[: choose.integer(0, len(wire) - 1)]
    return frame(body, 0)


def commands(choose: Chooser) -> FuzzInput:
    parts = tuple(Raw(command(choose)) for _ in range(choose.integer(1, 4)))
    return FuzzInput("commands", login=True, parts=parts)


def half_close(choose: Chooser) -> FuzzInput:
    base = choose.choice((commands, commands, pre_raw, pre_login))(choose)
    cut = choose.integer(0, len(base.parts))
    return FuzzInput("half_close", base.login, (*base.parts[:cut], HalfClose()))


FAMILIES: Final[dict[str, Callable[[Chooser], FuzzInput]]] = {
    "pre_raw": pre_raw,
    "pre_login": pre_login,
    "commands": commands,
    "half_close": half_close,
}
# The long run's mix: mostly after login, where the proxy does the most.
WEIGHTS: Final = (("pre_raw", 2), ("pre_login", 3), ("commands", 4), ("half_close", 1))


def any_input(choose: Chooser) -> FuzzInput:
    families = [name for name, weight in WEIGHTS for _ in range(weight)]
    return FAMILIES[choose.choice(families)](choose)
