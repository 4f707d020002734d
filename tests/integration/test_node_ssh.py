"""The SSH executor against real sshd nodes: auth, sudo, host keys, jumps, failures."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from cubeinstall.core.errors import StageFailed
from cubeinstall.remote.errors import HostError
from cubeinstall.remote.pool import ConnectionPool
from cubeinstall.stages import node_prep, storage
from tests.servers.sshd import NodeSpec, User, make_site, stage_context, trust

pytestmark = pytest.mark.ssh

ROOT_PASSWORD = "root pw 'with' \"quotes\" $(x)"
SUDO_PASSWORD = "sudo-Pw 'q' $(touch /tmp/sudo-canary)"


def os_detail(changes, node) -> str:
    [change] = [c for c in changes if c.target == f"{node.name}:os"]
    return change.detail


def fingerprint(node) -> str:
    line = subprocess.run(["ssh-keygen", "-lf", "-"], input=node.host_key_line, text=True,
                          capture_output=True, check=True).stdout
    return line.split()[1]  # "256 SHA256:... comment (ED25519)"


def test_key_auth_as_root(sandbox_nodes, tmp_path, ssh_client_key):
    nodes = sandbox_nodes.start(1)
    trust(nodes, tmp_path / "known_hosts")
    changes = node_prep.apply(stage_context(make_site(nodes, tmp_path, ssh_client_key)))
    assert "root via root" in os_detail(changes, nodes[0])
    assert "Debian" in os_detail(changes, nodes[0])


def test_password_auth(sandbox_nodes, tmp_path):
    nodes = sandbox_nodes.start(1, NodeSpec(root_password=ROOT_PASSWORD))
    trust(nodes, tmp_path / "known_hosts")
    site = make_site(nodes, tmp_path, None, ssh={"password": ROOT_PASSWORD})
    changes = node_prep.apply(stage_context(site))
    assert "root via root" in os_detail(changes, nodes[0])


def test_wrong_password_is_refused_and_never_echoed(sandbox_nodes, tmp_path):
    nodes = sandbox_nodes.start(1, NodeSpec(root_password=ROOT_PASSWORD))
    trust(nodes, tmp_path / "known_hosts")
    site = make_site(nodes, tmp_path, None, ssh={"password": "wrong-Passw0rd-value"})
    ctx = stage_context(site)
    with pytest.raises(StageFailed, match="authentication failed") as failure:
        node_prep.apply(ctx)
    assert "wrong-Passw0rd-value" not in str(failure.value) + ctx.out.stream.getvalue()


def test_non_root_user_with_passwordless_sudo(sandbox_nodes, tmp_path, ssh_client_key):
    nodes = sandbox_nodes.start(1, NodeSpec(users=(User("deploy", "nopasswd"),)))
    trust(nodes, tmp_path / "known_hosts")
    site = make_site(nodes, tmp_path, ssh_client_key, ssh={"user": "deploy"})
    ctx = stage_context(site)
    changes = node_prep.apply(ctx)
    assert "root via nopasswd" in os_detail(changes, nodes[0])
    storage.apply(ctx)  # writes as root through sudo -n
    workspace = nodes[0].path("/data/k8s/kubeflow/pipeline/workspace")
    assert workspace.is_dir() and workspace.stat().st_uid == 0


def test_non_root_user_with_sudo_password_writes_exact_content(sandbox_nodes, tmp_path,
                                                               ssh_client_key):
    """The sudo password is read by sudo alone: the script and file content after it stay intact."""
    nodes = sandbox_nodes.start(1, NodeSpec(users=(User("ops", "password", SUDO_PASSWORD),)))
    trust(nodes, tmp_path / "known_hosts")
    site = make_site(nodes, tmp_path, ssh_client_key, ssh={"user": "ops", "sudo_password": SUDO_PASSWORD},
                     storage={"type": "cephfs", "monitors": ["10.0.0.31:6789"], "secret": "AQBsecret=="})
    ctx = stage_context(site)
    assert "root via password" in os_detail(node_prep.apply(ctx), nodes[0])
    storage.apply(ctx)
    secret = nodes[0].path("/etc/ceph/admin.secret")
    assert secret.read_bytes() == b"AQBsecret==\n"
    assert (secret.stat().st_uid, oct(secret.stat().st_mode & 0o777)) == (0, "0o600")
    assert not nodes[0].path("/tmp/sudo-canary").exists()
    assert SUDO_PASSWORD not in ctx.out.stream.getvalue()


def test_sudo_that_needs_a_password_nobody_gave(sandbox_nodes, tmp_path, ssh_client_key):
    nodes = sandbox_nodes.start(1, NodeSpec(users=(User("ops", "password", SUDO_PASSWORD),)))
    trust(nodes, tmp_path / "known_hosts")
    site = make_site(nodes, tmp_path, ssh_client_key, ssh={"user": "ops"})
    with pytest.raises(StageFailed, match="sudo for ops needs a password") as failure:
        node_prep.apply(stage_context(site))
    assert "sudo_password" in str(failure.value)


def test_wrong_sudo_password_is_refused_and_masked(sandbox_nodes, tmp_path, ssh_client_key):
    nodes = sandbox_nodes.start(1, NodeSpec(users=(User("ops", "password", SUDO_PASSWORD),)))
    trust(nodes, tmp_path / "known_hosts")
    site = make_site(nodes, tmp_path, ssh_client_key,
                     ssh={"user": "ops", "sudo_password": "not-the-sudo-pw"})
    with pytest.raises(StageFailed, match="sudo refused the sudo_password") as failure:
        node_prep.apply(stage_context(site))
    assert "not-the-sudo-pw" not in str(failure.value)


def test_unknown_host_is_refused_with_its_fingerprint(sandbox_nodes, tmp_path, ssh_client_key):
    nodes = sandbox_nodes.start(1)
    site = make_site(nodes, tmp_path, ssh_client_key)
    with pytest.raises(StageFailed) as failure:
        node_prep.apply(stage_context(site))
    message = str(failure.value)
    assert "host key not in known_hosts" in message and nodes[0].name in message
    assert fingerprint(nodes[0]) in message
    assert "--trust-new-hosts" in message
    assert not (tmp_path / "known_hosts").exists()  # nothing recorded without the flag
    assert nodes[0].shim_calls() == []  # and nothing ran on the host


def test_trust_on_first_use_records_the_key(sandbox_nodes, tmp_path, ssh_client_key):
    nodes = sandbox_nodes.start(2)
    site = make_site(nodes, tmp_path, ssh_client_key)
    node_prep.apply(stage_context(site, trust_new_hosts=True))
    recorded = (tmp_path / "known_hosts").read_text()
    assert sorted(recorded.splitlines()) == sorted(n.known_hosts_entry().strip() for n in nodes)
    node_prep.apply(stage_context(site))  # verified against the recorded keys from now on
    assert (tmp_path / "known_hosts").read_text() == recorded


def test_changed_host_key_is_refused_even_when_trusting_new_hosts(sandbox_nodes, tmp_path,
                                                                  ssh_client_key):
    [node] = sandbox_nodes.start(1)
    trust([node], tmp_path / "known_hosts")
    node = sandbox_nodes.restart(node)  # same address and port, a new host key
    before = (tmp_path / "known_hosts").read_text()
    site = make_site([node], tmp_path, ssh_client_key)
    with pytest.raises(StageFailed, match="HOST KEY CHANGED") as failure:
        node_prep.apply(stage_context(site, trust_new_hosts=True))
    assert fingerprint(node) in str(failure.value)
    assert (tmp_path / "known_hosts").read_text() == before
    assert node.shim_calls() == []
    # the hint's command removes exactly that entry: it names the host as known_hosts does
    import re
    import shlex
    [command] = re.findall(r"ssh-keygen -R .*", str(failure.value))
    subprocess.run(shlex.split(command), check=True, capture_output=True)
    assert (tmp_path / "known_hosts").read_text().strip() == ""


def test_one_host_down_the_others_finish(sandbox_nodes, tmp_path, ssh_client_key):
    nodes = sandbox_nodes.start(3, NodeSpec(swap=True))
    trust(nodes, tmp_path / "known_hosts")
    nodes[1].stop()
    ctx = stage_context(make_site(nodes, tmp_path, ssh_client_key))
    with pytest.raises(StageFailed) as failure:
        node_prep.apply(ctx)
    message = str(failure.value)
    assert "1 of 3 hosts failed" in message
    assert f"{nodes[1].name} (root@{nodes[1].address}:{nodes[1].port}): cannot connect" in message
    assert nodes[0].name + " (" not in message and nodes[2].name + " (" not in message
    for done in (nodes[0], nodes[2]):
        assert done.read("/etc/fstab").endswith(b"#/swapfile none swap sw 0 0\n")
    [table] = [e for e in ctx.out.events if e["event"] == "table"]
    assert [row[:2] for row in table["rows"]] == [
        [nodes[0].name, "changed"], [nodes[1].name, "failed"], [nodes[2].name, "changed"]]
    # each host's result is said when it finishes, before the table of all of them
    done = [(i, e) for i, e in enumerate(ctx.out.events) if e["event"] == "host-done"]
    assert {e["host"]: e["failed"] for _, e in done} == {
        nodes[0].name: False, nodes[1].name: True, nodes[2].name: False}
    assert max(i for i, _ in done) < ctx.out.events.index(table)
    assert any(e["message"].startswith(f"  ✖ {nodes[1].name}: failed:") for _, e in done)


def test_connect_timeout_on_a_silent_server(sandbox_nodes, tmp_path, ssh_client_key):
    """A host that accepts TCP but never speaks SSH fails within ssh.connect_timeout."""
    [node] = sandbox_nodes.start(1)
    with socket.socket() as silent:  # the kernel completes the handshake; nobody answers
        silent.bind((node.address, 0))
        silent.listen(1)
        site = make_site([node], tmp_path, ssh_client_key, ssh={"connect_timeout": 1})
        quiet = site.nodes[0].model_copy(update={"port": silent.getsockname()[1]})
        started = time.monotonic()
        with pytest.raises(StageFailed, match="cannot connect"):
            node_prep.apply(stage_context(site.model_copy(update={"nodes": (quiet,)})))
        assert time.monotonic() - started < 10


def one_node_pool(sandbox_nodes, tmp_path, ssh_client_key, **ssh) -> tuple:
    """(site, pool) for one trusted sandbox node."""
    [node] = sandbox_nodes.start(1)
    trust([node], tmp_path / "known_hosts")
    site = make_site([node], tmp_path, ssh_client_key, ssh=ssh)
    return site, ConnectionPool(site, trust_new_hosts=False)


def test_command_timeout(sandbox_nodes, tmp_path, ssh_client_key):
    site, pool = one_node_pool(sandbox_nodes, tmp_path, ssh_client_key, command_timeout=1)
    try:
        connection = pool.get(site.nodes[0])
        started = time.monotonic()
        with pytest.raises(HostError, match="command timed out after 1s"):
            connection.run("sleep 20")
        assert time.monotonic() - started < 5
        assert connection.run("echo still usable").stdout == "still usable\n"
    finally:
        pool.close()


def test_ssh_config_alias_and_proxy_jump(sandbox_nodes, tmp_path, ssh_client_key):
    jump, target = sandbox_nodes.start(2)
    (tmp_path / "ssh_config").write_text(
        f"Host inner\n  HostName {target.address}\n  Port {target.port}\n  User root\n"
        f"  ProxyJump root@{jump.address}:{jump.port}\n")
    site = make_site([target], tmp_path, ssh_client_key)
    site = site.model_copy(update={"nodes": (site.nodes[0].model_copy(
        update={"ssh_alias": "inner", "address": "192.0.2.99", "port": None}),)})
    ssh = site.ssh.model_copy(update={"user": "root"})
    site = site.model_copy(update={"ssh": ssh})
    trust([target], tmp_path / "known_hosts")
    # The jump host is verified too: the connection really goes through it.
    with pytest.raises(StageFailed, match="jump host root@"):
        node_prep.apply(stage_context(site))
    trust([jump], tmp_path / "known_hosts")
    changes = node_prep.apply(stage_context(site))
    assert "root via root" in os_detail(changes, target)


def test_a_background_child_writing_late_never_leaks_into_the_next_script(
        sandbox_nodes, tmp_path, ssh_client_key):
    """A child keeps the shell's stdout and stderr and writes after its script ended: the
    next script reads exactly its own output, at once (the late lines stand before its
    begin marker). A child still writing WHILE another script runs shares its stream: that
    cannot be told apart, and no node stage leaves such a child."""
    site, pool = one_node_pool(sandbox_nodes, tmp_path, ssh_client_key, command_timeout=5)
    try:
        connection = pool.get(site.nodes[0])
        first = connection.run("( for i in 1 2 3; do sleep 0.1; echo late-out; echo late-err >&2;"
                               " done ) & echo first")
        assert (first.stdout, first.exit_code) == ("first\n", 0)
        time.sleep(0.8)  # the child wrote everything and ended
        started = time.monotonic()
        result = connection.run("echo second; echo second-err >&2")
        assert (result.stdout, result.stderr) == ("second\n", "second-err\n")
        assert time.monotonic() - started < 2
    finally:
        pool.close()
