"""gpu-runtime on real sshd nodes: daemon.json merge, restart only on change, containerd."""

from __future__ import annotations

import json

import pytest

from cubeinstall.core.errors import StageFailed
from cubeinstall.stages import gpu_runtime
from tests.servers.sshd import NodeSpec, make_site, snapshot, stage_context, trust

pytestmark = pytest.mark.ssh

TOOLS = ("nvidia-container-runtime", "nvidia-ctk")
GPU = NodeSpec(gpus=("535.104.05,NVIDIA A100-SXM4-80GB", "535.104.05,NVIDIA A100-SXM4-80GB"),
               nvidia_tools=TOOLS)
EXISTING = {"log-driver": "json-file", "log-opts": {"max-size": "100m"},
            "insecure-registries": ["other.example.com:5000"], "data-root": "/srv/docker",
            "runtimes": {"kata": {"path": "/usr/bin/kata-runtime"}}}
REGISTRY = {"host": "harbor.example.com:5000", "insecure": True}
CONTAINERD_CONFIG = b'version = 2\n\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "pause:3.9"\n'
CONTAINERD = NodeSpec(gpus=GPU.gpus, nvidia_tools=TOOLS, active_units=("containerd",),
                      files={"/etc/containerd/config.toml": CONTAINERD_CONFIG})


def gpu_site(sandbox_nodes, tmp_path, spec=GPU, cpu_nodes=0, **site):
    gpus = sandbox_nodes.start(1, spec, prefix="gpu")
    cpus = sandbox_nodes.start(cpu_nodes, prefix="cpu") if cpu_nodes else []
    trust(gpus + cpus, tmp_path / "known_hosts")
    data_site = make_site(gpus + cpus, tmp_path, sandbox_nodes.client_key, **site)
    nodes = tuple(n.model_copy(update={"roles": ("gpu", "train")}) if n.name.startswith("gpu")
                  else n for n in data_site.nodes)
    return gpus[0], cpus, data_site.model_copy(update={"nodes": nodes})


def restarts(node, unit: str) -> int:
    return sum(1 for call in node.shim_calls("systemctl") if call[1:] == ["restart", unit])


def test_daemon_json_merged_restart_once_then_nothing(sandbox_nodes, tmp_path, round_trips):
    spec = NodeSpec(gpus=GPU.gpus, nvidia_tools=TOOLS,
                    files={"/etc/docker/daemon.json": json.dumps(EXISTING).encode()})
    node, cpus, site = gpu_site(sandbox_nodes, tmp_path, spec, cpu_nodes=1, registry=REGISTRY)
    changes = gpu_runtime.apply(stage_context(site))
    merged = json.loads(node.read("/etc/docker/daemon.json"))
    assert merged == {**EXISTING,  # insecure-registries untouched: registry-trust owns it
                      "runtimes": {"kata": {"path": "/usr/bin/kata-runtime"},
                                   "nvidia": {"path": "/usr/bin/nvidia-container-runtime",
                                              "runtimeArgs": []}},
                      "default-runtime": "nvidia"}
    assert restarts(node, "docker") == 1
    [gpu] = [c for c in changes if c.target == f"{node.name}:gpu"]
    assert gpu.detail.startswith("driver 535.104.05, 2 GPU(s)")
    assert cpus[0].shim_calls() == []  # CPU nodes are not touched
    assert [c for c in changes if c.target.startswith(cpus[0].name)] == []

    assert round_trips[node.name] == 2  # read; write, restart and ask docker again

    before = snapshot(node, "/etc/docker")
    second = gpu_runtime.apply(stage_context(site))
    assert {c.action for c in second} == {"unchanged"}
    assert restarts(node, "docker") == 1
    assert round_trips[node.name] == 3  # a host with nothing to change: one round trip
    assert snapshot(node, "/etc/docker") == before  # same inode, mtime, bytes; no backup


def test_invalid_daemon_json_is_refused_and_left_byte_identical(sandbox_nodes, tmp_path):
    broken = b'{\n  "log-driver": "json-file",\n}\n'
    spec = NodeSpec(gpus=GPU.gpus, nvidia_tools=TOOLS, files={"/etc/docker/daemon.json": broken})
    node, _, site = gpu_site(sandbox_nodes, tmp_path, spec)
    before = snapshot(node, "/etc/docker")
    with pytest.raises(StageFailed, match="daemon.json is not valid JSON") as failure:
        gpu_runtime.apply(stage_context(site))
    assert "left unchanged" in str(failure.value)
    assert node.read("/etc/docker/daemon.json") == broken
    assert snapshot(node, "/etc/docker") == before
    assert restarts(node, "docker") == 0


def test_docker_not_yet_running_with_the_file_is_restarted(sandbox_nodes, tmp_path):
    """daemon.json already right but docker still runs the old config: restart, once."""
    node, _, site = gpu_site(sandbox_nodes, tmp_path)
    gpu_runtime.apply(stage_context(site))
    node.write("/run/cubeinstall-shims/docker-running.json", b"{}")  # e.g. edited by hand, no restart
    changes = gpu_runtime.apply(stage_context(site))
    [restart] = [c for c in changes if c.target == f"{node.name}:docker"]
    assert "not running with the nvidia runtime" in restart.detail
    assert restarts(node, "docker") == 2


def test_plan_writes_nothing(sandbox_nodes, tmp_path):
    node, _, site = gpu_site(sandbox_nodes, tmp_path, registry=REGISTRY)
    changes = gpu_runtime.plan(stage_context(site))
    [daemon] = [c for c in changes if c.target.endswith(":/etc/docker/daemon.json")]
    assert daemon.action == "create" and '"default-runtime": "nvidia"' in daemon.diff
    assert not node.path("/etc/docker/daemon.json").exists()
    assert restarts(node, "docker") == 0


def test_containerd_via_nvidia_ctk(sandbox_nodes, tmp_path):
    config = CONTAINERD_CONFIG
    node, _, site = gpu_site(sandbox_nodes, tmp_path, CONTAINERD, runtime="containerd")
    gpu_runtime.apply(stage_context(site))
    text = node.read("/etc/containerd/config.toml").decode()
    assert text.startswith(config.decode()) and 'default_runtime_name = "nvidia"' in text
    assert len(node.shim_calls("nvidia-ctk")) == 1 and restarts(node, "containerd") == 1
    assert [p.name for p in node.path("/etc/containerd").glob("config.toml.cubeinstall-*.bak")]

    before = snapshot(node, "/etc/containerd")
    assert {c.action for c in gpu_runtime.apply(stage_context(site))} == {"unchanged"}
    assert len(node.shim_calls("nvidia-ctk")) == 1 and restarts(node, "containerd") == 1
    assert snapshot(node, "/etc/containerd") == before


def test_containerd_without_nvidia_ctk_is_a_clear_error(sandbox_nodes, tmp_path):
    spec = NodeSpec(gpus=GPU.gpus, nvidia_tools=("nvidia-container-runtime",))
    node, _, site = gpu_site(sandbox_nodes, tmp_path, spec, runtime="containerd")
    with pytest.raises(StageFailed, match="nvidia-ctk not found") as failure:
        gpu_runtime.apply(stage_context(site))
    assert "nvidia-container-toolkit" in str(failure.value)
    assert restarts(node, "containerd") == 0


@pytest.mark.parametrize("spec, message", [
    (NodeSpec(nvidia_tools=TOOLS), "nvidia-smi does not answer"),
    (NodeSpec(gpus=GPU.gpus), "nvidia-container-runtime not found"),
])
def test_missing_driver_or_runtime(sandbox_nodes, tmp_path, spec, message):
    node, _, site = gpu_site(sandbox_nodes, tmp_path, spec)
    with pytest.raises(StageFailed, match=message):
        gpu_runtime.apply(stage_context(site))
    assert not node.path("/etc/docker/daemon.json").exists()
