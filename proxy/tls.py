"""TLS contexts for both legs: applications -> proxy (`client_context`) and proxy -> pods
(`backend_context`), plus `ReloadingContext`, which follows certificate files that rotate.

Theory of operation
-------------------
Toward applications the proxy is the TLS *server*. `client_context(cfg)` builds a
``PROTOCOL_TLS_SERVER`` context (TLS 1.2 or newer, no renegotiation) from ``tls.cert_file`` and
``tls.key_file``; with ``tls.ca_file`` a client certificate, when one is presented, must be
signed by that CA (``CERT_OPTIONAL``, as MariaDB's ``ssl_ca`` does). Whether a login *must* use
TLS (``tls.require``) is the session's decision, not the context's.

Toward the pods the proxy is the TLS *client*, and ``backend_tls.mode`` means what MySQL's
``--ssl-mode`` means:

=================  =======================  ===============================================
mode               `may_use_tls`/`needs_tls`  what is verified
=================  =======================  ===============================================
disabled           no / no                  (no context: `backend_context` returns None)
preferred          yes / no                 nothing; a pod without TLS is used in clear
required           yes / yes                nothing; a pod without TLS is refused
verify_ca          yes / yes                the chain up to ``ca_file``; any name
verify_identity    yes / yes                the chain, and the name: the caller passes the pod's
                                            FQDN (``mysql-0.mysql-h.default.svc.cluster.local``)
                                            as ``server_hostname``
=================  =======================  ===============================================

Connect to the pod's IP and pass its FQDN as ``server_hostname`` in every mode (it is also the
SNI); only verify_identity checks it, which is why the same DNS name a headless Service gives the
pod must be on the pod's certificate.

Errors. Building a context reads files; a missing or unreadable file, a file that is not PEM, or a
key that does not belong to its certificate raises `ConfigError` with one problem that names the
setting, the file and the reason (``tls.key_file: /etc/tls/tls.key does not match the certificate
/etc/tls/tls.crt``), so start-up fails the same way as for any other bad setting.

Rotation. Kubernetes updates a mounted Secret by swapping a ``..data`` symlink: the path stays,
the file behind it changes. `ReloadingContext.current()` returns the context to use for the next
connection; at most every ``interval`` seconds it compares a fingerprint (device, inode, mtime,
size and resolved path of every file, as `proxy.reload` does for the config file) and rebuilds on
a change. Connections already open keep the context they started with. A new set of files that
does not load is logged once (ERROR) and the previous context stays in use until the files change
again. Files that change *while* being loaded (cert read before the swap, key after it) are
loaded again at the next check rather than remembered as bad.

`start_tls()` wraps `loop.start_tls()` for the proxy's server side, where the client's first TLS
bytes may already have been read together with its SSLRequest (see its docstring).

Nothing here knows about the MySQL protocol; `proxy.protocol.handshake` decides *when* to switch.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from proxy.config import BACKEND_TLS_MODES, BackendTlsConfig, ConfigError, TlsConfig
from proxy.files import fingerprint

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_RELOAD_INTERVAL_SECONDS",
    "ReloadingContext",
    "backend_context",
    "client_context",
    "may_use_tls",
    "needs_tls",
    "reloading_backend_context",
    "reloading_client_context",
    "start_tls",
]

DEFAULT_RELOAD_INTERVAL_SECONDS: Final = 10.0
_MIN_VERSION: Final = ssl.TLSVersion.TLSv1_2
_REQUIRED_MODES: Final = frozenset({"required", "verify_ca", "verify_identity"})


# --- modes ------------------------------------------------------------------------------------


def may_use_tls(mode: str) -> bool:
    """Whether the proxy asks a pod for TLS (sets CLIENT_SSL when the pod offers it)."""
    return _known(mode) != "disabled"


def needs_tls(mode: str) -> bool:
    """Whether a pod that does not offer TLS must be refused (rather than used in clear)."""
    return _known(mode) in _REQUIRED_MODES


def _known(mode: str) -> str:
    if mode not in BACKEND_TLS_MODES:
        raise ValueError(f"unknown backend TLS mode {mode!r}")
    return mode


# --- contexts ---------------------------------------------------------------------------------


def client_context(cfg: TlsConfig) -> ssl.SSLContext | None:
    """The server-side context for applications, or None when ``tls`` has no certificate."""
    if cfg.cert_file is None or cfg.key_file is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _MIN_VERSION
    context.options |= ssl.OP_NO_RENEGOTIATION
    _load_chain(context, "tls", cfg.cert_file, cfg.key_file)
    if cfg.ca_file is not None:
        _load_ca(context, "tls.ca_file", cfg.ca_file)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def backend_context(cfg: BackendTlsConfig) -> ssl.SSLContext | None:
    """The client-side context for connections to pods, or None when the mode is disabled."""
    if not may_use_tls(cfg.mode):
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
    context.minimum_version = _MIN_VERSION
    if cfg.mode in ("verify_ca", "verify_identity"):
        if cfg.ca_file is None:  # load() refuses this; a Config built in code may not
            raise ConfigError([f"backend_tls.ca_file: required when mode is {cfg.mode!r}"])
        _load_ca(context, "backend_tls.ca_file", cfg.ca_file)
        context.check_hostname = cfg.mode == "verify_identity"
    else:
        # preferred/required encrypt but verify nothing, like MySQL's ssl-mode of that name.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cfg.cert_file is not None and cfg.key_file is not None:
        _load_chain(context, "backend_tls", cfg.cert_file, cfg.key_file)
    return context


def _load_chain(context: ssl.SSLContext, section: str, cert_file: Path, key_file: Path) -> None:
    """load_cert_chain with a message that says which file is wrong and why."""
    _check_pem(f"{section}.cert_file", cert_file, _parse_certificate, "a PEM certificate")
    _check_pem(f"{section}.key_file", key_file, _parse_private_key, "an unencrypted PEM key")
    try:
        context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        problem = f"{section}.key_file: {key_file} does not match the certificate {cert_file}"
        if "KEY_VALUES_MISMATCH" not in str(exc):
            problem = f"{section}.cert_file: cannot use {cert_file} with {key_file}: {_why(exc)}"
        raise ConfigError([problem]) from None
    except OSError as exc:  # the file went away between the check and the load
        raise ConfigError([f"{section}.cert_file: cannot read {cert_file}: {_why(exc)}"]) from None


def _load_ca(context: ssl.SSLContext, key: str, ca_file: Path) -> None:
    _check_pem(key, ca_file, _parse_certificate, "PEM CA certificates")
    try:
        context.load_verify_locations(cafile=ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError([f"{key}: cannot load {ca_file}: {_why(exc)}"]) from None


def _check_pem(key: str, path: Path, parse: Callable[[bytes], object], what: str) -> None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{key}: cannot read {path}: {_why(exc)}"]) from None
    try:
        parse(data)
    except (ValueError, TypeError) as exc:
        raise ConfigError([f"{key}: {path} is not {what} ({_why(exc)})"]) from None


def _parse_certificate(data: bytes) -> object:
    return x509.load_pem_x509_certificates(data)


def _parse_private_key(data: bytes) -> object:
    return serialization.load_pem_private_key(data, password=None)


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"{exc.library or 'SSL'}: {exc.reason}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# --- rotation ---------------------------------------------------------------------------------


class ReloadingContext:
    """An SSLContext that is rebuilt when its files change; see the module docstring.

    The first build happens in the constructor and raises `ConfigError` if it fails: a proxy
    must not start without its certificate. Later failures only log.
    """

    def __init__(
        self,
        build: Callable[[], ssl.SSLContext],
        paths: Sequence[Path],
        *,
        interval: float = DEFAULT_RELOAD_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        name: str = "TLS",
    ) -> None:
        self._build = build
        self._paths = tuple(paths)
        self._interval = interval
        self._clock = clock
        self._name = name
        self._fingerprint = fingerprint(self._paths)
        self._context = build()
        self._checked_at = clock()
        self.reloads = 0  # successful rebuilds after the first
        self.failures = 0  # file sets that did not load

    def current(self) -> ssl.SSLContext:
        """The context for a new connection; checks the files if ``interval`` has passed."""
        if self._clock() - self._checked_at >= self._interval:
            self.check()
        return self._context

    def check(self) -> bool:
        """Look at the files now (SIGHUP, tests); True if a new context was built."""
        self._checked_at = self._clock()
        seen = fingerprint(self._paths)
        if seen == self._fingerprint:
            return False
        try:
            context = self._build()
        except ConfigError as exc:
            if fingerprint(self._paths) == seen:  # stable and bad: say so once
                self._fingerprint = seen
                self.failures += 1
                logger.error(
                    "%s: keeping the previous certificate, the new files do not load: %s",
                    self._name,
                    "; ".join(exc.problems),
                )
            return False
        if fingerprint(self._paths) == seen:
            self._fingerprint = seen  # else: changed while loading, look again next time
        self._context = context
        self.reloads += 1
        logger.info("%s: reloaded %s", self._name, ", ".join(str(p) for p in self._paths))
        return True


def reloading_client_context(
    cfg: TlsConfig, *, clock: Callable[[], float] = time.monotonic
) -> ReloadingContext | None:
    """`client_context(cfg)` that follows rotations of its files, or None without TLS."""
    if cfg.cert_file is None or cfg.key_file is None:
        return None
    paths = [cfg.cert_file, cfg.key_file, *([cfg.ca_file] if cfg.ca_file else [])]
    return ReloadingContext(
        lambda: cast(ssl.SSLContext, client_context(cfg)),
        paths,
        interval=cfg.reload_interval_seconds,
        clock=clock,
        name="tls",
    )


def reloading_backend_context(
    cfg: BackendTlsConfig,
    *,
    interval: float = DEFAULT_RELOAD_INTERVAL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> ReloadingContext | None:
    """`backend_context(cfg)` that follows rotations of the CA and client certificate."""
    if not may_use_tls(cfg.mode):
        return None
    paths = [p for p in (cfg.ca_file, cfg.cert_file, cfg.key_file) if p is not None]
    if cfg.mode not in ("verify_ca", "verify_identity") and cfg.ca_file is not None:
        paths.remove(cfg.ca_file)  # not read in this mode
    return ReloadingContext(
        lambda: cast(ssl.SSLContext, backend_context(cfg)),
        paths,
        interval=interval,
        clock=clock,
        name="backend_tls",
    )


# --- switching a connection to TLS ------------------------------------------------------------


async def start_tls(
    transport: asyncio.WriteTransport,
    protocol: asyncio.BaseProtocol,
    context: ssl.SSLContext,
    *,
    server_side: bool,
    server_hostname: str | None = None,
    pending: bytes = b"",
    handshake_timeout: float | None = None,
) -> asyncio.Transport:
    """`loop.start_tls()`, first giving the TLS layer ``pending``: bytes already read.

    MySQL has no reply to an SSLRequest, so a client sends its TLS ClientHello right behind it,
    and one read can return both (`ServerHandshake.trailing_data`). `loop.start_tls()` only
    reads from the socket, so those bytes would be lost and the handshake would hang. Both
    asyncio's and uvloop's TLS layer are buffered protocols that keep bytes handed to them
    before or during the handshake, so the pending bytes are handed to it as soon as it is
    installed, before reading resumes. Returns the transport to use from now on; `protocol`'s
    `connection_made` is not called again.
    """
    loop = asyncio.get_running_loop()
    upgrading = asyncio.ensure_future(
        loop.start_tls(
            transport,
            protocol,
            context,
            server_side=server_side,
            server_hostname=server_hostname,
            ssl_handshake_timeout=handshake_timeout,
        )
    )
    if pending:
        loop.call_soon(_hand_over, loop, transport, protocol, pending)
    return cast(asyncio.Transport, await upgrading)


def _hand_over(
    loop: asyncio.AbstractEventLoop,
    transport: asyncio.BaseTransport,
    app_protocol: asyncio.BaseProtocol,
    data: bytes,
) -> None:
    """Feed ``data`` to the TLS protocol that start_tls installed on ``transport``.

    start_tls pauses reading, installs its protocol and only then schedules resume_reading, so
    this runs before any new byte from the socket reaches that protocol.
    """
    tls_layer = transport.get_protocol()
    if tls_layer is app_protocol:  # start_tls has not run its first step yet
        loop.call_soon(_hand_over, loop, transport, app_protocol, data)
        return
    if not hasattr(tls_layer, "buffer_updated"):  # uvloop's is not an asyncio subclass
        cast(asyncio.Protocol, tls_layer).data_received(data)
        return
    layer = cast(asyncio.BufferedProtocol, tls_layer)
    view = memoryview(data)
    while view:
        buffer = memoryview(layer.get_buffer(len(view)))
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        layer.buffer_updated(size)
        view = view[size:]
