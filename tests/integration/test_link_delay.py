"""The sandbox nodes' opt-in network round trip (tests/servers/link_delay.py).

What bench_nodes relies on: the delay is really there (a lower bound, which a
busy machine can only make larger), SSH works through it, it touches only the
nodes it was given, and no rule or process outlives it, even when the process
that set it up is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cubeinstall.remote.pool import pool_for
from tests.servers.link_delay import CHAIN_PREFIX, LinkDelay, connect_seconds
from tests.servers.sshd import NodeFactory, make_site, stage_context, trust

pytestmark = pytest.mark.ssh

REPO = Path(__file__).resolve().parents[2]


def delay_rules() -> str:
    listing = subprocess.run(["iptables", "-w", "-t", "raw", "-S"], capture_output=True, text=True,
                             check=True).stdout
    return "\n".join(line for line in listing.splitlines() if CHAIN_PREFIX in line)


def test_nodes_of_a_delayed_factory_are_a_round_trip_away_and_nothing_outlives_it(
        tmp_path, ssh_client_key, sandbox_nodes):
    factory = NodeFactory(tmp_path / "delayed", ssh_client_key, rtt_ms=60)
    try:
        [node] = factory.start(1)
        [near] = sandbox_nodes.start(1)  # same machine, no delay asked for
        assert min(connect_seconds(node.address, node.port) for _ in range(3)) >= 0.060
        rules = delay_rules()
        assert f"--dport {node.port}" in rules and f"--sport {node.port}" in rules
        assert str(near.port) not in rules

        trust([node], tmp_path / "known_hosts")
        ctx = stage_context(make_site([node], tmp_path, ssh_client_key))
        result = pool_for(ctx).get(ctx.site.nodes[0]).run("hostname")
        assert (result.exit_code, result.stdout.strip()) == (0, node.name)
        pool_for(ctx).close()
    finally:
        factory.stop_all()
    assert factory.link_delay.chain not in delay_rules()
    process = factory.link_delay.process
    assert process.poll() is not None


def test_rules_of_a_killed_process_are_removed_by_the_next_delay(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from tests.servers.link_delay import LinkDelay
        LinkDelay(10, Path({str(tmp_path / 'killed.log')!r})).add("127.0.0.9", 9)
        print("ready", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout.readline().strip() == "ready"
        assert f"{CHAIN_PREFIX}{child.pid}-" in delay_rules()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert f"{CHAIN_PREFIX}{child.pid}-" in delay_rules()  # nobody was left to remove it

    LinkDelay(10, tmp_path / "next.log").close()
    assert f"{CHAIN_PREFIX}{child.pid}-" not in delay_rules()
