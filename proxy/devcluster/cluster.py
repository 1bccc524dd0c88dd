"""`Cluster`: StatefulSet `mysql` behind headless Service `mysql-h`, made of loopback processes.

Theory of operation: the state dir plays the API server and `Cluster` plays kubelet and
controller, but only while a command runs; there is no loop in between. Every operation takes
the state lock and then

1. *observes*: a recorded PID whose process is gone means that pod is neither running nor ready;
2. *acts*: starts, stops or moves pods, primary first, since replicas connect to it;
3. *settles* replication: every running replica follows the primary's current address and, once
   the primary is up, has its IO thread connected (and its SQL thread, when it was just started);
4. *publishes* the ready pods to DNS and saves the state.

A pod leaves DNS before it is stopped and joins once it accepts logins, as an Endpoints object
tracks readiness. The primary is always ordinal 0; there is no failover. A pod that crashes
between commands stays in DNS until the next command (`status` included) observes it. `up` also
restarts a running pod whose my.cnf is not what it would be given now (TLS required or not, a
newer rwproxy), as a StatefulSet rolls its pods when the pod template changes.

TLS: every pod offers it, with a certificate from the cluster's own CA (`<state dir>/tls`, made
once) that names the pod's DNS names and current address, so tests can verify pods as the proxy
would, against the normal cluster. `up --tls` additionally makes the pods refuse TCP logins
without TLS (and replicas replicate over TLS); `up --no-tls` turns that off again.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from proxy.devcluster import certs, dns, pods, process, spec, sql
from proxy.devcluster.errors import ClusterError
from proxy.devcluster.state import (
    LOCK_FILE,
    PARTIAL_STATE_FILE,
    STATE_FILE,
    ClusterState,
    PodState,
    StateStore,
)

logger = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 30.0
REPLICATION_TIMEOUT_SECONDS = 30.0

# What `down --purge` removes: only names this package creates, never the whole directory.
_OWNED_NAMES = (
    "template",
    "template.partial",
    "pods",
    "dns",
    "tls",
    STATE_FILE,
    PARTIAL_STATE_FILE,
    LOCK_FILE,
)


class Role(enum.StrEnum):
    """Fixed by ordinal, as in a StatefulSet: mysql-0 writes, the others replicate."""

    PRIMARY = "primary"
    REPLICA = "replica"


@dataclass(frozen=True, slots=True)
class PodStatus:
    """One pod as `status` reports it; replication facts are read live from MariaDB."""

    name: str
    role: Role
    address: str
    port: int
    running: bool
    ready: bool
    error_log: Path
    gtid_binlog_pos: str | None = None
    replication: sql.ReplicaStatus | None = None


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """Everything a user or a test needs to reach the cluster right now."""

    state_dir: Path
    pods: tuple[PodStatus, ...]
    dns_address: str
    dns_port: int
    dns_running: bool
    dns_log: Path
    tls_required: bool = False  # pods refuse TCP logins without TLS (`up --tls`)
    ca_file: Path | None = None  # the CA that signed every pod's certificate

    def pod(self, name: str) -> PodStatus:
        for pod in self.pods:
            if pod.name == name:
                return pod
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class _Tools:
    mariadb: pods.MariaDB
    dnsmasq: str


class Cluster:
    """The dev cluster in one state dir; each method is one `rwproxy cluster` command."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._store = StateStore(state_dir)
        self._template = pods.PodFiles(state_dir / "template")
        self._dns_files = dns.DnsFiles(state_dir / "dns")
        self.certs = certs.CertDir(state_dir / "tls")
        self._found_tools: _Tools | None = None

    def pod_files(self, name: str) -> pods.PodFiles:
        return pods.PodFiles(self.state_dir / "pods" / name)

    def up(self, size: int | None = None, *, tls: bool | None = None) -> tuple[str, ...]:
        """Create or resume the cluster; idempotent. Returns the pods it had to make ready.

        ``tls``: True requires TLS of every TCP client, False stops requiring it, None keeps
        what the cluster had. Pods whose config that changes are restarted.
        """
        with self._store.locked(create=True):
            stored = self._store.load()
            state = stored or ClusterState.new(_checked_size(size or spec.DEFAULT_PODS))
            if size is not None and size != len(state.pods):
                raise ClusterError(
                    f"the cluster in {self.state_dir} has {len(state.pods)} pods; "
                    "run `rwproxy cluster down --purge` first to change --pods"
                )
            self._tools()  # fail on a missing program before starting anything
            if tls is not None:
                state.tls_required = tls
            self.certs.proxy()  # for tests and demos of the proxy's own TLS
            self.certs.client()
            self._observe(state)
            self._check_addresses(state)
            for pod in self._outdated(state):
                logger.info("restarting %s: its configuration changed", pod.name)
                self._take_down(state, pod)
            started = self._start(state, [pod for pod in state.pods if not pod.ready])
            self._publish(state)
            return started

    def down(self, *, purge: bool = False) -> None:
        """Stop DNS, then every pod (by PID, SIGTERM then wait); with purge, delete the state."""
        with self._store.locked():
            state = self._store.load()
            if state is not None:
                self._observe(state)
                dns.stop(self._dns_files, state.dns_pid)
                state.dns_pid = None
                daemons = [(pod.pid, self.pod_files(pod.name).marker) for pod in state.pods]
                process.terminate(daemons, timeout=STOP_TIMEOUT_SECONDS)
                for pod in state.pods:
                    pod.pid, pod.ready = None, False
                self._store.save(state)
            if purge:
                self._purge()

    def stop(self, name: str) -> None:
        """Delete the pod without rescheduling it: out of DNS first, then SIGTERM."""
        with self._store.locked():
            state = self._load()
            pod = state.pod(name)
            if pod.pid is not None:
                self._take_down(state, pod)

    def start(self, name: str) -> None:
        """Bring a stopped pod back; it rejoins DNS once ready (and replicating)."""
        with self._store.locked():
            state = self._load()
            pod = state.pod(name)
            self._start(state, [] if pod.ready else [pod])
            self._publish(state)

    def move(self, name: str, to: str | None = None) -> str:
        """Reschedule the pod onto another address (default: its next free one); returns it."""
        with self._store.locked():
            state = self._load()
            pod = state.pod(name)
            target = to or self._next_address(state, pod)
            self._check_target(state, pod, target)
            self._tools()  # fail on a missing program before stopping the pod
            self._take_down(state, pod)
            logger.info("moving %s from %s to %s", name, pod.address, target)
            pod.address = target
            self._start(state, [pod])
            self._publish(state)
            return target

    def lag(self, name: str, *, on: bool) -> None:
        """Stop (on) or restart (off) a replica's SQL thread; still fetching, it falls behind."""
        with self._store.locked():
            state = self._load()
            pod = state.pod(name)
            if pod.is_primary:
                raise ClusterError(f"{name} is the primary; only replicas can lag")
            if pod.pid is None:
                raise ClusterError(f"{name} is not running; `rwproxy cluster start {name}` first")
            sql.set_sql_thread(pod.address, running=not on)
            self._store.save(state)

    def status(self) -> ClusterStatus:
        """Observe, re-publish DNS if a pod died, and report pods, replication and DNS."""
        with self._store.locked():
            state = self._load()
            if state.dns_pid is not None:
                self._publish(state)
            self._store.save(state)
            return self._status(state)

    def _tools(self) -> _Tools:
        """The programs the cluster runs, looked up once per Cluster."""
        if self._found_tools is None:
            dnsmasq = process.find_executable("dnsmasq", "dnsmasq-base")
            self._found_tools = _Tools(pods.MariaDB.find(), dnsmasq)
        return self._found_tools

    def _load(self) -> ClusterState:
        """The observed state of an existing cluster."""
        state = self._store.load()
        if state is None:
            raise ClusterError(f"no cluster in {self.state_dir}; run `rwproxy cluster up` first")
        self._observe(state)
        return state

    def _observe(self, state: ClusterState) -> None:
        """Check every recorded PID; a pod whose process is gone is neither running nor ready.

        A daemon of ours that the state does not know (by its marker) is adopted, not left
        holding the address its replacement would need.
        """
        for pod in state.pods:
            marker = self._marker(pod)
            if process.is_running(pod.pid, marker):
                continue
            if pod.pid is not None:
                logger.warning("%s (pid %d) is no longer running", pod.name, pod.pid)
            pod.pid, pod.ready = process.find(marker), False
        if not dns.is_running(self._dns_files, state.dns_pid):
            state.dns_pid = process.find(self._dns_files.marker)

    def _start(self, state: ClusterState, targets: list[PodState]) -> tuple[str, ...]:
        """Start targets, primary first since replicas connect to it; wait ready, then settle."""
        primary = [pod for pod in targets if pod.is_primary]
        spawned: set[str] = set()
        for group in (primary, [pod for pod in targets if not pod.is_primary]):
            spawned.update(pod.name for pod in group if self._spawn(state, pod))
            for pod in group:
                self._await_ready(pod)
        if targets:
            self._settle(state, spawned)
        return tuple(pod.name for pod in targets)

    def _spawn(self, state: ClusterState, pod: PodState) -> bool:
        """Start the pod's mariadbd unless it already runs (False), and record its PID at once."""
        if pod.pid is not None:
            return False
        files = self.pod_files(pod.name)
        if not files.datadir.exists():
            self._ensure_template()
            pods.provision(files, self._template)
        mariadbd = self._tools().mariadb.mariadbd
        self.certs.pod(pod.name, pod.address)  # a moved pod needs its new address on it
        tls = self._pod_tls(state, pod)
        pod.pid = pods.start(files, name=pod.name, address=pod.address, mariadbd=mariadbd, tls=tls)
        self._store.save(state)
        return True

    def _pod_tls(self, state: ClusterState, pod: PodState) -> pods.PodTls:
        files = self.certs.files(pod.name)
        return pods.PodTls(self.certs.ca_file, files.cert, files.key, state.tls_required)

    def _outdated(self, state: ClusterState) -> list[PodState]:
        """Running pods whose my.cnf differs from the one they would be started with now."""
        outdated = []
        for pod in state.pods:
            if pod.pid is None:
                continue
            files = self.pod_files(pod.name)
            wanted = pods.render_pod_config(
                files, name=pod.name, address=pod.address, tls=self._pod_tls(state, pod)
            )
            try:
                current = files.config.read_text()
            except OSError:
                current = None
            if current != wanted:
                outdated.append(pod)
        return outdated

    def _ensure_template(self) -> None:
        if not self._template.datadir.exists():
            pods.build_template(self._template, self._tools().mariadb)

    def _await_ready(self, pod: PodState) -> None:
        assert pod.pid is not None
        files = self.pod_files(pod.name)
        pods.wait_ready(
            files, name=pod.name, pid=pod.pid, address=pod.address, timeout=START_TIMEOUT_SECONDS
        )
        pod.ready = True

    def _settle(self, state: ClusterState, spawned: set[str]) -> None:
        """Point running replicas at the primary's address and wait until they replicate.

        A replica whose mariadbd was just spawned must run both threads (a server start starts
        them); one that kept running keeps whatever SQL thread `lag` left it with.
        """
        running = [replica for replica in state.replicas if replica.pid is not None]
        for replica in running:
            sql.point_at_primary(replica.address, state.primary.address, tls=state.tls_required)
        if state.primary.pid is None:
            return  # nothing to connect to; replicas retry every second until it is back
        for replica in running:
            self._await_replicating(replica, state.primary, with_sql=replica.name in spawned)

    def _await_replicating(self, replica: PodState, primary: PodState, *, with_sql: bool) -> None:
        """Bounded wait for Slave_IO_Running=Yes (and Slave_SQL_Running=Yes when with_sql)."""
        if process.wait_until(
            lambda: sql.is_replicating(replica.address, with_sql=with_sql),
            REPLICATION_TIMEOUT_SECONDS,
        ):
            return
        status = sql.replica_status(replica.address)
        raise ClusterError(
            f"{replica.name} is not replicating from {primary.name} at {primary.address} "
            f"after {REPLICATION_TIMEOUT_SECONDS:.0f} s: {status}"
        )

    def _take_down(self, state: ClusterState, pod: PodState) -> None:
        """Unpublish, then stop: clients stop resolving the pod before its connections drop."""
        pod.ready = False
        self._publish(state)
        logger.info("stopping %s (pid %s)", pod.name, pod.pid)
        process.terminate([(pod.pid, self._marker(pod))], timeout=STOP_TIMEOUT_SECONDS)
        pod.pid = None
        self._store.save(state)

    def _publish(self, state: ClusterState) -> None:
        """DNS answers for exactly the ready pods; saves the state, which records the DNS PID."""
        endpoints = [dns.Endpoint(pod.name, pod.address) for pod in state.pods if pod.ready]
        dnsmasq = self._tools().dnsmasq
        state.dns_pid = dns.publish(self._dns_files, endpoints, state.dns_pid, dnsmasq)
        self._store.save(state)

    def _check_addresses(self, state: ClusterState) -> None:
        """Fail on a taken address before building or starting anything."""
        for pod in state.pods:
            if pod.pid is None:
                process.ensure_free(pod.address, spec.MYSQL_PORT)
        if state.dns_pid is None:
            dns.check_free()

    def _next_address(self, state: ClusterState, pod: PodState) -> str:
        """The pod's next free address after its current one, wrapping around."""
        candidates = spec.pod_addresses(pod.ordinal)
        if pod.address in candidates:
            at = candidates.index(pod.address) + 1
            candidates = candidates[at:] + candidates[:at]
        taken = {other.address for other in state.pods}
        for address in candidates:
            if address not in taken and process.is_free(address, spec.MYSQL_PORT):
                return address
        raise ClusterError(f"no free address left to move {pod.name} to")

    def _check_target(self, state: ClusterState, pod: PodState, target: str) -> None:
        """A move target must be a loopback address no other pod or process uses."""
        try:
            loopback = ipaddress.IPv4Address(target).is_loopback
        except ValueError:
            loopback = False
        if not loopback or target == spec.DNS_ADDRESS:
            raise ClusterError(
                f"cannot move {pod.name} to {target!r}: not a free 127.x.y.z address"
            )
        if target == pod.address:
            raise ClusterError(f"{pod.name} is already at {target}")
        for other in state.pods:
            if other.address == target:
                raise ClusterError(f"cannot move {pod.name} to {target}: {other.name} is there")
        process.ensure_free(target, spec.MYSQL_PORT)

    def _status(self, state: ClusterState) -> ClusterStatus:
        return ClusterStatus(
            state_dir=self.state_dir,
            pods=tuple(self._pod_status(pod) for pod in state.pods),
            dns_address=spec.DNS_ADDRESS,
            dns_port=spec.DNS_PORT,
            dns_running=state.dns_pid is not None,
            dns_log=self._dns_files.log,
            tls_required=state.tls_required,
            ca_file=self.certs.ca_file if self.certs.ca_file.exists() else None,
        )

    def _pod_status(self, pod: PodState) -> PodStatus:
        """Static facts from the state; replication read live, when the pod is up to answer."""
        role = Role.PRIMARY if pod.is_primary else Role.REPLICA
        gtid_binlog_pos, replication = None, None
        try:
            if pod.ready and pod.is_primary:
                gtid_binlog_pos = sql.binlog_position(pod.address)
            elif pod.ready:
                replication = sql.replica_status(pod.address)
        except ClusterError as exc:
            logger.warning("%s: cannot read replication status: %s", pod.name, exc)
        return PodStatus(
            name=pod.name,
            role=role,
            address=pod.address,
            port=spec.MYSQL_PORT,
            running=pod.pid is not None,
            ready=pod.ready,
            error_log=self.pod_files(pod.name).error_log,
            gtid_binlog_pos=gtid_binlog_pos,
            replication=replication,
        )

    def _marker(self, pod: PodState) -> str:
        return self.pod_files(pod.name).marker

    def _purge(self) -> None:
        """Remove what this package created in the state dir, then the dir if that empties it."""
        if not self.state_dir.is_dir():
            return
        for name in _OWNED_NAMES:
            path = self.state_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        try:
            self.state_dir.rmdir()
        except OSError:
            logger.info("left %s in place: it holds files that are not ours", self.state_dir)


def _checked_size(size: int) -> int:
    if not 1 <= size <= spec.MAX_PODS:
        raise ClusterError(f"--pods must be between 1 and {spec.MAX_PODS}, not {size}")
    return size
