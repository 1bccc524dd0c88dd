"""The operations endpoint: /metrics, /healthz, /readyz and /status over HTTP/1.1.

Theory of operation
-------------------
Probes and scrapes are a few tiny GET requests per second at most, so the server is small on
purpose and runs on the proxy's own event loop. That is the point of it: /healthz answers only
when the loop does, and the handlers read the live objects (topology, pools, sessions) without
locks because nothing else runs while they do. HTTP parsing is h11's (sans-I/O, strict,
bounded request size); `HttpServer` only moves bytes. Each connection reads under an idle
timeout, answers requests one at a time (keep-alive), and is closed on any protocol error; at
most `max_connections` are served at once. Handlers are plain functions returning a
`Response`: none of them awaits, so a slow client cannot hold one.

`ProbeEndpoints` holds what the four endpoints say:

* `/healthz` (liveness): 200 whenever the loop answers.
* `/readyz` (readiness, `readiness()`): 503 at once while draining or before the listener is
  up; otherwise 200 when the writer is known and reachable (`topology.current.writer`), or,
  with `readiness.require_writer: false`, when at least one replica is usable.
* `/metrics`: the proxy's own registry in the Prometheus text format (OpenMetrics if asked).
* `/status`: JSON: pods with role, health, lag and pool use, sessions, config version and the
  redacted config (never a password), uptime, last reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

import h11
from prometheus_client.exposition import choose_encoder

from proxy import __version__
from proxy.admin import config_version, status_json, status_snapshot

if TYPE_CHECKING:
    from proxy.server import ProxyContext

logger = logging.getLogger(__name__)

JSON: Final = "application/json"
MAX_REQUEST_BYTES: Final = 8192


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]  # lowercased names


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    content_type: str
    body: bytes

    @classmethod
    def json(cls, status: int, data: object) -> Response:
        return cls(status, JSON, json.dumps(data, default=str).encode() + b"\n")


Handler = Callable[[Request], Response]


class HttpServer:
    """Serves `routes` (path -> handler) for GET and HEAD; see the module docstring."""

    def __init__(
        self,
        routes: Mapping[str, Handler],
        *,
        idle_timeout: float = 10.0,
        max_connections: int = 64,
    ) -> None:
        self._routes = routes
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, reuse_address=True)

    async def close(self) -> None:
        """Stop listening and end open connections (bounded: they only ever wait on reads)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._tasks) >= self._max_connections:
            writer.close()
            return
        self._tasks.add(task)
        try:
            await self._exchange(h11.Connection(h11.SERVER, MAX_REQUEST_BYTES), reader, writer)
        except (TimeoutError, ConnectionError, h11.ProtocolError) as exc:
            logger.debug("http connection ended: %s", type(exc).__name__)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _exchange(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            # One deadline for the whole request: a client trickling bytes cannot hold a slot.
            async with asyncio.timeout(self._idle_timeout):
                request = await self._next_request(conn, reader)
            if request is None:
                return
            writer.write(self._respond(conn, request))
            async with asyncio.timeout(self._idle_timeout):
                await writer.drain()
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _next_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> Request | None:
        """The next whole request (its body, if any, is read and ignored); None at EOF."""
        request: Request | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(MAX_REQUEST_BYTES))
            elif isinstance(event, h11.Request):
                request = _request(event)
            elif isinstance(event, h11.EndOfMessage):
                return request
            elif isinstance(event, h11.ConnectionClosed):
                return None

    def _respond(self, conn: h11.Connection, request: Request) -> bytes:
        response = self._dispatch(request)
        headers = [
            ("content-type", response.content_type),
            ("content-length", str(len(response.body))),
            ("cache-control", "no-store"),
        ]
        reason = HTTPStatus(response.status).phrase.encode()
        head = h11.Response(status_code=response.status, headers=headers, reason=reason)
        out = conn.send(head) or b""
        if request.method != "HEAD":
            out += conn.send(h11.Data(data=response.body)) or b""
        return out + (conn.send(h11.EndOfMessage()) or b"")

    def _dispatch(self, request: Request) -> Response:
        handler = self._routes.get(request.path)
        if handler is None:
            return Response.json(404, {"error": "not found", "paths": sorted(self._routes)})
        if request.method not in ("GET", "HEAD"):
            return Response.json(405, {"error": "only GET and HEAD"})
        try:
            return handler(request)
        except Exception:
            logger.exception("http handler for %s failed", request.path)
            return Response.json(500, {"error": "internal error"})


def _request(event: h11.Request) -> Request:
    target = event.target.decode("ascii", "replace")
    headers = {
        name.decode("ascii").lower(): value.decode("latin-1") for name, value in event.headers
    }
    return Request(event.method.decode("ascii"), target.split("?", 1)[0], headers)


# -- the endpoints ------------------------------------------------------------------------


def readiness(ctx: ProxyContext, listening: bool) -> tuple[bool, str]:
    """Whether the proxy should get traffic now, and why (a short sentence)."""
    if ctx.draining:
        return False, "draining: the proxy is shutting down"
    if not listening:
        return False, "starting: not listening yet"
    topology = ctx.topology()
    if topology.writer is not None:
        return True, f"writer {topology.writer} reachable"
    problem = f"no writer ({topology.writer_problem})"
    if not ctx.config.readiness.require_writer and topology.readers:
        return True, f"{problem}; reads only, from {len(topology.readers)} replica(s)"
    return False, problem


class ProbeEndpoints:
    """What /healthz, /readyz, /metrics and /status answer (see the module docstring)."""

    def __init__(
        self,
        ctx: ProxyContext,
        listening: Callable[[], bool],
        reload_status: Callable[[], Mapping[str, Any]] = dict,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ctx = ctx
        self._listening = listening
        self._reload_status = reload_status
        self._clock = clock
        self._started = clock()

    def routes(self) -> dict[str, Handler]:
        return {
            "/healthz": self.healthz,
            "/readyz": self.readyz,
            "/metrics": self.metrics,
            "/status": self.status,
        }

    def uptime(self) -> float:
        return round(self._clock() - self._started, 3)

    def healthz(self, request: Request) -> Response:
        return Response.json(200, {"status": "ok", "uptime_seconds": self.uptime()})

    def readyz(self, request: Request) -> Response:
        ready, reason = readiness(self._ctx, self._listening())
        topology = self._ctx.topology()
        body = {
            "ready": ready,
            "reason": reason,
            "writer": topology.writer.pod if topology.writer is not None else None,
            "readers": [reader.pod for reader in topology.readers],
        }
        return Response.json(200 if ready else 503, body)

    def metrics(self, request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(200, content_type, encoder(self._ctx.metrics.registry))

    def status(self, request: Request) -> Response:
        ready, reason = readiness(self._ctx, self._listening())
        config = self._ctx.config
        body = {
            "version": __version__,
            "uptime_seconds": self.uptime(),
            "ready": ready,
            "ready_reason": reason,
            **status_json(status_snapshot(self._ctx)),
            "config_version": config_version(config),
            "config": config.redacted(),
            "reload": dict(self._reload_status()),
        }
        return Response.json(200, body)


async def start_http(
    ctx: ProxyContext,
    listening: Callable[[], bool],
    reload_status: Callable[[], Mapping[str, Any]] = dict,
    port_offset: int = 0,
) -> HttpServer | None:
    """The HTTP endpoint on `config.http` (its port + `port_offset`: worker i of several
    uses port + i), started; None when it is disabled."""
    address = ctx.config.http
    if address is None:
        return None
    server = HttpServer(ProbeEndpoints(ctx, listening, reload_status).routes())
    port = address.port + port_offset if address.port else 0
    await server.start(address.host, port)
    logger.info(
        "http endpoint on %s:%d (/metrics /healthz /readyz /status)", address.host, server.port
    )
    return server


async def stop_http(server: HttpServer | None) -> None:
    if server is not None:
        with contextlib.suppress(Exception):
            await server.close()
