"""Configuration: one frozen tree of dataclasses, from a YAML file plus ``RWPROXY_*`` variables.

Theory of operation
-------------------
The dataclasses below *are* the schema. Each field's type, default and checks (in the field's
``metadata``) sit on the field itself, so adding a setting means adding one field: the loader, the
environment variable names, ``Config.redacted()`` and the error messages all follow from it.

``load()`` is a pipeline of pure steps:

1. ``_parse_yaml`` turns the text into plain dicts, lists and scalars. It uses YAML 1.2 booleans
   (so ``read_your_writes: off`` stays the string ``"off"``) and rejects duplicate keys. A syntax
   error becomes a ``ConfigError`` that gives the line, never a yaml traceback.
2. ``_apply_environ`` lays ``RWPROXY_*`` variables over that tree. The variable names come from
   the schema (``health.timeout_seconds`` is ``RWPROXY_HEALTH__TIMEOUT_SECONDS``), so they cannot
   drift from it. Numbers and booleans are parsed as YAML scalars. Text-typed values (strings,
   paths, ``host:port``) are taken verbatim, lists are split on commas, and ``null`` or an empty
   value clears an optional setting (``RWPROXY_HTTP=null``). An override of one member of an
   "exactly one of" group (``RWPROXY_MONITOR__PASSWORD``) replaces the file's choice.
3. ``_build`` walks the dataclass fields and converts and checks each value. It collects every
   problem, with its key path, instead of stopping at the first one.
4. ``_resolve_secrets`` reads each ``password_file`` into ``password`` through an injectable
   reader. This is the only I/O, and tests replace it. Relative TLS paths (``tls.cert_file``,
   ``backend_tls.ca_file``, ...) are then joined to the config file's directory; the files
   themselves are read by ``proxy.tls``, which reports unreadable ones with their key.

Invariants that must hold:

- A loaded ``Config`` holds resolved secrets: ``password`` is the cleartext (given inline or read
  from ``password_file``, which then records the source). ``password_hash`` is the mysql.user
  form ``*<40 hex>``. "Exactly one of" is a rule about what the *input* gives. It is checked
  while building and cannot be seen on a built object.
- Fields marked secret (``_setting(..., secret=True)``) have ``repr=False``. ``redacted()``
  replaces them, error messages never echo their values, and environment values for them are
  always taken verbatim, so that ``#x``, ``12345`` or ``null`` arrive unchanged.
- Tests may build ``Config(...)`` directly. That skips validation, so keep the defaults valid.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import math
import re
import types
import typing
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final, TypeVar

import yaml

__all__ = [
    "BACKEND_TLS_MODES",
    "ENV_PREFIX",
    "NOT_SETTINGS",
    "REDACTED",
    "AuthConfig",
    "BackendTlsConfig",
    "Config",
    "ConfigError",
    "DiscoveryConfig",
    "HealthConfig",
    "HostPort",
    "MonitorConfig",
    "PoolConfig",
    "ReadinessConfig",
    "RoutingConfig",
    "SecretReader",
    "TlsConfig",
    "UserConfig",
    "config_path_from",
    "load",
    "load_file",
]

ENV_PREFIX: Final = "RWPROXY_"
# Variables that share the prefix but are not settings: they say *where* config lives.
NOT_SETTINGS: Final = frozenset({"RWPROXY_CONFIG", "RWPROXY_CLUSTER_DIR"})
REDACTED: Final = "<redacted>"

_T = TypeVar("_T")
# A check gets a converted value and returns what is wrong with it, or None.
Check = Callable[[Any], str | None]
# Reads one secret file; raises OSError (or UnicodeError) when it cannot.
SecretReader = Callable[[Path], str]


class ConfigError(ValueError):
    """The configuration is unusable. ``problems`` lists every problem found, each with its key."""

    def __init__(self, problems: Sequence[str], source: str | None = None) -> None:
        self.problems = tuple(problems)
        self.source = source
        where = f" in {source}" if source else ""
        count = "1 problem" if len(self.problems) == 1 else f"{len(self.problems)} problems"
        lines = "".join(f"\n  {problem}" for problem in self.problems)
        super().__init__(f"invalid configuration{where} ({count}):{lines}")


# --- field helpers and checks -------------------------------------------------------------------


def _meta(*checks: Check, secret: bool = False, default_port: int | None = None) -> dict[str, Any]:
    return {"checks": checks, "secret": secret, "default_port": default_port}


def _setting(
    default: _T, *checks: Check, secret: bool = False, default_port: int | None = None
) -> _T:
    """A field with a default, checks run by the loader, and (if secret) hidden from repr."""
    meta = _meta(*checks, secret=secret, default_port=default_port)
    return field(default=default, repr=not secret, metadata=meta)


def _at_least(low: int) -> Check:
    def check(value: float) -> str | None:
        return None if value >= low else f"must be at least {low}, got {value}"

    return check


def _between(low: int, high: int) -> Check:
    def check(value: float) -> str | None:
        return None if low <= value <= high else f"must be between {low} and {high}, got {value}"

    return check


def _positive(value: float) -> str | None:
    return None if value > 0 else f"must be greater than 0, got {value}"


def _one_of(*choices: str) -> Check:
    def check(value: str) -> str | None:
        allowed = ", ".join(repr(choice) for choice in choices)
        return None if value in choices else f"expected one of {allowed}, got {value!r}"

    return check


def _not_empty(value: str) -> str | None:
    return None if value else "must not be empty"


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")


def _dns_label(value: str) -> str | None:
    # Kubernetes names services, namespaces and StatefulSets with RFC 1123 labels.
    ok = _DNS_LABEL.fullmatch(value)
    return None if ok else f"expected a DNS label (lowercase letters, digits, '-'), got {value!r}"


def _dns_name(value: str) -> str | None:
    ok = _HOST_NAME.fullmatch(value)
    return None if ok else f"expected a DNS name like 'cluster.local', got {value!r}"


def _password_hash(value: str) -> str | None:
    # The value is a secret: say what is wrong, never echo it.
    ok = re.fullmatch(r"\*[0-9A-Fa-f]{40}", value)
    return None if ok else "expected '*' followed by 40 hex digits, as in mysql.user"


def _ip_addresses(servers: tuple[HostPort, ...]) -> str | None:
    # The resolver's own addresses cannot need resolving.
    for server in servers:
        if not _is_ip(server.host):
            return f"expected IP addresses, got {str(server)!r}"
        if server.port == 0:
            return f"port must be between 1 and 65535, got {str(server)!r}"
    return None


def _at_least_one_user(values: tuple[object, ...]) -> str | None:
    return None if values else "at least one user is required"


def _unique_names(users: tuple[UserConfig, ...]) -> str | None:
    first: dict[str, int] = {}
    for index, user in enumerate(users):
        if user.name in first:
            return (
                f"duplicate user name {user.name!r} (users[{first[user.name]}] and users[{index}])"
            )
        first[user.name] = index
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# --- the schema ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostPort:
    """A TCP address, written ``host:port`` or ``[v6addr]:port``; ``host`` has no brackets.

    Port 0 parses: for ``listen``/``http`` it asks the OS for a free port, as tests do.
    """

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, default_port: int | None = None) -> HostPort:
        """Parse ``host:port``; ``default_port`` (if given) allows leaving the port out.

        Raises ValueError with a message that quotes ``text``.
        """
        host, port = _split_host_port(text)
        if port is not None:
            number = _parse_port(port, text)
        elif default_port is not None:
            number = default_port
        else:
            raise ValueError(f"expected 'host:port' (IPv6 as '[::1]:6033'), got {text!r}")
        _check_host(host, text)
        return cls(host.removeprefix("[").removesuffix("]"), number)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _split_host_port(text: str) -> tuple[str, str | None]:
    if bracketed := re.fullmatch(r"\[([^\]]*)\](?::(.*))?", text):
        return f"[{bracketed[1]}]", bracketed[2]
    if text.count(":") > 1:
        return text, None  # a bare IPv6 address: only valid where the port may be left out
    host, colon, port = text.partition(":")
    return host, port if colon else None


def _check_host(host: str, text: str) -> None:
    if host.startswith("["):
        if ":" not in host or not _is_ip(host[1:-1]):
            raise ValueError(f"expected an IPv6 address inside [], got {text!r}")
    elif not host:
        raise ValueError(f"missing host in {text!r}")
    elif not (_is_ip(host) or _HOST_NAME.fullmatch(host)):
        raise ValueError(f"expected a host name or IP address, got {text!r}")


def _parse_port(port: str, text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", port) or int(port) > 65535:
        raise ValueError(f"expected a port between 0 and 65535, got {text!r}")
    return int(port)


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveryConfig:
    """The pods: a StatefulSet behind a headless Service, found through DNS."""

    service: str = _setting("mysql-h", _dns_label)
    namespace: str = _setting("default", _dns_label)
    cluster_domain: str = _setting("cluster.local", _dns_name)
    statefulset: str = _setting("mysql", _dns_label)
    port: int = _setting(3306, _between(1, 65535))
    port_name: str = _setting("mysql", _dns_label)  # SRV _<port_name>._tcp
    writer: str = "mysql-0"  # a pod of the StatefulSet ('mysql-<n>'), or "auto"
    nameservers: tuple[HostPort, ...] = _setting((), _ip_addresses, default_port=53)  # () = system
    resolve_interval_seconds: float = _setting(5.0, _positive)
    dns_timeout_seconds: float = _setting(2.0, _positive)

    @property
    def service_fqdn(self) -> str:
        """``mysql-h.default.svc.cluster.local``"""
        return f"{self.service}.{self.namespace}.svc.{self.cluster_domain}"

    @property
    def srv_name(self) -> str:
        """``_mysql._tcp.mysql-h.default.svc.cluster.local``"""
        return f"_{self.port_name}._tcp.{self.service_fqdn}"

    def pod_fqdn(self, name: str) -> str:
        """``mysql-0`` -> ``mysql-0.mysql-h.default.svc.cluster.local``"""
        return f"{name}.{self.service_fqdn}"

    def _cross_checks(self) -> Iterator[tuple[str, str]]:
        pod = rf"{re.escape(self.statefulset)}-(0|[1-9][0-9]*)"
        if self.writer != "auto" and not re.fullmatch(pod, self.writer):
            example = f"{self.statefulset}-0"
            yield "writer", f"expected a pod name like {example!r} or 'auto', got {self.writer!r}"


@dataclass(frozen=True, slots=True, kw_only=True)
class UserConfig:
    """An account that applications log in to the proxy with."""

    # Exactly one of these is given in the input.
    _exclusive: ClassVar[tuple[str, ...]] = ("password", "password_hash", "password_file")

    name: str = field(metadata=_meta(_not_empty))
    password: str | None = _setting(None, secret=True)  # cleartext, inline or from password_file
    password_hash: str | None = _setting(None, _password_hash, secret=True)  # "*<40 hex>"
    password_file: Path | None = None  # where password came from (relative to the config file)
    max_connections: int = _setting(0, _at_least(0))  # 0 = no limit


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorConfig:
    """The account that health checks and writer discovery log in to the pods with."""

    _exclusive: ClassVar[tuple[str, ...]] = ("password", "password_file")

    user: str = field(metadata=_meta(_not_empty))
    password: str | None = _setting(None, secret=True)  # cleartext, inline or from password_file
    password_file: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolConfig:
    """Backend connection pools, one per pod and user."""

    max_size: int = _setting(64, _at_least(1))
    min_idle: int = _setting(0, _at_least(0))
    connect_timeout_seconds: float = _setting(3.0, _positive)
    pool_timeout_seconds: float = _setting(5.0, _positive)  # then ERR 1040
    idle_timeout_seconds: float = _setting(300.0, _positive)
    max_lifetime_seconds: float = _setting(3600.0, _positive)

    def _cross_checks(self) -> Iterator[tuple[str, str]]:
        if self.min_idle > self.max_size:
            yield "min_idle", f"must not exceed max_size ({self.max_size}), got {self.min_idle}"


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthConfig:
    """Per-pod probes; a replica lagging more than the limit gets no reads."""

    interval_seconds: float = _setting(1.0, _positive)
    # Generous on purpose: on a busy 2-core node a healthy pod can take a second to
    # answer, and a pod marked down moves all its reads elsewhere (ProxySQL and
    # MaxScale also wait several seconds and several failures).
    timeout_seconds: float = _setting(2.0, _positive)
    max_replication_lag_seconds: float = _setting(10.0, _at_least(0))
    failures_before_down: int = _setting(3, _at_least(1))


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingConfig:
    """How statements pick a pod (see proxy/routing)."""

    # split: reads to replicas; writer_only: everything to the writer (an L7 pooler and
    # failover follower without read scaling, and the like-for-like benchmark target).
    mode: str = _setting("split", _one_of("split", "writer_only"))
    read_your_writes: str = _setting("gtid", _one_of("gtid", "off"))
    read_your_writes_timeout_seconds: float = _setting(1.0, _positive)  # then use the writer
    reader_selection: str = _setting(
        "least_outstanding", _one_of("least_outstanding", "round_robin", "random")
    )
    writer_wait_timeout_seconds: float = _setting(10.0, _positive)
    reads_on_writer_when_no_replica: bool = True
    retry_reads: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadinessConfig:
    """What /readyz requires."""

    require_writer: bool = True  # False: ready as soon as a replica is reachable (reads only)


def _pair(owner: str, cert_file: Path | None, key_file: Path | None) -> Iterator[tuple[str, str]]:
    """A certificate is useless without its key and the other way round."""
    if cert_file is not None and key_file is None:
        yield "key_file", f"required when {owner}.cert_file is given (give both or neither)"
    if key_file is not None and cert_file is None:
        yield "cert_file", f"required when {owner}.key_file is given (give both or neither)"


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsConfig:
    """TLS toward applications: offered when ``cert_file`` and ``key_file`` are given.

    Relative paths are taken relative to the config file. The files are read by
    ``proxy.tls`` (not here) and re-read when they change, checked every
    ``reload_interval_seconds``, so a rotated Kubernetes Secret needs no restart.
    """

    cert_file: Path | None = None  # PEM: the proxy's certificate, then any intermediates
    key_file: Path | None = None  # PEM: its private key (unencrypted)
    # Clients that present a certificate must have one signed by this CA; presenting one
    # stays optional, as with MariaDB's ssl_ca.
    ca_file: Path | None = None
    require: bool = False  # refuse logins that did not switch to TLS
    reload_interval_seconds: float = _setting(10.0, _positive)

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None and self.key_file is not None

    def _cross_checks(self) -> Iterator[tuple[str, str]]:
        yield from _pair("tls", self.cert_file, self.key_file)
        if self.cert_file is None and self.key_file is None:
            if self.require:
                yield "require", "needs tls.cert_file and tls.key_file"
            if self.ca_file is not None:
                yield "ca_file", "needs tls.cert_file and tls.key_file"


BACKEND_TLS_MODES: Final = ("disabled", "preferred", "required", "verify_ca", "verify_identity")


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendTlsConfig:
    """TLS toward the pods, with the meaning of MySQL's ``--ssl-mode``.

    ``preferred``: TLS when the pod offers it, unverified; ``required``: TLS or no connection,
    unverified; ``verify_ca``: the pod's certificate must be signed by ``ca_file``;
    ``verify_identity``: that, and it must name the pod's DNS name
    (``mysql-0.mysql-h.default.svc.cluster.local``). ``ca_file`` is only read by the two
    verify modes.
    """

    mode: str = _setting("disabled", _one_of(*BACKEND_TLS_MODES))
    ca_file: Path | None = None
    cert_file: Path | None = None  # a client certificate, for accounts with REQUIRE X509
    key_file: Path | None = None

    def _cross_checks(self) -> Iterator[tuple[str, str]]:
        if self.mode in ("verify_ca", "verify_identity") and self.ca_file is None:
            yield "ca_file", f"required when mode is {self.mode!r}"
        yield from _pair("backend_tls", self.cert_file, self.key_file)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthConfig:
    """Failed-login limiting per client address (proxy/auth_guard.py, docs/security.md)."""

    max_failures: int = _setting(5, _at_least(0))  # 1045s before the first block; 0 = off
    window_seconds: float = _setting(300.0, _positive)  # failures forgiven after this quiet time
    base_backoff_seconds: float = _setting(1.0, _positive)  # first block; doubles per failure
    max_backoff_seconds: float = _setting(60.0, _positive)
    tracked_addresses: int = _setting(10000, _at_least(2))  # memory bound (LRU)

    def _cross_checks(self) -> Iterator[tuple[str, str]]:
        if self.max_backoff_seconds < self.base_backoff_seconds:
            yield (
                "max_backoff_seconds",
                (f"must be at least base_backoff_seconds ({self.base_backoff_seconds:g})"),
            )
        if self.window_seconds < self.max_backoff_seconds:
            yield (
                "window_seconds",
                (f"must be at least max_backoff_seconds ({self.max_backoff_seconds:g})"),
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole configuration. Build it with ``load()``/``load_file()``, or directly in tests."""

    listen: HostPort = HostPort("127.0.0.1", 6033)
    http: HostPort | None = HostPort("127.0.0.1", 6070)  # None disables /metrics and probes
    workers: int = _setting(1, _at_least(1))
    max_connections: int = _setting(4096, _at_least(1))
    max_connections_per_user: int = _setting(0, _at_least(0))  # 0 = no limit
    handshake_timeout_seconds: float = _setting(10.0, _positive)
    client_idle_timeout_seconds: float = _setting(28800.0, _positive)  # like wait_timeout
    shutdown_timeout_seconds: float = _setting(25.0, _positive)
    max_allowed_packet: int = _setting(64 << 20, _between(1024, 1 << 30))  # MariaDB's range
    log_level: str = _setting("info", _one_of("debug", "info", "warning", "error"))
    log_format: str = _setting("text", _one_of("text", "json"))
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    users: tuple[UserConfig, ...] = field(metadata=_meta(_at_least_one_user, _unique_names))
    monitor: MonitorConfig = field(metadata=_meta())
    pool: PoolConfig = field(default_factory=PoolConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    readiness: ReadinessConfig = field(default_factory=ReadinessConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    backend_tls: BackendTlsConfig = field(default_factory=BackendTlsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)

    def _cross_checks(self) -> Iterator[tuple[str, str]]:
        if self.http is not None and self.http == self.listen and self.listen.port != 0:
            yield "http", f"must differ from listen, got {str(self.http)!r} for both"

    def redacted(self) -> dict[str, Any]:
        """Plain data for /status and logs: addresses and paths as strings, secrets replaced."""
        data = _redact(self)
        assert isinstance(data, dict)
        return data


def _redact(value: object, secret: bool = False) -> object:
    if secret and value is not None:
        return REDACTED
    if isinstance(value, HostPort | Path):
        return str(value)
    if isinstance(value, tuple):
        return [_redact(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _redact(getattr(value, f.name), f.metadata.get("secret", False))
            for f in dataclasses.fields(value)
        }
    return value


# --- public entry points ------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def load(
    yaml_text: str,
    environ: Mapping[str, str],
    base_dir: Path | None = None,
    *,
    read_secret: SecretReader = _read_text,
) -> Config:
    """Build a Config from YAML text and ``RWPROXY_*`` overrides, or raise ConfigError.

    Relative ``password_file``s are taken relative to ``base_dir`` (the working directory if
    None) and read with ``read_secret``. That is the only I/O, and only when a ``password_file``
    is given; tests pass a fake reader. Relative TLS file paths are joined to ``base_dir`` too
    (not read: ``proxy.tls`` does that).
    """
    problems = _Problems()
    raw = _parse_yaml(yaml_text)
    _apply_environ(raw, environ, problems)
    config = _build(Config, raw, "", problems)
    problems.raise_if_any()
    assert isinstance(config, Config)
    config = _resolve_secrets(config, base_dir, read_secret, problems)
    problems.raise_if_any()
    return _anchor_tls_paths(config, base_dir)


def load_file(
    path: str | Path, environ: Mapping[str, str], *, read_secret: SecretReader = _read_text
) -> Config:
    """``load()`` the file at ``path``; its directory is the base for relative secret files."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as error:
        raise ConfigError([f"cannot read the file: {_reason(error)}"], source=str(path)) from None
    try:
        return load(text, environ, path.parent, read_secret=read_secret)
    except ConfigError as error:
        raise ConfigError(error.problems, source=str(path)) from None


def config_path_from(args_value: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    """The config file: ``--config`` if given, else ``$RWPROXY_CONFIG``, else None."""
    if args_value:
        return Path(args_value)
    from_env = environ.get("RWPROXY_CONFIG")
    return Path(from_env) if from_env else None


# --- problems -----------------------------------------------------------------------------------


class _Problems:
    """Collects ``(key path, message)`` pairs; knows which paths came from which variable."""

    def __init__(self) -> None:
        self.found: list[tuple[str, str]] = []
        self.origins: dict[str, str] = {}  # key path -> RWPROXY_ variable that set it

    def add(self, path: str, message: str) -> None:
        self.found.append((path, message))

    def raise_if_any(self) -> None:
        if self.found:
            raise ConfigError([self._format(path, message) for path, message in self.found])

    def _format(self, path: str, message: str) -> str:
        if not path:
            return message
        origin = next((var for key, var in self.origins.items() if _within(path, key)), None)
        return f"{path} (from {origin}): {message}" if origin else f"{path}: {message}"


def _within(path: str, key: str) -> bool:
    return path == key or path.startswith((f"{key}.", f"{key}["))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _reason(error: Exception) -> str:
    if isinstance(error, UnicodeError):
        return "not UTF-8 text"
    return getattr(error, "strerror", None) or str(error)


def _suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _suggest_var(name: str, known: Iterable[str]) -> str:
    # Compare without the shared prefix, which would make every name look alike.
    close = difflib.get_close_matches(
        name.removeprefix(ENV_PREFIX), [var.removeprefix(ENV_PREFIX) for var in known], n=1
    )
    return f" (did you mean {ENV_PREFIX}{close[0]}?)" if close else ""


# --- step 1: YAML -------------------------------------------------------------------------------

_BOOL_TAG: Final = "tag:yaml.org,2002:bool"
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (``off``/``yes`` stay strings) and no duplicate keys."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
                if key.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key.value!r}", key.start_mark
                    )
                seen.add(key.value)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _parse_yaml(text: str) -> dict[Any, Any]:
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader: plain data only
    except yaml.MarkedYAMLError as error:
        raise ConfigError([_yaml_problem(error)]) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"not valid YAML: {error}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"expected a mapping of settings, got {_describe(data)}"])
    return data


def _yaml_problem(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    context = f" ({error.context})" if error.context else ""
    return f"not valid YAML: {where}{error.problem}{context}"


# --- step 2: environment ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _EnvSetting:
    keys: tuple[str, ...]  # key path from the root, e.g. ("health", "timeout_seconds")
    owner: type[Any]  # the dataclass that declares the field
    type: Any
    secret: bool


_TEXT_TYPES: Final = (str, Path, HostPort)


@functools.cache
def _env_settings() -> dict[str, _EnvSetting]:
    """Variable name -> setting, for scalars and lists of scalars (not lists of sections)."""
    return {ENV_PREFIX + "__".join(s.keys).upper(): s for s in _env_leaves(Config, ())}


def _env_leaves(cls: type[Any], prefix: tuple[str, ...]) -> Iterator[_EnvSetting]:
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        if _is_section(tp):
            yield from _env_leaves(tp, (*prefix, f.name))
        elif not _is_section(_element_type(tp)):
            yield _EnvSetting((*prefix, f.name), cls, tp, f.metadata.get("secret", False))


def _apply_environ(raw: dict[Any, Any], environ: Mapping[str, str], problems: _Problems) -> None:
    overrides = _env_overrides(environ, problems)
    for keys, (setting, value) in overrides.items():
        node = _section_node(raw, keys[:-1])
        if node is None:
            continue  # that section is not a mapping in the file; _build reports it
        node[keys[-1]] = value
        # An override of one of "exactly one of" replaces the file's choice, e.g.
        # RWPROXY_MONITOR__PASSWORD wins over the file's monitor.password_file.
        group = getattr(setting.owner, "_exclusive", ())
        for other in group if keys[-1] in group and value is not None else ():
            if other != keys[-1] and (*keys[:-1], other) not in overrides:
                node.pop(other, None)


def _env_overrides(
    environ: Mapping[str, str], problems: _Problems
) -> dict[tuple[str, ...], tuple[_EnvSetting, object]]:
    settings = _env_settings()
    overrides: dict[tuple[str, ...], tuple[_EnvSetting, object]] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS:
            continue
        setting = settings.get(name)
        if setting is None:
            problems.add("", f"{name}: not a configuration setting{_suggest_var(name, settings)}")
            continue
        overrides[setting.keys] = (setting, _env_value(environ[name], setting))
        problems.origins[".".join(setting.keys)] = name
    return overrides


def _env_value(text: str, setting: _EnvSetting) -> object:
    """Text types verbatim, numbers and booleans as YAML scalars, lists comma-separated."""
    tp = _strip_optional(setting.type)
    if typing.get_origin(tp) is tuple:
        parts = (part.strip() for part in text.split(","))
        return [_env_scalar(part, _element_type(tp)) for part in parts if part]
    if tp is not setting.type and not setting.secret and text in ("", "null", "~"):
        return None
    return text if setting.secret else _env_scalar(text, tp)


def _env_scalar(text: str, tp: Any) -> object:
    if tp in _TEXT_TYPES:
        return text
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader: plain data only
    except yaml.YAMLError:
        return text  # let the type check report it


def _section_node(raw: dict[Any, Any], keys: tuple[str, ...]) -> dict[Any, Any] | None:
    node = raw
    for key in keys:
        if node.get(key) is None:
            node[key] = {}
        child = node[key]
        if not isinstance(child, dict):
            return None
        node = child
    return node


# --- step 3: build and check --------------------------------------------------------------------

_INVALID: Final = object()  # a value that failed; its problem is already recorded
_DEFAULT: Final = object()  # a key not given; the dataclass default applies

_EXPECTED: Final[dict[Any, str]] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    Path: "a file path",
    HostPort: "'host:port'",
}


def _hints(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp) and tp is not HostPort


def _strip_optional(tp: Any) -> Any:
    if isinstance(tp, types.UnionType):
        (inner,) = (arg for arg in typing.get_args(tp) if arg is not type(None))
        return inner
    return tp


def _element_type(tp: Any) -> Any:
    tp = _strip_optional(tp)
    return typing.get_args(tp)[0] if typing.get_origin(tp) is tuple else None


def _build(cls: type[Any], raw: object, path: str, problems: _Problems) -> object:
    """One dataclass from a mapping. Problems are recorded; returns ``_INVALID`` if any."""
    if raw is None:
        raw = {}  # "discovery:" with everything commented out means all defaults
    if not isinstance(raw, Mapping):
        problems.add(path, f"expected a mapping, got {_describe(raw)}")
        return _INVALID
    _check_keys(cls, raw, path, problems)
    values = {
        f.name: _field_value(f, _hints(cls)[f.name], raw, _join(path, f.name), problems)
        for f in dataclasses.fields(cls)
    }
    if _INVALID in values.values():
        return _INVALID
    built = cls(**{name: value for name, value in values.items() if value is not _DEFAULT})
    for key, message in getattr(built, "_cross_checks", lambda: ())():
        problems.add(_join(path, key), message)
    return built


def _check_keys(cls: type[Any], raw: Mapping[Any, Any], path: str, problems: _Problems) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            problems.add(path, f"unknown key {str(key)!r}{_suggest(str(key), names)}")
    group: tuple[str, ...] = getattr(cls, "_exclusive", ())
    if group and sum(raw.get(name) is not None for name in group) != 1:
        problems.add(_join(path, group[0]), f"give exactly one of {', '.join(group)}")


def _field_value(
    f: dataclasses.Field[Any], tp: Any, raw: Mapping[Any, Any], path: str, problems: _Problems
) -> object:
    if f.name not in raw:
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.add(path, "required key is missing")
            return _INVALID
        return _DEFAULT
    value = _convert(raw[f.name], tp, path, f.metadata, problems)
    if value is _INVALID:
        return _INVALID
    if value is None:  # an optional setting left empty: nothing to check
        return value
    failed = [message for check in f.metadata.get("checks", ()) if (message := check(value))]
    for message in failed:
        problems.add(path, message)
    return _INVALID if failed else value


def _convert(
    value: object, tp: Any, path: str, meta: Mapping[str, Any], problems: _Problems
) -> object:
    """``value`` as type ``tp``: a scalar, ``X | None``, ``tuple[X, ...]`` or a section."""
    if isinstance(tp, types.UnionType):
        return None if value is None else _convert(value, _strip_optional(tp), path, meta, problems)
    if typing.get_origin(tp) is tuple:
        return _convert_list(value, tp, path, meta, problems)
    if _is_section(tp):
        return _build(tp, value, path, problems)
    try:
        return _convert_scalar(value, tp, meta)
    except TypeError:
        problems.add(
            path, f"expected {_EXPECTED[tp]}, got {_describe(value, meta.get('secret', False))}"
        )
    except ValueError as error:
        problems.add(path, str(error))
    return _INVALID


def _convert_list(
    value: object, tp: Any, path: str, meta: Mapping[str, Any], problems: _Problems
) -> object:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.add(path, f"expected a list, got {_describe(value)}")
        return _INVALID
    element = _element_type(tp)
    items = [_convert(v, element, f"{path}[{i}]", meta, problems) for i, v in enumerate(value)]
    return _INVALID if _INVALID in items else tuple(items)


def _convert_scalar(value: object, tp: Any, meta: Mapping[str, Any]) -> object:
    """Raises TypeError for a value of the wrong type, ValueError (with a message) for a bad one."""
    if tp is HostPort:
        return HostPort.parse(_to_str(value), meta.get("default_port"))
    if tp is Path:
        return Path(_not_blank(_to_str(value)))
    return _SCALARS[tp](value)


def _to_str(value: object) -> str:
    if isinstance(value, str):
        return value
    raise TypeError


def _not_blank(text: str) -> str:
    if not text:
        raise ValueError("expected a file path, got an empty string")
    return text


def _to_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError


def _to_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value}")
    return float(value)


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError


_SCALARS: Final[dict[Any, Callable[[object], object]]] = {
    str: _to_str,
    int: _to_int,
    float: _to_float,
    bool: _to_bool,
}


_KINDS: Final[dict[type, str]] = {
    type(None): "null",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a mapping",
}


def _describe(value: object, secret: bool = False) -> str:
    """A value for an error message; a secret's value is never shown."""
    kind = _KINDS.get(type(value), f"a {type(value).__name__}")
    if value is None or isinstance(value, list | dict):
        return kind
    if secret:
        return f"{kind} (value hidden)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


# --- step 4: secrets ----------------------------------------------------------------------------

_Holder = TypeVar("_Holder", UserConfig, MonitorConfig)
_Section = TypeVar("_Section", TlsConfig, BackendTlsConfig)


def _resolve_secrets(
    config: Config, base_dir: Path | None, read: SecretReader, problems: _Problems
) -> Config:
    users = tuple(
        _resolve(user, f"users[{index}]", base_dir, read, problems)
        for index, user in enumerate(config.users)
    )
    monitor = _resolve(config.monitor, "monitor", base_dir, read, problems)
    return dataclasses.replace(config, users=users, monitor=monitor)


def _resolve(
    holder: _Holder, path: str, base_dir: Path | None, read: SecretReader, problems: _Problems
) -> _Holder:
    if holder.password_file is None:
        return holder
    file = base_dir / holder.password_file if base_dir else holder.password_file
    try:
        text = read(file)
    except (OSError, UnicodeError) as error:
        problems.add(f"{path}.password_file", f"cannot read {file}: {_reason(error)}")
        return holder
    # Files written by `echo` or editors end in one newline; the secret does not.
    secret = text.removesuffix("\n").removesuffix("\r")
    if not secret:
        problems.add(f"{path}.password_file", f"{file} is empty")
    return dataclasses.replace(holder, password=secret, password_file=file)


def _anchor_tls_paths(config: Config, base_dir: Path | None) -> Config:
    """Relative certificate and key paths name files next to the config file (no I/O here)."""
    if base_dir is None:
        return config
    sections = {name: _anchored(getattr(config, name), base_dir) for name in ("tls", "backend_tls")}
    return dataclasses.replace(config, **sections)


def _anchored(section: _Section, base_dir: Path) -> _Section:
    paths: dict[str, Any] = {
        f.name: base_dir / value
        for f in dataclasses.fields(section)
        if isinstance(value := getattr(section, f.name), Path)
    }
    return dataclasses.replace(section, **paths)
