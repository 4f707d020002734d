"""A two-cluster site end to end: its nodes, registry and databases, through the real CLI.

tests/integration/test_multi_cluster.py proves the cluster stages on two control planes
without hosts; this module adds what a real two-cluster site also has:

- sandboxed sshd nodes assigned to both clusters: node1 and node2 to the platform cluster
  ``main``, east1 to ``east``. Every node stage runs once for the site, on every node;
- the images stage once for the whole site, against a real TLS + htpasswd registry (the
  saved images are loaded first, as on an air-gapped site; the stage finds them there);
  every object on both clusters pulls from that registry;
- in-cluster MySQL on the platform cluster: ``node1`` of ``main`` is a real kubelet +
  containerd node (tests/cluster/realnode.py) running the MariaDB test image, and the
  databases stage creates the platform's databases through a port-forward of ``main``;
  ``east`` holds no MySQL, no databases, no platform object;
- node labels of each cluster on its own nodes only;
- a second run changes nothing (cluster, hosts, the databases); uninstall removes what the
  site owns from both clusters.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pymysql
import pytest
import yaml

from tests.cluster import build, testimages
from tests.cluster.fixtures import start_control_plane
from tests.cluster.nodes import DEFAULT_NODES, FakeNode
from tests.cluster.realnode import RealNodeSpec
from tests.e2e import observe
from tests.e2e.conftest import SITE, cli_environment
from tests.e2e.harness import Cli, Run
from tests.e2e.saved_images import build_saved_directory
from tests.servers.registry import TARGET_PASSWORD, TARGET_USER, start_registry
from tests.servers.sshd import start_node

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.ssh, pytest.mark.registry]

NODE_STAGES = ("node-prep", "storage", "registry-trust")
EVERY_CLUSTER = ("namespaces", "node-labels", "pv-pvc", "frameworkcontroller")
PLATFORM = ("mysql", "databases", "kubeconfig")
PLATFORM_OBJECTS = ("mysql", "kubeconfig")  # databases writes no Kubernetes object
# made and kept current by controllers from what a stage wrote (they inherit its labels)
CONTROLLER_MADE = {"Pod", "ReplicaSet", "Endpoints", "EndpointSlice", "ControllerRevision"}
STAGES = (*NODE_STAGES, "images", *EVERY_CLUSTER, *PLATFORM)
ONLY = ["--only", ",".join(STAGES)]
ROOT_PASSWORD = "multi-Root pw'1"
PLATFORM_DATABASES = {"kubeflow", "mlpipeline", "katib", "metadb", "cachedb"}
CLUSTER_OF = {"node1": "main", "node2": "main", "east1": "east"}
WORKER = ["cpu", "train", "notebook", "service"]
PLACED = ["kubeflow", "istio", "monitoring"]  # every cluster runs pods placed there
# node1 (real) runs MySQL; the other placed pods go to the kwok nodes
ROLES = {"node1": [*WORKER, "mysql", "redis"],
         "node2": [*WORKER, *PLACED, "kubeflow-dashboard", "logging"],
         "east1": [*WORKER, *PLACED]}
NODE2 = next(node for node in DEFAULT_NODES if node.name == "node2")


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    """main: node1 a real node (MySQL runs there), node2 kwok; east: east1 kwok."""
    main = start_control_plane(
        tmp_path_factory.mktemp("site-main"), "the platform cluster with a real node",
        nodes=(NODE2,), real_node=RealNodeSpec("node1", taints=()))
    try:
        east = start_control_plane(tmp_path_factory.mktemp("site-east"), "the second cluster",
                                   nodes=(FakeNode("east1", address="127.0.10.41"),))
        try:
            yield {"main": main, "east": east}
        finally:
            east.stop()
    finally:
        pods_gone_from_the_real_node(main)
        main.stop()


def pods_gone_from_the_real_node(main, timeout: float = 120) -> None:
    """Let the pods the tests left on node1 (MySQL, whose shutdown writes to disk) end
    before the node stops: under load a killed mysqld could outlive the node's stop."""
    kubectl = build.toolset().binary("kubectl")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = subprocess.run([str(kubectl), "--kubeconfig", str(main.kubeconfig), "get", "pods",
                                  "-A", "--field-selector", "spec.nodeName=node1", "-o", "name"],
                                 capture_output=True, text=True, check=False)
        if listing.returncode == 0 and not listing.stdout.strip():
            return
        time.sleep(1)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, ssh_client_key):
    workdir = tmp_path_factory.mktemp("site-nodes")
    started = {}
    try:
        for name in CLUSTER_OF:
            started[name] = start_node(name, workdir / name, ssh_client_key.with_suffix(".pub"))
        yield started
    finally:
        for node in started.values():
            node.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory, registry_tls):
    server = start_registry(tmp_path_factory.mktemp("site-registry"),
                            auth=(TARGET_USER, TARGET_PASSWORD), tls=registry_tls)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cli(tmp_path_factory, clusters, nodes, registry, ssh_client_key, upstream_server) -> Cli:
    """The site, prepared as an air-gapped operator does: upstream files fetched, the saved
    images loaded into the registry (MySQL's is the runnable MariaDB test image)."""
    workdir = tmp_path_factory.mktemp("multi-cluster-site")
    data = yaml.safe_load(SITE.read_text())
    data["site"] = "two"
    data["clusters"] = [{"name": name, "kubeconfig": str(plane.kubeconfig)}
                        for name, plane in clusters.items()]
    for cluster in data["clusters"][1:]:  # its own gateway (the first: the site's)
        cluster.update(domain=f"{cluster['name']}.cube.example.com",
                       gateway={"expose": "NodePort"})
    data["registry"].update(host=registry.host, ca_file=str(registry.ca_file))
    data["ssh"].update(key_file=str(ssh_client_key), known_hosts=str(workdir / "known_hosts"),
                       config_file=str(workdir / "no-ssh-config"))
    data["nodes"] = [{"name": name, "address": node.address, "port": node.port,
                      "roles": ROLES[name], "cluster": CLUSTER_OF[name]}
                     for name, node in nodes.items()]
    data["mysql"] = {"mode": "in-cluster", "user": "root", "password": "${env:E2E_MYSQL_PASSWORD}",
                     "app_user": data["mysql"]["app_user"]}
    data["timeouts"]["object_seconds"] = 120
    data["upstream"]["base_url"] = upstream_server.url
    site = workdir / "site.yaml"
    site.write_text(yaml.safe_dump(data, sort_keys=False))
    cli = Cli(site, cli_environment(workdir, ROOT_PASSWORD), workdir)
    ok(cli("bundle", "fetch"))
    sources = sorted({e["source"] for e in ok(cli("images", "list")).of("image")})
    build_saved_directory(sources, workdir / "saved-images")
    ok(cli("images", "load", str(workdir / "saved-images")))
    mysql_image = testimages.IMAGES["mysql"]
    testimages.push("mysql", f"{registry.host}/cube-studio/mysql:{mysql_image.tag}",
                    creds=(TARGET_USER, TARGET_PASSWORD))
    clusters["main"].real_node.trust_registry(registry.host, ca_file=registry.ca_file)
    return cli


def ok(run: Run) -> Run:
    assert run.code == 0, run.explain()
    return run


@pytest.fixture(scope="module")
def installed(cli) -> Run:
    return cli("all", "--trust-new-hosts", *ONLY)


def owned(clusters, name: str, stage: str | None = None) -> dict[str, str]:
    selector = observe.MANAGED + (f",cubeinstall.io/stage={stage}" if stage else "")
    return observe.without_bookkeeping(
        observe.owned_objects(clusters[name].kubeconfig, selector))


def owned_objects(clusters, name: str) -> list[dict]:
    """Every object of the cluster the site owns, as the API server returns it."""
    kubectl = build.toolset().binary("kubectl")
    listing = subprocess.run(
        [str(kubectl), "--kubeconfig", str(clusters[name].kubeconfig), "get",
         "deployments,statefulsets,daemonsets,jobs,pods", "-A", "-o", "yaml",
         "-l", observe.MANAGED], capture_output=True, text=True, check=True).stdout
    return yaml.safe_load(listing)["items"]


def images_of(objects: list[dict]) -> set[str]:
    found = set()
    for obj in objects:
        spec = obj.get("spec", {})
        pod = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {}).get(
            "spec", {}).get("template", {}).get("spec") or spec
        for key in ("containers", "initContainers"):
            found |= {container["image"] for container in pod.get(key) or []}
    return found


def databases(clusters) -> set[str]:
    """The databases of main's MySQL, through `kubectl port-forward` (never the product)."""
    kubectl = build.toolset().binary("kubectl")
    forward = subprocess.Popen([str(kubectl), "--kubeconfig", str(clusters["main"].kubeconfig),
                                "-n", "infra", "port-forward", "deploy/mysql", ":3306"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        match = re.search(r"127\.0\.0\.1:(\d+)", forward.stdout.readline())
        assert match, forward.stderr.read() if forward.poll() is not None else "no port"
        connection = pymysql.connect(host="127.0.0.1", port=int(match.group(1)), user="root",
                                     password=ROOT_PASSWORD, connect_timeout=10)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SHOW DATABASES")
                return {row[0] for row in cursor.fetchall()}
        finally:
            connection.close()
    finally:
        forward.terminate()
        forward.wait(10)


def written(clusters, name: str) -> dict[str, object]:
    """key -> resourceVersion of what the stages wrote on the cluster; a Node's labels
    (its kubelet writes its status, so its resourceVersion moves on its own)."""
    kubectl = build.toolset().binary("kubectl")
    listing = subprocess.run([str(kubectl), "--kubeconfig", str(clusters[name].kubeconfig),
                              "get", "nodes", "-o", "json"],
                             capture_output=True, text=True, check=True).stdout
    labels = {f"/Node//{node['metadata']['name']}": node["metadata"]["labels"]
              for node in json.loads(listing)["items"]}
    return {key: labels[key] if key.startswith("/Node//") else version
            for key, version in owned(clusters, name).items()
            if key.split("/")[1] not in CONTROLLER_MADE}


def world(clusters, nodes) -> dict:
    return {"clusters": {name: written(clusters, name) for name in clusters},
            "hosts": observe.host_files(nodes.values())}


# --- install --------------------------------------------------------------------------------

def test_node_and_registry_stages_run_once_for_the_site_on_every_node(installed, nodes,
                                                                      registry):
    assert installed.code == 0, installed.explain()
    done = [(e["stage"], e.get("cluster")) for e in installed.of("stage-done")]
    for stage in (*NODE_STAGES, "images"):  # once, for the whole site, not per cluster
        assert [d for d in done if d[0] == stage] == [(stage, None)], done
    for stage in NODE_STAGES:  # ... on every node of both clusters
        hosts = {e["target"].split(":")[0] for e in installed.of("change") if e["stage"] == stage}
        assert hosts == set(CLUSTER_OF), (stage, hosts)
    os_lines = [e["target"] for e in installed.of("change") if e["stage"] == "node-prep"
                and e["target"].endswith(":os")]
    assert sorted(os_lines) == sorted(f"{name}:os" for name in CLUSTER_OF)  # once a node
    for node in nodes.values():
        assert " /data/k8s ceph " in node.read("/etc/fstab").decode()
        assert node.read(f"/etc/docker/certs.d/{registry.host}/ca.crt") == \
            registry.ca_file.read_bytes()
    present = [e for e in installed.of("change") if e["stage"] == "images"]
    assert present and {e["action"] for e in present} == {"unchanged"}  # loaded before


def test_each_cluster_holds_exactly_its_objects_pulling_from_the_site_registry(
        installed, clusters, registry):
    assert installed.code == 0, installed.explain()
    done = {(e["stage"], e.get("cluster")) for e in installed.of("stage-done")}
    assert {d for d in done if d[1]} == {
        *((stage, cluster) for stage in EVERY_CLUSTER for cluster in ("main", "east")),
        *((stage, "main") for stage in PLATFORM)}
    for name, stages in (("main", (*EVERY_CLUSTER, *PLATFORM_OBJECTS)), ("east", EVERY_CLUSTER)):
        by_stage = {stage: owned(clusters, name, stage) for stage in stages}
        assert [stage for stage, objects in by_stage.items() if not objects] == [], name
        assert {key for objects in by_stage.values() for key in objects} == \
            set(owned(clusters, name)), f"{name} holds objects of other stages"
    assert set(owned(clusters, "main", "node-labels")) == {"/Node//node1", "/Node//node2"}
    assert set(owned(clusters, "east", "node-labels")) == {"/Node//east1"}
    for name in clusters:  # frameworkcontroller on both, MySQL on main
        images = images_of(owned_objects(clusters, name))
        assert images and all(image.startswith(f"{registry.host}/cube-studio/")
                              for image in images), (name, images)


def test_databases_exist_only_through_the_platform_cluster(installed, clusters):
    assert installed.code == 0, installed.explain()
    assert PLATFORM_DATABASES <= databases(clusters)
    assert not owned(clusters, "east", "mysql")
    assert [e for e in installed.of("stage-done") if e["stage"] == "databases"][0].get(
        "cluster") == "main"


def test_a_second_run_changes_nothing(installed, cli, clusters, nodes):
    assert installed.code == 0, installed.explain()
    before = world(clusters, nodes)
    again = ok(cli("all", "--force", *ONLY))  # --force: every target really asked again
    assert again.changes() == [], again.changes()
    assert {(e["stage"], e.get("cluster")) for e in again.of("stage-done")} == \
        {(e["stage"], e.get("cluster")) for e in installed.of("stage-done")}
    after = world(clusters, nodes)
    for name in clusters:
        changed = sorted(key for key, version in after["clusters"][name].items()
                         if before["clusters"][name].get(key) != version)
        assert (name, changed) == (name, []), "written again"
    assert after == before


def test_uninstall_removes_from_both_clusters(installed, cli, clusters):
    assert installed.code == 0, installed.explain()
    run = ok(cli("uninstall"))
    assert {e.get("cluster") for e in run.of("stage-removed")} - {None} == {"main", "east"}
    assert owned(clusters, "main") == {} and owned(clusters, "east") == {}
