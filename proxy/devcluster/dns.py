"""Cluster DNS: dnsmasq answering what CoreDNS answers for a headless Service over a StatefulSet.

Theory of operation: for each READY pod, `mysql-N.mysql-h.default.svc.cluster.local` and the
service name `mysql-h.default.svc.cluster.local` carry its A record, and
`_mysql._tcp.mysql-h.default.svc.cluster.local` an SRV record (priority 0, weight 100/N as
CoreDNS gives, port 3306) naming its FQDN; TTL 5 s. `local=/cluster.local/` makes every other
cluster.local name NXDOMAIN, and nothing is forwarded upstream (`no-resolv`, no `server=`).

dnsmasq reads all of this from one config file rendered here (`--conf-file` also keeps it away
from /etc/dnsmasq.conf). It re-reads hosts files on SIGHUP but `srv-host` only at start, so
`publish` restarts it whenever the rendered config changes: SIGTERM, wait, start, then wait until
it answers. Queries sent during that gap (tens of milliseconds) go unanswered and clients retry,
like a CoreDNS rollout. An unchanged config leaves the running dnsmasq alone.
"""

from __future__ import annotations

import logging
import os
import pwd
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query

from proxy.devcluster import process, spec
from proxy.devcluster.errors import ClusterError

logger = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 5.0
STOP_TIMEOUT_SECONDS = 5.0
_PROBE_TIMEOUT_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A ready pod as DNS publishes it."""

    pod: str
    address: str


@dataclass(frozen=True, slots=True)
class DnsFiles:
    """Where dnsmasq's config and log live in the state dir."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "dnsmasq.conf"

    @property
    def log(self) -> Path:
        return self.root / "dnsmasq.log"

    @property
    def marker(self) -> str:
        """The argument that identifies our dnsmasq among all processes."""
        return f"--conf-file={self.config}"


def render_config(files: DnsFiles, endpoints: Sequence[Endpoint]) -> str:
    """The whole dnsmasq config: server settings, then one A and one SRV line per ready pod."""
    lines = [
        "# Rendered by `rwproxy cluster`; dnsmasq restarts whenever this text changes.",
        f"listen-address={spec.DNS_ADDRESS}",
        f"port={spec.DNS_PORT}",
        # Bind only our address: 5353 on the wildcard is mDNS's port.
        "bind-interfaces",
        "no-resolv",
        "no-hosts",
        f"local=/{spec.CLUSTER_DOMAIN}/",
        f"local-ttl={spec.DNS_TTL_SECONDS}",
        f"user={pwd.getpwuid(os.geteuid()).pw_name}",
        "pid-file=",
        f"log-facility={files.log}",
    ]
    weight = 100 // len(endpoints) if endpoints else 0
    for endpoint in endpoints:
        fqdn = spec.pod_fqdn(endpoint.pod)
        # The first name also gets the PTR record, as CoreDNS gives the pod's own name.
        lines.append(f"host-record={fqdn},{spec.SERVICE_FQDN},{endpoint.address}")
        lines.append(f"srv-host={spec.SRV_NAME},{fqdn},{spec.MYSQL_PORT},0,{weight}")
    return "\n".join(lines) + "\n"


def publish(files: DnsFiles, endpoints: Sequence[Endpoint], pid: int | None, dnsmasq: str) -> int:
    """Make DNS answer for exactly these endpoints; returns dnsmasq's (maybe new) PID."""
    text = render_config(files, endpoints)
    if pid is not None and process.is_running(pid, files.marker) and _current_config(files) == text:
        return pid
    stop(files, pid)
    files.root.mkdir(parents=True, exist_ok=True)
    files.config.write_text(text)
    return _start(files, dnsmasq)


def stop(files: DnsFiles, pid: int | None) -> None:
    """Stop our dnsmasq, if it is running."""
    process.terminate([(pid, files.marker)], timeout=STOP_TIMEOUT_SECONDS)


def is_running(files: DnsFiles, pid: int | None) -> bool:
    return process.is_running(pid, files.marker)


def _current_config(files: DnsFiles) -> str | None:
    try:
        return files.config.read_text()
    except FileNotFoundError:
        return None


def check_free(wait: float = 0.0) -> None:
    """DNS needs its address and port for both UDP and TCP; `wait` up to that many seconds
    for a holder on its way out."""
    sockets = (socket.SOCK_DGRAM, socket.SOCK_STREAM)
    process.wait_free(spec.DNS_ADDRESS, spec.DNS_PORT, sockets, wait)


def _start(files: DnsFiles, dnsmasq: str) -> int:
    """Start dnsmasq in the foreground (so the spawned PID is the server) and wait for answers.

    The port may still be held for a moment by the dnsmasq `publish` just stopped: a CI run
    saw "127.0.0.2:5353/udp is already in use" right after a restart, once in many
    thousands, so wait for it (bounded) rather than fail at once."""
    check_free(wait=STOP_TIMEOUT_SECONDS)
    logger.info("starting dnsmasq on %s:%d", spec.DNS_ADDRESS, spec.DNS_PORT)
    pid = process.spawn([dnsmasq, files.marker, "--keep-in-foreground"], files.log)
    answering = process.wait_until(
        lambda: not process.is_running(pid, files.marker) or _answers(), START_TIMEOUT_SECONDS
    )
    if not process.is_running(pid, files.marker) or not answering:
        process.terminate([(pid, files.marker)], timeout=STOP_TIMEOUT_SECONDS)
        raise ClusterError(
            f"dnsmasq did not start on {spec.DNS_ADDRESS}:{spec.DNS_PORT}; "
            f"last lines of {files.log}:\n{process.tail(files.log)}"
        )
    return pid


def _answers() -> bool:
    """Whether something answers DNS on our address (any rcode will do)."""
    query = dns.message.make_query(spec.SERVICE_FQDN, "A")
    try:
        dns.query.udp(query, spec.DNS_ADDRESS, port=spec.DNS_PORT, timeout=_PROBE_TIMEOUT_SECONDS)
    except (dns.exception.Timeout, OSError):
        return False
    return True
