"""Authentication hardening: constant-time comparisons, and an unknown user that looks, byte
for byte and hash for hash, like a known user with a wrong password.

* Every comparison of a secret goes through `hmac.compare_digest` with equal-length operands
  (a length mismatch returns early and would time the password's length).
* The same user name is tried against two credential stores, one that knows it and one that
  does not: every byte the proxy sends (greeting, AuthSwitchRequest, AuthMoreData, ERR) is
  identical, for each method, with TLS and with RSA, at login and at COM_CHANGE_USER.
* Work: the number of SHA1/SHA256 computations per login is the same for a plaintext user,
  a hash-only user and an unknown one.
* `refuse_instead`: a login decided while its address got blocked is answered with the same
  bytes whether the password was right or wrong.
"""

from __future__ import annotations

import hmac
import random
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from proxy.protocol import auth
from proxy.protocol.auth import (
    CACHING_SHA2_PASSWORD,
    FAST_AUTH_SUCCESS,
    NATIVE_PASSWORD,
    BackendCredential,
    Forbidden,
    StoredCredential,
    caching_sha2_password_server,
    generate_rsa_key,
    native_password_hash,
    sha256,
    verify_caching_sha2,
    verify_native,
)
from proxy.protocol.constants import Capability as C
from proxy.protocol.constants import ErrorCode
from proxy.protocol.errors import LocalProtocolError, MySQLError
from proxy.protocol.framing import PacketFramer, frame
from proxy.protocol.handshake import (
    DEFAULT_CLIENT_CAPABILITIES,
    Authenticated,
    ClientHandshake,
    ClientState,
    Rejected,
    ServerHandshake,
    ServerState,
    TlsRequested,
)
from proxy.protocol.packets import ChangeUser, build_change_user

HOST = "10.0.0.7"
NONCE = bytes(range(1, 21))


class Rng:
    def __init__(self, seed: int = 3) -> None:
        self._random = random.Random(seed)

    def __call__(self, size: int) -> bytes:
        return self._random.randbytes(size)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return generate_rsa_key(2048)


# -- constant-time comparisons -------------------------------------------------------------


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Operand lengths of every hmac.compare_digest call made by proxy.protocol.auth."""
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    return calls


@given(candidate=st.binary(max_size=80))
def test_cleartext_check_compares_fixed_length_digests(candidate: bytes) -> None:
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    plain = StoredCredential.from_password("a-longish-password")
    hashed = StoredCredential.from_native_hash(native_password_hash("a-longish-password"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hmac, "compare_digest", spy)
        assert not plain.matches_cleartext(candidate + b"\x01")
        assert not hashed.matches_cleartext(candidate + b"\x01")
    assert calls and all(a == b for a, b in calls), calls


def test_cleartext_check_still_tells_right_from_wrong() -> None:
    for credential in (
        StoredCredential.from_password("pw"),
        StoredCredential.from_native_hash(native_password_hash("pw")),
    ):
        assert credential.matches_cleartext(b"pw")
        assert not credential.matches_cleartext(b"pw\x00")
        assert not credential.matches_cleartext(b"p")
        assert not credential.matches_cleartext(b"")


def test_scramble_checks_use_compare_digest(compared: list[tuple[int, int]]) -> None:
    stored = StoredCredential.from_password("pw")
    assert verify_native(NONCE, auth.scramble_native(b"pw", NONCE), stored.hash2) is not None
    assert verify_native(NONCE, b"\x00" * 20, stored.hash2) is None
    assert verify_caching_sha2(NONCE, auth.scramble_caching_sha2(b"pw", NONCE), stored.sha2_digest)
    assert not verify_caching_sha2(NONCE, b"\x00" * 32, stored.sha2_digest)
    assert compared == [(20, 20), (20, 20), (32, 32), (32, 32)]


def test_digests_are_computed_once_and_kept_out_of_repr_and_equality() -> None:
    a = StoredCredential.from_password("pw")
    assert a.hash2 == auth.native_hash2(b"pw")
    assert a.sha2_digest == auth.caching_sha2_digest(b"pw")
    assert a == StoredCredential.from_password("pw")
    text = repr(a)
    assert a.hash2.hex() not in text and a.sha2_digest.hex() not in text and "pw" not in text


def test_the_stand_in_digest_never_lets_a_hash_only_user_in_by_the_fast_path() -> None:
    """A hash-only credential keeps SHA256(SHA256(b'')) as a stand-in so that the fast path
    costs the same; a reply crafted to match it must still go to full authentication."""
    hashed = StoredCredential.from_native_hash(native_password_hash("pw"))
    stage1 = sha256(b"")
    crafted = auth._xor(stage1, sha256(hashed.sha2_digest + NONCE))
    assert verify_caching_sha2(NONCE, crafted, hashed.sha2_digest)  # it does match...
    run = caching_sha2_password_server(hashed, NONCE, crafted)
    first = next(run)
    assert first[1:] == auth.PERFORM_FULL_AUTHENTICATION  # ...and is ignored
    assert first[1:] != FAST_AUTH_SUCCESS


# -- an unknown user and a wrong password, byte for byte --------------------------------------

KNOWN = {
    "plaintext": {"alice": StoredCredential.from_password("right-password")},
    "hash": {"alice": StoredCredential.from_native_hash(native_password_hash("right-password"))},
}
NOBODY: dict[str, StoredCredential] = {}


def shuttle(server: ServerHandshake, client: ClientHandshake) -> tuple[bytes, list[Any]]:
    """Run the pair to the end; everything the server sent, and its events."""
    sent = bytearray()
    events: list[Any] = []
    for _ in range(20):
        down = server.data_to_send()
        sent += down
        if down and client.state in (ClientState.AWAIT_HANDSHAKE, ClientState.AUTHENTICATING):
            client.receive_data(down)
        up = client.data_to_send()
        if up and server.state not in (ServerState.DONE, ServerState.REJECTED):
            events += server.receive_data(up)
        if TlsRequested() in events and server.state is ServerState.AWAIT_TLS:
            server.tls_established()
            client.tls_established()
        if not down and not up:
            return bytes(sent), events
    raise AssertionError("the handshake did not finish")


def login(
    store: dict[str, StoredCredential],
    *,
    default: str,
    password: bytes = b"wrong-password",
    tls: bool = False,
    rsa_key: rsa.RSAPrivateKey | None = None,
    client_caps: C = DEFAULT_CLIENT_CAPABILITIES,
) -> tuple[bytes, Rejected]:
    server = ServerHandshake(
        "10.11.6-MariaDB",
        9,
        store.get,
        tls_available=tls,
        default_auth_plugin=default,
        rsa_key=rsa_key,
        client_host=HOST,
        rng=Rng(),
    )
    client = ClientHandshake(
        "alice",
        BackendCredential(password=password),
        tls_possible=tls,
        capabilities=client_caps,
    )
    sent, events = shuttle(server, client)
    rejected = events[-1]
    assert isinstance(rejected, Rejected)
    return sent, rejected


CASES = [
    pytest.param({"default": NATIVE_PASSWORD}, id="native"),
    pytest.param({"default": NATIVE_PASSWORD, "password": b""}, id="native-no-password"),
    pytest.param({"default": CACHING_SHA2_PASSWORD, "tls": True}, id="sha2-full-over-tls"),
    pytest.param({"default": CACHING_SHA2_PASSWORD, "rsa": True}, id="sha2-full-with-rsa"),
    pytest.param({"default": CACHING_SHA2_PASSWORD}, id="sha2-without-tls-or-rsa"),
    pytest.param(
        {"default": CACHING_SHA2_PASSWORD, "password": b"", "tls": True}, id="sha2-no-password"
    ),
]


@pytest.mark.parametrize("form", sorted(KNOWN))
@pytest.mark.parametrize("case", CASES)
def test_unknown_user_and_wrong_password_send_the_same_bytes(
    case: dict[str, Any], form: str, rsa_key: rsa.RSAPrivateKey
) -> None:
    options = dict(case)
    if options.pop("rsa", False):
        options["rsa_key"] = rsa_key
    known_bytes, known = login(KNOWN[form], **options)
    unknown_bytes, unknown = login(NOBODY, **options)
    assert known_bytes == unknown_bytes
    using = "NO" if case.get("password") == b"" else "YES"
    message = f"Access denied for user 'alice'@'{HOST}' (using password: {using})"
    for rejected in (known, unknown):
        assert (rejected.error.code, rejected.error.message, rejected.error.sqlstate) == (
            ErrorCode.ER_ACCESS_DENIED_ERROR,
            message,
            "28000",
        )
    assert known_bytes.endswith(PacketFramer().feed(known_bytes)[-1].payload)
    assert PacketFramer().feed(known_bytes)[-1].payload[:3] == b"\xff\x15\x04"  # ERR 1045


@pytest.mark.parametrize("default", [NATIVE_PASSWORD, CACHING_SHA2_PASSWORD])
def test_a_client_announcing_the_other_method_is_switched_either_way(default: str) -> None:
    """The AuthSwitchRequest depends on the method the client announced, never on the user."""
    other = CACHING_SHA2_PASSWORD if default == NATIVE_PASSWORD else NATIVE_PASSWORD
    server_known = ServerHandshake(
        "v",
        1,
        KNOWN["plaintext"].get,
        default_auth_plugin=other,
        client_host=HOST,
        rng=Rng(),
        tls_available=True,
    )
    server_unknown = ServerHandshake(
        "v",
        1,
        NOBODY.get,
        default_auth_plugin=other,
        client_host=HOST,
        rng=Rng(),
        tls_available=True,
    )
    outputs = []
    for server in (server_known, server_unknown):
        client = ClientHandshake("alice", BackendCredential(password=b"nope"), tls_possible=True)
        sent, _ = shuttle(server, client)
        outputs.append(sent)
    assert outputs[0] == outputs[1]


def change_user(store: dict[str, StoredCredential], user: str) -> bytes:
    """Log in as 'bob' (known in both stores), then COM_CHANGE_USER to `user` with a wrong
    password; the bytes the server sends for the change."""
    base = {"bob": StoredCredential.from_password("bob-pw"), **store}
    server = ServerHandshake("v", 1, base.get, client_host=HOST, rng=Rng())
    client = ClientHandshake("bob", BackendCredential(password=b"bob-pw"))
    shuttle(server, client)
    assert server.state is ServerState.DONE
    change = ChangeUser(user, auth.scramble_native(b"nope", NONCE), "", 45, NATIVE_PASSWORD)
    payload = build_change_user(change, server.negotiated)
    server.begin_change_user(payload)
    switch = server.data_to_send()
    nonce = PacketFramer().feed(switch)[0].payload[-21:-1]
    reply = auth.scramble_native(b"nope", nonce)
    server.receive_data(frame(reply, 2))
    return switch + server.data_to_send()


@pytest.mark.parametrize("form", sorted(KNOWN))
def test_change_user_to_an_unknown_user_looks_like_a_wrong_password(form: str) -> None:
    assert change_user(KNOWN[form], "alice") == change_user(NOBODY, "alice")


# -- the same work ---------------------------------------------------------------------------


@pytest.fixture
def hashing(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    counts: Counter[str] = Counter()

    def counted(name: str, real: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
        def run(data: bytes) -> bytes:
            counts[name] += 1
            return real(data)

        return run

    monkeypatch.setattr(auth, "sha1", counted("sha1", auth.sha1))
    monkeypatch.setattr(auth, "sha256", counted("sha256", auth.sha256))
    yield counts


@pytest.mark.parametrize("case", CASES)
def test_unknown_and_known_users_hash_the_same_amount(
    case: dict[str, Any], rsa_key: rsa.RSAPrivateKey, hashing: Counter[str]
) -> None:
    options = dict(case)
    if options.pop("rsa", False):
        options["rsa_key"] = rsa_key
    work = {}
    for name, store in (*KNOWN.items(), ("unknown", NOBODY)):
        hashing.clear()
        login(store, **options)
        work[name] = dict(hashing)
    assert work["plaintext"] == work["hash"] == work["unknown"], work


def test_a_known_user_is_still_refused_for_the_reason_it_failed() -> None:
    """The log reason differs (it never reaches the client): operators can tell them apart."""
    _, known = login(KNOWN["plaintext"], default=NATIVE_PASSWORD)
    _, unknown = login(NOBODY, default=NATIVE_PASSWORD)
    assert known.reason == "wrong password" and unknown.reason == "unknown user"
    assert isinstance(Forbidden("x"), Forbidden)


# -- refuse_instead: a verdict that must not be revealed ---------------------------------------


def decided(password: bytes) -> tuple[ServerHandshake, list[Any]]:
    server = ServerHandshake(
        "v", 1, KNOWN["plaintext"].get, client_host=HOST, rng=Rng(), auto_ok=False
    )
    client = ClientHandshake("alice", BackendCredential(password=password))
    client.receive_data(server.data_to_send())
    return server, server.receive_data(client.data_to_send())


BLOCKED = MySQLError(ErrorCode.ER_HOST_IS_BLOCKED, "Host 'h' is blocked", "HY000")


def test_refuse_instead_hides_whether_the_password_was_right() -> None:
    right, right_events = decided(b"right-password")
    wrong, wrong_events = decided(b"wrong-password")
    assert isinstance(right_events[-1], Authenticated)
    assert isinstance(wrong_events[-1], Rejected)
    right.refuse_instead(BLOCKED)
    wrong.refuse_instead(BLOCKED)
    sent = right.data_to_send()
    assert sent == wrong.data_to_send()
    (err,) = PacketFramer().feed(sent)
    assert err.seq == 2 and err.payload[:3] == b"\xff\x69\x04"
    assert right.state is wrong.state is ServerState.REJECTED


def test_refuse_instead_needs_a_finished_login_whose_answer_is_still_queued() -> None:
    wrong, _ = decided(b"wrong-password")
    wrong.data_to_send()
    with pytest.raises(LocalProtocolError):
        wrong.refuse_instead(BLOCKED)
    fresh = ServerHandshake("v", 1, NOBODY.get)
    with pytest.raises(LocalProtocolError):
        fresh.refuse_instead(BLOCKED)
