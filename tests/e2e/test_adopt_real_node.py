"""`adopt` keeps the files of a start.sh site's volumes: read back on a real node.

tests/integration/test_adopt.py proves adopt on kwok nodes, which have no file system.
Here the control plane also has a real kubelet + containerd node ``real1``
(tests/cluster/realnode.py), whose hostPath volumes are directories of the node's own
file system (its root, an overlay seen from the host at /proc/<holder>/root): upstream's
``/data/k8s/...`` resolves there for every pod on real1, and the test writes through
``RealNode.write``. Driving the CLI as an operator does:

- start.sh's namespaces and every file of start.sh that makes volumes or claims are
  applied with the kubectl built for the tests, verb for verb (create or apply, so the
  managedFields are kubectl's own);
- a distinct file is written into the host path of every volume: the platform volumes
  (several of them on one directory, ``infra-kubeflow`` on ``/data/k8s/kubeflow/``
  holding the others' directories), MySQL's, MinIO's, Grafana's, and Prometheus's, which
  start.sh leaves without a claim;
- `adopt` then `all` of the stages that own those volumes; afterwards every claim is
  bound to the same volume (name, uid), and a pod on real1 mounting all the claims of a
  namespace reads exactly the files written (path and sha256, nothing more) through each;
- a second `all --force` changes nothing, and the files are still there.

The workloads of those stages (MySQL, MinIO) stay on the kwok nodes: real1 keeps its
taint, only the reading pods tolerate it. The prometheus stage is not run: its
node-exporter DaemonSet tolerates every taint and would wait on real1 for an image no
test registry has; its volume and claim are still taken over by adopt and checked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path

import pytest
import yaml

from cubeinstall.kube.immutable import CLAIM_SIZE
from tests.cluster.fixtures import REAL_NODE_PIN, KubeCluster, start_control_plane
from tests.cluster.nodes import DEFAULT_NODES
from tests.cluster.realnode import RealNodeSpec
from tests.cluster.testimages import IMAGES
from tests.e2e.conftest import cli_environment, real_node_registry
from tests.e2e.harness import Cli, Run
from tests.helpers import CUBE_INSTALL
from tests.servers.http_upstream import component_site
from tests.servers.registry import TARGET_PASSWORD, TARGET_USER, RegistryServer
from tests.start_sh import claims, create_namespaces_and_secrets, kubectl
from tests.upstream_install import start_sh_objects

pytestmark = pytest.mark.e2e

STAGES = ("namespaces", "pv-pvc", "mysql", "kubeflow")
ONLY = [arg for stage in STAGES for arg in ("--only", stage)]
# no sshd on any node here: what those checks look at is not what this test is about
IGNORE = ["--ignore", "storage-mounted", "--ignore", "nodes-reachable"]
VOLUME_KINDS = ("PersistentVolume", "PersistentVolumeClaim")
GRAFANA_CLAIM = "monitoring-grafana-pvc"
READER = "redis"  # a test image with busybox: sh, find, sha256sum
PULL_SECRET = "e2e-reader-pull"
# Each file of the mounted claims, as ``<sha256>  ./<claim>/<path>``.
LIST_FILES = "cd /claims && find . -type f | sort | xargs -r sha256sum"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> KubeCluster:
    control_plane = start_control_plane(
        tmp_path_factory.mktemp("adopt-real-cluster"), "the control plane with a real node",
        nodes=DEFAULT_NODES, real_node=RealNodeSpec("real1"))
    yield KubeCluster(control_plane.kubeconfig, control_plane)
    control_plane.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory, registry_tls, cluster: KubeCluster) -> RegistryServer:
    server = real_node_registry(tmp_path_factory.mktemp("adopt-real-registry"), registry_tls,
                                cluster.control_plane.real_node, (READER,))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cli(tmp_path_factory, cluster: KubeCluster, session_upstream_cache: Path) -> Cli:
    workdir = tmp_path_factory.mktemp("adopt-real")
    site = component_site(workdir, cluster.kubeconfig)
    env = cli_environment(workdir, "unused")
    env["CUBEINSTALL_CACHE"] = str(session_upstream_cache)  # filled from the test data
    return Cli(site, env, workdir)


def volume_commands() -> list[tuple[str, str]]:
    """(verb, file) of each start.sh command that creates volumes or claims, in order."""
    commands: list[tuple[str, str]] = []
    for item in start_sh_objects():
        if item.kind in VOLUME_KINDS and (item.verb, item.source) not in commands:
            commands.append((item.verb, item.source))
    return commands


@pytest.fixture(scope="module")
def start_sh_site(cluster: KubeCluster) -> dict[str, str]:
    """start.sh's volumes, each with a file of its own in its host path on real1.
    Returns node path -> content of every file written."""
    from kubernetes import client

    create_namespaces_and_secrets(cluster.kubeconfig)
    commands = volume_commands()
    assert {source for _, source in commands} >= {"pv-pvc-infra.yaml",
                                                   "mysql/pv-pvc-hostpath.yaml",
                                                   "argo/minio-pv-pvc-hostpath.yaml"}, commands
    for verb, source in commands:
        kubectl(cluster.kubeconfig, verb, "-f", str(CUBE_INSTALL / source))
    real = cluster.control_plane.real_node
    written = {}
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        deadline = time.monotonic() + 60  # the PV controller binds them in its own time
        while (pending := {key: value for key, value in claims(core).items()
                           if value[2] != "Bound"}):
            assert time.monotonic() < deadline, f"start.sh's claims not bound: {pending}"
            time.sleep(0.5)
        for pv in core.list_persistent_volume().items:
            path = f"{pv.spec.host_path.path.rstrip('/')}/written-for-{pv.metadata.name}.txt"
            written[path] = f"{pv.metadata.name} ({pv.metadata.uid}) before adopt\n"
            real.write(path, written[path].encode())
    # a tree, not only a file, in the directory several platform volumes share
    nested = "/data/k8s/kubeflow/pipeline/workspace/user1/notebook/model.bin"
    written[nested] = hashlib.sha256(b"model").hexdigest() * 64
    real.write(nested, written[nested].encode())
    return written


def expected_files(cluster: KubeCluster, written: dict[str, str]
                   ) -> dict[str, dict[str, str]]:
    """namespace -> {'./<claim>/<path>': sha256} of the written files each claim shows."""
    from kubernetes import client

    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        paths = {pv.metadata.name: pv.spec.host_path.path.rstrip("/") + "/"
                 for pv in core.list_persistent_volume().items}
        result: dict[str, dict[str, str]] = {}
        for claim in core.list_persistent_volume_claim_for_all_namespaces().items:
            root = paths[claim.spec.volume_name]
            files = result.setdefault(claim.metadata.namespace, {})
            for path, content in written.items():
                if path.startswith(root):
                    files[f"./{claim.metadata.name}/{path[len(root):]}"] = \
                        hashlib.sha256(content.encode()).hexdigest()
    return result


def read_through_claims(cluster: KubeCluster, registry: RegistryServer, namespaces: dict,
                        round_name: str) -> dict[str, dict[str, str]]:
    """One pod per namespace on real1 mounting its claims read-only: what each lists."""
    from kubernetes import client

    image = f"{registry.host}/cube-studio/{READER}:{IMAGES[READER].tag}"
    auth = base64.b64encode(f"{TARGET_USER}:{TARGET_PASSWORD}".encode()).decode()
    docker_config = json.dumps({"auths": {registry.host: {"auth": auth}}})
    name = f"read-files-{round_name}"
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        for namespace, claim_names in namespaces.items():
            if round_name == "after-adopt":  # the pull secret, once per namespace
                core.create_namespaced_secret(namespace, {
                    "metadata": {"name": PULL_SECRET}, "type": "kubernetes.io/dockerconfigjson",
                    "data": {".dockerconfigjson": base64.b64encode(docker_config.encode()).decode()}})
            core.create_namespaced_pod(namespace, {
                "metadata": {"name": name},
                "spec": {**REAL_NODE_PIN, "restartPolicy": "Never",
                         "imagePullSecrets": [{"name": PULL_SECRET}],
                         "containers": [{
                             "name": "read", "image": image, "command": ["sh", "-c", LIST_FILES],
                             "volumeMounts": [{"name": f"claim-{i}", "mountPath": f"/claims/{c}",
                                               "readOnly": True}
                                              for i, c in enumerate(claim_names)]}],
                         "volumes": [{"name": f"claim-{i}", "persistentVolumeClaim": {
                             "claimName": c, "readOnly": True}}
                                     for i, c in enumerate(claim_names)]}})
        listed = {}
        for namespace in namespaces:
            pod = wait_for_pod(core, namespace, name)
            log = core.read_namespaced_pod_log(  # raw: the client would parse it as JSON
                name, namespace, _preload_content=False).data.decode()
            assert pod.status.phase == "Succeeded", (namespace, pod.status, log)
            listed[namespace] = {path: digest for digest, path in
                                 (line.split(None, 1) for line in log.splitlines() if line)}
            core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    return listed


def wait_for_pod(core, namespace: str, name: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while True:
        pod = core.read_namespaced_pod(name, namespace)
        if pod.status.phase in ("Succeeded", "Failed"):
            return pod
        assert time.monotonic() < deadline, \
            f"pod {namespace}/{name} still {pod.status.phase}: {pod.status.container_statuses}"
        time.sleep(0.5)


def live_size(cluster: KubeCluster, namespace: str, claim: str) -> str:
    from kubernetes import client

    with cluster.api_client() as api:
        return client.CoreV1Api(api).read_namespaced_persistent_volume_claim(
            claim, namespace).spec.resources.requests["storage"]


def _ok(run: Run) -> Run:
    assert run.code == 0, run.explain()
    return run


def test_adopt_then_all_keeps_every_claims_volume_and_files(
        cluster: KubeCluster, registry: RegistryServer, cli: Cli, start_sh_site: dict):
    from kubernetes import client

    real = cluster.control_plane.real_node
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        before = claims(core)
        volumes_before = {pv.metadata.name: pv.metadata.uid
                          for pv in core.list_persistent_volume().items}
    assert before and all(phase == "Bound" for _, _, phase in before.values()), before
    namespaces: dict[str, list[str]] = {}
    for namespace, claim in sorted(before):
        namespaces.setdefault(namespace, []).append(claim)
    expected = expected_files(cluster, start_sh_site)
    # infra-kubeflow (/data/k8s/kubeflow/) shows the files of the volumes below it
    assert "./infra-kubeflow/global/written-for-infra-kubeflow-global-pv.txt" in expected["infra"]

    # Grafana's claim is 1Gi in start.sh, 10Gi in ours: a claim on a volume no storage
    # class made cannot grow, so adopt refuses until site.yaml keeps the live size
    refused = cli("adopt")
    assert refused.code == 2, refused.explain()
    said = json.dumps(refused.of("error"))
    assert f"PersistentVolumeClaim monitoring/{GRAFANA_CLAIM}: {CLAIM_SIZE} cannot change" \
        in said and "nothing was changed" in said, said
    data = yaml.safe_load(cli.config.read_text())
    data["volumes"] = {GRAFANA_CLAIM: {"size": live_size(cluster, "monitoring", GRAFANA_CLAIM)}}
    cli.config.write_text(yaml.safe_dump(data, sort_keys=False))

    adopted = _ok(cli("adopt"))
    for change in adopted.of("change"):
        kind = change["target"].split()[0]
        if kind in VOLUME_KINDS:  # never re-created, never removed
            assert change["detail"].startswith("take-over"), change
    _ok(cli("all", *ONLY, *IGNORE))

    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        after = claims(core)
        volumes_after = {pv.metadata.name: pv.metadata.uid
                         for pv in core.list_persistent_volume().items}
    assert {key: after[key] for key in before} == before
    assert {name: volumes_after.get(name) for name in volumes_before} == volumes_before
    assert read_through_claims(cluster, registry, namespaces, "after-adopt") == \
        {namespace: expected[namespace] for namespace in namespaces}

    again = _ok(cli("all", "--force", *ONLY, *IGNORE))
    assert again.changes() == [], again.changes()
    with cluster.api_client() as api:
        assert claims(client.CoreV1Api(api)) == after
    assert read_through_claims(cluster, registry, namespaces, "second-all") == \
        {namespace: expected[namespace] for namespace in namespaces}
    # the volume start.sh leaves without a claim (Prometheus's) keeps its file too
    for path, content in start_sh_site.items():
        assert real.path(path).read_text() == content, path
