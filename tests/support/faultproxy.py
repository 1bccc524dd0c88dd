"""A TCP fault proxy for tests: a forwarder between a client (rwproxy) and one server (a pod).

Theory of operation
-------------------
`FaultProxy` runs its own event loop in a daemon thread, so blocking tests can drive it. It
listens on one address (any 127/8 address works on Linux) and opens one upstream connection
to the target per accepted connection (a *link*). Each direction of a link has a pump that
reads chunks and queues them with a due time, and a sender that writes them in order when
they are due; so a delay is latency, not a throughput cap, and switching the delay off never
reorders bytes. Bytes are never looked at, except that `drop_mid_response` cuts a chunk.

The mode can change at any time and applies to current and new links alike:

* `pass_through()`: forward everything at once (the initial mode, and `restore()`).
* `delay(seconds)`: every chunk, in both directions, is delivered `seconds` late.
* `drop_mid_response(keep)`: the next server->client chunk of every link is cut to its first
  `keep` bytes (0 allowed), which are delivered, then both sides are closed (FIN). A link
  opened in this mode is cut at its first server chunk, i.e. the server greeting.
* `reset()`: every link is reset at once (SO_LINGER 0, close: an RST to both peers), and new
  connections are accepted and reset.
* `blackhole(accept=True)`: nothing is forwarded and nothing is closed: current links hold
  what they read (and stop reading) until the mode changes, then deliver it, as TCP does
  when a partition heals. New connections are accepted and ignored for good (read and
  discarded until the client leaves; never connected upstream, so a server never sees a
  connection that closes before its handshake).
* `blackhole(accept=False)`: the same, and new connections are not even accepted: the
  listening socket's backlog shrinks to 0 and one filler connection of our own fills its
  accept queue, after which Linux drops incoming SYNs, so `connect()` hangs until the
  client's own timeout, as with a host that is gone. Leaving the mode restores the backlog,
  accepts the filler and closes it.

`stats()` counts connections and bytes. `stop()` closes the listener and every link and
ends the thread; it is idempotent. Used as a context manager it starts and stops itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
Address = tuple[str, int]

CHUNK = 65536
UPSTREAM_CONNECT_TIMEOUT_SECONDS = 5.0
CALL_TIMEOUT_SECONDS = 10.0
LISTEN_BACKLOG = 128
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class Mode(enum.Enum):
    PASS = "pass"
    DELAY = "delay"
    DROP_MID_RESPONSE = "drop_mid_response"
    RESET = "reset"
    BLACKHOLE = "blackhole"


@dataclass(frozen=True, slots=True)
class Fault:
    """The current mode and its parameter."""

    mode: Mode = Mode.PASS
    delay: float = 0.0  # DELAY: seconds per direction
    keep: int = 0  # DROP_MID_RESPONSE: bytes of the cut chunk that are delivered
    accept: bool = True  # BLACKHOLE: whether new connections complete their handshake


@dataclass(frozen=True, slots=True)
class FaultStats:
    """Counters since start (`active`: links open now)."""

    accepted: int = 0  # connections accepted (fillers excluded)
    active: int = 0
    forwarded: int = 0  # links connected upstream
    ignored: int = 0  # accepted while black-holed: never forwarded
    reset: int = 0  # links and new connections reset
    dropped: int = 0  # links cut mid-response
    to_server: int = 0  # bytes delivered client -> server
    to_client: int = 0  # bytes delivered server -> client


@dataclass(eq=False)
class _Link:
    """One forwarded connection: the client side, the server side, their tasks."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closed: bool = False


class FaultProxy:
    """Forward `listen` -> `target`, with faults switchable at runtime (module docstring)."""

    def __init__(self, listen: Address, target: Address) -> None:
        self.target = target
        self._listen = listen
        self._fault = Fault()
        self._stats = FaultStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._accepting = False
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fillers: list[socket.socket] = []
        self._filler_names: set[Address] = set()
        self._flowing: asyncio.Event | None = None  # set unless black-holed

    # -- lifecycle (test thread) ------------------------------------------------------

    @property
    def address(self) -> Address:
        assert self._listener is not None, "not started"
        host, port = self._listener.getsockname()[:2]
        return host, port

    def start(self) -> FaultProxy:
        listener = socket.create_server(self._listen, backlog=LISTEN_BACKLOG, reuse_port=False)
        listener.setblocking(False)
        self._listener = listener
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._main, args=(started,), name=f"faultproxy-{self._listen[0]}", daemon=True
        )
        self._thread.start()
        started.wait(CALL_TIMEOUT_SECONDS)
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        with contextlib.suppress(RuntimeError, TimeoutError):
            self._call(self._shutdown)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CALL_TIMEOUT_SECONDS)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults (test thread) ---------------------------------------------------------

    @property
    def fault(self) -> Fault:
        return self._fault

    def pass_through(self) -> None:
        self._set(Fault())

    restore = pass_through

    def delay(self, seconds: float) -> None:
        self._set(Fault(Mode.DELAY, delay=seconds))

    def drop_mid_response(self, keep: int = 0) -> None:
        self._set(Fault(Mode.DROP_MID_RESPONSE, keep=keep))

    def reset(self) -> None:
        self._set(Fault(Mode.RESET))

    def blackhole(self, *, accept: bool = True) -> None:
        self._set(Fault(Mode.BLACKHOLE, accept=accept))

    def stats(self) -> FaultStats:
        return self._stats

    def _set(self, fault: Fault) -> None:
        async def apply() -> None:
            self._apply(fault)

        self._call(apply)

    def _call(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(fn(), self._loop)
        return future.result(CALL_TIMEOUT_SECONDS)

    # -- the loop (proxy thread) ------------------------------------------------------

    def _main(self, started: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._loop.call_soon(self._start_accepting)
        self._loop.call_soon(started.set)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _shutdown(self) -> None:
        self._stop_accepting()
        for link in list(self._links):
            self._close(link)
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._close_fillers()
        if self._listener is not None:
            self._listener.close()

    def _apply(self, fault: Fault) -> None:
        old, self._fault = self._fault, fault
        assert self._flowing is not None
        if fault.mode is Mode.BLACKHOLE:
            self._flowing.clear()
        else:
            self._flowing.set()
        if fault.mode is Mode.RESET:
            for link in list(self._links):
                self._reset(link)
        refusing = fault.mode is Mode.BLACKHOLE and not fault.accept
        was_refusing = old.mode is Mode.BLACKHOLE and not old.accept
        if refusing and not was_refusing:
            self._stop_accepting()
            self._fill_backlog()
        elif was_refusing and not refusing:
            assert self._listener is not None
            self._listener.listen(LISTEN_BACKLOG)
            self._start_accepting()
        logger.info("fault proxy %s -> %s: %s", self._listen, self.target, fault)

    def _count(self, **deltas: int) -> None:
        values = {name: getattr(self._stats, name) + delta for name, delta in deltas.items()}
        self._stats = replace(self._stats, **values)

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- accepting --------------------------------------------------------------------

    def _start_accepting(self) -> None:
        # A reader callback, not a task awaiting sock_accept(): cancelling that task can lose
        # a connection it had just accepted; removing the reader loses nothing.
        assert self._listener is not None
        asyncio.get_running_loop().add_reader(self._listener.fileno(), self._accept)
        self._accepting = True

    def _stop_accepting(self) -> None:
        if self._accepting and self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
        self._accepting = False

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            if tuple(peer[:2]) in self._filler_names:
                sock.close()  # ours, from a refusing spell
                self._close_fillers()
                continue
            sock.setblocking(False)
            self._count(accepted=1)
            self._spawn(self._serve(sock))

    def _fill_backlog(self) -> None:
        """Backlog 0 and one queued connection: Linux then drops new SYNs (accept queue full)."""
        assert self._listener is not None
        self._listener.listen(0)
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(self.address)
        self._fillers.append(filler)
        self._filler_names.add(filler.getsockname()[:2])

    def _close_fillers(self) -> None:
        for filler in self._fillers:
            filler.close()
        self._fillers.clear()
        self._filler_names.clear()

    async def _serve(self, sock: socket.socket) -> None:
        fault = self._fault
        if fault.mode is Mode.RESET:
            self._count(reset=1)  # counters move before the peer can see the effect
            _reset_socket(sock)
            return
        reader, writer = await asyncio.open_connection(sock=sock)
        if fault.mode is Mode.BLACKHOLE:
            await self._ignore(reader, writer)
            return
        try:
            upstream = await asyncio.wait_for(
                asyncio.open_connection(*self.target), UPSTREAM_CONNECT_TIMEOUT_SECONDS
            )
        except (OSError, TimeoutError) as exc:
            logger.info("fault proxy: cannot reach %s: %s", self.target, exc)
            _abort(writer)
            return
        server_reader, server_writer = upstream
        link = _Link(writer, server_writer)
        self._links.add(link)
        self._count(active=1, forwarded=1)
        to_server: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
        to_client: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
        link.tasks = [
            self._spawn(self._pump(link, reader, to_server, from_server=False)),
            self._spawn(self._pump(link, server_reader, to_client, from_server=True)),
            self._spawn(self._send(link, to_server, server_writer, "to_server")),
            self._spawn(self._send(link, to_client, writer, "to_client")),
        ]

    async def _ignore(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Accepted while black-holed: say nothing, read and discard until the client leaves."""
        self._count(ignored=1)
        try:
            while await reader.read(CHUNK):
                pass
        except OSError:
            pass
        finally:
            writer.close()

    # -- forwarding -------------------------------------------------------------------

    async def _pump(
        self,
        link: _Link,
        source: asyncio.StreamReader,
        queue: asyncio.Queue[tuple[float, bytes | None]],
        *,
        from_server: bool,
    ) -> None:
        assert self._flowing is not None
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await source.read(CHUNK)
                await self._flowing.wait()  # black-holed: hold the chunk, read no more
                if not data:
                    break
                fault = self._fault
                if from_server and fault.mode is Mode.DROP_MID_RESPONSE:
                    await self._cut(link, data[: fault.keep])
                    return
                due = loop.time() + (fault.delay if fault.mode is Mode.DELAY else 0.0)
                queue.put_nowait((due, data))
        except OSError:
            pass
        queue.put_nowait((loop.time(), None))  # end of stream: close once all is delivered

    async def _send(
        self,
        link: _Link,
        queue: asyncio.Queue[tuple[float, bytes | None]],
        sink: asyncio.StreamWriter,
        counter: str,
    ) -> None:
        assert self._flowing is not None
        loop = asyncio.get_running_loop()
        try:
            while True:
                due, data = await queue.get()
                if data is None:
                    break
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                await self._flowing.wait()
                self._count(**{counter: len(data)})  # first: a test may read it at once
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        self._close(link)

    async def _cut(self, link: _Link, head: bytes) -> None:
        self._count(dropped=1)
        with contextlib.suppress(OSError):
            if head:
                self._count(to_client=len(head))
                link.client.write(head)
                await link.client.drain()
        self._close(link)

    def _close(self, link: _Link) -> None:
        """FIN both sides (after what is already written), stop the link's tasks."""
        if link.closed:
            return
        link.closed = True
        self._links.discard(link)
        self._count(active=-1)
        link.client.close()
        link.server.close()
        current = asyncio.current_task()
        for task in link.tasks:
            if task is not current:
                task.cancel()

    def _reset(self, link: _Link) -> None:
        """RST both sides."""
        self._count(reset=1)
        for writer in (link.client, link.server):
            _abort(writer)
        self._close(link)


def _reset_socket(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), dropping whatever is still buffered."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    writer.transport.abort()


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll `check()` until it is true or `timeout` passes; whether it became true."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True
