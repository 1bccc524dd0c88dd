"""Run a real rwproxy in a background thread with its own event loop, for tests.

Tests drive it with ordinary blocking clients (PyMySQL, the `mariadb` CLI) from the
test thread, and may look inside it (sessions, pools, metrics) through `call()`,
which runs a function on the proxy's loop and returns its result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from proxy.app import Proxy
from proxy.config import Config, DiscoveryConfig, HostPort, MonitorConfig, UserConfig

T = TypeVar("T")


def cluster_config(**overrides: Any) -> Config:
    """A config for the local cluster, listening on a free port, no HTTP."""
    base = Config(
        listen=HostPort("127.0.0.1", 0),
        http=None,
        discovery=DiscoveryConfig(nameservers=(HostPort("127.0.0.2", 5353),)),
        users=(
            UserConfig(name="app", password="app-password"),
            UserConfig(name="admin", password="admin-password"),
        ),
        monitor=MonitorConfig(user="monitor", password="monitor-password"),
    )
    return dataclasses.replace(base, **overrides)


class ProxyThread:
    """A started proxy: `port`, `call(fn)`, `stop()`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.proxy: Proxy | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="rwproxy", daemon=True)

    def start(self, timeout: float = 20.0) -> ProxyThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the proxy did not start in time")
        if self.error is not None:
            raise RuntimeError(f"the proxy failed to start: {self.error!r}")
        return self

    @property
    def port(self) -> int:
        assert self.proxy is not None
        return self.proxy.server.port

    def call(self, fn: Callable[[Proxy], T], timeout: float = 10.0) -> T:
        """Run `fn(proxy)` on the proxy's loop (await it if it is a coroutine)."""
        assert self.loop is not None and self.proxy is not None
        proxy = self.proxy

        async def run() -> T:
            result = fn(proxy)
            if asyncio.iscoroutine(result):
                return await result  # type: ignore[no-any-return]
            return result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        if self.loop is not None and self.proxy is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.proxy.stop)
        self._thread.join(timeout)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the test thread
            self.error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.proxy = Proxy(self.config)
        await self.proxy.run(ready=lambda _: self._ready.set())
