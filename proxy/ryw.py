"""Read-your-writes: the two queries that make a replica read see the session's writes.

MariaDB and MySQL differ here, so both live in one place:

=========================  ==============================  ===================================
step                       MariaDB                         MySQL 8/9
=========================  ==============================  ===================================
position of the write      ``SELECT @@last_gtid`` on the   ``SELECT @@global.gtid_executed`` on
                           session's writer connection     the writer (a superset of the
                           (that session's own last GTID); session's own writes)
                           ``@@global.gtid_binlog_pos``
                           once that connection is gone
wait on the replica        ``MASTER_GTID_WAIT(gtid, t)``   ``WAIT_FOR_EXECUTED_GTID_SET(s, t)``
                           0 = applied, -1 = timeout       0 = applied, 1 = timeout
=========================  ==============================  ===================================

A timeout, an error, or a server that has no GTIDs means "not confirmed": the caller
sends the read to the writer, which always has the write.
"""

from __future__ import annotations

import logging

from proxy.backend import BackendConnection, BackendError
from proxy.protocol.errors import MySQLError

logger = logging.getLogger(__name__)


def is_mariadb(conn: BackendConnection) -> bool:
    return "mariadb" in conn.server_version.lower()


def quote(text: str) -> bytes:
    """A SQL string literal for a GTID position (digits, '-', ':', ',', uuids)."""
    return b"'" + text.replace("\\", "\\\\").replace("'", "''").encode() + b"'"


class ReadYourWrites:
    """Queries for the session's write position and for waiting on a replica."""

    def __init__(self, wait_timeout: float, query_timeout: float) -> None:
        self.wait_timeout = wait_timeout
        self.query_timeout = query_timeout

    async def last_write_position(self, writer: BackendConnection, own: bool = True) -> str:
        """A GTID position that includes the session's last write on the writer: MariaDB's
        @@last_gtid when `writer` is the connection that wrote (`own`), else the writer's
        whole @@gtid_binlog_pos (later, never earlier); MySQL's gtid_executed is global."""
        if not is_mariadb(writer):
            sql = b"SELECT @@global.gtid_executed"
        else:
            sql = b"SELECT @@last_gtid" if own else b"SELECT @@global.gtid_binlog_pos"
        try:
            rows = await writer.query(sql, self.query_timeout)
        except (MySQLError, BackendError, TimeoutError) as exc:
            logger.debug("cannot read the write position on %s: %s", writer.endpoint.pod, exc)
            return ""
        value = rows[0][0] if rows and rows[0] else None
        return value.decode() if value else ""

    async def wait_on_replica(self, reader: BackendConnection, position: str) -> bool:
        timeout = f"{self.wait_timeout:.3f}".encode()
        if is_mariadb(reader):
            sql = b"SELECT MASTER_GTID_WAIT(" + quote(position) + b", " + timeout + b")"
        else:
            sql = b"SELECT WAIT_FOR_EXECUTED_GTID_SET(" + quote(position) + b", " + timeout + b")"
        try:
            rows = await reader.query(sql, self.wait_timeout + self.query_timeout)
        except (MySQLError, BackendError, TimeoutError) as exc:
            logger.debug("GTID wait on %s failed: %s", reader.endpoint.pod, exc)
            return False
        value = rows[0][0] if rows and rows[0] else None
        return value == b"0"
