"""registry-trust on real sshd nodes: docker and containerd, insecure and CA, existing files
kept, restart only when a file read at start changed, a second run writes nothing, a failed
restart names the host, --restore-node-files gives the files back; and the preflight
check that every node reaches the registry, from the node."""

from __future__ import annotations

import json
import socket

import pytest

from cubeinstall.core.errors import StageFailed
from cubeinstall.remote.restore import restore_node_files
from cubeinstall.run import preflight
from cubeinstall.site.stages import get
from cubeinstall.stages import gpu_runtime, registry_trust
from tests.integration.test_node_gpu import GPU, restarts
from tests.servers.sshd import (
    SHIM_STATE,
    NodeSpec,
    make_site,
    snapshot,
    stage_context,
    trust,
)

pytestmark = pytest.mark.ssh

HOST = "harbor.example.com:5000"
INSECURE = {"host": HOST, "insecure": True}
PEM = b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
DAEMON = {"log-driver": "json-file", "insecure-registries": ["other.example.com:5000"],
          "data-root": "/srv/docker"}
CONFIG_V2 = (b'version = 2\n\n# tuned by hand\n[plugins."io.containerd.grpc.v1.cri"]\n'
             b'  sandbox_image = "pause:3.9"\n')
CONFIG_V3 = (b"version = 3\n\n[plugins.'io.containerd.cri.v1.images'.registry]\n"
             b"  # ours\n  config_path = ''\n\n[plugins.'io.containerd.cri.v1.runtime']\n"
             b"  enable_selinux = false\n")
HOSTS_TOML = f"/etc/containerd/certs.d/{HOST}/hosts.toml"
OWN_HOSTS = (b'# a mirror set up by hand\nserver = "https://harbor.example.com:5000"\n\n'
             b'[host."https://mirror.example.com"]\n  capabilities = ["pull"]\n')


def containerd_spec(**files: bytes) -> NodeSpec:
    return NodeSpec(active_units=("containerd",), files=files)


def start(sandbox_nodes, tmp_path, spec=NodeSpec(), count=1, **site):
    nodes = sandbox_nodes.start(count, spec)
    trust(nodes, tmp_path / "known_hosts")
    if "ca_file" in site.get("registry", {}):
        (tmp_path / "ca.pem").write_bytes(PEM)
    return nodes, make_site(nodes, tmp_path, sandbox_nodes.client_key, **site)


def by_target(changes) -> dict[str, tuple[str, str]]:
    return {c.target: (c.action, c.detail) for c in changes}


def assert_second_run_writes_nothing(node, site, *paths):
    before = snapshot(node, *paths)
    calls = len(node.shim_calls("systemctl"))
    assert {c.action for c in registry_trust.apply(stage_context(site))} == {"unchanged"}
    assert snapshot(node, *paths) == before  # same inodes, mtimes, bytes; no new backup
    assert len(node.shim_calls("systemctl")) == calls


# -- docker ------------------------------------------------------------------------------------

def test_docker_every_node_gets_the_insecure_registry_merged(sandbox_nodes, tmp_path, round_trips):
    spec = NodeSpec(files={"/etc/docker/daemon.json": json.dumps(DAEMON).encode()})
    nodes, site = start(sandbox_nodes, tmp_path, spec, count=2, registry=INSECURE)
    registry_trust.apply(stage_context(site))
    for node in nodes:  # CPU nodes too: every node pulls
        assert json.loads(node.read("/etc/docker/daemon.json")) == {
            **DAEMON, "insecure-registries": ["other.example.com:5000", HOST]}
        assert restarts(node, "docker") == 1
        assert json.loads(node.read(f"{SHIM_STATE}/docker-running.json"))["insecure-registries"][-1] == HOST
        assert [p.name for p in node.path("/etc/docker").glob("daemon.json.cubeinstall-*.bak")]
        assert round_trips[node.name] == 2  # read; write, restart and ask docker again

    assert_second_run_writes_nothing(nodes[0], site, "/etc/docker")
    assert round_trips[nodes[0].name] == 3  # nothing to change: one round trip


def test_docker_with_a_ca_gets_certs_d_and_no_restart(sandbox_nodes, tmp_path):
    spec = NodeSpec(files={"/etc/docker/daemon.json": json.dumps(DAEMON).encode()})
    [node], site = start(sandbox_nodes, tmp_path, spec,
                         registry={"host": HOST, "ca_file": "ca.pem"})
    changes = by_target(registry_trust.apply(stage_context(site)))
    assert node.read(f"/etc/docker/certs.d/{HOST}/ca.crt") == PEM
    assert changes[f"{node.name}:/etc/docker/certs.d/{HOST}/ca.crt"][0] == "create"
    assert json.loads(node.read("/etc/docker/daemon.json")) == DAEMON  # untouched
    assert restarts(node, "docker") == 0  # docker reads certs.d at every pull
    assert_second_run_writes_nothing(node, site, "/etc/docker")


def test_gpu_runtime_and_registry_trust_never_fight_over_daemon_json(sandbox_nodes, tmp_path):
    nodes = sandbox_nodes.start(1, NodeSpec(gpus=GPU.gpus, nvidia_tools=GPU.nvidia_tools,
                                            files={"/etc/docker/daemon.json": b'{"debug": true}'}))
    trust(nodes, tmp_path / "known_hosts")
    site = make_site(nodes, tmp_path, sandbox_nodes.client_key, registry=INSECURE)
    site = site.model_copy(update={"nodes": tuple(n.model_copy(update={"roles": ("gpu", "train")})
                                                  for n in site.nodes)})
    [node] = nodes
    gpu_runtime.apply(stage_context(site))
    registry_trust.apply(stage_context(site))
    merged = json.loads(node.read("/etc/docker/daemon.json"))
    assert merged["debug"] is True and merged["default-runtime"] == "nvidia"
    assert merged["insecure-registries"] == [HOST]
    assert restarts(node, "docker") == 2  # one per stage that changed the file

    before = snapshot(node, "/etc/docker")
    for stage in (gpu_runtime, registry_trust, gpu_runtime):
        assert {c.action for c in stage.apply(stage_context(site))} == {"unchanged"}
    assert snapshot(node, "/etc/docker") == before
    assert restarts(node, "docker") == 2


def test_plan_shows_the_diff_and_writes_nothing(sandbox_nodes, tmp_path):
    spec = NodeSpec(files={"/etc/docker/daemon.json": json.dumps(DAEMON).encode()})
    [node], site = start(sandbox_nodes, tmp_path, spec, registry=INSECURE)
    before = snapshot(node, "/etc/docker")
    changes = registry_trust.plan(stage_context(site))
    [daemon] = [c for c in changes if c.target.endswith(":/etc/docker/daemon.json")]
    assert daemon.action == "update" and f'+    "{HOST}"' in daemon.diff
    assert snapshot(node, "/etc/docker") == before and restarts(node, "docker") == 0


def test_failed_docker_restart_names_the_host_and_keeps_the_old_daemon_json(sandbox_nodes, tmp_path):
    original = json.dumps(DAEMON).encode()
    [node], site = start(sandbox_nodes, tmp_path, NodeSpec(files={"/etc/docker/daemon.json": original}),
                         registry=INSECURE)
    node.write(f"{SHIM_STATE}/fail-docker", b"")
    with pytest.raises(StageFailed, match=rf"{node.name}.*Job for docker.service failed") as failure:
        registry_trust.apply(stage_context(site))
    assert "daemon.json.cubeinstall-<UTC time>.bak" in str(failure.value)
    [backup] = node.path("/etc/docker").glob("daemon.json.cubeinstall-*.bak")
    assert backup.read_bytes() == original


def test_invalid_daemon_json_is_refused_naming_the_host(sandbox_nodes, tmp_path):
    broken = b'{"debug": true,}\n'
    [node], site = start(sandbox_nodes, tmp_path, NodeSpec(files={"/etc/docker/daemon.json": broken}),
                         registry=INSECURE)
    with pytest.raises(StageFailed, match=rf"{node.name}.*daemon.json is not valid JSON"):
        registry_trust.apply(stage_context(site))
    assert node.read("/etc/docker/daemon.json") == broken and restarts(node, "docker") == 0


# -- containerd --------------------------------------------------------------------------------

def test_containerd_insecure_config_path_and_hosts_toml(sandbox_nodes, tmp_path):
    [node], site = start(sandbox_nodes, tmp_path,
                         containerd_spec(**{"/etc/containerd/config.toml": CONFIG_V2}),
                         registry=INSECURE, runtime="containerd")
    registry_trust.apply(stage_context(site))
    config = node.read("/etc/containerd/config.toml")
    assert config == CONFIG_V2 + (b'\n[plugins."io.containerd.grpc.v1.cri".registry]\n'
                                  b'  config_path = "/etc/containerd/certs.d"\n')
    assert node.read(HOSTS_TOML).decode() == (
        f'server = "https://{HOST}"\n\n[host."https://{HOST}"]\n'
        '  capabilities = ["pull", "resolve"]\n  skip_verify = true\n\n'
        f'[host."http://{HOST}"]\n  capabilities = ["pull", "resolve"]\n')
    assert restarts(node, "containerd") == 1
    assert node.read(f"{SHIM_STATE}/containerd-running.toml") == config
    assert_second_run_writes_nothing(node, site, "/etc/containerd")


def test_containerd_ca_keeps_v3_config_and_an_existing_hosts_toml(sandbox_nodes, tmp_path):
    [node], site = start(sandbox_nodes, tmp_path,
                         containerd_spec(**{"/etc/containerd/config.toml": CONFIG_V3,
                                            HOSTS_TOML: OWN_HOSTS}),
                         registry={"host": HOST, "ca_file": "ca.pem"}, runtime="containerd")
    node.write(f"{SHIM_STATE}/containerd-running.toml", CONFIG_V3)  # containerd 2.x at boot
    registry_trust.apply(stage_context(site))
    assert node.read("/etc/containerd/config.toml") == CONFIG_V3.replace(
        b"config_path = ''", b'config_path = "/etc/containerd/certs.d"')
    directory = f"/etc/containerd/certs.d/{HOST}"
    assert node.read(f"{directory}/ca.crt") == PEM
    assert node.read(HOSTS_TOML).decode() == OWN_HOSTS.decode() + (
        f'\n[host."https://{HOST}"]\n  capabilities = ["pull", "resolve"]\n'
        f'  ca = "{directory}/ca.crt"\n')
    assert [p.name for p in node.path(directory).glob("hosts.toml.cubeinstall-*.bak")]
    assert restarts(node, "containerd") == 1
    assert_second_run_writes_nothing(node, site, "/etc/containerd")


def test_containerd_only_hosts_toml_changed_no_restart(sandbox_nodes, tmp_path):
    """config_path already set and running: a new hosts.toml is read at the next pull."""
    ready = CONFIG_V2 + b'  [plugins."io.containerd.grpc.v1.cri".registry]\n    config_path = "/etc/containerd/certs.d"\n'
    [node], site = start(sandbox_nodes, tmp_path,
                         containerd_spec(**{"/etc/containerd/config.toml": ready}),
                         registry=INSECURE, runtime="containerd")
    node.write(f"{SHIM_STATE}/containerd-running.toml", ready)
    changes = by_target(registry_trust.apply(stage_context(site)))
    assert changes[f"{node.name}:{HOSTS_TOML}"][0] == "create"
    assert changes[f"{node.name}:/etc/containerd/config.toml"][0] == "unchanged"
    assert node.read("/etc/containerd/config.toml") == ready
    assert restarts(node, "containerd") == 0


def test_invalid_config_toml_is_refused_naming_the_host(sandbox_nodes, tmp_path):
    broken = b'version = 2\n[plugins."io.containerd.grpc.v1.cri"\n'
    [node], site = start(sandbox_nodes, tmp_path,
                         containerd_spec(**{"/etc/containerd/config.toml": broken}),
                         registry=INSECURE, runtime="containerd")
    before = snapshot(node, "/etc/containerd")
    with pytest.raises(StageFailed, match=rf"{node.name}.*config.toml is not valid TOML") as failure:
        registry_trust.apply(stage_context(site))
    assert "left unchanged" in str(failure.value)
    assert snapshot(node, "/etc/containerd") == before and restarts(node, "containerd") == 0


def test_failed_restart_names_the_host_and_keeps_the_old_file(sandbox_nodes, tmp_path):
    [node], site = start(sandbox_nodes, tmp_path,
                         containerd_spec(**{"/etc/containerd/config.toml": CONFIG_V2}),
                         registry=INSECURE, runtime="containerd")
    node.write(f"{SHIM_STATE}/fail-containerd", b"")
    with pytest.raises(StageFailed) as failure:
        registry_trust.apply(stage_context(site))
    message = str(failure.value)
    assert node.name in message and "Job for containerd.service failed" in message
    assert "config.toml.cubeinstall-<UTC time>.bak" in message and "--restore-node-files" in message
    [backup] = node.path("/etc/containerd").glob("config.toml.cubeinstall-*.bak")
    assert backup.read_bytes() == CONFIG_V2

    # Fixed: the next run restarts (the file is right, containerd does not run with it yet).
    node.path(f"{SHIM_STATE}/fail-containerd").unlink()
    changes = by_target(registry_trust.apply(stage_context(site)))
    assert "not running with /etc/containerd/certs.d yet" in changes[f"{node.name}:containerd"][1]
    assert restarts(node, "containerd") == 2  # the failed attempt, then this one
    assert node.read(f"{SHIM_STATE}/containerd-running.toml") == node.read("/etc/containerd/config.toml")


def test_restore_node_files_gives_config_and_hosts_toml_back(sandbox_nodes, tmp_path):
    [node], site = start(sandbox_nodes, tmp_path,
                         containerd_spec(**{"/etc/containerd/config.toml": CONFIG_V2,
                                            HOSTS_TOML: OWN_HOSTS}),
                         registry=INSECURE, runtime="containerd")
    registry_trust.apply(stage_context(site))
    assert node.read(HOSTS_TOML) != OWN_HOSTS

    restored = by_target(restore_node_files(stage_context(site), write=True))
    assert restored[f"{node.name}:/etc/containerd/config.toml"][0] == "update"
    action, detail = restored[f"{node.name}:{HOSTS_TOML}"]
    assert action == "update" and "restarted" not in detail  # re-read at every pull
    assert node.read("/etc/containerd/config.toml") == CONFIG_V2
    assert node.read(HOSTS_TOML) == OWN_HOSTS
    again = by_target(restore_node_files(stage_context(site), write=True))
    assert again[f"{node.name}:{HOSTS_TOML}"][0] == "unchanged"


# -- preflight: every node reaches the registry, from the node ----------------------------------

def test_preflight_registry_reachable_from_every_node(sandbox_nodes, tmp_path):
    with socket.socket() as listening, socket.socket() as closed:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        nodes, site = start(sandbox_nodes, tmp_path, count=2,
                            registry={"host": f"127.0.0.1:{listening.getsockname()[1]}",
                                      "insecure": True})
        stages = [get("registry-trust")]
        found = list(preflight.registry_reachable(stage_context(site), stages))
        assert [(f.grade, f.message) for f in found] == [
            ("ok", f"every node reaches registry 127.0.0.1:{listening.getsockname()[1]}")]

        port = closed.getsockname()[1]
        down = site.model_copy(update={"registry": site.registry.model_copy(
            update={"host": f"127.0.0.1:{port}"})})
        found = list(preflight.registry_reachable(stage_context(down), stages))
        assert [(f.grade, f.message) for f in found] == [
            ("error", f"node {node.name}: cannot connect to 127.0.0.1:{port}: Connection refused")
            for node in nodes]
    assert "registry-reachable" in preflight.CHECK_IDS
