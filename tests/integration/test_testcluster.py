"""Proof that the local test control plane behaves like a real cluster.

Every later cluster test trusts this control plane: node selectors must
really decide placement, rollouts must really become Available, CRDs,
server-side apply, Jobs and namespace finalization must really work, and
stopping it must really leave nothing behind.  These tests pin that down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from cubeinstall.site.model import ROLE_PLACEMENTS
from tests.cluster import build
from tests.cluster.controlplane import STATE_FILE, ControlPlane
from tests.cluster.nodes import DEFAULT_NODES, FakeNode, node_schedulable
from tests.cluster.processes import pid_alive, wait_until

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60


@pytest.fixture(scope="module")
def api(kube_cluster):
    with kube_cluster.api_client() as api_client:
        yield api_client


# These check the local control plane itself; with CUBEINSTALL_TEST_KUBECONFIG the
# tests run against someone else's cluster, which they must not stop or restart.
local_only = pytest.mark.skipif(bool(os.environ.get("CUBEINSTALL_TEST_KUBECONFIG")),
                                reason="checks the local control plane, not an external cluster")


def wait(condition, what: str, timeout: float = TIMEOUT) -> None:
    wait_until(condition, timeout=timeout, what=what, interval=0.2)


def deployment(name: str, node_selector: dict[str, str], replicas: int = 2, **container) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": node_selector,
                    "containers": [
                        {"name": "main", "image": "registry.invalid/app:1", **container}
                    ],
                },
            },
        },
    }


@local_only
def test_version_is_the_pinned_release(kube_cluster, api):
    assert client.VersionApi(api).get_code().git_version == build.kubernetes_version()


def test_default_nodes_are_ready_with_declared_labels_and_capacity(api):
    core = client.CoreV1Api(api)
    for declared in DEFAULT_NODES:
        node = core.read_node(declared.name)
        assert node_schedulable(node), f"{declared.name} not Ready/untainted"
        assert declared.labels.items() <= node.metadata.labels.items()
        assert node.spec.provider_id == f"kwok://{declared.name}"
        assert not node.spec.taints
        for resource in ("capacity", "allocatable"):
            assert getattr(node.status, resource) == declared.resources(), resource
    gpu1 = core.read_node("gpu1")
    assert gpu1.status.capacity["nvidia.com/gpu"] == "8"
    assert gpu1.metadata.labels["org"] == "ai-lab"
    node1 = core.read_node("node1")
    for role in ROLE_PLACEMENTS:
        assert node1.metadata.labels[role] == "true"
    assert "gpu" not in core.read_node("node2").metadata.labels


def test_gpu_selector_places_pods_on_the_gpu_node(api, test_namespace):
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(
        test_namespace,
        deployment("trainer", {"gpu": "true"}, resources={"limits": {"nvidia.com/gpu": "1"}}),
    )

    def available() -> bool:
        status = apps.read_namespaced_deployment_status("trainer", test_namespace).status
        return status.available_replicas == 2 and any(
            c.type == "Available" and c.status == "True" for c in status.conditions or []
        )

    wait(available, "deployment trainer to become Available")
    pods = core.list_namespaced_pod(test_namespace, label_selector="app=trainer").items
    assert len(pods) == 2
    assert {p.spec.node_name for p in pods} == {"gpu1"}
    assert all(p.status.phase == "Running" for p in pods)


def test_unsatisfiable_selector_stays_unavailable_with_failed_scheduling(api, test_namespace):
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(
        test_namespace, deployment("nowhere", {"no-such-role": "true"}, replicas=1)
    )

    def failed_scheduling() -> list:
        events = core.list_namespaced_event(
            test_namespace, field_selector="reason=FailedScheduling"
        ).items
        return [e for e in events if e.involved_object.kind == "Pod"]

    wait(lambda: bool(failed_scheduling()), "a FailedScheduling event")
    message = failed_scheduling()[0].message
    assert "didn't match Pod's node affinity/selector" in message, message
    status = apps.read_namespaced_deployment_status("nowhere", test_namespace).status
    assert not status.available_replicas
    pods = core.list_namespaced_pod(test_namespace, label_selector="app=nowhere").items
    assert [p.status.phase for p in pods] == ["Pending"]
    assert not pods[0].spec.node_name


def test_crd_becomes_established_and_serves_custom_resources(kube_cluster, api, test_namespace):
    group = f"t{uuid.uuid4().hex[:8]}.cubeinstall.io"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "listKind": "WidgetList",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer"}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    ext = client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(crd)
    try:

        def established() -> bool:
            conditions = (
                ext.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or []
            )
            true = {c.type for c in conditions if c.status == "True"}
            return {"Established", "NamesAccepted"} <= true

        wait(established, "the CRD to be Established")
        custom = client.CustomObjectsApi(api)
        body = {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "w1"},
            "spec": {"size": 3},
        }
        # Established can precede the REST endpoint by a moment.
        wait(
            lambda: custom.create_namespaced_custom_object(
                group, "v1", test_namespace, "widgets", body
            ),
            "the custom resource to be accepted",
            timeout=15,
        )
        got = custom.get_namespaced_custom_object(group, "v1", test_namespace, "widgets", "w1")
        assert got["spec"] == {"size": 3}
        dyn = kube_cluster.dynamic_client(api)
        widgets = dyn.resources.get(api_version=f"{group}/v1", kind="Widget")
        assert [w.metadata.name for w in widgets.get(namespace=test_namespace).items] == ["w1"]
    finally:
        ext.delete_custom_resource_definition(crd["metadata"]["name"])


def test_server_side_apply_records_the_field_manager(kube_cluster, api, test_namespace):
    dyn = kube_cluster.dynamic_client(api)
    configmaps = dyn.resources.get(api_version="v1", kind="ConfigMap")
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "ssa",
            "namespace": test_namespace,
            "labels": {"app.kubernetes.io/managed-by": "cubeinstall"},
        },
        "data": {"a": "1"},
    }
    dry = configmaps.server_side_apply(body=body, field_manager="cubeinstall", dry_run="All")
    assert dry.data.a == "1"
    with pytest.raises(ApiException) as missing:
        client.CoreV1Api(api).read_namespaced_config_map("ssa", test_namespace)
    assert missing.value.status == 404, "dry-run apply must not persist"

    configmaps.server_side_apply(body=body, field_manager="cubeinstall")
    body["data"] = {"a": "2", "b": "3"}
    applied = configmaps.server_side_apply(body=body, field_manager="cubeinstall")
    assert dict(applied.data) == {"a": "2", "b": "3"}
    managers = [(m.manager, m.operation) for m in applied.metadata.managedFields]
    assert ("cubeinstall", "Apply") in managers

    # A second manager claiming the same field conflicts unless forced.
    other = {**body, "data": {"a": "9"}}
    with pytest.raises(ApiException) as conflict:
        configmaps.server_side_apply(body=other, field_manager="someone-else")
    assert conflict.value.status == 409


def test_job_runs_to_completion(api, test_namespace):
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(
        test_namespace,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "once"},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "main", "image": "registry.invalid/job:1"}],
                    }
                },
            },
        },
    )

    def complete() -> bool:
        status = batch.read_namespaced_job_status("once", test_namespace).status
        return status.succeeded == 1 and any(
            c.type == "Complete" and c.status == "True" for c in status.conditions or []
        )

    wait(complete, "job once to complete")


def test_namespace_deletion_finishes(api):
    core = client.CoreV1Api(api)
    name = f"doomed-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_config_map(name, {"metadata": {"name": "x"}, "data": {"k": "v"}})
    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait(gone, f"namespace {name} to be finalized and deleted")


@local_only
def test_add_node_with_custom_labels_and_capacity(kube_cluster, api):
    core = client.CoreV1Api(api)
    extra = FakeNode(
        "a100-1",
        labels={"gpu": "true", "gpu-type": "a100", "org": "lab2"},
        capacity={"nvidia.com/gpu": "4", "cpu": "64"},
    )
    kube_cluster.add_node(extra)
    try:
        node = core.read_node("a100-1")
        assert node_schedulable(node)
        assert node.metadata.labels["gpu-type"] == "a100"
        assert node.status.allocatable["nvidia.com/gpu"] == "4"
        assert node.status.allocatable["cpu"] == "64"
        assert node.status.allocatable["memory"] == "256Gi"
    finally:
        core.delete_node("a100-1")


def _processes_referencing(path: Path) -> list[int]:
    """PIDs of live processes whose command line mentions ``path``."""
    hits = []
    needle = str(path).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and pid_alive(int(entry.name)):
            hits.append(int(entry.name))
    return hits


@local_only
def test_stop_leaves_no_process_or_directory_behind(kube_cluster, tmp_path):
    workdir = tmp_path / "second-cluster"
    cp = ControlPlane(workdir, nodes=[FakeNode("solo", labels={"cpu": "true"})])
    try:
        cp.start()
        pids = cp.pids
        etcd_dir = cp._etcd_dir
        assert set(pids) == {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        }
        assert all(pid_alive(pid) for pid in pids.values())
        assert etcd_dir is not None and etcd_dir.is_dir()
    finally:
        cp.stop()
    assert [name for name, pid in pids.items() if pid_alive(pid)] == []
    assert _processes_referencing(workdir) == []
    assert not etcd_dir.exists()
    assert not (workdir / STATE_FILE).exists()
    # Logs stay for post-mortems when the caller owns the workdir.
    assert (workdir / "logs" / "kube-apiserver.log").stat().st_size > 0


@local_only
def test_failed_start_names_the_process_and_shows_its_log(kube_cluster, tmp_path):
    tools = build.ensure(build=False)
    broken = build.Toolset(version=tools.version, root=tools.root, etcd=Path("/bin/false"))
    cp = ControlPlane(tmp_path / "broken", nodes=(), tools=broken)
    with pytest.raises(Exception) as failure:
        cp.start()
    text = str(failure.value)
    assert "etcd: exited with code 1" in text
    assert "last 40 lines of etcd log" in text
    assert not any(cp.running().values())


@local_only
def test_testcluster_script_up_status_down(kube_cluster, tmp_path):
    script = [sys.executable, str(REPO / "scripts" / "testcluster")]
    env = {**os.environ, "CUBEINSTALL_TESTCLUSTER_RUN": str(tmp_path / "run")}

    def run(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*script, command], env=env, capture_output=True, text=True, timeout=180
        )

    try:
        up = run("up")
        assert up.returncode == 0, up.stderr
        kubeconfig = Path(up.stdout.strip())
        assert kubeconfig.is_file()
        status = run("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert (
            f"Kubernetes {build.kubernetes_version()}" in status.stdout
            and "node gpu1" in status.stdout
        )
        assert f"export KUBECONFIG={kubeconfig}" in run("env").stdout
        pids = [int(line.split()[2]) for line in status.stdout.splitlines() if " pid " in line]
        assert len(pids) == 5
    finally:
        down = run("down")
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in pids if pid_alive(p)] == []
    assert run("status").returncode == 1


@local_only
def test_hard_killed_owner_takes_the_cluster_with_it(kube_cluster, tmp_path):
    """SIGKILL of the Python process (CI cancel, OOM) must not leak a cluster."""
    code = (
        "import json, sys, time\n"
        "from tests.cluster.controlplane import ControlPlane\n"
        f"cp = ControlPlane({str(tmp_path / 'owner')!r}, nodes=()).start()\n"
        "print(json.dumps(cp.pids), flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        pids = json.loads(owner.stdout.readline())
        assert len(pids) == 5 and all(pid_alive(p) for p in pids.values())
    finally:
        owner.kill()
        owner.wait()
    wait(lambda: not any(pid_alive(p) for p in pids.values()), "orphans to die", timeout=10)
