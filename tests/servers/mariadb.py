"""A real MariaDB server for the tests (pytest plugin: ``-p tests.servers.mariadb``).

Debian's mariadb-server, started per TEST-SERVERS.md: a data directory made
by ``mariadb-install-db`` in a temp dir, ``mariadbd`` on a free loopback
port with its own socket, pid and error log. The root password is set over
the unix socket (never on a command line). One server per session; the
``mariadb`` fixture hands each test a server with no user database and no
user account left over from the previous test.

If the binaries are missing or the server does not start, the fixture fails
the test with the reason and the tail of the server log; it never skips.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pymysql
import pytest

from tests.cluster.processes import (
    ManagedProcess,
    ProcessError,
    format_tail,
    free_port,
    wait_until,
)

if TYPE_CHECKING:
    from cubeinstall.core.context import RunContext
    from cubeinstall.site.model import Site

ROOT_PASSWORD = "root-Pw'; x\"1"  # quotes prove the password travels as a parameter
SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")
SYSTEM_USERS = ("root", "mariadb.sys", "")
WRITE_COUNTERS = ("Com_create_db", "Com_alter_db", "Com_drop_db", "Com_create_user",
                  "Com_alter_user", "Com_drop_user", "Com_grant", "Com_revoke",
                  "Com_update", "Com_insert", "Com_delete", "Com_create_table",
                  "Com_alter_table")


@dataclass
class MariaDBServer:
    host: str
    port: int
    root_password: str
    socket: Path
    log: Path
    process: ManagedProcess

    def connect(self, user: str = "root", password: str | None = None,
                database: str | None = None, **kwargs) -> pymysql.connections.Connection:
        """A TCP connection, the way the product connects (root by default)."""
        return pymysql.connect(host=self.host, port=self.port, user=user,
                               password=self.root_password if password is None else password,
                               database=database, autocommit=True, connect_timeout=5, **kwargs)

    def query(self, sql: str, args=None) -> list[tuple]:
        with self.connect() as conn, conn.cursor() as cursor:
            cursor.execute(sql, args)
            return list(cursor.fetchall())

    def write_counters(self) -> dict[str, int]:
        """The server's global counters of write statements (SHOW GLOBAL STATUS)."""
        names = ", ".join(f"'{name}'" for name in WRITE_COUNTERS)
        rows = self.query(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})")
        return {name: int(value) for name, value in rows}

    def reset(self) -> None:
        """Drop every non-system database and account a test left behind."""
        with self.connect() as conn, conn.cursor() as cursor:
            cursor.execute("SELECT schema_name FROM information_schema.schemata")
            for (name,) in cursor.fetchall():
                if name not in SYSTEM_SCHEMAS:
                    cursor.execute(f"DROP DATABASE `{name}`")
            cursor.execute("SELECT user, host FROM mysql.user")
            for user, host in cursor.fetchall():
                if user not in SYSTEM_USERS:
                    cursor.execute("DROP USER %s@%s", (user, host))

    def log_tail(self) -> str:
        return format_tail("mariadbd", self.log)


def _require(binary: str) -> str:
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if not path:
        pytest.fail(f"{binary} not found: install Debian's mariadb-server (apt-get install "
                    "mariadb-server); the mysql tests need a real server", pytrace=False)
    return path


def start_mariadb(workdir: Path, extra_args: tuple[str, ...] = ()) -> MariaDBServer:
    install_db = _require("mariadb-install-db")
    mariadbd = _require("mariadbd")
    datadir = workdir / "data"
    log = workdir / "mariadbd.err"
    result = subprocess.run(
        [install_db, "--no-defaults", "--user=root", f"--datadir={datadir}",
         "--auth-root-authentication-method=normal", "--skip-test-db"],
        capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        pytest.fail(f"mariadb-install-db failed ({result.returncode}):\n{result.stdout[-2000:]}"
                    f"\n{result.stderr[-2000:]}", pytrace=False)
    port = free_port()
    sock = workdir / "mysqld.sock"
    process = ManagedProcess("mariadbd", [
        mariadbd, "--no-defaults", "--user=root", f"--datadir={datadir}",
        "--bind-address=127.0.0.1", f"--port={port}", f"--socket={sock}",
        f"--pid-file={workdir / 'mariadbd.pid'}", f"--log-error={log}", "--skip-log-bin",
        "--skip-name-resolve",  # 'localhost' accounts then match the socket only
        *extra_args,
    ], workdir / "mariadbd.out").start()
    server = MariaDBServer("127.0.0.1", port, ROOT_PASSWORD, sock, log, process)

    def socket_answers() -> bool:
        pymysql.connect(unix_socket=str(sock), user="root", connect_timeout=2).close()
        return True

    try:
        wait_until(socket_answers, timeout=60, what="mariadbd to accept connections",
                   watched=[process], blame=process)
    except ProcessError as exc:
        process.stop()
        pytest.fail(f"MariaDB did not start: {exc}\n{server.log_tail()}", pytrace=False)
    with pymysql.connect(unix_socket=str(sock), user="root", autocommit=True) as conn, \
            conn.cursor() as cursor:
        # Only root over TCP from 127.0.0.1 (what the product uses) and the socket.
        cursor.execute("SELECT host FROM mysql.user WHERE user = 'root'")
        for (host,) in cursor.fetchall():
            if host not in ("localhost", "127.0.0.1"):
                cursor.execute("DROP USER 'root'@%s", (host,))
        for host in ("localhost", "127.0.0.1"):
            cursor.execute("ALTER USER 'root'@%s IDENTIFIED BY %s", (host, ROOT_PASSWORD))
    return server


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory):
    server = start_mariadb(tmp_path_factory.mktemp("mariadb"))
    yield server
    server.process.stop()


@pytest.fixture
def mariadb(mariadb_server: MariaDBServer) -> MariaDBServer:
    """The session's MariaDB, emptied of what earlier tests created."""
    if not mariadb_server.process.running():
        pytest.fail(f"MariaDB died during the session\n{mariadb_server.log_tail()}", pytrace=False)
    mariadb_server.reset()
    return mariadb_server


# --- a site and a run context pointing at a test server ---------------------------


def site_for(host: str, port: int, password: str, *, object_seconds: float = 20,
             user: str = "root", redis: dict | None = None, **mysql) -> "Site":
    """A minimal valid Site whose mysql section is external at host:port."""
    from cubeinstall.site.model import Site
    from cubeinstall.site.secrets import Secret

    return Site.model_validate({
        "site": "test", "domain": "cube.test.example",
        "nodes": [{"name": "node1", "address": "127.0.0.1", "roles": ["cpu", "mysql", "redis"]}],
        "storage": {"type": "local"},
        "mysql": {"mode": "external", "host": host, "port": port, "user": user,
                  "password": Secret(password, "test value"), **mysql},
        "redis": redis or {"password": Secret("unused-redis", "test value")},
        "timeouts": {"object_seconds": object_seconds},
    })


def context_for(site: "Site", **options) -> "RunContext":
    """A RunContext whose Output records JSON events in memory (tests read ctx.out.events)."""
    import io

    from cubeinstall.core.context import RunContext, RunOptions
    from cubeinstall.core.output import Output

    return RunContext(site=site, out=Output(json_mode=True, stream=io.StringIO()),
                      options=RunOptions(**options))


@pytest.fixture
def mysql_context(mariadb: MariaDBServer):
    """Factory: a RunContext for the test MariaDB, with mysql fields overridden by kwargs."""

    def make(**mysql) -> "RunContext":
        return context_for(site_for(mariadb.host, mariadb.port, mariadb.root_password, **mysql))

    return make
