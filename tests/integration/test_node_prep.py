"""node-prep on real sshd nodes: swap, firewall, clock, idempotence, plan."""

from __future__ import annotations

import pytest

from cubeinstall.stages import node_prep
from tests.servers.sshd import NodeSpec, make_site, snapshot, stage_context, trust

pytestmark = pytest.mark.ssh

UNTIDY = NodeSpec(swap=True, ntp_synchronized=False, active_units=("docker", "firewalld"))


def warnings(ctx) -> list[str]:
    return [e["message"] for e in ctx.out.events if e["event"] == "warning"]


def test_swap_off_firewall_disabled_then_unchanged(sandbox_nodes, tmp_path):
    nodes = sandbox_nodes.start(2, UNTIDY)
    trust(nodes, tmp_path / "known_hosts")
    site = make_site(nodes, tmp_path, sandbox_nodes.client_key,
                     node_prep={"firewall": "disable"})
    ctx = stage_context(site)
    node_prep.apply(ctx)
    for node in nodes:
        assert node.read("/proc/swaps").count(b"\n") == 1  # the header only: swap is off
        assert b"\n#/swapfile none swap sw 0 0\n" in node.read("/etc/fstab")
        assert ["systemctl", "disable", "--now", "firewalld"] in node.shim_calls("systemctl")
        assert any(f"{node.name}: clock is not synchronised" in w for w in warnings(ctx))

    before = {n.name: snapshot(n, "/etc") for n in nodes}
    again = stage_context(site)
    changes = node_prep.apply(again)
    assert {c.action for c in changes} == {"unchanged"}
    assert not any("firewall" in w for w in warnings(again))
    for node in nodes:
        assert snapshot(node, "/etc") == before[node.name]
        assert len(node.shim_calls("swapoff")) == 1


def test_firewall_check_only_warns(sandbox_nodes, tmp_path):
    nodes = sandbox_nodes.start(1, UNTIDY)
    trust(nodes, tmp_path / "known_hosts")
    ctx = stage_context(make_site(nodes, tmp_path, sandbox_nodes.client_key))
    node_prep.apply(ctx)
    assert any("firewall firewalld is active" in w for w in warnings(ctx))
    assert not [c for c in nodes[0].shim_calls("systemctl") if "disable" in c]


def test_swap_keep_leaves_swap_alone(sandbox_nodes, tmp_path):
    nodes = sandbox_nodes.start(1, UNTIDY)
    trust(nodes, tmp_path / "known_hosts")
    fstab = nodes[0].read("/etc/fstab")
    site = make_site(nodes, tmp_path, sandbox_nodes.client_key, node_prep={"swap": "keep"})
    node_prep.apply(stage_context(site))
    assert nodes[0].read("/etc/fstab") == fstab and nodes[0].shim_calls("swapoff") == []


def test_plan_reports_and_writes_nothing(sandbox_nodes, tmp_path):
    nodes = sandbox_nodes.start(1, UNTIDY)
    trust(nodes, tmp_path / "known_hosts")
    before = snapshot(nodes[0], "/etc")
    site = make_site(nodes, tmp_path, sandbox_nodes.client_key, node_prep={"firewall": "disable"})
    changes = node_prep.plan(stage_context(site))
    actions = {c.target.split(":", 1)[1]: c.action for c in changes}
    assert actions == {"os": "unchanged", "swap": "run", "/etc/fstab": "update",
                       "firewall firewalld": "run"}
    assert snapshot(nodes[0], "/etc") == before
    assert nodes[0].shim_calls("swapoff") == [] and nodes[0].read("/proc/swaps").count(b"\n") == 2
