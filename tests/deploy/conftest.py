"""Shared helpers for the deployment tests: the repository's files, parsed.

These tests read the Dockerfile, docker-compose.yml and deploy/ as text and YAML; they start
no container, cluster or server. test_validation.py also runs deploy/validate.py, whose tools
`make lint-deploy` installs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config import Config, load

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"
COMPOSE_DIR = REPO / "deploy" / "compose"

# The three configurations that must agree on discovery.
LOCAL_CONFIG = REPO / "config" / "local.yaml"
SIDECAR_CONFIG = REPO / "config" / "kubernetes.yaml"
CONFIGMAP_CONFIG = KUBERNETES / "rwproxy.yaml"
COMPOSE_CONFIG = COMPOSE_DIR / "rwproxy.yaml"


def fake_secret(path: Path) -> str:
    """Stands in for reading a mounted secret file: the password is the file's name."""
    return f"{path.name}\n"


def load_config(path: Path) -> Config:
    return load(path.read_text(encoding="utf-8"), {}, path.parent, read_secret=fake_secret)


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def load_one(path: Path, kind: str) -> dict[str, Any]:
    (doc,) = (doc for doc in load_documents(path) if doc["kind"] == kind)
    return doc


@dataclass
class Stage:
    """One stage of a Dockerfile: its base image and its instructions, in order."""

    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        return self.all(keyword)[-1]

    def exec_form(self, keyword: str) -> list[str]:
        value = json.loads(self.last(keyword))
        assert isinstance(value, list), f"{keyword} should use the exec (JSON) form"
        return value

    def env(self) -> dict[str, str]:
        pairs = (re.findall(r'(\w+)=("[^"]*"|\S+)', args) for args in self.all("ENV"))
        return {key: value.strip('"') for found in pairs for key, value in found}


def logical_lines(text: str) -> list[str]:
    """Instructions with their continuation lines joined and comment lines dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    return lines


def parse_dockerfile(text: str) -> list[Stage]:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:  # global ARGs may be used in FROM
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            image, *alias = rest.split(" AS ") if " AS " in rest else [rest]
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], image.strip())
            stages.append(Stage(image, alias[0].strip() if alias else None))
        else:
            stages[-1].instructions.append((keyword, rest))
    return stages


@pytest.fixture(scope="session")
def stages() -> list[Stage]:
    return parse_dockerfile((REPO / "Dockerfile").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def final_stage(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="session")
def sidecar_config() -> Config:
    return load_config(SIDECAR_CONFIG)


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc
