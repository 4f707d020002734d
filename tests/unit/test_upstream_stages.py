"""What the upstream-based stages render (pure: a cache seeded from ../shared/upstream)."""

from __future__ import annotations

import json

import pytest

from cubeinstall.core.errors import StageFailed
from cubeinstall.render import finalize, naming
from cubeinstall.render.walk import images_in_objects
from cubeinstall.site.loader import load_site
from cubeinstall.stages import (
    frameworkcontroller,
    istio,
    kube_batch,
    kubeflow,
    prometheus,
    volcano,
)
from cubeinstall.upstream.cache import NotFetched
from cubeinstall.upstream.kinds import PLACED_KINDS, group_kind, pod_spec
from tests.helpers import example_site_data, write_site

STAGES = {"istio": istio, "kubeflow": kubeflow, "prometheus": prometheus, "volcano": volcano,
          "frameworkcontroller": frameworkcontroller, "kube-batch": kube_batch}
PLACEMENT = {"istio": "istio", "kubeflow": "kubeflow", "prometheus": "monitoring",
             "volcano": "kubeflow", "frameworkcontroller": "kubeflow"}


def site_with(tmp_path, **components):
    data = example_site_data()
    data.setdefault("components", {}).update(components)
    return load_site(write_site(tmp_path, data))


@pytest.fixture
def site(tmp_path, seeded_cache):
    return site_with(tmp_path)


def upstream_part(stage, site):
    """The stage's objects, without the prometheus stage's own (another module's) objects."""
    objects = STAGES[stage].render(site)
    own = prometheus.own_objects(site) if stage == "prometheus" else []
    return [o for o in objects if o not in own]


def by_name(objects, kind, name):
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_image_is_pinned_and_pulled_if_not_present(stage, site):
    objects = upstream_part(stage, site)
    images = images_in_objects(objects)
    assert images
    for image in images:
        ref = naming.parse(image)
        assert ref.tag not in (None, "latest") or ref.digest, f"{stage}: {image}"
    for obj in objects:
        spec = pod_spec(obj)
        if spec is not None:
            policies = {c.get("imagePullPolicy") for c in spec["containers"]}
            assert policies == {"IfNotPresent"}, obj["metadata"]["name"]
            assert {"name": "hubsecret"} in pod_spec(finalize(site, [obj])[0])["imagePullSecrets"], \
                "the example has credentials: every pod pulls with hubsecret"


@pytest.mark.parametrize("stage", list(PLACEMENT))
def test_workloads_select_the_placement_label(stage, site):
    placed = [o for o in upstream_part(stage, site) if group_kind(o) in PLACED_KINDS]
    assert placed
    for obj in placed:
        assert pod_spec(obj)["nodeSelector"][PLACEMENT[stage]] == "true", obj["metadata"]["name"]


def test_a_site_placement_label_wins(tmp_path, seeded_cache):
    site = site_with(tmp_path, volcano={"placement": "train"})
    placed = [o for o in volcano.render(site) if group_kind(o) in PLACED_KINDS]
    assert placed and all(pod_spec(o)["nodeSelector"] == {"train": "true"} for o in placed)


@pytest.mark.parametrize("stage", list(STAGES))
def test_render_without_the_files_says_to_fetch(stage, site, tmp_path, monkeypatch):
    monkeypatch.setenv("CUBEINSTALL_CACHE", str(tmp_path / "empty"))
    if stage == "kube-batch":  # written here entirely: needs no upstream file
        assert STAGES[stage].render(site)
        return
    with pytest.raises(NotFetched) as error:
        STAGES[stage].render(site)
    assert "cubeinstall bundle fetch" in error.value.hint


def test_prometheus_operator_leaves_default_for_monitoring(site):
    objects = prometheus.render(site)
    operator = [o for o in objects if o["metadata"]["name"] == "prometheus-operator"]
    assert {o["kind"] for o in operator} >= {"Deployment", "Service", "ServiceAccount",
                                              "ClusterRoleBinding", "ServiceMonitor"}
    assert "default" not in json.dumps([o.get("metadata", {}).get("namespace") for o in objects])
    binding = by_name(objects, "ClusterRoleBinding", "prometheus-operator")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "prometheus-operator",
                                    "namespace": "monitoring"}]


def test_kubeflow_assembly(site):
    objects = kubeflow.render(site)
    argo = by_name(objects, "Namespace", "argo")
    assert argo["metadata"]["labels"] == {"istio-injection": "disabled"}
    for name in ("argo-binding", "argo-server-binding"):
        [subject] = by_name(objects, "ClusterRoleBinding", name)["subjects"]
        assert subject["namespace"] == "argo"
    controller = by_name(objects, "Deployment", "workflow-controller")
    assert controller["metadata"]["namespace"] == "argo"
    assert pod_spec(controller)["containers"][0]["args"] == [
        "--executor-image", "quay.io/argoproj/argoexec:v4.1.2"]
    server = pod_spec(by_name(objects, "Deployment", "argo-server"))["containers"][0]
    assert server["args"] == ["server", "--secure=false"]  # plain HTTP behind the gateway
    assert server["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
    assert {"name": "ARGO_BASE_HREF", "value": "/argo/"} in server["env"]
    hook = by_name(objects, "ValidatingWebhookConfiguration",
                   "validator.training-operator.kubeflow.org")
    assert {(w["clientConfig"]["service"]["name"], w["clientConfig"]["service"]["namespace"])
            for w in hook["webhooks"]} == {("training-operator", "kubeflow")}
    assert all(w["failurePolicy"] == "Fail" for w in hook["webhooks"])
    cert = by_name(objects, "Secret", "training-operator-webhook-cert")
    assert cert["metadata"]["namespace"] == "kubeflow" and "data" not in cert
    assert not [o for o in objects if o["kind"] == "Namespace" and o["metadata"]["name"] == "kubeflow"]
    executor = by_name(objects, "RoleBinding", "argo-executor")
    assert executor["metadata"]["namespace"] == "pipeline"
    crds = {o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"}
    assert len(crds) == 14 and "workflows.argoproj.io" in crds and "pytorchjobs.kubeflow.org" in crds


def test_volcano_default_namespace_is_its_own(site):
    objects = volcano.render(site)
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"] == ["volcano-system"]
    namespaced = {o["metadata"].get("namespace") for o in objects if o["kind"] not in (
        "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
        "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")}
    assert namespaced == {"volcano-system"}
    job = by_name(objects, "Job", "volcano-admission-init")
    assert pod_spec(job)["nodeSelector"]["kubeflow"] == "true"


def test_volcano_moved_to_kubeflow_like_cube_studio(tmp_path, seeded_cache):
    objects = volcano.render(site_with(tmp_path, volcano={"namespace": "kubeflow"}))
    assert not [o for o in objects if o["kind"] == "Namespace"]  # kubeflow is the platform's
    assert "volcano-system" not in json.dumps(objects, sort_keys=True).replace(
        "volcano-system-", "")
    admission = by_name(objects, "Deployment", "volcano-admission")
    assert "--webhook-namespace=kubeflow" in pod_spec(admission)["containers"][0]["args"]
    init = pod_spec(by_name(objects, "Job", "volcano-admission-init"))["containers"][0]
    assert init["command"][init["command"].index("--namespace") + 1] == "kubeflow"
    hook = by_name(objects, "ValidatingWebhookConfiguration",
                   "volcano-admission-service-jobs-validate")
    assert hook["webhooks"][0]["clientConfig"]["service"]["namespace"] == "kubeflow"


def test_istio_objects_and_existing_mode(site, tmp_path):
    objects = istio.render(site)
    assert len([o for o in objects if o["kind"] == "CustomResourceDefinition"]) == 15
    gateway = by_name(objects, "Deployment", "istio-ingressgateway")
    assert gateway["spec"]["template"]["metadata"]["labels"]["istio"] == "ingressgateway"
    assert pod_spec(gateway)["containers"][0]["image"] == "docker.io/istio/proxyv2:1.30.3"
    service = by_name(objects, "Service", "istio-ingressgateway")
    ports = {(p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert {(80, 8080), (8080, 8081)} <= ports
    [discovery] = pod_spec(by_name(objects, "Deployment", "istiod"))["containers"]
    env = {e["name"]: e.get("value") for e in discovery["env"]}
    assert env["INJECT_ENABLED"] == "false"
    assert not [o for o in objects if "Webhook" in o["kind"]]
    assert istio.render(site_with(tmp_path, istio={"mode": "existing"})) == []


def test_volcano_existing_mode_renders_nothing(tmp_path):
    assert volcano.render(site_with(tmp_path, volcano={"mode": "existing"})) == []


def test_frameworkcontroller_config_is_upstreams_file(site, upstream_dir):
    objects = frameworkcontroller.render(site)
    config = by_name(objects, "ConfigMap", "frameworkcontroller-config")
    expected = (upstream_dir / "frameworkcontroller" / "v1.0.1"
                / frameworkcontroller.CONFIG).read_text()
    assert config["data"]["frameworkcontroller.yaml"] == expected
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "ClusterRole"
            and o["kind"] != "ClusterRoleBinding"} == {"katib"}


@pytest.mark.parametrize("version, refused", [
    ("v1.21.14", False), ("v1.18.0+k3s1", False), ("v1.22.0", True), ("v1.36.3", True),
    ("unknown", True), ("", True)])
def test_kube_batch_refuses_from_1_22(version, refused):
    if not refused:
        kube_batch.refuse_if_unsupported(version)
        return
    with pytest.raises(StageFailed) as error:
        kube_batch.refuse_if_unsupported(version)
    assert "nothing was applied" in error.value.message and "volcano" in error.value.hint


def test_kube_batch_objects_are_the_old_apis(site):
    objects = kube_batch.render(site)
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    assert {o["apiVersion"] for o in crds} == {"apiextensions.k8s.io/v1beta1"}
    assert {o["metadata"]["name"] for o in crds} == {
        "podgroups.scheduling.incubator.k8s.io", "queues.scheduling.incubator.k8s.io",
        "podgroups.scheduling.sigs.dev", "queues.scheduling.sigs.dev"}
    deployment = by_name(objects, "Deployment", "kube-batch")
    assert deployment["metadata"]["namespace"] == "kube-system"
