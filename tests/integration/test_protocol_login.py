"""The connection-phase state machines against real peers.

* ClientHandshake logs in to the real MariaDB pods (a tiny asyncio driver here), with the
  plaintext password and with SHA1(password) recovered by ServerHandshake from a client that
  logged in to a hash-only user (ProxySQL's trick, end to end).
* ServerHandshake, inside tests/support/mini_server.py, is logged in to by PyMySQL, aiomysql
  and the `mariadb` CLI with mysql_native_password and caching_sha2_password (fast path and
  full authentication over RSA), from a plaintext password and from a stored '*HEX' hash.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiomysql
import pymysql
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from proxy.protocol.auth import (
    CACHING_SHA2_PASSWORD,
    NATIVE_PASSWORD,
    BackendCredential,
    StoredCredential,
    generate_rsa_key,
    native_password_hash,
    sha1,
)
from proxy.protocol.constants import ErrorCode
from proxy.protocol.framing import PacketFramer, frame
from proxy.protocol.handshake import ClientEvent, ClientHandshake, Failed, Ready
from tests.integration.cluster_fixture import ClusterHandle
from tests.support.mariadb_cli import cli_command, needs_cli
from tests.support.mini_server import MiniServer

pytestmark = pytest.mark.integration

TIMEOUT = 10.0
PASSWORD = "p4ss-word"  # ASCII: clients disagree on how to encode the rest
USERS = {
    "plain": StoredCredential.from_password(PASSWORD),
    "hashed": StoredCredential.from_native_hash(native_password_hash(PASSWORD)),
}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return generate_rsa_key()


# -- ClientHandshake -> MariaDB ----------------------------------------------------------


async def log_in(host: str, port: int, handshake: ClientHandshake) -> tuple[ClientEvent, bytes]:
    """Drive `handshake` over a real socket; return its outcome and the reply to SELECT 1."""
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            outcome = await _handshake(reader, writer, handshake)
            reply = b""
            if isinstance(outcome, Ready):
                writer.write(frame(b"\x03SELECT 1", 0))
                reply = await _read_reply(reader)
            return outcome, reply
        finally:
            writer.close()


async def _handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handshake: ClientHandshake
) -> ClientEvent:
    while True:
        data = await reader.read(65536)
        assert data, "the server closed the connection during the handshake"
        events = handshake.receive_data(data)
        writer.write(handshake.data_to_send())
        for event in events:
            if isinstance(event, Ready | Failed):
                return event


async def _read_reply(reader: asyncio.StreamReader) -> bytes:
    """Enough of a text result set to see its row: the packets until the last EOF/OK."""
    framer, payloads = PacketFramer(), list[bytes]()
    while not payloads or payloads[-1][:1] != b"\xfe":
        payloads += [p.payload for p in framer.feed(await reader.read(65536))]
    return b"".join(payloads)


async def test_client_handshake_logs_in_to_mariadb(cluster: ClusterHandle) -> None:
    credentials = cluster.app
    handshake = ClientHandshake(
        credentials.user,
        BackendCredential(password=credentials.password.encode()),
        cluster.database,
        connect_attrs={"program_name": "rwproxy-test"},
    )
    outcome, reply = await log_in(cluster.address(cluster.primary), cluster.port, handshake)
    assert isinstance(outcome, Ready), outcome
    assert "MariaDB" in outcome.server_version
    assert b"\x011" in reply  # the row of SELECT 1
    # What MariaDB saw: our user, our attributes.
    rows = cluster.query(
        cluster.primary,
        "SELECT ATTR_VALUE FROM performance_schema.session_connect_attrs"
        " WHERE PROCESSLIST_ID = %s AND ATTR_NAME = 'program_name'",
        (outcome.connection_id,),
    )
    assert rows in ((), (("rwproxy-test",),))  # empty when performance_schema is off


async def test_client_handshake_wrong_password(cluster: ClusterHandle) -> None:
    handshake = ClientHandshake(cluster.app.user, BackendCredential(password=b"wrong"))
    outcome, _ = await log_in(cluster.address(cluster.primary), cluster.port, handshake)
    assert isinstance(outcome, Failed)
    assert outcome.error.code == ErrorCode.ER_ACCESS_DENIED_ERROR
    assert outcome.error.sqlstate == "28000"


async def test_recovered_hash1_logs_in_to_mariadb(cluster: ClusterHandle) -> None:
    """An application logs in to a hash-only user; the proxy reuses SHA1(pw) on the pod."""
    app = cluster.app
    users = {app.user: StoredCredential.from_native_hash(native_password_hash(app.password))}
    async with MiniServer(users) as server:
        await asyncio.to_thread(pymysql_select_1, server.port, app.user, app.password)
    (login,) = server.logins
    assert login.backend_credential == BackendCredential(hash1=sha1(app.password.encode()))
    handshake = ClientHandshake(app.user, login.backend_credential, cluster.database)
    outcome, reply = await log_in(cluster.address(cluster.primary), cluster.port, handshake)
    assert isinstance(outcome, Ready), outcome
    assert b"\x011" in reply


# -- clients -> ServerHandshake (mini server) ---------------------------------------------


def pymysql_select_1(port: int, user: str, password: str, **kwargs: Any) -> Any:
    conn = pymysql.connect(
        host="127.0.0.1",
        port=port,
        user=user,
        password=password,
        ssl_disabled=True,
        connect_timeout=TIMEOUT,
        read_timeout=TIMEOUT,
        **kwargs,
    )
    with conn, conn.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()


async def aiomysql_select_1(port: int, user: str, password: str) -> Any:
    conn = await aiomysql.connect(
        host="127.0.0.1", port=port, user=user, password=password, connect_timeout=TIMEOUT
    )
    try:
        async with conn.cursor() as cursor:
            await cursor.execute("SELECT 1")
            return await cursor.fetchone()
    finally:
        conn.close()


async def cli_select_1(port: int, user: str, password: str, *extra: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *cli_command(port, user, password, *extra, "-e", "select 1"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(TIMEOUT):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, (out + err).decode()


SERVER_CASES = [
    pytest.param(NATIVE_PASSWORD, "plain", id="native-plaintext"),
    pytest.param(NATIVE_PASSWORD, "hashed", id="native-stored-hash"),
    pytest.param(CACHING_SHA2_PASSWORD, "plain", id="caching_sha2-fast"),
    pytest.param(CACHING_SHA2_PASSWORD, "hashed", id="caching_sha2-full-rsa"),
]


def expected_credential(user: str) -> BackendCredential:
    if user == "hashed":
        return BackendCredential(hash1=sha1(PASSWORD.encode()))
    return BackendCredential(password=PASSWORD.encode())


def check_login(server: MiniServer, plugin: str, user: str) -> None:
    (login,) = server.logins
    assert (login.username, login.auth_plugin_name) == (user, plugin)
    credential = expected_credential(user)
    if plugin == CACHING_SHA2_PASSWORD:  # full authentication yields the plaintext
        credential = BackendCredential(password=PASSWORD.encode())
    assert login.backend_credential == credential


@pytest.mark.parametrize(("plugin", "user"), SERVER_CASES)
async def test_pymysql_logs_in(rsa_key: rsa.RSAPrivateKey, plugin: str, user: str) -> None:
    async with MiniServer(USERS, default_auth_plugin=plugin, rsa_key=rsa_key) as server:
        row = await asyncio.to_thread(pymysql_select_1, server.port, user, PASSWORD)
    assert row == (1,)
    check_login(server, plugin, user)


@pytest.mark.parametrize(("plugin", "user"), SERVER_CASES)
async def test_aiomysql_logs_in(rsa_key: rsa.RSAPrivateKey, plugin: str, user: str) -> None:
    async with MiniServer(USERS, default_auth_plugin=plugin, rsa_key=rsa_key) as server:
        row = await aiomysql_select_1(server.port, user, PASSWORD)
    assert row == (1,)
    check_login(server, plugin, user)


@needs_cli
@pytest.mark.parametrize(("plugin", "user"), SERVER_CASES)
async def test_mariadb_cli_logs_in(rsa_key: rsa.RSAPrivateKey, plugin: str, user: str) -> None:
    # Full authentication needs --skip-ssl: see test_mariadb_cli_full_auth_with_default_ssl.
    extra = ("--skip-ssl",) if (plugin, user) == (CACHING_SHA2_PASSWORD, "hashed") else ()
    async with MiniServer(USERS, default_auth_plugin=plugin, rsa_key=rsa_key) as server:
        status, output = await cli_select_1(server.port, user, PASSWORD, *extra)
    assert status == 0, output
    assert output.split() == ["1", "1"]
    check_login(server, plugin, user)


@needs_cli
async def test_mariadb_cli_full_auth_with_default_ssl(rsa_key: rsa.RSAPrivateKey) -> None:
    """With its default --ssl, the CLI (Connector/C 3.3) answers perform_full_authentication
    with the password in clear even though the server offered no TLS. MySQL refuses that
    (the reply is not an RSA block), and so do we; with --skip-ssl it asks for our RSA key."""
    users = {"hashed": USERS["hashed"]}
    async with MiniServer(
        users, default_auth_plugin=CACHING_SHA2_PASSWORD, rsa_key=rsa_key
    ) as server:
        status, output = await cli_select_1(server.port, "hashed", PASSWORD)
    assert status == 1 and "ERROR 1045 (28000)" in output
    (rejected,) = server.rejections
    assert rejected.reason == "RSA-encrypted password did not decrypt"


@pytest.mark.parametrize("plugin", [NATIVE_PASSWORD, CACHING_SHA2_PASSWORD])
@pytest.mark.parametrize("user", ["plain", "nobody"])
async def test_pymysql_is_denied(rsa_key: rsa.RSAPrivateKey, plugin: str, user: str) -> None:
    async with MiniServer(USERS, default_auth_plugin=plugin, rsa_key=rsa_key) as server:
        with pytest.raises(pymysql.err.OperationalError) as caught:
            await asyncio.to_thread(pymysql_select_1, server.port, user, "wrong")
    code, message = caught.value.args
    assert code == ErrorCode.ER_ACCESS_DENIED_ERROR
    assert message == f"Access denied for user '{user}'@'127.0.0.1' (using password: YES)"
    assert len(server.rejections) == 1
