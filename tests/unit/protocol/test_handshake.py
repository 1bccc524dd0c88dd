"""proxy/protocol/handshake.py: ServerHandshake and ClientHandshake, in memory.

* Pairs: our ClientHandshake logs in to our ServerHandshake (h11's ConnectionPair), each
  exchange fed three ways (whole, byte by byte, with trailing bytes left buffered).
* Scripted servers: ClientHandshake against the byte-level caching_sha2_password exchanges of
  go-sql-driver/mysql's auth_test.go (the MySQL docs give these exchanges only as diagrams).
* Refusals and garbage: the server side always answers with a clean ERR, never an exception;
  hypothesis feeds it random and mutated bytes in random splits.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy.protocol.auth import (
    CACHING_SHA2_PASSWORD,
    CLIENT_PLUGINS,
    NATIVE_PASSWORD,
    BackendCredential,
    StoredCredential,
    generate_rsa_key,
    native_password_hash,
    public_key_pem,
    scramble_caching_sha2,
    scramble_native,
    sha1,
)
from proxy.protocol.constants import Capability as C
from proxy.protocol.constants import CharacterSet, ErrorCode, ServerStatus
from proxy.protocol.errors import LocalProtocolError, MySQLError, RemoteProtocolError
from proxy.protocol.framing import Packet, PacketFramer, frame
from proxy.protocol.handshake import (
    DEFAULT_CLIENT_CAPABILITIES,
    DEFAULT_SERVER_CAPABILITIES,
    MAX_LOGIN_PACKET_SIZE,
    Authenticated,
    ClientHandshake,
    ClientState,
    Failed,
    Ready,
    Rejected,
    ServerHandshake,
    ServerState,
    TlsRequested,
)
from proxy.protocol.packets import (
    ChangeUser,
    HandshakeResponse41,
    HandshakeV10,
    SslRequest,
    build_change_user,
    build_handshake_response,
    build_handshake_v10,
    build_ssl_request,
    parse_err,
    parse_handshake_response,
    parse_handshake_v10,
)
from tests.unit.protocol.test_auth import GO_DRIVER_PUBLIC_KEY

VERSION = "10.11.6-MariaDB-log"
HOST = "10.0.0.7"


class Rng:
    """Deterministic stand-in for os.urandom."""

    def __init__(self, seed: int = 1) -> None:
        self._random = random.Random(seed)

    def __call__(self, size: int) -> bytes:
        return self._random.randbytes(size)


USERS: dict[str, StoredCredential] = {
    "plain": StoredCredential.from_password("pw"),
    "hashed": StoredCredential.from_native_hash(native_password_hash("pw")),
    "empty": StoredCredential.from_password(""),
    "sha2user": StoredCredential.from_password("pw", auth_plugin=CACHING_SHA2_PASSWORD),
    "nativeuser": StoredCredential.from_password("pw", auth_plugin=NATIVE_PASSWORD),
}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return generate_rsa_key(2048)


def make_server(**kwargs: Any) -> ServerHandshake:
    options: dict[str, Any] = {"client_host": HOST, "rng": Rng(7)}
    options.update(kwargs)
    return ServerHandshake(VERSION, 42, USERS.get, **options)


def make_client(user: str = "plain", password: bytes = b"pw", **kwargs: Any) -> ClientHandshake:
    return ClientHandshake(user, BackendCredential(password=password), **kwargs)


Feed = Callable[[Any, bytes], list[Any]]


def feed_whole(machine: Any, data: bytes) -> list[Any]:
    return list(machine.receive_data(data)) if data else []


def feed_bytewise(machine: Any, data: bytes) -> list[Any]:
    events: list[Any] = []
    for i in range(len(data)):
        events += machine.receive_data(data[i : i + 1])
    return events


FEEDS = {"whole": feed_whole, "bytewise": feed_bytewise}


@dataclass
class Transcript:
    server_events: list[Any] = field(default_factory=list)
    client_events: list[Any] = field(default_factory=list)
    to_client: list[Packet] = field(default_factory=list)
    to_server: list[Packet] = field(default_factory=list)

    @property
    def server_result(self) -> Any:
        return [e for e in self.server_events if not isinstance(e, TlsRequested)][-1]

    @property
    def client_result(self) -> Any:
        return [e for e in self.client_events if not isinstance(e, TlsRequested)][-1]


def run_pair(
    server: ServerHandshake, client: ClientHandshake, feed: Feed = feed_whole
) -> Transcript:
    """Shuttle bytes until neither side has anything to say; 'TLS' is calling tls_established."""
    t = Transcript()
    for _ in range(20):
        down = server.data_to_send()
        t.to_client += PacketFramer().feed(down)
        if down and client.state in (ClientState.AWAIT_HANDSHAKE, ClientState.AUTHENTICATING):
            t.client_events += feed(client, down)
        up = client.data_to_send()
        t.to_server += PacketFramer().feed(up)
        if up and server.state not in (ServerState.DONE, ServerState.REJECTED):
            t.server_events += feed(server, up)
        if TlsRequested() in t.server_events and server.state is ServerState.AWAIT_TLS:
            server.tls_established()
            client.tls_established()
        if not down and not up:
            return t
    raise AssertionError("the handshake did not finish")


# -- the greeting ---------------------------------------------------------------------------


def test_greeting() -> None:
    server = make_server()
    (packet,) = PacketFramer().feed(server.data_to_send())
    assert packet.seq == 0
    greeting = parse_handshake_v10(packet.payload)
    assert greeting.server_version == VERSION
    assert greeting.connection_id == 42
    assert len(greeting.auth_plugin_data) == 20 and b"\x00" not in greeting.auth_plugin_data
    assert greeting.capabilities == DEFAULT_SERVER_CAPABILITIES
    assert not greeting.capabilities & C.CLIENT_SSL
    assert greeting.auth_plugin_name == NATIVE_PASSWORD
    assert greeting.status == ServerStatus.SERVER_STATUS_AUTOCOMMIT
    assert server.data_to_send() == b""


def test_greeting_offers_tls_only_when_available() -> None:
    server = make_server(tls_available=True, default_auth_plugin=CACHING_SHA2_PASSWORD)
    greeting = parse_handshake_v10(PacketFramer().feed(server.data_to_send())[0].payload)
    assert greeting.capabilities & C.CLIENT_SSL
    assert greeting.auth_plugin_name == CACHING_SHA2_PASSWORD


def test_unsupported_default_plugin() -> None:
    with pytest.raises(LocalProtocolError):
        make_server(default_auth_plugin="auth_gssapi")


# -- pairs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("feed", FEEDS.values(), ids=FEEDS.keys())
def test_native_with_password(feed: Feed) -> None:
    server, client = make_server(), make_client(database="appdb", connect_attrs={"a": "b"})
    t = run_pair(server, client, feed)
    auth = t.server_result
    assert isinstance(auth, Authenticated)
    assert (auth.username, auth.database, auth.connect_attrs) == ("plain", "appdb", {"a": "b"})
    assert auth.backend_credential == BackendCredential(password=b"pw")
    assert auth.auth_plugin_name == NATIVE_PASSWORD and not auth.tls
    assert auth.capabilities == client.negotiated & server.capabilities
    ready = t.client_result
    assert isinstance(ready, Ready)
    assert (ready.server_version, ready.connection_id) == (VERSION, 42)
    assert ready.status == ServerStatus.SERVER_STATUS_AUTOCOMMIT
    assert [p.seq for p in t.to_client] == [0, 2] and [p.seq for p in t.to_server] == [1]
    assert server.state is ServerState.DONE and client.state is ClientState.READY


def test_native_with_stored_hash_and_the_recovered_hash1_logs_in() -> None:
    t = run_pair(make_server(), make_client("hashed"))
    auth = t.server_result
    assert isinstance(auth, Authenticated)
    assert auth.backend_credential == BackendCredential(hash1=sha1(b"pw"))
    # The proxy now logs in to a (native) backend with SHA1(pw) only.
    backend = ClientHandshake("hashed", auth.backend_credential)
    assert isinstance(run_pair(make_server(rng=Rng(99)), backend).server_result, Authenticated)


def test_hash1_credential_answers_caching_sha2_greeting_with_native() -> None:
    server = make_server(default_auth_plugin=CACHING_SHA2_PASSWORD)
    client = ClientHandshake("nativeuser", BackendCredential(hash1=sha1(b"pw")))
    t = run_pair(server, client)
    assert isinstance(t.server_result, Authenticated)
    assert isinstance(t.client_result, Ready)


def test_hash1_credential_cannot_do_caching_sha2() -> None:
    server = make_server()
    client = ClientHandshake("sha2user", BackendCredential(hash1=sha1(b"pw")))
    t = run_pair(server, client)
    failed = t.client_result
    assert isinstance(failed, Failed)
    assert failed.error.code == ErrorCode.CR_AUTH_PLUGIN_ERR


@pytest.mark.parametrize("feed", FEEDS.values(), ids=FEEDS.keys())
def test_caching_sha2_fast_path(feed: Feed) -> None:
    server = make_server(default_auth_plugin=CACHING_SHA2_PASSWORD)
    t = run_pair(server, make_client(), feed)
    assert isinstance(t.server_result, Authenticated)
    assert t.server_result.backend_credential == BackendCredential(password=b"pw")
    assert isinstance(t.client_result, Ready)
    # fast_auth_success (AuthMoreData 0x03) at seq 2, then the OK at seq 3.
    assert [(p.seq, p.payload[:2]) for p in t.to_client[1:]] == [(2, b"\x01\x03"), (3, b"\x00\x00")]


@pytest.mark.parametrize("feed", FEEDS.values(), ids=FEEDS.keys())
def test_caching_sha2_full_over_tls(feed: Feed) -> None:
    server = make_server(default_auth_plugin=CACHING_SHA2_PASSWORD, tls_available=True)
    client = make_client("hashed", tls_possible=True)
    t = run_pair(server, client, feed)
    assert TlsRequested() in t.server_events and TlsRequested() in t.client_events
    auth = t.server_result
    assert isinstance(auth, Authenticated) and auth.tls
    assert auth.backend_credential == BackendCredential(password=b"pw")
    assert auth.capabilities & C.CLIENT_SSL
    assert isinstance(t.client_result, Ready)
    # SSLRequest 1, response 2, perform_full_authentication 3, cleartext 4, OK 5.
    assert [p.seq for p in t.to_server] == [1, 2, 4]
    ssl = SslRequest(client.negotiated, 16 * 1024 * 1024, CharacterSet.UTF8MB4_GENERAL_CI)
    assert t.to_server[0].payload == build_ssl_request(ssl)
    assert t.to_server[2].payload == b"pw\x00"
    assert [p.seq for p in t.to_client] == [0, 3, 5]


@pytest.mark.parametrize("feed", FEEDS.values(), ids=FEEDS.keys())
def test_caching_sha2_full_with_rsa(rsa_key: rsa.RSAPrivateKey, feed: Feed) -> None:
    server = make_server(default_auth_plugin=CACHING_SHA2_PASSWORD, rsa_key=rsa_key)
    t = run_pair(server, make_client("hashed"), feed)
    assert isinstance(t.server_result, Authenticated)
    assert t.server_result.backend_credential == BackendCredential(password=b"pw")
    assert isinstance(t.client_result, Ready)
    assert t.to_server[1].payload == b"\x02"  # request_public_key
    assert t.to_client[2].payload == b"\x01" + public_key_pem(rsa_key)
    assert len(t.to_server[2].payload) == 256


def test_caching_sha2_with_known_public_key(rsa_key: rsa.RSAPrivateKey) -> None:
    server = make_server(default_auth_plugin=CACHING_SHA2_PASSWORD, rsa_key=rsa_key)
    client = make_client("hashed", server_public_key=public_key_pem(rsa_key))
    t = run_pair(server, client)
    assert isinstance(t.client_result, Ready)
    assert len(t.to_server) == 2  # response, then the encrypted password straight away


def test_empty_password() -> None:
    t = run_pair(make_server(), make_client("empty", b""))
    assert t.server_result.backend_credential == BackendCredential(password=b"")
    assert isinstance(t.client_result, Ready)


def access_denied(user: str, using: str = "YES") -> str:
    return f"Access denied for user '{user}'@'{HOST}' (using password: {using})"


@pytest.mark.parametrize("plugin", [NATIVE_PASSWORD, CACHING_SHA2_PASSWORD])
def test_wrong_password_and_unknown_user_look_the_same(
    rsa_key: rsa.RSAPrivateKey, plugin: str
) -> None:
    wrong = run_pair(
        make_server(default_auth_plugin=plugin, rsa_key=rsa_key), make_client("plain", b"nope")
    )
    unknown = run_pair(
        make_server(default_auth_plugin=plugin, rsa_key=rsa_key), make_client("nobody", b"nope")
    )
    for t, user in ((wrong, "plain"), (unknown, "nobody")):
        rejected, failed = t.server_result, t.client_result
        assert isinstance(rejected, Rejected) and isinstance(failed, Failed)
        assert rejected.error.code == failed.error.code == ErrorCode.ER_ACCESS_DENIED_ERROR
        assert rejected.error.message == failed.error.message == access_denied(user)
        assert failed.error.sqlstate == "28000"
    shape = [
        [(p.seq, p.payload[:1], len(p.payload)) for p in t.to_client[1:-1]]
        for t in (wrong, unknown)
    ]
    assert shape[0] == shape[1]
    assert [p.seq for p in wrong.to_server] == [p.seq for p in unknown.to_server]
    assert "unknown user" in unknown.server_result.reason


def test_missing_password() -> None:
    t = run_pair(make_server(), make_client("plain", b""))
    assert t.server_result.error.message == access_denied("plain", "NO")


@pytest.mark.parametrize(
    ("default", "user", "switched_to"),
    [
        (NATIVE_PASSWORD, "sha2user", CACHING_SHA2_PASSWORD),
        (CACHING_SHA2_PASSWORD, "nativeuser", NATIVE_PASSWORD),
    ],
)
def test_auth_switch_both_directions(default: str, user: str, switched_to: str) -> None:
    t = run_pair(make_server(default_auth_plugin=default), make_client(user))
    auth = t.server_result
    assert isinstance(auth, Authenticated) and auth.auth_plugin_name == switched_to
    switch = t.to_client[1]
    assert switch.seq == 2 and switch.payload.startswith(b"\xfe" + switched_to.encode() + b"\x00")
    assert len(switch.payload) == 1 + len(switched_to) + 1 + 20 + 1
    assert isinstance(t.client_result, Ready)


def test_client_plugin_the_proxy_does_not_know_is_switched() -> None:
    server = make_server()
    server.data_to_send()
    response = HandshakeResponse41(
        DEFAULT_CLIENT_CAPABILITIES, 0, 45, "plain", b"gss-token", None, "auth_gssapi_client"
    )
    assert server.receive_data(frame(build_handshake_response(response), 1)) == []
    (switch,) = PacketFramer().feed(server.data_to_send())
    assert switch.payload.startswith(b"\xfemysql_native_password\x00")
    nonce = switch.payload[-21:-1]
    (event,) = server.receive_data(frame(scramble_native(b"pw", nonce), 3))
    assert isinstance(event, Authenticated)


def test_client_without_plugin_auth_cannot_be_switched() -> None:
    server = make_server(default_auth_plugin=CACHING_SHA2_PASSWORD)
    server.data_to_send()
    caps = DEFAULT_CLIENT_CAPABILITIES & ~C.CLIENT_PLUGIN_AUTH
    response = HandshakeResponse41(caps, 0, 45, "plain", b"x" * 20)
    (event,) = server.receive_data(frame(build_handshake_response(response), 1))
    assert isinstance(event, Rejected)
    assert event.error.code == ErrorCode.ER_NOT_SUPPORTED_AUTH_MODE


def test_auto_ok_false_lets_the_caller_decide() -> None:
    server = make_server(auto_ok=False)
    client = make_client()
    client.receive_data(server.data_to_send())
    (event,) = server.receive_data(client.data_to_send())
    assert isinstance(event, Authenticated) and server.state is ServerState.AWAIT_DECISION
    assert server.data_to_send() == b""
    server.accept(ServerStatus.SERVER_STATUS_AUTOCOMMIT | ServerStatus.SERVER_STATUS_IN_TRANS)
    (ready,) = client.receive_data(server.data_to_send())
    assert isinstance(ready, Ready) and ready.status & ServerStatus.SERVER_STATUS_IN_TRANS
    with pytest.raises(LocalProtocolError):
        server.accept()


def test_auto_ok_false_reject() -> None:
    server = make_server(auto_ok=False)
    client = make_client(database="nope")
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    server.reject(MySQLError(ErrorCode.ER_BAD_DB_ERROR, "Unknown database 'nope'"))
    (failed,) = client.receive_data(server.data_to_send())
    assert isinstance(failed, Failed) and failed.error.code == ErrorCode.ER_BAD_DB_ERROR
    assert server.state is ServerState.REJECTED


def test_unsupported_per_user_plugin_is_our_bug() -> None:
    users = {"odd": StoredCredential.from_password("pw", auth_plugin="dialog")}
    server = ServerHandshake(VERSION, 1, users.get, rng=Rng())
    client = make_client("odd")
    client.receive_data(server.data_to_send())
    with pytest.raises(LocalProtocolError):
        server.receive_data(client.data_to_send())


def test_client_plugin_must_answer_the_challenge(monkeypatch: pytest.MonkeyPatch) -> None:
    def silent(*args: Any, **kwargs: Any) -> Any:
        yield None

    monkeypatch.setitem(CLIENT_PLUGINS, NATIVE_PASSWORD, silent)
    client = make_client()
    with pytest.raises(LocalProtocolError):
        client.receive_data(make_server().data_to_send())


def test_login_packets_are_capped_whatever_max_allowed_packet_says() -> None:
    """Before a client proved who it is, it cannot make the proxy buffer more than
    MAX_LOGIN_PACKET_SIZE, even with a 64 MiB max_allowed_packet."""
    server = make_server(max_packet_size=64 * 1024 * 1024)
    server.data_to_send()
    announced = (MAX_LOGIN_PACKET_SIZE + 1).to_bytes(3, "little") + b"\x01"
    (event,) = server.receive_data(announced)  # refused on the header, nothing buffered
    assert isinstance(event, Rejected) and event.error.code == ErrorCode.ER_HANDSHAKE_ERROR


def test_connection_attributes_up_to_64_kib_log_in() -> None:
    attrs = {"big": "x" * 65000}
    server = make_server(max_packet_size=64 * 1024 * 1024)
    t = run_pair(server, make_client(connect_attrs=attrs))
    assert isinstance(t.server_result, Authenticated)
    assert t.server_result.connect_attrs == attrs


def test_packets_larger_than_the_limit_are_refused() -> None:
    server = make_server()
    client = make_client(connect_attrs={"big": "x" * 200_000})
    t = run_pair(server, client)
    assert isinstance(t.server_result, Rejected)
    assert isinstance(t.client_result, Failed)  # the ERR carries the id the client expects


# -- trailing data ------------------------------------------------------------------------


def test_bytes_after_sslrequest_are_left_for_tls() -> None:
    server = make_server(tls_available=True)
    client = make_client(tls_possible=True)
    (tls,) = client.receive_data(server.data_to_send())
    assert tls == TlsRequested()
    client_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
    assert server.receive_data(client.data_to_send() + client_hello) == [TlsRequested()]
    assert server.trailing_data == client_hello
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"more")
    server.tls_established()
    client.tls_established()
    assert server.trailing_data == b""
    (auth,) = server.receive_data(client.data_to_send())
    assert isinstance(auth, Authenticated) and auth.tls


def test_bytes_after_the_handshake_stay_buffered() -> None:
    server, client = make_server(), make_client()
    client.receive_data(server.data_to_send())
    early_query = frame(b"\x03select 1", 0)
    (auth,) = server.receive_data(client.data_to_send() + early_query)
    assert isinstance(auth, Authenticated)
    assert server.trailing_data == early_query
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"x")
    ok_and_more = server.data_to_send() + b"\x01\x00\x00\x01\x00"
    (ready,) = client.receive_data(ok_and_more)
    assert isinstance(ready, Ready) and client.trailing_data == b"\x01\x00\x00\x01\x00"


# -- COM_CHANGE_USER ------------------------------------------------------------------------


def logged_in_server() -> tuple[ServerHandshake, Authenticated]:
    server = make_server()
    t = run_pair(server, make_client())
    assert isinstance(t.server_result, Authenticated)
    return server, t.server_result


def test_change_user_restarts_with_an_auth_switch() -> None:
    server, first = logged_in_server()
    change = ChangeUser("hashed", b"\x00" * 20, "other", 33, NATIVE_PASSWORD, {"k": "v"})
    assert server.begin_change_user(build_change_user(change, first.capabilities)) == []
    (switch,) = PacketFramer().feed(server.data_to_send())
    assert switch.seq == 1 and switch.payload.startswith(b"\xfemysql_native_password\x00")
    nonce = switch.payload[-21:-1]
    (auth,) = server.receive_data(frame(scramble_native(b"pw", nonce), 2))
    assert isinstance(auth, Authenticated)
    assert (auth.username, auth.database, auth.character_set) == ("hashed", "other", 33)
    assert auth.backend_credential == BackendCredential(hash1=sha1(b"pw"))
    (ok,) = PacketFramer().feed(server.data_to_send())
    assert ok.seq == 3 and ok.payload[0] == 0


def test_change_user_wrong_password() -> None:
    server, first = logged_in_server()
    server.begin_change_user(build_change_user(ChangeUser("plain", b""), first.capabilities))
    nonce = PacketFramer().feed(server.data_to_send())[0].payload[-21:-1]
    (event,) = server.receive_data(frame(scramble_native(b"bad", nonce), 2))
    assert isinstance(event, Rejected) and event.error.code == ErrorCode.ER_ACCESS_DENIED_ERROR


def test_change_user_garbage_and_wrong_state() -> None:
    server, _ = logged_in_server()
    (event,) = server.begin_change_user(b"\x11no-terminator")
    assert isinstance(event, Rejected) and event.error.code == ErrorCode.ER_HANDSHAKE_ERROR
    with pytest.raises(LocalProtocolError):
        make_server().begin_change_user(b"\x11u\x00\x00\x00")


# -- refusals (server side) -----------------------------------------------------------------


def respond(server: ServerHandshake, payload: bytes, seq: int = 1) -> Rejected:
    server.data_to_send()
    (event,) = server.receive_data(frame(payload, seq))
    assert isinstance(event, Rejected)
    assert server.state is ServerState.REJECTED
    return event


def sent_err(server: ServerHandshake) -> tuple[int, Any]:
    (packet,) = PacketFramer().feed(server.data_to_send())
    return packet.seq, parse_err(packet.payload)


def test_client_without_protocol_41() -> None:
    server = make_server()
    event = respond(server, bytes.fromhex("85 24 00 00 00") + b"old\x00" + b"GDSCQYR_")
    assert event.error.code == ErrorCode.ER_NOT_SUPPORTED_AUTH_MODE
    seq, err = sent_err(server)
    assert seq == 2 and err.sqlstate is None  # no '#' marker for a pre-4.1 client


def test_client_asking_for_compression() -> None:
    server = make_server()
    caps = DEFAULT_CLIENT_CAPABILITIES | C.CLIENT_COMPRESS
    event = respond(
        server,
        build_handshake_response(
            HandshakeResponse41(caps, 0, 45, "plain", b"", None, NATIVE_PASSWORD)
        ),
    )
    assert event.error.code == ErrorCode.ER_HANDSHAKE_ERROR
    assert "compression" in event.error.message
    assert sent_err(server)[1].sqlstate == "08S01"


def test_sslrequest_without_tls() -> None:
    server = make_server()
    ssl = build_ssl_request(SslRequest(DEFAULT_CLIENT_CAPABILITIES, 0, 45))
    event = respond(server, ssl)
    assert (event.error.code, event.error.message) == (
        ErrorCode.ER_HANDSHAKE_ERROR,
        "Bad handshake",
    )


def test_ssl_flag_in_a_plain_response() -> None:
    server = make_server(tls_available=True)
    caps = DEFAULT_CLIENT_CAPABILITIES | C.CLIENT_SSL
    event = respond(
        server,
        build_handshake_response(
            HandshakeResponse41(caps, 0, 45, "plain", b"", None, NATIVE_PASSWORD)
        ),
    )
    assert event.error.code == ErrorCode.ER_HANDSHAKE_ERROR


def test_garbage_response() -> None:
    server = make_server()
    event = respond(server, b"\xff" * 40)
    assert event.error.code == ErrorCode.ER_HANDSHAKE_ERROR
    assert sent_err(server)[0] == 2


def test_out_of_order_sequence_id() -> None:
    server = make_server()
    event = respond(server, b"\x00" * 40, seq=5)
    assert event.error.code == ErrorCode.ER_NET_PACKETS_OUT_OF_ORDER


def test_oversized_handshake_packet() -> None:
    server = make_server(max_packet_size=1024)
    server.data_to_send()
    (event,) = server.receive_data(b"\x00\x10\x00\x01")  # announces 4096 bytes
    assert isinstance(event, Rejected) and event.error.code == ErrorCode.ER_HANDSHAKE_ERROR


def test_wrong_state_calls() -> None:
    server = make_server()
    with pytest.raises(LocalProtocolError):
        server.tls_established()
    with pytest.raises(LocalProtocolError):
        server.reject(MySQLError(1045, "no"))
    respond(server, b"junk")
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"more")


# -- ClientHandshake against scripted servers -----------------------------------------------

# go-sql-driver/mysql auth_test.go: nonces and the replies the server sends.
FAST_AUTH_DATA = bytes(
    [90, 105, 74, 126, 30, 48, 37, 56, 3, 23, 115, 127, 69, 22, 41, 84, 32, 123, 43, 118]
)
FULL_AUTH_DATA = bytes(
    [6, 81, 96, 114, 14, 42, 50, 30, 76, 47, 1, 95, 126, 81, 62, 94, 83, 80, 52, 85]
)
OK_WIRE = bytes([7, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0])
MYSQL8_CAPS = C(0xFFFFFFFF) & ~C.CLIENT_COMPRESS  # with CLIENT_SSL


def greeting_wire(
    nonce: bytes,
    plugin: str = CACHING_SHA2_PASSWORD,
    caps: C = MYSQL8_CAPS,
) -> bytes:
    greeting = HandshakeV10(
        "8.0.36", 5, nonce, caps, 255, ServerStatus.SERVER_STATUS_AUTOCOMMIT, plugin
    )
    return frame(build_handshake_v10(greeting), 0)


def with_seq(wire: bytes, seq: int) -> bytes:
    return wire[:3] + bytes((seq,)) + wire[4:]


def sent_packets(client: ClientHandshake) -> list[Packet]:
    return PacketFramer().feed(client.data_to_send())


def test_scripted_fast_auth() -> None:
    client = ClientHandshake("root", BackendCredential(password=b"secret"))
    assert client.receive_data(greeting_wire(FAST_AUTH_DATA)) == []
    (response,) = sent_packets(client)
    parsed = parse_handshake_response(response.payload)
    assert parsed.auth_response == scramble_caching_sha2(b"secret", FAST_AUTH_DATA)
    assert parsed.auth_response[:4] == bytes([102, 32, 5, 35])
    assert parsed.auth_plugin_name == CACHING_SHA2_PASSWORD
    events = client.receive_data(bytes([2, 0, 0, 2, 1, 3]) + with_seq(OK_WIRE, 3))
    assert isinstance(events[0], Ready) and client.data_to_send() == b""


def test_scripted_full_auth_with_rsa() -> None:
    client = ClientHandshake("root", BackendCredential(password=b"secret"))
    client.receive_data(greeting_wire(FULL_AUTH_DATA))
    sent_packets(client)
    assert client.receive_data(bytes([2, 0, 0, 2, 1, 4])) == []
    assert client.data_to_send() == bytes([1, 0, 0, 3, 2])  # request_public_key
    assert client.receive_data(frame(b"\x01" + GO_DRIVER_PUBLIC_KEY, 4)) == []
    (cipher,) = sent_packets(client)
    assert cipher.seq == 5 and len(cipher.payload) == 256
    (ready,) = client.receive_data(with_seq(OK_WIRE, 6))
    assert isinstance(ready, Ready)


def test_scripted_full_auth_over_tls() -> None:
    client = ClientHandshake("root", BackendCredential(password=b"secret"), tls_possible=True)
    assert client.receive_data(greeting_wire(FULL_AUTH_DATA)) == [TlsRequested()]
    (ssl,) = sent_packets(client)
    assert ssl.seq == 1 and len(ssl.payload) == 32 and ssl.payload[1] & 0x08
    client.tls_established()
    (response,) = sent_packets(client)
    assert response.seq == 2
    assert client.receive_data(bytes([2, 0, 0, 3, 1, 4])) == []
    assert client.data_to_send() == bytes([7, 0, 0, 4]) + b"secret\x00"
    assert isinstance(client.receive_data(with_seq(OK_WIRE, 5))[0], Ready)


def test_scripted_err_greeting() -> None:
    client = make_client()
    (failed,) = client.receive_data(frame(b"\xff\x10\x04Too many connections", 0))
    assert isinstance(failed, Failed)
    assert (failed.error.code, failed.error.message) == (1040, "Too many connections")
    with pytest.raises(LocalProtocolError):
        client.receive_data(b"x")


def test_scripted_refusals() -> None:
    old = make_client()
    caps = C(0xFFFF) & ~C.CLIENT_PROTOCOL_41
    (failed,) = old.receive_data(greeting_wire(FAST_AUTH_DATA, caps=caps))
    assert isinstance(failed, Failed) and failed.error.code == ErrorCode.CR_MALFORMED_PACKET
    strict = make_client(tls_required=True)
    (failed,) = strict.receive_data(
        greeting_wire(FAST_AUTH_DATA, caps=C(0xFFFFF7FF) & ~C.CLIENT_SSL)
    )
    assert isinstance(failed, Failed) and failed.error.code == ErrorCode.CR_SSL_CONNECTION_ERROR
    switched = make_client()
    switched.receive_data(greeting_wire(FAST_AUTH_DATA, NATIVE_PASSWORD))
    (failed,) = switched.receive_data(frame(b"\xfedialog\x00data", 2))
    assert isinstance(failed, Failed) and failed.error.code == ErrorCode.CR_AUTH_PLUGIN_CANNOT_LOAD


@pytest.mark.parametrize(
    "reply",
    [
        bytes([2, 0, 0, 2, 1, 3]),  # AuthMoreData during mysql_native_password
        bytes([2, 0, 0, 2, 5, 0]),  # not OK/ERR/switch/more data
        bytes([1, 0, 0, 9, 0]),  # out-of-order sequence id
    ],
)
def test_scripted_garbage_raises(reply: bytes) -> None:
    client = make_client()
    client.receive_data(greeting_wire(FAST_AUTH_DATA, NATIVE_PASSWORD))
    with pytest.raises(RemoteProtocolError):
        client.receive_data(reply)
    assert client.state is ClientState.FAILED


def test_garbage_greeting_raises() -> None:
    with pytest.raises(RemoteProtocolError):
        make_client().receive_data(frame(b"\x0a5.5\x00short", 0))


def test_client_negotiation() -> None:
    client = make_client(database="db", connect_attrs={"program_name": "rwproxy"})
    caps = C(0xFFFFF7FF) & ~C.CLIENT_CONNECT_ATTRS
    client.receive_data(greeting_wire(FAST_AUTH_DATA, NATIVE_PASSWORD, caps))
    (response,) = sent_packets(client)
    parsed = parse_handshake_response(response.payload)
    assert parsed.database == "db" and parsed.connect_attrs == {}
    assert parsed.capabilities & C.CLIENT_CONNECT_WITH_DB
    assert not parsed.capabilities & C.CLIENT_SSL


def test_client_requires_protocol_41() -> None:
    with pytest.raises(LocalProtocolError):
        ClientHandshake(
            "u", BackendCredential(password=b""), capabilities=C.CLIENT_SECURE_CONNECTION
        )
    with pytest.raises(LocalProtocolError):
        make_client().tls_established()


# -- fuzz ------------------------------------------------------------------------------------


def feed_in_chunks(server: ServerHandshake, data: bytes, cuts: Sequence[int]) -> list[Any]:
    events: list[Any] = []
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        if server.state in (ServerState.REJECTED, ServerState.DONE, ServerState.AWAIT_TLS):
            break
        events += server.receive_data(data[start:end])
    return events


def valid_response() -> bytes:
    server = make_server()
    client = make_client(database="db", connect_attrs={"x": "y"})
    client.receive_data(server.data_to_send())
    return client.data_to_send()


VALID_RESPONSE = valid_response()


@st.composite
def mutated_responses(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID_RESPONSE)
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    keep = draw(st.integers(0, len(data)))
    return bytes(data[:keep]) + draw(st.binary(max_size=20))


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(st.binary(max_size=300), mutated_responses()),
    cuts=st.lists(st.integers(0, 400), max_size=6),
    tls=st.booleans(),
)
@example(  # a response, then a packet out of order: AuthSwitchRequest, then the ERR
    data=b"%\x00\x00\x01\x08\x02\x08" + bytes(32) + b"\x01\x00\x00\x00\x00\x00",
    cuts=[],
    tls=False,
)
def test_server_survives_any_bytes(data: bytes, cuts: list[int], tls: bool) -> None:
    server = make_server(tls_available=tls)
    server.data_to_send()
    events = feed_in_chunks(server, data, cuts)
    for event in events:
        assert isinstance(event, Rejected | Authenticated | TlsRequested)
    if any(isinstance(e, Rejected) for e in events):
        # The last packet sent: an AuthSwitchRequest may precede the ERR when the bytes
        # held a response and then a packet out of order.
        *_, last = PacketFramer().feed(server.data_to_send())
        err = parse_err(last.payload)
        assert err.code in (
            ErrorCode.ER_HANDSHAKE_ERROR,
            ErrorCode.ER_NET_PACKETS_OUT_OF_ORDER,
            ErrorCode.ER_NOT_SUPPORTED_AUTH_MODE,
            ErrorCode.ER_ACCESS_DENIED_ERROR,
        )
