"""Live reload: notice a changed config file, check it, and hand over what can change live.

Theory of operation
-------------------
`ConfigWatcher.run()` polls, every `interval` seconds, a fingerprint of the config file and of
the secret files it names (`password_file`): device, inode, mtime, size and the resolved path
of each. Following symlinks matters: a mounted ConfigMap or Secret is updated by swapping the
`..data` symlink to a new directory, which changes the inode and the resolved path but not the
path the proxy was given. SIGHUP calls `request()`, which reloads at once whatever changed.

A reload loads the file exactly as start-up did (`load_file(path, environ)`), so every check
of `proxy.config` runs. An invalid file is rejected with one WARNING naming each problem (never
a secret's value) and the proxy keeps running on the old config. A valid one is turned into a
`ReloadPlan` (pure, `plan_reload`): which keys changed, and which of them cannot change in a
running process (`RESTART_ONLY`: listening sockets, discovery); those keep their old values in
the applied config, so `/status` always shows what is actually in force, and a WARNING says
they need a restart. The plan's config is then applied by the `apply` callback (the app
propagates it to the objects that copied values at start-up).

Reloads are counted by result: applied, unchanged (the file changed but not the settings,
e.g. `touch`), rejected.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from proxy.admin import config_version
from proxy.config import Config, ConfigError, HostPort, load_file
from proxy.files import fingerprint
from proxy.metrics import Metrics

logger = logging.getLogger(__name__)

# Settings a running process cannot take over: (section or None, key).
RESTART_ONLY: Final = (
    (None, "listen"),
    (None, "http"),
    (None, "workers"),
    (None, "discovery"),
    # TLS contexts are built at start-up. New *contents* of the same certificate files are
    # still picked up live by proxy.tls.ReloadingContext (a rotated Secret needs no restart).
    (None, "tls"),
    (None, "backend_tls"),
)


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    config: Config  # what to apply: the new config, restart-only keys kept at the old values
    changed: tuple[str, ...]  # keys whose values change now (names only, never values)
    needs_restart: tuple[str, ...]  # keys that changed in the file but are kept


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """Compare two configs; keep what cannot change live at its old value."""
    changed = _changed_keys(old, new)
    kept = tuple(key for key in changed if _restart_only(key))
    config = _keep_restart_only(old, new)
    live = tuple(key for key in changed if key not in kept)
    return ReloadPlan(config, live, kept)


def _restart_only(key: str) -> bool:
    for section, name in RESTART_ONLY:
        prefix = name if section is None else f"{section}.{name}"
        if key == prefix or key.startswith(f"{prefix}."):
            return True
    return False


def _keep_restart_only(old: Config, new: Config) -> Config:
    top = {name: getattr(old, name) for section, name in RESTART_ONLY if section is None}
    config = dataclasses.replace(new, **top)
    for section, name in RESTART_ONLY:
        if section is not None:
            kept = {name: getattr(getattr(old, section), name)}
            part = dataclasses.replace(getattr(config, section), **kept)
            config = dataclasses.replace(config, **{section: part})
    return config


def _changed_keys(old: Config, new: Config) -> tuple[str, ...]:
    before, after = dict(_leaves(old, "")), dict(_leaves(new, ""))
    keys = sorted(before.keys() | after.keys())
    return tuple(key for key in keys if before.get(key) != after.get(key))


def _leaves(value: object, path: str) -> Iterator[tuple[str, object]]:
    """(dotted key, value) of every setting; lists of sections (users) count as one key."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type | HostPort):
        for f in dataclasses.fields(value):
            key = f"{path}.{f.name}" if path else f.name
            yield from _leaves(getattr(value, f.name), key)
    else:
        yield path, value


def watched_paths(path: Path, config: Config) -> list[Path]:
    """The config file and the secret files it names."""
    secrets = [user.password_file for user in config.users] + [config.monitor.password_file]
    return [path, *(p for p in secrets if p is not None)]


class ConfigWatcher:
    """Reloads the config file when it changes or on `request()` (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        current: Callable[[], Config],
        apply: Callable[[Config], None],
        metrics: Metrics,
        *,
        environ: Mapping[str, str] = os.environ,
        interval: float = 1.0,
        settle: float = 0.2,
    ) -> None:
        self.path = path
        self._current = current
        self._apply = apply
        self._metrics = metrics
        self._environ = environ
        self._interval = interval
        self._settle = settle
        self._requested = asyncio.Event()
        self._fingerprint = fingerprint(watched_paths(path, current()))
        self.last: dict[str, Any] = {"result": None, "at": None, "problem": None}

    def request(self) -> None:
        """Reload now (SIGHUP)."""
        self._requested.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._requested.wait()
            if self._requested.is_set():
                self._requested.clear()
                self.reload("SIGHUP")
            elif fingerprint(watched_paths(self.path, self._current())) != self._fingerprint:
                await asyncio.sleep(self._settle)  # let a writer that is not atomic finish
                self.reload("file changed")

    def reload(self, why: str) -> str:
        """Load, check and apply the file; returns the result (applied/unchanged/rejected)."""
        self._fingerprint = fingerprint(watched_paths(self.path, self._current()))
        try:
            new = load_file(self.path, self._environ)
        except ConfigError as exc:
            return self._rejected(why, exc)
        old = self._current()
        plan = plan_reload(old, new)
        self._fingerprint = fingerprint(watched_paths(self.path, plan.config))
        if plan.needs_restart:
            logger.warning(
                "configuration: %s changed in %s but needs a restart; keeping the running value",
                ", ".join(plan.needs_restart),
                self.path,
            )
        if not plan.changed:
            return self._done("unchanged", why, None)
        self._apply(plan.config)
        logger.info(
            "configuration reloaded from %s (%s; version %s -> %s): %s changed",
            self.path,
            why,
            config_version(old),
            config_version(plan.config),
            ", ".join(plan.changed),
        )
        return self._done("applied", why, None)

    def _rejected(self, why: str, exc: ConfigError) -> str:
        problem = "; ".join(exc.problems)
        logger.warning(
            "configuration reload rejected (%s), still running version %s: %s in %s",
            why,
            config_version(self._current()),
            problem,
            self.path,
        )
        return self._done("rejected", why, problem)

    def _done(self, result: str, why: str, problem: str | None) -> str:
        self._metrics.config_reload(result)
        self.last = {"result": result, "trigger": why, "at": time.time(), "problem": problem}
        if result == "unchanged":
            logger.info("configuration file %s changed (%s); settings unchanged", self.path, why)
        return result
