"""Shared pytest set-up: fixture modules used across test folders, and the build under test."""

import pytest

from proxy import compiled

pytest_plugins = ["tests.integration.cluster_fixtures", "tests.integration.proxy_fixtures"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--expect-build",
        choices=("compiled", "pure"),
        help="fail at once unless every module of proxy.compiled runs compiled (or none does)",
    )


def pytest_report_header() -> str:
    return f"rwproxy build: {compiled.describe()}"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test a build other than the one asked for, or one older than its source."""
    stale = compiled.stale_extensions()
    if stale:
        pytest.exit(
            f"compiled modules older than their source: {', '.join(stale)}; "
            "run `make compile` (or `make clean-compiled` to test pure Python)",
            returncode=2,
        )
    expected = session.config.getoption("--expect-build")
    running = compiled.compiled_modules()
    if expected == "compiled" and running != list(compiled.COMPILED_MODULES):
        pytest.exit(f"--expect-build=compiled, but only these run compiled: {running}", 2)
    if expected == "pure" and running:
        pytest.exit(f"--expect-build=pure, but these run compiled: {running}", 2)
