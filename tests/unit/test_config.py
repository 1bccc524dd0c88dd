"""proxy.config: YAML + RWPROXY_* variables -> Config, or one ConfigError listing every problem.

Pure: no test reads /etc or the process environment; secret files come from a dict, or from
tmp_path where load_file itself is under test.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from proxy.config import (
    BackendTlsConfig,
    Config,
    ConfigError,
    DiscoveryConfig,
    HealthConfig,
    HostPort,
    MonitorConfig,
    PoolConfig,
    ReadinessConfig,
    RoutingConfig,
    TlsConfig,
    UserConfig,
    config_path_from,
    load,
    load_file,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
HASH = "*" + "AB12" * 10  # the mysql.user form: '*' and 40 hex digits
DELETE = object()  # in a patch: remove the key

BASE: dict[str, Any] = {
    "users": [{"name": "app", "password": "app-pw"}],
    "monitor": {"user": "monitor", "password": "mon-pw"},
}


def doc(patch: dict[str, Any] | None = None) -> str:
    """BASE with ``patch`` deep-merged into it, as YAML text."""
    return yaml.safe_dump(_merge(copy.deepcopy(BASE), patch or {}))


def _merge(data: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if value is DELETE:
            data.pop(key, None)
        elif isinstance(value, dict) and isinstance(data.get(key), dict):
            _merge(data[key], value)
        else:
            data[key] = value
    return data


def problems(text: str, environ: dict[str, str] | None = None) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as raised:
        load(text, environ or {}, read_secret=fake_secrets({}))
    return raised.value.problems


def fake_secrets(files: dict[str, str]) -> Any:
    def read(path: Path) -> str:
        if str(path) not in files:
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return files[str(path)]

    return read


BASELINE = Config(
    users=(UserConfig(name="app", password="app-pw"),),
    monitor=MonitorConfig(user="monitor", password="mon-pw"),
)


# --- the shipped files --------------------------------------------------------------------------


def test_local_yaml_loads() -> None:
    config = load_file(CONFIG_DIR / "local.yaml", {})
    assert config.listen == HostPort("127.0.0.1", 6033)
    assert config.http == HostPort("127.0.0.1", 6070)
    assert config.discovery.nameservers == (HostPort("127.0.0.2", 5353),)
    assert config.discovery.writer == "mysql-0"
    assert config.users == (UserConfig(name="app", password="app-password"),)
    assert config.monitor == MonitorConfig(user="monitor", password="monitor-password")


def test_kubernetes_yaml_loads_with_secrets_from_the_mount() -> None:
    secrets = fake_secrets(
        {
            "/etc/rwproxy/secrets/app-password": "app-secret\n",
            "/etc/rwproxy/secrets/monitor-password": "monitor-secret\n",
        }
    )
    text = (CONFIG_DIR / "kubernetes.yaml").read_text()
    config = load(text, {}, Path("/elsewhere"), read_secret=secrets)
    assert config.listen == HostPort("127.0.0.1", 3306)
    assert config.http == HostPort("0.0.0.0", 6070)
    assert config.log_format == "json"
    assert config.discovery.nameservers == ()
    assert config.users[0].password == "app-secret"
    assert config.users[0].password_file == Path("/etc/rwproxy/secrets/app-password")
    assert config.monitor.password == "monitor-secret"


# --- defaults -----------------------------------------------------------------------------------


def test_a_minimal_file_gives_the_dataclass_defaults() -> None:
    assert load(doc(), {}) == BASELINE


def test_defaults() -> None:
    assert BASELINE.listen == HostPort("127.0.0.1", 6033)
    assert BASELINE.http == HostPort("127.0.0.1", 6070)
    assert (BASELINE.workers, BASELINE.max_connections, BASELINE.max_allowed_packet) == (
        1,
        4096,
        64 * 1024 * 1024,
    )
    assert BASELINE.discovery == DiscoveryConfig(
        service="mysql-h", namespace="default", writer="mysql-0", nameservers=()
    )
    assert BASELINE.pool == PoolConfig(max_size=64, min_idle=0, pool_timeout_seconds=5)
    assert BASELINE.health == HealthConfig(max_replication_lag_seconds=10, failures_before_down=3)
    assert BASELINE.routing == RoutingConfig(read_your_writes="gtid", retry_reads=True)
    assert BASELINE.readiness == ReadinessConfig(require_writer=True)


def test_empty_sections_mean_defaults() -> None:
    assert load(doc() + "discovery:\npool:\n", {}) == BASELINE


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        BASELINE.workers = 2  # type: ignore[misc]


def test_discovery_names() -> None:
    discovery = DiscoveryConfig()
    assert discovery.service_fqdn == "mysql-h.default.svc.cluster.local"
    assert discovery.pod_fqdn("mysql-0") == "mysql-0.mysql-h.default.svc.cluster.local"
    assert discovery.srv_name == "_mysql._tcp.mysql-h.default.svc.cluster.local"


# --- environment overrides ----------------------------------------------------------------------

ENV_CASES = [
    ("RWPROXY_LISTEN", "0.0.0.0:3306", lambda c: c.listen, HostPort("0.0.0.0", 3306)),
    ("RWPROXY_LISTEN", "[::1]:6033", lambda c: c.listen, HostPort("::1", 6033)),
    ("RWPROXY_HTTP", "null", lambda c: c.http, None),
    ("RWPROXY_HTTP", "", lambda c: c.http, None),
    ("RWPROXY_WORKERS", "4", lambda c: c.workers, 4),
    ("RWPROXY_LOG_LEVEL", "debug", lambda c: c.log_level, "debug"),
    ("RWPROXY_DISCOVERY__WRITER", "auto", lambda c: c.discovery.writer, "auto"),
    ("RWPROXY_DISCOVERY__PORT", "3307", lambda c: c.discovery.port, 3307),
    (
        "RWPROXY_HEALTH__MAX_REPLICATION_LAG_SECONDS",
        "5",
        lambda c: c.health.max_replication_lag_seconds,
        5.0,
    ),
    ("RWPROXY_HEALTH__TIMEOUT_SECONDS", "0.25", lambda c: c.health.timeout_seconds, 0.25),
    ("RWPROXY_ROUTING__RETRY_READS", "false", lambda c: c.routing.retry_reads, False),
    ("RWPROXY_READINESS__REQUIRE_WRITER", "False", lambda c: c.readiness.require_writer, False),
    ("RWPROXY_ROUTING__READ_YOUR_WRITES", "off", lambda c: c.routing.read_your_writes, "off"),
    (
        "RWPROXY_DISCOVERY__NAMESERVERS",
        "127.0.0.2:5353,10.0.0.10",
        lambda c: c.discovery.nameservers,
        (HostPort("127.0.0.2", 5353), HostPort("10.0.0.10", 53)),
    ),
    (
        "RWPROXY_DISCOVERY__NAMESERVERS",
        " 10.0.0.10 , ",
        lambda c: c.discovery.nameservers,
        (HostPort("10.0.0.10", 53),),
    ),
    ("RWPROXY_DISCOVERY__NAMESERVERS", "", lambda c: c.discovery.nameservers, ()),
    # Secrets are taken verbatim, never parsed as YAML (which would make these a number,
    # a comment and a mapping).
    ("RWPROXY_MONITOR__PASSWORD", "12345", lambda c: c.monitor.password, "12345"),
    ("RWPROXY_MONITOR__PASSWORD", "#secret", lambda c: c.monitor.password, "#secret"),
    ("RWPROXY_MONITOR__PASSWORD", "a: b", lambda c: c.monitor.password, "a: b"),
    ("RWPROXY_MONITOR__PASSWORD", "null", lambda c: c.monitor.password, "null"),
    ("RWPROXY_MONITOR__USER", "true", lambda c: c.monitor.user, "true"),
]


@pytest.mark.parametrize(("name", "value", "get", "expected"), ENV_CASES)
def test_environment_overrides(name: str, value: str, get: Any, expected: object) -> None:
    config = load(doc(), {name: value})
    assert get(config) == expected
    assert type(get(config)) is type(expected)


def test_environment_wins_over_the_file() -> None:
    text = doc({"listen": "127.0.0.1:1111", "pool": {"max_size": 3}})
    config = load(text, {"RWPROXY_LISTEN": "127.0.0.1:2222", "RWPROXY_POOL__MAX_SIZE": "9"})
    assert config.listen == HostPort("127.0.0.1", 2222)
    assert config.pool.max_size == 9


def test_environment_password_replaces_the_files_password_file() -> None:
    text = doc({"monitor": {"user": "monitor", "password": DELETE, "password_file": "m"}})
    config = load(text, {"RWPROXY_MONITOR__PASSWORD": "from-env"}, read_secret=fake_secrets({}))
    assert config.monitor == MonitorConfig(user="monitor", password="from-env")


def test_both_secrets_from_the_environment_is_an_error() -> None:
    environ = {"RWPROXY_MONITOR__PASSWORD": "x", "RWPROXY_MONITOR__PASSWORD_FILE": "/m"}
    assert problems(doc(), environ) == (
        "monitor.password (from RWPROXY_MONITOR__PASSWORD): give exactly one of password, "
        "password_file",
    )


def test_variables_that_are_not_settings_are_ignored() -> None:
    environ = {"RWPROXY_CONFIG": "x.yaml", "RWPROXY_CLUSTER_DIR": "/tmp/c", "PATH": "/bin"}
    assert load(doc(), environ) == BASELINE


def _env_text(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return "null" if value is None else str(value)


def _leaves(obj: object, prefix: str) -> list[tuple[str, object]]:
    found = []
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        name = f"{prefix}{f.name.upper()}"
        if dataclasses.is_dataclass(value) and not isinstance(value, HostPort):
            found += _leaves(value, f"{name}__")
        elif f.name != "users":
            found.append((name, value))
    return found


@pytest.mark.parametrize(("name", "value"), _leaves(BASELINE, "RWPROXY_"))
def test_every_setting_has_a_variable(name: str, value: object) -> None:
    # Setting each variable to the value it already has changes nothing.
    assert load(doc(), {name: _env_text(value)}) == BASELINE


# --- errors name their key ----------------------------------------------------------------------

FILE_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"discovry": {}}, "unknown key 'discovry' (did you mean 'discovery'?)"),
    ({"discovery": {"wrtier": "auto"}}, "discovery: unknown key 'wrtier' (did you mean 'writer'?)"),
    ({"ssl": {}}, "unknown key 'ssl'"),
    (
        {"users": [{"name": "app", "password": "x", "pasword": "x"}]},
        "users[0]: unknown key 'pasword' (did you mean 'password'?)",
    ),
    ({"log_level": 3}, "log_level: expected a string, got 3"),
    (
        {"log_level": "verbose"},
        "log_level: expected one of 'debug', 'info', 'warning', 'error', got 'verbose'",
    ),
    ({"workers": "two"}, "workers: expected an integer, got 'two'"),
    ({"workers": True}, "workers: expected an integer, got true"),
    ({"workers": 1.5}, "workers: expected an integer, got 1.5"),
    ({"workers": 0}, "workers: must be at least 1, got 0"),
    ({"routing": {"retry_reads": "yes"}}, "routing.retry_reads: expected true or false, got 'yes'"),
    ({"health": {"timeout_seconds": "1s"}}, "health.timeout_seconds: expected a number, got '1s'"),
    ({"health": {"timeout_seconds": 0}}, "health.timeout_seconds: must be greater than 0, got 0.0"),
    (
        {"pool": {"connect_timeout_seconds": float("inf")}},
        "pool.connect_timeout_seconds: expected a finite number, got inf",
    ),
    ({"pool": {"min_idle": -1}}, "pool.min_idle: must be at least 0, got -1"),
    (
        {"pool": {"max_size": 4, "min_idle": 5}},
        "pool.min_idle: must not exceed max_size (4), got 5",
    ),
    ({"max_allowed_packet": 0}, "max_allowed_packet: must be between 1024 and 1073741824, got 0"),
    (
        {"listen": "localhost"},
        "listen: expected 'host:port' (IPv6 as '[::1]:6033'), got 'localhost'",
    ),
    ({"listen": 6033}, "listen: expected 'host:port', got 6033"),
    ({"listen": "h:70000"}, "listen: expected a port between 0 and 65535, got 'h:70000'"),
    ({"listen": "h:http"}, "listen: expected a port between 0 and 65535, got 'h:http'"),
    ({"listen": ":6033"}, "listen: missing host in ':6033'"),
    ({"listen": "::1:6033"}, "listen: expected 'host:port' (IPv6 as '[::1]:6033'), got '::1:6033'"),
    ({"listen": "[10.0.0.1]:1"}, "listen: expected an IPv6 address inside [], got '[10.0.0.1]:1'"),
    ({"http": "bad_host:80"}, "http: expected a host name or IP address, got 'bad_host:80'"),
    (
        {"discovery": {"nameservers": ["dns.local"]}},
        "discovery.nameservers: expected IP addresses, got 'dns.local:53'",
    ),
    (
        {"discovery": {"nameservers": "10.0.0.10"}},
        "discovery.nameservers: expected a list, got '10.0.0.10'",
    ),
    (
        {"discovery": {"nameservers": ["10.0.0.10", 53]}},
        "discovery.nameservers[1]: expected 'host:port', got 53",
    ),
    (
        {"discovery": {"writer": "foo"}},
        "discovery.writer: expected a pod name like 'mysql-0' or 'auto', got 'foo'",
    ),
    (
        {"discovery": {"writer": "mysql-01"}},
        "discovery.writer: expected a pod name like 'mysql-0' or 'auto', got 'mysql-01'",
    ),
    (
        {"discovery": {"statefulset": "db", "writer": "mysql-0"}},
        "discovery.writer: expected a pod name like 'db-0' or 'auto', got 'mysql-0'",
    ),
    (
        {"discovery": {"namespace": "Prod"}},
        "discovery.namespace: expected a DNS label (lowercase letters, digits, '-'), got 'Prod'",
    ),
    (
        {"discovery": {"cluster_domain": "a..b"}},
        "discovery.cluster_domain: expected a DNS name like 'cluster.local', got 'a..b'",
    ),
    ({"discovery": {"port": 0}}, "discovery.port: must be between 1 and 65535, got 0"),
    ({"http": "127.0.0.1:6033"}, "http: must differ from listen, got '127.0.0.1:6033' for both"),
    ({"discovery": 5}, "discovery: expected a mapping, got 5"),
    ({"users": DELETE}, "users: required key is missing"),
    ({"users": []}, "users: at least one user is required"),
    ({"users": {"name": "app"}}, "users: expected a list, got a mapping"),
    ({"monitor": DELETE}, "monitor: required key is missing"),
    ({"monitor": {"user": DELETE}}, "monitor.user: required key is missing"),
    (
        {"users": [{"name": "app"}]},
        "users[0].password: give exactly one of password, password_hash, password_file",
    ),
    (
        {"users": [{"name": "app", "password": "x", "password_hash": HASH}]},
        "users[0].password: give exactly one of password, password_hash, password_file",
    ),
    (
        {"monitor": {"password_file": "f"}},
        "monitor.password: give exactly one of password, password_file",
    ),
    (
        {"users": [{"name": "app", "password_hash": HASH[:-1]}]},
        "users[0].password_hash: expected '*' followed by 40 hex digits, as in mysql.user",
    ),
    (
        {"users": [{"name": "app", "password_hash": HASH[1:] + "0"}]},
        "users[0].password_hash: expected '*' followed by 40 hex digits, as in mysql.user",
    ),
    ({"users": [{"name": "", "password": "x"}]}, "users[0].name: must not be empty"),
    (
        {"users": [{"name": "app", "password": "x"}, {"name": "app", "password_hash": HASH}]},
        "users: duplicate user name 'app' (users[0] and users[1])",
    ),
]


@pytest.mark.parametrize(("patch", "expected"), FILE_ERRORS)
def test_each_file_error_names_its_key(patch: dict[str, Any], expected: str) -> None:
    assert problems(doc(patch)) == (expected,)


ENV_ERRORS: list[tuple[dict[str, str], str]] = [
    (
        {"RWPROXY_DISCOVERY__WRTIER": "auto"},
        "RWPROXY_DISCOVERY__WRTIER: not a configuration setting"
        " (did you mean RWPROXY_DISCOVERY__WRITER?)",
    ),
    ({"RWPROXY_USERS": "app"}, "RWPROXY_USERS: not a configuration setting"),
    (
        {"RWPROXY_DISCOVERY": "x"},
        "RWPROXY_DISCOVERY: not a configuration setting (did you mean RWPROXY_DISCOVERY__PORT?)",
    ),
    (
        {"RWPROXY_POOL__MAX_SIZE": "0"},
        "pool.max_size (from RWPROXY_POOL__MAX_SIZE): must be at least 1, got 0",
    ),
    (
        {"RWPROXY_WORKERS": "many"},
        "workers (from RWPROXY_WORKERS): expected an integer, got 'many'",
    ),
    (
        {"RWPROXY_ROUTING__RETRY_READS": "yes"},
        "routing.retry_reads (from RWPROXY_ROUTING__RETRY_READS):"
        " expected true or false, got 'yes'",
    ),
    (
        {"RWPROXY_DISCOVERY__NAMESERVERS": "10.0.0.1,x_y"},
        "discovery.nameservers[1] (from RWPROXY_DISCOVERY__NAMESERVERS):"
        " expected a host name or IP address, got 'x_y'",
    ),
]


@pytest.mark.parametrize(("environ", "expected"), ENV_ERRORS)
def test_each_variable_error_names_its_variable(environ: dict[str, str], expected: str) -> None:
    assert problems(doc(), environ) == (expected,)


def test_every_problem_is_reported_at_once() -> None:
    text = doc(
        {
            "discovry": {},
            "listen": "nowhere",
            "pool": {"max_size": 2, "min_idle": 3},
            "users": [{"name": "app", "password": "x", "password_file": "f"}],
            "monitor": DELETE,
        }
    )
    found = problems(text, {"RWPROXY_NOPE": "1", "RWPROXY_HEALTH__TIMEOUT_SECONDS": "-1"})
    assert found == (
        "RWPROXY_NOPE: not a configuration setting",
        "unknown key 'discovry' (did you mean 'discovery'?)",
        "listen: expected 'host:port' (IPv6 as '[::1]:6033'), got 'nowhere'",
        "users[0].password: give exactly one of password, password_hash, password_file",
        "monitor: required key is missing",
        "pool.min_idle: must not exceed max_size (2), got 3",
        "health.timeout_seconds (from RWPROXY_HEALTH__TIMEOUT_SECONDS):"
        " must be greater than 0, got -1.0",
    )


def test_the_message_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as raised:
        load(doc({"workers": 0, "log_format": "xml"}), {})
    assert str(raised.value) == (
        "invalid configuration (2 problems):\n"
        "  workers: must be at least 1, got 0\n"
        "  log_format: expected one of 'text', 'json', got 'xml'"
    )


# --- YAML ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "listen: 127.0.0.1:6033\ndiscovery:\n  writer: [mysql-0\n",
            "not valid YAML: line 4, column 1:",
        ),
        ("users:\n- name: app\n  bad indent: : x\n", "not valid YAML: line 3, column 15:"),
        ("listen: a\nlisten: b\n", "not valid YAML: line 2, column 1: duplicate key 'listen'"),
        ("- listen\n", "expected a mapping of settings, got a list"),
        ("just text", "expected a mapping of settings, got 'just text'"),
    ],
)
def test_bad_yaml_is_a_config_error_with_the_line(text: str, expected: str) -> None:
    (problem,) = problems(text)
    assert problem.startswith(expected)


def test_yaml_1_1_booleans_stay_strings() -> None:
    config = load(doc({"routing": {"read_your_writes": "off"}}).replace("'off'", "off"), {})
    assert config.routing.read_your_writes == "off"
    assert problems(doc() + "readiness: {require_writer: no}\n") == (
        "readiness.require_writer: expected true or false, got 'no'",
    )


def test_merge_keys_are_not_duplicates() -> None:
    text = doc() + "x: &t {timeout_seconds: 2}\n"
    text = text.replace("x: &t", "health: &t") + "pool:\n  <<: *t\n"
    assert problems(text) == (
        "pool: unknown key 'timeout_seconds' (did you mean 'pool_timeout_seconds'?)",
    )


@given(st.text(max_size=200))
def test_any_text_loads_or_raises_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        assert isinstance(load(text, {}, read_secret=fake_secrets({})), Config)


KEYS = st.sampled_from(
    [
        *("listen", "http", "workers", "discovery", "nameservers", "writer", "users", "name"),
        *("password", "password_hash", "password_file", "monitor", "user", "pool", "min_idle"),
    ]
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
DATA = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3)
)


@given(st.dictionaries(KEYS, DATA, max_size=6))
def test_any_structure_loads_or_raises_config_error(data: dict[str, Any]) -> None:
    with contextlib.suppress(ConfigError):
        assert isinstance(load(yaml.safe_dump(data), {}, read_secret=fake_secrets({})), Config)


VARIABLES = [name for name, _ in _leaves(BASELINE, "RWPROXY_")] + ["RWPROXY_X"]


@given(st.dictionaries(st.sampled_from(VARIABLES), st.text(max_size=30), max_size=4))
def test_any_variables_load_or_raise_config_error(environ: dict[str, str]) -> None:
    with contextlib.suppress(ConfigError):
        assert isinstance(load(doc(), environ, read_secret=fake_secrets({})), Config)


# --- secrets ------------------------------------------------------------------------------------


def test_repr_never_shows_secrets() -> None:
    text = doc(
        {"users": [{"name": "app", "password": "pw-in-yaml"}, {"name": "b", "password_hash": HASH}]}
    )
    config = load(text, {"RWPROXY_MONITOR__PASSWORD": "pw-in-env"})
    for shown in (repr(config), str(config), repr(config.users), repr(config.monitor)):
        assert "pw-in-yaml" not in shown
        assert "pw-in-env" not in shown
        assert HASH[1:] not in shown and HASH.lower()[1:] not in shown
    assert "name='app'" in repr(config)


def test_redacted_hides_secrets_and_is_plain_data() -> None:
    config = load(doc({"users": [{"name": "app", "password_hash": HASH}]}), {})
    data = config.redacted()
    assert data["users"] == [
        {
            "name": "app",
            "password": None,
            "password_hash": "<redacted>",
            "password_file": None,
            "max_connections": 0,
        }
    ]
    assert data["monitor"]["password"] == "<redacted>"
    assert data["listen"] == "127.0.0.1:6033"
    assert data["discovery"]["nameservers"] == []
    assert yaml.safe_load(yaml.safe_dump(data)) == data


@pytest.mark.parametrize("secret", [12345, 1.5, True])
def test_errors_never_echo_secrets(secret: object) -> None:
    text = doc({"monitor": {"user": "m", "password": secret}})
    assert problems(text) == (
        "monitor.password: expected a string, got "
        f"{'a boolean' if secret is True else 'a number'} (value hidden)",
    )


def test_password_hash_accepts_both_cases() -> None:
    for value in (HASH, HASH.lower()):
        config = load(doc({"users": [{"name": "app", "password_hash": value}]}), {})
        assert config.users[0].password_hash == value


def test_secret_files_resolve_against_base_dir() -> None:
    text = doc({"users": [{"name": "app", "password_file": "secrets/app"}]})
    read = fake_secrets({"/cfg/secrets/app": "s3cret\n\n"})
    config = load(text, {}, Path("/cfg"), read_secret=read)
    # exactly one trailing newline goes
    assert config.users[0] == UserConfig(
        name="app", password="s3cret\n", password_file=Path("/cfg/secrets/app")
    )


def test_secret_file_crlf_is_one_newline() -> None:
    text = doc({"monitor": {"password": DELETE, "password_file": "/m"}})
    config = load(text, {}, read_secret=fake_secrets({"/m": "pw\r\n"}))
    assert config.monitor.password == "pw"


def test_missing_and_empty_secret_files_are_all_reported() -> None:
    text = doc(
        {
            "users": [{"name": "app", "password_file": "/gone"}],
            "monitor": {"password": DELETE, "password_file": "/empty"},
        }
    )
    assert problems(text) == (
        "users[0].password_file: cannot read /gone: No such file or directory",
        "monitor.password_file: cannot read /empty: No such file or directory",
    )
    with pytest.raises(ConfigError) as raised:
        load(text, {}, read_secret=fake_secrets({"/gone": "x", "/empty": "\n"}))
    assert raised.value.problems == ("monitor.password_file: /empty is empty",)


def test_load_file_reads_secrets_next_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "app-password").write_text("from-file\n")
    path = tmp_path / "rwproxy.yaml"
    path.write_text(doc({"users": [{"name": "app", "password_file": "app-password"}]}))
    config = load_file(path, {})
    assert config.users[0].password == "from-file"
    assert config.users[0].password_file == tmp_path / "app-password"


def test_load_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rwproxy.yaml"
    path.write_text(doc({"workers": 0}))
    with pytest.raises(ConfigError, match=rf"^invalid configuration in {path} \(1 problem\):"):
        load_file(path, {})
    with pytest.raises(ConfigError) as raised:
        load_file(tmp_path / "missing.yaml", {})
    assert raised.value.problems == ("cannot read the file: No such file or directory",)


# --- HostPort and config_path_from --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "default_port", "expected"),
    [
        ("127.0.0.1:6033", None, HostPort("127.0.0.1", 6033)),
        ("localhost:0", None, HostPort("localhost", 0)),
        (
            "mysql-0.mysql-h.default.svc.cluster.local:3306",
            None,
            HostPort("mysql-0.mysql-h.default.svc.cluster.local", 3306),
        ),
        ("[::1]:6033", None, HostPort("::1", 6033)),
        ("10.0.0.10", 53, HostPort("10.0.0.10", 53)),
        ("fd00::10", 53, HostPort("fd00::10", 53)),
        ("[fd00::10]", 53, HostPort("fd00::10", 53)),
        ("[fd00::10]:5353", 53, HostPort("fd00::10", 5353)),
    ],
)
def test_host_port_parse(text: str, default_port: int | None, expected: HostPort) -> None:
    parsed = HostPort.parse(text, default_port)
    assert parsed == expected
    assert HostPort.parse(str(parsed)) == parsed


@pytest.mark.parametrize(
    "text",
    ["", "host", ":1", "host:", "host:-1", "host:65536", "[::1]", "[nope]:1", "a b:1", "h:1:2"],
)
def test_host_port_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text).replace("[", r"\[")):
        HostPort.parse(text)


@pytest.mark.parametrize(
    ("args_value", "environ", "expected"),
    [
        ("a.yaml", {"RWPROXY_CONFIG": "b.yaml"}, Path("a.yaml")),
        (None, {"RWPROXY_CONFIG": "b.yaml"}, Path("b.yaml")),
        (None, {"RWPROXY_CONFIG": ""}, None),
        (None, {}, None),
    ],
)
def test_config_path_from(
    args_value: str | None, environ: dict[str, str], expected: Path | None
) -> None:
    assert config_path_from(args_value, environ) == expected


# --- tls and backend_tls ------------------------------------------------------------------------


def test_tls_defaults_are_off() -> None:
    config = load(doc(), {})
    assert config.tls == TlsConfig()
    assert not config.tls.enabled
    assert config.tls.require is False
    assert config.tls.reload_interval_seconds == 10.0
    assert config.backend_tls == BackendTlsConfig(mode="disabled")


def test_tls_with_certificate_key_and_client_ca() -> None:
    tls = {"cert_file": "/tls/tls.crt", "key_file": "/tls/tls.key", "ca_file": "/tls/ca.crt"}
    config = load(doc({"tls": tls | {"require": True, "reload_interval_seconds": 2}}), {})
    assert config.tls == TlsConfig(
        cert_file=Path("/tls/tls.crt"),
        key_file=Path("/tls/tls.key"),
        ca_file=Path("/tls/ca.crt"),
        require=True,
        reload_interval_seconds=2.0,
    )
    assert config.tls.enabled


@pytest.mark.parametrize("mode", ["disabled", "preferred", "required"])
def test_backend_tls_modes_without_a_ca(mode: str) -> None:
    assert load(doc({"backend_tls": {"mode": mode}}), {}).backend_tls.mode == mode


@pytest.mark.parametrize("mode", ["verify_ca", "verify_identity"])
def test_backend_tls_verify_modes_with_a_ca_and_client_certificate(mode: str) -> None:
    section = {"mode": mode, "ca_file": "/ca.pem", "cert_file": "/c.pem", "key_file": "/k.pem"}
    assert load(doc({"backend_tls": section}), {}).backend_tls == BackendTlsConfig(
        mode=mode, ca_file=Path("/ca.pem"), cert_file=Path("/c.pem"), key_file=Path("/k.pem")
    )


def test_relative_tls_paths_are_next_to_the_config_file() -> None:
    text = doc(
        {
            "tls": {"cert_file": "certs/tls.crt", "key_file": "/abs/tls.key"},
            "backend_tls": {"mode": "verify_ca", "ca_file": "ca.pem"},
        }
    )
    config = load(text, {}, Path("/etc/rwproxy"))
    assert config.tls.cert_file == Path("/etc/rwproxy/certs/tls.crt")
    assert config.tls.key_file == Path("/abs/tls.key")
    assert config.backend_tls.ca_file == Path("/etc/rwproxy/ca.pem")
    # Without a base directory (text, not a file) they stay as given: the working directory.
    assert load(text, {}).tls.cert_file == Path("certs/tls.crt")


def test_load_file_anchors_tls_paths_at_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rwproxy.yaml"
    path.write_text(doc({"tls": {"cert_file": "a.crt", "key_file": "a.key"}}))
    config = load_file(path, {})
    assert (config.tls.cert_file, config.tls.key_file) == (tmp_path / "a.crt", tmp_path / "a.key")


TLS_ERRORS: list[tuple[dict[str, Any], str]] = [
    (
        {"tls": {"cert_file": "/c.pem"}},
        "tls.key_file: required when tls.cert_file is given (give both or neither)",
    ),
    (
        {"tls": {"key_file": "/k.pem"}},
        "tls.cert_file: required when tls.key_file is given (give both or neither)",
    ),
    ({"tls": {"require": True}}, "tls.require: needs tls.cert_file and tls.key_file"),
    ({"tls": {"ca_file": "/ca.pem"}}, "tls.ca_file: needs tls.cert_file and tls.key_file"),
    ({"tls": {"require": "yes"}}, "tls.require: expected true or false, got 'yes'"),
    ({"tls": {"cert_file": ""}}, "tls.cert_file: expected a file path, got an empty string"),
    (
        {"tls": {"reload_interval_seconds": 0}},
        "tls.reload_interval_seconds: must be greater than 0, got 0.0",
    ),
    ({"tls": {"cert": "/c.pem"}}, "tls: unknown key 'cert' (did you mean 'cert_file'?)"),
    (
        {"backend_tls": {"mode": "verify_full"}},
        "backend_tls.mode: expected one of 'disabled', 'preferred', 'required', 'verify_ca', "
        "'verify_identity', got 'verify_full'",
    ),
    (
        {"backend_tls": {"mode": "verify_ca"}},
        "backend_tls.ca_file: required when mode is 'verify_ca'",
    ),
    (
        {"backend_tls": {"mode": "verify_identity"}},
        "backend_tls.ca_file: required when mode is 'verify_identity'",
    ),
    (
        {"backend_tls": {"mode": "required", "cert_file": "/c.pem"}},
        "backend_tls.key_file: required when backend_tls.cert_file is given (give both or neither)",
    ),
    (
        {"backend_tls": {"mode": "required", "key_file": "/k.pem"}},
        "backend_tls.cert_file: required when backend_tls.key_file is given (give both or neither)",
    ),
    ({"backend_tls": "required"}, "backend_tls: expected a mapping, got 'required'"),
]


@pytest.mark.parametrize(("patch", "expected"), TLS_ERRORS)
def test_each_tls_error_names_its_key(patch: dict[str, Any], expected: str) -> None:
    assert problems(doc(patch)) == (expected,)


def test_tls_problems_are_reported_together() -> None:
    patch = {"tls": {"require": True, "ca_file": "/ca"}, "backend_tls": {"mode": "verify_ca"}}
    assert problems(doc(patch)) == (
        "tls.require: needs tls.cert_file and tls.key_file",
        "tls.ca_file: needs tls.cert_file and tls.key_file",
        "backend_tls.ca_file: required when mode is 'verify_ca'",
    )


TLS_ENV_CASES = [
    ("RWPROXY_BACKEND_TLS__MODE", "preferred", lambda c: c.backend_tls.mode, "preferred"),
    ("RWPROXY_TLS__REQUIRE", "false", lambda c: c.tls.require, False),
    ("RWPROXY_TLS__RELOAD_INTERVAL_SECONDS", "2.5", lambda c: c.tls.reload_interval_seconds, 2.5),
    ("RWPROXY_TLS__CA_FILE", "null", lambda c: c.tls.ca_file, None),
    # Paths are text: taken verbatim, never parsed as YAML.
    (
        "RWPROXY_BACKEND_TLS__CA_FILE",
        "/run/ca #1.pem",
        lambda c: c.backend_tls.ca_file,
        Path("/run/ca #1.pem"),
    ),
]


@pytest.mark.parametrize(("name", "value", "get", "expected"), TLS_ENV_CASES)
def test_tls_environment_overrides(name: str, value: str, get: Any, expected: object) -> None:
    config = load(doc(), {name: value})
    assert get(config) == expected


def test_tls_from_the_environment_only() -> None:
    environ = {
        "RWPROXY_TLS__CERT_FILE": "/tls/tls.crt",
        "RWPROXY_TLS__KEY_FILE": "/tls/tls.key",
        "RWPROXY_TLS__REQUIRE": "true",
        "RWPROXY_BACKEND_TLS__MODE": "verify_identity",
        "RWPROXY_BACKEND_TLS__CA_FILE": "/pods/ca.crt",
    }
    config = load(doc(), environ)
    assert config.tls == TlsConfig(
        cert_file=Path("/tls/tls.crt"), key_file=Path("/tls/tls.key"), require=True
    )
    assert config.backend_tls == BackendTlsConfig(
        mode="verify_identity", ca_file=Path("/pods/ca.crt")
    )


def test_environment_mode_overrides_the_files_mode() -> None:
    text = doc({"backend_tls": {"mode": "verify_ca", "ca_file": "/ca.pem"}})
    config = load(text, {"RWPROXY_BACKEND_TLS__MODE": "verify_identity"})
    assert config.backend_tls == BackendTlsConfig(mode="verify_identity", ca_file=Path("/ca.pem"))


def test_environment_errors_in_tls_name_the_variable() -> None:
    assert problems(doc(), {"RWPROXY_BACKEND_TLS__MODE": "on"}) == (
        "backend_tls.mode (from RWPROXY_BACKEND_TLS__MODE): expected one of 'disabled', "
        "'preferred', 'required', 'verify_ca', 'verify_identity', got 'on'",
    )
    assert problems(doc(), {"RWPROXY_BACKEND_TLS__MODE": "verify_ca"}) == (
        "backend_tls.ca_file: required when mode is 'verify_ca'",
    )
    assert problems(doc(), {"RWPROXY_TLS__REQUIRE": "true"}) == (
        "tls.require (from RWPROXY_TLS__REQUIRE): needs tls.cert_file and tls.key_file",
    )


def test_redacted_shows_tls_paths_as_text() -> None:
    text = doc({"tls": {"cert_file": "/c.pem", "key_file": "/k.pem"}})
    data = load(text, {}).redacted()
    assert data["tls"] == {
        "cert_file": "/c.pem",
        "key_file": "/k.pem",
        "ca_file": None,
        "require": False,
        "reload_interval_seconds": 10.0,
    }
    assert data["backend_tls"]["mode"] == "disabled"
