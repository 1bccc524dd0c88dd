"""deploy/validate.py (`make lint-deploy`) passes on the repository and fails on copies with
one deliberate mistake each, so the validators really look at what we ship.

The validators are installed by `make lint-deploy` (deploy/requirements-lint.txt). Without
them these tests fail and say so; they do not skip.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import REPO

VALIDATE = REPO / "deploy" / "validate.py"
TREE = ("Dockerfile", ".dockerignore", "docker-compose.yml", "deploy")


def _load_validate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_validate", VALIDATE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


validate = _load_validate()


@pytest.fixture(scope="session", autouse=True)
def tools_installed() -> None:
    missing = []
    for name in ("kubectl", "kubernetes-validate", "check-jsonschema", "hadolint", "shellcheck"):
        try:
            validate.tool(name)
        except validate.ToolMissing:
            missing.append(name)
    if missing:
        pytest.fail(
            f"deployment validators missing from {validate.TOOLS_DIR}: {', '.join(missing)}; "
            "run `make lint-deploy` first (it installs deploy/requirements-lint.txt)",
            pytrace=False,
        )


def run_validate(root: Path, *checks: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(VALIDATE), "--root", str(root), *checks],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the files the validators read."""
    for name in TREE:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, tmp_path / name)
    return tmp_path


def break_file(root: Path, name: str, old: str, new: str) -> None:
    path = root / name
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} should occur once in {name}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_the_repository_passes_every_check() -> None:
    done = run_validate(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    for check in validate.CHECKS:
        assert f"lint-deploy: {check}: ok" in done.stdout


def test_an_intact_copy_passes(tree: Path) -> None:
    done = run_validate(tree)
    assert done.returncode == 0, done.stdout + done.stderr


BROKEN = {
    "statefulset-wrong-field-name": (
        "kubernetes",
        "deploy/kubernetes/mysql/statefulset.yaml",
        "podManagementPolicy: OrderedReady",
        "podManagmentPolicy: OrderedReady",
        "'podManagmentPolicy' was unexpected",
    ),
    "service-port-missing": (
        "kubernetes",
        "deploy/kubernetes/mysql/service.yaml",
        "      port: 3306\n",
        "",
        "'port' is a required property",
    ),
    # (The schemas carry no enums: `restartPolicy: Allways` would pass; test_manifests.py
    # asserts the sidecar's restartPolicy itself.)
    "sidecar-port-not-a-number": (
        "kubernetes",
        "deploy/kubernetes/app/deployment.yaml",
        "containerPort: 6070",
        'containerPort: "6070"',
        "'6070' is not of type 'integer'",
    ),
    "kustomize-missing-configmap-file": (
        "kubernetes",
        "deploy/kubernetes/kustomization.yaml",
        "      - rwproxy.yaml\n",
        "      - rwproxy.yml\n",
        "rwproxy.yml",
    ),
    "compose-bad-key": (
        "compose",
        "docker-compose.yml",
        "read_only: true",
        "readonly: true",
        "'readonly' was unexpected",
    ),
    "compose-bad-depends-on-condition": (
        "compose",
        "docker-compose.yml",
        "      mysql-2:\n        condition: service_healthy\n",
        "      mysql-2:\n        condition: healthy\n",
        "'healthy' is not one of",
    ),
    "dockerfile-runs-as-root": (
        "dockerfile",
        "Dockerfile",
        "USER 10001:10001",
        "USER root",
        "DL3002",
    ),
    "dockerfile-unpinned-apt": (
        "dockerfile",
        "Dockerfile",
        "COPY --from=builder",
        "RUN apt-get update && apt-get install -y curl\nCOPY --from=builder",
        "DL3008",
    ),
    "shell-unquoted-variable": (
        "shell",
        "deploy/kubernetes/mysql/scripts/clone.sh",
        'rmdir "${staging}"',
        "rmdir ${staging}",
        "SC2086",
    ),
}


@pytest.mark.parametrize(
    ("check", "name", "old", "new", "expected"), BROKEN.values(), ids=BROKEN.keys()
)
def test_a_broken_copy_fails(
    tree: Path, check: str, name: str, old: str, new: str, expected: str
) -> None:
    break_file(tree, name, old, new)
    done = run_validate(tree, check)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"lint-deploy: {check}: FAILED" in done.stdout
    assert expected in done.stdout


def test_a_missing_tool_says_to_run_make_lint_deploy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(validate, "TOOLS_DIR", tmp_path)
    with pytest.raises(validate.ToolMissing, match="run `make lint-deploy`"):
        validate.validate(REPO, ["dockerfile"])
