"""The topology manager: DNS + health checks -> the current `Topology`, and who gets told.

Theory of operation
-------------------
`TopologyManager.run()` lives in the app's TaskGroup and runs two loops:

* the DNS loop re-resolves the Service when `Discovery.poll()` says so (the smallest TTL, capped
  by `resolve_interval_seconds`) and every health interval while there is no writer;
* the health loop checks every known pod each `health_interval_seconds`, concurrently: each
  check is bounded by the checker's timeout, so a black-holed pod delays nobody else.

Both end in `_publish()`, which rebuilds the `Topology` from the latest pods and health and
replaces `current` only when its *shape* changed (pods, addresses, writer, readers, DNS status,
a pod's state or read_only). Then subscribers are called with (old, new) so that the proxy can
drain the pools of pods that moved or left. Lag and GTID values that move without changing the
shape are in `latest_health` / `gtid_positions()`, not in a new snapshot: a busy primary would
otherwise publish a topology per second.

Check rounds hold `_check_lock`: the monitor connection of a pod serves one query at a time,
and a refresh must not race the health loop. `refresh_now()` coalesces: callers that arrive
while a refresh is queued join it; callers that arrive once it has started queue exactly one
more (its checks might predate their failure). `report_failure()` is the fire-and-forget form,
rate-limited to one refresh per `min_refresh_gap_seconds`.

Writer and readers (pure functions, `select_writer`/`select_readers`):

* `writer: mysql-0`: that pod, if it is in DNS, not DOWN/UNKNOWN and reports read_only=0.
  Otherwise there is no writer and `writer_problem` says why ("mysql-0 reports read_only=1
  (demoted?)"); it is logged as a WARNING once per transition.
* `writer: auto`: the ONE pod that is not DOWN/UNKNOWN and reports read_only=0; several mean
  split brain, and no writer until an operator fixes it.
* readers: every other pod in DNS whose state is UP. The primary is never filtered or banned.
  When no replica is usable, `readers` is empty and the router sends reads to the writer.

A pod counts as reachable for the writer rule until its checks fail `failures_before_down`
times in a row (see `health`); a failed backend connection calls `report_failure()`, so that
point is reached within a round trip or two instead of waiting for the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from proxy.topology.discovery import Resolution
from proxy.topology.model import Endpoint, HealthState, PodHealth, Topology

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Subscriber = Callable[[Topology, Topology], None]


class PodSource(Protocol):
    """What the manager uses of `discovery.Discovery`."""

    async def poll(self) -> Resolution: ...


class PodChecker(Protocol):
    """What the manager uses of `health.HealthChecker`."""

    async def check(self, endpoint: Endpoint, previous: PodHealth | None) -> PodHealth: ...
    async def retain(self, endpoints: Iterable[Endpoint]) -> None: ...
    async def close(self) -> None: ...


class WriterSettings(Protocol):
    @property
    def writer(self) -> str: ...


class IntervalSettings(Protocol):
    @property
    def interval_seconds(self) -> float: ...


class ProxySettings(Protocol):
    """The parts of `proxy.config.Config` the manager reads."""

    @property
    def discovery(self) -> WriterSettings: ...
    @property
    def health(self) -> IntervalSettings: ...


@dataclass(frozen=True, slots=True)
class ManagerConfig:
    """How the manager picks the writer and how often it looks.

    The lag limit and failure threshold belong to the checker (they decide a pod's state).
    """

    writer: str = "mysql-0"  # a pod name, or "auto"
    health_interval_seconds: float = 1.0
    min_refresh_gap_seconds: float = 0.25  # report_failure() storms: one refresh per gap

    @classmethod
    def from_config(cls, config: ProxySettings) -> ManagerConfig:
        """From the proxy's whole `Config` (`discovery.writer`, `health.interval_seconds`)."""
        return cls(
            writer=config.discovery.writer,
            health_interval_seconds=config.health.interval_seconds,
        )


# -- writer and readers (pure) ------------------------------------------------------------------


def select_writer(
    writer: str, pods: Mapping[str, Endpoint], health: Mapping[str, PodHealth]
) -> tuple[Endpoint | None, str | None]:
    """The writer and None, or None and why there is none."""
    if writer == "auto":
        return _auto_writer(pods, health)
    endpoint = pods.get(writer)
    if endpoint is None:
        return None, f"{writer} not in DNS"
    problem = _writer_problem(writer, health.get(writer))
    return (None, problem) if problem else (endpoint, None)


def _writer_problem(pod: str, health: PodHealth | None) -> str | None:
    if health is None or health.state is HealthState.UNKNOWN or health.read_only is None:
        return f"{pod} not reachable yet"
    if health.state is HealthState.DOWN:
        return f"{pod} is down"
    if health.read_only:
        return f"{pod} reports read_only=1 (demoted?)"
    return None


def _auto_writer(
    pods: Mapping[str, Endpoint], health: Mapping[str, PodHealth]
) -> tuple[Endpoint | None, str | None]:
    candidates = _writable(pods, health)
    if len(candidates) == 1:
        return pods[candidates[0]], None
    if not candidates:
        return None, "no reachable pod reports read_only=0"
    return None, f"split brain: {', '.join(candidates)} all report read_only=0"


def _writable(pods: Mapping[str, Endpoint], health: Mapping[str, PodHealth]) -> list[str]:
    """Pods that would take writes: reachable (not DOWN/UNKNOWN) with read_only=0."""
    return sorted(
        pod
        for pod, h in health.items()
        if pod in pods
        and h.state not in (HealthState.DOWN, HealthState.UNKNOWN)
        and h.read_only is False
    )


def select_readers(
    writer: str, pods: Mapping[str, Endpoint], health: Mapping[str, PodHealth]
) -> tuple[Endpoint, ...]:
    """Every pod in DNS, other than the writer (or writer candidates for auto), that is UP."""
    excluded = set(_writable(pods, health)) if writer == "auto" else {writer}
    return tuple(
        pods[pod]
        for pod in sorted(pods)
        if pod not in excluded and pod in health and health[pod].state is HealthState.UP
    )


def stranded_replicas(
    writer: str, pods: Mapping[str, Endpoint], health: Mapping[str, PodHealth]
) -> tuple[Endpoint, ...]:
    """Replicas cut off from a primary that the proxy cannot reach either.

    Their IO thread shows `Connecting`, so they are not UP; but with the primary gone
    they hold the newest data there is, and refusing reads too would turn a writer
    outage into a full outage (MaxScale keeps serving them as well). Only used while
    there is no writer and no UP replica.
    """
    return tuple(
        pods[pod]
        for pod in sorted(pods)
        if pod != writer
        and pod in health
        and health[pod].reachable
        and health[pod].read_only
        and health[pod].source_unreachable
    )


def build_topology(
    writer_name: str,
    resolution: Resolution,
    health: Mapping[str, PodHealth],
    version: int,
    built_at: float,
) -> Topology:
    """A snapshot from DNS and health; health of another address than DNS's is ignored."""
    pods = resolution.pods
    current = {pod: h for pod, h in health.items() if pods.get(pod) == h.endpoint}
    writer, problem = select_writer(writer_name, pods, current)
    readers = select_readers(writer_name, pods, current)
    if writer is None and not readers:
        readers = stranded_replicas(writer_name, pods, current)
    return Topology(
        pods=pods,
        health=current,
        writer=writer,
        writer_problem=problem,
        readers=readers,
        dns_ok=resolution.dns_ok,
        dns_error=resolution.dns_error,
        version=version,
        built_at=built_at,
    )


# -- the manager ---------------------------------------------------------------------------------


class TopologyManager:
    """Owns the current `Topology` (see the module docstring for the theory of operation)."""

    def __init__(
        self,
        discovery: PodSource,
        checker: PodChecker,
        config: ManagerConfig | ProxySettings,
        clock: Clock = time.monotonic,
    ) -> None:
        if not isinstance(config, ManagerConfig):
            config = ManagerConfig.from_config(config)
        self._discovery = discovery
        self._checker = checker
        self._config = config
        self._clock = clock
        self._dns = Resolution(pods={}, dns_ok=False, dns_error="not resolved yet", refresh_in=0)
        self._health: dict[str, PodHealth] = {}
        self._current = Topology()
        self._subscribers: list[Subscriber] = []
        self._changed = asyncio.Event()
        self._check_lock = asyncio.Lock()
        self._queued: asyncio.Task[Topology] | None = None
        self._last_refresh_at: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def reconfigure(self, config: ManagerConfig | ProxySettings) -> None:
        """Take a reloaded config: the health interval and writer rule apply from the next round."""
        self._config = (
            config if isinstance(config, ManagerConfig) else ManagerConfig.from_config(config)
        )

    # -- reading -------------------------------------------------------------------------------

    @property
    def current(self) -> Topology:
        """The latest snapshot; cheap, never blocks."""
        return self._current

    @property
    def latest_health(self) -> Mapping[str, PodHealth]:
        """The result of each pod's latest check (fresher than `current.health`)."""
        return dict(self._health)

    def gtid_positions(self) -> dict[str, str]:
        """Pod -> last known applied GTID position, from the latest checks."""
        return {pod: h.gtid for pod, h in self._health.items() if h.gtid is not None}

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(old, new)` on every new snapshot; returns an unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Resolve and check until cancelled; closes the monitor connections on the way out."""
        try:
            await self.refresh_now()
            async with asyncio.TaskGroup() as group:
                group.create_task(self._dns_loop())
                group.create_task(self._health_loop())
        finally:
            await self.close()

    async def close(self) -> None:
        """Cancel pending refreshes and close monitor connections (run() does it on exit)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._checker.close()

    async def _dns_loop(self) -> None:
        while True:
            await asyncio.sleep(self._dns_delay())
            resolution = await self._discovery.poll()
            async with self._check_lock:
                await self._apply_dns(resolution)
                self._publish()

    def _dns_delay(self) -> float:
        # Without a writer, look as often as we check: the new primary may be a DNS change away.
        if self._current.writer is None:
            return min(self._dns.refresh_in, self._config.health_interval_seconds)
        return self._dns.refresh_in

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.health_interval_seconds)
            async with self._check_lock:
                await self._check(list(self._dns.pods.values()))
                self._publish()

    # -- refreshing ----------------------------------------------------------------------------

    async def refresh_now(self) -> Topology:
        """Resolve DNS and check every pod now; concurrent callers share one refresh."""
        return await asyncio.shield(self._queue_refresh(0.0))

    def report_failure(self, endpoint: Endpoint) -> None:
        """A backend connection to `endpoint` failed: refresh soon (call from the event loop)."""
        logger.debug("backend connection to %s failed, refreshing the topology", endpoint)
        delay = 0.0
        if self._last_refresh_at is not None:
            next_allowed = self._last_refresh_at + self._config.min_refresh_gap_seconds
            delay = max(0.0, next_allowed - self._clock())
        self._queue_refresh(delay)

    async def wait_for_writer(self, timeout: float) -> Endpoint | None:
        """The writer, waiting up to `timeout` seconds for one to appear (None if none did).

        Triggers one refresh; afterwards `run()` keeps re-resolving and checking every health
        interval while there is no writer, and this wakes up on each new snapshot.
        """
        if self._current.writer is not None:
            return self._current.writer
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.refresh_now()
                while self._current.writer is None:
                    await self._changed.wait()
        return self._current.writer

    def _queue_refresh(self, delay: float) -> asyncio.Task[Topology]:
        if self._queued is None:
            self._queued = self._spawn(self._refresh(delay))
        return self._queued

    async def _refresh(self, delay: float) -> Topology:
        if delay > 0:
            await asyncio.sleep(delay)
        async with self._check_lock:
            self._queued = None  # from here on, callers need a refresh of their own
            self._last_refresh_at = self._clock()
            pods = list(self._dns.pods.values())
            resolution, _ = await asyncio.gather(self._discovery.poll(), self._check(pods))
            await self._apply_dns(resolution)
            self._publish()
            return self._current

    def _spawn(self, coroutine: Coroutine[Any, Any, Topology]) -> asyncio.Task[Topology]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("topology refresh failed", exc_info=task.exception())

    # -- DNS and health ------------------------------------------------------------------------

    async def _apply_dns(self, resolution: Resolution) -> None:
        """Adopt a DNS answer: forget pods that left, check pods that are new or moved."""
        old = self._dns.pods
        self._dns = resolution
        for pod in old.keys() - resolution.pods.keys():
            logger.info("pod %s left DNS (was %s)", pod, old[pod].address)
            self._health.pop(pod, None)
        changed = [e for pod, e in resolution.pods.items() if old.get(pod) != e]
        for endpoint in changed:
            was = old.get(endpoint.pod)
            moved = f" (moved from {was.address})" if was else ""
            logger.info("pod %s in DNS at %s%s", endpoint.pod, endpoint.address, moved)
        if changed or old.keys() - resolution.pods.keys():
            await self._checker.retain(resolution.pods.values())
        await self._check(changed)

    async def _check(self, endpoints: Sequence[Endpoint]) -> None:
        checks = (self._checker.check(e, self._health.get(e.pod)) for e in endpoints)
        results = await asyncio.gather(*checks, return_exceptions=True)
        for endpoint, result in zip(endpoints, results, strict=True):
            if isinstance(result, Exception):
                logger.error("health check of %s raised", endpoint, exc_info=result)
            elif isinstance(result, BaseException):
                raise result
            else:
                self._record(endpoint, result)

    def _record(self, endpoint: Endpoint, health: PodHealth) -> None:
        if self._dns.pods.get(endpoint.pod) != endpoint:
            return  # the pod left or moved while it was being checked
        _log_transition(self._health.get(endpoint.pod), health)
        self._health[endpoint.pod] = health

    # -- publishing ----------------------------------------------------------------------------

    def _publish(self) -> None:
        old = self._current
        new = build_topology(
            self._config.writer, self._dns, self._health, old.version + 1, self._clock()
        )
        if new.shape() == old.shape():
            return
        self._current = new
        _log_change(old, new)
        for callback in list(self._subscribers):
            self._notify(callback, old, new)
        self._changed.set()
        self._changed = asyncio.Event()

    @staticmethod
    def _notify(callback: Subscriber, old: Topology, new: Topology) -> None:
        try:
            callback(old, new)
        except Exception:
            logger.exception("topology subscriber %r failed", callback)


def _log_transition(old: PodHealth | None, new: PodHealth) -> None:
    """One line per health event: a state change, or a first failed check."""
    old_state = old.state if old is not None else HealthState.UNKNOWN
    why = f": {new.error}" if new.error else ""
    if new.state is not old_state:
        level = logging.INFO if new.state is HealthState.UP else logging.WARNING
        logger.log(level, "pod %s: %s -> %s%s", new.endpoint, old_state.name, new.state.name, why)
    elif not new.reachable and (old is None or old.reachable):
        logger.info("pod %s: check failed (still %s)%s", new.endpoint, new.state.name, why)


def _log_change(old: Topology, new: Topology) -> None:
    """A WARNING when the writer is lost (once per transition), and the new snapshot at INFO."""
    if (new.writer, new.writer_problem) != (old.writer, old.writer_problem) and new.writer is None:
        logger.warning("no writer: %s", new.writer_problem)
    logger.info("%s", new.describe())
