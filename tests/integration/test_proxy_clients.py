"""Real client libraries and tools through the proxy, end to end, against the local cluster.

Each client does the same things an application does: connect, create a table, insert,
read (on a replica: `@@server_id` differs from mysql-0's), commit and roll back a
transaction (inside it, `@@server_id` is mysql-0's), prepared statements where the client
has them, LOAD DATA LOCAL INFILE, rows and packets over 16 MiB (the pods allow 64 MiB),
and the utility commands the client exposes (COM_PING, COM_INIT_DB, COM_RESET_CONNECTION,
COM_CHANGE_USER, COM_FIELD_LIST, COM_STATISTICS). Clients: PyMySQL, aiomysql,
mysql-connector-python (pure Python and C extension), SQLAlchemy ORM sessions, the
`mariadb` command-line client and sysbench.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import aiomysql
import pymysql
import pytest
from pymysql.constants import CLIENT, COMMAND

from tests.integration.cluster_fixture import ClusterHandle
from tests.support.mariadb_cli import CLI_TIMEOUT_SECONDS, needs_cli
from tests.support.mariadb_cli import mariadb_cli as run_cli
from tests.support.proxy_harness import ProxyThread

pytestmark = pytest.mark.integration

BIG = 17 * 1024 * 1024  # over one 16 MiB packet, under the pods' 64 MiB max_allowed_packet
MAX_PACKET = 64 * 1024 * 1024
INFILE_TIMEOUT_SECONDS = 3
SYSBENCH_SECONDS = 5

try:
    import mysql.connector as mysql_connector
except ImportError:  # a dev dependency; only its own tests are skipped without it
    HAVE_MYSQL_CONNECTOR = False
else:
    HAVE_MYSQL_CONNECTOR = True


@pytest.fixture
def table(cluster: ClusterHandle) -> Iterator[str]:
    """A table name for one test, dropped afterwards (whatever the test left)."""
    name = cluster.unique_name("rwt")
    yield name
    cluster.query(cluster.primary, f"DROP TABLE IF EXISTS {cluster.database}.{name}")


@pytest.fixture
def infile(tmp_path: Path) -> Path:
    path = tmp_path / "rows.csv"
    path.write_text("".join(f"{n},loaded-{n}\n" for n in range(100, 110)))
    return path


def big_blob() -> bytes:
    return bytes(range(256)) * (BIG // 256) + b"end"


def create_table_sql(name: str) -> str:
    return f"CREATE TABLE {name} (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64), b LONGBLOB)"


# -- PyMySQL ------------------------------------------------------------------------------


def pymysql_connect(proxy: ProxyThread, cluster: ClusterHandle, **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": proxy.port,
        "user": cluster.app.user,
        "password": cluster.app.password,
        "database": cluster.database,
        "ssl_disabled": True,
        "autocommit": True,
        "read_timeout": 30,
        "max_allowed_packet": MAX_PACKET,
    }
    return pymysql.connect(**(options | kwargs))


def _field_list(conn: Any, table: str) -> list[str]:
    """COM_FIELD_LIST through PyMySQL's own packet layer: the column names."""
    conn._execute_command(COMMAND.COM_FIELD_LIST, table.encode() + b"\0")
    names: list[str] = []
    while True:
        packet = conn._read_packet()
        if packet.is_eof_packet():
            return names
        names.append(_column_name(packet))


def _column_name(packet: Any) -> str:
    """The `name` of a Protocol::ColumnDefinition41."""
    for _ in ("catalog", "schema", "table", "org_table"):
        packet.read_length_coded_string()
    return str(packet.read_length_coded_string().decode())


def _statistics(conn: Any) -> str:
    conn._execute_command(COMMAND.COM_STATISTICS, b"")
    return str(conn._read_packet().get_all_data().decode())


def test_pymysql_crud_and_transactions(
    proxy: ProxyThread, cluster: ClusterHandle, table: str, primary_id: int
) -> None:
    with pymysql_connect(proxy, cluster) as conn, conn.cursor() as cur:
        cur.execute(create_table_sql(table))
        cur.execute(f"INSERT INTO {table} (v) VALUES (%s), (%s)", ("one", "two"))
        cur.execute(f"SELECT @@server_id, COUNT(*) FROM {table}")
        server_id, count = cur.fetchone()
        assert server_id != primary_id and count == 2

        conn.begin()
        cur.execute(f"INSERT INTO {table} (v) VALUES ('committed')")
        cur.execute("SELECT @@server_id")
        assert cur.fetchone() == (primary_id,)
        conn.commit()
        conn.begin()
        cur.execute(f"INSERT INTO {table} (v) VALUES ('rolled back')")
        conn.rollback()
        cur.execute(f"SELECT v, @@server_id FROM {table} ORDER BY id")
        rows = cur.fetchall()
        assert [v for v, _ in rows] == ["one", "two", "committed"]
        assert rows[0][1] != primary_id


def test_pymysql_load_data_local_infile(
    proxy: ProxyThread, cluster: ClusterHandle, table: str, infile: Path
) -> None:
    conn = pymysql_connect(proxy, cluster, local_infile=True, read_timeout=INFILE_TIMEOUT_SECONDS)
    with conn, conn.cursor() as cur:
        cur.execute(create_table_sql(table))
        loaded = cur.execute(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE {table} FIELDS TERMINATED BY ',' (id, v)",
            (str(infile),),
        )
        assert loaded == 10
        cur.execute(f"SELECT COUNT(*) FROM {table} WHERE v LIKE 'loaded-%'")
        assert cur.fetchone() == (10,)


def test_pymysql_rows_over_16mib(
    proxy: ProxyThread, cluster: ClusterHandle, table: str, primary_id: int
) -> None:
    with pymysql_connect(proxy, cluster) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT LENGTH(REPEAT('x', {BIG})), REPEAT('y', {BIG})")
        length, text = cur.fetchone()
        assert length == BIG and text == "y" * BIG
        cur.execute(create_table_sql(table))
        blob = big_blob()
        cur.execute(f"INSERT INTO {table} (v, b) VALUES ('big', %s)", (blob,))
        cur.execute(f"SELECT b, @@server_id FROM {table} WHERE v = 'big'")
        stored, server_id = cur.fetchone()
        assert stored == blob and server_id != primary_id


def test_pymysql_utility_commands(proxy: ProxyThread, cluster: ClusterHandle, table: str) -> None:
    with pymysql_connect(proxy, cluster) as conn, conn.cursor() as cur:
        cur.execute(create_table_sql(table))
        conn.ping(reconnect=False)
        conn.select_db("information_schema")
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone() == ("information_schema",)
        conn.select_db(cluster.database)
        assert _field_list(conn, table) == ["id", "v", "b"]
        assert "Uptime" in _statistics(conn)
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone() == (cluster.database,)


def test_pymysql_multi_statements(proxy: ProxyThread, cluster: ClusterHandle, table: str) -> None:
    conn = pymysql_connect(proxy, cluster, client_flag=CLIENT.MULTI_STATEMENTS)
    with conn, conn.cursor() as cur:
        cur.execute(f"{create_table_sql(table)}; INSERT INTO {table} (v) VALUES ('a'), ('b')")
        while cur.nextset():
            pass
        cur.execute(f"SELECT COUNT(*) FROM {table}; SELECT 'second'")
        assert cur.fetchone() == (2,)
        assert cur.nextset()
        assert cur.fetchone() == ("second",)


# -- aiomysql -----------------------------------------------------------------------------


async def aiomysql_connect(proxy: ProxyThread, cluster: ClusterHandle, **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": proxy.port,
        "user": cluster.app.user,
        "password": cluster.app.password,
        "db": cluster.database,
        "autocommit": True,
    }
    return await aiomysql.connect(**(options | kwargs))


async def test_aiomysql_crud_and_transactions(
    proxy: ProxyThread, cluster: ClusterHandle, table: str, primary_id: int
) -> None:
    conn = await aiomysql_connect(proxy, cluster)
    try:
        async with conn.cursor() as cur:
            await cur.execute(create_table_sql(table))
            await cur.execute(f"INSERT INTO {table} (v) VALUES (%s)", ("one",))
            await cur.execute(f"SELECT @@server_id, COUNT(*) FROM {table}")
            server_id, count = await cur.fetchone()
            assert server_id != primary_id and count == 1

            await conn.begin()
            await cur.execute(f"INSERT INTO {table} (v) VALUES ('committed')")
            await cur.execute("SELECT @@server_id")
            assert await cur.fetchone() == (primary_id,)
            await conn.commit()
            await conn.begin()
            await cur.execute(f"INSERT INTO {table} (v) VALUES ('rolled back')")
            await conn.rollback()
            await cur.execute(f"SELECT v FROM {table} ORDER BY id")
            assert [v for (v,) in await cur.fetchall()] == ["one", "committed"]

            await conn.ping(reconnect=False)
            await conn.select_db("information_schema")
            await cur.execute("SELECT DATABASE()")
            assert await cur.fetchone() == ("information_schema",)
    finally:
        conn.close()


async def test_aiomysql_load_data_local_infile(
    proxy: ProxyThread, cluster: ClusterHandle, table: str, infile: Path
) -> None:
    conn = await aiomysql_connect(proxy, cluster, local_infile=True)
    try:
        async with conn.cursor() as cur:
            await cur.execute(create_table_sql(table))
            async with asyncio.timeout(INFILE_TIMEOUT_SECONDS):
                await cur.execute(
                    f"LOAD DATA LOCAL INFILE '{infile}' INTO TABLE {table}"
                    " FIELDS TERMINATED BY ',' (id, v)"
                )
            await cur.execute(f"SELECT COUNT(*) FROM {table} WHERE v LIKE 'loaded-%'")
            assert await cur.fetchone() == (10,)
    finally:
        conn.close()


async def test_aiomysql_rows_over_16mib(
    proxy: ProxyThread, cluster: ClusterHandle, table: str
) -> None:
    conn = await aiomysql_connect(proxy, cluster)
    try:
        async with conn.cursor() as cur:
            await cur.execute(create_table_sql(table))
            blob = big_blob()
            # aiomysql 0.3 cannot escape bytes with PyMySQL 1.2: send hex (a 34 MiB packet).
            await cur.execute(
                f"INSERT INTO {table} (v, b) VALUES ('big', UNHEX(%s))", (blob.hex(),)
            )
            await cur.execute(
                f"SELECT LENGTH(b), MD5(b), REPEAT('z', {BIG}) FROM {table} WHERE v = 'big'"
            )
            length, digest, text = await cur.fetchone()
            assert (length, digest) == (len(blob), hashlib.md5(blob).hexdigest())
            assert text == "z" * BIG
    finally:
        conn.close()


# -- mysql-connector-python -----------------------------------------------------------


@pytest.fixture(params=[True, False], ids=["pure", "cext"])
def use_pure(request: pytest.FixtureRequest) -> bool:
    if not HAVE_MYSQL_CONNECTOR:
        pytest.skip("mysql-connector-python is not installed")
    if not request.param and not mysql_connector.HAVE_CEXT:
        pytest.skip("mysql-connector-python C extension not available")
    return bool(request.param)


def connector_connect(
    proxy: ProxyThread, cluster: ClusterHandle, use_pure: bool, **kwargs: Any
) -> Any:
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": proxy.port,
        "user": cluster.app.user,
        "password": cluster.app.password,
        "database": cluster.database,
        "use_pure": use_pure,
        "ssl_disabled": True,
        "autocommit": True,
        "connection_timeout": 10,
        "read_timeout": 30,
        # Explicit: with the proxy's version string the connector would pick MySQL 8's
        # utf8mb4_0900_ai_ci (see test_mysql_connector_default_settings).
        "charset": "utf8mb4",
        "collation": "utf8mb4_general_ci",
    }
    return mysql_connector.connect(**(options | kwargs))


def test_mysql_connector_default_settings(
    proxy: ProxyThread, cluster: ClusterHandle, use_pure: bool
) -> None:
    """Default options: the connector must see a MariaDB (version "5.5.5-10.11...")."""
    conn = mysql_connector.connect(
        host="127.0.0.1",
        port=proxy.port,
        user=cluster.app.user,
        password=cluster.app.password,
        database=cluster.database,
        use_pure=use_pure,
        ssl_disabled=True,
    )
    try:
        cur = conn.cursor()
        cur.execute("SELECT @@collation_connection")
        assert cur.fetchone() == ("utf8mb4_general_ci",)
        cur.close()
    finally:
        conn.close()


def test_mysql_connector_crud_and_transactions(
    proxy: ProxyThread, cluster: ClusterHandle, table: str, primary_id: int, use_pure: bool
) -> None:
    conn = connector_connect(proxy, cluster, use_pure)
    try:
        cur = conn.cursor()
        cur.execute(create_table_sql(table))
        cur.execute(f"INSERT INTO {table} (v) VALUES (%s), (%s)", ("one", "two"))
        cur.execute(f"SELECT @@server_id, COUNT(*) FROM {table}")
        server_id, count = cur.fetchone()
        assert server_id != primary_id and count == 2

        conn.start_transaction()
        cur.execute(f"INSERT INTO {table} (v) VALUES ('committed')")
        cur.execute("SELECT @@server_id")
        assert cur.fetchone() == (primary_id,)
        conn.commit()
        conn.start_transaction()
        cur.execute(f"INSERT INTO {table} (v) VALUES ('rolled back')")
        conn.rollback()
        cur.execute(f"SELECT v FROM {table} ORDER BY id")
        assert [v for (v,) in cur.fetchall()] == ["one", "two", "committed"]
        cur.close()
    finally:
        conn.close()


def test_mysql_connector_prepared_statements(
    proxy: ProxyThread, cluster: ClusterHandle, table: str, primary_id: int, use_pure: bool
) -> None:
    conn = connector_connect(proxy, cluster, use_pure)
    try:
        conn.cursor().execute(create_table_sql(table))
        cur = conn.cursor(prepared=True)
        cur.execute(f"INSERT INTO {table} (v) VALUES (?)", ("one",))
        cur.execute(f"INSERT INTO {table} (v) VALUES (?)", ("two",))
        select = f"SELECT @@server_id, v FROM {table} WHERE id = ?"
        cur.execute(select, (2,))
        server_id, value = cur.fetchone()
        assert server_id != primary_id and value == "two"
        conn.start_transaction()
        cur.execute(select, (1,))
        assert cur.fetchone() == (primary_id, "one")
        cur.execute(f"UPDATE {table} SET v = ? WHERE id = ?", ("uno", 1))
        conn.commit()
        cur.execute(select, (1,))
        server_id, value = cur.fetchone()
        assert server_id != primary_id and value == "uno"
        cur.close()
    finally:
        conn.close()


def test_mysql_connector_load_data_local_infile(
    proxy: ProxyThread, cluster: ClusterHandle, table: str, infile: Path, use_pure: bool
) -> None:
    conn = connector_connect(
        proxy,
        cluster,
        use_pure,
        allow_local_infile=True,
        allow_local_infile_in_path=str(infile.parent),
        read_timeout=INFILE_TIMEOUT_SECONDS,
    )
    try:
        cur = conn.cursor()
        cur.execute(create_table_sql(table))
        cur.execute(
            f"LOAD DATA LOCAL INFILE '{infile}' INTO TABLE {table} FIELDS TERMINATED BY ',' (id, v)"
        )
        cur.execute(f"SELECT COUNT(*) FROM {table} WHERE v LIKE 'loaded-%'")
        assert cur.fetchone() == (10,)
        cur.close()
    finally:
        conn.close()


def test_mysql_connector_rows_over_16mib(
    proxy: ProxyThread, cluster: ClusterHandle, table: str, use_pure: bool
) -> None:
    conn = connector_connect(proxy, cluster, use_pure)
    try:
        cur = conn.cursor()
        cur.execute(create_table_sql(table))
        blob = big_blob()
        cur.execute(f"INSERT INTO {table} (v, b) VALUES ('big', %s)", (blob,))
        cur.execute(f"SELECT b FROM {table} WHERE v = 'big'")
        assert bytes(cur.fetchone()[0]) == blob
        cur.execute(f"SELECT REPEAT('x', {BIG})")
        assert cur.fetchone()[0] == "x" * BIG
        cur.close()
        prepared = conn.cursor(prepared=True)  # COM_STMT_EXECUTE over 16 MiB
        prepared.execute(f"INSERT INTO {table} (v, b) VALUES (?, ?)", ("big-ps", blob))
        prepared.execute(f"SELECT LENGTH(b) FROM {table} WHERE v = ?", ("big-ps",))
        assert prepared.fetchone() == (len(blob),)
        prepared.close()
    finally:
        conn.close()


def test_mysql_connector_utility_commands(
    proxy: ProxyThread, cluster: ClusterHandle, use_pure: bool
) -> None:
    conn = connector_connect(proxy, cluster, use_pure)
    try:
        conn.ping(reconnect=False)  # COM_PING (cmd_ping() is pure-only)
        assert conn.is_connected()
        conn.cmd_init_db("information_schema")
        cur = conn.cursor()
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone() == ("information_schema",)
        cur.close()
        assert "Uptime" in str(conn.cmd_statistics())
    finally:
        conn.close()


def test_mysql_connector_reset_connection(
    proxy: ProxyThread, cluster: ClusterHandle, primary_id: int, use_pure: bool
) -> None:
    conn = connector_connect(proxy, cluster, use_pure)
    try:
        cur = conn.cursor()
        cur.execute("SET @rwt_reset = 5")
        cur.execute("CREATE TEMPORARY TABLE rwt_tmp (a INT)")  # pins the session to the writer
        cur.execute("SELECT @rwt_reset, @@server_id")
        assert cur.fetchone() == (5, primary_id)
        cur.close()
        conn.cmd_reset_connection()
        cur = conn.cursor()
        cur.execute("SELECT @rwt_reset, @@server_id")
        value, server_id = cur.fetchone()
        assert value is None and server_id != primary_id  # state gone, pin gone
        cur.execute("SHOW TABLES LIKE 'rwt_tmp'")
        assert cur.fetchall() == []
        cur.close()
    finally:
        conn.close()


def test_mysql_connector_change_user(
    proxy: ProxyThread, cluster: ClusterHandle, use_pure: bool
) -> None:
    conn = connector_connect(proxy, cluster, use_pure)
    try:
        cur = conn.cursor()
        cur.execute("SET @rwt_before = 1")
        cur.close()
        conn.cmd_change_user(
            username=cluster.admin.user, password=cluster.admin.password, database="mysql"
        )
        cur = conn.cursor()
        cur.execute("SELECT CURRENT_USER(), DATABASE(), @rwt_before")
        assert cur.fetchone() == (f"{cluster.admin.user}@%", "mysql", None)
        cur.close()
    finally:
        conn.close()


# -- SQLAlchemy ORM -------------------------------------------------------------------


def test_sqlalchemy_orm(
    proxy: ProxyThread, cluster: ClusterHandle, table: str, primary_id: int
) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy import orm

    class Base(orm.DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = table
        id = sqlalchemy.Column(sqlalchemy.Integer, primary_key=True)
        name = sqlalchemy.Column(sqlalchemy.String(64))

    url = (
        f"mysql+pymysql://{cluster.app.user}:{cluster.app.password}"
        f"@127.0.0.1:{proxy.port}/{cluster.database}"
    )
    engine = sqlalchemy.create_engine(url, connect_args={"ssl_disabled": True})
    try:
        Base.metadata.create_all(engine)
        with orm.Session(engine) as session:
            session.add_all([Item(name="a"), Item(name="b")])
            session.commit()
            server_id = session.execute(sqlalchemy.text("SELECT @@server_id")).scalar_one()
            assert server_id == primary_id  # the ORM session is always in a transaction
            session.add(Item(name="never"))
            session.flush()
            session.rollback()
        with orm.Session(engine) as session:
            names = session.scalars(sqlalchemy.select(Item.name).order_by(Item.id)).all()
            assert names == ["a", "b"]
            cast(Item, session.get(Item, 1)).name = "renamed"
            session.commit()
        reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        with reader.connect() as conn:
            row = conn.execute(
                sqlalchemy.text(f"SELECT @@server_id, GROUP_CONCAT(name ORDER BY id) FROM {table}")
            ).one()
            assert row[0] != primary_id and row[1] == "renamed,b"
    finally:
        engine.dispose()


# -- the mariadb command-line client --------------------------------------------------


def mariadb_cli(
    proxy: ProxyThread, cluster: ClusterHandle, *args: str, timeout: float = CLI_TIMEOUT_SECONDS
) -> str:
    user = cluster.app
    return run_cli(proxy.port, user.user, user.password, cluster.database, *args, timeout=timeout)


@needs_cli
def test_mariadb_cli_script(
    proxy: ProxyThread, cluster: ClusterHandle, table: str, primary_id: int
) -> None:
    script = f"""
        {create_table_sql(table)};
        INSERT INTO {table} (v) VALUES ('one'), ('two');
        SELECT @@server_id, COUNT(*) FROM {table};
        BEGIN;
        INSERT INTO {table} (v) VALUES ('committed');
        SELECT @@server_id;
        COMMIT;
        START TRANSACTION;
        INSERT INTO {table} (v) VALUES ('rolled back');
        ROLLBACK;
        SELECT GROUP_CONCAT(v ORDER BY id) FROM {table};
    """
    lines = mariadb_cli(proxy, cluster, "-e", script).splitlines()
    replica_id, count = lines[0].split("\t")
    assert int(replica_id) != primary_id and count == "2"
    assert lines[1:] == [str(primary_id), "one,two,committed"]


@needs_cli
def test_mariadb_cli_multi_statement_and_source(
    proxy: ProxyThread, cluster: ClusterHandle, table: str, tmp_path: Path
) -> None:
    # With another delimiter the client sends the three statements as one COM_QUERY.
    multi = (
        f"DELIMITER //\n{create_table_sql(table)}; INSERT INTO {table} (v) VALUES ('a');"
        f" SELECT COUNT(*) FROM {table}; SELECT 'done'//\n"
    )
    assert mariadb_cli(proxy, cluster, "-e", multi).split() == ["1", "done"]
    sql_file = tmp_path / "script.sql"
    sql_file.write_text(
        f"INSERT INTO {table} (v) VALUES ('sourced');\n"
        f"SELECT v FROM {table} WHERE v = 'sourced';\n"
        "SELECT 1; SELECT 2;\n"
    )
    assert mariadb_cli(proxy, cluster, "-e", f"source {sql_file}").split() == [
        "sourced",
        "1",
        "2",
    ]


@needs_cli
def test_mariadb_cli_load_data_local_infile(
    proxy: ProxyThread, cluster: ClusterHandle, table: str, infile: Path
) -> None:
    script = (
        f"{create_table_sql(table)};"
        f" LOAD DATA LOCAL INFILE '{infile}' INTO TABLE {table} FIELDS TERMINATED BY ',' (id, v);"
        f" SELECT COUNT(*) FROM {table} WHERE v LIKE 'loaded-%';"
    )
    output = mariadb_cli(
        proxy, cluster, "--local-infile=1", "-e", script, timeout=INFILE_TIMEOUT_SECONDS
    )
    assert output.split() == ["10"]


@needs_cli
def test_mariadb_cli_rows_over_16mib(proxy: ProxyThread, cluster: ClusterHandle) -> None:
    output = mariadb_cli(proxy, cluster, "-e", f"SELECT REPEAT('q', {BIG}), 'end'")
    text, end = output.rstrip("\n").split("\t")
    assert text == "q" * BIG and end == "end"


# -- sysbench -------------------------------------------------------------------------


@pytest.fixture
def sysbench_db(cluster: ClusterHandle) -> Iterator[str]:
    """A database of its own (sysbench's table names are fixed), app may use it."""
    name = cluster.unique_name("rwt_sb")
    with cluster.connect(cluster.primary, "admin") as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
        cur.execute(f"GRANT ALL ON {name}.* TO %s@'%%'", (cluster.app.user,))
    cluster.wait_replicated()
    yield name
    with cluster.connect(cluster.primary, "admin") as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"REVOKE ALL ON {name}.* FROM %s@'%%'", (cluster.app.user,))


def sysbench(proxy: ProxyThread, cluster: ClusterHandle, db: str, *args: str) -> str:
    command = [
        "sysbench",
        "oltp_read_write",
        "--db-driver=mysql",
        "--mysql-host=127.0.0.1",
        f"--mysql-port={proxy.port}",
        f"--mysql-user={cluster.app.user}",
        f"--mysql-password={cluster.app.password}",
        f"--mysql-db={db}",
        "--tables=2",
        "--table-size=1000",
        # Deadlocks are the workload's own (direct runs against mysql-0 have them too);
        # any other error, lock wait timeouts included, makes sysbench fail.
        "--mysql-ignore-errors=1213",
        *args,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=SYSBENCH_SECONDS + 60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _counter(output: str, name: str) -> int:
    found = re.search(rf"{name}:\s+(\d+)", output)
    assert found is not None, output
    return int(found.group(1))


@pytest.mark.skipif(shutil.which("sysbench") is None, reason="sysbench not installed")
def test_sysbench_oltp_read_write(
    proxy: ProxyThread, cluster: ClusterHandle, sysbench_db: str
) -> None:
    sysbench(proxy, cluster, sysbench_db, "prepare")
    for mode in ("--db-ps-mode=disable", "--db-ps-mode=auto"):
        output = sysbench(
            proxy, cluster, sysbench_db, "--threads=4", f"--time={SYSBENCH_SECONDS}", mode, "run"
        )
        transactions = _counter(output, "transactions")
        assert transactions > 0, output
        assert _counter(output, "ignored errors") <= transactions // 20, output
        assert _counter(output, "reconnects") == 0, output
    sysbench(proxy, cluster, sysbench_db, "cleanup")
