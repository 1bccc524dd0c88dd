"""`rwproxy check --config FILE`: would this configuration work against its cluster, now?

Theory of operation
-------------------
The CLI has already loaded and validated the file (a `ConfigError` never gets here). `check()`
then does once what the running proxy does continuously, with the same code: it resolves the
headless Service (`Discovery.resolve`, bounded by `dns_timeout_seconds`), logs in to every
pod as the monitor user (`HealthChecker.check`, concurrently, each bounded by
`health.timeout_seconds`), picks the writer with the proxy's own rule (`select_writer`) and
prints one row per pod. Monitor logins use ``backend_tls`` exactly as the proxy's health checks
do (`proxy.app.build_checker`). The exit status is 0 only when DNS answered, found pods, every pod
answered the monitor login and a writer was found; 1 otherwise, with the reason printed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from proxy.config import Config
from proxy.tls import reloading_backend_context
from proxy.topology.discovery import Discovery, DnsUnavailable
from proxy.topology.manager import PodChecker, select_writer
from proxy.topology.model import Endpoint, PodHealth

HEADER = ("POD", "ADDRESS", "REACHABLE", "READ_ONLY", "LAG", "ROLE", "STATE")


async def check(
    config: Config,
    out: TextIO,
    discovery: Discovery | None = None,
    checker: PodChecker | None = None,
) -> int:
    """Print the table for `config`'s cluster to `out`; 0 when everything is reachable."""
    print(f"configuration OK: listen {config.listen}, writer {config.discovery.writer}", file=out)
    discovery = discovery or Discovery(config.discovery)
    try:
        pods = await discovery.resolve()
    except DnsUnavailable as exc:
        print(f"DNS: cannot resolve {discovery.service_fqdn}: {exc}", file=out)
        return 1
    print(f"DNS: {len(pods)} pod(s) behind {discovery.service_fqdn}", file=out)
    if checker is None:
        from proxy.app import build_checker  # here: the CLI imports this module for `check` only

        checker = build_checker(config, reloading_backend_context(config.backend_tls))
    try:
        health = await _check_all(checker, list(pods.values()))
    finally:
        await checker.close()
    writer, problem = select_writer(config.discovery.writer, pods, health)
    _print_table(out, [_row(pods[pod], health[pod], writer) for pod in sorted(pods)])
    return _verdict(out, pods, health, writer, problem)


async def _check_all(checker: PodChecker, endpoints: Sequence[Endpoint]) -> dict[str, PodHealth]:
    results = await asyncio.gather(*(checker.check(e, None) for e in endpoints))
    return {h.pod: h for h in results}


def _row(endpoint: Endpoint, health: PodHealth, writer: Endpoint | None) -> tuple[str, ...]:
    lag = "-" if health.lag_seconds is None else f"{health.lag_seconds:g}s"
    read_only = "-" if health.read_only is None else ("yes" if health.read_only else "no")
    state = health.state.value + (f" ({health.error})" if health.error else "")
    return (
        endpoint.pod,
        endpoint.address,
        "yes" if health.reachable else "no",
        read_only,
        lag,
        _role(endpoint, health, writer),
        state,
    )


def _role(endpoint: Endpoint, health: PodHealth, writer: Endpoint | None) -> str:
    if endpoint == writer:
        return "writer"
    if health.read_only is None:
        return "unknown"
    return "replica" if health.read_only else "writable (not the writer!)"


def _print_table(out: TextIO, rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in [HEADER, *rows]) for i in range(len(HEADER))]
    for row in [HEADER, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)), file=out
        )


def _verdict(
    out: TextIO,
    pods: Mapping[str, Endpoint],
    health: Mapping[str, PodHealth],
    writer: Endpoint | None,
    problem: str | None,
) -> int:
    down = sorted(pod for pod, h in health.items() if not h.reachable)
    problems = [f"not reachable: {', '.join(down)}"] if down else []
    if not pods:
        problems.append("no pods in DNS")
    if writer is None:
        problems.append(f"no writer: {problem}")
    for line in problems:
        print(f"FAILED: {line}", file=out)
    if not problems:
        print(f"OK: writer {writer}, every pod reachable", file=out)
    return 1 if problems else 0


def run_check(config: Config, out: TextIO = sys.stdout) -> int:
    return asyncio.run(check(config, out))
