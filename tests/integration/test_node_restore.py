"""uninstall --restore-node-files on real sshd nodes: each edited file back as it was
before cubeinstall first changed it, its service restarted, and a second run unchanged."""

from __future__ import annotations

import json

import pytest

from cubeinstall.remote.restore import restore_node_files
from cubeinstall.stages import gpu_runtime
from tests.integration.test_node_gpu import (
    CONTAINERD,
    CONTAINERD_CONFIG,
    EXISTING,
    GPU,
    TOOLS,
    gpu_site,
    restarts,
)
from tests.servers.sshd import SHIM_STATE, NodeSpec, snapshot, stage_context

pytestmark = pytest.mark.ssh


def by_target(changes) -> dict[str, tuple[str, str]]:
    return {c.target: (c.action, c.detail) for c in changes}


def test_daemon_json_given_back_docker_restarted_then_nothing(sandbox_nodes, tmp_path):
    original = json.dumps(EXISTING).encode()
    spec = NodeSpec(gpus=GPU.gpus, nvidia_tools=TOOLS,
                    files={"/etc/docker/daemon.json": original})
    node, _, site = gpu_site(sandbox_nodes, tmp_path, spec, registry={"host": "r.example.com:5000",
                                                                       "insecure": True})
    gpu_runtime.apply(stage_context(site))
    assert node.read("/etc/docker/daemon.json") != original
    assert restarts(node, "docker") == 1

    planned = by_target(restore_node_files(stage_context(site, dry_run=True), write=False))
    assert planned[f"{node.name}:/etc/docker/daemon.json"][0] == "update"
    assert node.read("/etc/docker/daemon.json") != original  # a plan writes nothing

    restored = by_target(restore_node_files(stage_context(site), write=True))
    action, detail = restored[f"{node.name}:/etc/docker/daemon.json"]
    assert action == "update" and "daemon.json.cubeinstall-" in detail and "docker restarted" in detail
    assert node.read("/etc/docker/daemon.json") == original
    assert restarts(node, "docker") == 2
    assert node.read(f"{SHIM_STATE}/docker-running.json") == original

    before = snapshot(node, "/etc/docker")
    again = by_target(restore_node_files(stage_context(site), write=True))
    assert again[f"{node.name}:/etc/docker/daemon.json"][0] == "unchanged"
    assert restarts(node, "docker") == 2
    assert snapshot(node, "/etc/docker") == before


def test_containerd_config_given_back_and_containerd_restarted(sandbox_nodes, tmp_path):
    config = CONTAINERD_CONFIG
    node, _, site = gpu_site(sandbox_nodes, tmp_path, CONTAINERD, runtime="containerd")
    gpu_runtime.apply(stage_context(site))
    assert node.read("/etc/containerd/config.toml") != config
    assert restarts(node, "containerd") == 1

    restored = by_target(restore_node_files(stage_context(site), write=True))
    assert restored[f"{node.name}:/etc/containerd/config.toml"][0] == "update"
    assert node.read("/etc/containerd/config.toml") == config
    assert restarts(node, "containerd") == 2
    assert node.read(f"{SHIM_STATE}/containerd-running.toml") == config


def test_the_oldest_backup_wins_even_two_made_in_one_second(sandbox_nodes, tmp_path):
    """node-prep and storage may both back fstab up within one second ("<stamp>.bak", then
    "<stamp>-1.bak"); the host's own version is the first. The file replaced by the
    restore is itself backed up."""
    node, _, site = gpu_site(sandbox_nodes, tmp_path)
    stamp = "/etc/fstab.cubeinstall-20260101T000000Z"
    node.write(f"{stamp}.bak", b"# the host's own fstab\n")
    node.write(f"{stamp}-1.bak", b"# after node-prep\n")
    node.write("/etc/fstab", b"# after storage\n")

    restored = by_target(restore_node_files(stage_context(site), write=True))
    assert restored[f"{node.name}:/etc/fstab"] == ("update", f"restored from {stamp}.bak")
    assert node.read("/etc/fstab") == b"# the host's own fstab\n"
    backups = {p.name: p.read_bytes() for p in node.path("/etc").glob("fstab.cubeinstall-*.bak")}
    assert len(backups) == 3 and b"# after storage\n" in backups.values()
