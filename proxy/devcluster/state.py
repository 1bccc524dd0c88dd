"""The state file: which pods exist, where they live, their PIDs, whether they are ready, and
whether they require TLS.

Theory of operation: every `rwproxy cluster ...` is a new process, so `state.json` in the state
dir is the cluster's only memory, its API server. It holds the shape (pod names, current
addresses, which `move` changes) and what was last observed (PIDs, ready flags, the dnsmasq PID).
Roles are not stored: they follow from the ordinal. A command holds `StateStore.locked()` (an
flock on `<state dir>/lock`) from its first read to its last write, and `save` replaces the file
atomically, so concurrent commands queue up and a crash never leaves half a file.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from proxy.devcluster import spec
from proxy.devcluster.errors import ClusterError

STATE_FILE = "state.json"
PARTIAL_STATE_FILE = "state.tmp"
LOCK_FILE = "lock"


@dataclass
class PodState:
    """One pod as last recorded: `pid` is None when it is not running."""

    name: str
    address: str
    pid: int | None = None
    ready: bool = False

    @property
    def ordinal(self) -> int:
        return spec.pod_ordinal(self.name)

    @property
    def is_primary(self) -> bool:
        return self.ordinal == 0


@dataclass
class ClusterState:
    """All pods, ordered by ordinal, plus the DNS server's PID.

    `tls_required` is what `up --tls` asked for: pods refuse TCP connections without TLS. Pods
    offer TLS either way; the flag is kept until `up --no-tls`, so `start` and `move` keep it.
    """

    pods: list[PodState]
    dns_pid: int | None = None
    tls_required: bool = False

    @classmethod
    def new(cls, size: int) -> ClusterState:
        """A cluster that has never run: every pod at its home address."""
        return cls([PodState(spec.pod_name(i), spec.home_address(i)) for i in range(size)])

    @property
    def primary(self) -> PodState:
        return self.pods[0]

    @property
    def replicas(self) -> list[PodState]:
        return self.pods[1:]

    def pod(self, name: str) -> PodState:
        """Look a pod up by name, naming the valid ones when it does not exist."""
        for pod in self.pods:
            if pod.name == name:
                return pod
        known = ", ".join(p.name for p in self.pods)
        raise ClusterError(f"unknown pod {name!r}; the pods are {known}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        raw: dict[str, Any] = json.loads(text)
        pods = [PodState(**pod) for pod in raw["pods"]]
        return cls(pods, dns_pid=raw.get("dns_pid"), tls_required=raw.get("tls_required", False))


class StateStore:
    """Load, save and lock the state file of one state dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / STATE_FILE

    def load(self) -> ClusterState | None:
        """The recorded state, or None when this state dir has never held a cluster."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            return ClusterState.from_json(text)
        except (ValueError, KeyError, TypeError) as exc:
            raise ClusterError(
                f"state file {self.path} is unreadable ({exc}); "
                "stop stray mariadbd/dnsmasq processes by PID, then `rwproxy cluster down --purge`"
            ) from exc

    def save(self, state: ClusterState) -> None:
        """Write via a temporary file and rename, so readers never see half a file."""
        partial = self.root / PARTIAL_STATE_FILE
        partial.write_text(state.to_json())
        os.replace(partial, self.path)

    @contextmanager
    def locked(self, *, create: bool = False) -> Iterator[None]:
        """Hold the state dir's lock: one command at a time per cluster.

        Only `up` creates the state dir; for any other command a missing dir means there is no
        cluster to lock, and `load()` will say so.
        """
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            yield
            return
        with open(self.root / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
