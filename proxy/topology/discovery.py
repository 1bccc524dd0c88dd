"""Headless-Service DNS -> the pods of the StatefulSet, as `Endpoint`s keyed by pod name.

Theory of operation
-------------------
Kubernetes (CoreDNS) publishes, for the ready pods of a StatefulSet behind a headless Service:

* `<pod>.<service>.<namespace>.svc.<domain>`  A record per ready pod;
* `<service>.<namespace>.svc.<domain>`        A records of all ready pods;
* `_<port>._tcp.<service>.<namespace>.svc.<domain>`  SRV -> each ready pod's FQDN and port,
  only when the Service's port is *named*.

`Discovery.resolve()` asks for the configured writer's own A record (unless `writer: auto`) and
for the SRV records; each SRV target's first label is the pod name and its A record the
address. Without SRV records (unnamed port) it walks `<statefulset>-0, -1, ...` until two names
in a row do not exist, and adds any Service A address not matched that way as an unnamed pod
called `ip:port`.

Two kinds of failure are kept apart, because they call for opposite reactions:

* NXDOMAIN / NoAnswer: the name is gone, i.e. the pod is not ready or not there: drop it.
* timeout, REFUSED, SERVFAIL, socket errors: DNS itself is unreachable; nothing is known about
  the pods. `resolve()` raises `DnsUnavailable`; `poll()` catches it, returns the last known
  pods with `dns_ok=False` and logs one WARNING per outage (and one INFO when it ends).

Every query is uncached and absolute (trailing dot: no search-list expansion) and bounded by
`dns_timeout_seconds`. `poll()` also says when to resolve next: the smallest TTL seen, capped by
`resolve_interval_seconds` and floored at `min_interval_seconds` so a TTL of 0 cannot spin.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from proxy.topology.model import Endpoint

logger = logging.getLogger(__name__)


class HostPortLike(Protocol):
    """A `host:port` pair (`proxy.config.HostPort`)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...


class DiscoverySettings(Protocol):
    """The fields of `proxy.config.DiscoveryConfig` that discovery reads."""

    @property
    def service(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def cluster_domain(self) -> str: ...
    @property
    def statefulset(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def port_name(self) -> str: ...
    @property
    def writer(self) -> str: ...
    @property
    def nameservers(self) -> Sequence[HostPortLike]: ...
    @property
    def resolve_interval_seconds(self) -> float: ...
    @property
    def dns_timeout_seconds(self) -> float: ...


class RRsetLike(Protocol):
    @property
    def ttl(self) -> int: ...


class AnswerLike(Protocol):
    """What we use of `dns.resolver.Answer`: its records and the RRset's TTL."""

    @property
    def rrset(self) -> RRsetLike | None: ...
    def __iter__(self) -> Iterator[Any]: ...


class AsyncResolver(Protocol):
    """What we use of `dns.asyncresolver.Resolver` (tests pass a fake)."""

    def resolve(
        self, qname: str, rdtype: str, *, lifetime: float | None = ...
    ) -> Awaitable[AnswerLike]: ...


class DnsUnavailable(Exception):
    """DNS could not be asked (timeout, refused, SERVFAIL): says nothing about the pods."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """What `Discovery.poll()` learned, and when to ask again (`refresh_in` seconds).

    When DNS failed, `pods` are the last known ones and `dns_ok` is False.
    """

    pods: Mapping[str, Endpoint]
    dns_ok: bool
    dns_error: str | None
    refresh_in: float


@dataclass(slots=True)
class _Answers:
    """The records of one `resolve()`, and the smallest TTL among them."""

    min_ttl: float | None = None
    pods: dict[str, Endpoint] = field(default_factory=dict)

    def saw_ttl(self, ttl: int | None) -> None:
        if ttl is not None and (self.min_ttl is None or ttl < self.min_ttl):
            self.min_ttl = float(ttl)


class Discovery:
    """Resolves the StatefulSet's pods from the headless Service (see the module docstring)."""

    min_interval_seconds: float = 0.5
    max_pods: int = 256  # upper bound for the `<statefulset>-N` walk
    misses_to_stop: int = 2  # consecutive missing ordinals that end the walk

    def __init__(self, config: DiscoverySettings, resolver: AsyncResolver | None = None) -> None:
        self._config = config
        self._resolver = resolver if resolver is not None else self._build_resolver(config)
        self._last_pods: dict[str, Endpoint] = {}
        self._outage: str | None = None

    @staticmethod
    def _build_resolver(config: DiscoverySettings) -> AsyncResolver:
        if not config.nameservers:
            return dns.asyncresolver.Resolver()  # /etc/resolv.conf, as inside a pod
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(ns.host, ns.port) for ns in config.nameservers
        ]
        resolver.lifetime = config.dns_timeout_seconds
        return resolver

    # -- names ---------------------------------------------------------------------------------

    @property
    def service_fqdn(self) -> str:
        c = self._config
        return f"{c.service}.{c.namespace}.svc.{c.cluster_domain}"

    def pod_fqdn(self, pod: str) -> str:
        return f"{pod}.{self.service_fqdn}"

    @property
    def srv_name(self) -> str:
        return f"_{self._config.port_name}._tcp.{self.service_fqdn}"

    @property
    def fixed_writer(self) -> str | None:
        """The configured writer pod name, or None for `writer: auto`."""
        writer = self._config.writer
        return None if writer == "auto" else writer

    # -- polling -------------------------------------------------------------------------------

    async def poll(self) -> Resolution:
        """Resolve; on DNS failure keep the last known pods. Never raises `DnsUnavailable`."""
        try:
            answers = await self._resolve_answers()
        except DnsUnavailable as exc:
            self._note_outage(str(exc))
            return Resolution(self._last_pods, False, str(exc), self._interval(None))
        self._note_recovery()
        self._last_pods = answers.pods
        return Resolution(answers.pods, True, None, self._interval(answers.min_ttl))

    def _note_outage(self, error: str) -> None:
        if self._outage is None:
            logger.warning("DNS unavailable, keeping the last known pods: %s", error)
        self._outage = error

    def _note_recovery(self) -> None:
        if self._outage is not None:
            logger.info("DNS answers again (outage was: %s)", self._outage)
        self._outage = None

    def _interval(self, ttl: float | None) -> float:
        interval = float(self._config.resolve_interval_seconds)
        if ttl is not None:
            interval = min(interval, ttl)
        return max(interval, self.min_interval_seconds)

    # -- resolving -----------------------------------------------------------------------------

    async def resolve(self) -> dict[str, Endpoint]:
        """Pod name -> Endpoint of every ready pod. Raises `DnsUnavailable`."""
        return (await self._resolve_answers()).pods

    async def _resolve_answers(self) -> _Answers:
        answers = _Answers()
        if self.fixed_writer is not None:
            await self._add_pod(answers, self.fixed_writer, self._config.port)
        if not await self._add_srv_pods(answers):
            await self._add_enumerated_pods(answers)
        return answers

    async def _add_srv_pods(self, answers: _Answers) -> bool:
        """Pods from the SRV records; False if there are none (unnamed port)."""
        records = await self._query(answers, self.srv_name, "SRV")
        if not records:
            return False
        targets = {_first_label(r.target): int(r.port) for r in records}
        await _gather(self._add_pod(answers, pod, port) for pod, port in sorted(targets.items()))
        return True

    async def _add_enumerated_pods(self, answers: _Answers) -> None:
        misses = 0
        for ordinal in range(self.max_pods):
            pod = f"{self._config.statefulset}-{ordinal}"
            found = await self._add_pod(answers, pod, self._config.port)
            misses = 0 if found else misses + 1
            if misses >= self.misses_to_stop:
                break
        await self._add_unnamed_pods(answers)

    async def _add_unnamed_pods(self, answers: _Answers) -> None:
        records = await self._query(answers, self.service_fqdn, "A")
        known = {e.host for e in answers.pods.values()}
        port = self._config.port
        for host in sorted({str(r.address) for r in records} - known):
            answers.pods[f"{host}:{port}"] = Endpoint(f"{host}:{port}", host, port)

    async def _add_pod(self, answers: _Answers, pod: str, port: int) -> bool:
        """Add `pod` from its own A record; False if the name does not exist."""
        records = await self._query(answers, self.pod_fqdn(pod), "A")
        if not records:
            return False
        host = min(str(r.address) for r in records)
        answers.pods[pod] = Endpoint(pod, host, port)
        return True

    async def _query(self, answers: _Answers, name: str, rdtype: str) -> list[Any]:
        """The records of `name`; empty if it does not exist. Raises `DnsUnavailable`."""
        try:
            answer = await self._resolver.resolve(
                name + ".", rdtype, lifetime=self._config.dns_timeout_seconds
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsUnavailable(f"{rdtype} {name}: {type(exc).__name__}: {exc}") from exc
        answers.saw_ttl(answer.rrset.ttl if answer.rrset is not None else None)
        return list(answer)


def _first_label(target: object) -> str:
    """`mysql-1.mysql-h.default.svc.cluster.local.` -> `mysql-1` (dns.name.Name or str)."""
    return str(target).rstrip(".").split(".", 1)[0]


async def _gather(coroutines: Iterable[Coroutine[Any, Any, bool]]) -> None:
    """Run lookups concurrently; the first DnsUnavailable cancels the rest and is re-raised."""
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in coroutines:
                group.create_task(coroutine)
    except* DnsUnavailable as failures:
        raise failures.exceptions[0] from None
