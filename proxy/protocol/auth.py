"""Authentication methods: mysql_native_password and caching_sha2_password, both sides.

Theory of operation
-------------------
The proxy is a *server* to applications and a *client* to the MariaDB/MySQL pods, and it must
log in to the pods *as the application's user*. This module holds:

* the pure math of both methods, one function per formula (the formula is in a comment);
* server-side plugins, which check an application's credentials. Each is a sync generator
  (mysql-mimic style): created with the stored credential, the 20-byte nonce and the
  client's first reply, it yields payloads for the handshake to send (AuthMoreData packets)
  and receives the client's next payload through `.send()`. It ends by returning
  `Success(backend_credential)` or `Forbidden(reason)`;
* client-side plugins, used by `ClientHandshake` to log in to a pod. They are generators too:
  the first value yielded is the auth response for HandshakeResponse41/AuthSwitchResponse;
  afterwards each AuthMoreData payload is sent in and the generator yields the bytes to send
  back, or None when nothing is to be sent (waiting for the OK). A refusal (for example a
  credential that cannot serve this method) is raised as `MySQLError`.

What the proxy learns from a successful login is a `BackendCredential`: the plaintext password,
or - when only the `*HEX` hash of mysql.user is configured - SHA1(password) recovered from the
client's native scramble (ProxySQL's trick: reply XOR SHA1(nonce + SHA1(SHA1(pw))) = SHA1(pw)).
SHA1(password) is enough to compute a native scramble for any nonce, so it logs in to
mysql_native_password backends (MariaDB's default), but never to caching_sha2_password ones.

With caching_sha2_password and only a native hash stored, the fast path cannot be checked
(it needs SHA256(SHA256(pw))), so the plugin always asks for full authentication: the
password in clear over TLS, or RSA-encrypted with the proxy's key, and then checks
SHA1(SHA1(cleartext)) against the stored hash.

References:
https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_authentication_methods_native_password_authentication.html
https://dev.mysql.com/doc/dev/mysql-server/latest/page_caching_sha2_authentication_exchanges.html

Everything is pure: nonces come from an injected `rng`, keys are passed in. Secrets are kept
out of reprs so credentials never end up in logs by accident.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from proxy.protocol.constants import ErrorCode
from proxy.protocol.errors import LocalProtocolError, MySQLError, RemoteProtocolError
from proxy.protocol.packets import AuthMoreData, build_auth_more_data

NATIVE_PASSWORD = "mysql_native_password"
CACHING_SHA2_PASSWORD = "caching_sha2_password"
SCRAMBLE_LENGTH = 20

# caching_sha2_password one-byte messages (sql/auth/sha2_password.cc).
REQUEST_PUBLIC_KEY = b"\x02"
FAST_AUTH_SUCCESS = b"\x03"
PERFORM_FULL_AUTHENTICATION = b"\x04"


def sha1(data: bytes) -> bytes:
    return hashlib.sha1(data).digest()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _xor(left: bytes, right: bytes) -> bytes:
    if len(left) != len(right):
        raise ValueError(f"xor of {len(left)} and {len(right)} bytes")
    joined = int.from_bytes(left, "big") ^ int.from_bytes(right, "big")
    return joined.to_bytes(len(left), "big")


def _xor_repeat(data: bytes, key: bytes) -> bytes:
    """data XOR key repeated over its length (MySQL's xor_string)."""
    return bytes([byte ^ key[i % len(key)] for i, byte in enumerate(data)])


#: byte -> byte & 0x7F, then NUL -> 1 and '$' -> '%' (the server adds 1 to those two).
_NONCE_BYTES = bytes([1, *range(1, 36), 37, *range(37, 128)] * 2)


def make_nonce(rng: Callable[[int], bytes]) -> bytes:
    """20 random bytes as the server's generate_user_salt() makes them: 7-bit, never NUL or '$'.

    Old clients treat the scramble as a C string, so a NUL inside it would truncate it.
    """
    return rng(SCRAMBLE_LENGTH).translate(_NONCE_BYTES)


def nonce_from_plugin_data(data: bytes) -> bytes:
    """The scramble inside HandshakeV10/AuthSwitchRequest plugin data (servers append a NUL)."""
    if data.endswith(b"\x00"):
        data = data[:-1]
    return data[:SCRAMBLE_LENGTH]


# --------------------------------------------------------------------------------------
# mysql_native_password
# --------------------------------------------------------------------------------------


def scramble_native_from_hash1(hash1: bytes, nonce: bytes) -> bytes:
    """reply = SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw))), given hash1 = SHA1(pw)."""
    return _xor(hash1, sha1(nonce[:SCRAMBLE_LENGTH] + sha1(hash1)))


def scramble_native(password: bytes, nonce: bytes) -> bytes:
    """reply = SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw))); an empty password sends nothing."""
    if not password:
        return b""
    return scramble_native_from_hash1(sha1(password), nonce)


def native_hash2(password: bytes) -> bytes:
    """hash2 = SHA1(SHA1(pw)): what mysql.user stores (as '*' + hex) for this method."""
    return sha1(sha1(password))


def native_password_hash(password: bytes | str) -> str:
    """'*' + uppercase hex SHA1(SHA1(pw)), as PASSWORD() and mysql.user show it ('' if empty)."""
    raw = password.encode() if isinstance(password, str) else password
    return "*" + native_hash2(raw).hex().upper() if raw else ""


def parse_native_password_hash(text: str) -> bytes:
    """hash2 from '*' + 40 hex digits; b'' for '' (an account without a password)."""
    if text == "":
        return b""
    if len(text) != 41 or not text.startswith("*"):
        raise ValueError("a mysql_native_password hash is '*' followed by 40 hex digits")
    return bytes.fromhex(text[1:])


def verify_native(nonce: bytes, reply: bytes, stored_hash2: bytes) -> bytes | None:
    """Check a native reply against the stored hash2; return SHA1(pw) on success, else None.

    hash1 = reply XOR SHA1(nonce + hash2)   (undoes the client's XOR)
    valid iff SHA1(hash1) == hash2          (compared in constant time)
    An account without a password (hash2 == b'') accepts only an empty reply; b'' is returned.
    """
    if not stored_hash2:
        return b"" if not reply else None
    if len(reply) != SCRAMBLE_LENGTH or len(stored_hash2) != SCRAMBLE_LENGTH:
        return None
    hash1 = _xor(reply, sha1(nonce[:SCRAMBLE_LENGTH] + stored_hash2))
    return hash1 if hmac.compare_digest(sha1(hash1), stored_hash2) else None


# --------------------------------------------------------------------------------------
# caching_sha2_password
# --------------------------------------------------------------------------------------


def caching_sha2_digest(password: bytes) -> bytes:
    """The server's cache entry: SHA256(SHA256(pw))."""
    return sha256(sha256(password))


def scramble_caching_sha2(password: bytes, nonce: bytes) -> bytes:
    """reply = SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce)  (stage2, then the nonce)."""
    if not password:
        return b""
    stage1 = sha256(password)
    return _xor(stage1, sha256(sha256(stage1) + nonce[:SCRAMBLE_LENGTH]))


def verify_caching_sha2(nonce: bytes, reply: bytes, digest: bytes) -> bool:
    """Fast path: stage1 = reply XOR SHA256(digest + nonce); valid iff SHA256(stage1) == digest."""
    if len(reply) != 32 or len(digest) != 32:
        return False
    stage1 = _xor(reply, sha256(digest + nonce[:SCRAMBLE_LENGTH]))
    return hmac.compare_digest(sha256(stage1), digest)


def generate_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A key pair for caching_sha2_password's RSA exchange when none is configured."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key_pem(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("caching_sha2_password needs an RSA private key")
    return key


def public_key_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM ('-----BEGIN PUBLIC KEY-----'), what servers send to clients."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key_pem(pem: bytes) -> rsa.RSAPublicKey:
    """Parse a server's public key; malformed input raises RemoteProtocolError."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise RemoteProtocolError(f"server sent an unusable public key: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise RemoteProtocolError("server sent a public key that is not RSA")
    return key


def _oaep() -> padding.OAEP:
    # RSA_PKCS1_OAEP_PADDING in OpenSSL: SHA1 for both the label hash and MGF1.
    return padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None
    )


def encrypt_password(password: bytes, nonce: bytes, public_key: rsa.RSAPublicKey) -> bytes:
    """cipher = RSA-OAEP((pw + NUL) XOR nonce repeated)."""
    message = _xor_repeat(password + b"\x00", nonce[:SCRAMBLE_LENGTH])
    return public_key.encrypt(message, _oaep())


def decrypt_password(cipher: bytes, nonce: bytes, private_key: rsa.RSAPrivateKey) -> bytes | None:
    """The inverse of `encrypt_password`: the password up to its NUL, or None if undecryptable."""
    try:
        message = private_key.decrypt(cipher, _oaep())
    except ValueError:
        return None
    plain = _xor_repeat(message, nonce[:SCRAMBLE_LENGTH])
    return plain.split(b"\x00", 1)[0]


# --------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredCredential:
    """What the proxy's configuration knows about one user.

    Exactly one of `password` (plaintext) and `native_hash2` (SHA1(SHA1(pw)), parsed from a
    `password_hash: "*HEX"`) is set; b'' in either means "no password". `auth_plugin`
    overrides the listener's default method for this user.

    The digests a login compares against are computed once, here, so that every login does
    the same hashing whatever form the credential has (and an unknown user, checked against
    a random hash-only dummy, costs what a known one does).
    """

    password: bytes | None = field(default=None, repr=False)
    native_hash2: bytes | None = field(default=None, repr=False)
    auth_plugin: str | None = None
    _hash2: bytes = field(init=False, repr=False, compare=False)
    _cleartext_digest: bytes = field(init=False, repr=False, compare=False)
    _sha2_digest: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.password is None) == (self.native_hash2 is None):
            raise ValueError("give exactly one of password and native_hash2")
        if self.native_hash2 and len(self.native_hash2) != SCRAMBLE_LENGTH:
            raise ValueError("native_hash2 must be SHA1(SHA1(password)), 20 bytes")
        password = self.password
        hash2 = (
            self.native_hash2 if password is None else native_hash2(password) if password else b""
        )
        assert hash2 is not None
        object.__setattr__(self, "_hash2", hash2)
        # Without the plaintext these stand-ins are compared against and ignored (see
        # `matches_cleartext` and `caching_sha2_password_server`): same work, never a match.
        object.__setattr__(self, "_cleartext_digest", sha256(password or b""))
        object.__setattr__(self, "_sha2_digest", caching_sha2_digest(password or b""))

    @classmethod
    def from_password(
        cls, password: str | bytes, auth_plugin: str | None = None
    ) -> StoredCredential:
        raw = password.encode() if isinstance(password, str) else password
        return cls(password=raw, auth_plugin=auth_plugin)

    @classmethod
    def from_native_hash(cls, text: str, auth_plugin: str | None = None) -> StoredCredential:
        return cls(native_hash2=parse_native_password_hash(text), auth_plugin=auth_plugin)

    @property
    def hash2(self) -> bytes:
        """SHA1(SHA1(pw)) (b'' without a password), whichever form was configured."""
        return self._hash2

    @property
    def sha2_digest(self) -> bytes:
        """SHA256(SHA256(pw)), caching_sha2_password's fast-path digest; meaningful only
        when the plaintext is known (`password` set and not empty)."""
        return self._sha2_digest

    @property
    def is_empty(self) -> bool:
        return not self.hash2

    def matches_cleartext(self, candidate: bytes) -> bool:
        """Whether `candidate` is the password, in time independent of the password.

        Both checks always run on fixed-length digests: comparing the raw bytes would end
        early on a length mismatch and so time the password's length.
        """
        by_plaintext = hmac.compare_digest(sha256(candidate), self._cleartext_digest)
        by_hash = hmac.compare_digest(native_hash2(candidate) if candidate else b"", self.hash2)
        return by_plaintext if self.password is not None else by_hash


@dataclass(frozen=True, slots=True)
class BackendCredential:
    """How the proxy logs in to the pods as the authenticated user.

    `password` is the plaintext (works with every method); `hash1` is SHA1(password),
    recovered from a native scramble when only the stored hash is known. hash1 works ONLY
    with mysql_native_password backends (MariaDB's default); caching_sha2_password needs
    the plaintext.
    """

    password: bytes | None = field(default=None, repr=False)
    hash1: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.password is None) == (self.hash1 is None):
            raise ValueError("give exactly one of password and hash1")

    @property
    def is_empty(self) -> bool:
        return self.password == b""

    def native_scramble(self, nonce: bytes) -> bytes:
        if self.password is not None:
            return scramble_native(self.password, nonce)
        assert self.hash1 is not None
        return scramble_native_from_hash1(self.hash1, nonce)


# --------------------------------------------------------------------------------------
# Server side (the proxy checks an application)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Success:
    """The client proved it knows the password. `extra` is an AuthMoreData payload to send
    right before the OK (caching_sha2_password's fast_auth_success)."""

    backend_credential: BackendCredential
    extra: bytes | None = None


@dataclass(frozen=True, slots=True)
class Forbidden:
    """Authentication failed; `reason` is for the proxy's log, never for the client."""

    reason: str


AuthDecision = Success | Forbidden
ServerAuth = Generator[bytes, bytes, AuthDecision]


class ServerPlugin(Protocol):
    def __call__(
        self,
        credential: StoredCredential,
        nonce: bytes,
        reply: bytes,
        *,
        secure: bool = False,
        rsa_key: rsa.RSAPrivateKey | None = None,
    ) -> ServerAuth: ...


def _is_empty_reply(reply: bytes) -> bool:
    return reply in (b"", b"\x00")


def _check_empty(credential: StoredCredential) -> AuthDecision:
    if credential.is_empty:
        return Success(BackendCredential(password=b""))
    return Forbidden("no password given")


def native_password_server(
    credential: StoredCredential,
    nonce: bytes,
    reply: bytes,
    *,
    secure: bool = False,
    rsa_key: rsa.RSAPrivateKey | None = None,
) -> ServerAuth:
    """mysql_native_password: one challenge, one reply, no extra packets."""
    yield from ()
    if _is_empty_reply(reply):
        return _check_empty(credential)
    hash1 = verify_native(nonce, reply, credential.hash2)
    if hash1 is None:
        return Forbidden("wrong password")
    if credential.password is not None:
        return Success(BackendCredential(password=credential.password))
    return Success(BackendCredential(hash1=hash1))


def _receive_cleartext(
    nonce: bytes, secure: bool, rsa_key: rsa.RSAPrivateKey | None
) -> Generator[bytes, bytes, bytes | Forbidden]:
    """Full authentication: the password in clear over TLS, else RSA-encrypted."""
    packet = yield build_auth_more_data(AuthMoreData(PERFORM_FULL_AUTHENTICATION))
    if secure:
        return packet[:-1] if packet.endswith(b"\x00") else packet
    if rsa_key is None:
        return Forbidden("full authentication needs TLS or an RSA key")
    if packet == REQUEST_PUBLIC_KEY:
        packet = yield build_auth_more_data(AuthMoreData(public_key_pem(rsa_key)))
    password = decrypt_password(packet, nonce, rsa_key)
    return Forbidden("RSA-encrypted password did not decrypt") if password is None else password


def caching_sha2_password_server(
    credential: StoredCredential,
    nonce: bytes,
    reply: bytes,
    *,
    secure: bool = False,
    rsa_key: rsa.RSAPrivateKey | None = None,
) -> ServerAuth:
    """caching_sha2_password: fast path when the plaintext is known, else full authentication.

    A failed fast path also falls back to full authentication (as MySQL does), so a wrong
    password, an unknown user and a hash-only user all take the same path.
    """
    if _is_empty_reply(reply):
        return _check_empty(credential)
    if len(reply) != 32:
        return Forbidden("malformed caching_sha2_password scramble")
    # Always verified, so a hash-only (or unknown) user costs what a plaintext one does; the
    # result only counts with the plaintext (the stand-in digest of b'' must never let in).
    fast_ok = verify_caching_sha2(nonce, reply, credential.sha2_digest)
    if fast_ok and credential.password:
        extra = build_auth_more_data(AuthMoreData(FAST_AUTH_SUCCESS))
        return Success(BackendCredential(password=credential.password), extra)
    cleartext = yield from _receive_cleartext(nonce, secure, rsa_key)
    if isinstance(cleartext, Forbidden):
        return cleartext
    if not cleartext or not credential.matches_cleartext(cleartext):
        return Forbidden("wrong password")
    return Success(BackendCredential(password=cleartext))


SERVER_PLUGINS: dict[str, ServerPlugin] = {
    NATIVE_PASSWORD: native_password_server,
    CACHING_SHA2_PASSWORD: caching_sha2_password_server,
}


# --------------------------------------------------------------------------------------
# Client side (the proxy logs in to a pod)
# --------------------------------------------------------------------------------------

ClientAuth = Generator[bytes | None, bytes, None]


class ClientPlugin(Protocol):
    def __call__(
        self,
        credential: BackendCredential,
        nonce: bytes,
        *,
        secure: bool = False,
        server_public_key: bytes | None = None,
    ) -> ClientAuth: ...


def _unexpected_more_data(plugin: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"unexpected AuthMoreData during {plugin}")


def native_password_client(
    credential: BackendCredential,
    nonce: bytes,
    *,
    secure: bool = False,
    server_public_key: bytes | None = None,
) -> ClientAuth:
    """Yields the native scramble (from the plaintext or from SHA1(pw)); nothing follows."""
    yield credential.native_scramble(nonce)
    raise _unexpected_more_data(NATIVE_PASSWORD)


def _send_full_password(
    password: bytes, nonce: bytes, secure: bool, server_public_key: bytes | None
) -> Generator[bytes | None, bytes, None]:
    if secure:
        yield password + b"\x00"
        return
    key = server_public_key
    if key is None:
        key = yield REQUEST_PUBLIC_KEY
    yield encrypt_password(password, nonce, load_public_key_pem(key))


def caching_sha2_password_client(
    credential: BackendCredential,
    nonce: bytes,
    *,
    secure: bool = False,
    server_public_key: bytes | None = None,
) -> ClientAuth:
    """Fast path with the SHA256 scramble; on perform_full_authentication, the password in
    clear over TLS, or RSA-encrypted with the server's key (asked for with 0x02 if unknown)."""
    password = credential.password
    if password is None:
        raise MySQLError(
            ErrorCode.CR_AUTH_PLUGIN_ERR,
            "caching_sha2_password needs the plaintext password; a stored native hash "
            "only logs in to mysql_native_password accounts",
        )
    if not password:
        yield b""  # no password: the server answers OK or ERR at once
        raise _unexpected_more_data(CACHING_SHA2_PASSWORD)
    answer = yield scramble_caching_sha2(password, nonce)
    if answer == FAST_AUTH_SUCCESS:
        yield None  # nothing to send: the OK follows
    elif answer == PERFORM_FULL_AUTHENTICATION:
        yield from _send_full_password(password, nonce, secure, server_public_key)
    raise _unexpected_more_data(CACHING_SHA2_PASSWORD)


CLIENT_PLUGINS: dict[str, ClientPlugin] = {
    NATIVE_PASSWORD: native_password_client,
    CACHING_SHA2_PASSWORD: caching_sha2_password_client,
}


def server_plugin(name: str) -> ServerPlugin:
    try:
        return SERVER_PLUGINS[name]
    except KeyError:
        raise LocalProtocolError(f"unsupported authentication plugin {name!r}") from None
