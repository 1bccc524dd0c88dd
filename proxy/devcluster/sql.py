"""SQL the cluster sends to its pods: readiness logins, users, replication set-up and status.

Theory of operation: each call opens a short-lived PyMySQL connection (PyMySQL comes with
aiomysql, a runtime dependency) as `admin` over TCP to the pod's current address; only the
template bootstrap runs as root over the unix socket, before any user exists. Set-up is rare, so
there is no pool to go stale across restarts and moves.

Every TCP connection uses TLS without verifying the certificate: pods always offer TLS, and
with `up --tls` they refuse anything else; these are the cluster's own probes on loopback, so
encryption is all they need. (The bootstrap over the unix socket has no TLS.)

Replication is MariaDB GTID replication to the primary's *address*
(`CHANGE MASTER TO MASTER_HOST=..., MASTER_USE_GTID=slave_pos`). Whenever the primary moves, or a
replica starts while pointing elsewhere, `point_at_primary` re-points it and keeps an SQL thread
that `lag on` stopped, stopped. MASTER_CONNECT_RETRY=1 lets replicas find a restarted primary
within a second rather than the default minute. Replicas of a cluster that requires TLS
replicate over TLS (`MASTER_SSL=1`); `point_at_primary` also re-points a replica whose setting
differs.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors

from proxy.devcluster import spec
from proxy.devcluster.errors import ClusterError

logger = logging.getLogger(__name__)

STATEMENT_TIMEOUT_SECONDS = 10

# Run once on the template, so every pod starts with the same accounts. The app and monitor
# grants are what the proxy needs; admin is for tests (general_log, SET GLOBAL, KILL).
_SETUP: tuple[tuple[str, tuple[str, ...]], ...] = (
    (f"CREATE DATABASE {spec.DATABASE}", ()),
    ("CREATE USER %s@'%%' IDENTIFIED BY %s", (spec.APP.user, spec.APP.password)),
    (f"GRANT ALL ON {spec.DATABASE}.* TO %s@'%%'", (spec.APP.user,)),
    ("CREATE USER %s@'%%' IDENTIFIED BY %s", (spec.MONITOR.user, spec.MONITOR.password)),
    # REPLICATION CLIENT became BINLOG MONITOR in 10.5; SHOW SLAVE STATUS needs SLAVE MONITOR.
    ("GRANT BINLOG MONITOR, SLAVE MONITOR, PROCESS ON *.* TO %s@'%%'", (spec.MONITOR.user,)),
    ("CREATE USER %s@'%%' IDENTIFIED BY %s", (spec.ADMIN.user, spec.ADMIN.password)),
    ("GRANT ALL PRIVILEGES ON *.* TO %s@'%%' WITH GRANT OPTION", (spec.ADMIN.user,)),
    ("CREATE USER %s@'%%' IDENTIFIED BY %s", (spec.REPLICATION.user, spec.REPLICATION.password)),
    ("GRANT REPLICATION SLAVE ON *.* TO %s@'%%'", (spec.REPLICATION.user,)),
)


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """The parts of SHOW SLAVE STATUS that say whether and how far a replica follows."""

    master_host: str
    io_running: str
    sql_running: str
    seconds_behind_master: int | None
    gtid_io_pos: str
    gtid_slave_pos: str
    last_io_error: str
    last_sql_error: str
    master_ssl: bool = False

    @classmethod
    def from_row(cls, row: dict[str, Any], gtid_slave_pos: str) -> ReplicaStatus:
        return cls(
            master_host=row["Master_Host"],
            io_running=row["Slave_IO_Running"],
            sql_running=row["Slave_SQL_Running"],
            seconds_behind_master=row["Seconds_Behind_Master"],
            gtid_io_pos=row["Gtid_IO_Pos"],
            gtid_slave_pos=gtid_slave_pos,
            last_io_error=row["Last_IO_Error"],
            last_sql_error=row["Last_SQL_Error"],
            master_ssl=row["Master_SSL_Allowed"] == "Yes",
        )


def _encrypt_only() -> ssl.SSLContext:
    """TLS that checks nothing: for the cluster's own connections to its pods (see above)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@contextmanager
def session(
    address: str | None = None,
    *,
    unix_socket: Path | None = None,
    credentials: spec.Credentials = spec.ADMIN,
) -> Iterator[Any]:
    """A dict cursor on a fresh autocommit connection; MariaDB errors become ClusterError."""
    where = address or str(unix_socket)
    try:
        with pymysql.connect(
            host=address,
            port=spec.MYSQL_PORT,
            unix_socket=str(unix_socket) if unix_socket else None,
            user=credentials.user,
            password=credentials.password,
            autocommit=True,
            connect_timeout=STATEMENT_TIMEOUT_SECONDS,
            read_timeout=STATEMENT_TIMEOUT_SECONDS,
            ssl=None if unix_socket else _encrypt_only(),
            ssl_disabled=unix_socket is not None,
            cursorclass=pymysql.cursors.DictCursor,
        ) as conn:
            yield conn.cursor()
    except pymysql.MySQLError as exc:
        raise ClusterError(f"MariaDB at {where}: {exc}") from exc


def can_login(address: str) -> bool:
    """The readiness probe: a real login, since bare port probes count as connect errors."""
    try:
        with pymysql.connect(
            host=address,
            port=spec.MYSQL_PORT,
            user=spec.MONITOR.user,
            password=spec.MONITOR.password,
            connect_timeout=1,
            ssl=_encrypt_only(),
        ):
            return True
    except (pymysql.MySQLError, OSError):
        return False


def create_accounts(unix_socket: Path) -> None:
    """Create the database and users on the template, as root over its socket."""
    root = spec.Credentials("root", "")
    with session(unix_socket=unix_socket, credentials=root) as cursor:
        # mariadb-install-db also creates passwordless root@127.0.0.1, @::1 and @<hostname>;
        # every loopback client comes from 127.0.0.1, so those would let anyone in as root.
        cursor.execute("SELECT Host FROM mysql.user WHERE User = 'root' AND Host <> 'localhost'")
        for row in cursor.fetchall():
            cursor.execute("DROP USER 'root'@%s", (row["Host"],))
        for statement, args in _SETUP:
            cursor.execute(statement, args)


def replica_status(address: str) -> ReplicaStatus | None:
    """SHOW SLAVE STATUS, or None when replication was never configured on this pod."""
    with session(address) as cursor:
        cursor.execute("SHOW SLAVE STATUS")
        row = cursor.fetchone()
        if row is None:
            return None
        # Unlike SHOW ALL SLAVES STATUS, SHOW SLAVE STATUS has no Gtid_Slave_Pos column.
        cursor.execute("SELECT @@gtid_slave_pos AS pos")
        return ReplicaStatus.from_row(row, cursor.fetchone()["pos"])


def binlog_position(address: str) -> str:
    """The primary's @@gtid_binlog_pos: what replicas must reach to have every write."""
    with session(address) as cursor:
        cursor.execute("SELECT @@gtid_binlog_pos AS pos")
        return str(cursor.fetchone()["pos"])


def point_at_primary(address: str, primary_address: str, *, tls: bool = False) -> bool:
    """Make the replica at address follow primary_address (over TLS if tls); True when that
    changed anything."""
    status = replica_status(address)
    if status is not None and (status.master_host, status.master_ssl) == (primary_address, tls):
        return False
    # A replica that was never configured starts both threads; a lagged one keeps SQL stopped.
    keep_sql_stopped = status is not None and status.sql_running != "Yes"
    logger.info("pointing replica %s at primary %s", address, primary_address)
    with session(address) as cursor:
        cursor.execute("STOP SLAVE")
        cursor.execute(
            "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, "
            "MASTER_PASSWORD=%s, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, "
            "MASTER_SSL=%s",
            (
                primary_address,
                spec.MYSQL_PORT,
                spec.REPLICATION.user,
                spec.REPLICATION.password,
                int(tls),
            ),
        )
        cursor.execute("START SLAVE IO_THREAD" if keep_sql_stopped else "START SLAVE")
    return True


def is_replicating(address: str, *, with_sql: bool) -> bool:
    """IO thread connected to the primary, and the SQL thread applying too when with_sql."""
    status = replica_status(address)
    if status is None or status.io_running != "Yes":
        return False
    return status.sql_running == "Yes" or not with_sql


def set_sql_thread(address: str, *, running: bool) -> None:
    """`lag off`/`lag on`: start or stop applying what the IO thread keeps fetching."""
    with session(address) as cursor:
        cursor.execute("START SLAVE SQL_THREAD" if running else "STOP SLAVE SQL_THREAD")
