"""proxy/protocol/auth.py: the formulas against independent vectors, and the plugins.

Scramble vectors come from go-sql-driver/mysql's auth_test.go (an independent implementation
tested against real servers) and are cross-checked with PyMySQL's `_auth` module. The
caching_sha2_password one-byte messages are those of
https://dev.mysql.com/doc/dev/mysql-server/latest/page_caching_sha2_authentication_exchanges.html
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import pymysql._auth as pymysql_auth
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from proxy.protocol.auth import (
    CACHING_SHA2_PASSWORD,
    FAST_AUTH_SUCCESS,
    NATIVE_PASSWORD,
    PERFORM_FULL_AUTHENTICATION,
    REQUEST_PUBLIC_KEY,
    SERVER_PLUGINS,
    BackendCredential,
    Forbidden,
    StoredCredential,
    Success,
    caching_sha2_digest,
    caching_sha2_password_client,
    caching_sha2_password_server,
    decrypt_password,
    encrypt_password,
    generate_rsa_key,
    load_private_key_pem,
    load_public_key_pem,
    make_nonce,
    native_hash2,
    native_password_client,
    native_password_hash,
    native_password_server,
    nonce_from_plugin_data,
    parse_native_password_hash,
    private_key_pem,
    public_key_pem,
    scramble_caching_sha2,
    scramble_native,
    scramble_native_from_hash1,
    server_plugin,
    sha1,
    verify_caching_sha2,
    verify_native,
)
from proxy.protocol.errors import LocalProtocolError, MySQLError, RemoteProtocolError

# go-sql-driver/mysql auth_test.go
SHA256_SCRAMBLE = bytes(
    [10, 47, 74, 111, 75, 73, 34, 48, 88, 76, 114, 74, 37, 13, 3, 80, 82, 2, 23, 21]
)
FAST_AUTH_DATA = bytes(
    [90, 105, 74, 126, 30, 48, 37, 56, 3, 23, 115, 127, 69, 22, 41, 84, 32, 123, 43, 118]
)
FULL_AUTH_DATA = bytes(
    [6, 81, 96, 114, 14, 42, 50, 30, 76, 47, 1, 95, 126, 81, 62, 94, 83, 80, 52, 85]
)
NATIVE_AUTH_DATA = bytes(
    [70, 114, 92, 94, 1, 38, 11, 116, 63, 114, 23, 101, 126, 103, 26, 95, 81, 17, 24, 21]
)


@pytest.mark.parametrize(
    ("password", "nonce", "expected"),
    [
        (
            b"secret",
            SHA256_SCRAMBLE,
            "f490e76f66d9d86665ce54d98c78d0acfe2fb0b08b423da807144873d30b312c",
        ),
        (
            b"secret2",
            SHA256_SCRAMBLE,
            "abc3934a012cf342e876071c8ee202de51785b430258a7a0138bc79c4d800bc6",
        ),
        (
            b"secret",
            FAST_AUTH_DATA,
            "662005238fa18cf1abe8388b2b0e6bc4f9aa933cdccc78b2d60fb8961a3d39eb",
        ),
        (
            b"secret",
            FULL_AUTH_DATA,
            "abc98a92599f0baa0043a531af5eda44b16d6e5622212cbe43f0466e288b7c29",
        ),
    ],
)
def test_scramble_caching_sha2_vectors(password: bytes, nonce: bytes, expected: str) -> None:
    assert scramble_caching_sha2(password, nonce).hex() == expected
    assert pymysql_auth.scramble_caching_sha2(password, nonce).hex() == expected
    # The server's fast path accepts it given only SHA256(SHA256(pw)).
    assert verify_caching_sha2(nonce, bytes.fromhex(expected), caching_sha2_digest(password))


def test_scramble_native_vector() -> None:
    expected = bytes(
        [
            53,
            177,
            140,
            159,
            251,
            189,
            127,
            53,
            109,
            252,
            172,
            50,
            211,
            192,
            240,
            164,
            26,
            48,
            207,
            45,
        ]
    )
    assert scramble_native(b"secret", NATIVE_AUTH_DATA) == expected
    assert pymysql_auth.scramble_native_password(b"secret", NATIVE_AUTH_DATA) == expected
    assert scramble_native_from_hash1(sha1(b"secret"), NATIVE_AUTH_DATA) == expected


def test_empty_password_scrambles_are_empty() -> None:
    assert scramble_native(b"", NATIVE_AUTH_DATA) == b""
    assert scramble_caching_sha2(b"", NATIVE_AUTH_DATA) == b""


def test_native_password_hash() -> None:
    # SELECT PASSWORD('password') on MySQL 5.7 / MariaDB.
    assert native_password_hash("password") == "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
    assert native_password_hash(b"") == ""
    assert parse_native_password_hash(native_password_hash("x")) == native_hash2(b"x")
    assert parse_native_password_hash("") == b""
    for bad in ("2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19", "*abc", "*" + "zz" * 20):
        with pytest.raises(ValueError):
            parse_native_password_hash(bad)


def test_verify_native_recovers_hash1() -> None:
    reply = scramble_native(b"pw", NATIVE_AUTH_DATA)
    assert verify_native(NATIVE_AUTH_DATA, reply, native_hash2(b"pw")) == sha1(b"pw")
    assert verify_native(NATIVE_AUTH_DATA, reply, native_hash2(b"other")) is None
    assert verify_native(NATIVE_AUTH_DATA, reply[:-1], native_hash2(b"pw")) is None
    assert verify_native(NATIVE_AUTH_DATA, b"", b"") == b""
    assert verify_native(NATIVE_AUTH_DATA, reply, b"") is None


def test_verify_caching_sha2_rejects() -> None:
    reply = scramble_caching_sha2(b"pw", SHA256_SCRAMBLE)
    assert not verify_caching_sha2(SHA256_SCRAMBLE, reply, caching_sha2_digest(b"other"))
    assert not verify_caching_sha2(SHA256_SCRAMBLE, reply[:20], caching_sha2_digest(b"pw"))


# -- nonces --------------------------------------------------------------------------


def test_make_nonce_avoids_nul_and_dollar_and_high_bit() -> None:
    nonce = make_nonce(lambda n: bytes([0x00, 0x80, 0x24, 0xA4, 0xFF] * 4)[:n])
    assert len(nonce) == 20
    assert b"\x00" not in nonce and b"$" not in nonce
    assert max(nonce) < 0x80
    assert nonce[:5] == bytes([0x01, 0x01, 0x25, 0x25, 0x7F])


def test_nonce_from_plugin_data() -> None:
    assert nonce_from_plugin_data(b"A" * 20 + b"\x00") == b"A" * 20
    assert nonce_from_plugin_data(b"A" * 20) == b"A" * 20


# -- RSA -----------------------------------------------------------------------------

# The server public key of go-sql-driver/mysql's auth_test.go (without its 0x01 prefix).
GO_DRIVER_PUBLIC_KEY = b"""-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA3HsxS5P/HaXPvm3m2ADn
bu6GQfpSGo7h2gh81pmaxkCnDCwf6mmeH7LKhsnYnN4Q0cz1QE/bhdPu6js+VaY4
CcMubPN1gOKaYvNcgEWptICi2XTttB7uh+vCMjLvjAMd6/DmxdbUB0zPGqDOgiLD
KROO5qd7shb71R/XJEFvLxGXEF0ZthHeNo9fEvxFQomb1kZ9J8nBwte5SF5YlqV2
BB5qlaz+3QSNvmC1iWfljXbY5k3/a6mkM/LaWhauN5PR3sCx5Uu1MfdsVik5fXMM
dxkfF+X3chkAnwI3Fuww2WGmWOGbKtmIeUm3bIRmdFUqalQiFhqeZ2ikjhgVI9pL
wQIDAQAB
-----END PUBLIC KEY-----
"""


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return generate_rsa_key(2048)


def test_rsa_round_trip_and_pymysql_interop(rsa_key: rsa.RSAPrivateKey) -> None:
    cipher = encrypt_password(b"s3cret", SHA256_SCRAMBLE, rsa_key.public_key())
    assert decrypt_password(cipher, SHA256_SCRAMBLE, rsa_key) == b"s3cret"
    theirs = pymysql_auth.sha2_rsa_encrypt(b"s3cret", SHA256_SCRAMBLE, public_key_pem(rsa_key))
    assert decrypt_password(theirs, SHA256_SCRAMBLE, rsa_key) == b"s3cret"
    # A long password cycles through the nonce (MySQL's xor_string).
    long_password = b"p" * 100
    cipher = encrypt_password(long_password, SHA256_SCRAMBLE, rsa_key.public_key())
    assert decrypt_password(cipher, SHA256_SCRAMBLE, rsa_key) == long_password


def test_decrypt_garbage_is_none(rsa_key: rsa.RSAPrivateKey) -> None:
    assert decrypt_password(b"\x00" * 256, SHA256_SCRAMBLE, rsa_key) is None


def test_pem_helpers(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = private_key_pem(rsa_key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    again = load_private_key_pem(pem)
    assert public_key_pem(again) == public_key_pem(rsa_key.public_key())
    assert public_key_pem(rsa_key).startswith(b"-----BEGIN PUBLIC KEY-----")
    assert load_public_key_pem(GO_DRIVER_PUBLIC_KEY).key_size == 2048
    assert (
        len(encrypt_password(b"x", FULL_AUTH_DATA, load_public_key_pem(GO_DRIVER_PUBLIC_KEY)))
        == 256
    )


def test_non_rsa_keys_are_refused() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_private = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    ec_public = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError):
        load_private_key_pem(ec_private)
    with pytest.raises(RemoteProtocolError):
        load_public_key_pem(ec_public)
    with pytest.raises(RemoteProtocolError):
        load_public_key_pem(b"not a key")


# -- credentials -----------------------------------------------------------------------


def test_stored_credential_forms() -> None:
    plain = StoredCredential.from_password("pw")
    hashed = StoredCredential.from_native_hash(native_password_hash("pw"), CACHING_SHA2_PASSWORD)
    assert plain.hash2 == hashed.hash2 == native_hash2(b"pw")
    assert hashed.auth_plugin == CACHING_SHA2_PASSWORD
    assert plain.matches_cleartext(b"pw") and hashed.matches_cleartext(b"pw")
    assert not plain.matches_cleartext(b"px") and not hashed.matches_cleartext(b"px")
    assert StoredCredential.from_password("").is_empty
    assert StoredCredential.from_native_hash("").is_empty
    assert not plain.is_empty
    assert "pw" not in repr(plain) and "native_hash2" not in repr(hashed)


def test_stored_credential_validation() -> None:
    with pytest.raises(ValueError):
        StoredCredential()
    with pytest.raises(ValueError):
        StoredCredential(password=b"a", native_hash2=native_hash2(b"a"))
    with pytest.raises(ValueError):
        StoredCredential(native_hash2=b"short")


def test_backend_credential() -> None:
    with pytest.raises(ValueError):
        BackendCredential()
    with pytest.raises(ValueError):
        BackendCredential(password=b"a", hash1=sha1(b"a"))
    by_password = BackendCredential(password=b"pw")
    by_hash = BackendCredential(hash1=sha1(b"pw"))
    assert by_password.native_scramble(NATIVE_AUTH_DATA) == by_hash.native_scramble(
        NATIVE_AUTH_DATA
    )
    assert BackendCredential(password=b"").is_empty and not by_hash.is_empty
    assert "pw" not in repr(by_password)


# -- server plugins, driven directly ---------------------------------------------------


def drive(run: Generator[bytes, bytes, Any], replies: Sequence[bytes]) -> tuple[list[bytes], Any]:
    """Run a server plugin: collect what it sends, feed it `replies`, return its decision."""
    sent: list[bytes] = []
    pending = list(replies)
    try:
        sent.append(next(run))
        while True:
            sent.append(run.send(pending.pop(0)))
    except StopIteration as stop:
        assert not pending, "the plugin finished before reading every reply"
        return sent, stop.value


NONCE = SHA256_SCRAMBLE
PLAIN = StoredCredential.from_password("pw")
HASHED = StoredCredential.from_native_hash(native_password_hash("pw"))
EMPTY = StoredCredential.from_password("")


def test_native_server_with_plaintext() -> None:
    sent, decision = drive(native_password_server(PLAIN, NONCE, scramble_native(b"pw", NONCE)), [])
    assert sent == [] and decision == Success(BackendCredential(password=b"pw"))


def test_native_server_with_hash_only_recovers_hash1() -> None:
    _, decision = drive(native_password_server(HASHED, NONCE, scramble_native(b"pw", NONCE)), [])
    assert decision == Success(BackendCredential(hash1=sha1(b"pw")))


@pytest.mark.parametrize(
    ("credential", "reply"),
    [
        (PLAIN, scramble_native(b"wrong", NONCE)),
        (HASHED, scramble_native(b"wrong", NONCE)),
        (PLAIN, b""),
        (EMPTY, scramble_native(b"pw", NONCE)),
        (HASHED, b"\x01" * 19),
    ],
)
def test_native_server_refuses(credential: StoredCredential, reply: bytes) -> None:
    _, decision = drive(native_password_server(credential, NONCE, reply), [])
    assert isinstance(decision, Forbidden)


@pytest.mark.parametrize("plugin", sorted(SERVER_PLUGINS))
@pytest.mark.parametrize("reply", [b"", b"\x00"])
def test_empty_password_account(plugin: str, reply: bytes) -> None:
    _, decision = drive(SERVER_PLUGINS[plugin](EMPTY, NONCE, reply), [])
    assert decision == Success(BackendCredential(password=b""))


def test_caching_sha2_fast_path() -> None:
    reply = scramble_caching_sha2(b"pw", NONCE)
    sent, decision = drive(caching_sha2_password_server(PLAIN, NONCE, reply), [])
    assert sent == []
    assert decision == Success(BackendCredential(password=b"pw"), b"\x01\x03")


@pytest.mark.parametrize("credential", [PLAIN, HASHED])
def test_caching_sha2_full_over_tls(credential: StoredCredential) -> None:
    # HASHED cannot check the fast path; PLAIN gets here after a wrong (cache-miss) scramble.
    reply = scramble_caching_sha2(b"pw" if credential is HASHED else b"stale", NONCE)
    run = caching_sha2_password_server(credential, NONCE, reply, secure=True)
    sent, decision = drive(run, [b"pw\x00"])
    assert sent == [b"\x01\x04"]
    assert decision == Success(BackendCredential(password=b"pw"))


def test_caching_sha2_full_with_rsa(rsa_key: rsa.RSAPrivateKey) -> None:
    reply = scramble_caching_sha2(b"pw", NONCE)
    cipher = encrypt_password(b"pw", NONCE, rsa_key.public_key())
    run = caching_sha2_password_server(HASHED, NONCE, reply, rsa_key=rsa_key)
    sent, decision = drive(run, [REQUEST_PUBLIC_KEY, cipher])
    assert sent == [b"\x01\x04", b"\x01" + public_key_pem(rsa_key)]
    assert decision == Success(BackendCredential(password=b"pw"))


def test_caching_sha2_full_with_known_key(rsa_key: rsa.RSAPrivateKey) -> None:
    cipher = encrypt_password(b"pw", NONCE, rsa_key.public_key())
    run = caching_sha2_password_server(HASHED, NONCE, b"x" * 32, rsa_key=rsa_key)
    assert drive(run, [cipher])[1] == Success(BackendCredential(password=b"pw"))


@pytest.mark.parametrize(
    ("reply", "replies", "secure", "with_key"),
    [
        (b"x" * 31, [], False, True),  # not a SHA256 scramble
        (b"x" * 32, [b"wrong\x00"], True, False),  # wrong cleartext over TLS
        (b"x" * 32, [b""], True, False),  # empty cleartext
        (b"x" * 32, [REQUEST_PUBLIC_KEY], False, False),  # neither TLS nor RSA key
        (b"x" * 32, [b"\x00" * 256], False, True),  # undecryptable
    ],
)
def test_caching_sha2_refuses(
    rsa_key: rsa.RSAPrivateKey, reply: bytes, replies: list[bytes], secure: bool, with_key: bool
) -> None:
    run = caching_sha2_password_server(
        HASHED, NONCE, reply, secure=secure, rsa_key=rsa_key if with_key else None
    )
    assert isinstance(drive(run, replies)[1], Forbidden)


def test_server_plugin_lookup() -> None:
    assert server_plugin(NATIVE_PASSWORD) is native_password_server
    with pytest.raises(LocalProtocolError):
        server_plugin("auth_gssapi")


# -- client plugins ----------------------------------------------------------------------


def test_native_client() -> None:
    run = native_password_client(BackendCredential(hash1=sha1(b"pw")), NONCE)
    assert next(run) == scramble_native(b"pw", NONCE)
    with pytest.raises(RemoteProtocolError):
        run.send(b"\x03")


def test_caching_sha2_client_fast_path() -> None:
    run = caching_sha2_password_client(BackendCredential(password=b"pw"), NONCE)
    assert next(run) == scramble_caching_sha2(b"pw", NONCE)
    assert run.send(FAST_AUTH_SUCCESS) is None
    with pytest.raises(RemoteProtocolError):
        run.send(FAST_AUTH_SUCCESS)


def test_caching_sha2_client_full_over_tls() -> None:
    run = caching_sha2_password_client(BackendCredential(password=b"pw"), NONCE, secure=True)
    next(run)
    assert run.send(PERFORM_FULL_AUTHENTICATION) == b"pw\x00"
    with pytest.raises(RemoteProtocolError):
        run.send(b"\x03")


def test_caching_sha2_client_asks_for_the_key(rsa_key: rsa.RSAPrivateKey) -> None:
    run = caching_sha2_password_client(BackendCredential(password=b"pw"), NONCE)
    next(run)
    assert run.send(PERFORM_FULL_AUTHENTICATION) == REQUEST_PUBLIC_KEY
    cipher = run.send(public_key_pem(rsa_key))
    assert cipher is not None
    assert decrypt_password(cipher, NONCE, rsa_key) == b"pw"


def test_caching_sha2_client_with_configured_key(rsa_key: rsa.RSAPrivateKey) -> None:
    run = caching_sha2_password_client(
        BackendCredential(password=b"pw"), NONCE, server_public_key=public_key_pem(rsa_key)
    )
    next(run)
    cipher = run.send(PERFORM_FULL_AUTHENTICATION)
    assert cipher is not None and decrypt_password(cipher, NONCE, rsa_key) == b"pw"


def test_caching_sha2_client_refusals() -> None:
    with pytest.raises(MySQLError, match="plaintext"):
        next(caching_sha2_password_client(BackendCredential(hash1=sha1(b"pw")), NONCE))
    empty = caching_sha2_password_client(BackendCredential(password=b""), NONCE)
    assert next(empty) == b""
    with pytest.raises(RemoteProtocolError):
        empty.send(FAST_AUTH_SUCCESS)
    odd = caching_sha2_password_client(BackendCredential(password=b"pw"), NONCE)
    next(odd)
    with pytest.raises(RemoteProtocolError):
        odd.send(b"\x07")


@pytest.mark.parametrize("secure", [False, True])
@pytest.mark.parametrize("stored", [PLAIN, HASHED])
def test_caching_sha2_client_against_server(
    rsa_key: rsa.RSAPrivateKey, secure: bool, stored: StoredCredential
) -> None:
    """Our client plugin and our server plugin agree, whatever path the server takes."""
    client = caching_sha2_password_client(BackendCredential(password=b"pw"), NONCE, secure=secure)
    first = next(client)
    assert first is not None
    server = caching_sha2_password_server(stored, NONCE, first, secure=secure, rsa_key=rsa_key)
    try:
        to_client = next(server)
        while True:
            answer = client.send(to_client[1:])  # strip the AuthMoreData header
            assert answer is not None
            to_client = server.send(answer)
    except StopIteration as stop:
        decision = stop.value
    assert isinstance(decision, Success)
    assert decision.backend_credential == BackendCredential(password=b"pw")
