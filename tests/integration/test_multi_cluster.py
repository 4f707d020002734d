"""A site of two clusters on two real control planes of its own (started only here).

The platform cluster ``main`` holds the example's nodes, ``east`` one node of its own.
Stages of every cluster (namespaces, node-labels, ingress: the Gateways and cube-ingress,
pv-pvc) go to both; the platform's (kubeconfig: the Secret the platform reads CLUSTERS'
kubeconfigs from; gateway: its VirtualServices) to main only. A second run changes
nothing; plan, status, preflight and uninstall narrow with --cluster; an unreachable east
fails its targets and its preflight checks with its name while main still finishes (and
passes); preflight checks each cluster's own nodes; uninstall of the site removes from
both. Last, a site installed by the version before the ingress stage (its Gateways applied
by the gateway stage) keeps its Gateways, same uids, through a prune and the take-over.
"""

from __future__ import annotations

import json

import pytest
import yaml

from cubeinstall.kube import apply_objects
from cubeinstall.render import finalize
from cubeinstall.site.loader import load_site
from cubeinstall.stages import gateway, ingress
from tests.cluster.fixtures import start_control_plane
from tests.cluster.kubectl import kubectl
from tests.cluster.nodes import FakeNode
from tests.cluster.processes import free_port
from tests.e2e.observe import owned_objects, without_bookkeeping
from tests.helpers import SHARED, example_site_data, json_events, run_cli, write_site
from tests.integration.test_adopt_more import install_as_earlier_cubeinstall, wait_for

pytestmark = pytest.mark.cluster

STAGES = ("namespaces", "node-labels", "ingress", "pv-pvc", "kubeconfig", "gateway")
EVERY_CLUSTER_STAGES = ("namespaces", "node-labels", "ingress", "pv-pvc")
PLATFORM_STAGES = ("kubeconfig", "gateway")
INDEPENDENT_STAGES = ("namespaces", "node-labels", "pv-pvc")  # of every cluster, no CRDs
ISTIO_CRDS = SHARED / "upstream/istio/1.30.3/manifests/charts/base/files/crd-all.gen.yaml"
GATEWAYS = ("networking.istio.io/Gateway/kubeflow/kubeflow-gateway",
            "networking.istio.io/Gateway/kubeflow/kubeflow-gateway-8080")
EXPOSURE = "/Service/istio-system/cube-ingress"
EAST_GATEWAY = {"expose": "externalIPs", "addresses": ["10.0.1.11"]}
EAST_ROLES = ["cpu", "train", "notebook", "service", "kubeflow", "istio", "monitoring"]
EAST_NODES = (FakeNode("east1", labels={"org": "public"}, address="127.0.10.31"),)


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    """Two fresh control planes: nobody else writes to them, so each holds exactly
    what this site put there."""
    main = start_control_plane(tmp_path_factory.mktemp("main-cluster"), "the platform cluster")
    try:
        east = start_control_plane(tmp_path_factory.mktemp("east-cluster"), "the second cluster",
                                   nodes=EAST_NODES)
        try:
            for plane in (main, east):  # what the istio stage brings: not this test's subject
                istio_crds(plane.kubeconfig)
            yield {"main": main.kubeconfig, "east": east.kubeconfig}
        finally:
            east.stop()
    finally:
        main.stop()


def istio_crds(kubeconfig) -> None:
    """Istio's CRDs, applied by kubectl (not labelled: no stage of the site owns them)."""
    kubectl(kubeconfig, "apply", "--server-side", "-f", str(ISTIO_CRDS))
    kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=60s",
            "crd/gateways.networking.istio.io", "crd/virtualservices.networking.istio.io")


def site_data(kubeconfigs: dict) -> dict:
    data = example_site_data()
    data["clusters"] = [{"name": name, "kubeconfig": str(path)} for name, path in kubeconfigs.items()]
    for cluster in data["clusters"][1:]:
        cluster.update(domain=f"{cluster['name']}.cube.example.com", gateway=EAST_GATEWAY)
    data["nodes"].append({"name": "east1", "address": "east1.cube.example.com", "cluster": "east",
                          "roles": EAST_ROLES})
    data["gates"] = {"webhooks": "skip", "services": "skip"}
    return data


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("multi-cluster")


@pytest.fixture
def cli(workdir, clusters, capsys, monkeypatch):
    monkeypatch.setenv("CUBEINSTALL_STATE_DIR", str(workdir / "state"))
    site = write_site(workdir, site_data(clusters))

    def run(*args, site_file=site):
        code, out, err = run_cli(["--json", *args, "-c", str(site_file)], capsys)
        return code, json_events(out), err

    return run


def only(*stages: str) -> list[str]:
    """The stages, and preflight's storage check accepted: it asks the site's hosts over
    SSH, and this test has no hosts."""
    return [*(arg for stage in stages for arg in ("--only", stage)), "--ignore", "storage-mounted"]


# A Service's labels are copied onto its endpoints by controllers: not ours.
COPIES = ("/Endpoints/", "discovery.k8s.io/EndpointSlice/")


def owned(kubeconfig, stage: str | None = None) -> dict[str, str]:
    selector = "app.kubernetes.io/managed-by=cubeinstall"
    if stage:
        selector += f",cubeinstall.io/stage={stage}"
    return {key: version for key, version in
            without_bookkeeping(owned_objects(kubeconfig, selector)).items()
            if not any(copy in key for copy in COPIES)}


def journal(workdir) -> dict:
    path = workdir / "state" / "demo-bj.journal.json"
    return json.loads(path.read_text())["stages"]


def unreachable_east(clusters, workdir):
    """east's kubeconfig pointing at a port nobody listens on."""
    broken = workdir / "east-unreachable.kubeconfig"
    config = yaml.safe_load(clusters["east"].read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"  # nobody
    broken.write_text(yaml.safe_dump(config))
    return broken


def findings(events) -> dict[tuple[str, str], dict]:
    """The cluster checks' findings by (check, cluster) (the node checks name no cluster)."""
    return {(e["check"], e["cluster"]): e for e in events
            if e["event"] == "preflight" and "cluster" in e}


CLUSTER_CHECKS = ("cluster-version", "cluster-permissions", "cluster-nodes")


def test_each_cluster_gets_its_own_objects_and_a_second_run_changes_nothing(cli, clusters,
                                                                            workdir):
    code, events, err = cli("all", *only(*STAGES))
    assert code == 0, (err, events)
    done = {(e["stage"], e["cluster"]) for e in events if e["event"] == "stage-done"}
    assert done == {*((s, c) for s in EVERY_CLUSTER_STAGES for c in ("main", "east")),
                    *((s, "main") for s in PLATFORM_STAGES)}
    for stage in ("namespaces", "ingress", "pv-pvc"):  # the same objects on both clusters
        assert owned(clusters["main"], stage), stage
        assert set(owned(clusters["main"], stage)) == set(owned(clusters["east"], stage)), stage
    # node labels: each cluster's own nodes
    assert set(owned(clusters["main"], "node-labels")) == {
        "/Node//node1", "/Node//node2", "/Node//gpu1"}
    assert set(owned(clusters["east"], "node-labels")) == {"/Node//east1"}
    assert owned(clusters["main"], "kubeconfig") and not owned(clusters["east"], "kubeconfig")
    # each cluster its Gateways and its own exposure; the platform's routes on main only
    for name in ("main", "east"):
        assert set(GATEWAYS) | {EXPOSURE} == set(owned(clusters[name], "ingress")), name
    assert external_ips(clusters["main"]) == ["10.0.0.11"]
    assert external_ips(clusters["east"]) == ["10.0.1.11"]
    routes = set(owned(clusters["main"], "gateway"))
    assert "networking.istio.io/VirtualService/infra/infra-kubeflow-dashboard" in routes
    assert all("/VirtualService/" in key for key in routes), routes
    assert not owned(clusters["east"], "gateway")
    assert "/Namespace//jupyter" in " ".join(owned(clusters["east"], "namespaces"))
    records = journal(workdir)
    assert records["namespaces"]["cluster"] == "main"  # the platform cluster's keys as before
    assert records["namespaces@east"]["cluster"] == "east"
    assert "kubeconfig@east" not in records

    before = {name: owned(path) for name, path in clusters.items()}
    code, events, err = cli("all", *only(*STAGES))
    assert code == 0, err
    assert [e for e in events if e["event"] in ("stage-start", "stage-done")] == []
    assert len([e for e in events if e["event"] == "stage-skipped"]) == len(done)
    assert {name: owned(path) for name, path in clusters.items()} == before


def external_ips(kubeconfig) -> list[str]:
    return json.loads(kubectl(kubeconfig, "get", "service", "cube-ingress", "-n", "istio-system",
                              "-o", "json"))["spec"]["externalIPs"]


def test_plan_and_status_narrow_to_one_cluster(cli):
    code, events, err = cli("plan", "--cluster", "east", *only(*STAGES)[:-2])
    assert code == 0, err
    planned = [(e["stage"], e["cluster"]) for e in events if e["event"] == "stage-plan"]
    assert planned == [(stage, "east") for stage in EVERY_CLUSTER_STAGES]
    code, events, err = cli("status", "--cluster", "main")
    assert code == 0, err
    status = {e["stage"]: e for e in events if e["event"] == "stage-status"}
    assert {e["cluster"] for e in status.values()} == {"main"}
    assert status["kubeconfig"]["result"] == "ok" and status["cube"]["result"] == "-"
    assert "node-prep" not in status  # a node stage belongs to no one cluster
    code, events, err = cli("plan", "--cluster", "west")
    said = json.dumps(events) + err  # with --json the error is an event on stdout
    assert code == 2 and "unknown cluster 'west'" in said and "main, east" in said, said


def test_an_unreachable_cluster_fails_with_its_name_and_the_other_finishes(cli, clusters,
                                                                          workdir):
    data = site_data({"main": clusters["main"], "east": unreachable_east(clusters, workdir)})
    data["timeouts"] = {"object_seconds": 5}  # how long a server may be out of reach
    site = write_site(workdir, data, "unreachable.yaml")
    # preflight would stop the run before any change (next test): accepted here, to see a
    # cluster that is out of reach while its stages run
    accepted = [arg for check in CLUSTER_CHECKS for arg in ("--ignore", check)]
    code, events, err = cli("all", "--force", *only(*INDEPENDENT_STAGES), *accepted,
                            site_file=site)
    assert code != 0
    failed = {(e["stage"], e["cluster"]) for e in events if e["event"] == "stage-failed"}
    # east's stages that need no other fail on their own; pv-pvc needs namespaces: not run
    assert failed == {("namespaces", "east"), ("node-labels", "east")}
    [not_run] = [e for e in events if e["event"] == "stages-not-run"]
    assert (not_run["stage"], not_run["stages"]) == ("namespaces@east", ["pv-pvc@east"])
    said = json.dumps(events) + err
    assert "stage namespaces (cluster east)" in said and "stage node-labels (cluster east)" in said
    finished = {(e["stage"], e["cluster"]) for e in events if e["event"] == "stage-done"}
    assert finished == {(stage, "main") for stage in INDEPENDENT_STAGES}
    assert journal(workdir)["namespaces@east"]["status"] == "failed"


def test_preflight_checks_each_cluster_with_its_own_nodes(cli, clusters, workdir):
    code, events, err = cli("preflight", *only(*STAGES))
    assert code == 0, (err, events)
    found = findings(events)
    assert {key: e["grade"] for key, e in found.items()} == {
        (check, cluster): "ok" for check in ("placement-labels", "gateway-exposure", *CLUSTER_CHECKS)
        for cluster in ("main", "east")}
    # each cluster's own gateway (east's from clusters[1].gateway)
    assert found["gateway-exposure", "east"]["message"] != found["gateway-exposure", "main"]["message"]
    assert found["cluster-nodes", "east"]["message"].endswith(
        "cluster east: all 1 nodes are in the cluster")

    # node2 assigned to east, where it is not: east's check says so, main's passes
    data = site_data(clusters)
    [node2] = [node for node in data["nodes"] if node["name"] == "node2"]
    node2["cluster"] = "east"
    site = write_site(workdir, data, "node2-east.yaml")
    code, events, err = cli("preflight", *only(*STAGES), site_file=site)
    assert code == 3, (err, events)
    found = findings(events)
    assert found["cluster-nodes", "main"]["grade"] == "ok"
    assert found["cluster-nodes", "east"]["grade"] == "error"
    assert "cluster east: nodes node2 of site.yaml are not in the cluster" in \
        found["cluster-nodes", "east"]["message"]
    said = json.dumps(events) + err
    assert "preflight: 1 problem(s) in cluster-nodes (cluster east)" in said


def test_preflight_of_an_unreachable_cluster_fails_its_checks_only(cli, clusters, workdir):
    data = site_data({"main": clusters["main"], "east": unreachable_east(clusters, workdir)})
    site = write_site(workdir, data, "preflight-unreachable.yaml")
    code, events, err = cli("preflight", *only(*STAGES), site_file=site)
    assert code == 3, (err, events)
    found = findings(events)
    for check in CLUSTER_CHECKS:
        assert found[check, "main"]["grade"] == "ok", found[check, "main"]
        assert found[check, "east"]["grade"] == "error", found[check, "east"]
        assert found[check, "east"]["message"].startswith(f"  error   {check}: cluster east: ")
    said = json.dumps(events) + err
    assert ("preflight: 3 problem(s) in cluster-nodes (cluster east), cluster-permissions "
            "(cluster east), cluster-version (cluster east)") in said

    code, events, err = cli("preflight", "--cluster", "main", *only(*STAGES), site_file=site)
    assert code == 0, (err, events)  # narrowed: east is not asked
    assert {cluster for _, cluster in findings(events)} == {"main"}

    code, events, err = cli("all", "--force", *only(*STAGES), site_file=site)
    assert code == 3, (err, events)  # `all` stops before any change, on any cluster
    assert not [e for e in events if e["event"] == "stage-start"]


def test_uninstall_of_one_cluster_then_of_the_site(cli, clusters, workdir):
    main_before = owned(clusters["main"])
    code, events, err = cli("uninstall", "--cluster", "east")
    assert code == 0, (err, [e.get("message") for e in events[-3:]])
    assert {e["cluster"] for e in events if e["event"] == "stage-removed"} == {"east"}
    assert owned(clusters["east"]) == {}
    assert owned(clusters["main"]) == main_before
    assert not [key for key in journal(workdir) if key.endswith("@east")]
    code, events, err = cli("uninstall")
    assert code == 0, err
    assert owned(clusters["main"]) == {} and owned(clusters["east"]) == {}


def uids(kubeconfig, *keys: str) -> dict[str, str]:
    """"group/Kind/namespace/name" -> uid (the object is the same object, not re-created)."""
    found = {}
    for key in keys:
        group, kind, namespace, name = key.split("/")
        kind = f"{kind.lower()}.{group}" if group else kind.lower()
        found[key] = kubectl(kubeconfig, "get", kind, name, "-n", namespace,
                             "-o", "jsonpath={.metadata.uid}")
    return found


def test_a_site_installed_before_the_ingress_stage_keeps_its_gateways(cli, clusters, workdir):
    """The version before: stage gateway applied the Gateways and cube-ingress with its
    routes, on the platform cluster. Its prune (alone, before ingress took them over) leaves
    them; ingress takes them over in place; the second run changes nothing."""
    code, _, err = cli("all", *only("namespaces"))
    assert code == 0, err
    main = clusters["main"]
    site = load_site(workdir / "site.yaml")
    old_split = finalize(site, ingress.render(site) + gateway.render(site))
    apply_objects(main, "gateway", old_split)  # labelled as the version before did
    before = uids(main, *GATEWAYS, EXPOSURE)
    assert set(before) <= set(owned(main, "gateway"))

    code, events, err = cli("all", "--prune", *only("gateway"))
    assert code == 0, err
    assert not [e for e in events if e.get("action") == "delete"], events
    assert uids(main, *GATEWAYS, EXPOSURE) == before
    assert set(before) <= set(owned(main, "gateway"))  # not taken over yet: still labelled

    code, events, err = cli("all", "--prune", *only("namespaces", "ingress", "gateway"))
    assert code == 0, err
    assert not [e for e in events if e.get("action") == "delete"], events
    assert uids(main, *GATEWAYS, EXPOSURE) == before  # the same objects, not re-created
    assert set(owned(main, "ingress")) == set(before)
    assert not set(before) & set(owned(main, "gateway"))
    assert set(owned(clusters["east"], "ingress")) == set(before)

    after = {name: owned(path) for name, path in clusters.items()}
    code, events, err = cli("all", "--prune", *only("namespaces", "ingress", "gateway"))
    assert code == 0, err
    assert [e for e in events if e["event"] in ("stage-start", "stage-done")] == []
    assert {name: owned(path) for name, path in clusters.items()} == after

    code, _, err = cli("uninstall")
    assert code == 0, err
    assert owned(main) == {} and owned(clusters["east"]) == {}


def claims(kubeconfig) -> dict[str, tuple[str, str]]:
    """"namespace/claim" -> (the volume it names, its phase)."""
    return {f"{c['metadata']['namespace']}/{c['metadata']['name']}":
            (c["spec"].get("volumeName"), c["status"].get("phase"))
            for c in json.loads(kubectl(kubeconfig, "get", "pvc", "-A", "-o", "json"))["items"]}


def all_bound(kubeconfig) -> dict[str, tuple[str, str]]:
    found = claims(kubeconfig)
    return found if found and all(phase == "Bound" for _, phase in found.values()) else {}


def live_status(cli, cluster: str) -> dict[str, tuple[str, str, str]]:
    """`status --live` of one cluster: per stage (last result, inputs since, pending
    changes); stages never run here may not be reached (the command then exits 1)."""
    _, events, _ = cli("status", "--live", "--cluster", cluster)
    return {e["stage"]: (e["result"], e["inputs"], e["pending"])
            for e in events if e["event"] == "stage-status"}


def test_each_cluster_keeps_the_volumes_found_in_it(cli, clusters, workdir):
    """pv-pvc runs on every cluster: east's claims, bound to volumes an earlier cubeinstall
    named otherwise (typed hostPaths), keep them (found in east, not in main); main's get
    upstream's names. A second run changes nothing; status --live of both agrees."""
    for kubeconfig in clusters.values():  # the claims and volumes earlier tests kept
        kubectl(kubeconfig, "delete", "pvc", "--all", "--all-namespaces", "--wait")
        kubectl(kubeconfig, "delete", "pv", "--all", "--wait")
    code, _, err = cli("all", *only("namespaces"))
    assert code == 0, err
    east = clusters["east"]
    install_as_earlier_cubeinstall(east, ("pv-pvc",))
    before = wait_for("the earlier claims bound", lambda: all_bound(east))
    assert before["infra/kubeflow-global-pvc"] == ("infra-kubeflow-global-pvc", "Bound")

    stages = ("namespaces", "pv-pvc")
    code, events, err = cli("all", *only(*stages))
    assert code == 0, (err, [e for e in events if e["event"] in ("error", "stage-failed")])
    after = wait_for("every claim bound", lambda: all_bound(east))
    assert {claim: after[claim] for claim in before} == before
    assert set(after) > set(before)  # claims the earlier version did not have: bound too
    main = wait_for("main's claims bound", lambda: all_bound(clusters["main"]))
    assert main["infra/kubeflow-global-pvc"] == ("infra-kubeflow-global-pv", "Bound")

    code, events, err = cli("all", "--force", *only(*stages))
    assert code == 0, err
    assert not [e for e in events if e["event"] == "change" and e["action"] != "unchanged"]
    for cluster in ("main", "east"):
        status = live_status(cli, cluster)
        assert {stage: status[stage] for stage in stages} == {
            stage: ("ok", "unchanged", "0") for stage in stages}, (cluster, status)
        # without --live no cluster is asked: the journal keeps what the run found
        _, events, err = cli("status", "--cluster", cluster)
        inputs = {e["stage"]: e["inputs"] for e in events if e["event"] == "stage-status"}
        assert {stage: inputs[stage] for stage in stages} == {
            stage: "unchanged" for stage in stages}, (cluster, inputs, err)


def test_uninstall_of_the_gateway_stage_alone_leaves_what_ingress_renders(cli, clusters,
                                                                          workdir, monkeypatch,
                                                                          capsys):
    """A site installed before the ingress stage, ingress never run since: uninstall of the
    gateway stage removes its routes and leaves the Gateways and cube-ingress, which carry
    its label but belong to ingress now, saying so; the site's uninstall removes them.
    Without the upstream files ingress cannot be rendered: the plan says so and, as before
    the move, removes all the gateway stage's label marks."""
    code, _, err = cli("all", *only("namespaces"))
    assert code == 0, err
    main = clusters["main"]
    site = load_site(workdir / "site.yaml")
    apply_objects(main, "gateway", finalize(site, ingress.render(site) + gateway.render(site)))
    before = uids(main, *GATEWAYS, EXPOSURE)
    assert any("/VirtualService/" in key for key in owned(main, "gateway"))

    moved = {"Gateway kubeflow/kubeflow-gateway", "Gateway kubeflow/kubeflow-gateway-8080",
             "Service istio-system/cube-ingress"}
    with monkeypatch.context() as patch:
        patch.setenv("CUBEINSTALL_CACHE", str(workdir / "empty-cache"))
        code, events, err = cli("uninstall", "--dry-run", "--only", "gateway")
    assert code == 0, err
    warned = " ".join(e["message"] for e in events if e["event"] == "warning")
    assert "upstream files not in the local cache" in warned and \
        "cannot tell which objects moved between this stage and ingress" in warned, warned
    assert moved <= {e["target"] for e in events
                     if e["event"] == "change" and e["action"] == "delete"}

    code, out, err = run_cli(["uninstall", "--dry-run", "--only", "gateway",
                              "-c", str(workdir / "site.yaml")], capsys)
    assert code == 0, err
    said = out + err  # without --json too: a line for each object left, and why
    assert "skip      Gateway kubeflow/kubeflow-gateway  (stage ingress renders it now" in said, said

    code, events, err = cli("uninstall", "--only", "gateway")
    assert code == 0, err
    left = {e["target"]: e["detail"] for e in events
            if e["event"] == "change" and e["action"] == "skip"}
    assert set(left) == moved, left
    assert all(detail.startswith("stage ingress renders it now") for detail in left.values())
    assert uids(main, *GATEWAYS, EXPOSURE) == before
    assert set(owned(main, "gateway")) == set(before)  # the routes are gone, these stay

    code, events, err = cli("uninstall", "--dry-run")
    assert code == 0, err
    removing = {e["target"] for e in events if e["event"] == "change"
                and e["action"] == "delete" and e["stage"] == "ingress"}
    assert set(left) <= removing, removing
    code, _, err = cli("uninstall")
    assert code == 0, err
    assert owned(main) == {} and owned(clusters["east"]) == {}
