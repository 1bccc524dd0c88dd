"""The fixed shape of the dev cluster: what its Kubernetes manifests would say.

A StatefulSet `mysql` behind the headless Service `mysql-h` in namespace `default`, with a named
port `mysql` (3306), the users every pod carries, and where pods and cluster DNS listen. Pod
`mysql-N` lives at 127.0.0.(10+N) until `move` reschedules it; ordinal 0 is the primary. Tests,
DNS records and the CLI all derive names from here, so a name changes in one place only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

NAMESPACE = "default"
STATEFULSET = "mysql"
SERVICE = "mysql-h"
CLUSTER_DOMAIN = "cluster.local"
PORT_NAME = "mysql"
MYSQL_PORT = 3306

SERVICE_FQDN = f"{SERVICE}.{NAMESPACE}.svc.{CLUSTER_DOMAIN}"
SRV_NAME = f"_{PORT_NAME}._tcp.{SERVICE_FQDN}"

DNS_ADDRESS = "127.0.0.2"
DNS_PORT = 5353
DNS_TTL_SECONDS = 5

DEFAULT_PODS = 3
# Ten pods keep the move addresses 127.0.0.(10 + N + 10k) of different pods disjoint.
MAX_PODS = 10
FIRST_POD_OCTET = 10

DATABASE = "app"
STATE_DIR_ENV = "RWPROXY_CLUSTER_DIR"
DEFAULT_STATE_DIR = Path("/tmp/rwproxy-cluster")


@dataclass(frozen=True, slots=True)
class Credentials:
    """A MariaDB account as clients log in to it (every account is granted to '%')."""

    user: str
    password: str


APP = Credentials("app", "app-password")
MONITOR = Credentials("monitor", "monitor-password")
ADMIN = Credentials("admin", "admin-password")
REPLICATION = Credentials("repl", "repl-password")


def pod_name(ordinal: int) -> str:
    """StatefulSet pod names are `<set>-<ordinal>`."""
    return f"{STATEFULSET}-{ordinal}"


def pod_ordinal(name: str) -> int:
    """Inverse of `pod_name`; ValueError for a name that is not one of ours."""
    prefix, _, ordinal = name.rpartition("-")
    if prefix != STATEFULSET or not ordinal.isdigit():
        raise ValueError(f"not a {STATEFULSET} pod name: {name!r}")
    return int(ordinal)


def pod_fqdn(name: str) -> str:
    """The per-pod DNS name a headless Service gives a StatefulSet pod."""
    return f"{name}.{SERVICE_FQDN}"


def home_address(ordinal: int) -> str:
    """Where a pod lives until it is moved."""
    return f"127.0.0.{FIRST_POD_OCTET + ordinal}"


def default_state_dir(environ: Mapping[str, str]) -> Path:
    """`$RWPROXY_CLUSTER_DIR`, else /tmp/rwproxy-cluster: what CI and the tests agree on."""
    return Path(environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def pod_addresses(ordinal: int) -> list[str]:
    """Every address the pod may be moved to, home first: 127.0.0.(10 + N + 10k)."""
    return [f"127.0.0.{octet}" for octet in range(FIRST_POD_OCTET + ordinal, 255, 10)]
