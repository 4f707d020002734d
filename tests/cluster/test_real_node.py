"""The real node of the test cluster: a kubelet and containerd that really run pods.

Against ``real_node_cluster`` (a control plane with the kwok nodes and the real
node ``real1``) and a plain-HTTP registry of the tests holding the Redis test image
(tests/cluster/testimages.py): the node registers Ready with the pinned kubelet
and containerd, a pinned pod really pulls, starts and answers through the API
server's port-forward, a bad config gives a real CrashLoopBackOff with the
server's own last log lines, and stopping a node undoes every host change.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster import build, realnode, testimages
from tests.cluster.fixtures import REAL_NODE_PIN, KubeCluster, start_control_plane
from tests.cluster.nodes import DEFAULT_NODES
from tests.servers.registry import RegistryServer, start_registry

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]

PASSWORD = "real-Node pw"


@pytest.fixture(scope="module")
def image_registry(tmp_path_factory, real_node_cluster: KubeCluster) -> RegistryServer:
    """A plain-HTTP registry with the Redis test image, trusted by the real node."""
    server = start_registry(tmp_path_factory.mktemp("real-node-registry"))
    testimages.push("redis", f"{server.host}/test/redis:7.4.6")
    real_node_cluster.control_plane.real_node.trust_registry(server.host)
    yield server
    server.stop()


def core(cluster: KubeCluster):
    from kubernetes import client

    return client.CoreV1Api(cluster.api_client())


def wait_for(condition, what: str, timeout: float = 60, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def redis_pod(name: str, image: str, args: list[str]) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {**REAL_NODE_PIN, "containers": [{
            "name": "redis", "image": image, "command": ["redis-server"], "args": args,
            "ports": [{"containerPort": 6379}],
            "readinessProbe": {"exec": {"command": ["redis-cli", "-a", PASSWORD, "ping"]},
                               "periodSeconds": 1},
        }]},
    }


def pod_phase_detail(api, name: str, namespace: str) -> str:
    pod = api.read_namespaced_pod(name, namespace)
    return f"{pod.status.phase} {pod.status.container_statuses}"


def test_the_real_node_is_ready_beside_the_kwok_nodes(real_node_cluster: KubeCluster):
    api = core(real_node_cluster)
    nodes = {n.metadata.name: n for n in api.list_node().items}
    assert set(nodes) == {"real1", *(n.name for n in DEFAULT_NODES)}
    real = nodes["real1"]
    ready = [c for c in real.status.conditions if c.type == "Ready"]
    assert ready and ready[0].status == "True", real.status.conditions
    info = real.status.node_info
    assert info.kubelet_version == build.kubernetes_version()
    assert info.container_runtime_version == f"containerd://{build.containerd_version().lstrip('v')}"
    assert real.metadata.labels[realnode.NODE_LABEL] == "true"
    assert real.metadata.labels["cubeinstall.test/role"] == "real"
    assert "kwok.x-k8s.io/node" not in (real.metadata.annotations or {})
    [address] = [a.address for a in real.status.addresses if a.type == "InternalIP"]
    assert address.startswith("203.0.113.")  # TEST-NET-3, only inside this machine
    assert [t.key for t in real.spec.taints or []] == [realnode.REAL_NODE_TAINT["key"]]


def _port_forward_exchange(cluster: KubeCluster, name: str, namespace: str, port: int,
                           data: bytes) -> bytes:
    from kubernetes.stream import portforward

    api = core(cluster)
    forward = portforward(api.connect_get_namespaced_pod_portforward, name, namespace,
                          ports=str(port))
    sock = forward.socket(port)
    sock.setblocking(True)
    sock.settimeout(10)
    try:
        sock.sendall(data)
        reply = b""
        while reply.count(b"\r\n") < data.count(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply
    finally:
        sock.close()
        forward.close()


def test_a_pinned_redis_pod_really_runs_and_answers(real_node_cluster: KubeCluster,
                                                     image_registry: RegistryServer,
                                                     real_node_namespace: str):
    api = core(real_node_cluster)
    image = f"{image_registry.host}/test/redis:7.4.6"
    api.create_namespaced_pod(real_node_namespace, redis_pod(
        "redis", image, ["--requirepass", PASSWORD, "--save", "", "--bind", "0.0.0.0"]))

    def ready():
        pod = api.read_namespaced_pod("redis", real_node_namespace)
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        return pod if conditions.get("Ready") == "True" else None

    pod = wait_for(ready, "the Redis pod to be Ready (its probe runs redis-cli in the container)",
                   timeout=90)
    assert pod.spec.node_name == "real1"
    assert pod.status.pod_ip.startswith("198.51.100.")  # the node's own bridge
    [status] = pod.status.container_statuses
    assert status.image_id.startswith(f"{image_registry.host}/test/redis@sha256:")

    # The API server -> the kubelet at 192.0.2.x:10250 -> containerd -> the pod's port.
    reply = _port_forward_exchange(real_node_cluster, "redis", real_node_namespace, 6379,
                                   b"PING\r\n" + f"AUTH \"{PASSWORD}\"\r\n".encode()
                                   + b"PING\r\n")
    assert reply.startswith(b"-NOAUTH"), reply
    assert reply.endswith(b"+OK\r\n+PONG\r\n"), reply

    log = api.read_namespaced_pod_log("redis", real_node_namespace)
    assert "Ready to accept connections" in log and "kwok" not in log


def test_a_bad_config_gives_a_real_crash_loop_with_the_servers_last_log_lines(
        real_node_cluster: KubeCluster, image_registry: RegistryServer, real_node_namespace: str):
    api = core(real_node_cluster)
    image = f"{image_registry.host}/test/redis:7.4.6"
    api.create_namespaced_pod(real_node_namespace, redis_pod("broken", image,
                                                        ["--no-such-directive", "yes"]))

    def crash_looping():
        pod = api.read_namespaced_pod("broken", real_node_namespace)
        for status in pod.status.container_statuses or []:
            waiting = status.state.waiting
            if waiting and waiting.reason == "CrashLoopBackOff" and status.restart_count >= 1:
                return status
        return None

    status = wait_for(crash_looping, "CrashLoopBackOff", timeout=90)
    assert status.last_state.terminated.exit_code == 1
    previous = api.read_namespaced_pod_log("broken", real_node_namespace, previous=True)
    assert "FATAL CONFIG FILE ERROR" in previous, previous
    assert "no-such-directive" in previous, previous
    events = api.list_namespaced_event(real_node_namespace,
                                       field_selector="involvedObject.name=broken").items
    assert any(e.reason == "BackOff" and e.source.component == "kubelet" for e in events), \
        [(e.reason, e.message) for e in events]


# --- the host after a stop ------------------------------------------------------------

SYSCTLS = [*realnode.KERNEL_TUNABLES, "net/ipv4/ip_forward"]
PATHS = ("/var/lib/kubelet", "/var/lib/containerd", "/run/containerd", "/etc/cni/net.d",
         "/var/log/pods", "/var/log/containers", "/var/lib/cni", "/data/k8s", "/run/netns")


def host_state(other: realnode.RealNode) -> dict:
    """What a node could change on the host: sysctls, firewall, links, mounts, paths,
    cgroups and processes (those of ``other``, the session's node, left out)."""
    def run(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    cgroups = set()
    for hierarchy in realnode._hierarchies():
        for directory, _, _ in os.walk(hierarchy / realnode._own_cgroup().lstrip("/")):
            if other.cgroup_root not in directory:
                cgroups.add(directory)
    tools_bin = str(build.toolset().bin_dir)
    processes = set()
    for entry in Path("/proc").iterdir():
        try:
            if (entry.name.isdigit() and os.readlink(entry / "exe").startswith(tools_bin)
                    and os.readlink(entry / "ns" / "mnt") != other._mnt_ns):
                processes.add(f"{entry.name} {os.readlink(entry / 'exe')}")
        except OSError:
            pass
    return {
        "sysctls": {name: Path(f"/proc/sys/{name}").read_text() for name in SYSCTLS},
        "iptables": [line for line in run("iptables-save").splitlines()
                     if not line.startswith("#")],
        "links": sorted(line.split(":")[1].strip() for line in run("ip", "-o", "link").splitlines()),
        "addresses": run("ip", "-o", "addr"),
        "routes": run("ip", "route"),
        "mounts": sorted(line.split()[4] for line in
                         Path("/proc/self/mountinfo").read_text().splitlines()),
        "paths": {path: os.path.lexists(path) for path in PATHS},
        "cgroups": cgroups,
        "node processes": {p for p in processes if p.rsplit("/", 1)[1] in
                           ("containerd", "containerd-shim-runc-v2", "kubelet", "pause")},
    }


def test_stop_undoes_every_host_change(tmp_path, real_node_cluster: KubeCluster,
                                       image_registry: RegistryServer):
    """A second cluster with a real node, a pod running on it, then stopped: the host is
    exactly as before (the session's own real node keeps running meanwhile)."""
    session_node = real_node_cluster.control_plane.real_node
    before = host_state(session_node)
    control_plane = start_control_plane(tmp_path / "cluster", "a second real-node cluster",
                                        nodes=(), real_node=realnode.RealNodeSpec("real2"))
    node = control_plane.real_node
    try:
        node.trust_registry(image_registry.host)
        api = core(KubeCluster(control_plane.kubeconfig, control_plane))
        pod = redis_pod("r", f"{image_registry.host}/test/redis:7.4.6",
                        ["--requirepass", PASSWORD, "--save", ""])
        pod["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "real2"}
        api.create_namespaced_pod("default", pod)
        wait_for(lambda: api.read_namespaced_pod("r", "default").status.phase == "Running",
                 "the pod on real2 to run", timeout=90)
        during = host_state(session_node)
        assert during["links"] != before["links"]  # the node's veth is there while it runs
        assert during["cgroups"] > before["cgroups"]  # and its pods' cgroups
        assert node.leftovers() != []
    finally:
        control_plane.stop()
    assert node.leftovers() == []
    after = host_state(session_node)
    assert {k: v for k, v in after.items() if v != before[k]} == {}, \
        {k: (before[k], after[k]) for k in after if after[k] != before[k]}


def test_a_node_that_cannot_start_fails_with_the_log_tail_and_leaves_nothing(
        tmp_path, real_node_cluster: KubeCluster):
    """containerd replaced by a program that fails at once: start() raises naming it,
    quoting its log, and has already undone the namespaces, veth and cgroups."""
    tools = build.toolset()
    broken = build.Toolset(tools.version, tmp_path / "tools")
    broken.bin_dir.mkdir(parents=True)
    for binary in tools.bin_dir.iterdir():
        (broken.bin_dir / binary.name).symlink_to(binary)
    (broken.bin_dir / "containerd").unlink()
    (broken.bin_dir / "containerd").write_text(
        "#!/bin/sh\necho 'containerd stand-in: cannot start (on purpose)' >&2\nexit 3\n")
    (broken.bin_dir / "containerd").chmod(0o755)
    broken.images_dir.mkdir()
    (broken.images_dir / "pause.oci.tar").symlink_to(tools.pause_archive)
    control_plane = real_node_cluster.control_plane
    node = realnode.RealNode(tmp_path / "node", realnode.RealNodeSpec("broken1"), tools=broken,
                             server=control_plane.server,
                             ca_cert=control_plane.workdir / "pki" / "ca.crt",
                             ca_key=control_plane.workdir / "pki" / "ca.key")
    with pytest.raises(realnode.RealNodeError) as failure:
        node.start(timeout=30)
    message = str(failure.value)
    assert "broken1-containerd" in message and "exited with code 3" in message, message
    assert "containerd stand-in: cannot start (on purpose)" in message, message
    assert node.leftovers() == []


KILLED_RUN = r"""
import sys, time
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/src"]
from kubernetes import client
from tests.cluster.controlplane import ControlPlane
from tests.cluster.realnode import RealNodeSpec
cp = ControlPlane(sys.argv[2], nodes=(), real_node=RealNodeSpec("killed1", taints=())).start()
api = client.CoreV1Api(cp.api_client())
api.create_namespaced_pod("default", {"metadata": {"name": "p"}, "spec": {"containers": [
    {"name": "c", "image": "127.0.0.1:9/nothing/here:1"}]}})
while not api.read_namespaced_pod("p", "default").status.pod_ip:  # its sandbox runs
    time.sleep(0.2)
print("running", flush=True)
time.sleep(600)
"""


def test_what_a_killed_run_leaves_is_swept_by_the_next_start(tmp_path,
                                                             real_node_cluster: KubeCluster):
    """A test run killed with SIGKILL: its children die with it, but a pod sandbox's shim
    holds the node's namespaces and the cgroups stay. The next node start sweeps them."""
    session_node = real_node_cluster.control_plane.real_node
    before = host_state(session_node)
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(REPO), str(tmp_path / "cp")],
                           stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert run.stdout.readline().strip() == "running"
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    left = host_state(session_node)
    assert left["cgroups"] > before["cgroups"] and left["links"] != before["links"]
    assert left["node processes"], "no shim outlived the killed run: nothing to sweep"

    removed = realnode.sweep_stale_nodes(build.toolset().bin_dir)
    assert removed, "the sweep found nothing"
    wait_for(lambda: host_state(session_node)["links"] == before["links"],
             "the killed node's veth to go with its namespaces", timeout=30)
    after = host_state(session_node)
    assert {k: (before[k], v) for k, v in after.items() if v != before[k]} == {}
