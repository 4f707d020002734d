"""The stages whose manifests cubeinstall writes, against a real control plane (kwok nodes).

For each of dashboard, mysql, redis, efk, the prometheus stage's own objects and cube:
the rendered objects pass a server-side dry run, the stage applies and its
workloads become Available on the nodes carrying its label, a second apply
changes nothing, and uninstall removes what the stage owns (keeping data:
claims and volumes). Before them the namespaces, node-labels, pv-pvc and
kubeconfig stages run through the runner, as in a real install. Plus: MySQL
placed on a label no node carries fails its gate with a labelling hint, and
the rendered Redis configuration really makes a redis-server demand the site's
password.
The gpu stage: its DaemonSets run on the GPU node only, idempotently.
"""

from __future__ import annotations

import base64
import io
import shutil
import socket

import pytest

from cubeinstall.core.context import RunContext, RunOptions
from cubeinstall.core.errors import StageFailed
from cubeinstall.core.output import Output
from cubeinstall.core.yamlio import load_documents
from cubeinstall.kube.apply import apply_objects, plan_objects, uninstall_stage
from cubeinstall.kube.client import KubeClient
from cubeinstall.kube.errors import NotFound
from cubeinstall.kube.objects import kept_selector, stage_selector
from cubeinstall.kube.selectors import matches, selector_string
from cubeinstall.render import finalize
from cubeinstall.site import stages as registry
from cubeinstall.site.loader import load_site
from cubeinstall.site.model import Component
from cubeinstall.stages import (
    cube,
    dashboard,
    efk,
    gateway,
    gpu,
    ingress,
    load,
    mysql,
    prometheus_objects,
    redis,
)
from tests.helpers import EXAMPLE_SITE, SHARED

TIMEOUT = 120
CRDS = SHARED / "upstream/prometheus-operator/v0.93.0/example/prometheus-operator-crd"
CRD_STAGE = "test-prometheus-crds"
ISTIO_CRDS = SHARED / "upstream/istio/1.30.3/manifests/charts/base/files/crd-all.gen.yaml"
ISTIO_CRD_STAGE = "test-istio-crds"
# name in the tests -> (module, engine stage: the ownership label of a real install)
STAGES = {
    "dashboard": (dashboard, "dashboard"),
    "mysql": (mysql, "mysql"),
    "redis": (redis, "redis"),
    "efk": (efk, "efk"),
    "prometheus-objects": (prometheus_objects, "prometheus"),
    "cube": (cube, "cube"),
}
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
DATA_KINDS = {"PersistentVolume", "PersistentVolumeClaim"}


@pytest.fixture(scope="module")
def site():
    example = load_site(EXAMPLE_SITE)
    return example.model_copy(update={"timeouts": example.timeouts.model_copy(
        update={"object_seconds": TIMEOUT, "stage_seconds": 4 * TIMEOUT})})


@pytest.fixture(scope="module")
def ctx(site, kube_cluster):
    return RunContext(site, Output(json_mode=True, stream=io.StringIO()),
                      RunOptions(kubeconfig=kube_cluster.kubeconfig))


@pytest.fixture(scope="module")
def client(kube_cluster):
    return KubeClient.from_kubeconfig(kube_cluster.kubeconfig)


@pytest.fixture(scope="module")
def installed_before(ctx, client):
    """What a real install has done before these stages: namespaces, labels, volumes,
    kubeconfigs, and (from the upstream operator) the prometheus-operator CRDs."""
    for name in ("namespaces", "node-labels", "pv-pvc", "kubeconfig"):
        load(registry.get(name)).apply(ctx)
    crds = [doc for path in sorted(CRDS.glob("*.yaml")) for doc in load_documents(path.read_text())]
    assert len(crds) == 10, f"expected the 10 prometheus-operator CRDs in {CRDS}"
    apply_objects(client, CRD_STAGE, crds, timeout=TIMEOUT)
    yield
    uninstall_stage(client, CRD_STAGE, timeout=TIMEOUT)


def rendered(site, name: str) -> list[dict]:
    module, _ = STAGES[name]
    return finalize(site, module.render(site))


def live(client: KubeClient, obj: dict) -> dict:
    resource = client.resolve(obj["apiVersion"], obj["kind"])
    return client.get(resource, obj["metadata"].get("namespace"), obj["metadata"]["name"])


def owned(client: KubeClient, stage: str, selector=stage_selector) -> set[tuple[str, str]]:
    """(kind, name) of everything labelled as the stage's (or, with ``kept_selector``, kept
    by its uninstall), in every resource type."""
    result = set()
    for resource in client.listable_resources():
        if resource.kind in ("Event", "Endpoints", "EndpointSlice", "Lease", "ControllerRevision"):
            continue
        try:
            found = client.list(resource, label_selector=selector(stage))
        except NotFound:  # a CRD another test removed after discovery listed it: no objects
            continue
        for obj in found:
            if not obj["metadata"].get("ownerReferences"):
                result.add((resource.kind, obj["metadata"]["name"]))
    return result


def assert_placed(client: KubeClient, workload: dict) -> None:
    """Available, and every pod on a node whose labels satisfy the pod's node selector."""
    state = live(client, workload)
    status, kind = state.get("status") or {}, workload["kind"]
    name = f"{kind} {workload['metadata']['name']}"
    if kind == "Deployment":
        assert status.get("availableReplicas") == workload["spec"]["replicas"], name
    elif kind == "StatefulSet":
        assert status.get("readyReplicas") == workload["spec"]["replicas"], name
    else:  # a DaemonSet on every node
        assert status.get("numberAvailable") == status.get("desiredNumberScheduled") == 3, name
    pod_resource = client.resolve("v1", "Pod")
    nodes = {n["metadata"]["name"]: n["metadata"].get("labels") or {}
             for n in client.list(client.resolve("v1", "Node"))}
    pods = client.list(pod_resource, workload["metadata"]["namespace"],
                       selector_string(workload["spec"]["selector"]))
    assert pods, f"{name} has no pods"
    wanted = workload["spec"]["template"]["spec"].get("nodeSelector") or {}
    for pod in pods:
        node = pod["spec"].get("nodeName")
        assert node and matches({"matchLabels": wanted}, nodes[node]), \
            f"{name}: pod {pod['metadata']['name']} on {node} does not carry {wanted}"


@pytest.mark.cluster
@pytest.mark.parametrize("name", list(STAGES))
def test_stage_applies_places_is_idempotent_and_uninstalls(name, site, client, installed_before):
    objects = rendered(site, name)
    stage = STAGES[name][1]

    planned = plan_objects(client, stage, objects)
    assert len(planned) == len(objects)
    assert {c.action for c in planned} == {"create"}
    # Every object went through the server's dry run (none deferred for a missing API).
    assert not [c.target for c in planned if "after its CRD" in (c.detail or "")]

    applied = apply_objects(client, stage, objects, timeout=TIMEOUT)
    assert {c.action for c in applied} <= {"create", "update"}
    workloads = [o for o in objects if o["kind"] in WORKLOADS]
    assert workloads
    for workload in workloads:
        assert_placed(client, workload)

    again = apply_objects(client, stage, objects, timeout=TIMEOUT)
    assert [c.target for c in again if c.action != "unchanged"] == []

    uninstall_stage(client, stage, timeout=TIMEOUT)
    expected_left = {(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] in DATA_KINDS}
    assert owned(client, stage) == set()
    assert owned(client, stage, kept_selector) == expected_left  # data is kept unless purged
    remove_data(client, stage, objects)
    assert owned(client, stage, kept_selector) == set()


@pytest.mark.cluster
def test_gateway_objects_pass_istios_validation_and_reapply_unchanged(site, client, installed_before):
    """upstream's Gateways (ingress) and VirtualServices (gateway), patched, against Istio
    1.30's CRD schemas (which require fields Istio 1.15's did not), in their namespaces."""
    crds = [doc for doc in load_documents(ISTIO_CRDS.read_text())
            if doc["spec"]["group"] == "networking.istio.io"]
    apply_objects(client, ISTIO_CRD_STAGE, crds, timeout=TIMEOUT)
    stages = {"ingress": finalize(site, ingress.render(site)),
              "gateway": finalize(site, gateway.render(site))}
    try:
        for stage, objects in stages.items():
            applied = apply_objects(client, stage, objects, timeout=TIMEOUT)
            assert {c.action for c in applied} == {"create"}, stage
        for stage, objects in stages.items():
            again = apply_objects(client, stage, objects, timeout=TIMEOUT)
            assert [c.target for c in again if c.action != "unchanged"] == [], stage
        kinds = {(o["kind"], o["metadata"]["namespace"]) for o in stages["gateway"]}
        assert ("VirtualService", "kube-system") in kinds
        assert ("Gateway", "kubeflow") in {(o["kind"], o["metadata"]["namespace"])
                                           for o in stages["ingress"]}
    finally:
        uninstall_stage(client, "gateway", timeout=TIMEOUT)
        uninstall_stage(client, "ingress", timeout=TIMEOUT)
        uninstall_stage(client, ISTIO_CRD_STAGE, timeout=TIMEOUT)


def remove_data(client: KubeClient, stage: str, objects: list[dict]) -> None:
    """Purge the claims, then delete the Retain volumes (which only a person deletes)."""
    uninstall_stage(client, stage, purge=True, timeout=TIMEOUT)
    volumes = client.resolve("v1", "PersistentVolume")
    for obj in objects:
        if obj["kind"] == "PersistentVolume":
            client.delete(volumes, None, obj["metadata"]["name"])


@pytest.mark.cluster
def test_gpu_daemonsets_run_on_the_gpu_node_only(site, client, installed_before):
    objects = finalize(site, gpu.render(site))
    assert {c.action for c in plan_objects(client, "gpu", objects)} == {"create"}
    apply_objects(client, "gpu", objects, timeout=TIMEOUT)
    gpu_nodes = {n["metadata"]["name"] for n in client.list(client.resolve("v1", "Node"))
                 if (n["metadata"].get("labels") or {}).get("gpu") == "true"}
    assert len(gpu_nodes) == 1
    pod_resource = client.resolve("v1", "Pod")
    for workload in (o for o in objects if o["kind"] == "DaemonSet"):
        status = live(client, workload).get("status") or {}
        assert status.get("numberAvailable") == status.get("desiredNumberScheduled") == 1
        pods = client.list(pod_resource, workload["metadata"]["namespace"],
                           selector_string(workload["spec"]["selector"]))
        assert {pod["spec"].get("nodeName") for pod in pods} == gpu_nodes
    again = apply_objects(client, "gpu", objects, timeout=TIMEOUT)
    assert [c.target for c in again if c.action != "unchanged"] == []
    uninstall_stage(client, "gpu", timeout=TIMEOUT)
    assert owned(client, "gpu") == set()


@pytest.mark.cluster
def test_a_new_domain_plans_updates_only_in_the_platform(site, client, installed_before):
    moved = site.model_copy(update={"domain": "cube.other.example.org"})
    try:
        for name, (_, stage) in STAGES.items():
            apply_objects(client, stage, rendered(site, name), timeout=TIMEOUT)
        planned = {name: {(c.target, c.action) for c in plan_objects(client, stage, rendered(moved, name))
                          if c.action != "unchanged"}
                   for name, (_, stage) in STAGES.items()}
    finally:
        for name, (_, stage) in reversed(STAGES.items()):
            remove_data(client, stage, rendered(site, name))
    # CLUSTERS (HOST, SERVICE_DOMAIN) in config.py, and the pods that read it roll (config
    # digest); the frontend's nginx config does not change; nothing else.
    assert planned.pop("cube") == {("ConfigMap infra/kubeflow-dashboard-config", "update")} | {
        (f"Deployment infra/{name}", "update") for name in cube.BACKEND_DEPLOYMENTS}
    assert planned == {name: set() for name in planned}


def in_namespace(objects: list[dict], namespace: str, suffix: str) -> list[dict]:
    """The same objects in another namespace (cluster-scoped ones renamed), for isolation."""
    result = []
    for obj in objects:
        obj = {**obj, "metadata": dict(obj["metadata"])}
        if "namespace" in obj["metadata"]:
            obj["metadata"]["namespace"] = namespace
        else:
            obj["metadata"]["name"] += suffix
            obj["spec"] = {**obj["spec"], "claimRef": {**obj["spec"]["claimRef"],
                                                        "namespace": namespace}}
        if obj["kind"] == "PersistentVolumeClaim":
            obj["spec"] = {**obj["spec"], "volumeName": obj["spec"]["volumeName"] + suffix}
        result.append(obj)
    return result


@pytest.mark.cluster
def test_mysql_without_a_mysql_node_fails_with_a_labelling_hint(site, client, installed_before,
                                                               test_namespace):
    # site.yaml validation refuses such a site; build its objects anyway and apply them.
    unplaced = site.model_copy(update={"components": {
        **site.components, "mysql": Component(placement="mysql-db")}})
    objects = in_namespace(rendered(unplaced, "mysql"), test_namespace, f"-{test_namespace}")
    stage = "mysql-gate-test"
    try:
        with pytest.raises(StageFailed) as failure:
            apply_objects(client, stage, objects, timeout=15)
        message = str(failure.value)
        assert "0/3 nodes match node selector mysql-db=true" in message
        assert "add label mysql-db=true to a node (nodes[].labels in site.yaml)" in failure.value.hint
    finally:
        uninstall_stage(client, stage, purge=True, timeout=TIMEOUT)
        client.delete(client.resolve("v1", "PersistentVolume"), None,
                      f"infra-mysql-pv-{test_namespace}")


# -- the rendered Redis configuration, with a real redis-server -------------------------------


def _send(sock: socket.socket, *words: str) -> bytes:
    data = f"*{len(words)}\r\n".encode()
    for word in words:
        raw = word.encode()
        data += f"${len(raw)}\r\n".encode() + raw + b"\r\n"
    sock.sendall(data)
    return sock.recv(256)


@pytest.mark.mysql  # the data-services marker: a real redis-server
def test_rendered_redis_config_demands_the_site_password(tmp_path, site):
    from tests.cluster.processes import ManagedProcess, free_port, wait_until

    password = 'p@ss "quoted" \\ back sp\u00e9cial'
    site = site.model_copy(update={"redis": site.redis.model_copy(update={
        "password": type(site.redis.password)(password, "test value")})})
    objects = rendered(site, "redis")
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]["redis.conf"]
    secret = next(o for o in objects if o["kind"] == "Secret")["data"]
    (tmp_path / "auth.conf").write_bytes(base64.b64decode(secret["auth.conf"]))
    port = free_port()
    # The rendered file, with the pod's paths and port pointed at this machine.
    config = (config.replace("bind 0.0.0.0", "bind 127.0.0.1").replace("port 6379", f"port {port}")
              .replace("dir /data", f"dir {tmp_path}")
              .replace("/etc/redis/secret/auth.conf", str(tmp_path / "auth.conf")))
    (tmp_path / "redis.conf").write_text(config)
    binary = shutil.which("redis-server")
    if not binary:
        pytest.fail("redis-server not found: apt-get install redis-server", pytrace=False)
    process = ManagedProcess("redis-server", [binary, str(tmp_path / "redis.conf")],
                             tmp_path / "redis.out").start()
    try:
        def answers() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                return _send(sock, "PING").startswith(b"-NOAUTH")
        wait_until(answers, timeout=30, what="redis-server to answer", watched=[process],
                   blame=process)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            assert _send(sock, "AUTH", "wrong").startswith(b"-WRONGPASS")
            assert _send(sock, "AUTH", password) == b"+OK\r\n"
            assert _send(sock, "CONFIG", "GET", "appendonly").endswith(b"yes\r\n")
    finally:
        process.stop()
