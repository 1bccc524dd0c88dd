"""The `mariadb` command-line client run against a proxy, as an operator would run it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

import pytest

CLI_TIMEOUT_SECONDS = 60
#: Plain TCP. The CLI (Connector/C 3.3) defaults to --ssl, which changes how it answers
#: caching_sha2_password's full authentication (see tests/integration/test_protocol_login.py).
NO_TLS: tuple[str, ...] = ("--skip-ssl",)

needs_cli = pytest.mark.skipif(shutil.which("mariadb") is None, reason="no mariadb client")


def cli_command(port: int, user: str, password: str, *args: str) -> list[str]:
    """The command line that logs in to 127.0.0.1:`port` and does `args`, with no option
    files (a developer's ~/.my.cnf must not change what a test sends)."""
    login = ["-h", "127.0.0.1", "-P", str(port), "-u", user, f"-p{password}"]
    return [shutil.which("mariadb") or "mariadb", "--no-defaults", *login, *args]


def mariadb_cli(
    port: int,
    user: str,
    password: str,
    database: str,
    *args: str,
    tls: Sequence[str] = NO_TLS,
    timeout: float = CLI_TIMEOUT_SECONDS,
) -> str:
    """Run the CLI in batch mode (tab-separated rows, no column names); return its output.
    A non-zero exit fails the test with the CLI's stderr."""
    options = ("--batch", "--skip-column-names", "--max-allowed-packet=64M")
    command = cli_command(port, user, password, *tls, *options, database, *args)
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout
