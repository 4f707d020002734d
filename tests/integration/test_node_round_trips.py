"""What the node stages ask of each host, counted on real sshd nodes (counts, not timings).

Each SSH session costs the host a session process, a login shell, ``sh`` and (for
other users) ``sudo``; each round trip a script. A run connects once per host and
sends every script to one shell; a stage that finds nothing to change makes one
round trip per host.
"""

from __future__ import annotations

from collections import Counter

import pytest

from cubeinstall.remote.pool import ConnectionPool, pool_for
from cubeinstall.stages import node_prep, storage
from tests.servers.sshd import NodeSpec, User, make_site, snapshot, stage_context, trust

pytestmark = pytest.mark.ssh

CEPH = {"type": "cephfs", "monitors": ["10.0.0.31:6789"], "user": "admin", "secret": "AQBkey=="}


def run_stages(site, round_trips: Counter) -> dict[str, Counter]:
    """node-prep then storage in one run context (one connection per host, as the CLI)."""
    ctx = stage_context(site)
    per_stage = {}
    for name, stage in (("node-prep", node_prep), ("storage", storage)):
        before = Counter(round_trips)
        stage.apply(ctx)
        per_stage[name] = round_trips - before
    pool_for(ctx).close()
    return per_stage


def test_a_run_is_one_session_per_host_and_a_no_op_run_one_round_trip_per_stage(
        sandbox_nodes, tmp_path, round_trips):
    nodes = sandbox_nodes.start(2, NodeSpec(swap=True, log_sessions=True))
    trust(nodes, tmp_path / "known_hosts")
    site = make_site(nodes, tmp_path, sandbox_nodes.client_key, storage=CEPH)
    names = [n.name for n in nodes]

    first = run_stages(site, round_trips)
    # node-prep: read, change; storage: read, files + fstab + mount, directories.
    assert all(first["node-prep"][n] <= 2 and first["storage"][n] <= 3 for n in names), first
    assert [n.sessions() for n in nodes] == [1, 1]

    before = {n.name: snapshot(n, "/etc", "/data/k8s", skip=("/data/k8s",)) for n in nodes}
    again = run_stages(site, round_trips)
    assert again == {"node-prep": Counter({n: 1 for n in names}),
                     "storage": Counter({n: 1 for n in names})}
    assert [n.sessions() for n in nodes] == [2, 2]  # the second run's connection: one more
    assert {n.name: snapshot(n, "/etc", "/data/k8s", skip=("/data/k8s",)) for n in nodes} == before


def test_a_sudo_user_needs_one_sudo_shell_per_run(sandbox_nodes, tmp_path, round_trips):
    [node] = sandbox_nodes.start(1, NodeSpec(users=(User("deploy"),), log_sessions=True))
    trust([node], tmp_path / "known_hosts")
    site = make_site([node], tmp_path, sandbox_nodes.client_key, ssh={"user": "deploy"})
    run_stages(site, round_trips)
    again = run_stages(site, round_trips)
    assert again["node-prep"][node.name] == 1 and again["storage"][node.name] == 1
    # Per run one session: it finds out how to become root and is the shell behind sudo.
    assert node.sessions() == 2


def test_one_shell_runs_every_script_of_a_connection(sandbox_nodes, tmp_path, ssh_client_key):
    [node] = sandbox_nodes.start(1, NodeSpec(log_sessions=True))
    trust([node], tmp_path / "known_hosts")
    pool = ConnectionPool(make_site([node], tmp_path, ssh_client_key), trust_new_hosts=False)
    try:
        connection = pool.get(make_site([node], tmp_path, ssh_client_key).nodes[0])
        shell_pid = connection.run("echo $$").stdout
        assert connection.run("exit 7").exit_code == 7  # ends its subshell, not the shell
        broken = connection.run("if then fi")
        assert broken.exit_code != 0 and "then" in broken.stderr
        assert connection.run("cat; echo after").stdout == "after\n"  # cannot read what follows
        exact = connection.run("printf 'no newline'; printf 'to stderr' >&2")
        assert (exact.stdout, exact.stderr, exact.exit_code) == ("no newline", "to stderr", 0)
        assert connection.run("echo $$").stdout == shell_pid  # the same shell throughout
        assert node.sessions() == 1
    finally:
        pool.close()
