"""The loopback bridge of the in-cluster path, with a real MariaDB as its upstream.

In a real cluster each bridged connection's upstream is a Kubernetes
port-forward stream; kwok pods serve no traffic, so here the upstream is a
plain TCP connection to the test MariaDB. Everything above the upstream --
the listener, the byte pump, pymysql through it, failure reporting and the
retry decisions -- is the code the in-cluster path runs.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from cubeinstall.db.connection import Endpoint, MySQLUnreachable, connect
from cubeinstall.db.portforward import (
    ForwardError,
    LoopbackBridge,
    ServiceMissing,
    Upstream,
)
from cubeinstall.site.secrets import Secret

pytestmark = pytest.mark.mysql


def tcp_upstream(host: str, port: int):
    def open_upstream() -> Upstream:
        sock = socket.create_connection((host, port), timeout=5)
        sock.settimeout(None)
        return Upstream(sock, sock.close)

    return open_upstream


def bridged_endpoint(bridge: LoopbackBridge, password: str) -> Endpoint:
    return Endpoint(bridge.host, bridge.port, "root", Secret(password, "test value"), bridge=bridge)


def test_mysql_protocol_through_the_bridge(mariadb):
    with LoopbackBridge(tcp_upstream(mariadb.host, mariadb.port), "mysql-service.infra:3306") \
            as bridge:
        endpoint = bridged_endpoint(bridge, mariadb.root_password)
        results: list[int] = []

        def big_query() -> None:
            with connect(endpoint, deadline_seconds=10) as conn, conn.cursor() as cursor:
                cursor.execute("SELECT LENGTH(REPEAT('x', 4000000)), REPEAT('y', 3000000)")
                length, payload = cursor.fetchone()
                results.append(length + len(payload))

        threads = [threading.Thread(target=big_query) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert results == [7_000_000] * 4  # four concurrent connections, megabytes each way


def test_bridge_closes_its_listener(mariadb):
    with LoopbackBridge(tcp_upstream(mariadb.host, mariadb.port), "x") as bridge:
        port = bridge.port
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_permanent_forward_failure_fails_fast_with_its_hint(mariadb):
    def missing() -> Upstream:
        raise ServiceMissing("Service infra/mysql-service not found", permanent=True,
                             hint="run the stage that deploys it first")

    started = time.monotonic()
    with LoopbackBridge(missing, "mysql-service.infra:3306") as bridge:
        with pytest.raises(MySQLUnreachable) as failed:
            connect(bridged_endpoint(bridge, mariadb.root_password), deadline_seconds=60)
    assert time.monotonic() - started < 5
    assert isinstance(failed.value.forward_failure, ServiceMissing)
    text = str(failed.value)
    assert "mysql-service.infra:3306 (port-forward via 127.0.0.1:" in text
    assert "Service infra/mysql-service not found" in text
    assert "run the stage that deploys it first" in text


def test_transient_forward_failure_is_retried_until_it_heals(mariadb):
    attempts: list[float] = []
    real = tcp_upstream(mariadb.host, mariadb.port)

    def heals_after_three() -> Upstream:
        attempts.append(time.monotonic())
        if len(attempts) <= 3:
            raise ForwardError("Service infra/mysql-service: no ready pod matches app=mysql")
        return real()

    with LoopbackBridge(heals_after_three, "mysql-service.infra:3306") as bridge:
        with connect(bridged_endpoint(bridge, mariadb.root_password),
                     deadline_seconds=30) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
    assert len(attempts) == 4
    assert attempts[3] - attempts[0] > 0.5  # backed off between attempts


def test_transient_forward_failure_reported_at_the_deadline(mariadb):
    def never_ready() -> Upstream:
        raise ForwardError("Service infra/mysql-service: no ready pod matches app=mysql "
                           "(pods: mysql-0 (Pending))", hint="check the pods")

    with LoopbackBridge(never_ready, "mysql-service.infra:3306") as bridge:
        with pytest.raises(MySQLUnreachable) as failed:
            connect(bridged_endpoint(bridge, mariadb.root_password), deadline_seconds=1.5)
    text = str(failed.value)
    assert "no ready pod matches app=mysql (pods: mysql-0 (Pending))" in text
    assert "gave up after" in text and "check the pods" in text
