"""Pure helpers of TLS toward the pods: the name a pod's certificate must carry, the one-line
reasons for failed TLS handshakes, and what the health checker hands its connect function."""

from __future__ import annotations

import ssl

import pymysql
import pytest

from proxy.backend import tls_error_text, tls_server_name
from proxy.config import DiscoveryConfig
from proxy.topology.health import HealthChecker, MonitorTls
from proxy.topology.model import Endpoint
from tests.unit.topology.fakes import FakeNetwork, FakeServer, endpoint


def test_a_named_pod_is_verified_by_its_fqdn() -> None:
    pod = Endpoint("mysql-2", "10.1.2.3", 3306)
    assert tls_server_name(DiscoveryConfig(), pod) == "mysql-2.mysql-h.default.svc.cluster.local"
    other = DiscoveryConfig(service="db", namespace="shop", cluster_domain="k8s.example")
    assert tls_server_name(other, pod) == "mysql-2.db.shop.svc.k8s.example"


def test_an_unnamed_pod_is_verified_by_its_address() -> None:
    pod = Endpoint("10.1.2.3:3306", "10.1.2.3", 3306)
    assert tls_server_name(DiscoveryConfig(), pod) == "10.1.2.3"


def verify_error(message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(
        1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message} (_ssl.c:1006)"
    )
    error.verify_message = message
    return error


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (
            verify_error("unable to get local issuer certificate"),
            "certificate verify failed: unable to get local issuer certificate",
        ),
        (
            verify_error("Hostname mismatch, certificate is not valid for 'mysql-1'."),
            "certificate verify failed: Hostname mismatch, certificate is not valid for 'mysql-1'.",
        ),
        (
            ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)"),
            "[SSL: WRONG_VERSION_NUMBER] wrong version number",
        ),
        (ConnectionResetError(104, "reset"), "connection closed during the TLS handshake"),
        (TimeoutError(), "TimeoutError"),
    ],
)
def test_tls_error_text(exc: BaseException, text: str) -> None:
    assert tls_error_text(exc).startswith(text)
    assert "_ssl.c" not in tls_error_text(exc)


async def test_monitor_connections_get_the_context_and_the_pod_fqdn() -> None:
    network = FakeNetwork(mysql_0=FakeServer(server_id=1))
    context = ssl.create_default_context()
    tls = MonitorTls(lambda: context, lambda e: f"{e.pod}.example", required=True)
    checker = HealthChecker("monitor", "pw", 1.0, network.connect, tls=tls)
    health = await checker.check(endpoint("mysql-0"), None)
    assert health.reachable
    (kwargs,) = network.kwargs
    assert kwargs["host"] == endpoint("mysql-0").host
    assert kwargs["ssl"] is context
    assert (kwargs["server_hostname"], kwargs["tls_required"]) == ("mysql-0.example", True)


async def test_monitor_connections_without_tls_get_no_tls_arguments() -> None:
    network = FakeNetwork(mysql_0=FakeServer(server_id=1))
    await HealthChecker("monitor", "pw", 1.0, network.connect).check(endpoint("mysql-0"), None)
    (kwargs,) = network.kwargs
    assert not {"ssl", "server_hostname", "tls_required"} & kwargs.keys()


def test_a_failed_tls_handshake_is_named_in_the_health_error() -> None:
    checker = HealthChecker("monitor", "pw", 1.0)
    error = pymysql.err.OperationalError(2003, "Can't connect to MySQL server on '10.0.0.1'")
    error.__cause__ = verify_error("self-signed certificate in certificate chain")
    assert checker._describe(error).endswith(
        "(TLS: certificate verify failed: self-signed certificate in certificate chain)"
    )
