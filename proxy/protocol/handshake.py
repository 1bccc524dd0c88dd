"""Connection-phase state machines: `ServerHandshake` (application -> proxy) and
`ClientHandshake` (proxy -> pod).

Theory of operation
-------------------
Both are sans-I/O in the h11 manner: the caller feeds received bytes to `receive_data()`,
gets a list of events back, and writes whatever `data_to_send()` returns. Output can appear
without any input (the server's greeting is queued by the constructor) and one input can
produce several packets (caching_sha2 fast_auth_success + OK), hence the outbox.

Each machine dispatches received packets through a table keyed by its state. Packets are
cut from the input one wire packet at a time (the header says how long it is) and reassembled
by `PacketFramer`, so the machines know exactly which bytes they consumed: after an
SSLRequest (`TlsRequested`) and after the end of the handshake, `trailing_data` holds the
bytes that arrived after the last packet used. After `TlsRequested` those are the peer's
first TLS records, which the caller must hand to the TLS layer before calling
`tls_established()`; after `Authenticated`/`Ready` they are early command-phase bytes.

Sequence ids follow the documentation: the greeting is 0, each side then increments, the
OK or ERR closing the phase carries the next id. A packet with an unexpected id is an error.

Errors. `ServerHandshake` never raises on bad input: anything malformed from the client
becomes `Rejected` with ER_HANDSHAKE_ERROR (1043, "Bad handshake"; out-of-order packets get
1156), and the ERR is already in the outbox. Unknown users and wrong passwords are refused
with the same ER_ACCESS_DENIED_ERROR text after the same exchange (the unknown user is run
against a random dummy credential). `ClientHandshake` turns ERR packets and refusals it can
explain (unsupported plugin, TLS required but not offered, ...) into `Failed`; malformed
server bytes raise `RemoteProtocolError`, which the caller maps to a broken backend.
Calling a method in the wrong state raises `LocalProtocolError`.

What must stay in sync: `DEFAULT_SERVER_CAPABILITIES` only lists features the session layer
implements (no compression, no MariaDB extended capabilities: CLIENT_LONG_PASSWORD, MariaDB's
CLIENT_MYSQL bit, is set so clients talk to us as to MySQL).
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives.asymmetric import rsa

from proxy.protocol.auth import (
    CACHING_SHA2_PASSWORD,
    CLIENT_PLUGINS,
    NATIVE_PASSWORD,
    SERVER_PLUGINS,
    AuthDecision,
    BackendCredential,
    ClientAuth,
    Forbidden,
    ServerAuth,
    StoredCredential,
    Success,
    make_nonce,
    nonce_from_plugin_data,
)
from proxy.protocol.constants import (
    AUTH_MORE_DATA_HEADER,
    AUTH_SWITCH_HEADER,
    ERR_HEADER,
    HEADER_SIZE,
    OK_HEADER,
    Capability,
    CharacterSet,
    ErrorCode,
    ServerStatus,
)
from proxy.protocol.errors import LocalProtocolError, MySQLError, RemoteProtocolError
from proxy.protocol.framing import Packet, PacketFramer, frame, next_seq_after
from proxy.protocol.packets import (
    AuthSwitchRequest,
    HandshakeResponse41,
    HandshakeV10,
    OkPacket,
    SslRequest,
    build_auth_switch_request,
    build_handshake_response,
    build_handshake_v10,
    build_ok,
    build_ssl_request,
    err_from,
    is_ssl_request,
    parse_auth_more_data,
    parse_auth_switch_request,
    parse_change_user,
    parse_err,
    parse_handshake_response,
    parse_handshake_v10,
    parse_ok,
    peek_capabilities,
)

logger = logging.getLogger(__name__)

_C = Capability
DEFAULT_SERVER_CAPABILITIES = (
    _C.CLIENT_LONG_PASSWORD
    | _C.CLIENT_FOUND_ROWS
    | _C.CLIENT_LONG_FLAG
    | _C.CLIENT_CONNECT_WITH_DB
    | _C.CLIENT_LOCAL_FILES
    | _C.CLIENT_IGNORE_SPACE
    | _C.CLIENT_PROTOCOL_41
    | _C.CLIENT_INTERACTIVE
    | _C.CLIENT_IGNORE_SIGPIPE
    | _C.CLIENT_TRANSACTIONS
    | _C.CLIENT_SECURE_CONNECTION
    | _C.CLIENT_MULTI_STATEMENTS
    | _C.CLIENT_MULTI_RESULTS
    | _C.CLIENT_PS_MULTI_RESULTS
    | _C.CLIENT_PLUGIN_AUTH
    | _C.CLIENT_CONNECT_ATTRS
    | _C.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | _C.CLIENT_SESSION_TRACK
    | _C.CLIENT_DEPRECATE_EOF
)
"""What the proxy offers applications; CLIENT_SSL is added when TLS is available."""

DEFAULT_CLIENT_CAPABILITIES = (
    DEFAULT_SERVER_CAPABILITIES & ~_C.CLIENT_INTERACTIVE & ~_C.CLIENT_CONNECT_WITH_DB
)
"""What the proxy asks of the pods (CONNECT_WITH_DB is added when a database is given)."""

# Flags that would change the wire format if honoured. MULTI_FACTOR_AUTHENTICATION is
# not among them: libmysqlclient 8.0.27+ sets it whatever the server offers, and servers
# simply leave it out of the negotiated set, as we do.
_UNSUPPORTED_CLIENT_CAPS: Final = (
    (int(_C.CLIENT_COMPRESS), "compression (CLIENT_COMPRESS)"),
    (int(_C.CLIENT_ZSTD_COMPRESSION_ALGORITHM), "zstd compression"),
)
# Flags the login tests, as plain ints: compiled, `caps & _SSL` with `caps: int` is one
# machine instruction, with an IntFlag operand it runs enum's interpreted __and__ (0.5 us).
_CONNECT_WITH_DB: Final = int(_C.CLIENT_CONNECT_WITH_DB)
_PLUGIN_AUTH: Final = int(_C.CLIENT_PLUGIN_AUTH)
_PROTOCOL_41: Final = int(_C.CLIENT_PROTOCOL_41)
_SSL: Final = int(_C.CLIENT_SSL)
_PROTOCOL_MESSAGES = {
    ErrorCode.ER_HANDSHAKE_ERROR: "Bad handshake",
    ErrorCode.ER_NET_PACKETS_OUT_OF_ORDER: "Got packets out of order",
}
_NOT_SUPPORTED_AUTH_MODE = (
    "Client does not support authentication protocol requested by server; "
    "consider upgrading MySQL client"
)
DEFAULT_MAX_PACKET_SIZE = 16 * 1024 * 1024
MAX_LOGIN_PACKET_SIZE = 128 * 1024
"""The largest login packet a server accepts (HandshakeResponse, auth data, COM_CHANGE_USER),
whatever max_allowed_packet says: user, schema, plugin name and auth data take a few hundred
bytes, and clients keep connection attributes under 64 KiB. Before a client proved who it
is, it cannot make the proxy buffer more."""
_PLUGIN_DATA_NUL = b"\x00"
# What an unknown user's login is checked against: one per process, drawn at start (hashing
# a new one per login cost more than the rest of the check).
_UNKNOWN_USER: Final = StoredCredential(native_hash2=os.urandom(20))


# --------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsRequested:
    """The peer wants TLS now: wrap the transport (first feeding it `trailing_data`), then
    call `tls_established()`."""


@dataclass(frozen=True, slots=True)
class Authenticated:
    """An application logged in to the proxy; the OK is queued unless `auto_ok=False`."""

    username: str
    database: str | None
    capabilities: Capability
    character_set: int
    connect_attrs: dict[str, str]
    backend_credential: BackendCredential
    max_packet_size: int
    auth_plugin_name: str
    tls: bool


@dataclass(frozen=True, slots=True)
class Rejected:
    """The application was refused; the ERR is queued. `reason` is for logs only."""

    error: MySQLError
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Ready:
    """The proxy logged in to a pod; the connection is in the command phase."""

    server_version: str
    connection_id: int
    capabilities: Capability
    status: ServerStatus
    character_set: int
    ok: OkPacket = field(default_factory=OkPacket)


@dataclass(frozen=True, slots=True)
class Failed:
    """The pod refused the login (its ERR) or the proxy cannot continue (a CR_* error)."""

    error: MySQLError


ServerEvent = TlsRequested | Authenticated | Rejected
ClientEvent = TlsRequested | Ready | Failed


# --------------------------------------------------------------------------------------
# Shared packet I/O
# --------------------------------------------------------------------------------------


class _PacketIO:
    """Byte-exact packet cutting, sequence ids and the outbox, shared by both machines."""

    def __init__(self, max_packet_size: int) -> None:
        self._max_packet_size = max_packet_size
        self._framer = PacketFramer(max_packet_size)
        self._raw = bytearray()
        self._outbox: list[bytes] = []
        self._seq = 0

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now (possibly empty); the outbox is emptied."""
        out = b"".join(self._outbox)
        self._outbox.clear()
        return out

    @property
    def trailing_data(self) -> bytes:
        """Received bytes not consumed by the handshake (see the module docstring)."""
        return bytes(self._raw)

    def _send(self, payload: bytes) -> None:
        self._outbox.append(frame(payload, self._seq))
        self._seq = next_seq_after(len(payload), self._seq)

    def _next_packet(self) -> Packet | None:
        """Cut one whole logical packet off the input, or None until more bytes arrive.

        When a packet is refused, the sequence id moves past it anyway: the ERR that
        reports the refusal must carry the id the peer expects next.
        """
        while len(self._raw) >= HEADER_SIZE:
            size = int.from_bytes(self._raw[:3], "little")
            wire_seq = self._raw[3]
            if size > self._max_packet_size:
                self._seq = (wire_seq + 1) & 0xFF
                raise RemoteProtocolError(f"handshake packet of {size} bytes is too large")
            end = HEADER_SIZE + size
            if len(self._raw) < end:
                return None
            chunk = bytes(self._raw[:end])
            del self._raw[:end]
            try:
                packets = self._framer.feed(chunk)
            except RemoteProtocolError:
                self._seq = (wire_seq + 1) & 0xFF
                raise
            if packets:
                return self._check_seq(packets[0])
        return None

    def _check_seq(self, packet: Packet) -> Packet:
        expected, self._seq = self._seq, packet.next_seq
        if packet.seq != expected:
            raise _OutOfOrder(f"expected sequence id {expected}, got {packet.seq}")
        return packet

    def _restart_framing(self) -> None:
        """After TLS is set up, the old buffered bytes belonged to the TLS layer."""
        self._framer = PacketFramer(self._max_packet_size)
        self._raw.clear()


class _OutOfOrder(RemoteProtocolError):
    pass


# --------------------------------------------------------------------------------------
# ServerHandshake: an application logs in to the proxy
# --------------------------------------------------------------------------------------


class ServerState(enum.Enum):
    AWAIT_RESPONSE = enum.auto()
    AWAIT_TLS = enum.auto()
    AWAIT_SWITCH_RESPONSE = enum.auto()
    AWAIT_AUTH_DATA = enum.auto()
    AWAIT_DECISION = enum.auto()
    DONE = enum.auto()
    REJECTED = enum.auto()


CredentialLookup = Callable[[str], StoredCredential | None]


@dataclass(slots=True)
class _Login:
    """What the client asked for, collected from HandshakeResponse41 or COM_CHANGE_USER."""

    username: str
    database: str | None
    character_set: int
    connect_attrs: dict[str, str]
    max_packet_size: int
    known_user: bool = False
    using_password: bool = False
    plugin: str = NATIVE_PASSWORD


class ServerHandshake(_PacketIO):
    """The proxy's side of an application's connection phase.

    `credentials_for(username)` returns the user's `StoredCredential` or None. The greeting
    (HandshakeV10, sequence id 0) is queued at construction. A packet longer than
    `max_packet_size` or `MAX_LOGIN_PACKET_SIZE` is refused.
    """

    def __init__(
        self,
        server_version: str,
        connection_id: int,
        credentials_for: CredentialLookup,
        *,
        capabilities: Capability = DEFAULT_SERVER_CAPABILITIES,
        tls_available: bool = False,
        default_auth_plugin: str = NATIVE_PASSWORD,
        rsa_key: rsa.RSAPrivateKey | None = None,
        client_host: str = "localhost",
        character_set: int = CharacterSet.UTF8MB4_GENERAL_CI,
        status: ServerStatus = ServerStatus.SERVER_STATUS_AUTOCOMMIT,
        rng: Callable[[int], bytes] = os.urandom,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        auto_ok: bool = True,
    ) -> None:
        super().__init__(min(max_packet_size, MAX_LOGIN_PACKET_SIZE))
        if default_auth_plugin not in SERVER_PLUGINS:
            raise LocalProtocolError(f"unsupported authentication plugin {default_auth_plugin!r}")
        self.capabilities = _with_ssl(capabilities, tls_available)
        self.negotiated = Capability(0)
        self.state = ServerState.AWAIT_RESPONSE
        self.tls = False
        self._tls_available = tls_available
        self._credentials_for = credentials_for
        self._default_plugin = default_auth_plugin
        self._rsa_key = rsa_key
        self._client_host = client_host
        self._status = status
        self._rng = rng
        self._auto_ok = auto_ok
        self._nonce = make_nonce(rng)
        self._login: _Login | None = None
        self._credential: StoredCredential | None = None
        self._plugin_run: ServerAuth | None = None
        self._refusal: tuple[int, int, Capability] | None = None  # outbox index, seq, caps
        self._readers: dict[ServerState, Callable[[Packet], list[ServerEvent]]] = {
            ServerState.AWAIT_RESPONSE: self._on_response,
            ServerState.AWAIT_SWITCH_RESPONSE: self._on_switch_response,
            ServerState.AWAIT_AUTH_DATA: self._on_auth_data,
        }
        greeting = HandshakeV10(
            server_version,
            connection_id,
            self._nonce,
            self.capabilities,
            character_set,
            status,
            default_auth_plugin,
        )
        self._send(build_handshake_v10(greeting))

    # -- public API -----------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[ServerEvent]:
        """Feed bytes from the application; returns the events they complete."""
        if self.state not in self._readers and self.state is not ServerState.AWAIT_DECISION:
            raise LocalProtocolError(f"receive_data() in state {self.state.name}")
        self._raw += data
        events: list[ServerEvent] = []
        try:
            while self.state in self._readers and (packet := self._next_packet()) is not None:
                events += self._readers[self.state](packet)
        except RemoteProtocolError as exc:  # one clause: mypyc types `exc` once per function
            code = (
                ErrorCode.ER_NET_PACKETS_OUT_OF_ORDER
                if isinstance(exc, _OutOfOrder)
                else ErrorCode.ER_HANDSHAKE_ERROR
            )
            events += self._fail_protocol(code, str(exc))
        return events

    def tls_established(self) -> None:
        """The transport is now TLS; the client will resend its HandshakeResponse41."""
        self._require(ServerState.AWAIT_TLS)
        self.tls = True
        self._restart_framing()
        self.state = ServerState.AWAIT_RESPONSE

    def begin_change_user(self, payload: bytes) -> list[ServerEvent]:
        """Re-authenticate after COM_CHANGE_USER (payload with its 0x11 byte, sequence id 0).

        Later packets of the exchange are fed to `receive_data()` as usual; the outcome is
        again `Authenticated` or `Rejected` (after which the connection must be closed).
        """
        self._require(ServerState.DONE)
        self._seq = 1
        self._restart_framing()
        try:
            change = parse_change_user(payload, self.negotiated)
        except RemoteProtocolError as exc:
            return self._fail_protocol(ErrorCode.ER_HANDSHAKE_ERROR, str(exc))
        previous = self._login
        assert previous is not None
        charset = previous.character_set if change.character_set is None else change.character_set
        login = _Login(
            change.username,
            change.database or None,
            charset,
            change.connect_attrs,
            previous.max_packet_size,
        )
        # Always restart with a fresh AuthSwitchRequest when the client can take one: which
        # nonce a client scrambles COM_CHANGE_USER with varies between client libraries.
        return self._start_auth(
            login, change.auth_response, change.auth_plugin_name, switch_always=True
        )

    def accept(self, status: ServerStatus | None = None) -> None:
        """Send the OK that ends the handshake (only with auto_ok=False)."""
        self._require(ServerState.AWAIT_DECISION)
        self._send_ok(self._status if status is None else status)

    def reject(self, error: MySQLError) -> None:
        """Send an ERR instead of the OK (only with auto_ok=False)."""
        self._require(ServerState.AWAIT_DECISION)
        self._send(err_from(error, self.negotiated))
        self.state = ServerState.REJECTED

    def refuse_instead(self, error: MySQLError) -> None:
        """Answer the finished login with `error`, whatever its verdict was.

        For a caller that must not reveal the verdict (a failed-login limit that started
        while this login was in flight): after `Authenticated` (auto_ok=False) it is
        `reject()`; after `Rejected` it replaces the queued ERR, same sequence id, as long
        as `data_to_send()` has not taken it yet.
        """
        if self.state is ServerState.AWAIT_DECISION:
            self.reject(error)
            return
        self._require(ServerState.REJECTED)
        queued = self._refusal
        if queued is None or queued[0] >= len(self._outbox):
            raise LocalProtocolError("refuse_instead() after the refusal was sent")
        index, seq, caps = queued
        self._outbox[index] = frame(err_from(error, caps), seq)

    # -- readers ----------------------------------------------------------------------

    def _on_response(self, packet: Packet) -> list[ServerEvent]:
        payload = packet.payload
        if is_ssl_request(payload) and not self.tls:
            return self._on_ssl_request()
        refusal = self._check_client_caps(peek_capabilities(payload))
        if refusal is not None:
            return refusal
        response = parse_handshake_response(payload)
        refusal = self._check_response(response)
        if refusal is not None:
            return refusal
        negotiated = int(response.capabilities) & int(self.capabilities)
        self.negotiated = Capability(negotiated)
        login = _Login(
            response.username,
            response.database if negotiated & _CONNECT_WITH_DB else None,
            response.character_set,
            response.connect_attrs,
            response.max_packet_size,
        )
        plugin = response.auth_plugin_name if negotiated & _PLUGIN_AUTH else None
        return self._start_auth(login, response.auth_response, plugin)

    def _on_ssl_request(self) -> list[ServerEvent]:
        if not self._tls_available:
            return self._fail_protocol(
                ErrorCode.ER_HANDSHAKE_ERROR, "SSLRequest but TLS is not available here"
            )
        self.state = ServerState.AWAIT_TLS
        return [TlsRequested()]

    def _on_switch_response(self, packet: Packet) -> list[ServerEvent]:
        login = self._login
        assert login is not None
        return self._run_plugin(login, packet.payload)

    def _on_auth_data(self, packet: Packet) -> list[ServerEvent]:
        assert self._plugin_run is not None
        return self._drive(self._plugin_run, packet.payload)

    # -- checks -----------------------------------------------------------------------

    def _check_client_caps(self, caps: int) -> list[ServerEvent] | None:
        if not caps & _PROTOCOL_41:
            error = MySQLError(ErrorCode.ER_NOT_SUPPORTED_AUTH_MODE, _NOT_SUPPORTED_AUTH_MODE)
            return self._refuse(error, "client without CLIENT_PROTOCOL_41", Capability(caps))
        return None

    def _check_response(self, response: HandshakeResponse41) -> list[ServerEvent] | None:
        caps = int(response.capabilities)
        if caps & _SSL and not self.tls:
            reason = "CLIENT_SSL set in a HandshakeResponse41 sent without TLS"
            return self._fail_protocol(ErrorCode.ER_HANDSHAKE_ERROR, reason)
        for flag, feature in _UNSUPPORTED_CLIENT_CAPS:
            if caps & flag:
                error = MySQLError(
                    ErrorCode.ER_HANDSHAKE_ERROR,
                    f"Bad handshake: rwproxy does not support {feature}",
                )
                return self._refuse(error, f"client asked for {feature}", response.capabilities)
        return None

    # -- authentication ---------------------------------------------------------------

    def _start_auth(
        self, login: _Login, reply: bytes, client_plugin: str | None, *, switch_always: bool = False
    ) -> list[ServerEvent]:
        # An unknown user runs the same exchange against a random, unmatchable hash (and is
        # refused whatever the exchange says: `_decide`), so both cost the same.
        stored = self._credentials_for(login.username)
        login.known_user = stored is not None
        self._credential = stored or _UNKNOWN_USER
        login.plugin = self._credential.auth_plugin or self._default_plugin
        if login.plugin not in SERVER_PLUGINS:
            raise LocalProtocolError(f"unsupported authentication plugin {login.plugin!r}")
        self._login = login
        can_switch = bool(int(self.negotiated) & _PLUGIN_AUTH)
        same_plugin = (client_plugin or NATIVE_PASSWORD) == login.plugin
        if same_plugin and not (switch_always and can_switch):
            return self._run_plugin(login, reply)
        if not can_switch:
            error = MySQLError(ErrorCode.ER_NOT_SUPPORTED_AUTH_MODE, _NOT_SUPPORTED_AUTH_MODE)
            return self._refuse(error, f"client cannot switch to {login.plugin}")
        return self._switch_plugin(login)

    def _switch_plugin(self, login: _Login) -> list[ServerEvent]:
        self._nonce = make_nonce(self._rng)
        request = AuthSwitchRequest(login.plugin, self._nonce + _PLUGIN_DATA_NUL)
        self._send(build_auth_switch_request(request))
        self.state = ServerState.AWAIT_SWITCH_RESPONSE
        return []

    def _run_plugin(self, login: _Login, reply: bytes) -> list[ServerEvent]:
        login.using_password = reply not in (b"", b"\x00")
        assert self._credential is not None
        run = SERVER_PLUGINS[login.plugin](
            self._credential, self._nonce, reply, secure=self.tls, rsa_key=self._rsa_key
        )
        self._plugin_run = run
        return self._drive(run, None)

    def _drive(self, run: ServerAuth, reply: bytes | None) -> list[ServerEvent]:
        try:
            to_send = run.send(reply) if reply is not None else next(run)
        except StopIteration as stop:
            decision: AuthDecision = stop.value
            return self._decide(decision)
        self._send(to_send)
        self.state = ServerState.AWAIT_AUTH_DATA
        return []

    def _decide(self, decision: AuthDecision) -> list[ServerEvent]:
        login = self._login
        assert login is not None
        if not login.known_user:
            decision = Forbidden("unknown user")
        if isinstance(decision, Forbidden):
            return self._deny(login, decision.reason)
        return self._succeed(login, decision)

    def _deny(self, login: _Login, reason: str) -> list[ServerEvent]:
        using = "YES" if login.using_password else "NO"
        who = f"'{login.username}'@'{self._client_host}'"
        message = f"Access denied for user {who} (using password: {using})"
        error = MySQLError(ErrorCode.ER_ACCESS_DENIED_ERROR, message, "28000")
        return self._refuse(error, reason)

    def _succeed(self, login: _Login, success: Success) -> list[ServerEvent]:
        if success.extra is not None:
            self._send(success.extra)
        self.state = ServerState.AWAIT_DECISION
        if self._auto_ok:
            self._send_ok(self._status)
        event = Authenticated(
            login.username,
            login.database,
            self.negotiated,
            login.character_set,
            login.connect_attrs,
            success.backend_credential,
            login.max_packet_size,
            login.plugin,
            self.tls,
        )
        return [event]

    # -- endings ----------------------------------------------------------------------

    def _send_ok(self, status: ServerStatus) -> None:
        self._send(build_ok(OkPacket(0, 0, status, 0), self.negotiated))
        self.state = ServerState.DONE

    def _refuse(
        self, error: MySQLError, reason: str, caps: Capability | None = None
    ) -> list[ServerEvent]:
        caps = self.negotiated or caps or _C.CLIENT_PROTOCOL_41
        self._refusal = (len(self._outbox), self._seq, caps)
        self._send(err_from(error, caps))
        self.state = ServerState.REJECTED
        return [Rejected(error, reason)]

    def _fail_protocol(self, code: ErrorCode, reason: str) -> list[ServerEvent]:
        return self._refuse(MySQLError(code, _PROTOCOL_MESSAGES[code]), reason)

    def _require(self, state: ServerState) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"expected state {state.name}, in {self.state.name}")


def _with_ssl(caps: Capability, tls: bool) -> Capability:
    return Capability(int(caps) | _SSL if tls else int(caps) & ~_SSL)


# --------------------------------------------------------------------------------------
# ClientHandshake: the proxy logs in to a pod
# --------------------------------------------------------------------------------------


class ClientState(enum.Enum):
    AWAIT_HANDSHAKE = enum.auto()
    AWAIT_TLS = enum.auto()
    AUTHENTICATING = enum.auto()
    READY = enum.auto()
    FAILED = enum.auto()


class ClientHandshake(_PacketIO):
    """The proxy's side of the connection phase towards a pod. The server speaks first.

    `capabilities` are what the caller wants (PROTOCOL_41 and SECURE_CONNECTION are
    required); the negotiated set is `capabilities & server's`, plus CONNECT_WITH_DB when a
    database is given and CLIENT_SSL when TLS is used. `rng` is accepted for symmetry with
    ServerHandshake; RSA-OAEP padding draws its randomness from the OS.
    """

    def __init__(
        self,
        username: str,
        credential: BackendCredential,
        database: str | None = None,
        *,
        capabilities: Capability = DEFAULT_CLIENT_CAPABILITIES,
        character_set: int = CharacterSet.UTF8MB4_GENERAL_CI,
        connect_attrs: Mapping[str, str] | None = None,
        tls_possible: bool = False,
        tls_required: bool = False,
        server_public_key: bytes | None = None,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        super().__init__(max_packet_size)
        required = _C.CLIENT_PROTOCOL_41 | _C.CLIENT_SECURE_CONNECTION
        if capabilities & required != required:
            raise LocalProtocolError(
                "ClientHandshake needs CLIENT_PROTOCOL_41 and CLIENT_SECURE_CONNECTION"
            )
        self.username = username
        self.database = database
        self.wanted = capabilities
        self.negotiated = Capability(0)
        self.state = ClientState.AWAIT_HANDSHAKE
        self.tls = False
        self._credential = credential
        self._character_set = character_set
        self._connect_attrs = dict(connect_attrs or {})
        self._tls_possible = tls_possible or tls_required
        self._tls_required = tls_required
        self._server_public_key = server_public_key
        self._rng = rng
        self._greeting: HandshakeV10 | None = None
        self._auth: ClientAuth | None = None
        self._readers: dict[ClientState, Callable[[Packet], list[ClientEvent]]] = {
            ClientState.AWAIT_HANDSHAKE: self._on_greeting,
            ClientState.AUTHENTICATING: self._on_auth_packet,
        }

    def receive_data(self, data: bytes) -> list[ClientEvent]:
        """Feed bytes from the pod; returns the events they complete."""
        if self.state not in self._readers:
            raise LocalProtocolError(f"receive_data() in state {self.state.name}")
        self._raw += data
        events: list[ClientEvent] = []
        try:
            while self.state in self._readers and (packet := self._next_packet()) is not None:
                events += self._readers[self.state](packet)
        except MySQLError as error:
            self.state = ClientState.FAILED
            events.append(Failed(error))
        except RemoteProtocolError:
            self.state = ClientState.FAILED
            raise
        return events

    def tls_established(self) -> None:
        """The transport is now TLS: send the HandshakeResponse41 over it."""
        if self.state is not ClientState.AWAIT_TLS:
            raise LocalProtocolError(f"tls_established() in state {self.state.name}")
        self.tls = True
        self._restart_framing()
        self._send_response()

    # -- readers ----------------------------------------------------------------------

    def _on_greeting(self, packet: Packet) -> list[ClientEvent]:
        if packet.payload[:1] == bytes((ERR_HEADER,)):
            return self._failed(parse_err(packet.payload, Capability(0)).to_error())
        greeting = parse_handshake_v10(packet.payload)
        self._greeting = greeting
        server = greeting.capabilities
        if server & (_C.CLIENT_PROTOCOL_41 | _C.CLIENT_SECURE_CONNECTION) != (
            _C.CLIENT_PROTOCOL_41 | _C.CLIENT_SECURE_CONNECTION
        ):
            raise MySQLError(
                ErrorCode.CR_MALFORMED_PACKET, "server does not support CLIENT_PROTOCOL_41"
            )
        self.negotiated = self._negotiate(server)
        if self.negotiated & _C.CLIENT_SSL:
            ssl = SslRequest(self.negotiated, self._max_packet_size, self._character_set)
            self._send(build_ssl_request(ssl))
            self.state = ClientState.AWAIT_TLS
            return [TlsRequested()]
        if self._tls_required:
            raise MySQLError(
                ErrorCode.CR_SSL_CONNECTION_ERROR,
                "TLS is required but the server does not offer it",
            )
        self._send_response()
        return []

    def _negotiate(self, server: Capability) -> Capability:
        wanted = self.wanted & ~_C.CLIENT_SSL & ~_C.CLIENT_CONNECT_WITH_DB
        if self.database:
            wanted |= _C.CLIENT_CONNECT_WITH_DB
        if self._tls_possible:
            wanted |= _C.CLIENT_SSL
        return wanted & server

    def _on_auth_packet(self, packet: Packet) -> list[ClientEvent]:
        header = packet.payload[:1]
        if header == bytes((OK_HEADER,)):
            return self._ready(packet.payload)
        if header == bytes((ERR_HEADER,)):
            return self._failed(parse_err(packet.payload, self.negotiated).to_error())
        if header == bytes((AUTH_SWITCH_HEADER,)):
            return self._on_auth_switch(packet.payload)
        if header == bytes((AUTH_MORE_DATA_HEADER,)):
            return self._on_more_data(packet.payload)
        raise RemoteProtocolError(
            f"unexpected packet 0x{packet.payload[:1].hex()} during authentication"
        )

    def _on_auth_switch(self, payload: bytes) -> list[ClientEvent]:
        request = parse_auth_switch_request(payload)
        self._auth = self._start_plugin(
            request.plugin_name, nonce_from_plugin_data(request.plugin_data)
        )
        self._send(_first(self._auth))
        return []

    def _on_more_data(self, payload: bytes) -> list[ClientEvent]:
        assert self._auth is not None  # set before entering AUTHENTICATING
        to_send = self._auth.send(parse_auth_more_data(payload).data)
        if to_send is not None:
            self._send(to_send)
        return []

    # -- helpers ----------------------------------------------------------------------

    def _start_plugin(self, name: str, nonce: bytes) -> ClientAuth:
        plugin = CLIENT_PLUGINS.get(name)
        if plugin is None:
            raise MySQLError(
                ErrorCode.CR_AUTH_PLUGIN_CANNOT_LOAD,
                f"Authentication plugin '{name}' cannot be loaded: not supported by rwproxy",
            )
        return plugin(
            self._credential, nonce, secure=self.tls, server_public_key=self._server_public_key
        )

    def _send_response(self) -> None:
        greeting = self._greeting
        assert greeting is not None
        name = self._initial_plugin(greeting.auth_plugin_name)
        self._auth = self._start_plugin(name, nonce_from_plugin_data(greeting.auth_plugin_data))
        caps = self.negotiated
        response = HandshakeResponse41(
            caps,
            self._max_packet_size,
            self._character_set,
            self.username,
            _first(self._auth),
            self.database if caps & _C.CLIENT_CONNECT_WITH_DB else None,
            name if caps & _C.CLIENT_PLUGIN_AUTH else None,
            self._connect_attrs if caps & _C.CLIENT_CONNECT_ATTRS else {},
        )
        self._send(build_handshake_response(response))
        self.state = ClientState.AUTHENTICATING

    def _initial_plugin(self, announced: str) -> str:
        """Answer with the server's method when we can; otherwise native, and let the server
        switch us if the account uses something else (a hash1 credential cannot do
        caching_sha2_password, but the account may well be a native one)."""
        if announced == CACHING_SHA2_PASSWORD and self._credential.password is None:
            return NATIVE_PASSWORD
        return announced if announced in CLIENT_PLUGINS else NATIVE_PASSWORD

    def _ready(self, payload: bytes) -> list[ClientEvent]:
        ok = parse_ok(payload, self.negotiated)
        greeting = self._greeting
        assert greeting is not None
        self.state = ClientState.READY
        event = Ready(
            greeting.server_version,
            greeting.connection_id,
            self.negotiated,
            ok.status,
            self._character_set,
            ok,
        )
        return [event]

    def _failed(self, error: MySQLError) -> list[ClientEvent]:
        self.state = ClientState.FAILED
        return [Failed(error)]


def _first(auth: ClientAuth) -> bytes:
    """The first thing a client plugin sends is never 'nothing'."""
    first = next(auth)
    if first is None:
        raise LocalProtocolError("client authentication plugin produced no initial response")
    return first


__all__ = [
    "CACHING_SHA2_PASSWORD",
    "DEFAULT_CLIENT_CAPABILITIES",
    "DEFAULT_SERVER_CAPABILITIES",
    "NATIVE_PASSWORD",
    "Authenticated",
    "ClientEvent",
    "ClientHandshake",
    "ClientState",
    "Failed",
    "Ready",
    "Rejected",
    "ServerEvent",
    "ServerHandshake",
    "ServerState",
    "TlsRequested",
]
