"""Wiring and lifecycle of `rwproxy serve`.

Theory of operation
-------------------
`Proxy` builds every long-lived object from one `Config`: the topology manager (DNS discovery
and health checks, both wrapped so that `metrics` can count what they do), the `ProxyContext`
sessions share, the listener (`ProxyServer`), the HTTP endpoint and the config watcher.
`run()` starts them in order (HTTP first, so /healthz answers and /readyz explains while the
first topology is resolved; then the topology; then the listener), waits for `stop()`, and
drains:

1. `stop()` (SIGTERM, SIGINT) flips `ctx.draining`: /readyz fails at once and the listener
   closes, so new connections are refused;
2. idle clients are closed; running statements and open transactions get up to
   `shutdown_timeout_seconds` to finish (each session leaves after its command when no
   transaction is open), the rest are cancelled;
3. pools, topology, watcher and HTTP endpoint are closed, and `serve` returns 0.

Live reload: SIGHUP or a changed file makes the `ConfigWatcher` load and check the file;
`apply_config()` then replaces `ctx.config` (read per use by the context, the sessions and the
HTTP endpoint) and pushes the new values into the objects that copied them at start-up: the
login credential store, the health checker (a new one replaces the old, whose monitor
connections close once its in-flight checks are done), read-your-writes timeouts, pool
limits and the log level/format.

TLS: `Proxy` builds both TLS contexts once (`TlsContexts.from_config`; a certificate file that
does not load stops start-up) and shares the backend one between the sessions' connections and
the monitor connections of every health checker it builds, so both legs to a pod verify it the
same way. ``tls`` and ``backend_tls`` are restart-only keys; the files behind them are followed
by the contexts themselves (rotation needs no reload).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from proxy import __version__, compiled
from proxy.admin import status_snapshot
from proxy.backend import tls_server_name
from proxy.config import Config
from proxy.http import HttpServer, start_http, stop_http
from proxy.logs import setup_logging
from proxy.metrics import Metrics, ObservedChecker, ObservedDiscovery
from proxy.pool import PoolLimits
from proxy.protocol.auth import StoredCredential
from proxy.reload import ConfigWatcher
from proxy.server import ProxyContext, ProxyServer, TlsContexts, login_guard
from proxy.tls import ReloadingContext, needs_tls
from proxy.topology.discovery import Discovery
from proxy.topology.health import HealthChecker, MonitorTls
from proxy.topology.manager import TopologyManager
from proxy.topology.model import Endpoint
from proxy.workers import SOLE_WORKER, WorkerSlot, run_workers

logger = logging.getLogger(__name__)


class Credentials:
    """The users of the configuration, as the handshake's credential store; `update()`-able."""

    def __init__(self, config: Config) -> None:
        self._store: dict[str, StoredCredential] = {}
        self.update(config)

    def update(self, config: Config) -> None:
        store: dict[str, StoredCredential] = {}
        for user in config.users:
            if user.password is not None:
                store[user.name] = StoredCredential.from_password(user.password)
            elif user.password_hash is not None:
                store[user.name] = StoredCredential.from_native_hash(user.password_hash)
        self._store = store

    def lookup(self, user: str) -> StoredCredential | None:
        return self._store.get(user)


def credential_lookup(config: Config) -> Callable[[str], StoredCredential | None]:
    """Users from the configuration, as the handshake's credential store (fixed)."""
    return Credentials(config).lookup


def build_checker(config: Config, backend_tls: ReloadingContext | None = None) -> HealthChecker:
    """The health checker; its monitor connections use TLS when ``backend_tls`` is given."""
    return HealthChecker.from_config(
        config.monitor, config.health, tls=monitor_tls(config, backend_tls)
    )


def monitor_tls(config: Config, backend_tls: ReloadingContext | None) -> MonitorTls | None:
    """How monitor connections use `backend_tls` (None: in clear)."""
    if backend_tls is None:
        return None
    discovery = config.discovery

    def server_name(endpoint: Endpoint) -> str:
        return tls_server_name(discovery, endpoint)

    return MonitorTls(backend_tls.current, server_name, needs_tls(config.backend_tls.mode))


def build_topology(config: Config, metrics: Metrics | None = None) -> TopologyManager:
    metrics = metrics or Metrics()
    tls = TlsContexts.from_config(config)
    checker = ObservedChecker(build_checker(config, tls.backend), metrics)
    discovery = ObservedDiscovery(Discovery(config.discovery), metrics)
    return TopologyManager(discovery, checker, config)


def pool_limits(config: Config) -> PoolLimits:
    pool = config.pool
    return PoolLimits(
        max_size=pool.max_size,
        min_idle=pool.min_idle,
        connect_timeout=pool.connect_timeout_seconds,
        pool_timeout=pool.pool_timeout_seconds,
        idle_timeout=pool.idle_timeout_seconds,
        max_lifetime=pool.max_lifetime_seconds,
    )


class Proxy:
    """One running proxy: its context, server, topology manager, HTTP endpoint and watcher."""

    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        environ: Mapping[str, str] = os.environ,
        worker: WorkerSlot = SOLE_WORKER,
    ) -> None:
        self.worker = worker
        self.metrics = Metrics()
        self.credentials = Credentials(config)
        self.tls = TlsContexts.from_config(config)
        self.checker = ObservedChecker(build_checker(config, self.tls.backend), self.metrics)
        discovery = ObservedDiscovery(Discovery(config.discovery), self.metrics)
        self.topology = TopologyManager(discovery, self.checker, config)
        self.ctx = ProxyContext(
            config, self.topology, self.credentials.lookup, self.metrics, tls=self.tls
        )
        self.metrics.bind(lambda: status_snapshot(self.ctx))
        self.server = ProxyServer(self.ctx, worker)
        self.http: HttpServer | None = None
        self.watcher = self._watcher(config_path, environ)
        self._listening = False
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    def _watcher(self, path: Path | None, environ: Mapping[str, str]) -> ConfigWatcher | None:
        if path is None:
            return None
        return ConfigWatcher(
            path, lambda: self.ctx.config, self.apply_config, self.metrics, environ=environ
        )

    @property
    def config(self) -> Config:
        """The configuration in force (it changes on reload)."""
        return self.ctx.config

    @property
    def http_port(self) -> int | None:
        return self.http.port if self.http is not None else None

    def stop(self) -> None:
        """Start draining: /readyz fails from this very moment."""
        self.ctx.draining = True
        self._stopping.set()

    def reload(self) -> None:
        """SIGHUP: reload the config file now (no-op without a file)."""
        if self.watcher is not None:
            self.watcher.request()

    async def run(self, ready: Callable[[Proxy], None] | None = None) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                self.http = await start_http(
                    self.ctx, lambda: self._listening, self._reload_status, self.worker.index
                )
                topology_task = tasks.create_task(self.topology.run())
                watcher_task = tasks.create_task(self._watch())
                pools_task = tasks.create_task(self.ctx.maintain_pools())
                await self.topology.refresh_now()
                await self.server.start()
                self._listening = True
                if ready is not None:
                    ready(self)
                await self._stopping.wait()
                await self._drain()
                topology_task.cancel()
                watcher_task.cancel()
                pools_task.cancel()
        finally:
            await stop_http(self.http)
        logger.info("stopped")

    async def _watch(self) -> None:
        if self.watcher is not None:
            await self.watcher.run()

    async def _drain(self) -> None:
        timeout = self.ctx.config.shutdown_timeout_seconds
        logger.info("draining: %d sessions, up to %g s", len(self.ctx.sessions), timeout)
        self._listening = False
        await self.server.drain(timeout)

    def _reload_status(self) -> Mapping[str, Any]:
        if self.watcher is None:
            return {"watching": None}
        return {"watching": str(self.watcher.path), **self.watcher.last}

    # -- live reload ------------------------------------------------------------------

    def apply_config(self, config: Config) -> None:
        """Put a checked config in force (restart-only keys already kept by the watcher)."""
        old, self.ctx.config = self.ctx.config, config
        self.credentials.update(config)
        self.topology.reconfigure(config)
        if (config.monitor, config.health) != (old.monitor, old.health):
            self._replace_checker(config)
        ryw = self.ctx.ryw
        ryw.wait_timeout = config.routing.read_your_writes_timeout_seconds
        ryw.query_timeout = config.pool.connect_timeout_seconds
        if config.pool != old.pool:
            self._set_pool_limits(pool_limits(config))
        if config.auth != old.auth:
            self.ctx.login_guard = login_guard(config)
        if (config.log_level, config.log_format) != (old.log_level, old.log_format):
            setup_logging(config.log_level, config.log_format)

    def _replace_checker(self, config: Config) -> None:
        old = self.checker.inner
        self.checker.inner = build_checker(config, self.tls.backend)
        self._spawn(self._retire_checker(old, config.health.timeout_seconds))
        self._spawn(self.topology.refresh_now())  # judge the pods by the new limits now

    async def _retire_checker(self, checker: Any, timeout: float) -> None:
        # Checks already running on the old checker finish within its timeout.
        await asyncio.sleep(timeout)
        await checker.close()

    def _set_pool_limits(self, limits: PoolLimits) -> None:
        pools = self.ctx.pools
        pools.limits = limits
        for pool in pools.pools():
            pool.limits = dataclasses.replace(limits, reset_timeout=pool.limits.reset_timeout)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def serve(
    config: Config, config_path: Path | None = None, worker: WorkerSlot = SOLE_WORKER
) -> int:
    proxy = Proxy(config, config_path, worker=worker)
    loop = asyncio.get_running_loop()
    handlers = {signal.SIGTERM: proxy.stop, signal.SIGINT: proxy.stop, signal.SIGHUP: proxy.reload}
    for sig, handler in handlers.items():
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, _signalled, sig, handler)
    failed: list[Exception] = []
    try:
        await proxy.run()
    except* OSError as group:  # a listen address in use, or not ours (the TaskGroup wraps it)
        failed.extend(group.exceptions)
    for exc in failed:
        logger.error("cannot serve: %s", exc)
    return 1 if failed else 0


def _signalled(sig: signal.Signals, handler: Callable[[], None]) -> None:
    logger.info("received %s", sig.name)
    handler()


def run_serve(config: Config, config_path: Path | None = None) -> int:
    setup_logging(config.log_level, config.log_format)
    logger.info("rwproxy %s, %s", __version__, compiled.describe())
    stale = compiled.stale_extensions()
    if stale:
        logger.warning(
            "compiled modules older than their source run instead of it: %s "
            "(make compile, or make clean-compiled for pure Python)",
            ", ".join(stale),
        )
    if config.workers == 1:
        return run_event_loop(serve(config, config_path))
    return run_workers(
        config.workers, lambda slot: run_event_loop(serve(config, config_path, slot))
    )


def run_event_loop(main: object) -> int:
    """Run `main` on uvloop when it is installed, else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return int(asyncio.run(main))  # type: ignore[arg-type]
    return int(uvloop.run(main))  # type: ignore[arg-type]
