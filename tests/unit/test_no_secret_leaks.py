"""Passwords, hashes and statement text never reach logs, metrics or /status.

A configuration full of recognisable secrets (a plaintext password, a `*HEX` hash, a password
read from a file, the monitor's password) goes through everything that shows configuration or
state to the outside: `Config.redacted()`, reprs, config errors, reload plans, the `/status`
and `/metrics` bodies, and the login path's log lines. Each output is searched for every form
of every secret (as text, in hex either case, SHA1(pw) and SHA1(SHA1(pw))).

Statement text is checked from the other side: an AST scan of every logging call in
`proxy/` refuses arguments named like statement text, packets or credentials, so a new log
line that would print them fails here rather than in production.
"""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.exposition import generate_latest

from proxy.admin import config_version, status_snapshot
from proxy.config import Config, ConfigError, load
from proxy.http import ProbeEndpoints, Request
from proxy.metrics import Metrics
from proxy.protocol.auth import BackendCredential, StoredCredential, native_password_hash, sha1
from proxy.protocol.constants import Command
from proxy.protocol.handshake import ClientHandshake, ServerHandshake
from proxy.reload import plan_reload
from proxy.routing.router import Target
from proxy.topology.model import Endpoint, HealthState, PodHealth, Topology

PROXY = Path(__file__).resolve().parents[2] / "proxy"

APP_PASSWORD = "Pl41n-App-S3cret"
HASHED_PASSWORD = "H4sh3d-Rep0rt-S3cret"
FILE_PASSWORD = "F1le-Batch-S3cret"
MONITOR_PASSWORD = "M0nitor-S3cret"
PASSWORDS = (APP_PASSWORD, HASHED_PASSWORD, FILE_PASSWORD, MONITOR_PASSWORD)

CONFIG_YAML = f"""
users:
  - name: app
    password: "{APP_PASSWORD}"
  - name: report
    password_hash: "{native_password_hash(HASHED_PASSWORD)}"
  - name: batch
    password_file: secrets/batch
monitor:
  user: monitor
  password: "{MONITOR_PASSWORD}"
"""


def forms(password: str) -> list[str]:
    """Every way a password can show up: itself, SHA1 and SHA1(SHA1) in hex, either case."""
    raw = password.encode()
    out = [password]
    for digest in (sha1(raw), sha1(sha1(raw))):
        out += [digest.hex(), digest.hex().upper()]
    return out


SECRETS = [form for password in PASSWORDS for form in forms(password)]


def assert_clean(text: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"secret(s) in output: {leaked}"


def loaded(yaml_text: str = CONFIG_YAML) -> Config:
    def read_secret(path: Path) -> str:
        assert path.name == "batch"
        return FILE_PASSWORD + "\n"

    return load(yaml_text, {}, Path("/etc/rwproxy"), read_secret=read_secret)


def test_the_fixture_really_holds_the_secrets() -> None:
    config = loaded()
    users = {user.name: user for user in config.users}
    assert users["app"].password == APP_PASSWORD
    assert users["batch"].password == FILE_PASSWORD
    assert users["report"].password_hash == native_password_hash(HASHED_PASSWORD)
    assert config.monitor.password == MONITOR_PASSWORD


# -- configuration -----------------------------------------------------------------------


def test_redacted_config_has_no_secret() -> None:
    config = loaded()
    assert_clean(json.dumps(config.redacted(), default=str))
    names = {user["name"]: user for user in config.redacted()["users"]}
    assert names["app"]["password"] == names["report"]["password_hash"] == "<redacted>"
    assert names["batch"]["password_file"] == "/etc/rwproxy/secrets/batch"  # the path is fine


def test_reprs_have_no_secret() -> None:
    config = loaded()
    assert_clean(repr(config))
    assert_clean(str(config))
    for user in config.users:
        assert_clean(repr(user))


def test_stored_and_backend_credentials_hide_their_secrets() -> None:
    stored = StoredCredential.from_password(APP_PASSWORD)
    hashed = StoredCredential.from_native_hash(native_password_hash(HASHED_PASSWORD))
    backend = BackendCredential(hash1=sha1(HASHED_PASSWORD.encode()))
    for text in (repr(stored), repr(hashed), repr(backend), str(stored)):
        assert_clean(text)


def test_config_version_is_a_hash_of_the_redacted_config_only() -> None:
    """The version hashes no secret, so it is no oracle for guessing one offline (and it does
    not change when only a password does)."""
    rotated = loaded(CONFIG_YAML.replace(APP_PASSWORD, "Rotated-S3cret"))
    assert config_version(rotated) == config_version(loaded())


@pytest.mark.parametrize(
    "yaml_text",
    [
        # A hash that is not one: the message must name the key, not echo the value.
        CONFIG_YAML.replace(native_password_hash(HASHED_PASSWORD), APP_PASSWORD),
        # Two sources for one user.
        CONFIG_YAML.replace(
            "password_file: secrets/batch",
            f'password: "{FILE_PASSWORD}"\n    password_file: secrets/batch',
        ),
    ],
)
def test_config_errors_never_echo_a_secret(yaml_text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(yaml_text, {}, read_secret=lambda _: FILE_PASSWORD)
    assert_clean(str(caught.value))


def test_environment_overrides_of_secrets_are_not_echoed() -> None:
    environ = {"RWPROXY_MONITOR__PASSWORD": MONITOR_PASSWORD, "RWPROXY_MONITOR__PASWORD": "x"}
    with pytest.raises(ConfigError) as caught:
        load(CONFIG_YAML, environ, read_secret=lambda _: FILE_PASSWORD)
    assert_clean(str(caught.value))


def test_reload_plans_name_keys_not_values() -> None:
    old = loaded()
    new = load(CONFIG_YAML.replace(APP_PASSWORD, "Rotated-S3cret"), {}, read_secret=lambda _: "x")
    plan = plan_reload(old, new)
    assert_clean(repr(plan.changed) + repr(plan.needs_restart))
    assert "Rotated-S3cret" not in repr(plan.changed) + repr(plan.needs_restart)


# -- /status and /metrics ------------------------------------------------------------------

W = Endpoint("mysql-0", "10.0.0.10", 3306)
R = Endpoint("mysql-1", "10.0.0.11", 3306)


class Ctx:
    """The parts of ProxyContext that /status and /metrics read."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.draining = False
        self.metrics = Metrics()
        self.sessions: dict[int, Any] = {}
        self.manager = SimpleNamespace(latest_health={})
        self.pools = SimpleNamespace(pools=lambda: [])
        healths = {
            W.pod: PodHealth(pod=W.pod, endpoint=W, state=HealthState.UP, reachable=True),
            R.pod: PodHealth(
                pod=R.pod,
                endpoint=R,
                state=HealthState.DOWN,
                reachable=False,
                error="Access denied for user 'monitor'@'10.0.0.2' (using password: YES)",
            ),
        }
        self.current = Topology(
            pods={W.pod: W, R.pod: R},
            health=healths,
            writer=W,
            writer_problem=None,
            readers=(),
            dns_ok=True,
            dns_error=None,
            version=3,
        )

    def topology(self) -> Topology:
        return self.current


def probes() -> tuple[Ctx, ProbeEndpoints]:
    ctx = Ctx(loaded())
    endpoints = ProbeEndpoints(ctx, lambda: True)  # type: ignore[arg-type]
    ctx.metrics.bind(lambda: status_snapshot(ctx))  # type: ignore[arg-type]
    return ctx, endpoints


def test_status_body_has_no_secret() -> None:
    _, endpoints = probes()
    response = endpoints.status(Request("GET", "/status", {}))
    body = response.body.decode()
    assert_clean(body)
    assert json.loads(body)["config"]["users"][0]["password"] == "<redacted>"


def test_metrics_exposition_has_no_secret_and_no_statement_text() -> None:
    ctx, endpoints = probes()
    metrics = ctx.metrics
    literal = "card_number_4111111111111111"
    metrics.statements.record(Target.WRITER, "mysql-0", int(Command.COM_QUERY), "insert", 0.001)
    metrics.statements.record(Target.WRITER, "mysql-0", int(Command.COM_QUERY), literal, 0.001)
    metrics.statements.record(Target.WRITER, "mysql-0", int(Command.COM_QUERY), APP_PASSWORD, 0.001)
    metrics.refused("auth_failed")
    text = endpoints.metrics(Request("GET", "/metrics", {})).body.decode()
    assert 'command="insert"' in text and 'command="other"' in text
    assert literal not in text
    assert_clean(text)
    assert_clean(generate_latest(metrics.registry).decode())


# -- logs --------------------------------------------------------------------------------


def test_a_login_logs_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    """Both sides of a login, right and wrong password, at DEBUG: no secret in any log line,
    nor in the events (which session.py logs on refusal)."""
    config = loaded()
    app = config.users[0]
    assert app.password is not None
    store = {app.name: StoredCredential.from_password(app.password)}
    caplog.set_level(logging.DEBUG)
    for password in (APP_PASSWORD, "wrong-" + APP_PASSWORD):
        server = ServerHandshake("v", 1, store.get)
        client = ClientHandshake("app", BackendCredential(password=password.encode()))
        client.receive_data(server.data_to_send())
        events = server.receive_data(client.data_to_send())
        assert events
        assert_clean(repr(events) + "".join(str(event) for event in events))
    assert_clean(caplog.text)


# Names that hold statement text, packets or credentials. A logging call may not mention
# them in its arguments (first_keyword, pod names, ids and timings are fine).
FORBIDDEN_IN_LOGS = frozenset(
    {
        "sql",
        "current_sql",
        "statement",
        "payload",
        "packet",
        "data",
        "raw",
        "params",
        "parameters",
        "password",
        "password_hash",
        "credential",
        "backend_credential",
        "hash1",
        "hash2",
        "native_hash2",
        "auth_response",
        "cleartext",
        "scramble",
    }
)
LOG_METHODS = frozenset({"debug", "info", "warning", "error", "exception", "critical", "log"})


def logging_calls() -> list[tuple[str, int, set[str]]]:
    calls = []
    for path in sorted(PROXY.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LOG_METHODS
            ):
                continue
            owner = node.func.value
            owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            if "log" not in owner_name.lower():
                continue
            names: set[str] = set()
            for arg in [*node.args, *(keyword.value for keyword in node.keywords)]:
                for sub in ast.walk(arg):
                    if isinstance(sub, ast.Name):
                        names.add(sub.id)
                    elif isinstance(sub, ast.Attribute):
                        names.add(sub.attr)
            calls.append((str(path.relative_to(PROXY.parent)), node.lineno, names))
    return calls


def test_the_scan_sees_the_logging_calls() -> None:
    calls = logging_calls()
    assert len(calls) > 20
    files = {path for path, _, _ in calls}
    assert "proxy/session.py" in files


def test_no_logging_call_mentions_statement_text_or_credentials() -> None:
    offenders = [
        f"{path}:{line} logs {sorted(names & FORBIDDEN_IN_LOGS)}"
        for path, line, names in logging_calls()
        if names & FORBIDDEN_IN_LOGS
    ]
    assert not offenders, "\n".join(offenders)


def test_statement_lines_are_debug_only_and_name_no_text() -> None:
    """session.py's per-statement line goes through SampledLog.debug with the first keyword,
    route, pod and rule: never the statement itself."""
    source = (PROXY / "session.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    statement_calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "_statement_log"
    ]
    assert statement_calls, "session.py no longer uses _statement_log"
    assert {call.func.attr for call in statement_calls} == {"debug"}  # type: ignore[attr-defined]
