"""`ClusterHandle`: what integration tests hold of the local cluster (`rwproxy cluster`).

The session fixture in conftest.py brings the cluster up once per run through the same
`Cluster` the CLI uses (`up` is idempotent, so a cluster left running is reused), then restores
it to health. Pod addresses are read from the state file on every call because `move` changes
them. Tests that stop, move or lag pods use the `disrupted_cluster` fixture, whose finalizer
calls `restore()`: all pods at their home addresses, running, ready, replicating, not lagging.

`redirect_dns({pod: address})` makes cluster DNS name pods at other addresses (fault proxies in
front of them, say) for the length of a `with` block, and publishes the real records again at its
end, whatever happened inside. Anything that re-publishes DNS meanwhile (`rwproxy cluster
start|stop|move|status`, `restore()`) puts the real records back early.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import pymysql

from proxy.devcluster import dns as cluster_dns
from proxy.devcluster import process, spec
from proxy.devcluster.cluster import Cluster, ClusterStatus
from proxy.devcluster.errors import ClusterError
from proxy.devcluster.state import ClusterState, StateStore

# `connect(database=...)` default: `app`, except for `monitor`, which has no privileges there.
_USER_DEFAULT: Any = object()
_DNS_TIMEOUT_SECONDS = 2.0


@dataclass
class ClusterHandle:
    """Addresses, credentials, DNS server and helpers for one running dev cluster."""

    cluster: Cluster
    dns_server: tuple[str, int] = (spec.DNS_ADDRESS, spec.DNS_PORT)
    app: spec.Credentials = spec.APP
    monitor: spec.Credentials = spec.MONITOR
    admin: spec.Credentials = spec.ADMIN
    database: str = spec.DATABASE
    port: int = spec.MYSQL_PORT
    service_fqdn: str = spec.SERVICE_FQDN
    srv_name: str = spec.SRV_NAME
    pods: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.pods = tuple(pod.name for pod in self._state().pods)

    @property
    def state_dir(self) -> Path:
        return self.cluster.state_dir

    @property
    def primary(self) -> str:
        return self.pods[0]

    @property
    def replicas(self) -> tuple[str, ...]:
        return self.pods[1:]

    def address(self, pod: str) -> str:
        """The pod's current address (it changes when the pod is moved)."""
        return self._state().pod(pod).address

    def addresses(self) -> dict[str, str]:
        return {pod.name: pod.address for pod in self._state().pods}

    def pod_fqdn(self, pod: str) -> str:
        return spec.pod_fqdn(pod)

    def status(self) -> ClusterStatus:
        return self.cluster.status()

    def credentials(self, user: str) -> spec.Credentials:
        """Credentials by user name: "app", "monitor" or "admin"."""
        return {c.user: c for c in (self.app, self.monitor, self.admin)}[user]

    def connect(
        self, pod: str, user: str = "app", *, database: str | None = _USER_DEFAULT, **kwargs: Any
    ) -> pymysql.Connection:
        """A PyMySQL connection (autocommit, no TLS) straight to the pod, as user."""
        credentials = self.credentials(user)
        if database is _USER_DEFAULT:
            database = None if user == self.monitor.user else self.database
        options: dict[str, Any] = {"autocommit": True, "connect_timeout": 5, "read_timeout": 30}
        return pymysql.connect(
            host=self.address(pod),
            port=self.port,
            user=credentials.user,
            password=credentials.password,
            database=database,
            ssl_disabled=True,
            **(options | kwargs),
        )

    def query(
        self, pod: str, sql: str, args: Any = None, *, user: str = "admin"
    ) -> tuple[tuple[Any, ...], ...]:
        """Run one statement on the pod and return all its rows."""
        with self.connect(pod, user) as conn, conn.cursor() as cursor:
            cursor.execute(sql, args)
            return tuple(cursor.fetchall())

    def wait_replicated(self, pods: tuple[str, ...] | None = None, timeout: float = 5.0) -> None:
        """Block until the replicas (default: the ready ones) applied all the primary's writes."""
        ((position,),) = self.query(self.primary, "SELECT @@gtid_binlog_pos")
        for pod in self._ready_replicas() if pods is None else pods:
            ((reached,),) = self.query(pod, "SELECT MASTER_GTID_WAIT(%s, %s)", (position, timeout))
            if reached != 0:
                status = self.status().pod(pod).replication
                raise AssertionError(f"{pod} did not reach {position!r} in {timeout} s: {status}")

    def dns_query(self, name: str, rdtype: str = "A", *, tcp: bool = False) -> dns.message.Message:
        """Ask the cluster DNS server directly, over UDP or TCP."""
        query = dns.message.make_query(name, rdtype)
        send = dns.query.tcp if tcp else dns.query.udp
        host, port = self.dns_server
        return send(query, host, port=port, timeout=_DNS_TIMEOUT_SECONDS)

    def error_log(self, pod: str) -> Path:
        return self.cluster.pod_files(pod).error_log

    def general_log(self, pod: str) -> Path:
        """Where `SET GLOBAL general_log=ON` writes on this pod."""
        return self.cluster.pod_files(pod).general_log

    def unique_name(self, prefix: str = "t") -> str:
        """A table (or other object) name no other test uses."""
        return f"{prefix}_{uuid.uuid4().hex[:12]}"

    def restore(self) -> None:
        """Back to health: pods home, running and ready, no replica lagging, all caught up,
        plaintext accepted (these helpers connect without TLS)."""
        for pod in self._state().pods:
            home = spec.home_address(pod.ordinal)
            if pod.address != home:
                self.cluster.move(pod.name, home)
        self.cluster.up(tls=False)
        for replica in self.replicas:
            self.cluster.lag(replica, on=False)
        self.wait_replicated()

    @contextmanager
    def redirect_dns(self, addresses: Mapping[str, str]) -> Iterator[None]:
        """DNS names each pod in `addresses` at the address given there inside the block (its
        A record and its share of the Service's); the real records are back afterwards, even
        on failure. Pods not named keep their records."""
        self._publish_dns(addresses)
        try:
            yield
        finally:
            self._publish_dns({})

    def _publish_dns(self, overrides: Mapping[str, str]) -> None:
        """What `Cluster` publishes (every ready pod), with some pods at other addresses."""
        store = StateStore(self.state_dir)
        files = cluster_dns.DnsFiles(self.state_dir / "dns")
        dnsmasq = process.find_executable("dnsmasq", "dnsmasq-base")
        for attempt in (1, 2):
            with store.locked():
                state = self._state()
                endpoints = [
                    cluster_dns.Endpoint(pod.name, overrides.get(pod.name, pod.address))
                    for pod in state.pods
                    if pod.ready
                ]
                try:
                    state.dns_pid = cluster_dns.publish(files, endpoints, state.dns_pid, dnsmasq)
                except ClusterError as exc:
                    # dnsmasq's port can stay bound a moment after the old one is gone (see
                    # test_proxy_faults.pod_command): once more.
                    if attempt == 2 or "already in use" not in str(exc):
                        raise
                    continue
                finally:
                    store.save(state)
                return

    def _state(self) -> ClusterState:
        state = StateStore(self.state_dir).load()
        assert state is not None, f"no cluster in {self.state_dir}"
        return state

    def _ready_replicas(self) -> tuple[str, ...]:
        return tuple(pod.name for pod in self._state().replicas if pod.ready)
