"""mariadbd pods: their files, config rendering, the template datadir, start and readiness.

Theory of operation: a pod is the directory `<state dir>/pods/<name>/` holding its `my.cnf`,
datadir, socket and logs. Every datadir is a copy of one template, built once by
`mariadb-install-db` plus a short bootstrap start (`--skip-log-bin --skip-networking`) that creates
the database and accounts: copying takes a fraction of a second where an install per pod takes
several. The template never wrote a binary log, so no pod carries GTIDs of its own, and with
gtid_strict_mode the replicas can follow the primary from its very first event.

The config is rendered again on every start, because `move` changes the address (and with it
the pod's certificate, see `certs.py`). Every pod offers TLS (`ssl_ca`/`ssl_cert`/`ssl_key`);
`PodTls.required` adds `require_secure_transport`. Settings that
shape files on disk (the redo log size) are shared by the template and the pods, so a copied
datadir opens without a resize. `--defaults-file` always comes first on the mariadbd command
line, so Debian's /etc/mysql config is never read.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from proxy.devcluster import process, spec, sql
from proxy.devcluster.errors import ClusterError

logger = logging.getLogger(__name__)

# sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107
_INSTALL_TIMEOUT_SECONDS = 120


@dataclass(frozen=True, slots=True)
class PodFiles:
    """Where one mariadbd keeps everything; the template uses the same layout."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "my.cnf"

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket(self) -> Path:
        return self.root / "mysqld.sock"

    @property
    def error_log(self) -> Path:
        return self.root / "error.log"

    @property
    def general_log(self) -> Path:
        return self.root / "general.log"

    @property
    def slow_log(self) -> Path:
        return self.root / "slow.log"

    @property
    def marker(self) -> str:
        """The argument that identifies this pod's mariadbd among all processes."""
        return f"--defaults-file={self.config}"


@dataclass(frozen=True, slots=True)
class MariaDB:
    """The two MariaDB programs the cluster runs."""

    mariadbd: str
    install_db: str

    @classmethod
    def find(cls) -> MariaDB:
        return cls(
            mariadbd=process.find_executable("mariadbd", "mariadb-server"),
            install_db=process.find_executable("mariadb-install-db", "mariadb-server"),
        )


def _shared_settings(files: PodFiles) -> str:
    """Settings the template and every pod must agree on."""
    # As root, mariadbd refuses to start without user=root; as anyone else it is a no-op.
    user = pwd.getpwuid(os.geteuid()).pw_name
    return f"""\
user = {user}
datadir = {files.datadir}
socket = {files.socket}
pid-file = {files.root / "mysqld.pid"}
log-error = {files.error_log}
general_log_file = {files.general_log}
slow_query_log_file = {files.slow_log}
skip-name-resolve
performance_schema = OFF
character-set-server = utf8mb4
innodb_buffer_pool_size = 64M
innodb_log_file_size = 32M
# A test cluster trades durability for speed, like a CI database.
innodb_flush_log_at_trx_commit = 2
max_allowed_packet = 64M
"""


def render_template_config(files: PodFiles) -> str:
    """The bootstrap server: no network and, crucially, no binary log (so no GTIDs)."""
    return f"[mariadbd]\n{_shared_settings(files)}skip-log-bin\nskip-networking\n"


@dataclass(frozen=True, slots=True)
class PodTls:
    """The pod's TLS files (MariaDB reads them at start) and whether plaintext is refused."""

    ca: Path
    cert: Path
    key: Path
    required: bool = False

    def settings(self) -> str:
        # require_secure_transport refuses TCP logins without TLS; the unix socket stays open.
        return (
            f"ssl_ca = {self.ca}\nssl_cert = {self.cert}\nssl_key = {self.key}\n"
            f"require_secure_transport = {'ON' if self.required else 'OFF'}\n"
        )


def render_pod_config(files: PodFiles, *, name: str, address: str, tls: PodTls | None) -> str:
    """One pod's my.cnf: its address, server_id, binary log, role and TLS files."""
    ordinal = spec.pod_ordinal(name)
    return f"""\
[mariadbd]
{_shared_settings(files)}bind-address = {address}
port = {spec.MYSQL_PORT}
server_id = {ordinal + 1}
report_host = {spec.pod_fqdn(name)}
report_port = {spec.MYSQL_PORT}
# Fixed basenames: the defaults derive from the hostname.
log_bin = mysql-bin
log_bin_index = mysql-bin.index
relay_log = relay-bin
relay_log_index = relay-bin.index
binlog_format = ROW
log_slave_updates = ON
gtid_strict_mode = ON
read_only = {0 if ordinal == 0 else 1}
max_connections = 2000
# Port probes and killed handshakes count as connect errors; never block a client for them.
max_connect_errors = 4294967295
local_infile = ON
{tls.settings() if tls else ""}"""


def check_socket_path(files: PodFiles) -> None:
    """A unix socket path longer than sun_path makes mariadbd fail late and obscurely."""
    if len(str(files.socket)) > _MAX_SOCKET_PATH:
        raise ClusterError(
            f"socket path {files.socket} is longer than {_MAX_SOCKET_PATH} bytes; "
            "use a shorter --state-dir"
        )


def build_template(files: PodFiles, binaries: MariaDB) -> None:
    """Install system tables, then create the accounts in a bootstrap start; atomic by rename."""
    partial = PodFiles(files.root.with_name(files.root.name + ".partial"))
    shutil.rmtree(partial.root, ignore_errors=True)
    partial.root.mkdir(parents=True)
    check_socket_path(partial)
    partial.config.write_text(render_template_config(partial))
    logger.info("building the template datadir in %s", files.root)
    _install_system_tables(partial, binaries)
    pid = process.spawn([binaries.mariadbd, partial.marker], partial.error_log)
    try:
        _wait_for_socket(partial, pid)
        sql.create_accounts(partial.socket)
    finally:
        process.terminate([(pid, partial.marker)], timeout=30)
    partial.root.rename(files.root)


def _install_system_tables(files: PodFiles, binaries: MariaDB) -> None:
    argv = [
        binaries.install_db,
        f"--defaults-file={files.config}",
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
        "--skip-name-resolve",
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT_SECONDS, check=False
    )
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise ClusterError(f"mariadb-install-db failed:\n{output}\n{process.tail(files.error_log)}")


def _wait_for_socket(files: PodFiles, pid: int) -> None:
    """The bootstrap server has no TCP; its socket file appears once it accepts logins."""
    alive = process.wait_until(
        lambda: files.socket.exists() or not process.is_running(pid, files.marker), timeout=60
    )
    if not process.is_running(pid, files.marker):
        raise _failure("the template bootstrap server exited during start-up", files)
    if not alive:
        raise _failure("the template bootstrap server did not open its socket in 60 s", files)


def provision(files: PodFiles, template: PodFiles) -> None:
    """Give a new pod its own copy of the template datadir (kept across down/up)."""
    if files.datadir.exists():
        return
    files.root.mkdir(parents=True, exist_ok=True)
    partial = files.root / "data.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(template.datadir, partial)
    partial.rename(files.datadir)


def start(files: PodFiles, *, name: str, address: str, mariadbd: str, tls: PodTls | None) -> int:
    """Render the config for the pod's current address and spawn its mariadbd; returns the PID."""
    check_socket_path(files)
    process.ensure_free(address, spec.MYSQL_PORT)
    files.config.write_text(render_pod_config(files, name=name, address=address, tls=tls))
    logger.info("starting %s on %s:%d", name, address, spec.MYSQL_PORT)
    return process.spawn([mariadbd, files.marker], files.error_log)


def wait_ready(files: PodFiles, *, name: str, pid: int, address: str, timeout: float) -> None:
    """Block until the pod accepts a login (its readiness probe), or explain why it did not."""
    ready = process.wait_until(
        lambda: not process.is_running(pid, files.marker) or sql.can_login(address), timeout
    )
    if not process.is_running(pid, files.marker):
        raise _failure(f"{name} exited during start-up", files)
    if not ready:
        raise _failure(f"{name} did not accept logins within {timeout:.0f} s", files)


def _failure(what: str, files: PodFiles) -> ClusterError:
    return ClusterError(
        f"{what}; last lines of {files.error_log}:\n{process.tail(files.error_log)}"
    )
