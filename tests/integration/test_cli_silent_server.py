"""A cluster address that accepts connections and never answers must not hang the CLI.

Two silent servers: one whose connections wait in the kernel's backlog (never accepted,
so no TLS at all) and one that accepts, reads the TLS ClientHello and never replies.
Each command runs as a user runs it (a child process, a hard outer timeout) and must end
within the first-contact budget core/outage.py gives a server never reached in the run,
computed from the settings (tries x connect timeout), plus a margin for start-up.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from cubeinstall.core.outage import FIRST_CONTACT_RETRIES
from cubeinstall.kube.client import REQUEST_TIMEOUT
from tests.helpers import EXAMPLE_SITE, run_process

# a server never reached: FIRST_CONTACT_RETRIES + 1 tries, each ending at the connect timeout
API_BUDGET = (FIRST_CONTACT_RETRIES + 1) * REQUEST_TIMEOUT[0]
MARGIN = 45  # start-up and rendering every stage on a loaded machine; the back-off (< 1 s)
# (before the fix: plan 7 minutes, status --live never ended)

COMMANDS = {  # command -> (exit code, seconds it may take)
    ("plan", "--only", "namespaces"): (1, API_BUDGET + MARGIN),
    ("stage", "namespaces", "--dry-run"): (1, API_BUDGET + MARGIN),
    # every stage, the databases' port-forwards too, shares the server's one budget
    ("status", "--live"): (1, API_BUDGET + MARGIN),
}


class SilentServer:
    """``backlog``: listens, never accepts. ``handshake``: accepts, reads, never answers."""

    def __init__(self, kind: str):
        self.kind = kind
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        if kind == "handshake":
            threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.accepted.append(connection)
            connection.recv(16)  # the start of the ClientHello; the reply never comes

    def close(self) -> None:
        for connection in self.accepted:
            connection.close()
        self.listener.close()


@pytest.fixture(params=["backlog", "handshake"])
def silent_kubeconfig(request, tmp_path):
    server = SilentServer(request.param)
    path = tmp_path / "kubeconfig.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "silent",
        "clusters": [{"name": "silent", "cluster": {"server": f"https://127.0.0.1:{server.port}"}}],
        "users": [{"name": "u", "user": {"token": "token-of-silent-0123"}}],
        "contexts": [{"name": "silent", "context": {"cluster": "silent", "user": "u"}}]}))
    yield path, server.port
    server.close()


def test_plan_stage_and_status_end_within_the_first_contact_budget(silent_kubeconfig, tmp_path):
    kubeconfig, port = silent_kubeconfig
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}  # a journal of its own

    def timed(command):
        started = time.monotonic()
        result = run_process([*command, "-c", str(EXAMPLE_SITE), "--kubeconfig",
                              str(kubeconfig)], env=env, timeout=COMMANDS[command][1] + 60)
        return command, result, time.monotonic() - started

    # concurrently: each command spends its time waiting on the silent server
    with ThreadPoolExecutor(len(COMMANDS)) as pool:
        finished = list(pool.map(timed, COMMANDS))
    for command, result, seconds in finished:
        code, bound = COMMANDS[command]
        said = result.stdout + result.stderr
        assert result.returncode == code, (command, said[-3000:])
        assert seconds <= bound, f"{command} took {seconds:.0f} s, more than {bound} s"
        assert "retrying (1/2) ..." in result.stderr and "retrying (2/2) ..." in result.stderr
        assert f"cannot reach the API server https://127.0.0.1:{port}" in result.stderr, \
            (command, result.stderr[-3000:])
