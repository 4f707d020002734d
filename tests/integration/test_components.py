"""Each upstream component applied to the real (kwok-simulated) control plane.

For istio, kubeflow, prometheus, volcano and frameworkcontroller: `cubeinstall stage X`
succeeds from a cache filled over HTTP, the CRDs are Established, the workloads are
Available (Jobs complete) with every pod on a node carrying the component's placement
label, the patches are live (namespaces, subjects, pinned images), and applying again
changes nothing. kube-batch refuses this cluster (>= 1.22) and applies nothing.

Webhook gates are skipped (site gates.webhooks: skip): kwok pods serve no traffic.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest

from cubeinstall.core.context import RunContext
from cubeinstall.core.output import Output
from cubeinstall.run import runner
from cubeinstall.site import stages as registry
from cubeinstall.site.loader import load_site
from cubeinstall.stages import istio, load, volcano
from cubeinstall.upstream import catalog
from tests.helpers import json_events, run_cli
from tests.servers.http_upstream import component_site

pytestmark = pytest.mark.cluster


@dataclass(frozen=True)
class Expect:
    label: str  # placement label of the component's pods
    deployments: tuple[tuple[str, str], ...] = ()
    statefulsets: tuple[tuple[str, str], ...] = ()
    jobs: tuple[tuple[str, str], ...] = ()
    images: tuple[str, ...] = ()  # suffixes the live images must have (pins)


EXPECTED = {
    "istio": Expect("istio", deployments=(("istio-system", "istiod"),
                                          ("istio-system", "istio-ingressgateway")),
                    images=(":1.30.3",)),
    "kubeflow": Expect("kubeflow", deployments=(("argo", "workflow-controller"),
                                                ("argo", "argo-server"),
                                                ("kubeflow", "training-operator")),
                       images=(":v4.1.2", ":v1-93c5489")),
    "prometheus": Expect("monitoring", deployments=(("monitoring", "prometheus-operator"),),
                         images=(":v0.93.0",)),
    "volcano": Expect("kubeflow", deployments=(("volcano-system", "volcano-admission"),
                                               ("volcano-system", "volcano-controllers"),
                                               ("volcano-system", "volcano-scheduler")),
                      jobs=(("volcano-system", "volcano-admission-init"),), images=(":v1.15.1",)),
    "frameworkcontroller": Expect("kubeflow", statefulsets=(("katib", "frameworkcontroller"),),
                                  images=(":v1.0.0",)),
}


@pytest.fixture(scope="module")
def site_file(kube_cluster, fetched_cache, tmp_path_factory):
    directory = tmp_path_factory.mktemp("components")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CUBEINSTALL_CACHE", str(fetched_cache))
        patch.setenv("CUBEINSTALL_STATE_DIR", str(directory / "state"))
        # Installing reads the cache only: the mirror points where nothing listens.
        patch.setenv(catalog.MIRROR_ENV, "http://127.0.0.1:9")
        path = component_site(directory, kube_cluster.kubeconfig, **{"kube-batch": {"enabled": True}})
        load(registry.get("namespaces")).apply(context(path))
        yield path


def context(path) -> RunContext:
    return RunContext(site=load_site(path), out=Output(json_mode=True, stream=io.StringIO()))


@pytest.fixture
def apis(kube_cluster):
    from kubernetes import client

    with kube_cluster.api_client() as api:
        yield client.ApiextensionsV1Api(api), client.AppsV1Api(api), client.CoreV1Api(api), \
            client.BatchV1Api(api), client.RbacAuthorizationV1Api(api)


def established(crd) -> bool:
    return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])


def assert_pods_placed(core, namespace, selector, label):
    pods = core.list_namespaced_pod(namespace, label_selector=",".join(
        f"{k}={v}" for k, v in selector.items())).items
    assert pods, f"no pods in {namespace} for {selector}"
    for pod in pods:
        node = core.read_node(pod.spec.node_name)
        assert (node.metadata.labels or {}).get(label) == "true", \
            f"{pod.metadata.name} runs on {pod.spec.node_name}, not a {label}=true node"


@pytest.mark.parametrize("stage", list(EXPECTED))
def test_component_installs_ready_placed_and_unchanged_on_reapply(stage, site_file, apis, capsys):
    extensions, apps, core, batch, _ = apis
    expect = EXPECTED[stage]
    code, out, _ = run_cli(["--json", "stage", stage, "-c", str(site_file)], capsys)
    assert code == 0, [e for e in json_events(out) if e["event"] in ("error", "stage-failed")]

    objects = runner.stage_objects(registry.get(stage), load_site(site_file))
    crds = [o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"]
    assert crds or stage == "frameworkcontroller"
    for name in crds:
        assert established(extensions.read_custom_resource_definition(name)), name

    images = []
    for namespace, name in expect.deployments:
        live = apps.read_namespaced_deployment(name, namespace)
        assert any(c.type == "Available" and c.status == "True" for c in live.status.conditions)
        assert_pods_placed(core, namespace, live.spec.selector.match_labels, expect.label)
        images += [c.image for c in live.spec.template.spec.containers]
        assert all(c.image_pull_policy == "IfNotPresent" for c in live.spec.template.spec.containers)
    for namespace, name in expect.statefulsets:
        live = apps.read_namespaced_stateful_set(name, namespace)
        assert live.status.ready_replicas == live.spec.replicas
        assert_pods_placed(core, namespace, live.spec.selector.match_labels, expect.label)
        images += [c.image for c in live.spec.template.spec.containers]
    for namespace, name in expect.jobs:
        assert batch.read_namespaced_job(name, namespace).status.succeeded
    for suffix in expect.images:
        assert any(image.endswith(suffix) for image in images), (suffix, images)
    assert not any(image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1]
                   for image in images), images

    again = load(registry.get(stage)).apply(context(site_file))
    assert again and {c.action for c in again} == {"unchanged"}, \
        [c for c in again if c.action != "unchanged"]


def test_kubeflow_assembly_is_live(site_file, apis, capsys):
    """The kustomize work done in code: subjects, renamed webhook, empty cert Secret, pipeline RBAC."""
    *_, core, _, rbac = apis
    assert run_cli(["--json", "stage", "kubeflow", "-c", str(site_file)], capsys)[0] == 0
    for binding in ("argo-binding", "argo-server-binding"):
        subjects = rbac.read_cluster_role_binding(binding).subjects
        assert {(s.name, s.namespace) for s in subjects} <= {("argo", "argo"), ("argo-server", "argo")}
    assert rbac.read_cluster_role_binding("training-operator").subjects[0].namespace == "kubeflow"
    assert core.read_namespaced_secret("training-operator-webhook-cert", "kubeflow").data is None
    executor = rbac.read_namespaced_role_binding("argo-executor", "pipeline")
    assert {s.name for s in executor.subjects} == {"kubeflow-pipeline", "default"}
    from kubernetes import client

    hooks = client.AdmissionregistrationV1Api(core.api_client)
    config = hooks.read_validating_webhook_configuration("validator.training-operator.kubeflow.org")
    assert {(w.client_config.service.name, w.client_config.service.namespace)
            for w in config.webhooks} == {("training-operator", "kubeflow")}


def test_prometheus_operator_moved_out_of_default(site_file, apis, capsys):
    *_, core, _, rbac = apis
    assert run_cli(["--json", "stage", "prometheus", "-c", str(site_file)], capsys)[0] == 0
    subject = rbac.read_cluster_role_binding("prometheus-operator").subjects[0]
    assert (subject.name, subject.namespace) == ("prometheus-operator", "monitoring")
    assert not [s for s in core.list_namespaced_service("default").items
                if s.metadata.name == "prometheus-operator"]


def test_kube_batch_refuses_this_cluster_and_applies_nothing(site_file, apis, capsys):
    extensions, *_ = apis
    code, out, _ = run_cli(["--json", "stage", "kube-batch", "-c", str(site_file)], capsys)
    assert code == 1
    [failure] = [e for e in json_events(out) if e["event"] == "stage-failed"]
    assert "removed in Kubernetes 1.22" in failure["error"]
    assert "nothing was applied" in failure["error"]
    assert "volcano" in failure["hint"]
    names = {crd.metadata.name for crd in extensions.list_custom_resource_definition().items}
    assert not names & {"podgroups.scheduling.incubator.k8s.io", "queues.scheduling.sigs.dev"}
    code, out, _ = run_cli(["--json", "plan", "--only", "kube-batch", "-c", str(site_file)], capsys)
    assert code == 1 and "removed in Kubernetes 1.22" in out


@pytest.mark.parametrize("stage", ["istio", "volcano"])
def test_existing_mode_verifies_and_installs_nothing(stage, site_file, tmp_path, kube_cluster,
                                                     monkeypatch, capsys):
    """mode existing (e.g. start.sh's Volcano or Istio kept by adopt): the kinds the
    platform creates must be served; nothing is installed."""
    module = {"istio": istio, "volcano": volcano}[stage]
    assert run_cli(["--json", "stage", stage, "-c", str(site_file)], capsys)[0] == 0
    existing = component_site(tmp_path, kube_cluster.kubeconfig, **{stage: {"mode": "existing"}})
    ctx = context(existing)
    assert runner.stage_objects(registry.get(stage), ctx.site) == []
    changes = load(registry.get(stage)).apply(ctx)
    assert {c.action for c in changes} == {"unchanged"}
    assert {c.target for c in changes} == {f"CustomResourceDefinition {name}"
                                           for name in module.REQUIRED_CRDS}

    monkeypatch.setattr(module, "REQUIRED_CRDS", module.REQUIRED_CRDS + ("sidecars.example.io",))
    code, out, _ = run_cli(["--json", "stage", stage, "-c", str(existing)], capsys)
    assert code == 1
    [failure] = [e for e in json_events(out) if e["event"] == "stage-failed"]
    assert "sidecars.example.io does not exist" in failure["error"]

