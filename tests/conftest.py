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


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def private_state_dir(tmp_path_factory, monkeypatch):
    """Every test keeps its journal and locks in a directory of its own, never the user's
    ~/.local/state (where a run of the example site by anyone else would be read back);
    a test that needs a particular one sets CUBEINSTALL_STATE_DIR itself."""
    monkeypatch.setenv("CUBEINSTALL_STATE_DIR", str(tmp_path_factory.mktemp("state")))
