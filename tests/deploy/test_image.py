"""The Dockerfile: what the image runs and exposes must match the proxy's CLI and the sidecar
configuration it ships (config/kubernetes.yaml)."""

from __future__ import annotations

import re

from proxy.cli import build_parser
from proxy.config import Config

from .conftest import REPO, Stage

CONFIG_PATH = "/etc/rwproxy/rwproxy.yaml"


def test_multi_stage_build_on_a_pinned_slim_python(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    for stage in stages:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", stage.image)
    builder = stages[0]
    assert builder.name == "builder"
    # The builder compiles a wheel from the source tree and installs that into the venv it
    # hands over, then checks that every data-path module of it runs compiled.
    (build,) = (run for run in builder.all("RUN") if "RWPROXY_COMPILE=1" in run)
    assert re.search(r"pip wheel [^&]*\s\.(\s|$)", build)
    assert re.search(r"/opt/rwproxy/bin/pip install [^&]*\.whl", build)
    assert "c.compiled_modules() == list(c.COMPILED_MODULES)" in build
    copies = stages[-1].all("COPY")
    assert f"--from={builder.name} /opt/rwproxy /opt/rwproxy" in copies


def test_the_image_is_compiled_by_the_mypy_the_tests_use() -> None:
    """make test checks the compiled build of the dev extras' mypy: the image uses the same."""
    (pinned,) = re.findall(r'"mypy==([^"]+)"', (REPO / "pyproject.toml").read_text())
    assert f"ARG MYPY_VERSION={pinned}" in (REPO / "Dockerfile").read_text()


def test_entrypoint_runs_rwproxy_serve(final_stage: Stage) -> None:
    command = final_stage.exec_form("ENTRYPOINT") + final_stage.exec_form("CMD")
    assert command == ["rwproxy", "serve"]
    args = build_parser().parse_args(command[1:])
    assert args.command == "serve"
    assert args.config is None  # so RWPROXY_CONFIG decides, and Kubernetes can override it


def test_config_comes_from_rwproxy_config(final_stage: Stage) -> None:
    assert final_stage.env()["RWPROXY_CONFIG"] == CONFIG_PATH
    # The image's default configuration is the sidecar's; a ConfigMap or bind mount replaces it.
    assert f"config/kubernetes.yaml {CONFIG_PATH}" in final_stage.all("COPY")


def test_exposed_ports_are_the_sidecar_config_ports(
    final_stage: Stage, sidecar_config: Config
) -> None:
    exposed = {int(port) for args in final_stage.all("EXPOSE") for port in args.split()}
    assert sidecar_config.http is not None
    assert exposed == {sidecar_config.listen.port, sidecar_config.http.port} == {3306, 6070}


def test_healthcheck_asks_healthz_with_the_standard_library(
    final_stage: Stage, sidecar_config: Config
) -> None:
    healthcheck = final_stage.last("HEALTHCHECK")
    assert sidecar_config.http is not None
    assert f"http://127.0.0.1:{sidecar_config.http.port}/healthz" in healthcheck
    assert "urllib.request" in healthcheck
    assert "curl" not in healthcheck and "wget" not in healthcheck  # not in slim images


def test_runs_as_a_numeric_non_root_user(final_stage: Stage) -> None:
    user = final_stage.last("USER")
    assert re.fullmatch(r"[0-9]+(:[0-9]+)?", user), "numeric, so runAsNonRoot can verify it"
    assert int(user.split(":")[0]) != 0


def test_read_only_root_friendly(final_stage: Stage) -> None:
    env = final_stage.env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert final_stage.all("VOLUME") == []  # nothing to write; /tmp is mounted by the runtime


def test_oci_labels(final_stage: Stage) -> None:
    labels = " ".join(final_stage.all("LABEL"))
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_dockerignore_keeps_what_the_build_copies(stages: list[Stage]) -> None:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", "an allow-list: everything else stays out of the build context"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for stage in stages:
        for copy in stage.all("COPY"):
            if copy.startswith("--from="):
                continue
            *sources, _ = copy.split()
            for source in sources:
                assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"
                assert (REPO / source).exists()
