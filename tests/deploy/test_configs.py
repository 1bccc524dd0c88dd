"""The proxy configurations in deploy/: they load, `rwproxy check` accepts them, and they use
the same discovery as the local cluster the integration tests run against."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.config import Config, HostPort

from .conftest import (
    COMPOSE_CONFIG,
    COMPOSE_DIR,
    CONFIGMAP_CONFIG,
    KUBERNETES,
    LOCAL_CONFIG,
    REPO,
    SIDECAR_CONFIG,
    load_config,
)

SECRETS_DIR = "/etc/rwproxy/secrets/"


def test_configmap_copy_is_config_kubernetes_yaml() -> None:
    # kustomize cannot read ../../config/, so deploy/kubernetes/ keeps a copy.
    assert CONFIGMAP_CONFIG.read_bytes() == SIDECAR_CONFIG.read_bytes(), (
        "deploy/kubernetes/rwproxy.yaml differs from config/kubernetes.yaml: "
        "cp config/kubernetes.yaml deploy/kubernetes/rwproxy.yaml"
    )


def test_primary_init_script_copy_is_identical() -> None:
    name = "10-rwproxy-users.sh"
    assert (KUBERNETES / "mysql" / "initdb" / name).read_bytes() == (
        COMPOSE_DIR / "primary" / name
    ).read_bytes()


@pytest.mark.parametrize("path", [CONFIGMAP_CONFIG, COMPOSE_CONFIG], ids=["kubernetes", "compose"])
def test_passwords_come_from_mounted_files(path: Path) -> None:
    config = load_config(path)
    files = [user.password_file for user in config.users] + [config.monitor.password_file]
    assert files == [Path(SECRETS_DIR, "app-password"), Path(SECRETS_DIR, "monitor-password")]
    # The fake reader returns the file name: the secret was read from the file, newline cut.
    assert [user.password for user in config.users] == ["app-password"]
    assert config.monitor.password == "monitor-password"
    assert "password:" not in path.read_text(encoding="utf-8")


def test_sidecar_listens_where_the_application_expects_mariadb() -> None:
    config = load_config(CONFIGMAP_CONFIG)
    assert config.listen == HostPort("127.0.0.1", 3306)
    assert config.http == HostPort("0.0.0.0", 6070)  # the kubelet probes the pod IP


def test_compose_proxy_listens_on_all_interfaces() -> None:
    config = load_config(COMPOSE_CONFIG)
    assert config.listen == HostPort("0.0.0.0", 6033)  # published as 127.0.0.1:6033
    assert config.http == HostPort("0.0.0.0", 6070)


def _without_nameservers(config: Config) -> object:
    return dataclasses.replace(config.discovery, nameservers=())


def test_discovery_is_the_local_clusters_except_nameservers() -> None:
    local, kubernetes, compose = map(load_config, (LOCAL_CONFIG, CONFIGMAP_CONFIG, COMPOSE_CONFIG))
    assert local.discovery.nameservers, "the local cluster has its own DNS server"
    assert kubernetes.discovery.nameservers == compose.discovery.nameservers == ()
    assert _without_nameservers(kubernetes) == _without_nameservers(local)
    assert _without_nameservers(compose) == _without_nameservers(local)


@pytest.mark.parametrize("path", [CONFIGMAP_CONFIG, COMPOSE_CONFIG], ids=["kubernetes", "compose"])
def test_rwproxy_check_accepts_it(path: Path, tmp_path: Path) -> None:
    # The same file, with its secrets directory pointed at files in tmp_path.
    text = path.read_text(encoding="utf-8")
    mounted = f"password_file: {SECRETS_DIR}"
    assert text.count(mounted) == 2
    for name in ("app-password", "monitor-password"):
        (tmp_path / name).write_text(f"{name}\n", encoding="utf-8")
    config = tmp_path / "rwproxy.yaml"
    config.write_text(text.replace(mounted, f"password_file: {tmp_path}/"), encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("RWPROXY_")}
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--offline", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "configuration OK" in done.stdout
