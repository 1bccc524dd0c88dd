"""The local cluster's pods speak TLS with certificates the proxy can verify.

Every pod offers TLS with a certificate from the cluster's CA (`<state dir>/tls/ca.pem`) that
names its DNS names. These tests connect by IP and verify the *name*, exactly as the proxy will
with `backend_tls.mode: verify_identity` (the contexts come from `proxy.tls.backend_context`),
both with PyMySQL and with the proxy's own `ClientHandshake` driven over a TLS socket. The
`--tls` test turns `require_secure_transport` on and back off (through `disrupted_cluster`).
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pymysql
import pytest

from proxy import tls
from proxy.config import BackendTlsConfig
from proxy.devcluster.certs import Authority
from proxy.devcluster.process import wait_until
from proxy.protocol import commands as cmd
from proxy.protocol.auth import BackendCredential
from proxy.protocol.constants import Capability, Command
from proxy.protocol.framing import frame
from proxy.protocol.handshake import ClientEvent, ClientHandshake, Ready, TlsRequested
from proxy.protocol.response import ResponseTracker
from proxy.protocol.resultset import decode_text_rows
from tests.integration.cluster_fixture import ClusterHandle

pytestmark = pytest.mark.integration

TIMEOUT = 5.0
# MariaDB 10.11 refuses a plaintext login under require_secure_transport with a plain
# ER_ACCESS_DENIED_ERROR (MySQL has ER_SECURE_TRANSPORT_REQUIRED, 3159).
ER_ACCESS_DENIED_ERROR = 1045


def ca_file(cluster: ClusterHandle) -> Path:
    return cluster.cluster.certs.ca_file


def context(mode: str, ca: Path | None) -> ssl.SSLContext:
    built = tls.backend_context(BackendTlsConfig(mode=mode, ca_file=ca))
    assert built is not None
    return built


def connect(
    cluster: ClusterHandle,
    pod: str,
    ssl_context: ssl.SSLContext,
    server_hostname: str,
    user: str = "app",
) -> pymysql.Connection:
    """PyMySQL to the pod's IP, with TLS checking ``server_hostname`` (PyMySQL verifies the
    host it was given, so it gets the name and a socket already connected to the IP)."""
    conn = pymysql.connect(
        host=server_hostname,
        port=cluster.port,
        user=user,
        password=cluster.credentials(user).password,
        database=cluster.database,
        ssl=ssl_context,
        autocommit=True,
        defer_connect=True,
        connect_timeout=TIMEOUT,
        read_timeout=TIMEOUT,
    )
    sock = socket.create_connection((cluster.address(pod), cluster.port), timeout=TIMEOUT)
    try:
        conn.connect(sock)
    except BaseException:
        sock.close()
        raise
    return conn


def status(conn: pymysql.Connection, name: str) -> str:
    with conn.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE %s", (name,))
        row = cursor.fetchone()
    return str(row[1]) if row else ""


def test_every_pod_has_tls(cluster: ClusterHandle) -> None:
    for pod in cluster.pods:
        assert cluster.query(pod, "SHOW VARIABLES LIKE 'have_ssl'") == (("have_ssl", "YES"),)


@pytest.mark.parametrize("ordinal", [0, 1, 2])
def test_verify_identity_connects_by_ip_and_checks_the_pod_fqdn(
    cluster: ClusterHandle, ordinal: int
) -> None:
    pod = cluster.pods[ordinal]
    verify = context("verify_identity", ca_file(cluster))
    with connect(cluster, pod, verify, cluster.pod_fqdn(pod)) as conn:
        assert status(conn, "Ssl_version") in ("TLSv1.2", "TLSv1.3")
        assert status(conn, "Ssl_cipher")


def test_verify_identity_refuses_another_pods_name(cluster: ClusterHandle) -> None:
    primary, replica = cluster.primary, cluster.replicas[0]
    verify = context("verify_identity", ca_file(cluster))
    with pytest.raises(pymysql.err.OperationalError, match="Hostname mismatch"):
        connect(cluster, primary, verify, cluster.pod_fqdn(replica))


def test_verify_ca_refuses_a_pod_whose_ca_is_not_trusted(
    cluster: ClusterHandle, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization

    other = tmp_path / "other-ca.pem"
    other.write_bytes(
        Authority.create("not the cluster's").cert.public_bytes(serialization.Encoding.PEM)
    )
    with pytest.raises(pymysql.err.OperationalError, match="certificate verify failed"):
        connect(cluster, cluster.primary, context("verify_ca", other), "any-name")


def test_required_encrypts_without_verifying(cluster: ClusterHandle) -> None:
    with connect(cluster, cluster.primary, context("required", None), "any-name") as conn:
        assert status(conn, "Ssl_version")


def query_over_our_handshake(
    cluster: ClusterHandle, pod: str, sql: bytes
) -> list[list[bytes | None]]:
    """Log in with the proxy's sans-I/O ClientHandshake over TLS, as BackendConnection will:
    greeting -> SSLRequest -> TLS (server_hostname = FQDN) -> tls_established() ->
    HandshakeResponse41 over TLS -> OK; then one COM_QUERY."""
    handshake = ClientHandshake(
        cluster.app.user,
        BackendCredential(password=cluster.app.password.encode()),
        cluster.database,
        tls_required=tls.needs_tls("verify_identity"),
    )
    raw = socket.create_connection((cluster.address(pod), cluster.port), timeout=TIMEOUT)
    with raw:
        events: list[ClientEvent] = []
        while not events:
            events = handshake.receive_data(raw.recv(65536))
        assert events == [TlsRequested()]
        assert handshake.trailing_data == b""  # the pod waits for our ClientHello
        raw.sendall(handshake.data_to_send())  # the SSLRequest, in clear
        verify = context("verify_identity", ca_file(cluster))
        with verify.wrap_socket(raw, server_hostname=cluster.pod_fqdn(pod)) as conn:
            handshake.tls_established()
            conn.sendall(handshake.data_to_send())
            while not events or events == [TlsRequested()]:
                events = handshake.receive_data(conn.recv(65536))
                conn.sendall(handshake.data_to_send())
            (ready,) = events
            assert isinstance(ready, Ready), ready
            assert handshake.tls and ready.capabilities & Capability.CLIENT_SSL
            tracker = ResponseTracker(ready.capabilities)
            tracker.start(Command.COM_QUERY)
            conn.sendall(frame(cmd.build_query(sql), 0))
            reply = bytearray()
            while not tracker.done:
                chunk = conn.recv(65536)
                assert chunk, "pod closed the connection"
                reply += chunk[: tracker.feed(chunk)]
            return decode_text_rows(bytes(reply), ready.capabilities)


def test_the_proxys_client_handshake_logs_in_over_tls(cluster: ClusterHandle) -> None:
    rows = query_over_our_handshake(cluster, cluster.primary, b"SHOW STATUS LIKE 'Ssl_version'")
    assert rows and rows[0][0] == b"Ssl_version"
    assert rows[0][1] in (b"TLSv1.2", b"TLSv1.3")


def test_cluster_status_says_tls_is_offered_and_where_the_ca_is(cluster: ClusterHandle) -> None:
    command = [
        sys.executable,
        "-m",
        "proxy",
        "cluster",
        "status",
        "--state-dir",
        str(cluster.state_dir),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert f"TLS: offered by every pod, optional (up --tls requires it); CA {ca_file(cluster)}" in (
        done.stdout
    )
    assert cluster.status().ca_file == ca_file(cluster)
    assert not cluster.status().tls_required


def test_up_tls_requires_tls_and_keeps_replicating(disrupted_cluster: ClusterHandle) -> None:
    cluster = disrupted_cluster
    cluster.cluster.up(tls=True)
    assert cluster.status().tls_required

    with pytest.raises(pymysql.err.OperationalError) as refused:
        cluster.connect(cluster.primary).close()  # the helpers connect in clear
    assert refused.value.args[0] == ER_ACCESS_DENIED_ERROR

    verify = context("verify_identity", ca_file(cluster))
    name = cluster.unique_name()
    primary = connect(cluster, cluster.primary, verify, cluster.pod_fqdn(cluster.primary))
    with primary, primary.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {name} (i INT PRIMARY KEY)")
        cursor.execute(f"INSERT INTO {name} VALUES (7)")
    try:
        for replica in cluster.replicas:
            fqdn = cluster.pod_fqdn(replica)
            replica_conn = connect(cluster, replica, verify, fqdn, user="admin")
            with replica_conn, replica_conn.cursor() as cursor:
                cursor.execute("SHOW SLAVE STATUS")
                columns = [column[0] for column in cursor.description]
                row = dict(zip(columns, cursor.fetchone(), strict=True))
                assert row["Master_SSL_Allowed"] == "Yes"

                def replicated(cursor: pymysql.cursors.Cursor = cursor) -> bool:
                    cursor.execute(
                        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = %s",
                        (name,),
                    )
                    if cursor.fetchone() != (1,):
                        return False
                    cursor.execute(f"SELECT i FROM {name}")
                    rows: tuple[tuple[Any, ...], ...] = cursor.fetchall()
                    return rows == ((7,),)

                assert wait_until(replicated, TIMEOUT)
    finally:
        primary = connect(cluster, cluster.primary, verify, cluster.pod_fqdn(cluster.primary))
        with primary, primary.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {name}")
