"""The Kubernetes manifests and docker-compose.yml agree with the proxy's configuration: the
names discovery looks up exist, the sidecar mounts what its config reads, and the pieces
(Service, StatefulSet, NetworkPolicy, probes, grace period) fit together."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config import Config

from .conftest import (
    COMPOSE_CONFIG,
    COMPOSE_DIR,
    KUBERNETES,
    REPO,
    load_config,
    load_one,
)

MYSQL = KUBERNETES / "mysql"
DB_SERVICES = ("mysql-0", "mysql-1", "mysql-2")


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(KUBERNETES / "rwproxy.yaml")


@pytest.fixture(scope="module")
def statefulset() -> dict[str, Any]:
    return load_one(MYSQL / "statefulset.yaml", "StatefulSet")


@pytest.fixture(scope="module")
def pod() -> dict[str, Any]:
    deployment = load_one(KUBERNETES / "app" / "deployment.yaml", "Deployment")
    spec = deployment["spec"]["template"]
    assert isinstance(spec, dict)
    return spec


@pytest.fixture(scope="module")
def sidecar(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = (c for c in pod["spec"]["initContainers"] if c["name"] == "rwproxy")
    assert isinstance(container, dict)
    return container


def _by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


# --- Kubernetes ---------------------------------------------------------------------------------


def test_kustomization_lists_files_that_exist() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text("utf-8"))
    files = list(kustomization["resources"])
    files += [f for gen in kustomization["configMapGenerator"] for f in gen["files"]]
    for name in files:
        assert (KUBERNETES / name).is_file(), name
    generated = {gen["name"] for gen in kustomization["configMapGenerator"]}
    assert {"rwproxy-config", "mysql-config", "mysql-scripts", "mysql-initdb"} <= generated


def test_headless_service_publishes_what_discovery_reads(config: Config) -> None:
    service = load_one(MYSQL / "service.yaml", "Service")
    spec = service["spec"]
    assert service["metadata"]["name"] == config.discovery.service
    assert spec["clusterIP"] == "None"
    assert spec["publishNotReadyAddresses"] is False
    (port,) = spec["ports"]
    assert (port["name"], port["port"]) == (config.discovery.port_name, config.discovery.port)


def test_statefulset_is_the_one_discovery_walks(
    config: Config, statefulset: dict[str, Any]
) -> None:
    spec = statefulset["spec"]
    assert statefulset["metadata"]["name"] == config.discovery.statefulset
    assert spec["serviceName"] == config.discovery.service
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "OrderedReady"  # a replica clones the previous pod
    service = load_one(MYSQL / "service.yaml", "Service")
    labels = spec["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert spec["selector"]["matchLabels"].items() <= labels.items()


def test_replicas_follow_the_configured_writer(config: Config, statefulset: dict[str, Any]) -> None:
    containers = _by_name(statefulset["spec"]["template"]["spec"]["containers"])
    env = {e["name"]: e.get("value") for e in containers["mariabackup"]["env"]}
    assert env["PRIMARY_HOST"] == f"{config.discovery.writer}.{config.discovery.service}"
    ports = containers["mariadb"]["ports"]
    assert [(p["name"], p["containerPort"]) for p in ports] == [("mysql", config.discovery.port)]


def test_sidecar_is_a_native_sidecar_running_serve(sidecar: dict[str, Any]) -> None:
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["args"] == ["serve"]
    assert sidecar["image"] == "rwproxy"  # kustomization.yaml's `images:` sets name and tag


def test_sidecar_probes_use_the_http_port(config: Config, sidecar: dict[str, Any]) -> None:
    assert config.http is not None
    ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    paths = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = sidecar[probe]["httpGet"]
        assert ports[get["port"]] == config.http.port
        paths[probe] = get["path"]
    assert paths == {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }


def test_sidecar_is_locked_down(sidecar: dict[str, Any]) -> None:
    context = sidecar["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    assert {"requests", "limits"} <= sidecar["resources"].keys()


def test_sidecar_mounts_what_its_config_reads(
    config: Config, pod: dict[str, Any], sidecar: dict[str, Any]
) -> None:
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    mounts = {m["mountPath"]: m for m in sidecar["volumeMounts"]}
    volumes = _by_name(pod["spec"]["volumes"])

    config_mount = mounts[env["RWPROXY_CONFIG"]]
    assert volumes[config_mount["name"]]["configMap"]["name"] == "rwproxy-config"
    assert config_mount["subPath"] == "rwproxy.yaml"

    files = [user.password_file for user in config.users] + [config.monitor.password_file]
    (directory,) = {str(f.parent) for f in files if f is not None}
    secret = volumes[mounts[directory]["name"]]["secret"]
    assert sorted(item["path"] for item in secret["items"]) == sorted(
        f.name for f in files if f is not None
    )
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"] is not None


def test_grace_period_fits_prestop_and_drain(
    config: Config, pod: dict[str, Any], sidecar: dict[str, Any]
) -> None:
    pre_stop = sidecar["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    needed = int(pre_stop[1]) + config.shutdown_timeout_seconds
    assert pod["spec"]["terminationGracePeriodSeconds"] >= needed + 5


def test_network_policy_admits_the_sidecars_and_replication(
    config: Config, pod: dict[str, Any], statefulset: dict[str, Any]
) -> None:
    policy = load_one(MYSQL / "networkpolicy.yaml", "NetworkPolicy")
    mysql_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= mysql_labels.items()
    client_rule, peer_rule = policy["spec"]["ingress"]
    client_labels = client_rule["from"][0]["podSelector"]["matchLabels"]
    assert client_labels == {"rwproxy-client": "true"}
    assert client_labels.items() <= pod["metadata"]["labels"].items()
    assert [p["port"] for p in client_rule["ports"]] == [config.discovery.port]
    assert peer_rule["from"][0]["podSelector"]["matchLabels"].items() <= mysql_labels.items()
    assert [p["port"] for p in peer_rule["ports"]] == [config.discovery.port, 3307]


# --- docker compose -----------------------------------------------------------------------------


def test_db_containers_answer_to_their_pod_names(compose: dict[str, Any]) -> None:
    discovery = load_config(COMPOSE_CONFIG).discovery
    for pod in DB_SERVICES:
        aliases = compose["services"][pod]["networks"]["cluster"]["aliases"]
        assert aliases == [discovery.pod_fqdn(pod), discovery.service_fqdn]


def test_db_containers_replicate_from_the_writer(compose: dict[str, Any]) -> None:
    discovery = load_config(COMPOSE_CONFIG).discovery
    script = (COMPOSE_DIR / "replica" / "10-rwproxy-replicate.sh").read_text("utf-8")
    assert f"MASTER_HOST='{discovery.pod_fqdn(discovery.writer)}'" in script
    assert "MASTER_USE_GTID=slave_pos" in script
    server_ids = []
    for ordinal, pod in enumerate(DB_SERVICES):
        service = compose["services"][pod]
        assert re.fullmatch(r"mariadb:10\.11\.\d+", service["image"])
        assert service["healthcheck"]["test"] == [
            "CMD",
            "healthcheck.sh",
            "--connect",
            "--innodb_initialized",
        ]
        initdb = "primary" if ordinal == 0 else "replica"
        assert f"./deploy/compose/{initdb}:/docker-entrypoint-initdb.d:ro" in service["volumes"]
        assert ("--read-only=ON" in service["command"]) == (ordinal > 0)
        server_ids += [arg for arg in service["command"] if arg.startswith("--server-id=")]
    assert server_ids == ["--server-id=100", "--server-id=101", "--server-id=102"]


def test_proxy_service_runs_the_image_with_the_compose_config(compose: dict[str, Any]) -> None:
    config = load_config(COMPOSE_CONFIG)
    proxy = compose["services"]["rwproxy"]
    assert proxy["build"]["dockerfile"] == "Dockerfile"
    assert config.http is not None
    assert proxy["ports"] == [
        f"127.0.0.1:6033:{config.listen.port}",
        f"127.0.0.1:6070:{config.http.port}",
    ]
    assert "./deploy/compose/rwproxy.yaml:/etc/rwproxy/rwproxy.yaml:ro" in proxy["volumes"]
    files = [str(user.password_file) for user in config.users] + [str(config.monitor.password_file)]
    assert sorted(secret["target"] for secret in proxy["secrets"]) == sorted(files)
    for name, secret in compose["secrets"].items():
        assert (REPO / secret["file"]).is_file(), name
    assert proxy["read_only"] is True
    assert proxy["depends_on"] == {pod: {"condition": "service_healthy"} for pod in DB_SERVICES}


def test_compose_secrets_hold_the_local_cluster_passwords(compose: dict[str, Any]) -> None:
    # The compose passwords are the local cluster's (config/local.yaml), for the same clients.
    local = load_config(REPO / "config" / "local.yaml")
    secrets = {name: Path(REPO, s["file"]) for name, s in compose["secrets"].items()}
    assert secrets["app-password"].read_text("utf-8").strip() == local.users[0].password
    assert secrets["monitor-password"].read_text("utf-8").strip() == local.monitor.password


def _cnf_settings(path: Path) -> dict[str, str]:
    lines = path.read_text("utf-8").splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip().replace("_", "-"): value.strip() for key, value in pairs}


@pytest.mark.parametrize(("pod", "role"), [("mysql-0", "primary"), ("mysql-1", "replica")])
def test_compose_servers_are_configured_like_the_statefulset(
    compose: dict[str, Any], pod: str, role: str
) -> None:
    command = compose["services"][pod]["command"]
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in command)
    flags.pop("server-id")  # 100 + ordinal in both; the StatefulSet computes it at start
    assert flags == _cnf_settings(MYSQL / "conf" / f"{role}.cnf")
