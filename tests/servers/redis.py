"""A real redis-server for the tests (pytest plugin: ``-p tests.servers.redis``).

Debian's redis-server on a free loopback port, no persistence, its password
in a 0600 config file in the temp dir (never on a command line). If the
binary is missing or the server does not answer, the fixture fails the test
with the reason and the log tail; it never skips.
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster.processes import (
    ManagedProcess,
    ProcessError,
    format_tail,
    free_port,
    wait_until,
)

REDIS_PASSWORD = "redis-Pw with spaces \"and\" quotes"


@dataclass
class RedisServer:
    host: str
    port: int
    password: str
    log: Path
    process: ManagedProcess


def _config(workdir: Path, port: int, password: str) -> Path:
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    path = workdir / "redis.conf"
    path.touch(mode=0o600)
    path.write_text(
        f"bind 127.0.0.1\nport {port}\nrequirepass \"{quoted}\"\ndir {workdir}\n"
        f"save \"\"\nappendonly no\nlogfile {workdir / 'redis.log'}\n", encoding="utf-8")
    return path


def _answers_ping(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(b"PING\r\n")
        reply = sock.recv(64)
    return reply.startswith((b"-NOAUTH", b"+PONG"))


def start_redis(workdir: Path, password: str = REDIS_PASSWORD) -> RedisServer:
    binary = shutil.which("redis-server")
    if not binary:
        pytest.fail("redis-server not found: install Debian's redis-server "
                    "(apt-get install redis-server)", pytrace=False)
    port = free_port()
    config = _config(workdir, port, password)
    log = workdir / "redis.log"
    process = ManagedProcess("redis-server", [binary, str(config)], workdir / "redis.out").start()
    try:
        wait_until(lambda: _answers_ping("127.0.0.1", port), timeout=30,
                   what="redis-server to answer PING", watched=[process], blame=process)
    except ProcessError as exc:
        process.stop()
        pytest.fail(f"redis-server did not start: {exc}\n{format_tail('redis', log)}",
                    pytrace=False)
    return RedisServer("127.0.0.1", port, password, log, process)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.process.stop()
