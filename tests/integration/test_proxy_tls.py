"""TLS on both legs of the proxy, against the real local cluster.

Backend leg (``backend_tls``): the pods always offer TLS with certificates from the cluster's CA
that name their FQDNs. With verify_identity the proxy connects to each pod's IP, verifies its
FQDN, and the pod itself says the session is encrypted (``Ssl_version`` asked through the proxy,
on the writer and on a replica, in one statement that also names the server). With pods that
*require* TLS (`up(tls=True)`) the proxy works only if its monitor connections use TLS too. A CA
that did not sign the pods, or another pod's name, fails the connection with a reason naming the
pod and TLS; a client sees an ERR, not a hang. ``required`` against a server without TLS is
refused (a `MiniServer`, which offers none).

Client leg (``tls``): PyMySQL, the mariadb CLI and mysql-connector (caching_sha2_password) log
in over TLS and verify the proxy's certificate for 127.0.0.1; an SSLRequest sent in the same
segment as the ClientHello works; caching_sha2 full authentication over TLS hands the proxy the
password it logs in to the pods with; ``tls.require`` refuses a plaintext login with 3159; a
rotated certificate is served to the next connection.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from proxy.backend import BackendError, BackendTls, PoolKey, open_backend, tls_server_name
from proxy.config import BackendTlsConfig, DiscoveryConfig, RoutingConfig, TlsConfig
from proxy.devcluster.certs import Authority, CertFiles
from proxy.protocol.auth import (
    CACHING_SHA2_PASSWORD,
    BackendCredential,
    StoredCredential,
    native_password_hash,
)
from proxy.protocol.constants import ErrorCode
from proxy.protocol.handshake import ClientHandshake, Ready, TlsRequested
from proxy.tls import backend_context
from proxy.topology.health import connect_monitor
from proxy.topology.model import Endpoint
from tests.integration.cluster_fixture import ClusterHandle
from tests.support.mariadb_cli import mariadb_cli, needs_cli
from tests.support.mini_server import MiniServer
from tests.support.proxy_harness import ProxyThread, cluster_config

pytestmark = pytest.mark.integration

TIMEOUT = 10.0
ER_SECURE_TRANSPORT_REQUIRED = 3159
# One statement that says which server ran it and whether its session is encrypted.
WHO_AND_TLS = (
    "SELECT @@server_id, (SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS"
    " WHERE VARIABLE_NAME = 'SSL_VERSION')"
)
Start = Callable[..., ProxyThread]


def ca_file(cluster: ClusterHandle) -> Path:
    return cluster.cluster.certs.ca_file


def verify_identity(cluster: ClusterHandle) -> BackendTlsConfig:
    return BackendTlsConfig(mode="verify_identity", ca_file=ca_file(cluster))


def proxy_tls(cluster: ClusterHandle, **extra: Any) -> TlsConfig:
    files = cluster.cluster.certs.proxy()
    return TlsConfig(cert_file=files.cert, key_file=files.key, **extra)


def connect(port: int, *, ssl_ca: Path | None = None, **extra: Any) -> pymysql.Connection:
    # PyMySQL >= 1.2 prefers TLS when the server offers it: plaintext must be asked for.
    tls: dict[str, Any] = {"ssl": {"ca": str(ssl_ca)}} if ssl_ca else {"ssl_disabled": True}
    return pymysql.connect(
        host="127.0.0.1",
        port=port,
        user="app",
        password=extra.pop("password", "app-password"),
        database="app",
        autocommit=True,
        connect_timeout=TIMEOUT,
        read_timeout=TIMEOUT,
        **tls,
        **extra,
    )


def server_ids(cluster: ClusterHandle) -> dict[int, str]:
    return {int(cluster.query(pod, "SELECT @@server_id")[0][0]): pod for pod in cluster.pods}


def who_and_tls(conn: pymysql.Connection, sql: str) -> tuple[int, str]:
    with conn.cursor() as cursor:
        cursor.execute(sql)
        server_id, version = cursor.fetchone()
    return int(server_id), str(version or "")


def assert_pods_speak_tls(
    cluster: ClusterHandle, proxy: ProxyThread, ids: dict[int, str] | None = None
) -> None:
    """Through the proxy: the writer (hinted) and a replica (a plain read) both run the
    statement in a TLS session, as the pods themselves report."""
    ids = ids or server_ids(cluster)
    with connect(proxy.port) as conn:
        on_writer = who_and_tls(conn, f"/* rwproxy:primary */ {WHO_AND_TLS}")
        on_replica = who_and_tls(conn, WHO_AND_TLS)
    assert ids[on_writer[0]] == cluster.primary
    assert ids[on_replica[0]] in cluster.replicas
    assert on_writer[1] in ("TLSv1.2", "TLSv1.3")
    assert on_replica[1] in ("TLSv1.2", "TLSv1.3")


# -- backend leg --------------------------------------------------------------------------------


def test_verify_identity_runs_statements_on_pods_over_tls(
    cluster: ClusterHandle, start_proxy: Start
) -> None:
    proxy = start_proxy(backend_tls=verify_identity(cluster))
    assert_pods_speak_tls(cluster, proxy)


def test_preferred_uses_tls_when_the_pods_offer_it(
    cluster: ClusterHandle, start_proxy: Start
) -> None:
    proxy = start_proxy(backend_tls=BackendTlsConfig(mode="preferred"))
    assert_pods_speak_tls(cluster, proxy)


def test_pods_that_require_tls_are_used_over_tls(
    disrupted_cluster: ClusterHandle, start_proxy: Start
) -> None:
    """Plaintext logins are refused by every pod now: the proxy's health checks (monitor
    connections) and its pooled connections must all be TLS for anything to work."""
    cluster = disrupted_cluster
    ids = server_ids(cluster)  # asked in clear, while the pods still allow it
    cluster.cluster.up(tls=True)
    assert cluster.status().tls_required
    proxy = start_proxy(backend_tls=verify_identity(cluster))
    health = proxy.call(lambda p: {pod: h.reachable for pod, h in p.ctx.topology().health.items()})
    assert health == dict.fromkeys(cluster.pods, True)
    assert_pods_speak_tls(cluster, proxy, ids)


def wrong_ca(tmp_path: Path) -> Path:
    path = tmp_path / "other-ca.pem"
    cert = Authority.create("not the cluster's CA").cert
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


async def open_over_tls(
    cluster: ClusterHandle, pod: str, tls_config: BackendTlsConfig, server_hostname: str
) -> None:
    context = backend_context(tls_config)
    assert context is not None
    endpoint = Endpoint(pod, cluster.address(pod), cluster.port)
    handshake = ClientHandshake(
        "app", BackendCredential(password=b"app-password"), tls_possible=True, tls_required=True
    )
    conn = await open_backend(
        endpoint,
        PoolKey("app", 0, 45),
        handshake,
        connect_timeout=TIMEOUT,
        tls=BackendTls(context, server_hostname, TIMEOUT),
    )
    try:
        assert conn.tls
        rows = await conn.query(b"SHOW SESSION STATUS LIKE 'Ssl_version'", TIMEOUT)
        assert rows[0][1] in (b"TLSv1.2", b"TLSv1.3")
    finally:
        conn.abort("test done")


async def test_open_backend_verifies_the_pod_fqdn(cluster: ClusterHandle) -> None:
    pod = cluster.primary
    name = tls_server_name(DiscoveryConfig(), Endpoint(pod, cluster.address(pod), cluster.port))
    assert name == cluster.pod_fqdn(pod) == "mysql-0.mysql-h.default.svc.cluster.local"
    await open_over_tls(cluster, pod, verify_identity(cluster), name)


async def test_open_backend_refuses_a_pod_signed_by_another_ca(
    cluster: ClusterHandle, tmp_path: Path
) -> None:
    config = BackendTlsConfig(mode="verify_identity", ca_file=wrong_ca(tmp_path))
    pod = cluster.primary
    with pytest.raises(BackendError) as failed:
        await open_over_tls(cluster, pod, config, cluster.pod_fqdn(pod))
    message = str(failed.value)
    assert message.startswith(f"{pod} ({cluster.address(pod)}:{cluster.port}): TLS: ")
    assert "certificate verify failed" in message


async def test_open_backend_refuses_another_pods_name(cluster: ClusterHandle) -> None:
    pod, other = cluster.primary, cluster.replicas[0]
    with pytest.raises(BackendError, match=r"TLS: certificate verify failed: Hostname mismatch"):
        await open_over_tls(cluster, pod, verify_identity(cluster), cluster.pod_fqdn(other))


async def test_required_refuses_a_server_without_tls() -> None:
    users = {"app": StoredCredential.from_password("app-password")}
    async with MiniServer(users) as server:  # offers no CLIENT_SSL
        context = backend_context(BackendTlsConfig(mode="required"))
        assert context is not None
        handshake = ClientHandshake(
            "app", BackendCredential(password=b"app-password"), tls_required=True
        )
        with pytest.raises(BackendError) as failed:
            await open_backend(
                Endpoint("mini", "127.0.0.1", server.port),
                PoolKey("app", 0, 45),
                handshake,
                connect_timeout=TIMEOUT,
                tls=BackendTls(context, "mini", TIMEOUT),
            )
    assert failed.value.error is not None
    assert failed.value.error.code == ErrorCode.CR_SSL_CONNECTION_ERROR
    assert not server.logins  # no credential went over the wire


def test_a_wrong_ca_gives_the_client_an_error_naming_the_pod_and_tls(
    cluster: ClusterHandle, start_proxy: Start, tmp_path: Path
) -> None:
    config = BackendTlsConfig(mode="verify_identity", ca_file=wrong_ca(tmp_path))
    proxy = start_proxy(backend_tls=config, routing=RoutingConfig(writer_wait_timeout_seconds=1.0))
    started = time.monotonic()
    with (  # PyMySQL's SET NAMES at connect is the first statement to need the writer
        pytest.raises(pymysql.err.MySQLError) as failed,
        connect(proxy.port) as conn,
        conn.cursor() as cursor,
    ):
        cursor.execute("/* rwproxy:primary */ SELECT 1")
    assert time.monotonic() - started < TIMEOUT
    message = str(failed.value)
    assert cluster.primary in message and "TLS" in message, message
    assert "certificate verify failed" in message, message


# -- client leg ---------------------------------------------------------------------------------


def test_pymysql_over_tls_verifies_the_proxy(cluster: ClusterHandle, start_proxy: Start) -> None:
    proxy = start_proxy(tls=proxy_tls(cluster), backend_tls=verify_identity(cluster))
    with connect(proxy.port, ssl_ca=ca_file(cluster)) as conn:
        sock = conn._sock
        assert isinstance(sock, ssl.SSLSocket)
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
    assert_pods_speak_tls(cluster, proxy)  # and plaintext clients still work


def test_a_client_that_does_not_trust_the_proxy_fails(
    cluster: ClusterHandle, start_proxy: Start, tmp_path: Path
) -> None:
    proxy = start_proxy(tls=proxy_tls(cluster))
    with pytest.raises(pymysql.err.OperationalError, match="certificate verify failed"):
        connect(proxy.port, ssl_ca=wrong_ca(tmp_path))
    with connect(proxy.port, ssl_ca=ca_file(cluster)) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT 2")
        assert cursor.fetchone() == (2,)


@needs_cli
def test_mariadb_cli_over_tls(cluster: ClusterHandle, start_proxy: Start) -> None:
    proxy = start_proxy(tls=proxy_tls(cluster, require=True))
    verify = ("--ssl", f"--ssl-ca={ca_file(cluster)}", "--ssl-verify-server-cert")
    output = mariadb_cli(
        proxy.port, "app", "app-password", "app", "-e", "status; select 40 + 2", tls=verify
    )
    assert "Cipher in use is" in output, output
    assert "42" in output.split()


def test_require_refuses_plaintext_logins_with_3159(
    cluster: ClusterHandle, start_proxy: Start
) -> None:
    proxy = start_proxy(tls=proxy_tls(cluster, require=True))
    for password in ("app-password", "wrong"):
        with pytest.raises(pymysql.err.OperationalError) as refused:
            connect(proxy.port, password=password)
        code, message = refused.value.args
        assert code == ER_SECURE_TRANSPORT_REQUIRED
        assert "insecure transport are prohibited" in message
    with connect(proxy.port, ssl_ca=ca_file(cluster)) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT 3")
        assert cursor.fetchone() == (3,)
    refused_total = proxy.call(
        lambda p: p.metrics.client_refused_total.labels("tls_required")._value.get()
    )
    assert refused_total == 2


def test_mysql_connector_caching_sha2_over_tls(cluster: ClusterHandle, start_proxy: Start) -> None:
    mysql_connector = pytest.importorskip("mysql.connector")
    proxy = start_proxy(tls=proxy_tls(cluster, require=True))
    conn = mysql_connector.connect(
        host="127.0.0.1",
        port=proxy.port,
        user="app",
        password="app-password",
        database="app",
        auth_plugin="caching_sha2_password",
        ssl_ca=str(ca_file(cluster)),
        ssl_verify_cert=True,
        ssl_verify_identity=True,
        connection_timeout=int(TIMEOUT),
    )
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT 4")
        assert cursor.fetchone() == (4,)
        cursor.close()
    finally:
        conn.close()


def test_caching_sha2_full_authentication_over_tls(
    cluster: ClusterHandle, start_proxy: Start
) -> None:
    """A hash-only caching_sha2 user cannot use the fast path: the proxy asks for full
    authentication, which over TLS is the password in clear, and then logs in to the pods
    with it (they know only the password)."""
    proxy = start_proxy(tls=proxy_tls(cluster))

    def hash_only(p: Any) -> None:
        stored = StoredCredential.from_native_hash(
            native_password_hash("app-password"), auth_plugin=CACHING_SHA2_PASSWORD
        )
        p.credentials._store = {**p.credentials._store, "app": stored}

    proxy.call(hash_only)
    with connect(proxy.port, ssl_ca=ca_file(cluster)) as conn, conn.cursor() as cursor:
        assert isinstance(conn._sock, ssl.SSLSocket)
        cursor.execute("/* rwproxy:primary */ SELECT CURRENT_USER()")
        assert str(cursor.fetchone()[0]).startswith("app@")
    learnt = proxy.call(lambda p: p.ctx._backend_credentials["app"])
    assert learnt == BackendCredential(password=b"app-password")


def test_ssl_request_and_client_hello_in_one_segment(
    cluster: ClusterHandle, start_proxy: Start
) -> None:
    """A client may send its ClientHello right behind the SSLRequest: both arrive in one read,
    and the TLS layer must get the rest of that read."""
    proxy = start_proxy(tls=proxy_tls(cluster))
    context = ssl.create_default_context(cafile=str(ca_file(cluster)))
    handshake = ClientHandshake(
        "app", BackendCredential(password=b"app-password"), "app", tls_possible=True
    )
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_object = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as sock:
        events: list[Any] = []
        while not events:
            events = handshake.receive_data(sock.recv(65536))
        assert events == [TlsRequested()]
        with pytest.raises(ssl.SSLWantReadError):
            tls_object.do_handshake()
        sock.sendall(handshake.data_to_send() + outgoing.read())  # one segment
        while True:
            try:
                tls_object.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                chunk = sock.recv(65536)
                assert chunk, "the proxy closed the connection during the TLS handshake"
                incoming.write(chunk)
        sock.sendall(outgoing.read())
        handshake.tls_established()
        tls_object.write(handshake.data_to_send())
        sock.sendall(outgoing.read())
        events = []
        while not events:
            try:
                events = handshake.receive_data(tls_object.read(65536))
            except ssl.SSLWantReadError:
                chunk = sock.recv(65536)
                assert chunk, "the proxy closed the connection after the TLS handshake"
                incoming.write(chunk)
        (ready,) = events
        assert isinstance(ready, Ready), ready


def test_a_rotated_certificate_is_served_to_new_connections(
    cluster: ClusterHandle, start_proxy: Start, tmp_path: Path
) -> None:
    authority = cluster.cluster.certs.authority()
    files = CertFiles(tmp_path / "proxy.pem", tmp_path / "proxy-key.pem")

    def issue() -> bytes:
        issued = authority.issue("localhost", dns_names=["localhost"], ip_addresses=["127.0.0.1"])
        issued.write(files)
        return issued.cert.public_bytes(serialization.Encoding.DER)

    first = issue()
    tls = TlsConfig(cert_file=files.cert, key_file=files.key, reload_interval_seconds=0.1)
    proxy = start_proxy(tls=tls)
    with connect(proxy.port, ssl_ca=ca_file(cluster)) as old:
        assert old._sock.getpeercert(binary_form=True) == first
        second = issue()
        assert x509.load_der_x509_certificate(second).serial_number != (
            x509.load_der_x509_certificate(first).serial_number
        )
        deadline = time.monotonic() + TIMEOUT
        seen = first
        while seen != second and time.monotonic() < deadline:
            time.sleep(0.15)
            with connect(proxy.port, ssl_ca=ca_file(cluster)) as new:
                seen = new._sock.getpeercert(binary_form=True)
        assert seen == second
        with old.cursor() as cursor:  # an open connection keeps its session
            cursor.execute("SELECT 5")
            assert cursor.fetchone() == (5,)


def test_proxy_start_fails_on_a_key_that_does_not_match(
    cluster: ClusterHandle, tmp_path: Path
) -> None:
    certs = cluster.cluster.certs
    tls = TlsConfig(cert_file=certs.proxy().cert, key_file=certs.client().key)
    with pytest.raises(RuntimeError, match="does not match the certificate"):
        ProxyThread(cluster_config(tls=tls)).start()


async def test_monitor_connections_verify_the_fqdn_not_the_address(cluster: ClusterHandle) -> None:
    """Pod certificates also name their IPs; a monitor connection must check the FQDN it is
    given, so another pod's FQDN fails even though the address would have matched."""
    context = backend_context(verify_identity(cluster))
    pod, other = cluster.primary, cluster.replicas[0]

    async def connect(name: str) -> Any:
        return await connect_monitor(
            host=cluster.address(pod),
            port=cluster.port,
            user="monitor",
            password="monitor-password",
            connect_timeout=TIMEOUT,
            ssl=context,
            server_hostname=name,
            tls_required=True,
        )

    conn = await connect(cluster.pod_fqdn(pod))
    try:
        async with conn.cursor() as cursor:
            await cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
            assert (await cursor.fetchone())[1] in ("TLSv1.2", "TLSv1.3")
    finally:
        conn.close()
    with pytest.raises(pymysql.err.OperationalError) as failed:
        await connect(cluster.pod_fqdn(other))
    assert isinstance(failed.value.__cause__, ssl.SSLCertVerificationError)
    assert "Hostname mismatch" in str(failed.value.__cause__)


def test_drain_closes_idle_tls_clients_at_once(cluster: ClusterHandle, start_proxy: Start) -> None:
    """Closing a TLS transport waits for the client's close_notify, which an idle client never
    sends: the session must end anyway, not at shutdown_timeout."""
    proxy = start_proxy(tls=proxy_tls(cluster), shutdown_timeout_seconds=20.0)
    with connect(proxy.port, ssl_ca=ca_file(cluster)) as idle:
        assert isinstance(idle._sock, ssl.SSLSocket)
        started = time.monotonic()
        proxy.stop()
        assert time.monotonic() - started < 5.0
