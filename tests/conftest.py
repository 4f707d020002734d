"""Fixture plugins of the real servers the tests start (each fails, never skips)."""

pytest_plugins = [
    "tests.servers.registry",
    "tests.cluster.fixtures",
    "tests.servers.mariadb",
    "tests.servers.redis",
    "tests.servers.sshd",
    "tests.servers.http_upstream",
    "tests.servers.webhook",
]
