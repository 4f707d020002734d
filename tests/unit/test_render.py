"""Rendering of examples/site.yaml: golden files, determinism, placement facts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cubeinstall.core.yamlio import load_documents
from cubeinstall.site import platform
from cubeinstall.site.loader import load_site
from cubeinstall.stages.rendered import all_objects
from tests.helpers import EXAMPLE_SITE, assert_golden

GOLDEN_STAGES = ("namespaces", "node-labels", "pv-pvc", "kubeconfig", "ingress", "gateway", "gpu")


@pytest.fixture(scope="module")
def rendered():
    return all_objects(load_site(EXAMPLE_SITE))


@pytest.mark.parametrize("stage", GOLDEN_STAGES)
def test_golden(stage, rendered):
    assert_golden(stage, rendered[stage])


def test_render_is_byte_identical_across_processes(tmp_path):
    outputs = []
    for seed in ("1", "2"):
        out_dir = tmp_path / seed
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-m", "cubeinstall", "render", "-c", str(EXAMPLE_SITE),
                        "--out", str(out_dir)], check=True, env=env, capture_output=True)
        outputs.append({p.name: p.read_bytes() for p in sorted(out_dir.iterdir())})
    assert outputs[0] == outputs[1]
    assert set(outputs[0]) >= {f"{i:02d}-{s}.yaml" for i, s in ((6, "namespaces"), (14, "ingress"), (23, "gateway"))}


def test_every_namespace_has_pull_secret_and_injection_label(rendered):
    objects = rendered["namespaces"]
    namespaces = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Namespace"}
    secrets = {o["metadata"]["namespace"] for o in objects if o["kind"] == "Secret"}
    assert set(platform.PLATFORM_NAMESPACES) <= set(namespaces)
    assert "kube-system" not in namespaces  # never owned, never deleted
    assert secrets == set(platform.PLATFORM_NAMESPACES) | {"kube-system"}
    labelled = {name for name, ns in namespaces.items()
                if (ns["metadata"].get("labels") or {}).get("istio-injection") == "disabled"}
    assert labelled == set(namespaces) - {"service"}  # create_ns_secret.sh:11
    assert namespaces["katib"]["metadata"]["labels"]["katib-metricscollector-injection"] == "enabled"


def test_node_labels_follow_roles(rendered):
    nodes = {o["metadata"]["name"]: o["metadata"]["labels"] for o in rendered["node-labels"]}
    assert nodes["gpu1"] == {"gpu": "true", "train": "true", "notebook": "true",
                             "service": "true", "org": "ai-lab"}
    assert nodes["node1"]["mysql"] == "true" and nodes["node1"]["kubeflow-dashboard"] == "true"
    assert "gpu" not in nodes["node2"] and nodes["node2"]["org"] == "public"


def test_every_pv_is_bound_to_its_claim(rendered):
    objects = rendered["pv-pvc"]
    pvs = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PersistentVolume"}
    pvcs = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    assert len(pvs) == len(pvcs) == 13
    for pvc in pvcs:
        ns, claim = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
        pv = pvs[pvc["spec"]["volumeName"]]
        assert pv["spec"]["claimRef"] == {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                          "namespace": ns, "name": claim}
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        assert pv["spec"]["hostPath"]["path"].startswith("/data/k8s/")
    workspace = pvs["jupyter-kubeflow-user-workspace"]
    assert workspace["spec"]["hostPath"]["path"] == "/data/k8s/kubeflow/pipeline/workspace"
    assert workspace["spec"]["capacity"]["storage"] == "500Gi"


def test_volume_overrides(tmp_path):
    from tests.helpers import example_site_data, write_site

    data = example_site_data()
    data["volumes"] = {"kubeflow-archives": {"size": "2Ti", "path": "/mnt/archive"}}
    site = load_site(write_site(tmp_path, data))
    pvs = [o for o in all_objects(site)["pv-pvc"] if o["metadata"]["name"] == "jupyter-kubeflow-archives"]
    assert pvs[0]["spec"]["capacity"]["storage"] == "2Ti"
    assert pvs[0]["spec"]["hostPath"]["path"] == "/mnt/archive"


def test_gateway_serves_any_host_and_the_domain(rendered):
    vs = [o for o in rendered["gateway"] if o["kind"] == "VirtualService"]
    assert {o["metadata"]["name"] for o in vs} == {
        "infra-kubeflow-dashboard", "kube-system-k8s-dashboard-cluster",
        "kube-system-k8s-dashboard-user1", "kubeflow-labelstudio", "monitoring-grafana",
        "cube-studio"}
    assert all(o["spec"]["hosts"] == ["*", "cube.example.com"] for o in vs)
    gateways = {o["metadata"]["name"]: o for o in rendered["ingress"] if o["kind"] == "Gateway"}
    assert {g: o["spec"]["servers"][0]["port"]["number"] for g, o in gateways.items()} == {
        "kubeflow-gateway": 80, "kubeflow-gateway-8080": 8080}
    assert all(o["spec"]["servers"][0]["hosts"] == ["*"] for o in gateways.values())


def exposure(site) -> dict:
    from cubeinstall.stages import ingress

    [service] = [o for o in ingress.render(site) if o["kind"] == "Service"]
    return service["spec"]


def test_each_cluster_exposes_its_own_gateway(tmp_path):
    """The ingress stage renders, for each cluster's view of the site, that cluster's
    exposure: the first the site's `gateway`, another its `clusters[].gateway`."""
    from tests.helpers import example_site_data, other_cluster, write_site

    data = example_site_data()
    data["clusters"].append(other_cluster("east", "10.0.1.11"))
    west = other_cluster("west")
    west["gateway"] = {"expose": "NodePort", "node_port_http": 31080, "node_port_http_alt": 31808}
    data["clusters"].append(west)
    site = load_site(write_site(tmp_path, data))
    assert site.for_cluster("main").cluster.name == "main"
    assert exposure(site.for_cluster("main"))["externalIPs"] == ["10.0.0.11"]
    assert exposure(site.for_cluster("east"))["externalIPs"] == ["10.0.1.11"]
    spec = exposure(site.for_cluster("west"))
    assert spec["type"] == "NodePort" and "externalIPs" not in spec
    assert [p["nodePort"] for p in spec["ports"]] == [31080, 31808]


def test_kubeconfig_secret_holds_an_empty_file_for_the_platform_cluster(rendered, tmp_path):
    """As upstream's start.sh: an empty <cluster>-kubeconfig makes the platform use its
    in-cluster ServiceAccount; the installer's own credentials never reach a pod."""
    secrets = rendered["kubeconfig"]
    assert {s["metadata"]["namespace"] for s in secrets} == set(platform.KUBECONFIG_NAMESPACES)
    assert all(s["data"] == {"main-kubeconfig": ""} for s in secrets)


def test_kubeconfig_of_another_cluster_is_self_contained(tmp_path):
    import base64

    import yaml

    from cubeinstall.stages import kubeconfig
    from tests.helpers import example_site_data, other_cluster, write_site

    data = example_site_data()
    data["clusters"].append(other_cluster("gpu-east"))
    site = load_site(write_site(tmp_path, data))
    [secret, *_] = kubeconfig.render(site)
    assert set(secret["data"]) == {"main-kubeconfig", "gpu-east-kubeconfig"}
    assert secret["data"]["main-kubeconfig"] == ""
    config = yaml.safe_load(base64.b64decode(secret["data"]["gpu-east-kubeconfig"]))
    assert config["current-context"] == "demo"
    assert config["users"][0]["user"]["token"] == "DEMO-token-not-real"


def test_kubeconfig_embeds_referenced_files(tmp_path):
    import base64

    import yaml

    from cubeinstall.site.model import Cluster
    from cubeinstall.stages.kubeconfig import self_contained_kubeconfig

    (tmp_path / "ca.crt").write_text("CA-BYTES")
    (tmp_path / "kc").write_text(yaml.safe_dump({
        "current-context": "a", "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}},
                                             {"name": "b", "context": {"cluster": "x", "user": "y"}}],
        "clusters": [{"name": "c", "cluster": {"server": "https://k:6443", "certificate-authority": "ca.crt"}}],
        "users": [{"name": "u", "user": {"token": "tok-123"}}]}))
    config = yaml.safe_load(self_contained_kubeconfig(Cluster(name="m", kubeconfig=tmp_path / "kc")))
    assert [c["name"] for c in config["contexts"]] == ["a"]
    cluster = config["clusters"][0]["cluster"]
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"CA-BYTES"
    assert "certificate-authority" not in cluster


def test_upstream_crd_with_value_tag_parses():
    from tests.helpers import SHARED

    path = SHARED / "upstream/prometheus-operator/v0.93.0/example/prometheus-operator-crd/monitoring.coreos.com_alertmanagerconfigs.yaml"
    docs = load_documents(path.read_text())
    assert docs[0]["kind"] == "CustomResourceDefinition"
    assert "=" in str(docs[0])


def test_preflight_checks_each_clusters_own_gateway_exposure(tmp_path):
    """gateway-exposure runs for each cluster with its own `gateway`; a finding names the
    field of the cluster at fault (the site's `gateway` is the first cluster's)."""
    import io

    from cubeinstall.core.context import RunContext
    from cubeinstall.core.output import Output
    from cubeinstall.run.preflight import gateway_exposure
    from cubeinstall.run.targets import cluster_context
    from tests.helpers import example_site_data, other_cluster, write_site

    data = example_site_data()
    data["clusters"].append(other_cluster("east", "127.0.0.1"))  # the API server refuses it
    ctx = RunContext(load_site(write_site(tmp_path, data)),
                     Output(json_mode=True, stream=io.StringIO()))
    [main] = gateway_exposure(cluster_context(ctx, "main"), [])
    [east] = gateway_exposure(cluster_context(ctx, "east"), [])
    assert main.grade != "error" and "10.0.0.11" in main.message
    assert east.grade == "error"
    assert east.message.startswith("clusters[1].gateway.addresses 127.0.0.1")
    assert "clusters[1].gateway.expose: NodePort" in east.hint
