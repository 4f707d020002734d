"""The Redis gate against a real redis-server (fixture: tests.servers.redis)."""

from __future__ import annotations

import time

import pytest

from cubeinstall.db.redis_gate import (
    RedisNoAuth,
    RedisNoPasswordSet,
    RedisTarget,
    RedisUnknownHost,
    RedisUnreachable,
    RedisWrongPassword,
    check,
    check_redis,
)
from cubeinstall.site.secrets import Secret

pytestmark = pytest.mark.redis  # the data-services marker: needs real servers of the db layer


def target(server, password: str) -> RedisTarget:
    return RedisTarget(server.host, server.port, Secret(password, "test value"))


def test_auth_and_ping_with_the_site_password(redis_server):
    assert check(target(redis_server, redis_server.password), deadline_seconds=5) == "PONG"


def test_check_redis_from_the_site(redis_server):
    from tests.servers.mariadb import context_for, site_for

    site = site_for("127.0.0.1", 1, "unused", redis={
        "mode": "external", "host": redis_server.host, "port": redis_server.port,
        "password": Secret(redis_server.password, "test value")})
    change = check_redis(context_for(site))
    assert change.target == f"redis {redis_server.host}:{redis_server.port}"
    assert change.action == "unchanged" and "PONG" in change.detail


def test_wrong_password_is_its_own_error(redis_server):
    started = time.monotonic()
    with pytest.raises(RedisWrongPassword) as wrong:
        check(target(redis_server, "not-the-password"), deadline_seconds=30)
    assert time.monotonic() - started < 5  # not retried
    text = str(wrong.value)
    assert f"Redis at 127.0.0.1:{redis_server.port} rejected the site password" in text
    assert "WRONGPASS" in text and "redis.password" in text
    assert "not-the-password" not in text


def test_no_password_given_is_noauth(redis_server):
    with pytest.raises(RedisNoAuth) as noauth:
        check(target(redis_server, ""), deadline_seconds=5)
    assert "requires a password (NOAUTH)" in str(noauth.value)


def test_unreachable_after_deadline():
    from tests.cluster.processes import free_port

    port = free_port()
    started = time.monotonic()
    with pytest.raises(RedisUnreachable) as unreachable:
        check(RedisTarget("127.0.0.1", port, Secret("pw-xyz", "test")), deadline_seconds=1.5)
    assert 1.0 < time.monotonic() - started < 10
    text = str(unreachable.value)
    assert f"Redis at 127.0.0.1:{port} is unreachable" in text and "refused" in text


def test_unknown_host():
    with pytest.raises(RedisUnknownHost) as unknown:
        check(RedisTarget("no-such-host.invalid", 6379, Secret("pw-xyz", "test")),
              deadline_seconds=30)
    assert "Redis host 'no-such-host.invalid' (port 6379) cannot be resolved" in str(unknown.value)


def test_server_without_password_is_reported(tmp_path):
    """A Redis with no requirepass while the site sets one: the platform would be exposed."""
    from tests.servers.redis import start_redis

    server = start_redis(tmp_path, password="")
    try:
        with pytest.raises(RedisNoPasswordSet) as open_server:
            check(target(server, "site-password"), deadline_seconds=5)
    finally:
        server.process.stop()
    assert "has no password set" in str(open_server.value)
