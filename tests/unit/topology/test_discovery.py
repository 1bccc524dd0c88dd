"""Discovery against a fake CoreDNS: SRV, per-pod names, the unnamed-port walk, outages, TTLs."""

from __future__ import annotations

import logging

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
import pytest

from proxy.config import DiscoveryConfig, HostPort
from proxy.topology.discovery import Discovery, DnsUnavailable
from proxy.topology.model import Endpoint
from tests.unit.topology.fakes import SERVICE, cluster_dns, discovery, endpoint


async def test_srv_gives_every_ready_pod_with_its_address() -> None:
    pods = await discovery(cluster_dns()).resolve()
    assert pods == {p: endpoint(p) for p in ("mysql-0", "mysql-1", "mysql-2")}


async def test_queries_are_absolute_names() -> None:
    fake = cluster_dns()
    await discovery(fake).resolve()
    assert (f"mysql-0.{SERVICE}.", "A") in fake.queries
    assert (f"_mysql._tcp.{SERVICE}.", "SRV") in fake.queries
    assert all(name.endswith(".") for name, _ in fake.queries)


async def test_srv_port_is_used_for_readers() -> None:
    fake = cluster_dns()
    found = await discovery(fake, writer="auto", port=3307).resolve()
    assert {e.port for e in found.values()} == {3306}  # from SRV, not the configured default


async def test_pod_gone_from_dns_is_dropped() -> None:
    fake = cluster_dns()
    del fake.pods["mysql-2"]
    assert sorted(await discovery(fake).resolve()) == ["mysql-0", "mysql-1"]


async def test_writer_missing_from_dns_is_simply_absent() -> None:
    fake = cluster_dns()
    del fake.pods["mysql-0"]
    assert sorted(await discovery(fake).resolve()) == ["mysql-1", "mysql-2"]


async def test_auto_writer_does_not_query_a_pod_name() -> None:
    fake = cluster_dns()
    await discovery(fake, writer="auto").resolve()
    assert (f"mysql-0.{SERVICE}.", "A") in fake.queries  # only as an SRV target
    assert fake.queries[0] == (f"_mysql._tcp.{SERVICE}.", "SRV")


async def test_unnamed_port_walks_ordinals_across_one_gap() -> None:
    fake = cluster_dns(mysql_0="10.0.0.10", mysql_2="10.0.0.12", mysql_4="10.0.0.14")
    fake.named_port = False
    pods = await discovery(fake).resolve()
    # A single missing ordinal (mysql-1, mysql-3: not ready) does not end the walk.
    assert sorted(pods) == ["mysql-0", "mysql-2", "mysql-4"]


async def test_unnamed_port_stops_after_two_missing_ordinals() -> None:
    fake = cluster_dns(mysql_0="10.0.0.10", mysql_3="10.0.0.13")
    fake.named_port = False
    pods = await discovery(fake).resolve()
    # mysql-3 is not reachable by the walk, but the Service's A records still list it.
    assert pods["mysql-0"] == endpoint("mysql-0")
    assert pods["10.0.0.13:3306"] == Endpoint("10.0.0.13:3306", "10.0.0.13", 3306)
    assert "mysql-3" not in pods


async def test_unnamed_service_addresses_become_ip_port_pods() -> None:
    fake = cluster_dns()
    fake.named_port = False
    fake.extra_service_ips = ["10.0.0.99"]
    pods = await discovery(fake).resolve()
    assert sorted(pods) == ["10.0.0.99:3306", "mysql-0", "mysql-1", "mysql-2"]


@pytest.mark.parametrize(
    "error",
    [
        dns.resolver.LifetimeTimeout(timeout=2.0, errors=[]),  # type: ignore[no-untyped-call]
        dns.resolver.NoNameservers(),  # type: ignore[no-untyped-call]
        dns.exception.Timeout(),  # type: ignore[no-untyped-call]
        ConnectionRefusedError("refused"),
    ],
)
async def test_unreachable_dns_raises_dns_unavailable(error: Exception) -> None:
    fake = cluster_dns()
    fake.error = error
    with pytest.raises(DnsUnavailable, match=r"mysql-h\.default"):
        await discovery(fake).resolve()


async def test_poll_keeps_last_known_pods_during_an_outage() -> None:
    fake = cluster_dns()
    source = discovery(fake)
    first = await source.poll()
    fake.error = dns.resolver.NoNameservers()  # type: ignore[no-untyped-call]
    during = await source.poll()
    assert first.dns_ok and first.dns_error is None
    assert not during.dns_ok
    assert during.pods == first.pods
    assert "All nameservers failed" in (during.dns_error or "")


async def test_outage_warns_once_and_recovery_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    fake = cluster_dns()
    source = discovery(fake)
    fake.error = dns.exception.Timeout()  # type: ignore[no-untyped-call]
    with caplog.at_level(logging.INFO, logger="proxy.topology.discovery"):
        for _ in range(3):
            await source.poll()
        fake.error = None
        await source.poll()
        await source.poll()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1 and "DNS unavailable" in warnings[0].getMessage()
    assert len(infos) == 1 and "DNS answers again" in infos[0].getMessage()


@pytest.mark.parametrize(
    "ttl, interval, expected",
    [(5, 5.0, 5.0), (2, 5.0, 2.0), (30, 5.0, 5.0), (0, 5.0, 0.5)],
)
async def test_refresh_interval_follows_ttl(ttl: int, interval: float, expected: float) -> None:
    fake = cluster_dns()
    fake.ttl = ttl
    resolution = await discovery(fake, resolve_interval_seconds=interval).poll()
    assert resolution.refresh_in == expected


async def test_outage_retries_at_the_resolve_interval() -> None:
    fake = cluster_dns()
    fake.error = dns.exception.Timeout()  # type: ignore[no-untyped-call]
    resolution = await discovery(fake, resolve_interval_seconds=3.0).poll()
    assert resolution.refresh_in == 3.0


def test_names_follow_the_kubernetes_scheme() -> None:
    source = discovery(cluster_dns())
    assert source.service_fqdn == SERVICE
    assert source.pod_fqdn("mysql-1") == f"mysql-1.{SERVICE}"
    assert source.srv_name == f"_mysql._tcp.{SERVICE}"
    assert source.fixed_writer == "mysql-0"
    assert discovery(cluster_dns(), writer="auto").fixed_writer is None


def test_explicit_nameservers_build_a_resolver_with_their_ports() -> None:
    config = DiscoveryConfig(nameservers=(HostPort("127.0.0.2", 5353),), dns_timeout_seconds=1.5)
    resolver = Discovery(config)._resolver
    assert isinstance(resolver, dns.asyncresolver.Resolver)
    (nameserver,) = resolver.nameservers
    assert isinstance(nameserver, dns.nameserver.Do53Nameserver)
    assert (nameserver.address, nameserver.port) == ("127.0.0.2", 5353)
    assert resolver.lifetime == 1.5
