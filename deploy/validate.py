"""Offline validation of the deployment files: `make lint-deploy` runs it, tests/deploy too.

Theory of operation
-------------------
Each check runs one well-kept tool on files under ``--root`` (the repository by default; tests
pass a temporary copy with a deliberate mistake) and reports what the tool printed:

* ``kubernetes``: ``kubectl kustomize deploy/kubernetes`` renders the manifests as
  ``kubectl apply -k`` would; ``kubernetes-validate --strict`` checks every object against the
  official OpenAPI schemas of each version in ``KUBERNETES_VERSIONS``, rejecting unknown fields.
  The oldest version is the minimum the manifests support (native sidecars: 1.29).
* ``compose``: ``check-jsonschema`` validates docker-compose.yml against the Compose
  Specification's JSON schema, vendored in the check-jsonschema package.
* ``dockerfile``: ``hadolint`` lints the Dockerfile (and the shell in its RUN lines).
* ``shell``: ``shellcheck`` lints the MariaDB init and clone scripts under deploy/.

The tools come from deploy/requirements-lint.txt, installed into the virtual environment that
runs this script (they are looked up next to ``sys.executable``, never on PATH, so that the
pinned versions are the ones used). A missing tool is an error that says how to install it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")
REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLS_DIR = Path(sys.executable).parent  # the venv's bin/, not resolved: a venv symlinks python


class ToolMissing(Exception):
    """A validator is not installed; the message says how to install it."""


@dataclass(frozen=True)
class Result:
    check: str
    ok: bool
    output: str


def tool(name: str) -> str:
    path = TOOLS_DIR / name
    if not path.exists():
        raise ToolMissing(
            f"{name} is not installed in {TOOLS_DIR}: run `make lint-deploy`, which installs "
            "deploy/requirements-lint.txt into the virtual environment"
        )
    return str(path)


def run(*args: str) -> tuple[bool, str]:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


def check_kubernetes(root: Path) -> tuple[bool, str]:
    ok, rendered = run(tool("kubectl"), "kustomize", str(root / "deploy" / "kubernetes"))
    if not ok:
        return False, f"kubectl kustomize failed:\n{rendered}"
    with tempfile.TemporaryDirectory() as scratch:
        manifest = Path(scratch) / "rendered.yaml"
        manifest.write_text(rendered, encoding="utf-8")
        results = [
            run(tool("kubernetes-validate"), "--strict", "--quiet", "-k", version, str(manifest))
            for version in KUBERNETES_VERSIONS
        ]
    return all(ok for ok, _ in results), "\n".join(out for _, out in results if out)


def check_compose(root: Path) -> tuple[bool, str]:
    compose = str(root / "docker-compose.yml")
    return run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", compose)


def check_dockerfile(root: Path) -> tuple[bool, str]:
    return run(tool("hadolint"), str(root / "Dockerfile"))


def check_shell(root: Path) -> tuple[bool, str]:
    scripts = sorted(str(path) for path in (root / "deploy").rglob("*.sh"))
    if not scripts:
        return False, "no shell scripts found under deploy/"
    return run(tool("shellcheck"), *scripts)


CHECKS: dict[str, Callable[[Path], tuple[bool, str]]] = {
    "kubernetes": check_kubernetes,
    "compose": check_compose,
    "dockerfile": check_dockerfile,
    "shell": check_shell,
}


def validate(root: Path, names: Sequence[str]) -> list[Result]:
    """Run the named checks on the files under ``root``. Raises ToolMissing."""
    return [Result(name, *CHECKS[name](root)) for name in names]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("checks", nargs="*", metavar="CHECK", help=f"{', '.join(CHECKS)}, or all")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository to check")
    args = parser.parse_args(argv)
    if unknown := sorted(set(args.checks) - set(CHECKS)):
        parser.error(f"unknown check(s): {', '.join(unknown)}")
    try:
        results = validate(args.root, args.checks or list(CHECKS))
    except ToolMissing as error:
        print(f"lint-deploy: {error}", file=sys.stderr)
        return 2
    for result in results:
        print(f"lint-deploy: {result.check}: {'ok' if result.ok else 'FAILED'}")
        if result.output and not result.ok:
            print(result.output)
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
